"""Training state as data: a run checkpoint is safetensors and JSON only, restores optimizer, scheduler and RNG
states exactly, and a run folder holding a pickle is refused before anything in it is read."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from accelerate import Accelerator

from tokenizer import CheckpointError, CodecConfig
from tokenizer.state_files import load_training_state, refuse_pickles, save_training_state
from tokenizer.training import train_codec

REPO = Path(__file__).resolve().parents[2]
SR = 16000


class _TouchOnLoad:
    """Unpickling this creates `path`: what a planted checkpoint file could do (run any code) when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


def plant_pickle(path: Path, marker: Path) -> None:
    """Write a pickle to `path` that would create `marker` if anything unpickled it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_TouchOnLoad(marker)))


def test_the_planted_payload_is_live(tmp_path):
    """The guard of the tests below: unpickling the planted file does run code."""
    plant_pickle(tmp_path / "x.pkl", tmp_path / "ran")
    pickle.loads((tmp_path / "x.pkl").read_bytes())  # noqa: S301 (the test's own payload, to show it works)
    assert (tmp_path / "ran").exists()


def _tiny(**training) -> CodecConfig:
    config = CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json")
    config.training = dataclasses.replace(config.training, **{"adversarial_start_step": -1, **training})
    return config


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    t = np.arange(SR) / SR
    for name, f0 in (("a.wav", 110.0), ("b.wav", 230.0)):
        wav = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * np.random.default_rng(int(f0)).standard_normal(SR)
        sf.write(root / name, wav.astype(np.float32), SR)
    return root


@pytest.fixture
def cut_run(tmp_path, clips) -> Path:
    """A codec run folder with a checkpoint at step 2 and no final/ (as a killed run leaves it)."""
    run = tmp_path / "run"
    train_codec(_tiny(max_steps=2, save_every=2), clips, run)
    shutil.rmtree(run / "final")
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_codec_checkpoint_holds_only_safetensors_and_json(cut_run):
    names = sorted(p.name for p in (cut_run / "checkpoint").iterdir())
    assert names == ["config.json", "model.safetensors", "optimizer.safetensors", "rng_state_0.safetensors",
                     "scheduler.json", "train_state.json"]
    assert not [p for p in cut_run.rglob("*") if p.suffix in (".pkl", ".bin", ".pt", ".pth", ".pickle")]


@pytest.mark.parametrize("name", ["checkpoint/custom_checkpoint_0.pkl", "checkpoint/optimizer.bin",
                                  "checkpoint/random_states_0.pkl", ".checkpoint.old/scheduler.bin"])
def test_a_codec_run_holding_a_pickle_is_refused_before_it_is_read(cut_run, clips, tmp_path, name):
    marker = tmp_path / "code_ran"
    plant_pickle(cut_run / name, marker)
    before = _snapshot(cut_run)
    with pytest.raises(CheckpointError, match=r"refusing to resume .*pickle-format files .*"
                       + Path(name).name.replace(".", r"\.")) as error:
        train_codec(_tiny(max_steps=3, save_every=2), clips, cut_run, resume=True)
    assert "safetensors" in str(error.value)  # says what a checkpoint holds instead
    assert not marker.exists()
    assert _snapshot(cut_run) == before  # nothing written, nothing moved
    assert not (cut_run / "final").exists()


def test_refuse_pickles_names_every_pickle_format_and_accepts_data(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("model.safetensors", "train_state.json", "scheduler.json", "log.jsonl", "sub/notes.txt"):
        (tmp_path / name).write_text("{}")
    refuse_pickles(tmp_path)  # data only: accepted
    for name in ("a.pkl", "b.PICKLE", "sub/c.pt", "d.pth", "e.ckpt", "f.bin"):
        (tmp_path / name).write_bytes(b"\x80\x04.")
        with pytest.raises(CheckpointError, match=Path(name).name.replace(".", r"\.")):
            refuse_pickles(tmp_path)
        (tmp_path / name).unlink()


# ---- save_training_state / load_training_state ----------------------------------------------------------------

def _objects(seed: int):
    """A small model with an AdamW optimizer (two parameter groups, as the trainers build) and a LambdaLR."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    params = list(model.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                  lr=1e-2, betas=(0.5, 0.9))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9 ** step)
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(5, 4)  # draws from the global RNG: the restored RNG must give the same batches
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_training_state_round_trips_exactly_and_training_continues_identically(tmp_path):
    accelerator = Accelerator(cpu=True)
    model, optimizer, scheduler = _objects(0)
    _train(model, optimizer, scheduler, 3)
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    save_training_state(accelerator, tmp_path, [model], [optimizer], [scheduler])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "optimizer.safetensors",
                                                          "rng_state_0.safetensors", "scheduler.json"]
    expected_draws = _draws()
    _train(model, optimizer, scheduler, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    fresh_model, fresh_optimizer, fresh_scheduler = _objects(1)  # other weights, empty optimizer state
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    load_training_state(accelerator, tmp_path, [fresh_model], [fresh_optimizer], [fresh_scheduler])
    assert fresh_scheduler.state_dict()["last_epoch"] == 3
    assert fresh_scheduler.get_last_lr()[0] == pytest.approx(1e-2 * 0.9 ** 3)
    assert fresh_optimizer.param_groups[0]["betas"] == (0.5, 0.9)  # a tuple again, as AdamW keeps it
    state = fresh_optimizer.state_dict()["state"]
    assert sorted(state) == [0, 1, 2, 3] and all(int(s["step"]) == 3 for s in state.values())
    assert _draws() == expected_draws  # torch, numpy and random all restored
    _train(fresh_model, fresh_optimizer, fresh_scheduler, 2)  # the same batches, moments and learning rates
    assert all(torch.equal(expected[k], v) for k, v in fresh_model.state_dict().items())


def test_optimizer_moments_are_restored_bit_for_bit(tmp_path):
    accelerator = Accelerator(cpu=True)
    model, optimizer, scheduler = _objects(0)
    _train(model, optimizer, scheduler, 2)
    save_training_state(accelerator, tmp_path, [model], [optimizer], [scheduler])
    other = _objects(3)
    load_training_state(accelerator, tmp_path, [other[0]], [other[1]], [other[2]])
    mine, theirs = optimizer.state_dict(), other[1].state_dict()
    assert mine["param_groups"] == theirs["param_groups"]
    for index, values in mine["state"].items():
        for name, value in values.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(theirs["state"][index][name])), (index, name)


def test_a_state_that_does_not_fit_the_objects_is_refused_naming_the_file(tmp_path):
    accelerator = Accelerator(cpu=True)
    model, optimizer, scheduler = _objects(0)
    _train(model, optimizer, scheduler, 1)
    save_training_state(accelerator, tmp_path, [model], [optimizer], [scheduler])
    wider = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    wider_optimizer = torch.optim.AdamW(wider.parameters())
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_training_state(accelerator, tmp_path, [wider], [wider_optimizer],
                            [torch.optim.lr_scheduler.LambdaLR(wider_optimizer, lambda s: 1.0)])
    one_group = torch.optim.AdamW(_objects(0)[0].parameters())
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors.*parameter groups"):
        load_training_state(accelerator, tmp_path, [_objects(0)[0]], [one_group], [])
    (tmp_path / "scheduler.json").unlink()
    with pytest.raises(CheckpointError, match="has no scheduler.json"):
        load_training_state(accelerator, tmp_path, [model], [optimizer], [scheduler])
    (tmp_path / "rng_state_0.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"rng_state_0\.safetensors"):
        load_training_state(accelerator, tmp_path, [], [], [])
    os.remove(tmp_path / "optimizer.safetensors")
    with pytest.raises(CheckpointError, match="has no optimizer.safetensors"):
        load_training_state(accelerator, tmp_path, [model], [optimizer], [scheduler])
    plant_pickle(tmp_path / "optimizer.bin", tmp_path / "ran")
    with pytest.raises(CheckpointError, match=r"optimizer\.bin"):
        load_training_state(accelerator, tmp_path, [model], [optimizer], [scheduler])
    assert not (tmp_path / "ran").exists()
