"""Codebook interleaving patterns: how the K codes of each frame are laid out as a sequence of LM steps.

The LM predicts one *step* at a time, and every step has one slot per codebook (K heads). A pattern decides
which frame each slot holds, or that the slot is empty:

    layout(T)[k, s] = t   # slot k of step s holds codebook k of frame t
    layout(T)[k, s] = -1  # slot k of step s is empty

Every (codebook, frame) pair appears in exactly one slot. Patterns are pure and parameter-free; `apply` and
`revert` are exact inverses, and `frames_complete` tells a streaming decoder how many leading frames are
whole after the first `s` steps.

    parallel      all K codebooks of frame t at step t                      S = T
    delay         codebook k of frame t at step t + delays[k] (MusicGen)    S = T + max(delays)
    flatten       codebook k of frame t at step t * K + k                   S = T * K
    coarse_first  codebook 0 of every frame first (steps 0..T-1), then the
                  other K-1 codebooks of frame t at step T + t (VALL-E's
                  AR/NAR split, both stages autoregressive here)            S = 2 T   (S = T when K = 1)

Generation relies on two properties that every pattern here has (and the tests check): codebook 0 of a frame
is never laid out after another codebook of that frame, so the end of the audio is known before any slot of
the end frame is filled; and `layout(n)` agrees with `layout(m)`, m > n, on every step up to the step where
codebook 0 of frame n - 1 is placed.
"""

from __future__ import annotations

import bisect
from functools import lru_cache

import torch


class CodebookPattern:
    """Base class: subclasses define `num_steps` and `_layout`; `apply`, `revert`, `frames_complete` follow."""

    name: str = ""

    def __init__(self, num_codebooks: int) -> None:
        if not isinstance(num_codebooks, int) or num_codebooks < 1:
            raise ValueError(f"num_codebooks must be an integer >= 1, got {num_codebooks!r}")
        self.num_codebooks = num_codebooks

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_codebooks={self.num_codebooks})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))

    # -- what a subclass defines ------------------------------------------------------------------------

    def num_steps(self, num_frames: int) -> int:
        """S, the number of steps that lay out `num_frames` frames."""
        raise NotImplementedError

    def _layout(self, num_frames: int) -> torch.Tensor:
        """LongTensor[K, S]: frame index held by each slot, -1 for an empty slot."""
        raise NotImplementedError

    # -- derived ------------------------------------------------------------------------------------------

    def layout(self, num_frames: int) -> torch.Tensor:
        """LongTensor[K, S] (S = num_steps(num_frames)): the frame each slot holds, -1 where the slot is empty.

        Cached per `num_frames`; the returned tensor is shared, do not modify it.
        """
        if not isinstance(num_frames, int) or num_frames < 0:
            raise ValueError(f"num_frames must be an integer >= 0, got {num_frames!r}")
        return _cached_layout(self, num_frames)

    def apply(self, codes: torch.Tensor, empty: int) -> torch.Tensor:
        """Lay out codes as steps.

        codes: LongTensor[B, K, T]. Returns LongTensor[B, K, S] with S = num_steps(T), empty slots set to `empty`.
        """
        batch, k, num_frames = self._check_codes(codes)
        index = self.layout(num_frames).to(codes.device)  # (K, S)
        filled = index >= 0
        gathered = codes.gather(2, index.clamp(min=0).unsqueeze(0).expand(batch, k, -1))  # (B, K, S)
        return torch.where(filled, gathered, torch.full_like(gathered, empty))

    def revert(self, steps: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Inverse of `apply`: steps LongTensor[B, K, S] with S = num_steps(num_frames) -> codes [B, K, num_frames]."""
        if steps.dim() != 3 or steps.shape[1] != self.num_codebooks:
            raise ValueError(f"steps must be [B, {self.num_codebooks}, S], got shape {list(steps.shape)}")
        expected = self.num_steps(num_frames)
        if steps.shape[2] != expected:
            raise ValueError(f"{num_frames} frames take {expected} steps with {self!r}, got {steps.shape[2]} steps")
        index = self.layout(num_frames).to(steps.device)  # (K, S)
        codes = steps.new_zeros(steps.shape[0], self.num_codebooks, num_frames)
        filled = index >= 0
        # Each (k, t) sits in exactly one slot, so scattering the filled slots back covers every entry once.
        for k in range(self.num_codebooks):
            codes[:, k, index[k, filled[k]]] = steps[:, k, filled[k]]
        return codes

    def frames_complete(self, num_steps: int, num_frames: int) -> int:
        """How many leading frames have all K codebooks filled once steps 0..num_steps-1 are known."""
        return bisect.bisect_right(_ready_steps_list(self, num_frames), num_steps)

    def _check_codes(self, codes: torch.Tensor) -> tuple[int, int, int]:
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise ValueError(f"codes must be [B, {self.num_codebooks}, T], got shape {list(codes.shape)}")
        return codes.shape[0], codes.shape[1], codes.shape[2]


@lru_cache(maxsize=256)
def _cached_layout(pattern: CodebookPattern, num_frames: int) -> torch.Tensor:
    layout = pattern._layout(num_frames)
    assert layout.shape == (pattern.num_codebooks, pattern.num_steps(num_frames)), "pattern layout has wrong shape"
    return layout


@lru_cache(maxsize=256)
def _ready_steps(pattern: CodebookPattern, num_frames: int) -> torch.Tensor:
    """LongTensor[T]: the number of steps after which frames 0..t are all complete (non-decreasing)."""
    layout = pattern.layout(num_frames)  # (K, S)
    last = torch.full((num_frames,), -1, dtype=torch.long)
    step = torch.arange(layout.shape[1]).expand_as(layout)
    filled = layout >= 0
    last.scatter_reduce_(0, layout[filled], step[filled], reduce="amax")
    return torch.cummax(last + 1, dim=0).values if num_frames else last


@lru_cache(maxsize=256)
def _ready_steps_list(pattern: CodebookPattern, num_frames: int) -> tuple[int, ...]:
    """`_ready_steps` as a tuple: decoding asks after every step, and a bisection over it costs no tensor ops."""
    return tuple(_ready_steps(pattern, num_frames).tolist())


class ParallelPattern(CodebookPattern):
    """All K codebooks of frame t at step t: the fewest steps, but codebooks of one frame ignore each other."""

    name = "parallel"

    def num_steps(self, num_frames: int) -> int:
        return num_frames

    def _layout(self, num_frames: int) -> torch.Tensor:
        return torch.arange(num_frames).expand(self.num_codebooks, num_frames).clone()


class DelayPattern(CodebookPattern):
    """Codebook k of frame t at step t + delays[k] (MusicGen's default: delays = 0, 1, ..., K - 1)."""

    name = "delay"

    def __init__(self, num_codebooks: int, delays: list[int] | tuple[int, ...] | None = None) -> None:
        super().__init__(num_codebooks)
        delays = tuple(range(num_codebooks)) if delays is None else tuple(int(d) for d in delays)
        if len(delays) != num_codebooks:
            raise ValueError(f"delays must give one delay per codebook ({num_codebooks}), got {list(delays)}")
        if delays[0] != 0 or min(delays) < 0:
            # Codebook 0 must come first in every frame: its end-of-audio decides where the audio stops.
            raise ValueError(f"delays must be >= 0 with delays[0] == 0, got {list(delays)}")
        self.delays = delays

    def __repr__(self) -> str:
        return f"DelayPattern(num_codebooks={self.num_codebooks}, delays={list(self.delays)})"

    def num_steps(self, num_frames: int) -> int:
        return num_frames + max(self.delays) if num_frames else 0

    def _layout(self, num_frames: int) -> torch.Tensor:
        steps = torch.arange(self.num_steps(num_frames))
        frames = steps.unsqueeze(0) - torch.tensor(self.delays).unsqueeze(1)  # (K, S)
        return torch.where((frames >= 0) & (frames < num_frames), frames, -1)


class FlattenPattern(CodebookPattern):
    """One code per step, frame by frame: codebook k of frame t at step t * K + k (slot k; the rest empty)."""

    name = "flatten"

    def num_steps(self, num_frames: int) -> int:
        return num_frames * self.num_codebooks

    def _layout(self, num_frames: int) -> torch.Tensor:
        k = self.num_codebooks
        layout = torch.full((k, num_frames * k), -1, dtype=torch.long)
        for codebook in range(k):
            layout[codebook, codebook::k] = torch.arange(num_frames)
        return layout


class CoarseFirstPattern(CodebookPattern):
    """Codebook 0 of all frames first, then codebooks 1..K-1 of frame t together at step T + t.

    VALL-E's split of the first (coarse) codebook from the rest; here both stages are autoregressive, and
    the second stage sees the whole first-stage sequence. With K = 1 it is the parallel pattern.
    """

    name = "coarse_first"

    def num_steps(self, num_frames: int) -> int:
        return num_frames * (2 if self.num_codebooks > 1 else 1)

    def _layout(self, num_frames: int) -> torch.Tensor:
        layout = torch.full((self.num_codebooks, self.num_steps(num_frames)), -1, dtype=torch.long)
        frames = torch.arange(num_frames)
        layout[0, :num_frames] = frames
        if self.num_codebooks > 1:
            layout[1:, num_frames:] = frames
        return layout


PATTERNS: dict[str, type[CodebookPattern]] = {
    cls.name: cls for cls in (DelayPattern, ParallelPattern, FlattenPattern, CoarseFirstPattern)
}


def build_pattern(name: str, num_codebooks: int) -> CodebookPattern:
    """The pattern called `name` ("delay", "parallel", "flatten" or "coarse_first") for K codebooks."""
    if name not in PATTERNS:
        raise ValueError(f"unknown codebook pattern {name!r}; known patterns are {sorted(PATTERNS)}")
    return PATTERNS[name](num_codebooks)
