"""The "same" STFT framing the spectral encoder, decoder and harmonic-source phase share: frame t is centred on
samples [t * hop, (t + 1) * hop), so N samples give exactly N / hop frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_padding(n_fft: int, hop: int) -> int:
    """Samples padded on each side so that frame t is centred on hop t."""
    return (n_fft - hop) // 2


def same_stft(wav: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """(M, N) samples, N a multiple of hop -> complex (M, bins, N / hop), frame t centred on hop t."""
    pad = same_padding(n_fft, hop)
    return torch.stft(F.pad(wav, (pad, pad)), n_fft, hop, window=window, center=False, return_complex=True)
