"""The narrow view of an audio tokenizer that the LM and the pipelines depend on.

Any codec that honours this protocol can stand behind the LM; rvqaudio's own is `tokenizer.RVQCodec`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class AudioTokenizer(Protocol):
    @property
    def sample_rate(self) -> int:
        """Waveform sample rate in Hz."""

    @property
    def channels(self) -> int:
        """Waveform channels (1 mono, 2 stereo)."""

    @property
    def frame_rate(self) -> float:
        """Frames of codes per second (Hz)."""

    @property
    def num_codebooks(self) -> int:
        """K, the number of codebooks (residual levels)."""

    @property
    def codebook_size(self) -> int:
        """Entries per codebook; codes lie in [0, codebook_size)."""

    @property
    def fingerprint(self) -> str:
        """A short string that identifies the code space; two codecs with equal fingerprints share codes."""

    def encode(self, wav: torch.Tensor, sample_rate: int | None = None,
               num_codebooks: int | None = None) -> torch.Tensor:
        """FloatTensor[B, C, N] (or [C, N], [N]) at `sample_rate` -> LongTensor[B, K, T]."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, K', T] with K' <= num_codebooks -> FloatTensor[B, C, N]."""
