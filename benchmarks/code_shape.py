"""`CodeShape`: the codes an LM is bound to, without a codec behind them (for benchmarks with random weights)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CodeShape:
    """K codebooks of `codebook_size` codes at `frame_rate` Hz. It honours the `lm.codec_interface.AudioTokenizer`
    protocol's attributes, which is all `AudioLMConfig.bound_to` reads; it makes no audio."""

    num_codebooks: int
    codebook_size: int
    frame_rate: float
    sample_rate: int
    channels: int = 1

    @property
    def fingerprint(self) -> str:
        return f"bench-{self.num_codebooks}x{self.codebook_size}@{self.frame_rate:g}"

    def encode(self, wav, sample_rate=None, num_codebooks=None):
        raise NotImplementedError("a code shape makes no audio")

    def decode(self, codes):
        raise NotImplementedError("a code shape makes no audio")
