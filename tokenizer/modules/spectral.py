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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CodecConfig, SpectralConfig
from .phase import HarmonicSourcePhase, build_phase_model, rename_phase_tensors
from .stft import same_padding, same_stft


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
        return same_stft(wav, self.n_fft, self.hop, self.window)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        b, c, n = wav.shape
        spec = self.stft(wav.reshape(b * c, n))
        mag = spec.abs()  # (B*C, bins, T)
        compressed = spec * (mag + 1e-5).pow(-0.7)  # |X|^0.3 with X's phase
        feats = torch.cat([torch.log(mag + 1e-5), compressed.real, compressed.imag], dim=1)
        feats = feats.reshape(b, -1, feats.shape[-1])  # (B, C * 3 * bins, T): channels stacked
        return self.proj(self.backbone(feats)).transpose(1, 2)  # (B, dimension, T)


@dataclass
class DecoderOutput:
    audio: torch.Tensor  # (B, C, T * hop)
    pitch: torch.Tensor | None = None  # (B * C, PITCH_BINS + 1, T): f0 class logits and, last, voicing logit
    source_phase: torch.Tensor | None = None  # (B, C, T + 1) float64: the source's phase at every frame start


class SpectralDecoder(nn.Module):
    """Latent (B, dimension, T) -> waveform (B, channels, T * hop) through an inverse STFT.

    The head predicts each channel's log magnitude and phase per bin (Vocos); the phase model of `spectral.phase`
    (`tokenizer.modules.phase`) turns the head's phases into those of the inverse FFT, e.g. with the phase of a
    harmonic source in voiced bins. The waveform is the windowed overlap-add of the inverse FFTs, divided by the
    window's squared overlap (exact inverse of the encoder's STFT).

    The phase model's tensors are `phase.*`; files that name them as the decoder's own (`pitch_head.*`,
    `edge_offset.*`, `voiced_offset.*`, `voiced_offset_mlp.*`) load too (`phase.rename_phase_tensors`).
    """

    def __init__(self, config: CodecConfig):
        super().__init__()
        s = config.spectral
        self.hop = config.hop_length
        self.n_fft = s.n_fft
        self.sample_rate = config.sample_rate
        self.channels = config.channels
        self.bins = s.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(s.n_fft), persistent=False)
        self.backbone = ConvNeXtStack(config.dimension, s, embed_kernel=s.kernel_size)
        self.head = nn.Linear(s.dim, 2 * self.bins * config.channels)
        self.phase = build_phase_model(s.phase, config)
        self.context_frames = self.backbone.reach + math.ceil(s.n_fft / self.hop) + self.phase.context_frames
        self.period = self.phase.period  # spans that start at a multiple of this decode as the whole sequence does
        self.pitch_phase = isinstance(self.phase, HarmonicSourcePhase)
        self._register_load_state_dict_pre_hook(_rename_phase_tensors)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.run(latent).audio

    def run(self, latent: torch.Tensor, source_phase: tuple[int, torch.Tensor] | None = None,
            pitch: torch.Tensor | None = None) -> DecoderOutput:
        """Decode, with the pitch head's outputs and the harmonic source's phases of a harmonic-source decoder.

        Args:
            latent: (B, dimension, T).
            source_phase: (frame, phase (B, C)): the source's phase at the start of frame `frame` (default 0 at
                frame 0). Decoding a span anchored where the previous span's `source_phase` left off continues it.
            pitch: (B * C, 2, T) f0 in Hz and voicing (1 voiced, 0 not) to drive the source instead of the
                pitch head's prediction (teacher forcing in training).
        """
        b, _, t = latent.shape
        feats = self.backbone(latent)  # (B, T, dim)
        h = self.head(feats)  # (B, T, 2 * C * bins)
        h = h.view(b, t, self.channels, 2, self.bins).permute(0, 2, 3, 4, 1).reshape(b * self.channels, 2, self.bins, t)
        # (B*C, bins, T); at most 1e2 as Vocos, clamped before exp so that an overflow cannot make 0 * inf gradients
        mag = h[:, 0].clamp(max=math.log(1e2)).exp()
        out = self.phase(feats, h[:, 1], anchor=source_phase, pitch=pitch)
        source = None if out.source_phase is None else out.source_phase.view(b, self.channels, t + 1)
        audio = self.inverse_stft(torch.polar(mag, out.phase)).reshape(b, self.channels, t * self.hop)
        return DecoderOutput(audio, out.pitch, source)

    def inverse_stft(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex (M, bins, T) -> (M, T * hop) samples; the exact inverse of `SpectralEncoder.stft`."""
        t = spec.shape[-1]
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # (M, n_fft, T)
        start = same_padding(self.n_fft, self.hop)
        keep = slice(start, start + t * self.hop)
        # Trimmed before dividing: the envelope is 0 at the outer edges, where 0 / 0 would poison the gradients.
        envelope = self._overlap_add(self.window.pow(2)[None, :, None].expand(1, -1, t))[..., keep]
        return self._overlap_add(frames)[..., keep] / envelope

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(M, n_fft, T) -> (M, (T - 1) * hop + n_fft): frame t added at sample t * hop."""
        length = (frames.shape[-1] - 1) * self.hop + self.n_fft
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        return out[:, 0, 0]


def _rename_phase_tensors(state_dict: dict, prefix: str, *_) -> None:
    """load_state_dict pre-hook: the phase model's tensors under the names older files give them."""
    renamed = rename_phase_tensors(state_dict, prefix)
    state_dict.clear()
    state_dict.update(renamed)
