"""Write the reference outputs that `tests/test_reference_outputs.py` holds the code to.

    python scripts/reference_outputs.py tests/data/reference
    python scripts/reference_outputs.py tests/data/reference --only bundled_codec bundled_lm   # new bundled weights

For every codec preset in `configs/` (weights filled deterministically from each tensor's name, so that the
order in which modules are built does not matter), the bundled codec with each of its decoders, and the bundled
LMs (two seeds per task, with their stored weights and with generation's int8 inference weights): the input, the codes and the decoded samples, one safetensors file each. A refactor
that claims to change no behaviour regenerates nothing: the test compares the current code with these files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokenizer import CodecConfig, RVQCodec  # noqa: E402

PRESET_SECONDS = 0.25
BUNDLED_SECONDS = 1.0
LM_CASES = (("music", "a calm piano melody", 0), ("music", "a calm piano melody", 1),
            ("speech", "The quick brown fox jumps over the lazy dog.", 0),
            ("speech", "The quick brown fox jumps over the lazy dog.", 1))
LM_SECONDS = 1.0
KINDS = ("preset", "bundled_codec", "bundled_lm")  # the files' name prefixes


def named_fill(name: str, like: torch.Tensor) -> torch.Tensor:
    """Values for tensor `name` that depend on its name and shape only: normal, scaled by 1/sqrt(fan-in)."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    values = torch.randn(like.shape, generator=generator, dtype=torch.float64)
    fan_in = math.prod(like.shape[1:]) if like.dim() >= 2 else 1
    scale = 1.0 / math.sqrt(fan_in) if like.dim() >= 2 else 0.1
    if like.dim() < 2 and name.endswith(("weight", "gamma", "weight_g", "original0")):
        values = 1.0 + values * scale  # norms and scales near one
    else:
        values = values * scale
    return values.to(like.dtype)


def filled_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict with every floating tensor replaced by `named_fill` (others kept)."""
    return {name: named_fill(name, t) if t.is_floating_point() else t.clone()
            for name, t in model.state_dict().items()}


def test_signal(sample_rate: int, channels: int, seconds: float) -> torch.Tensor:
    """(1, channels, N): a chirp with harmonics and a little noise, N a whole number of seconds' samples."""
    n = int(round(seconds * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 110.0 + 220.0 * t / max(seconds, 1e-9)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    wav = sum(0.3 / k * torch.sin(k * phase) for k in range(1, 6))
    wav = wav + 0.01 * torch.randn(n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    wav = wav.float()[None, None].repeat(1, channels, 1)
    if channels == 2:
        wav[:, 1] *= 0.5
    return wav


def preset_paths() -> list[Path]:
    return sorted(p for p in (ROOT / "configs").glob("codec_*.json"))


@torch.no_grad()
def preset_reference(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    codec = RVQCodec(CodecConfig.from_json_file(path)).eval()
    state = filled_state(codec)
    codec.load_state_dict(state)
    wav = test_signal(codec.sample_rate, codec.config.channels, PRESET_SECONDS)
    codes = codec.encode(wav)
    audio = codec.decode(codes)
    shapes = {name: list(t.shape) for name, t in state.items()}
    dtypes = {name: str(t.dtype).removeprefix("torch.") for name, t in state.items()}
    return ({"input": wav, "codes": codes, "audio": audio},
            {"kind": "preset", "config": path.name, "state_shapes": json.dumps(shapes, sort_keys=True),
             "state_dtypes": json.dumps(dtypes, sort_keys=True)})


@torch.no_grad()
def bundled_codec_references() -> dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]]:
    from pipelines.defaults import default_codec, default_decoder_variants

    out = {}
    base = default_codec().eval()
    wav = test_signal(base.sample_rate, base.config.channels, BUNDLED_SECONDS)
    codes = base.encode(wav)
    for variant in [None, *default_decoder_variants()]:
        codec = base if variant is None else default_codec(variant).eval()
        audio = codec.decode(codes)
        name = "bundled_codec" if variant is None else f"bundled_codec_{variant}"
        out[name] = ({"input": wav, "codes": codes, "audio": audio},
                     {"kind": "bundled_codec", "variant": variant or ""})
    return out


def lm_references() -> dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]]:
    """The bundled LMs' generations with their stored weights (float) and with generation's int8 weights."""
    from pipelines.defaults import default_lm
    from pipelines.generate import generate

    out = {}
    for weights, prefix in (("float", "bundled_lm"), ("int8", "bundled_lm_int8")):
        for task, text, seed in LM_CASES:
            clip = generate(text, task=task, duration=LM_SECONDS, seed=seed, progress=False,
                            model=default_lm(task, weights))
            out[f"{prefix}_{task}_seed{seed}"] = ({"codes": clip.codes, "audio": clip.waveform},
                                                  {"kind": "bundled_lm", "task": task, "text": text, "weights": weights,
                                                   "seed": str(seed), "seconds": str(LM_SECONDS)})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS),
                        help="write only these kinds (e.g. after new bundled weights: bundled_codec bundled_lm); a "
                             "preset file records the tensor names it was filled by, so rewriting it under newer "
                             "names changes its values, not what it tests")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    refs = {}
    if "preset" in args.only:
        refs.update({f"preset_{p.stem}": preset_reference(p) for p in preset_paths()})
    if "bundled_codec" in args.only:
        refs.update(bundled_codec_references())
    if "bundled_lm" in args.only:
        refs.update(lm_references())
    for name, (tensors, metadata) in refs.items():
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        save_file(tensors, str(args.folder / f"{name}.safetensors"), metadata=metadata)
        codes = tensors["codes"]
        print(f"{name}: codes {list(codes.shape)} ({codes.unique().numel()} distinct), "
              f"audio {list(tensors['audio'].shape)} rms {tensors['audio'].pow(2).mean().sqrt():.4f}")


if __name__ == "__main__":
    main()
