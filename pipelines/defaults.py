"""The bundled default models, self-contained LM folders, and turning `codec=`/`model=` arguments into models.

A self-contained LM folder is what `train-lm`, `finetune` and `generate` exchange:

    lm_dir/config.json, model.safetensors, text_tokenizer.model   # AudioLM.save_pretrained
    lm_dir/codec/config.json, model.safetensors                    # the codec whose codes the LM models

so `generate(model=lm_dir)` needs nothing else. The bundled models are one such pair stored side by side
(`assets/codec`, and `assets/lm` without a `codec/` of its own), written by

    python -m pipelines.defaults --codec runs/default/codec/final --model runs/default/lm/final

(see scripts/default_models.sh and the model card, pipelines/assets/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch

from lm import AudioLM
from tokenizer import CheckpointError, RVQCodec
from tokenizer.checkpoint import atomic_folder

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CODEC_DIR = ASSETS / "codec"
DEFAULT_LM_DIR = ASSETS / "lm"
CODEC_SUBDIR = "codec"


@lru_cache(maxsize=1)
def default_codec() -> RVQCodec:
    """The codec that ships inside the package (`pipelines/assets/codec`), loaded once, in eval mode."""
    if not (DEFAULT_CODEC_DIR / "model.safetensors").is_file():
        raise CheckpointError(
            f"no bundled codec at {DEFAULT_CODEC_DIR}: this build of rvqaudio ships none yet. "
            "Pass a codec folder instead (--codec DIR / codec=DIR), e.g. one written by `rvqaudio train-codec`")
    return RVQCodec.from_pretrained(DEFAULT_CODEC_DIR)


@lru_cache(maxsize=1)
def default_lm() -> AudioLM:
    """The LM that ships inside the package (`pipelines/assets/lm`), with its codec, loaded once."""
    if not (DEFAULT_LM_DIR / "config.json").is_file():
        raise CheckpointError(
            f"no bundled LM at {DEFAULT_LM_DIR}: this build of rvqaudio ships none yet. Pass a model folder "
            "instead (--model DIR / model=DIR), e.g. one written by `rvqaudio train-lm` or `rvqaudio finetune`")
    return AudioLM.from_pretrained(DEFAULT_LM_DIR, codec=default_codec())


def resolve_codec(codec: RVQCodec | str | os.PathLike | None) -> RVQCodec:
    """An `RVQCodec` as is, a checkpoint folder loaded with `from_pretrained`, or the bundled default."""
    if codec is None:
        return default_codec()
    if isinstance(codec, RVQCodec):
        return codec.eval()
    return RVQCodec.from_pretrained(codec)


def resolve_lm(model: AudioLM | str | os.PathLike | None) -> AudioLM:
    """An `AudioLM` (which must carry its codec), a self-contained LM folder, or the bundled default."""
    if model is None:
        return default_lm()
    if isinstance(model, AudioLM):
        if model.codec is None:
            raise ValueError("this AudioLM carries no codec; build it with AudioLM(model, text_tokenizer, codec) "
                             "or load a self-contained folder with pipelines.load_lm")
        return model
    return load_lm(model)


def save_lm(lm: AudioLM, codec: RVQCodec, directory: str | os.PathLike) -> Path:
    """Write a self-contained LM folder (the LM, its text tokenizer and its codec), atomically."""
    lm.config.check_codec(codec)
    with atomic_folder(directory) as tmp:
        lm.save_pretrained(tmp)
        codec.save_pretrained(tmp / CODEC_SUBDIR)
    return Path(directory)


def load_lm(directory: str | os.PathLike, device: str | None = None) -> AudioLM:
    """Load a self-contained LM folder: the LM with its text tokenizer and codec (checked to match)."""
    directory = Path(directory)
    if not (directory / CODEC_SUBDIR / "config.json").is_file():
        raise CheckpointError(
            f"{str(directory)!r} is not a self-contained LM folder: it has no {CODEC_SUBDIR}/ with the codec "
            "whose codes the LM models (write one with pipelines.save_lm, `rvqaudio train-lm` or `finetune`)")
    codec = RVQCodec.from_pretrained(directory / CODEC_SUBDIR, device=device or "cpu")
    return AudioLM.from_pretrained(directory, codec=codec, device=device)


def install_defaults(codec: str | os.PathLike, model: str | os.PathLike, assets: str | os.PathLike = ASSETS,
                     codec_dtype: torch.dtype | None = None) -> Path:
    """Make a codec folder and a self-contained LM folder (trained on that codec's codes) the bundled defaults.

    Writes `assets/codec` and `assets/lm` (the LM without its `codec/` copy), each atomically; returns `assets`.
    `codec_dtype=torch.float16` stores the codec's weights in half the bytes (they load back as float32).
    """
    assets = Path(assets)
    codec_model = RVQCodec.from_pretrained(codec)
    lm = load_lm(model)
    lm.config.check_codec(codec_model)  # the LM must speak this codec's codes
    with atomic_folder(assets / "codec") as tmp:
        codec_model.save_pretrained(tmp, dtype=codec_dtype)
    with atomic_folder(assets / "lm") as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(CODEC_SUBDIR))
    default_codec.cache_clear()
    default_lm.cache_clear()
    return assets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.defaults", description=install_defaults.__doc__.split("\n")[0])
    parser.add_argument("--codec", required=True, help="codec folder (e.g. runs/default/codec/final)")
    parser.add_argument("--model", required=True, help="self-contained LM folder trained on its codes (runs/default/lm/final)")
    parser.add_argument("--codec-fp16", action="store_true", help="store the codec's weights as float16 (half the size)")
    args = parser.parse_args(argv)
    assets = install_defaults(args.codec, args.model, codec_dtype=torch.float16 if args.codec_fp16 else None)
    print(f"installed the default models in {assets}")


if __name__ == "__main__":
    main()
