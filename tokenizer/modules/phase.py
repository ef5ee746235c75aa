"""Phase models of the spectral decoder: how the phases of its inverse STFT are stated.

The decoder's head predicts a log magnitude and a phase per bin and frame; a phase model turns the head's phases
into the ones the inverse FFT reads, from the backbone's features. One class per `spectral.phase` kind
(`tokenizer.config.PHASE_KINDS`), built by `build_phase_model`:

- `FramePhase` ("frame"): the head's phases as they are, relative to each frame's start (Vocos).
- `FrequencyInvariantPhase` ("frequency_invariant"): the head's phases relative to the signal's origin.
- `HarmonicSourcePhase` ("harmonic_source"): a pitch head predicts f0 and voicing per frame, and voiced bins below
  `PITCH_PHASE_MAX_HZ` take the phase of a harmonic source driven by that f0 (NSF-style), optionally also at
  voicing edges (`EdgePhaseConfig`) and with a learned residual in voiced frames (`VoicedPhaseConfig`).

Every model takes features (B, T, dim) and phases (B * C, bins, T) and returns a `PhaseOutput`. None changes what
codes mean: the phase model is outside the code space (the fingerprint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CodecConfig, FrequencyInvariantPhaseConfig, HarmonicSourcePhaseConfig, PhaseConfig
from ..pitch import PITCH_BINS, PITCH_RANGE_HZ, f0_from_logits, harmonic_source
from .stft import same_stft

PITCH_PHASE_MAX_HZ = 5000.0  # harmonic-source decoders: voiced bins below this take the source's phase
_SOURCE_MAX_HZ = 6000.0  # the source's partials reach past that band, so bins at its edge see whole peaks
_F0_GRID = 16.0  # steps per Hz of the f0 that drives the source

# Tensors of the harmonic-source model that older files name as the decoder's own (`decoder.pitch_head.0.weight`);
# they now sit in the decoder's phase model (`decoder.phase.pitch_head.0.weight`). `rename_phase_tensors` maps them.
LEGACY_PHASE_TENSORS = ("pitch_head.", "edge_offset.", "voiced_offset.", "voiced_offset_mlp.")


def rename_phase_tensors(state: dict[str, torch.Tensor], prefix: str = "decoder.") -> dict[str, torch.Tensor]:
    """`state` with the phase model's tensors under their names in `SpectralDecoder` at `prefix`: `prefix +
    "pitch_head.*"` (and the edge and voiced offsets) become `prefix + "phase.pitch_head.*"`; other names stay."""
    renamed = {}
    for key, value in state.items():
        rest = key[len(prefix):] if key.startswith(prefix) else ""
        renamed[prefix + "phase." + rest if rest.startswith(LEGACY_PHASE_TENSORS) else key] = value
    return renamed


@dataclass
class PhaseOutput:
    phase: torch.Tensor  # (B * C, bins, T): the phases of the inverse FFT
    pitch: torch.Tensor | None = None  # (B * C, PITCH_BINS + 1, T): f0 class logits and, last, the voicing logit
    source_phase: torch.Tensor | None = None  # (B * C, T + 1) float64: the source's phase at every frame start


class FramePhase(nn.Module):
    """The head's phases as they are."""

    period = 1  # decoding a span that starts at any frame reproduces a whole decode there
    context_frames = 0  # frames beyond the backbone's that an output frame depends on

    def forward(self, features: torch.Tensor, phase: torch.Tensor, anchor: tuple[int, torch.Tensor] | None = None,
                pitch: torch.Tensor | None = None) -> PhaseOutput:
        return PhaseOutput(phase)


class FrequencyInvariantPhase(nn.Module):
    """The head's phases relative to the signal's origin, turned into the frame-origin phases the inverse FFT
    expects by adding 2 pi k t hop / n_fft at bin k of frame t. That offset repeats every `period` frames."""

    context_frames = 0

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.bins = n_fft // 2 + 1
        self.period = n_fft // math.gcd(n_fft, hop)

    def forward(self, features: torch.Tensor, phase: torch.Tensor, anchor: tuple[int, torch.Tensor] | None = None,
                pitch: torch.Tensor | None = None) -> PhaseOutput:
        return PhaseOutput(phase + self.frame_offsets(phase.shape[-1], phase.device).to(phase.dtype))

    def frame_offsets(self, frames: int, device: torch.device) -> torch.Tensor:
        """(bins, frames): 2 pi k t hop / n_fft, from exact integers. Periodic in t with `self.period`."""
        k = torch.arange(self.bins, device=device)[:, None]
        t = torch.arange(frames, device=device)[None, :] % self.period
        return (k * t * self.hop % self.n_fft).float() * (2 * math.pi / self.n_fft)


class HarmonicSourcePhase(nn.Module):
    """A pitch head predicts f0 and voicing per frame; voiced bins below `PITCH_PHASE_MAX_HZ` (the band, bins
    [0, n_low)) take their phase from the STFT of a harmonic source driven by that f0, whose phase carries over from
    frame to frame. With `edge`, the band in the frame on each side of a voiced run takes the source's phase plus an
    offset (`edge_offset`, or zero with `edge.offsets` false); with `voiced`, voiced bins in the band take the
    source's phase plus a residual (`voiced_offset`, plus `voiced_offset_mlp` with `voiced.hidden`). The offset
    layers start at zero, so a decoder gaining one starts as it was."""

    period = 1

    def __init__(self, config: HarmonicSourcePhaseConfig, dim: int, n_fft: int, hop: int, sample_rate: int,
                 channels: int):
        super().__init__()
        self.n_fft, self.hop, self.sample_rate, self.channels = n_fft, hop, sample_rate, channels
        self.bins = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # f0 as PITCH_BINS classes plus a voicing logit per channel and frame: classes learn pitch far faster and
        # finer than a regression of log f0 (measured on the bundled decoder's features: 88% against 55% of voiced
        # frames within 5% of YIN's f0).
        self.pitch_head = nn.Sequential(nn.Linear(dim, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                                        nn.Linear(256, (PITCH_BINS + 1) * channels))
        freqs = torch.arange(self.bins) * sample_rate / n_fft
        self.register_buffer("low_band", freqs < PITCH_PHASE_MAX_HZ, persistent=False)
        self.n_low = int(self.low_band.sum())
        self.edge = config.edge is not None
        self.context_frames = 1 if self.edge else 0  # a frame is an edge by its neighbours' voicing
        self.edge_offset = self._offset_layer(dim) if self.edge and config.edge.offsets else None
        self.voiced_offset = self._offset_layer(dim) if config.voiced is not None else None
        self.voiced_offset_mlp = None  # a second, nonlinear residual branch beside the linear one
        if config.voiced is not None and config.voiced.hidden:
            hidden = config.voiced.hidden
            self.voiced_offset_mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), self._offset_layer(hidden))

    def _offset_layer(self, width: int) -> nn.Linear:
        """Per-frame phase offsets of the band's bins for every channel from `width` features, zero at first."""
        layer = nn.Linear(width, self.n_low * self.channels)
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    def forward(self, features: torch.Tensor, phase: torch.Tensor, anchor: tuple[int, torch.Tensor] | None = None,
                pitch: torch.Tensor | None = None) -> PhaseOutput:
        """Features (B, T, dim) and the head's phases (B * C, bins, T) -> phases with the source's in the band.

        `anchor` (frame, phase (B, C)): the source's phase at the start of frame `frame` (default 0 at frame 0).
        `pitch` (B * C, 2, T): f0 in Hz and voicing (1 voiced, 0 not) that drive the source instead of the pitch
        head's prediction (teacher forcing in training).
        """
        b, t = features.shape[0], features.shape[1]
        logits = self.pitch_logits(features)
        edge_offset = None
        if self.edge_offset is not None:
            edge_offset = self._per_channel(self.edge_offset(features))
        elif self.edge:
            edge_offset = features.new_zeros(b * self.channels, self.n_low, t)
        voiced_offset = None
        if self.voiced_offset is not None:
            residual = self.voiced_offset(features)
            if self.voiced_offset_mlp is not None:
                residual = residual + self.voiced_offset_mlp(features)
            voiced_offset = self._per_channel(residual)
        phase, source_phase = self.source_phase(phase, logits.detach() if pitch is None else pitch,
                                                predicted=pitch is None, anchor=anchor,
                                                edge_offset=edge_offset, voiced_offset=voiced_offset)
        return PhaseOutput(phase, logits, source_phase)

    def pitch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The pitch head on features (B, T, dim): (B * C, PITCH_BINS + 1, T) f0 class logits and, last, the
        voicing logit of every channel and frame."""
        return self._per_channel(self.pitch_head(features))

    def _per_channel(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C * width) per-frame outputs, channels outermost -> (B * C, width, T)."""
        b, t, _ = x.shape
        return x.view(b, t, self.channels, -1).permute(0, 2, 3, 1).reshape(b * self.channels, -1, t)

    def source_phase(self, phase: torch.Tensor, pitch: torch.Tensor, predicted: bool,
                     anchor: tuple[int, torch.Tensor] | None, edge_offset: torch.Tensor | None = None,
                     voiced_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's phases (B*C, bins, T) with voiced bins of the band replaced by the harmonic source's, and the
        source's phase (B*C, T + 1) at every frame start. `pitch` is the pitch head's logits when `predicted`, else
        (B*C, 2, T) f0 and voicing. With `edge_offset` (B*C, n_low, T), the band of unvoiced frames next to a voiced
        one takes the source's phase plus that offset; with `voiced_offset` (B*C, n_low, T), voiced bins of the band
        take the source's phase plus that one."""
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
        # "same" framing, as the encoder's STFT: frame t centred on hop t
        source_angle = same_stft(source, self.n_fft, self.hop, self.window.double()).angle().to(phase.dtype)
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


def build_phase_model(phase: PhaseConfig, config: CodecConfig) -> nn.Module:
    """The phase model of `spectral.phase` for a decoder of codec `config`."""
    s = config.spectral
    if isinstance(phase, HarmonicSourcePhaseConfig):
        return HarmonicSourcePhase(phase, s.dim, s.n_fft, config.hop_length, config.sample_rate, config.channels)
    if isinstance(phase, FrequencyInvariantPhaseConfig):
        return FrequencyInvariantPhase(s.n_fft, config.hop_length)
    return FramePhase()
