"""A training run folder given where a model folder is expected: a finished run stands for its `final/` (with a
warning), an unfinished one is a CheckpointError that says what to do."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines.cli import main
from pipelines.defaults import load_lm, resolve_codec
from tokenizer import CheckpointError, CodecConfig, RVQCodec
from tokenizer.training import train_codec

from .conftest import train_tiny_lm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def codec_runs(tmp_path_factory) -> dict[str, Path]:
    """A finished 1-step codec run and a copy of it without final/ (a run still going, or killed)."""
    root = tmp_path_factory.mktemp("codec_runs")
    t = np.arange(16000) / 16000
    sf.write(root / "clip.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    config = CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json")
    config.training = dataclasses.replace(config.training, max_steps=1, adversarial_start_step=-1)
    train_codec(config, root / "clip.wav", root / "finished")
    shutil.copytree(root / "finished", root / "unfinished")
    shutil.rmtree(root / "unfinished" / "final")
    return {"root": root, "finished": root / "finished", "unfinished": root / "unfinished", "clip": root / "clip.wav"}


def _same_weights(a: RVQCodec, b: RVQCodec) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_finished_codec_run_stands_for_its_final_folder(codec_runs):
    run = codec_runs["finished"]
    with pytest.warns(UserWarning, match=rf"'{run}' is a training run folder: using the codec it produced, "
                                         rf"'{run / 'final'}'"):
        codec = resolve_codec(run)
    assert _same_weights(codec, RVQCodec.from_pretrained(run / "final"))


def test_an_unfinished_codec_run_says_to_resume_or_export(codec_runs):
    run = codec_runs["unfinished"]
    with pytest.raises(CheckpointError) as error:
        resolve_codec(run)
    message = str(error.value)
    assert repr(str(run)) in message and "has not finished" in message and "--resume" in message
    assert f"rvqaudio export-codec {run} OUT" in message


def test_the_command_line_takes_a_codec_run_folder(codec_runs, tmp_path, capsys):
    out = tmp_path / "c.npz"
    with pytest.warns(UserWarning, match="is a training run folder"):
        assert main(["encode", str(codec_runs["clip"]), "-o", str(out), "--codec", str(codec_runs["finished"])]) == 0
    assert out.is_file()
    assert main(["decode", str(out), "-o", str(tmp_path / "o.wav"), "--codec", str(codec_runs["unfinished"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export-codec" in err and not (tmp_path / "o.wav").exists()


def test_a_model_folder_and_other_folders_are_left_to_the_loader(codec_runs, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model folder itself: no note
        resolve_codec(codec_runs["finished"] / "final")
    with pytest.raises(CheckpointError, match=r"has no config\.json; a checkpoint holds config\.json"):
        resolve_codec(tmp_path)  # an empty folder is neither: the loader says what is missing


# ---- LM runs ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm_runs")
    torch.manual_seed(0)
    codec = RVQCodec(CodecConfig(sample_rate=8000, n_filters=4, strides=(2, 4), dimension=16,
                                 quantizer={"num_codebooks": 4, "codebook_size": 32})).eval()
    train_tiny_lm(root, codec, "finished")
    shutil.copytree(root / "finished", root / "unfinished")
    shutil.rmtree(root / "unfinished" / "final")
    return {"finished": root / "finished", "unfinished": root / "unfinished"}


def test_a_finished_lm_run_stands_for_its_final_folder(lm_runs, tmp_path, capsys):
    run = lm_runs["finished"]
    with pytest.warns(UserWarning, match=rf"'{run}' is a training run folder: using the LM it produced"):
        lm = load_lm(run)
    expected = load_lm(run / "final")
    assert all(torch.equal(a, b) for a, b in zip(lm.model.state_dict().values(), expected.model.state_dict().values()))
    with pytest.warns(UserWarning, match="is a training run folder"):
        assert main(["generate", "hi", "-o", str(tmp_path / "x.wav"), "--model", str(run), "--duration", "0.02",
                     "--no-progress", "--seed", "0"]) == 0
    assert (tmp_path / "x.wav").is_file()


def test_an_unfinished_lm_run_says_to_resume_it(lm_runs):
    run = lm_runs["unfinished"]
    with pytest.raises(CheckpointError) as error:
        load_lm(run)
    message = str(error.value)
    assert repr(str(run)) in message and "has not finished" in message and "--resume" in message
    assert "export-codec" not in message  # that is for codec runs
