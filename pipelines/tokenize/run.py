"""The run: `tokenize_dataset` checks its settings, opens the source, and feeds this process's share, row chunk by
row chunk, to the encoder (in this process or a pool of workers) and the encoded parts, in order, to a sink.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict
from tqdm.auto import tqdm

from tokenizer import RVQCodec

from ..defaults import resolve_codec
from .identity import cell_name, identities, row_identity
from .sources import Columns, TokenizeError, check_int, open_source, resolve_sharding, take_share
from .storage import (FORMAT_VERSION, REPORT_FILE, DiskSink, MemorySink, codec_metadata, metadata_description,
                      write_report)
from .workers import Encoder, Ready, init_worker, work


def tokenize_dataset(
    source: Dataset | IterableDataset | DatasetDict | IterableDatasetDict | str | os.PathLike,
    codec: RVQCodec | str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    audio_column: str | None = None,
    text_column: str | None = None,
    batch_size: int = 8,
    num_codebooks: int | None = None,
    num_shards: int = 1,
    shard_index: int | None = None,
    num_proc: int = 1,
    resume: bool = True,
    progress: bool = True,
    part_size: int = 1000,
) -> Dataset:
    """Encode every example's audio with `codec` into `codes` (K x T) at the codec's rate and channels.

    Args:
        source: a (Iterable)Dataset with an `Audio` column, or a folder: one written by `save_to_disk`, an
            audiofolder (audio files + metadata.csv/metadata.jsonl with `file_name`; files it does not list are
            not tokenized, as with `load_dataset("audiofolder")`), or any folder of audio files (recursive).
        codec: an `RVQCodec`, a codec folder, or None for the bundled codec.
        output: folder to write shards, parts and the report to; None keeps the result in memory (no resume).
        audio_column / text_column: default to the first `Audio` column and to the first of `TEXT_COLUMNS`.
        batch_size: items encoded together (zero-padded to the longest; items longer than the codec's
            `chunk_seconds` are encoded alone, chunk by chunk, in bounded memory).
        num_codebooks: K, the codebooks kept (default all).
        num_shards / shard_index: this process encodes contiguous share `shard_index` of `num_shards`. With
            `shard_index=None` and `num_shards=1` both come from accelerate's `PartialState`, or from torchrun's
            WORLD_SIZE/RANK (one share per process when launched that way, the whole source otherwise).
            An IterableDataset is split by its source shards (files): it needs `num_shards <= source.num_shards`.
        num_proc: worker processes encoding in parallel on this machine (CPU).
        resume: skip parts (and shards) already written to `output`; False re-encodes this process's share.
        progress: show a tqdm bar with the rows done and the speed in audio seconds per second (= audio
            hours per hour).
        part_size: source rows per part, the unit written atomically and skipped on resume.

    Returns this process's share as a Dataset (all of it when `num_shards == 1`); after a multi-process run,
    `load_tokenized(output)` gives the whole result. Undecodable, empty or too-short audio (fewer samples than
    one frame, `hop_length`) is skipped and listed, with its index, path and reason, in
    `output/tokenize_report.json` (and in a warning).
    """
    codec = resolve_codec(codec)
    k = codec.num_codebooks if num_codebooks is None else num_codebooks
    check_int("num_codebooks", k, 1, codec.num_codebooks)
    for name, value in (("batch_size", batch_size), ("num_proc", num_proc), ("part_size", part_size)):
        check_int(name, value, 1)
    num_shards, shard_index = resolve_sharding(num_shards, shard_index)
    if output is None and num_shards > 1:
        raise TokenizeError(f"{num_shards} processes share this run (num_shards, or accelerate's process count); "
                            "pass output=FOLDER for their shards, then load_tokenized(FOLDER)")
    if num_proc > 1 and next(codec.parameters()).device.type != "cpu":
        raise TokenizeError("num_proc > 1 runs CPU worker processes; on a GPU use a larger batch_size instead")

    ds = open_source(source)
    columns = Columns.pick(ds, audio_column, text_column)
    ds = columns.raw_audio(ds)
    meta = codec_metadata(codec, k)
    features = columns.output_features(k, np.dtype(meta["codes_dtype"]))
    share, offset = take_share(ds, num_shards, shard_index)
    config = {"format_version": FORMAT_VERSION, "codec": meta, "num_shards": num_shards, "part_size": part_size,
              "source_rows": len(ds) if isinstance(ds, Dataset) else None, "audio_column": columns.audio,
              "text_column": columns.text, "features": features.to_dict()}
    sink = (MemorySink() if output is None else
            DiskSink(Path(output), config, num_shards, shard_index, resume))
    first_part = sink.finished_parts()
    if isinstance(sink, DiskSink):
        first_part = _verify_written_parts(sink, share, first_part, part_size, columns.audio)
    if first_part is not None:  # None: this share is already complete
        rows_left = None
        if isinstance(share, Dataset):
            rows_left = max(0, len(share) - first_part * part_size)
            share = share.select(range(len(share) - rows_left, len(share)))
        else:
            share = share.skip(first_part * part_size)
        encoder = Encoder(codec, k, batch_size)
        name = f"shard {shard_index + 1}/{num_shards}" if num_shards > 1 else "tokenize"
        with tqdm(total=rows_left, desc=name, unit="file", disable=not progress, dynamic_ncols=True) as bar:
            _Run(encoder, columns, features, meta, sink, bar, offset, part_size, num_proc).run(
                iter(share), first_part)
    result = sink.result(features, meta)
    if output is not None:
        report = write_report(Path(output), config)
        if report["num_skipped"]:
            shown = "; ".join(f"{s['path'] or s['index']}: {s['reason']}" for s in report["skipped"][:5])
            warnings.warn(f"skipped {report['num_skipped']} of {report['total']} examples (listed in "
                          f"{Path(output) / REPORT_FILE}), e.g. {shown}", stacklevel=2)
    elif sink.skipped:
        shown = "; ".join(f"{s['path'] or s['index']}: {s['reason']}" for s in sink.skipped[:20])
        warnings.warn(f"skipped {len(sink.skipped)} examples: {shown}", stacklevel=2)
    return result


def _verify_written_parts(sink: DiskSink, share, first_part: int | None, part_size: int,
                          audio_column: str) -> int | None:
    """The part to resume from: `first_part` when every part already written still matches the current source rows
    (`identity`), else the first part that does not, whose rows are named in a warning and re-encoded with all
    later ones (None: the share is complete and unchanged)."""
    written = sink.written_parts()
    if not written:
        return first_part
    if isinstance(share, Dataset):
        rows = (share.select(range(k * part_size, min((k + 1) * part_size, len(share)))) for k in range(written))
    else:  # one pass over the stream's first parts
        stream = iter(share.take(written * part_size))
        rows = (list(itertools.islice(stream, part_size)) for _ in range(written))
    for part, part_rows in enumerate(rows):
        stored = sink.part_sources(part)
        current = identities(part_rows, audio_column, part * part_size)
        if stored == current:
            continue
        if stored is None:
            changed = ["(the part records no source identities)"]
        else:
            known = {name: identity for name, identity in stored}
            changed = [name for name, identity in current if known.get(name) != identity]
            changed += [name for name, _ in stored if name not in {n for n, _ in current}]
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        warnings.warn(f"the source changed since {sink.dir / f'part-{part:05d}'} was written ({shown}): "
                      f"re-encoding from that part on", stacklevel=3)
        sink.drop_from(part)
        return part
    return first_part


# ---- the run: rows -> chunks -> encoder (in order) -> parts ---------------------------------------------------
class _Run:
    def __init__(self, encoder: Encoder, columns: Columns, features: Features, meta: dict, sink, bar,
                 offset: int | None, part_size: int, num_proc: int):
        self.encoder, self.columns, self.features, self.meta, self.sink, self.bar = \
            encoder, columns, features, meta, sink, bar
        self.offset, self.part_size, self.num_proc = offset, part_size, num_proc
        self.chunk_rows = 4 * encoder.batch_size  # rows sorted by length together
        self.start, self.audio_seconds = time.perf_counter(), 0.0
        self._new_part()

    def run(self, rows: Iterator[dict], first_part: int) -> None:
        pool = None
        if self.num_proc > 1:
            # fork shares the codec and the dataset with the workers without pickling them; spawn elsewhere.
            ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
            threads = max(1, torch.get_num_threads() // self.num_proc)
            pool = ctx.Pool(self.num_proc, initializer=init_worker, initargs=(self.encoder, threads))
        pending: deque = deque()
        max_pending = 2 * self.num_proc if pool else 0
        position = first_part * self.part_size  # index of the next row within the share
        try:
            for part in itertools.count(first_part):
                part_rows, taken = itertools.islice(rows, self.part_size), 0
                while chunk := list(itertools.islice(part_rows, self.chunk_rows)):
                    cells = [row.pop(self.columns.audio) for row in chunk]
                    job = pool.apply_async(work, (cells,)) if pool else Ready(self.encoder(cells))
                    pending.append((position, chunk, cells, job))
                    position, taken = position + len(chunk), taken + len(chunk)
                    while len(pending) > max_pending:
                        self._collect(*pending.popleft())
                if taken:
                    pending.append((part, None, None, None))  # marks the end of a part
                while len(pending) > max_pending:
                    self._collect(*pending.popleft())
                if taken < self.part_size:
                    break
            while pending:
                self._collect(*pending.popleft())
            self.sink.finish(position)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()

    def _new_part(self) -> None:
        self.rows: list[dict] = []
        self.codes: list[np.ndarray] = []
        self.durations: list[float] = []
        self.skipped: list[dict] = []
        self.sources: list[list[str]] = []  # [name, identity] of every source row of the part, in order

    def _collect(self, position: int, chunk: list[dict] | None, cells, job) -> None:
        if chunk is None:  # end of part `position`
            part = self._build()
            report = {"rows": len(self.rows) + len(self.skipped), "encoded": len(self.rows),
                      "audio_seconds": float(sum(self.durations)), "skipped": self.skipped,
                      "sources": self.sources}
            self.sink.write(position, part, report)
            self._new_part()
            return
        for i, (row, cell, (codes, seconds, reason)) in enumerate(zip(chunk, cells, job.get())):
            self.sources.append([cell_name(cell, position + i), row_identity(row, cell)])
            if codes is None:
                index = position + i if self.offset is None else self.offset + position + i
                path = cell.get("path") if isinstance(cell, dict) else None
                self.skipped.append({"index": index, "path": path, "reason": reason})
            else:
                self.rows.append(row)
                self.codes.append(codes)
                self.durations.append(seconds)
                self.audio_seconds += seconds
        speed = self.audio_seconds / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.audio_seconds / 3600:.3f} h audio, {speed:.1f} audio s/s (= h/h)",
                                 refresh=False)
        self.bar.update(len(chunk))

    def _build(self) -> Dataset | None:
        if not self.rows:
            return None
        text = self.columns.text
        data = {"codes": _codes_array(self.codes, self.encoder.k),
                "text": ["" if text is None or row.get(text) is None else str(row[text]) for row in self.rows],
                "duration": self.durations,
                **{c: [row[c] for row in self.rows] for c in self.columns.extras}}
        info = datasets.DatasetInfo(description=metadata_description(self.meta), features=self.features)
        return Dataset.from_dict(data, features=self.features, info=info)


def _codes_array(codes: list[np.ndarray], k: int) -> pa.ChunkedArray:
    """(K, T_i) arrays -> Arrow fixed_size_list<list<int>>[K], built without Python lists. Chunked so that no
    chunk holds more than 2**31 values (the int32 offsets of an Arrow list)."""
    chunks, start, count = [], 0, 0
    for i, c in enumerate(codes + [None]):
        if c is None or (count + c.size > 2**31 - 1 and i > start):
            group = codes[start:i]
            lengths = np.repeat([g.shape[1] for g in group], k)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            values = pa.array(np.concatenate([g.reshape(-1) for g in group]))  # row-major: codebook by codebook
            chunks.append(pa.FixedSizeListArray.from_arrays(pa.ListArray.from_arrays(pa.array(offsets), values), k))
            start, count = i, 0
        if c is not None:
            count += c.size
    return pa.chunked_array(chunks)
