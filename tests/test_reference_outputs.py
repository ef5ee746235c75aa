"""The code gives the outputs it gave when `tests/data/reference` was written (`scripts/reference_outputs.py`).

Refactors that change no behaviour keep these equal: for every codec preset (weights filled from each tensor's
name as written then, so the names of that time must still load), the bundled codec with each of its decoders,
and the bundled LMs' generations for two seeds per task, with their stored weights and with generation's int8
inference weights. Codes must be identical; samples equal to float rounding.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference"
AUDIO_ATOL = 1e-5

_spec = importlib.util.spec_from_file_location("reference_outputs", ROOT / "scripts" / "reference_outputs.py")
reference_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_outputs)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _files(kind: str) -> list[Path]:
    return [p for p in sorted(REFERENCE.glob("*.safetensors")) if _read(p)[1]["kind"] == kind]


def _assert_same(name: str, ref: dict[str, torch.Tensor], codes: torch.Tensor, audio: torch.Tensor) -> None:
    assert torch.equal(codes.cpu(), ref["codes"]), f"{name}: codes differ from the reference"
    assert audio.shape == ref["audio"].shape, f"{name}: audio shape {list(audio.shape)} != {list(ref['audio'].shape)}"
    diff = (audio.cpu() - ref["audio"]).abs().max().item()
    assert diff <= AUDIO_ATOL, f"{name}: samples differ from the reference by up to {diff:.3g}"


def test_every_preset_has_a_reference():
    have = {_read(p)[1]["config"] for p in _files("preset")}
    assert have == {p.name for p in reference_outputs.preset_paths()}


@pytest.mark.parametrize("path", _files("preset"), ids=lambda p: p.stem)
@torch.no_grad()
def test_preset_codes_and_samples_unchanged(path):
    from tokenizer import CodecConfig, RVQCodec

    ref, meta = _read(path)
    shapes, dtypes = json.loads(meta["state_shapes"]), json.loads(meta["state_dtypes"])
    codec = RVQCodec(CodecConfig.from_json_file(ROOT / "configs" / meta["config"])).eval()
    state = {}
    for name, shape in shapes.items():
        like = torch.empty(shape, dtype=getattr(torch, dtypes[name]))
        if like.is_floating_point():
            state[name] = reference_outputs.named_fill(name, like)
    own = codec.state_dict()
    state.update({name: t for name, t in own.items() if not t.is_floating_point() and name not in state})
    codec.load_state_dict(state)  # the tensor names of the reference's time load
    codes = codec.encode(ref["input"])
    _assert_same(path.stem, ref, codes, codec.decode(codes))


@pytest.mark.parametrize("path", _files("bundled_codec"), ids=lambda p: p.stem)
@torch.no_grad()
def test_bundled_codec_unchanged(path):
    from pipelines.defaults import default_codec

    ref, meta = _read(path)
    codec = default_codec(meta["variant"] or None).eval()
    codes = codec.encode(ref["input"])
    _assert_same(path.stem, ref, codes, codec.decode(codes))


@pytest.mark.parametrize("path", _files("bundled_lm"), ids=lambda p: p.stem)
def test_bundled_generations_unchanged(path):
    from pipelines.defaults import default_lm
    from pipelines.generate import generate

    ref, meta = _read(path)
    weights = meta.get("weights", "float")  # how the LM multiplied (AudioLM.set_inference_weights)
    clip = generate(meta["text"], task=meta["task"], duration=float(meta["seconds"]), seed=int(meta["seed"]),
                    progress=False, model=default_lm(meta["task"], weights))
    _assert_same(path.stem, ref, clip.codes, clip.waveform)
