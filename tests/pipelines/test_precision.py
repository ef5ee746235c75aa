"""The reduced-precision inference paths: generation multiplies with int8 weights by default, float on request; an
LM cast to bfloat16 generates valid codes; the bundled LMs' stored weights stay float32 either way."""

from __future__ import annotations

import pytest
import torch

from pipelines.defaults import GENERATION_WEIGHTS, default_lm, resolve_lm
from pipelines.generate import generate
from pipelines.generate_cli import lm_as_asked


def test_generation_loads_int8_weights_by_default_and_float_on_request():
    assert GENERATION_WEIGHTS == "int8"
    int8, stored = default_lm("music"), default_lm("music", "float")
    assert int8 is resolve_lm(None, "music") and int8.inference_weights == "int8"
    assert stored is not int8 and stored.inference_weights == "float"
    for name, value in int8.model.state_dict().items():  # the weights themselves are the same float32 tensors
        assert value.dtype == stored.model.state_dict()[name].dtype and torch.equal(value, stored.model.state_dict()[name])
    asked = lm_as_asked(None, "music", "float32", "float")
    assert asked.inference_weights == "float" and asked is not stored  # a copy of its own
    assert lm_as_asked("some/folder", "music", "float32", GENERATION_WEIGHTS) == "some/folder"
    clip = generate("a calm piano melody", duration=0.3, seed=0, model=asked, progress=False)
    assert clip.codes.shape[-1] > 0 and torch.isfinite(clip.waveform).all()


def test_bfloat16_copy_generates_and_leaves_the_bundled_lm_in_float32():
    lm = lm_as_asked(None, "music", "bfloat16", "float")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert next(default_lm("music").model.parameters()).dtype == torch.float32
    clip = generate("a calm piano melody", duration=0.5, seed=0, model=lm, progress=False)
    assert clip.codes.shape[-1] > 0 and 0 <= int(clip.codes.min()) and int(clip.codes.max()) < 1024
    assert torch.isfinite(clip.waveform).all() and clip.waveform.dtype == torch.float32
    # greedy decoding is deterministic in either precision
    a = generate("a calm piano melody", duration=0.3, seed=0, top_k=1, model=lm, progress=False)
    b = generate("a calm piano melody", duration=0.3, seed=5, top_k=1, model=lm, progress=False)
    assert torch.equal(a.codes, b.codes)


def test_unknown_dtypes_and_weights_are_refused():
    with pytest.raises(ValueError, match="dtype must be"):
        default_lm("music").to(dtype=torch.int8)
    with pytest.raises(ValueError, match="inference weights must be one of"):
        default_lm("music", "int4")
