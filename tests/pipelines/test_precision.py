"""The reduced-precision inference path: an LM cast to bfloat16 generates valid codes, and the bundled LMs stay
float32 when a copy is cast."""

from __future__ import annotations

import pytest
import torch

from pipelines.defaults import default_lm
from pipelines.generate import generate
from pipelines.generate_cli import lm_in_dtype


def test_bfloat16_copy_generates_and_leaves_the_bundled_lm_in_float32():
    lm = lm_in_dtype(None, "music", "bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert next(default_lm("music").model.parameters()).dtype == torch.float32
    clip = generate("a calm piano melody", duration=0.5, seed=0, model=lm, progress=False)
    assert clip.codes.shape[-1] > 0 and 0 <= int(clip.codes.min()) and int(clip.codes.max()) < 1024
    assert torch.isfinite(clip.waveform).all() and clip.waveform.dtype == torch.float32
    # greedy decoding is deterministic in either precision
    a = generate("a calm piano melody", duration=0.3, seed=0, top_k=1, model=lm, progress=False)
    b = generate("a calm piano melody", duration=0.3, seed=5, top_k=1, model=lm, progress=False)
    assert torch.equal(a.codes, b.codes)


def test_float32_is_the_default_and_other_dtypes_are_refused():
    assert lm_in_dtype("some/folder", "music", "float32") == "some/folder"
    with pytest.raises(ValueError, match="dtype must be"):
        default_lm("music").to(dtype=torch.int8)
