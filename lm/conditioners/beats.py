"""The beat track (music): the tempo a caption names, laid along its frames as beat phase.

Each audio position adds, through a zero-initialised projection, the cosine and sine of the tempo's beat phase at
its frame at four rates (a bar of 4 beats, 2 beats, the beat, half a beat) and the tempo's octave relative to
120 bpm. A tempo in the caption's digits ("at 128 bpm"), or failing that a tempo word ("a slow ballad"), is a few
text tokens the model must learn to turn into a period; the track hands it the period. An LM has this track when
its config sets `beat_track`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .base import TrackConditioner

MIN_BPM, MAX_BPM = 20.0, 400.0  # the tempos a caption can ask for
BEAT_RATES = (0.25, 0.5, 1.0, 2.0)  # cycles per beat of the sinusoids: a 4-beat bar .. half a beat
BEAT_FEATURES = 2 * len(BEAT_RATES) + 1  # cos and sin per rate, and log2(bpm / 120)
TASK = "music"  # the task whose captions name tempos

_TEMPO_PATTERNS = (
    re.compile(r"(?<![\w.])(\d{2,3}(?:\.\d+)?)\s*(?:bpm|beats\s+(?:per|a)\s+minute)\b", re.IGNORECASE),
    re.compile(r"\btempo\s*(?:of\s*|is\s*|at\s*|[:=]\s*)?(\d{2,3}(?:\.\d+)?)(?![\d.])", re.IGNORECASE),
)

# Tempo words, read when a caption names no tempo in digits: each word's bpm lies inside the tempos the music
# recipes caption with that feel (calm 60-84, happy 96-126, upbeat 112-140, energetic 126-168 bpm; drums 80-150)
# and inside the class `eval-music` checks it against (slow < 90, moderate 90-120, fast > 120 bpm).
# Whole words only ("breakfast" is not "fast", "fast-paced" is); the adverbs listed count as their adjective
# ("slowly" is slow).
# Only plain words are read: "not fast" reads as fast. Loudness words ("soft", "loud") are not tempo words.
_TEMPO_WORD_GROUPS = (
    (72.0, ("slow", "slowly", "calm", "calmly", "gentle", "gently", "relaxed", "relaxing", "peaceful", "lazy",
            "leisurely", "unhurried", "tranquil", "serene", "mellow", "soothing", "sleepy")),
    (104.0, ("moderate", "moderately", "medium", "mid-tempo", "midtempo", "steady", "steadily", "walking")),
    (128.0, ("lively", "upbeat", "quick", "quickly", "bouncy", "brisk", "briskly", "peppy", "sprightly")),
    (144.0, ("fast", "urgent", "energetic", "driving", "frantic", "frenetic", "rapid", "rapidly", "racing",
             "speedy", "hurried")),
)
TEMPO_WORDS: dict[str, float] = {word: bpm for bpm, words in _TEMPO_WORD_GROUPS for word in words}
"""Tempo words and the bpm each stands for (slow 72, moderate 104, lively 128, fast 144)."""
_TEMPO_WORD = re.compile(r"(?<!\w)(" + "|".join(sorted(map(re.escape, TEMPO_WORDS), key=len, reverse=True))
                         + r")(?!\w)", re.IGNORECASE)


def tempo_from_digits(text: str) -> float | None:
    """The tempo a caption names in digits, in beats per minute, or None when it names none.

    Understands "128 bpm", "128 BPM", "96 beats per minute" (or "a minute") and "tempo 128" / "tempo: 128" /
    "tempo of 128"; the first such mention wins. Values outside 20-400 bpm are not tempos and give None.
    """
    found = [(m.start(), float(m.group(1))) for pattern in _TEMPO_PATTERNS for m in pattern.finditer(text)]
    if not found:
        return None
    bpm = min(found)[1]
    return bpm if MIN_BPM <= bpm <= MAX_BPM else None


def tempo_word(text: str) -> tuple[str, float] | None:
    """The first tempo word of a caption (`TEMPO_WORDS`, case-insensitive, whole words) and its bpm, or None."""
    m = _TEMPO_WORD.search(text)
    return None if m is None else (m.group(1).lower(), TEMPO_WORDS[m.group(1).lower()])


def tempo_from_text(text: str) -> float | None:
    """The tempo a caption asks for, in beats per minute, or None when it names none.

    A tempo in digits (`tempo_from_digits`: "at 128 bpm", "96 beats per minute", "tempo 72") wins; without one
    (or with one outside 20-400 bpm), the first tempo word (`tempo_word`: "a slow piano ballad" is 72 bpm, "a fast
    drum groove" 144 bpm).
    """
    bpm = tempo_from_digits(text)
    if bpm is not None:
        return bpm
    word = tempo_word(text)
    return None if word is None else word[1]


@dataclass
class BeatTrack:
    """The requested tempo of each item, laid along its frames as beat phase.

    bpm: FloatTensor[B], beats per minute; 0 for a row without a tempo (speech, a caption that names none, a
        dropped condition). The first beat falls on frame 0. frame_offset: LongTensor[B] or None (0), the frame of
        the first audio position (the start of a training crop).
    """

    bpm: torch.Tensor
    frame_offset: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.bpm.dim() != 1:
            raise ValueError(f"a BeatTrack needs bpm [B], got shape {list(self.bpm.shape)}")
        if self.frame_offset is not None and self.frame_offset.shape != self.bpm.shape:
            raise ValueError(f"frame_offset must have bpm's shape {list(self.bpm.shape)}, got "
                             f"{list(self.frame_offset.shape)}")
        real = self.bpm[self.bpm != 0]
        if not bool(torch.isfinite(self.bpm).all()) or bool(((real < MIN_BPM) | (real > MAX_BPM)).any()):
            raise ValueError(f"bpm must be 0 (no tempo) or in [{MIN_BPM:g}, {MAX_BPM:g}], got {self.bpm.tolist()}")

    @property
    def batch_size(self) -> int:
        return self.bpm.shape[0]

    def without(self, drop: torch.Tensor) -> BeatTrack:
        """The same track with the rows where drop BoolTensor[B] is True emptied (no tempo)."""
        return BeatTrack(self.bpm.masked_fill(drop.to(self.bpm.device), 0.0), self.frame_offset)


class BeatConditioner(TrackConditioner):
    """Builds `BeatTrack`s from captions (`track`) and embeds them: the beat phase features of each frame through a
    projection that starts at zero."""

    name = "beat"
    flat_names = {"beat_projection": "projection"}

    def __init__(self, config) -> None:
        super().__init__(config)
        self.frame_rate = float(config.frame_rate)
        self.projection = nn.Linear(BEAT_FEATURES, config.hidden_size, bias=False)

    @classmethod
    def enabled(cls, config) -> bool:
        return bool(config.beat_track)

    @classmethod
    def config_changes(cls, config) -> dict:
        return {"beat_track": True}

    def track(self, texts: Sequence[str], tasks: Sequence[str | None] | str | None, frame_offset=None) -> BeatTrack:
        """The track of a batch: the tempo each music text names (`tempo_from_text`; rows of other tasks, and
        captions that name none, get no tempo). `frame_offset` (ints [B], None: 0) is the frame of each item's
        first audio position; the first beat falls on frame 0."""
        tasks = [tasks] * len(texts) if tasks is None or isinstance(tasks, str) else list(tasks)
        if len(tasks) != len(texts):
            raise ValueError(f"got {len(tasks)} tasks for {len(texts)} texts")
        bpm = [(tempo_from_text(text) or 0.0) if task == TASK else 0.0 for text, task in zip(texts, tasks)]
        offset = None if frame_offset is None else torch.as_tensor(frame_offset, dtype=torch.long).reshape(-1)
        return BeatTrack(torch.tensor(bpm, dtype=torch.float32), offset)

    def forward(self, track: BeatTrack, num_positions: int) -> torch.Tensor:
        """FloatTensor[B, num_positions, D]: what the track adds at audio positions 0.. (position s predicts frame
        frame_offset + s); zeros for rows without a tempo."""
        device = self.projection.weight.device
        bpm = track.bpm.to(device, torch.float64)
        offset = torch.zeros_like(bpm, dtype=torch.long) if track.frame_offset is None else \
            track.frame_offset.to(device)
        frame = offset.unsqueeze(1) + torch.arange(num_positions, device=device)  # (B, S)
        beats = frame.double() / self.frame_rate * bpm.unsqueeze(1) / 60.0  # (B, S) beats since frame 0
        angle = 2 * torch.pi * beats.unsqueeze(2) * torch.tensor(BEAT_RATES, device=device, dtype=torch.float64)
        octave = torch.log2(bpm.clamp(min=MIN_BPM) / 120.0)[:, None, None].expand(-1, num_positions, 1)
        features = torch.cat([angle.cos(), angle.sin(), octave], dim=2)  # (B, S, BEAT_FEATURES)
        keep = (bpm > 0).unsqueeze(1) & (frame >= 0)  # (B, S)
        features = (features * keep.unsqueeze(2)).to(self.projection.weight.dtype)
        return self.projection(features)
