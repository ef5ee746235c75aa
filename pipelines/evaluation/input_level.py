"""The level of a codec's input: a held-out clip brought to a stated loudness, or driven into clipping, before any
system codes it.

Real files arrive quiet (-30 dBFS RMS is common for a distant microphone), loud, or clipped; a codec that has heard
only normalised audio may lose more on them than a classical codec. `InputLevel` turns each reference clip into
such a file: scaled to an RMS level in dBFS (0 dBFS = the RMS of a square wave at full scale; speech peaks sit
15-20 dB above its RMS), optionally pushed further by a gain into hard clipping, and always limited to full scale
as a 16-bit file would hold it. `evaluate_codec(level=...)` scores every system against that version, so the
figures say what each system loses on a file at that level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class InputLevel:
    """level_dbfs: RMS level of the clip after scaling, in dBFS (<= 0; e.g. -30, -20, -10); None keeps its level.
    clip_db: a further gain in dB (> 0) after which samples beyond full scale are cut off (hard clipping); None:
    no extra gain. Samples beyond full scale are clipped in every case, as a file stores them."""

    level_dbfs: float | None = None
    clip_db: float | None = None

    def __post_init__(self) -> None:
        for name in ("level_dbfs", "clip_db"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number of dB or None, got {value!r}")
        if self.level_dbfs is not None and self.level_dbfs > 0:
            raise ValueError(f"level_dbfs must be <= 0 dBFS (an RMS above full scale cannot be stored), "
                             f"got {self.level_dbfs!r}")
        if self.clip_db is not None and self.clip_db <= 0:
            raise ValueError(f"clip_db must be > 0 dB of gain into clipping, got {self.clip_db!r}")

    @property
    def name(self) -> str:
        """e.g. "as recorded", "-30 dBFS", "-20 dBFS +12 dB clipped"."""
        parts = ["as recorded" if self.level_dbfs is None else f"{self.level_dbfs:g} dBFS"]
        if self.clip_db is not None:
            parts.append(f"+{self.clip_db:g} dB clipped")
        return " ".join(parts)

    def apply(self, wav: torch.Tensor) -> tuple[torch.Tensor, float]:
        """wav FloatTensor[C, N] -> (the clip at this level, limited to [-1, 1]; the share of its samples that were
        clipped). A silent clip stays silent."""
        out = wav.float()
        if self.level_dbfs is not None:
            rms = float(out.pow(2).mean().sqrt())
            if rms > 0:
                out = out * (10 ** (self.level_dbfs / 20) / rms)
        if self.clip_db is not None:
            out = out * 10 ** (self.clip_db / 20)
        clipped = float((out.abs() > 1).float().mean()) if out.numel() else 0.0
        return out.clamp(-1.0, 1.0), clipped

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"name": self.name}
