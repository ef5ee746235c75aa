"""The narrow view of an audio tokenizer that the LM and the pipelines depend on.

Any codec that honours this protocol can stand behind the LM; rvqaudio's own is `tokenizer.RVQCodec`. A codec may
also decode as codes arrive (`StreamingAudioTokenizer.stream_decoder`); `stream_decoder(codec)` gives its stream
decoder, or, for a codec without one, a decoder that returns every sample at the end.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class AudioTokenizer(Protocol):
    """What the LM requires of a codec. One that also has `stream_decoder` (`StreamingAudioTokenizer`) decodes
    as codes arrive; for others `stream_decoder(codec)` returns every sample at the end."""

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


@runtime_checkable
class StreamDecoder(Protocol):
    """Codes pushed piece by piece -> the samples that decoding them all at once gives, in order."""

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Add codes LongTensor[B, K', t] (t may be 0); return FloatTensor[B, C, n]: the samples that no later code
        can change and that were not returned before (n may be 0)."""

    def flush(self) -> torch.Tensor:
        """End the codes; return FloatTensor[B, C, n], every sample not yet returned."""


@runtime_checkable
class StreamingAudioTokenizer(AudioTokenizer, Protocol):
    """An `AudioTokenizer` that decodes codes as they arrive (rvqaudio's `tokenizer.RVQCodec` does)."""

    def stream_decoder(self, context: torch.Tensor | None = None) -> StreamDecoder:
        """A fresh `StreamDecoder`; the concatenation of its pushes and its flush equals `decode` of all the
        codes pushed, minus the samples of `context`: LongTensor[B, K, t0], codes before them (e.g. an audio
        prompt's) that are decoded as left context, their samples not returned."""


def stream_decoder(codec: AudioTokenizer, context: torch.Tensor | None = None) -> StreamDecoder:
    """`codec.stream_decoder(context)` when the codec has one, else a `DecodeOnFlush` for it."""
    own = getattr(codec, "stream_decoder", None)  # not isinstance: that would evaluate every property
    if callable(own):
        return own(context)
    return DecodeOnFlush(codec, context)


class DecodeOnFlush:
    """The `StreamDecoder` of a codec that cannot stream: `push` returns no samples, `flush` decodes the context and
    every code pushed at once and returns the samples after the context's (round(t0 * sample_rate / frame_rate))."""

    def __init__(self, codec: AudioTokenizer, context: torch.Tensor | None = None) -> None:
        self.codec, self.context = codec, context
        self.codes: list[torch.Tensor] = []

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        self.codes.append(codes)
        return torch.zeros(codes.shape[0], self.codec.channels, 0)

    def flush(self) -> torch.Tensor:
        codes, self.codes = self.codes, []
        if sum(c.shape[2] for c in codes) == 0:
            return torch.zeros(codes[0].shape[0] if codes else 1, self.codec.channels, 0)
        new = torch.cat(codes, dim=2)
        if self.context is None:
            return self.codec.decode(new)
        skip = round(self.context.shape[2] * self.codec.sample_rate / self.codec.frame_rate)
        context = self.context[:, :new.shape[1]].to(new.device)
        return self.codec.decode(torch.cat([context, new], dim=2))[..., skip:]


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
