"""Nothing runs that the user did not write, nothing is lost on resume: an LM run folder holding a pickle is refused
before it is read, and a resumed tokenization re-encodes the source rows that changed since their part was written."""

from __future__ import annotations

import pathlib
import pickle
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
from datasets import Dataset

from pipelines.lm_training import train_lm
from pipelines.tokenize import tokenize_dataset
from tokenizer import CheckpointError, RVQCodec

from .conftest import fitted_codec as _codec
from .conftest import train_tiny_lm


class _TouchOnLoad:
    """Unpickling this creates `path`: what a planted checkpoint file could do (run any code) when loaded."""

    def __init__(self, path) -> None:
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


@pytest.fixture(scope="module")
def codec() -> RVQCodec:
    return _codec()


# ---- an LM run folder holding a pickle -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm_run(codec, tmp_path_factory) -> dict:
    """A 2-step train_lm run folder (checkpoint at step 2), its inputs and a snapshot-free copy factory."""
    root = tmp_path_factory.mktemp("lm_run")
    training = train_tiny_lm(root, codec, "run")
    return {"root": root, "run": root / "run", "training": training}


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_lm_checkpoint_holds_only_safetensors_json_and_the_text_tokenizer(lm_run):
    files = sorted(str(p.relative_to(lm_run["run"] / "checkpoint"))
                   for p in (lm_run["run"] / "checkpoint").rglob("*") if p.is_file())
    assert files == ["lm/config.json", "lm/text_tokenizer.model", "model.safetensors", "optimizer.safetensors",
                     "rng_state_0.safetensors", "scheduler.json", "train_state.json", "training_config.json"]


@pytest.mark.parametrize("name", ["checkpoint/optimizer.bin", "checkpoint/lm/pytorch_model.bin",
                                  "checkpoint/custom_checkpoint_0.pkl"])
def test_an_lm_run_holding_a_pickle_is_refused_before_it_is_read(lm_run, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(lm_run["run"], run)
    shutil.rmtree(run / "final")  # as a killed run leaves it
    marker = tmp_path / "code_ran"
    (run / name).write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    before = _snapshot(run)
    root = lm_run["root"]
    with pytest.raises(CheckpointError, match=r"refusing to resume .*" + pathlib.Path(name).name.replace(".", r"\.")):
        train_lm(root / "lm.json", root / "data", run, codec=root / "codec", training=lm_run["training"],
                 max_steps=4, resume=True)
    assert not marker.exists()
    assert _snapshot(run) == before and not (run / "final").exists()
    (run / name).unlink()  # without it the same run resumes
    final = train_lm(root / "lm.json", root / "data", run, codec=root / "codec", training=lm_run["training"],
                     max_steps=4, resume=True)
    assert (final / "model.safetensors").is_file()


# ---- tokenize: resume after the source changed ----------------------------------------------------------------

def _write(path: pathlib.Path, samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(samples)
    sf.write(path, wav.astype(np.float32), 16000)


@pytest.fixture
def folder(tmp_path) -> pathlib.Path:
    root = tmp_path / "audio"
    root.mkdir()
    for i, n in enumerate([1600, 2400, 3200, 2000, 2800]):
        _write(root / f"clip{i}.wav", n, seed=i)
    return root


def _tokenize(folder, codec, output, **kwargs) -> Dataset:
    return tokenize_dataset(folder, codec, output=output, part_size=2, batch_size=2, progress=False, **kwargs)


def _same_dataset(got: Dataset, expected: Dataset) -> None:
    assert got["file_name"] == expected["file_name"]
    assert len(set(got["file_name"])) == len(got)  # no file twice
    assert got["codes"] == expected["codes"] and got["duration"] == expected["duration"]


def _changed_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "the source changed" in str(w.message)]


def _kill_after_first_parts(output: pathlib.Path, keep: int) -> None:
    """What a run killed after writing `keep` parts leaves: those parts, no later ones, no done marker."""
    shard = output / "shard-00000-of-00001"
    (shard / "done.json").unlink()
    for part in sorted(shard.glob("part-*"))[keep:]:
        shutil.rmtree(part)


def test_resuming_after_a_tokenized_file_changed_re_encodes_it(folder, codec, tmp_path):
    _tokenize(folder, codec, tmp_path / "out")
    _kill_after_first_parts(tmp_path / "out", keep=2)  # clip0..clip3 done, clip4 not
    _write(folder / "clip1.wav", 3600, seed=42)  # same name, other (longer) audio, in part 0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed = _tokenize(folder, codec, tmp_path / "out")
    changed = _changed_warnings(record)
    assert len(changed) == 1 and "clip1.wav" in changed[0] and "part-00000" in changed[0]
    assert "clip0.wav" not in changed[0]  # only the changed row is named
    fresh = _tokenize(folder, codec, tmp_path / "fresh")
    _same_dataset(resumed, fresh)
    assert resumed[1]["duration"] == pytest.approx(3600 / 16000)


def test_resuming_after_files_were_renamed_re_encodes_from_the_first_changed_part(folder, codec, tmp_path):
    _tokenize(folder, codec, tmp_path / "out")
    _kill_after_first_parts(tmp_path / "out", keep=2)
    (folder / "clip2.wav").rename(folder / "clip2b.wav")  # same number of files: part 1 now holds other rows
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed = _tokenize(folder, codec, tmp_path / "out")
    changed = _changed_warnings(record)
    assert len(changed) == 1 and "part-00001" in changed[0] and "clip2" in changed[0]
    fresh = _tokenize(folder, codec, tmp_path / "fresh")
    _same_dataset(resumed, fresh)
    assert "clip2b.wav" in resumed["file_name"] and "clip2.wav" not in resumed["file_name"]


def test_a_finished_output_whose_source_changed_is_re_encoded_on_rerun(folder, codec, tmp_path):
    first = _tokenize(folder, codec, tmp_path / "out")
    with warnings.catch_warnings(record=True) as record:  # unchanged: nothing re-encoded, nothing said
        warnings.simplefilter("always")
        again = _tokenize(folder, codec, tmp_path / "out")
    assert _changed_warnings(record) == []
    _same_dataset(again, first)
    _write(folder / "clip4.wav", 1200, seed=7)  # the last part's only file
    with pytest.warns(UserWarning, match=r"the source changed since .*part-00002.*clip4\.wav"):
        rerun = _tokenize(folder, codec, tmp_path / "out")
    _same_dataset(rerun, _tokenize(folder, codec, tmp_path / "fresh"))
    assert rerun[4]["duration"] == pytest.approx(1200 / 16000) and first[4]["duration"] != rerun[4]["duration"]
    assert (tmp_path / "out" / "shard-00000-of-00001" / "done.json").is_file()


def test_resume_after_a_kill_with_an_unchanged_source_warns_of_nothing(folder, codec, tmp_path):
    reference = _tokenize(folder, codec, tmp_path / "ref")
    _tokenize(folder, codec, tmp_path / "out")
    _kill_after_first_parts(tmp_path / "out", keep=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed = _tokenize(folder, codec, tmp_path / "out")
    assert _changed_warnings(record) == []
    _same_dataset(resumed, reference)
