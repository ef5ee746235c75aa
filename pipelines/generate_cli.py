"""`rvqaudio generate` and `rvqaudio voices`: their arguments, and the calls to the library API of
`pipelines.generate` with the same arguments."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from lm import AudioLM
from lm.layers import PRODUCTS

from .defaults import GENERATION_WEIGHTS, load_lm, read_default_lm, resolve_lm
from .generate import TASK_DEFAULT, check_output_path, default_voice, generate, generate_stream, voices


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `rvqaudio generate`."""
    parser.add_argument("prompt", nargs="+", help="caption (music) or transcript (speech); several give a batch")
    parser.add_argument("-o", "--output", required=True,
                        help="file to write (.wav or .flac); with several prompts, a folder (existing, or ending "
                             "in /: files 0.wav, 1.wav, ...) or a name containing {i} (replaced by 0, 1, ...)")
    parser.add_argument("--task", default="music", choices=["music", "speech"])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds to generate at most (default 10); music longer than the LM's window (20 s for "
                             "the bundled LMs) continues in overlapping windows")
    parser.add_argument("--extend-stride", type=float, default=None, metavar="SECONDS",
                        help="music past the window: seconds of new audio each window after the first adds, "
                             "continuing the last (window - SECONDS) of the codes (default: 0.6 of the window, 12 s)")
    parser.add_argument("--seed", type=int, default=None, help="same seed and settings, same audio (default: random)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample among the k likeliest codes (1: greedy; default: 50 for speech, 250 for music)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling in (0, 1] (1: off)")
    parser.add_argument("--guidance-scale", type=float, default=3.0, help="classifier-free guidance (1: none)")
    parser.add_argument("--voice", default=None, help="speech only: a voice of the LM (see `rvqaudio voices`)")
    parser.add_argument("--num-codebooks", type=int, default=None, help="decode only the first K codebooks")
    parser.add_argument("--min-duration", type=float, default=None,
                        help="seconds before the LM may end the audio (default: music the whole --duration, "
                             "speech any time)")
    parser.add_argument("--model", default=None, help="self-contained LM folder (default: the bundled LM of the task)")
    parser.add_argument("--audio-prompt", default=None, help="audio file or codes file (.npz) to continue")
    parser.add_argument("--stream", action="store_true",
                        help="write the file while generating (one prompt); it appears at -o when complete")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                        help="the LM's weights: float32 (default) or bfloat16 (half the bytes; its codes differ "
                             "from float32's, see benchmarks/lm_precision.py)")
    parser.add_argument("--weights", default=GENERATION_WEIGHTS, choices=sorted(PRODUCTS),
                        help=f"how the LM multiplies on a CPU: int8 weight copies (faster, the same held-out loss) or "
                             f"its stored weights (default: {GENERATION_WEIGHTS}; see benchmarks/lm_precision.py)")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def lm_as_asked(model: str | None, task: str, dtype: str, weights: str = GENERATION_WEIGHTS) -> AudioLM | str | None:
    """What `generate(model=...)` gets for --model, --dtype and --weights: the folder (or None, the bundled LM) as
    given for the defaults, else a copy of that LM of its own, its weights cast to `dtype`, multiplying with
    `weights`."""
    if dtype == "float32" and weights == GENERATION_WEIGHTS:
        return model
    lm = read_default_lm(task) if model is None else load_lm(model)
    return lm.to(dtype=DTYPES[dtype]).set_inference_weights(weights)


def run_generate(args: argparse.Namespace) -> None:
    """`rvqaudio generate`: calls `generate` (or `generate_stream` with --stream) with the same arguments."""
    outputs = output_paths(args.output, len(args.prompt))  # before generating: a bad path costs nothing
    settings = dict(task=args.task, duration=args.duration, seed=args.seed, temperature=args.temperature,
                    top_k=TASK_DEFAULT if args.top_k is None else args.top_k, top_p=args.top_p,
                    guidance_scale=args.guidance_scale, voice=args.voice,
                    num_codebooks=args.num_codebooks, min_duration=args.min_duration,
                    model=lm_as_asked(args.model, args.task, args.dtype, args.weights),
                    audio_prompt=args.audio_prompt, extend_stride=args.extend_stride,
                    progress=not args.no_progress)
    if args.stream:
        if len(args.prompt) != 1:
            raise ValueError(f"--stream writes one file; got {len(args.prompt)} prompts: drop --stream or give one")
        stream = generate_stream(args.prompt[0], **settings)
        stream.save(outputs[0])
        clips = [(outputs[0], stream.duration, stream.ended_by_itself, stream.seed, stream.voice)]
    else:
        results = generate(list(args.prompt), **settings)
        clips = [(result.save(path), result.duration, result.ended_by_itself, result.seed, result.voice)
                 for path, result in zip(outputs, results)]
    for path, seconds, ended, seed, voice in clips:
        how = "ended by itself" if ended else "full length"
        print(f"wrote {path} ({seconds:.2f} s, {how}, seed {seed}" + (f", voice {voice})" if voice else ")"))


def output_paths(output: str, count: int) -> list[Path]:
    """The files `rvqaudio generate -o OUTPUT` writes for `count` prompts (see the -o help)."""
    if "{i}" in output:
        paths = [Path(output.replace("{i}", str(i))) for i in range(count)]
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        width = len(str(count - 1))
        paths = [Path(output) / f"{i:0{width}d}.wav" for i in range(count)]
    elif count > 1:
        raise ValueError(f"{count} prompts need {count} files: give -o a folder (e.g. {output!r}/ ) or a name "
                         f"with {{i}} (e.g. 'clip_{{i}}.wav'), not the single file {output!r}")
    else:
        paths = [Path(output)]
    for path in paths:
        check_output_path(path)
    return paths


def add_voices_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `rvqaudio voices`."""
    parser.add_argument("--model", default=None, help="self-contained LM folder (default: the bundled speech LM)")


def run_voices(args: argparse.Namespace) -> None:
    """`rvqaudio voices`: print the LM's voices, one a line, the default marked."""
    lm = resolve_lm(args.model, task="speech")
    names, default = voices(lm), default_voice(lm)
    if not names:
        print("this LM was trained without voices: speech is generated without --voice")
    for name in names:
        print(f"{name} (default)" if name == default else name)
