"""Peak memory of one epoch of LM training batches, for a tokenized dataset of S rows and of 10 x S rows.

    .venv/bin/python benchmarks/lm_data_memory.py                    # S = 4000 rows: about 30 and 305 MiB of codes
    .venv/bin/python benchmarks/lm_data_memory.py --rows 1000 --scale 10 --no-eager

The datasets are random codes in `rvqaudio tokenize`'s output format (a `tokenize_config.json` folder of shards and
parts, written by the tokenizer's own `DiskSink`): K = 8 codebooks of 1024 codes, int16, 250 to 750 frames a row
(3.3 to 10 s at 75 Hz), a short text each. Each measurement runs in a fresh process: `pipelines.lm_data` opens the
folder (`open_lm_data`, `LMExamples.from_dataset`), then `collate` builds every batch of one epoch of a
`BatchPlan` (batch 16, crops of 750 frames), as `train_lm` does. Printed per dataset:

    anon peak   the peak of the process's anonymous resident memory (RssAnon, sampled every 25 batches and at the
                end): what the data loading holds, the figure that must stay flat
    RSS peak    `ru_maxrss`, which also counts the pages of the memory-mapped Arrow files read during the epoch;
                the kernel drops those under memory pressure (they are the page cache, not the process's own)

`eager` (skipped with --no-eager) is the same epoch after reading every row's codes into a tensor first (int16),
what a loader that materializes the table would hold: the contrast shows that the measurement sees such growth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory_probe import run_child  # noqa: E402  (benchmarks/, the script's own folder)

K, CODEBOOK_SIZE, FRAMES, PART_ROWS = 8, 1024, (250, 750), 2000

CHILD = r"""
import json, math, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from pipelines.lm_data import BatchPlan, LMExamples, collate, open_lm_data
mode, path = sys.argv[2], sys.argv[3]

sys.path.insert(0, sys.argv[1] + "/benchmarks")
from memory_probe import anon_mb

start = time.perf_counter()
train, _, _ = open_lm_data(path)
examples = LMExamples.from_dataset(train, task="speech")
eager = [torch.from_numpy(examples.codes(i).astype("int16")) for i in range(len(examples))] if mode == "eager" else None
plan = BatchPlan(examples.frames, batch_size=16, max_frames=750, seed=0)
peak, checksum = anon_mb(), 0
for step in range(math.ceil(len(examples) / 16)):
    batch = plan.batch(step)
    if eager is None:
        codes = collate(examples, batch).codes
    else:
        codes = torch.zeros(len(batch), 8, int(batch.length.max()), dtype=torch.long)
        for b, (i, s, n) in enumerate(zip(batch.index, batch.start, batch.length)):
            codes[b, :, :n] = eager[int(i)][:, s:s + n]
    checksum += int(codes.sum())
    if step % 25 == 0:
        peak = max(peak, anon_mb())
peak = max(peak, anon_mb())
print(json.dumps({"anon_peak_mb": peak, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - start, "rows": len(examples), "checksum": checksum}))
"""


def write_dataset(output: Path, rows: int, seed: int) -> float:
    """A `tokenize_dataset`-format folder of `rows` rows of random codes, written part by part; returns the MB of
    codes (int16)."""
    import datasets
    import pyarrow as pa
    from datasets import Dataset, Features, List, Value

    from pipelines.tokenize.storage import DiskSink, codec_metadata, metadata_description
    from tokenizer import CodecConfig, RVQCodec

    codec = RVQCodec(CodecConfig(sample_rate=24000, n_filters=4, strides=(4, 5, 16), dimension=16,
                                 quantizer={"num_codebooks": K, "codebook_size": CODEBOOK_SIZE}))
    meta = codec_metadata(codec, K)
    features = Features({"codes": List(List(Value("int16"))), "text": Value("string"), "duration": Value("float64")})
    info = datasets.DatasetInfo(description=metadata_description(meta), features=features)
    sink = DiskSink(output, {"features": features.to_dict(), "codec": meta, "num_shards": 1}, 1, 0, resume=False)
    rng, total = np.random.default_rng(seed), 0
    for part, lo in enumerate(range(0, rows, PART_ROWS)):
        n = min(PART_ROWS, rows - lo)
        frames = rng.integers(*FRAMES, n, endpoint=True)
        values = rng.integers(0, CODEBOOK_SIZE, int(frames.sum()) * K).astype(np.int16)  # row-major: (K, T) each
        inner = np.concatenate([[0], np.cumsum(np.repeat(frames, K))]).astype(np.int32)
        outer = np.arange(0, n * K + 1, K, dtype=np.int32)
        codes = pa.ListArray.from_arrays(outer, pa.ListArray.from_arrays(inner, pa.array(values)))
        table = pa.table({"codes": codes, "text": [f"a sentence spoken in row {lo + i}" for i in range(n)],
                          "duration": (frames / codec.frame_rate).astype(np.float64)})
        sink.write(part, Dataset(table.cast(features.arrow_schema), info=info), {"rows": n})
        total += values.nbytes
    sink.finish(rows)
    return total / 2**20


def measure(mode: str, path: Path) -> dict:
    return run_child(CHILD, ROOT, mode, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4000, help="S, rows of the smaller dataset")
    parser.add_argument("--scale", type=int, default=10, help="the larger dataset has scale x S rows")
    parser.add_argument("--no-eager", dest="eager", action="store_false", help="skip the materialized contrast")
    args = parser.parse_args()
    modes = ["lazy", "eager"] if args.eager else ["lazy"]
    print("| rows | codes | loader | anon peak | RSS peak | epoch time |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (args.rows, args.rows * args.scale):
            folder = Path(tmp) / f"codes_{rows}"
            size = write_dataset(folder, rows, seed=rows)
            for mode in modes:
                got = measure(mode, folder)
                assert got["rows"] == rows
                print(f"| {rows} | {size:.0f} MB | {mode} | {got['anon_peak_mb']:.0f} MB | {got['rss_peak_mb']:.0f} MB "
                      f"| {got['seconds']:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
