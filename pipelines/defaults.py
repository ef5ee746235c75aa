"""The bundled default models, self-contained LM folders, and turning `codec=`/`model=` arguments into models.

A self-contained LM folder is what `train-lm`, `finetune` and `generate` exchange:

    lm_dir/config.json, model.safetensors, text_tokenizer.model   # AudioLM.save_pretrained
    lm_dir/codec/config.json, model.safetensors                    # the codec whose codes the LM models

so `generate(model=lm_dir)` needs nothing else. The bundled models are one codec and an LM per task, trained on
its codes and stored beside it without a `codec/` of their own:

    assets/codec/                     # default_codec()
    assets/codec/decoder.speech.safetensors   # default_codec("speech"): its decoder trained on speech alone
    assets/lm/music/, assets/lm/speech/   # default_lm("music"), default_lm("speech")

One LM per task because the measurements chose so (the model card, pipelines/assets/README.md): the LM stage that
made speech intelligible made the music follow its captions less well. Likewise a decoder variant per task where one
ships (the same codes, another decoder): the decoder trained on speech alone decodes speech better and music worse.
A task without a variant decodes with the codec's own decoder. They are written by

    python -m pipelines.defaults --codec runs/default/codec_gan/final --codec-fp16 --lm-fp16 music \
        --music-model runs/default/lm_music/final --speech-model runs/default/lm_aligned/final \
        --speech-decoder runs/default/codec_speech/final

(see scripts/default_models.sh); `--model DIR` installs one LM for both tasks.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch

from lm import AudioLM
from lm.layers import int8_kernel_available
from tokenizer import CheckpointError, RVQCodec
from tokenizer.checkpoint import atomic_folder
from tokenizer.decoder_choice import DecoderChoice

ASSETS = Path(__file__).resolve().parent / "assets"

# How the LMs that generation loads multiply on a CPU (`AudioLM.set_inference_weights`): the int8 inference path
# is faster and its held-out loss and intelligibility match float32's (benchmarks/lm_precision.py, the model card);
# a torch without the int8 kernel keeps the stored weights. Training and eval-lm load the stored weights ('float').
GENERATION_WEIGHTS = "int8" if int8_kernel_available() else "float"

DEFAULT_CODEC_DIR = ASSETS / "codec"
DEFAULT_LM_DIR = ASSETS / "lm"  # one folder per task in LM_TASKS
LM_TASKS = ("music", "speech")
CODEC_SUBDIR = "codec"


def default_codec(task: str | None = None) -> RVQCodec:
    """The codec that ships inside the package (`pipelines/assets/codec`), loaded once, in eval mode.

    With `task` ("music" or "speech"), the codec that task's bundled LM decodes with: the codec's decoder variant
    for that task when one ships (`default_decoder_variants()`), else its own decoder. The codes are the same.
    """
    if task is None:
        return _load_default_codec(None)
    task = _check_task(task)
    return _load_default_codec(task if task in default_decoder_variants() else None)


def default_decoder_variants() -> list[str]:
    """The tasks for which the bundled codec ships a decoder variant of its own (e.g. ["speech"])."""
    return [name for name in RVQCodec.decoder_variants(DEFAULT_CODEC_DIR) if name in LM_TASKS]


@lru_cache(maxsize=len(LM_TASKS) + 1)
def _load_default_codec(variant: str | None) -> RVQCodec:
    if not (DEFAULT_CODEC_DIR / "model.safetensors").is_file():
        raise CheckpointError(
            f"no bundled codec at {DEFAULT_CODEC_DIR}: this build of rvqaudio ships none yet. "
            "Pass a codec folder instead (--codec DIR / codec=DIR), e.g. one written by `rvqaudio train-codec`")
    return RVQCodec.from_pretrained(DEFAULT_CODEC_DIR, variant=variant)


default_codec.cache_clear = _load_default_codec.cache_clear  # forget what was loaded (install_defaults does)


def _check_task(task: str | None) -> str:
    if task not in LM_TASKS:
        raise ValueError(f"the bundled LMs are one per task {list(LM_TASKS)}; got task={task!r}. Pass one of them, "
                         "or a model folder (--model DIR / model=DIR) for an LM trained without task tags")
    return task


def default_lm_dir(task: str = "music") -> Path:
    """The folder of the bundled LM for `task` ("music" or "speech")."""
    return DEFAULT_LM_DIR / _check_task(task)


def default_lm(task: str = "music", weights: str = GENERATION_WEIGHTS) -> AudioLM:
    """The LM for `task` ("music" or "speech") that ships inside the package (`pipelines/assets/lm/<task>`), with
    the bundled codec (and its decoder variant for `task`, where one ships: `default_codec(task)`), loaded once per
    `weights` (how it multiplies on a CPU, `AudioLM.set_inference_weights`; default GENERATION_WEIGHTS)."""
    return _load_default_lm(_check_task(task), weights)


@lru_cache(maxsize=2 * len(LM_TASKS))
def _load_default_lm(task: str, weights: str) -> AudioLM:
    return read_default_lm(task).set_inference_weights(weights)


def read_default_lm(task: str = "music") -> AudioLM:
    """A copy of its own of the bundled LM for `task` (uncached, unlike `default_lm`): for changing it in place,
    e.g. casting its weights (`AudioLM.to(dtype=...)`)."""
    directory = DEFAULT_LM_DIR / _check_task(task)
    if not (directory / "config.json").is_file():
        raise CheckpointError(
            f"no bundled LM for task={task!r} at {directory}: this build of rvqaudio ships none yet. Pass a model "
            "folder instead (--model DIR / model=DIR), e.g. one written by `rvqaudio train-lm` or `rvqaudio finetune`")
    return AudioLM.from_pretrained(directory, codec=default_codec(task))


default_lm.cache_clear = _load_default_lm.cache_clear  # as for default_codec: forget what was loaded


def model_folder(path: str | os.PathLike, what: str = "codec") -> Path:
    """The model folder `path` names: itself when it holds a config.json, else, for the run folder of
    `train-codec`/`train-lm`/`finetune`, its `final/` (with a note). CheckpointError saying which folder to pass
    for a run that has not finished."""
    path = Path(path)
    if not path.is_dir() or (path / "config.json").is_file():
        return path  # the loader names what is missing
    final = path / "final"
    if (final / "config.json").is_file():
        warnings.warn(f"{str(path)!r} is a training run folder: using the {what} it produced, {str(final)!r}",
                      stacklevel=3)
        return final
    if (path / "checkpoint").is_dir() or (path / "log.jsonl").is_file():
        export = (f" or export its latest checkpoint with `rvqaudio export-codec {path} OUT` and pass OUT"
                  if what == "codec" else "")
        raise CheckpointError(f"{str(path)!r} is a training run folder whose run has not finished (no final/ "
                              f"yet): resume it to the end with --resume and pass {str(final)!r}{export}")
    return path


def resolve_codec(codec: RVQCodec | str | os.PathLike | None, variant: str | None = None) -> RVQCodec:
    """An `RVQCodec` as is, a checkpoint folder loaded with `from_pretrained`, or the bundled default; `variant`
    names a decoder variant of the folder (or of the bundled codec) to decode with."""
    if isinstance(codec, RVQCodec):
        if variant is not None:
            raise ValueError(f"variant={variant!r} names a decoder saved in a codec folder; pass the folder, not a "
                             "loaded RVQCodec")
        return codec.eval()
    if codec is None:
        return _load_default_codec(variant)
    return RVQCodec.from_pretrained(model_folder(codec, "codec"), variant=variant)


def resolve_decoder_choice(codec: RVQCodec | str | os.PathLike | None) -> DecoderChoice | None:
    """The decoder choice of a codec folder (None: the bundled codec's), or None when it has none; a loaded
    RVQCodec has no folder to hold one."""
    if isinstance(codec, RVQCodec):
        return None
    return DecoderChoice.load(DEFAULT_CODEC_DIR if codec is None else model_folder(codec, "codec"))


def resolve_lm(model: AudioLM | str | os.PathLike | None, task: str = "music",
               weights: str | None = None) -> AudioLM:
    """An `AudioLM` (which must carry its codec), a self-contained LM folder, or (None) the bundled LM for `task`,
    for generating: a folder or the bundled LM multiply with `weights` on a CPU (`AudioLM.set_inference_weights`;
    None: GENERATION_WEIGHTS); an `AudioLM` keeps its own setting."""
    weights = GENERATION_WEIGHTS if weights is None else weights
    if model is None:
        return default_lm(task, weights)
    if isinstance(model, AudioLM):
        if model.codec is None:
            raise ValueError("this AudioLM carries no codec; build it with AudioLM(model, text_tokenizer, codec) "
                             "or load a self-contained folder with pipelines.load_lm")
        return model
    return load_lm(model, weights=weights)


def save_lm(lm: AudioLM, codec: RVQCodec, directory: str | os.PathLike) -> Path:
    """Write a self-contained LM folder (the LM, its text tokenizer and its codec), atomically."""
    lm.config.check_codec(codec)
    with atomic_folder(directory) as tmp:
        lm.save_pretrained(tmp)
        codec.save_pretrained(tmp / CODEC_SUBDIR)
    return Path(directory)


def load_lm(directory: str | os.PathLike, device: str | None = None, dtype: torch.dtype | None = None,
            weights: str = "float") -> AudioLM:
    """Load a self-contained LM folder: the LM with its text tokenizer and codec (checked to match). A run folder
    of `train-lm`/`finetune` stands for its `final/`. `dtype` casts the LM's weights (`AudioLM.to`; e.g.
    torch.bfloat16), not the codec's; `weights` is how it multiplies on a CPU (`AudioLM.set_inference_weights`)."""
    directory = model_folder(directory, "LM")
    if not (directory / CODEC_SUBDIR / "config.json").is_file():
        raise CheckpointError(
            f"{str(directory)!r} is not a self-contained LM folder: it has no {CODEC_SUBDIR}/ with the codec "
            "whose codes the LM models (write one with pipelines.save_lm, `rvqaudio train-lm` or `finetune`)")
    codec = RVQCodec.from_pretrained(directory / CODEC_SUBDIR, device=device or "cpu")
    lm = AudioLM.from_pretrained(directory, codec=codec, device=device).set_inference_weights(weights)
    return lm if dtype is None else lm.to(dtype=dtype)


def install_defaults(codec: str | os.PathLike, models: Mapping[str, str | os.PathLike],
                     assets: str | os.PathLike = ASSETS, codec_dtype: torch.dtype | None = None,
                     lm_dtypes: Mapping[str, torch.dtype] | None = None,
                     decoders: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Make a codec folder and, for each task, a self-contained LM folder (trained on that codec's codes) the
    bundled defaults.

    models: {task: LM folder} for every task of `LM_TASKS` (the same folder for several is fine). Writes
    `assets/codec` and `assets/lm/<task>` (each LM without its `codec/` copy), each atomically; returns `assets`.
    `codec_dtype=torch.float16` and `lm_dtypes={task: torch.float16}` store those weights in half the bytes (they
    load back as float32); the others are stored as they are.
    decoders: {task: codec folder} for tasks that get a decoder variant: that codec's decoder is saved in
    `assets/codec` as variant `task` (`save_decoder_variant`, in `codec_dtype`); its encoder and codebooks must be
    the codec's.
    """
    assets = Path(assets)
    if sorted(models) != sorted(LM_TASKS):
        raise ValueError(f"install_defaults needs an LM for each task {list(LM_TASKS)}, got {sorted(models)}")
    lm_dtypes = dict(lm_dtypes or {})
    if not set(lm_dtypes) <= set(LM_TASKS):
        unknown = sorted(set(lm_dtypes) - set(LM_TASKS))
        raise ValueError(f"lm_dtypes names tasks {unknown}; the tasks are {list(LM_TASKS)}")
    codec_model = RVQCodec.from_pretrained(codec)
    decoders = dict(decoders or {})
    if not set(decoders) <= set(LM_TASKS):
        unknown = sorted(set(decoders) - set(LM_TASKS))
        raise ValueError(f"decoders names tasks {unknown}; the tasks are {list(LM_TASKS)}")
    decoder_models = {task: RVQCodec.from_pretrained(folder) for task, folder in decoders.items()}
    lms = {task: load_lm(model) for task, model in models.items()}
    for task, lm in lms.items():
        try:
            lm.config.check_codec(codec_model)  # the LM must speak this codec's codes
        except ValueError as exc:
            raise ValueError(f"the {task} LM {str(models[task])!r} does not match the codec {str(codec)!r}: "
                             f"{exc}") from exc
    with atomic_folder(assets / "codec") as tmp:
        codec_model.save_pretrained(tmp, dtype=codec_dtype)
        for task, decoder in decoder_models.items():
            try:
                decoder.save_decoder_variant(tmp, task, dtype=codec_dtype)
            except CheckpointError as exc:
                raise CheckpointError(f"the {task} decoder {str(decoders[task])!r} is not a decoder of the codec "
                                      f"{str(codec)!r}: {exc}") from exc
    with atomic_folder(assets / "lm") as tmp:
        for task, lm in lms.items():
            lm.save_pretrained(tmp / task, dtype=lm_dtypes.get(task))
    default_codec.cache_clear()
    default_lm.cache_clear()
    return assets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.defaults", description=install_defaults.__doc__.split("\n")[0])
    parser.add_argument("--codec", required=True, help="codec folder (e.g. runs/default/codec/final)")
    parser.add_argument("--model", help="self-contained LM folder trained on its codes, for every task")
    for task in LM_TASKS:
        parser.add_argument(f"--{task}-model", help=f"the LM folder for task={task!r} (instead of --model)")
    for task in LM_TASKS:
        parser.add_argument(f"--{task}-decoder", help=f"a codec folder whose decoder task={task!r} decodes with "
                                                      "(same encoder and codebooks as --codec; default: --codec's)")
    parser.add_argument("--fp16", action="store_true", help="store every weight as float16 (half the size)")
    parser.add_argument("--codec-fp16", action="store_true", help="store the codec's weights as float16")
    parser.add_argument("--lm-fp16", nargs="+", choices=LM_TASKS, default=[], metavar="TASK",
                        help=f"store the LM of these tasks {list(LM_TASKS)} as float16")
    args = parser.parse_args(argv)
    models = {task: getattr(args, f"{task}_model") or args.model for task in LM_TASKS}
    missing = [task for task, model in models.items() if model is None]
    if missing:
        parser.error(f"no LM for task(s) {missing}: pass --model DIR, or --{missing[0]}-model DIR")
    half = torch.float16
    assets = install_defaults(args.codec, models, codec_dtype=half if args.fp16 or args.codec_fp16 else None,
                              lm_dtypes={task: half for task in LM_TASKS if args.fp16 or task in args.lm_fp16},
                              decoders={task: getattr(args, f"{task}_decoder") for task in LM_TASKS
                                        if getattr(args, f"{task}_decoder")})
    print(f"installed the default models in {assets}")


if __name__ == "__main__":
    main()
