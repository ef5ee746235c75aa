"""Near-silence in generated music: how much of a clip is (almost) silent, and the longest silent gap.

A frame is near-silent when its RMS (over all channels) is below `threshold` (full scale 1.0); frames are
`frame_seconds` long and do not overlap. A clip of music should play for most of its duration, unless its
caption asks for sparseness (`SPARSE_WORDS`): `near_silence_summary` reports those captions apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

SILENCE_THRESHOLD = 0.01  # RMS, full scale 1.0 (-40 dBFS)
SILENCE_FRAME_SECONDS = 0.046
SILENCE_LIMIT = 0.1  # a clip with more than this share of near-silent frames counts as too quiet
# Caption words that ask for sparse or quiet music: such clips may be near-silent by request.
SPARSE_WORDS = frozenset({"sparse", "sparsely", "quiet", "silence", "silent", "pauses", "minimal", "ambient"})


def near_silence(wav: torch.Tensor | np.ndarray, sample_rate: int, threshold: float = SILENCE_THRESHOLD,
                 frame_seconds: float = SILENCE_FRAME_SECONDS) -> dict[str, float | int]:
    """The share of near-silent frames of a clip and its longest near-silent gap.

    Args:
        wav: `[N]` or `[C, N]` samples, full scale 1.0.
        sample_rate: Hz.
        threshold: a frame is near-silent when its RMS over all its channels and samples is below this.
        frame_seconds: frame length in seconds; the hop equals the frame. A last partial frame counts with its
            own samples.

    Returns `share` (near-silent frames / frames, in [0, 1]), `longest_gap` (seconds, the longest run of
    consecutive near-silent frames) and `frames`. An empty clip is all silence: share 1, longest gap 0 s.
    """
    if sample_rate <= 0 or frame_seconds <= 0 or threshold < 0:
        raise ValueError(f"near_silence needs sample_rate > 0, frame_seconds > 0 and threshold >= 0; got "
                         f"{sample_rate}, {frame_seconds}, {threshold}")
    x = wav.detach().cpu().double().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"near_silence expects a waveform [N] or [C, N], got shape {tuple(x.shape)}")
    n = x.shape[1]
    if n == 0:
        return {"share": 1.0, "longest_gap": 0.0, "frames": 0}
    hop = max(1, round(frame_seconds * sample_rate))
    starts = np.arange(0, n, hop)
    lengths = np.diff(np.append(starts, n))  # samples per frame (the last may be partial)
    power = np.add.reduceat((x ** 2).sum(axis=0), starts) / (lengths * x.shape[0])
    silent = np.sqrt(power) < threshold
    longest = run = 0
    for is_silent, length in zip(silent, lengths):
        run = run + length if is_silent else 0
        longest = max(longest, run)
    return {"share": float(silent.mean()), "longest_gap": longest / sample_rate, "frames": len(silent)}


def asks_for_sparseness(caption: str | None) -> bool:
    """Whether a caption holds one of `SPARSE_WORDS` (case-insensitive, whole words)."""
    return bool(caption) and not SPARSE_WORDS.isdisjoint(re.findall(r"[a-z]+", caption.lower()))


def near_silence_summary(items: Sequence[Mapping[str, Any]], limit: float = SILENCE_LIMIT) -> dict[str, Any]:
    """Summarise per-clip near-silence (items with `near_silence` share, `longest_silence` s, `text`, and
    optionally `seed`).

    Returns `clips`, `over_limit` (share of clips with more than `limit` near-silent frames), `over_limit_clips`,
    `median_share`, `worst` (`text`, `seed`, `share`, `longest_gap` of the clip with the largest share; None with
    no clips), over the captions that do not ask for sparseness; `sparse_captions` holds the same for those that
    do (`asks_for_sparseness`). Also `limit`, `threshold` and `frame_seconds`.
    """
    plain = [i for i in items if not asks_for_sparseness(i.get("text"))]
    sparse = [i for i in items if asks_for_sparseness(i.get("text"))]
    return {**_summary(plain, limit), "sparse_captions": _summary(sparse, limit), "limit": limit,
            "threshold": SILENCE_THRESHOLD, "frame_seconds": SILENCE_FRAME_SECONDS}


def _summary(items: Iterable[Mapping[str, Any]], limit: float) -> dict[str, Any]:
    items = list(items)
    shares = [i["near_silence"] for i in items]
    over = sum(s > limit for s in shares)
    worst = max(items, key=lambda i: (i["near_silence"], i["longest_silence"]), default=None)
    return {"clips": len(items), "over_limit": over / len(items) if items else 0.0, "over_limit_clips": over,
            "median_share": float(np.median(shares)) if shares else 0.0,
            "worst": None if worst is None else {"text": worst.get("text"), "seed": worst.get("seed"),
                                                 "share": worst["near_silence"],
                                                 "longest_gap": worst["longest_silence"]}}
