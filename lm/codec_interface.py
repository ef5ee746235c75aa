"""The narrow view of an audio tokenizer that the LM and the pipelines depend on.

Any codec that honours this protocol can stand behind the LM; rvqaudio's own is `tokenizer.RVQCodec`.
"""

from __future__ import annotations

import warnings
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


def same_code_space(stored: str | None, codec: AudioTokenizer, what: str) -> bool:
    """Whether a fingerprint stored with codes or an LM (`stored`) is `codec`'s. A codec may also expose
    `legacy_fingerprint`, an older, weaker fingerprint it accepts with a warning naming `what` (e.g. a file)."""
    if stored == codec.fingerprint:
        return True
    legacy = getattr(codec, "legacy_fingerprint", None)
    if stored is not None and legacy is not None and stored == legacy:
        warnings.warn(f"{what} carries the codec fingerprint {stored!r} of an older rvqaudio, which names the codec's "
                      f"config but not its weights: it cannot be checked against this codec's weights "
                      f"({codec.fingerprint!r}); re-encode (or re-save) it to store the new fingerprint",
                      stacklevel=3)
        return True
    return False
