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
from ..pitch import PITCH_BINS, PITCH_RANGE_HZ, f0_from_logits, harmonic_source

PITCH_PHASE_MAX_HZ = 5000.0  # pitch-phase decoders: voiced bins below this take the harmonic source's phase
_SOURCE_MAX_HZ = 6000.0  # the source's partials reach past that band, so bins at its edge see whole peaks
_F0_GRID = 16.0  # steps per Hz of the f0 that drives the source


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


def _stft(wav: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """(M, N) samples, N a multiple of hop -> complex (M, bins, N / hop), frame t centred on hop t."""
    pad = _same_padding(n_fft, hop)
    return torch.stft(F.pad(wav, (pad, pad)), n_fft, hop, window=window, center=False, return_complex=True)


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
        return _stft(wav, self.n_fft, self.hop, self.window)

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

    The head predicts each channel's log magnitude and phase per bin (Vocos); the waveform is the windowed
    overlap-add of the inverse FFTs, divided by the window's squared overlap (exact inverse of the encoder's STFT).
    With `spectral.pitch_phase` a second head predicts f0 and voicing per frame, and voiced bins below
    `PITCH_PHASE_MAX_HZ` take their phase from the STFT of a harmonic source driven by that f0 (`run`). With
    `spectral.edge_phase` as well, those bins in the frame on each side of a voiced run take the source's phase
    plus an offset predicted from the frame's features (zero at initialisation: the source's phase itself), or
    with `spectral.edge_offsets` false the source's phase itself. With `spectral.voiced_offsets`, voiced bins
    in the band take the source's phase plus a residual predicted from the frame's features (zero at
    initialisation): a linear map, plus a one-hidden-layer branch with `spectral.voiced_offset_hidden`.
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
        self.context_frames = self.backbone.reach + math.ceil(s.n_fft / self.hop)
        self.frequency_invariant = s.frequency_invariant_phase
        # Frame t's phase offset at bin k is 2 pi k t hop / n_fft: it repeats every `period` frames.
        self.period = s.n_fft // math.gcd(s.n_fft, self.hop) if self.frequency_invariant else 1
        self.pitch_head = None
        if s.pitch_phase:
            # f0 as PITCH_BINS classes plus a voicing logit per channel and frame: classes learn pitch far faster
            # and finer than a regression of log f0 (measured on the bundled decoder's features: 88% against 55%
            # of voiced frames within 5% of YIN's f0).
            self.pitch_head = nn.Sequential(nn.Linear(s.dim, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                                            nn.Linear(256, (PITCH_BINS + 1) * config.channels))
            freqs = torch.arange(self.bins) * config.sample_rate / s.n_fft
            self.register_buffer("low_band", freqs < PITCH_PHASE_MAX_HZ, persistent=False)
            self.n_low = int(self.low_band.sum())  # the band is bins [0, n_low)
        self.edge_phase = s.edge_phase
        # Offsets from the source's phase of the band's bins, per channel: at voicing edges, and in voiced frames.
        self.edge_offset = self._offset_layer(s.dim, config.channels) if s.edge_phase and s.edge_offsets else None
        self.voiced_offset = self._offset_layer(s.dim, config.channels) if s.voiced_offsets else None
        self.voiced_offset_mlp = None  # a second, nonlinear residual branch beside the linear one
        if s.voiced_offset_hidden:
            self.voiced_offset_mlp = nn.Sequential(nn.Linear(s.dim, s.voiced_offset_hidden), nn.GELU(),
                                                   self._offset_layer(s.voiced_offset_hidden, config.channels))
        if s.edge_phase:
            self.context_frames += 1  # a frame is an edge by its neighbours' voicing

    def _offset_layer(self, width: int, channels: int) -> nn.Linear:
        """Per-frame phase offsets of the band's bins for every channel from `width` features, zero at
        initialisation."""
        layer = nn.Linear(width, self.n_low * channels)
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.run(latent).audio

    def run(self, latent: torch.Tensor, source_phase: tuple[int, torch.Tensor] | None = None,
            pitch: torch.Tensor | None = None) -> DecoderOutput:
        """Decode, with the pitch head's outputs and the harmonic source's phases of a pitch-phase decoder.

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
        phase = h[:, 1]
        if self.frequency_invariant:
            phase = phase + self._frame_phase_offsets(t).to(phase.dtype)
        pitch_out = source_phase_out = None
        if self.pitch_head is not None:
            pitch_out = self.pitch_logits(feats)
            edge_offset = None
            if self.edge_offset is not None:
                edge_offset = self._per_channel(self.edge_offset(feats))
            elif self.edge_phase:
                edge_offset = feats.new_zeros(b * self.channels, self.n_low, t)
            voiced_offset = None
            if self.voiced_offset is not None:
                residual = self.voiced_offset(feats)
                if self.voiced_offset_mlp is not None:
                    residual = residual + self.voiced_offset_mlp(feats)
                voiced_offset = self._per_channel(residual)
            phase, source_phase_out = self._source_phase(phase, pitch_out.detach() if pitch is None else pitch,
                                                         predicted=pitch is None, anchor=source_phase,
                                                         edge_offset=edge_offset, voiced_offset=voiced_offset)
            source_phase_out = source_phase_out.view(b, self.channels, t + 1)
        audio = self.inverse_stft(torch.polar(mag, phase)).reshape(b, self.channels, t * self.hop)
        return DecoderOutput(audio, pitch_out, source_phase_out)

    def pitch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The pitch head on backbone features (B, T, dim): (B * C, PITCH_BINS + 1, T) f0 class logits and, last,
        the voicing logit of every channel and frame."""
        return self._per_channel(self.pitch_head(features))

    def _per_channel(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C * width) per-frame outputs, channels outermost -> (B * C, width, T)."""
        b, t, _ = x.shape
        return x.view(b, t, self.channels, -1).permute(0, 2, 3, 1).reshape(b * self.channels, -1, t)

    def _source_phase(self, phase: torch.Tensor, pitch: torch.Tensor, predicted: bool,
                      anchor: tuple[int, torch.Tensor] | None,
                      edge_offset: torch.Tensor | None = None,
                      voiced_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's phases (B*C, bins, T) with voiced low bins replaced by the harmonic source's, and the
        source's phase (B*C, T + 1) at every frame start. With `edge_offset` (B*C, n_low, T), the low bins of
        unvoiced frames next to a voiced one take the source's phase plus that offset; with `voiced_offset`
        (B*C, n_low, T), voiced low bins take the source's phase plus that one."""
        if predicted:
            f0, voiced = f0_from_logits(pitch[:, :PITCH_BINS]), pitch[:, PITCH_BINS] > 0
        else:
            f0, voiced = pitch[:, 0], pitch[:, 1] > 0.5
        # On a grid of 1/16 Hz (under a cent above 50 Hz): a rounding difference in f0 between a span and the
        # whole sequence would otherwise accumulate in the phase, and chunked decoding would drift from whole.
        f0 = (f0.float().clamp(*PITCH_RANGE_HZ) * _F0_GRID).round() / _F0_GRID
        frame, start = (0, None) if anchor is None else (anchor[0], anchor[1].reshape(-1))
        source, source_phase = harmonic_source(f0, self.hop, self.sample_rate,
                                               min(_SOURCE_MAX_HZ, self.sample_rate / 2), frame, start)
        source_angle = _stft(source, self.n_fft, self.hop, self.window.double()).angle().to(phase.dtype)
        low = self.low_band[None, :, None]
        voiced_phase = source_angle
        if voiced_offset is not None:
            voiced_phase = source_angle + F.pad(voiced_offset, (0, 0, 0, self.bins - self.n_low))
        phase = torch.where(voiced[:, None, :] & low, voiced_phase, phase)
        if edge_offset is not None:
            edge = (F.max_pool1d(voiced[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0) & ~voiced
            offset = F.pad(edge_offset, (0, 0, 0, self.bins - self.n_low))
            phase = torch.where(edge[:, None, :] & low, source_angle + offset, phase)
        return phase, source_phase

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
