"""`rvqaudio tokenize --num-shards N --shard-index I` on N machines: the shards, written in any order with any batch
size, read back by `load_tokenized` as exactly what one process writes, even with more shards than files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from pipelines.cli import main
from pipelines.tokenize import TokenizeError, load_tokenized, tokenize_dataset

from .conftest import fitted_codec

LENGTHS_16K = [3000, 8000, 4400, 12000, 1600, 6300, 9100]  # samples at 16 kHz: 0.1 to 0.75 s


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder of seven wav files (some in a sub-folder), a codec folder, and one process's output."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    for i, n in enumerate(LENGTHS_16K):
        path = root / "audio" / ("sub" if i % 3 == 0 else "") / f"clip{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(n) / 16000
        sf.write(path, 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(n), 16000)
    fitted_codec().save_pretrained(root / "codec")
    one = tokenize_dataset(root / "audio", root / "codec", output=root / "one", part_size=2, progress=False)
    return root, one


def _machine(root, output, num_shards: int, index: int, batch_size: int) -> None:
    """What one machine of a cluster runs."""
    assert main(["tokenize", str(root / "audio"), "-o", str(output), "--codec", str(root / "codec"),
                 "--num-shards", str(num_shards), "--shard-index", str(index), "--batch-size", str(batch_size),
                 "--part-size", "2", "--no-progress"]) == 0


def _assert_same(whole, one) -> None:
    assert whole.column_names == one.column_names
    for column in one.column_names:
        assert whole[column] == one[column], column


@pytest.mark.parametrize("num_shards", [3, 9])  # 9 > 7 files: some machines get no rows
def test_shards_from_the_command_line_read_back_as_one_process(setup, tmp_path, num_shards):
    root, one = setup
    for index in reversed(range(num_shards)):  # machines finish in any order, each with its own batch size
        _machine(root, tmp_path / "out", num_shards, index, batch_size=1 + index % 3)
    whole = load_tokenized(tmp_path / "out")
    _assert_same(whole, one)
    assert sorted(p.name for p in (tmp_path / "out").glob("shard-*")) == \
        [f"shard-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    report = json.loads((tmp_path / "out" / "tokenize_report.json").read_text())
    assert report["complete"] and report["total"] == report["encoded"] == len(LENGTHS_16K)


def test_an_unfinished_shard_is_named_until_its_machine_runs(setup, tmp_path):
    root, one = setup
    _machine(root, tmp_path / "out", 2, 1, batch_size=2)
    with pytest.raises(TokenizeError, match="shard-00000-of-00002 .0 parts written"):
        load_tokenized(tmp_path / "out")
    _machine(root, tmp_path / "out", 2, 0, batch_size=4)
    _assert_same(load_tokenized(tmp_path / "out"), one)
