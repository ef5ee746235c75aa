"""The bundled default models, and turning a `codec=` argument (object, folder or None) into a codec."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from tokenizer import CheckpointError, RVQCodec

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CODEC_DIR = ASSETS / "codec"


@lru_cache(maxsize=1)
def default_codec() -> RVQCodec:
    """The codec that ships inside the package (`pipelines/assets/codec`), loaded once, in eval mode."""
    if not (DEFAULT_CODEC_DIR / "model.safetensors").is_file():
        raise CheckpointError(
            f"no bundled codec at {DEFAULT_CODEC_DIR}: this build of rvqaudio ships none yet. "
            "Pass a codec folder instead (--codec DIR / codec=DIR), e.g. one written by `rvqaudio train-codec`")
    return RVQCodec.from_pretrained(DEFAULT_CODEC_DIR)


def resolve_codec(codec: RVQCodec | str | os.PathLike | None) -> RVQCodec:
    """An `RVQCodec` as is, a checkpoint folder loaded with `from_pretrained`, or the bundled default."""
    if codec is None:
        return default_codec()
    if isinstance(codec, RVQCodec):
        return codec.eval()
    return RVQCodec.from_pretrained(codec)
