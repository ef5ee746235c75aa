"""Frame-rate encoder and decoder (Vocos's ConvNeXt backbone and inverse-STFT head) for the RVQ codec.

SEANet spends most of its compute in narrow convolutions at the full sample rate, which a CPU runs far below its
GEMM speed. These modules work at the codec's frame rate from the start: the encoder reads a short-time Fourier
transform whose hop is the codec's hop, the decoder predicts one spectrum frame per code frame and turns it back
into samples by overlap-add (Vocos, Siuzdak 2023). Every layer is then a wide matrix product, so the same CPU time
trains a model many times larger.

Both use "same" framing: frame t is centred on samples [t * hop, (t + 1) * hop), so N samples give exactly
N / hop frames and T frames give exactly T * hop samples. They are non-causal: a frame sees `context_frames`
frames on each side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CodecConfig, SpectralConfig


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over time → LayerNorm → pointwise MLP (GELU) → layer scale, plus the identity."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = self.dwconv(x).transpose(1, 2)  # (B, T, C): LayerNorm and Linear act on the last axis
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.transpose(1, 2)


class ConvNeXtStack(nn.Module):
    """Input projection (conv over `embed_kernel` frames) → `num_layers` ConvNeXt blocks → LayerNorm; (B, C_in, T) -> (B, T, dim)."""

    def __init__(self, in_channels: int, s: SpectralConfig, embed_kernel: int):
        super().__init__()
        self.embed = nn.Conv1d(in_channels, s.dim, embed_kernel, padding=embed_kernel // 2)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(s.dim, s.hidden_dim, s.kernel_size, 1.0 / s.num_layers) for _ in range(s.num_layers))
        self.norm = nn.LayerNorm(s.dim, eps=1e-6)
        self.reach = embed_kernel // 2 + (s.kernel_size // 2) * s.num_layers  # frames seen on each side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x.transpose(1, 2))


def _same_padding(n_fft: int, hop: int) -> int:
    return (n_fft - hop) // 2


class SpectralEncoder(nn.Module):
    """Waveform (B, channels, N) with N a multiple of hop -> latent (B, dimension, N / hop).

    Input features per frame and channel: log magnitude and the power-law compressed complex spectrum
    (|X|^0.3 e^{i phase}, real and imaginary parts), so the phase is not thrown away.
    """

    def __init__(self, config: CodecConfig):
        super().__init__()
        s = config.spectral
        self.hop = config.hop_length
        self.n_fft = s.n_fft
        self.register_buffer("window", torch.hann_window(s.n_fft), persistent=False)
        bins = s.n_fft // 2 + 1
        # A 1-frame input projection: the spectrum is already wide (3 × bins features), the blocks add context.
        self.backbone = ConvNeXtStack(3 * bins * config.channels, s, embed_kernel=1)
        self.proj = nn.Linear(s.dim, config.dimension)
        self.context_frames = self.backbone.reach + math.ceil(s.n_fft / self.hop)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """(M, N) samples, N a multiple of hop -> complex (M, bins, N / hop), frame t centred on hop t."""
        pad = _same_padding(self.n_fft, self.hop)
        return torch.stft(F.pad(wav, (pad, pad)), self.n_fft, self.hop, window=self.window, center=False,
                          return_complex=True)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        b, c, n = wav.shape
        spec = self.stft(wav.reshape(b * c, n))
        mag = spec.abs()  # (B*C, bins, T)
        compressed = spec * (mag + 1e-5).pow(-0.7)  # |X|^0.3 with X's phase
        feats = torch.cat([torch.log(mag + 1e-5), compressed.real, compressed.imag], dim=1)
        feats = feats.reshape(b, -1, feats.shape[-1])  # (B, C * 3 * bins, T): channels stacked
        return self.proj(self.backbone(feats)).transpose(1, 2)  # (B, dimension, T)


class SpectralDecoder(nn.Module):
    """Latent (B, dimension, T) -> waveform (B, channels, T * hop) through an inverse STFT.

    The head predicts each channel's log magnitude and phase per bin (Vocos); the waveform is the windowed
    overlap-add of the inverse FFTs, divided by the window's squared overlap (exact inverse of the encoder's STFT).
    """

    def __init__(self, config: CodecConfig):
        super().__init__()
        s = config.spectral
        self.hop = config.hop_length
        self.n_fft = s.n_fft
        self.channels = config.channels
        self.bins = s.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(s.n_fft), persistent=False)
        self.backbone = ConvNeXtStack(config.dimension, s, embed_kernel=s.kernel_size)
        self.head = nn.Linear(s.dim, 2 * self.bins * config.channels)
        self.context_frames = self.backbone.reach + math.ceil(s.n_fft / self.hop)
        self.frequency_invariant = s.frequency_invariant_phase
        # Frame t's phase offset at bin k is 2 pi k t hop / n_fft: it repeats every `period` frames.
        self.period = s.n_fft // math.gcd(s.n_fft, self.hop) if self.frequency_invariant else 1

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        b, _, t = latent.shape
        h = self.head(self.backbone(latent))  # (B, T, 2 * C * bins)
        h = h.view(b, t, self.channels, 2, self.bins).permute(0, 2, 3, 4, 1).reshape(b * self.channels, 2, self.bins, t)
        # (B*C, bins, T); at most 1e2 as Vocos, clamped before exp so that an overflow cannot make 0 * inf gradients
        mag = h[:, 0].clamp(max=math.log(1e2)).exp()
        phase = h[:, 1]
        if self.frequency_invariant:
            phase = phase + self._frame_phase_offsets(t).to(phase.dtype)
        return self.inverse_stft(torch.polar(mag, phase)).reshape(b, self.channels, t * self.hop)

    def _frame_phase_offsets(self, frames: int) -> torch.Tensor:
        """(bins, frames): 2 pi k t hop / n_fft, from exact integers, turning signal-origin phases into the
        frame-origin phases the inverse FFT expects. Periodic in t with `self.period`."""
        k = torch.arange(self.bins, device=self.window.device)[:, None]
        t = torch.arange(frames, device=self.window.device)[None, :] % self.period
        return (k * t * self.hop % self.n_fft).float() * (2 * math.pi / self.n_fft)

    def inverse_stft(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex (M, bins, T) -> (M, T * hop) samples; the exact inverse of `SpectralEncoder.stft`."""
        t = spec.shape[-1]
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # (M, n_fft, T)
        start = _same_padding(self.n_fft, self.hop)
        keep = slice(start, start + t * self.hop)
        # Trimmed before dividing: the envelope is 0 at the outer edges, where 0 / 0 would poison the gradients.
        envelope = self._overlap_add(self.window.pow(2)[None, :, None].expand(1, -1, t))[..., keep]
        return self._overlap_add(frames)[..., keep] / envelope

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(M, n_fft, T) -> (M, (T - 1) * hop + n_fft): frame t added at sample t * hop."""
        length = (frames.shape[-1] - 1) * self.hop + self.n_fft
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        return out[:, 0, 0]
