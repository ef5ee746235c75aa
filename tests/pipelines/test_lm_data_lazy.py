"""The LM's training data stays in its memory-mapped Arrow files: `LMExamples` holds per-example numbers only and
reads each batch's codes when the batch is built, and those batches equal the ones built from codes read up front.
(benchmarks/lm_data_memory.py measures the memory of an epoch at 10x the data.)"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, List, Value
from datasets.table import ConcatenationTable, MemoryMappedTable

from pipelines.lm_data import BatchPlan, LMExamples, collate, eval_batches, open_lm_data
from pipelines.tokenize.storage import DiskSink, metadata_description

K = 4
FEATURES = Features({"codes": List(List(Value("int16"))), "text": Value("string")})


def rows(n: int, seed: int) -> dict[str, list]:
    """`n` rows as `rvqaudio tokenize` writes them: codes K x T (T from 3 to 30), a text; one without text."""
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 1024, (K, int(t))).tolist() for t in rng.integers(3, 31, n)]
    texts = [f"sentence {i}" if i != 2 else "" for i in range(n)]  # row 2 is left out: positions != row numbers
    return {"codes": codes, "text": texts}


def save(columns: dict[str, list], folder: Path, layout: str) -> Path:
    """`columns` on disk: a save_to_disk DatasetDict, or a tokenize output of two parts (one shard)."""
    if layout == "saved":
        DatasetDict({"train": Dataset.from_dict(columns, features=FEATURES)}).save_to_disk(str(folder))
        return folder
    meta = {"fingerprint": "test", "num_codebooks": K}
    info = datasets.DatasetInfo(description=metadata_description(meta), features=FEATURES)
    sink = DiskSink(folder, {"features": FEATURES.to_dict(), "codec": meta, "num_shards": 1}, 1, 0, resume=False)
    half = len(columns["text"]) // 2
    for part, (lo, hi) in enumerate(((0, half), (half, len(columns["text"])))):
        sink.write(part, Dataset.from_dict({k: v[lo:hi] for k, v in columns.items()}, features=FEATURES, info=info),
                   {"rows": hi - lo})
    sink.finish(len(columns["text"]))
    return folder


def _tables(dataset: Dataset) -> list:
    table = dataset.data
    return [t for block in table.blocks for t in block] if isinstance(table, ConcatenationTable) else [table]


@pytest.mark.parametrize("layout", ["saved", "tokenize"])
def test_examples_read_codes_from_the_memory_mapped_files_and_hold_only_per_example_numbers(tmp_path, layout):
    columns = rows(40, 0)
    folder = save(columns, tmp_path / "data", layout)
    train, _, _ = open_lm_data(folder)
    before = pa.total_allocated_bytes()
    examples = LMExamples.from_dataset(train, task="speech")
    assert len(examples) == 39
    # The codes are the Arrow files on disk, mapped: no table of them in memory.
    assert all(isinstance(t, MemoryMappedTable) for t in _tables(examples.dataset))
    assert {Path(f["filename"]).resolve().is_relative_to(folder.resolve()) for f in examples.dataset.cache_files} \
        == {True}
    # Nothing else holds a value per frame: arrays have one entry per example, lists one item per example.
    for name, value in vars(examples).items():
        if isinstance(value, (np.ndarray, torch.Tensor)):
            assert value.shape == (len(examples),), name
        elif isinstance(value, list):
            assert len(value) == len(examples) and not any(isinstance(v, (list, np.ndarray)) for v in value), name
    plan = BatchPlan(examples.frames, 8, 12, seed=0)
    for step in range(10):  # two epochs
        collate(examples, plan.batch(step))
    # Reading batches leaves no Arrow memory behind (each row is read from the mapped file and let go).
    assert pa.total_allocated_bytes() - before < 4096


@pytest.mark.parametrize("layout", ["saved", "tokenize"])
def test_batches_from_the_files_equal_batches_from_codes_read_up_front(tmp_path, layout):
    columns = rows(40, 1)
    lazy = LMExamples.from_dataset(open_lm_data(save(columns, tmp_path / "data", layout))[0], task="music")
    in_memory = LMExamples.from_dataset(Dataset.from_dict(columns, features=FEATURES), task="music")
    up_front = [np.asarray(codes, dtype=np.int64) for codes in columns["codes"]]  # (K, T) per row, all read first
    assert np.array_equal(lazy.rows, in_memory.rows) and np.array_equal(lazy.frames, in_memory.frames)
    plan = BatchPlan(lazy.frames, 8, 12, seed=3)  # music: random crops of the longer rows
    for step in range(10):
        batch = plan.batch(step)
        got = collate(lazy, batch)
        assert torch.equal(got.codes, collate(in_memory, batch).codes)
        expected = torch.zeros(len(batch), K, int(batch.length.max()), dtype=torch.long)  # (B, K, T)
        for b, (i, start, length) in enumerate(zip(batch.index, batch.start, batch.length)):
            expected[b, :, :length] = torch.from_numpy(up_front[lazy.rows[i]][:, start:start + length])
        assert torch.equal(got.codes, expected)
        assert got.texts == [columns["text"][lazy.rows[i]] for i in batch.index]
    for got, reference in zip(eval_batches(lazy, 8, 12), eval_batches(in_memory, 8, 12)):
        assert torch.equal(got.codes, reference.codes)


def test_frame_counts_come_from_the_list_offsets_of_any_view_of_the_table():
    columns = rows(30, 2)
    columns["codes"][4], columns["codes"][5], columns["codes"][6] = None, [], [None, [1, 2]]  # no usable frames
    dataset = Dataset.from_dict(columns, features=FEATURES)
    views = {"whole": dataset, "selected": dataset.select([9, 4, 1, 6, 20]), "shuffled": dataset.shuffle(seed=0),
             "concatenated": datasets.concatenate_datasets([dataset.select(range(3, 17)), dataset])}
    for name, view in views.items():
        expected = [len(c[0]) if c and c[0] is not None else 0 for c in view["codes"]]
        examples = LMExamples.from_dataset(view, task="music")
        assert examples.frames.tolist() == [expected[i] for i in examples.rows], name
        assert examples.dropped.get("no frames", 0) == sum(n == 0 for n, t in zip(expected, view["text"]) if t), name


@pytest.mark.parametrize("outer, inner", [(2, None), (2, 3), (None, 3)])
def test_frame_counts_of_fixed_size_list_layouts(outer, inner):
    """Codes stored with a fixed number of codebooks (e.g. `Sequence(length=K)`) or frames count as variable ones."""
    inner_type = pa.list_(pa.int64(), inner) if inner else pa.list_(pa.int64())
    codes_type = pa.list_(inner_type, outer) if outer else pa.list_(inner_type)
    frames = 3 if inner else None
    data = [[[i] * (frames or i + 1)] * 2 for i in range(6)]
    data[2] = None
    array = pa.array(data, type=codes_type)
    for view in (array, array.slice(1), array.slice(2, 3)):
        expected = [0 if row is None else len(row[0]) for row in view.to_pylist()]
        table = pa.table({"codes": view, "text": pa.array(["a tone"] * len(view))})
        examples = LMExamples.from_dataset(Dataset(table), task="music")
        assert examples.frames.tolist() == [expected[i] for i in examples.rows]
