"""A wrong LM folder loads loudly: weights come from safetensors only and must match the config tensor by tensor;
a pickle-format file is named and never read."""

from __future__ import annotations

import json
import pathlib
import pickle

import pytest
import torch

from lm import AudioLM, CheckpointError


class _TouchOnLoad:
    """Unpickling this creates `path` (the code a planted pytorch_model.bin could run)."""

    def __init__(self, path) -> None:
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


@pytest.fixture
def saved(make_lm, tmp_path):
    """(the LM, its save_pretrained folder)."""
    lm = make_lm()
    lm.save_pretrained(tmp_path / "lm")
    return lm, tmp_path / "lm"


def _edit_config(folder, **fields) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(fields)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def no_torch_load(monkeypatch):
    """Fail the test if anything calls torch.load (which unpickles)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load was called with {args} {kwargs}")
    monkeypatch.setattr(torch, "load", refuse)


def test_a_correct_folder_loads_with_identical_logits(saved, codec, no_torch_load):
    lm, folder = saved
    loaded = AudioLM.from_pretrained(folder, codec=codec)
    ids, mask = lm.encode_texts(["hello world", "drums and bass"], "speech")
    cfg = lm.model.config
    steps = torch.randint(0, cfg.codebook_size, (2, cfg.num_codebooks, 6), generator=torch.Generator().manual_seed(0))
    steps[:, :, 0] = cfg.empty_id
    with torch.no_grad():
        assert torch.equal(loaded.model.logits(ids, mask, steps), lm.model.logits(ids, mask, steps))


def test_a_config_with_more_layers_than_the_weights_is_refused_naming_the_missing_tensors(saved, codec):
    _, folder = saved
    _edit_config(folder, num_hidden_layers=3)
    with pytest.raises(CheckpointError) as error:
        AudioLM.from_pretrained(folder, codec=codec)
    message = str(error.value)
    assert str(folder) in message and "3 layers" in message
    assert "missing tensors" in message and "layers.2." in message
    _edit_config(folder, num_hidden_layers=1)  # fewer: the file's extra layer is named too
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['layers\.1\."):
        AudioLM.from_pretrained(folder, codec=codec)


def test_a_hidden_size_mismatch_is_refused_naming_the_shapes(saved, codec):
    _, folder = saved
    _edit_config(folder, hidden_size=64)
    with pytest.raises(CheckpointError) as error:
        AudioLM.from_pretrained(folder, codec=codec)
    message = str(error.value)
    assert str(folder) in message and "hidden size 64" in message
    assert "shape mismatches" in message and "file (" in message and "config (" in message
    assert "ignore_mismatched_sizes" not in message  # transformers' advice does not apply here


def test_a_folder_with_only_a_pickled_checkpoint_is_refused_without_reading_it(saved, codec, tmp_path, no_torch_load):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    with pytest.raises(CheckpointError) as error:
        AudioLM.from_pretrained(folder, codec=codec)
    message = str(error.value)
    assert str(folder) in message and "no model.safetensors" in message
    assert "pytorch_model.bin" in message and "never loads" in message
    assert not marker.exists()


def test_a_config_without_weights_is_a_short_clear_error(saved, codec, no_torch_load):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as error:
        AudioLM.from_pretrained(folder, codec=codec)
    message = str(error.value)
    assert message == f"LM folder {str(folder)!r} has no model.safetensors"


def test_unreadable_weights_and_missing_folders_are_checkpoint_errors(saved, codec, tmp_path):
    _, folder = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        AudioLM.from_pretrained(tmp_path / "nowhere", codec=codec)
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        AudioLM.from_pretrained(tmp_path, codec=codec)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.* is not a readable safetensors file"):
        AudioLM.from_pretrained(folder, codec=codec)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json.* is not a valid LM config"):
        AudioLM.from_pretrained(folder, codec=codec)


def test_a_sharded_index_may_name_only_safetensors_beside_it(saved, codec, no_torch_load):
    _, folder = saved
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"norm.weight": "../x.bin"}}))
    with pytest.raises(CheckpointError, match=r"names files other than \.safetensors"):
        AudioLM.from_pretrained(folder, codec=codec)
    (folder / "model.safetensors").rename(folder / "part-1.safetensors")
    state_keys = json.loads(json.dumps({"weight_map": {"any": "part-1.safetensors"}}))
    (folder / "model.safetensors.index.json").write_text(json.dumps(state_keys))
    loaded = AudioLM.from_pretrained(folder, codec=codec)  # a sharded folder of one shard reads as a plain one
    assert loaded.model.config.num_hidden_layers == 2
