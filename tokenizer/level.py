"""The level a file is coded at: brought to the level the codec codes best before encoding, and back after decoding.

A neural codec trained on audio near one level codes level as part of the sound: the bundled codec loses more than
Opus on quiet (-30 dBFS RMS), loud and clipped files, and most of that is level, not content (model card). Opus is
close to level-invariant; a file's level is one number, so the codec can be too. `CodecLevel` gives the gain that
brings a whole file to `target_dbfs` (its training data's level: about -18 dBFS RMS), applied before encoding and
undone after decoding. `rvqaudio encode` stores that gain in the codes file and `rvqaudio decode` undoes it; the
codes themselves are those of the file at the target level. `RVQCodec.encode` leaves levels alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_TARGET_DBFS = -18.0


@dataclass(frozen=True)
class CodecLevel:
    """target_dbfs: the RMS level in dBFS (<= 0; 0 dBFS = the RMS of a full-scale square wave) a file is brought to
    before encoding. max_gain_db: the most a file is raised or lowered (near-silent files are not raised into
    noise); a silent file keeps its level."""

    target_dbfs: float = DEFAULT_TARGET_DBFS
    max_gain_db: float = 30.0

    def __post_init__(self) -> None:
        for name in ("target_dbfs", "max_gain_db"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of dB, got {value!r}")
        if self.target_dbfs > 0:
            raise ValueError(f"target_dbfs must be <= 0 dBFS, got {self.target_dbfs!r}")
        if self.max_gain_db <= 0:
            raise ValueError(f"max_gain_db must be > 0 dB, got {self.max_gain_db!r}")

    def gain(self, rms: float) -> float:
        """The linear gain that brings audio of this RMS (full scale 1) to `target_dbfs`, within `max_gain_db`;
        1.0 for silence."""
        if not math.isfinite(rms) or rms < 0:
            raise ValueError(f"rms must be a finite number >= 0, got {rms!r}")
        if rms == 0:
            return 1.0
        db = self.target_dbfs - 20 * math.log10(rms)
        return 10 ** (max(-self.max_gain_db, min(self.max_gain_db, db)) / 20)

    def gain_for(self, wav: torch.Tensor) -> float:
        """The gain for a waveform (any shape; its RMS over every sample)."""
        return self.gain(rms_of(wav))


def rms_of(wav: torch.Tensor) -> float:
    """The RMS of every sample of `wav`, in float64 (0.0 for no samples)."""
    return float(wav.double().pow(2).mean().sqrt()) if wav.numel() else 0.0
