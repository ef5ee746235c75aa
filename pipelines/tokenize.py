"""Tokenize an audio dataset with the codec: each example's audio becomes `codes` (K lists of T frames) for the LM.

Output rows: `codes` (K x T, int16 when the codebook size allows, else int32), `text` (from `text`, `transcript`,
`caption` or `sentence`; "" when absent), `duration` (seconds of audio encoded), and every other column of the
source except the audio column (a source column named `duration` is replaced). Folder sources gain `file_name`.

Codec metadata lives in `dataset.info.description` as JSON, `{"rvqaudio_codes": {...}}`; it survives
`save_to_disk`/`load_from_disk` and `concatenate_datasets`. Read it with `read_codec_metadata(dataset)`.

Layout of `output`, written so that a killed run loses at most one part and several processes can share the work:

    output/tokenize_config.json           settings all processes share; a resumed run must match them
    output/shard-00000-of-00002/          process 0's contiguous share of the source rows
        part-00000/                       `part_size` source rows: a save_to_disk dataset + tokenize_part.json,
                                          written to a temporary folder and renamed into place when complete
        done.json                         written once the whole share is encoded
    output/tokenize_report.json           total, encoded, skipped (index, path, reason), audio hours

`load_tokenized(output)` concatenates the shards in order: the same rows as one process would have written.
The codes do not depend on batch_size, num_proc or the sharding: each item's codes are those of encoding it
alone (see `_Encoder.encode` for the convolution backend this takes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import datasets
import numpy as np
import pyarrow as pa
import soundfile as sf
import torch
from datasets import Audio, Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict, List, Value
from tqdm.auto import tqdm

from tokenizer import RVQCodec
from tokenizer.audio import load_audio, resample, to_channels

from .defaults import resolve_codec

__all__ = ["TokenizeError", "load_tokenized", "read_codec_metadata", "tokenize_dataset"]

TEXT_COLUMNS = ("text", "transcript", "caption", "sentence")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac", ".aif", ".aiff")
METADATA_KEY = "rvqaudio_codes"
FORMAT_VERSION = 1
CONFIG_FILE, REPORT_FILE = "tokenize_config.json", "tokenize_report.json"
PART_FILE, DONE_FILE = "tokenize_part.json", "done.json"
_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class TokenizeError(ValueError):
    """A source, a setting or an output folder cannot be used for tokenization."""


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
    _check_int("num_codebooks", k, 1, codec.num_codebooks)
    for name, value in (("batch_size", batch_size), ("num_proc", num_proc), ("part_size", part_size)):
        _check_int(name, value, 1)
    num_shards, shard_index = _resolve_sharding(num_shards, shard_index)
    if output is None and num_shards > 1:
        raise TokenizeError(f"{num_shards} processes share this run (num_shards, or accelerate's process count); "
                            "pass output=FOLDER for their shards, then load_tokenized(FOLDER)")
    if num_proc > 1 and next(codec.parameters()).device.type != "cpu":
        raise TokenizeError("num_proc > 1 runs CPU worker processes; on a GPU use a larger batch_size instead")

    ds = _open_source(source)
    columns = _Columns.pick(ds, audio_column, text_column)
    ds = columns.raw_audio(ds)
    meta = _codec_metadata(codec, k)
    features = columns.output_features(k, np.dtype(meta["codes_dtype"]))
    share, offset = _take_share(ds, num_shards, shard_index)
    config = {"format_version": FORMAT_VERSION, "codec": meta, "num_shards": num_shards, "part_size": part_size,
              "source_rows": len(ds) if isinstance(ds, Dataset) else None, "audio_column": columns.audio,
              "text_column": columns.text, "features": features.to_dict()}
    sink = (_MemorySink() if output is None else
            _DiskSink(Path(output), config, num_shards, shard_index, resume))
    first_part = sink.finished_parts()
    if first_part is not None:  # None: this share is already complete
        rows_left = None
        if isinstance(share, Dataset):
            rows_left = max(0, len(share) - first_part * part_size)
            share = share.select(range(len(share) - rows_left, len(share)))
        else:
            share = share.skip(first_part * part_size)
        encoder = _Encoder(codec, k, batch_size)
        name = f"shard {shard_index + 1}/{num_shards}" if num_shards > 1 else "tokenize"
        with tqdm(total=rows_left, desc=name, unit="file", disable=not progress, dynamic_ncols=True) as bar:
            _Run(encoder, columns, features, meta, sink, bar, offset, part_size, num_proc).run(
                iter(share), first_part)
    result = sink.result(features, meta)
    if output is not None:
        report = _write_report(Path(output), config)
        if report["num_skipped"]:
            shown = "; ".join(f"{s['path'] or s['index']}: {s['reason']}" for s in report["skipped"][:5])
            warnings.warn(f"skipped {report['num_skipped']} of {report['total']} examples (listed in "
                          f"{Path(output) / REPORT_FILE}), e.g. {shown}", stacklevel=2)
    elif sink.skipped:
        shown = "; ".join(f"{s['path'] or s['index']}: {s['reason']}" for s in sink.skipped[:20])
        warnings.warn(f"skipped {len(sink.skipped)} examples: {shown}", stacklevel=2)
    return result


def load_tokenized(output: str | os.PathLike) -> Dataset:
    """Concatenate, in order, every shard that `tokenize_dataset` wrote to `output`.

    Raises TokenizeError naming the shards that are not finished, or if the folder is not such an output.
    """
    output = Path(output)
    config = _read_config(output)
    features, meta = Features.from_dict(config["features"]), config["codec"]
    names = [_shard_name(r, config["num_shards"]) for r in range(config["num_shards"])]
    missing = [n for n in names if not (output / n / DONE_FILE).is_file()]
    if missing:
        detail = ", ".join(f"{n} ({len(_part_dirs(output / n))} parts written)" for n in missing)
        raise TokenizeError(
            f"{len(missing)} of {len(names)} shards in {str(output)!r} are not finished: {detail}. Run "
            f"tokenize_dataset(..., output={str(output)!r}, num_shards={config['num_shards']}, shard_index=i) "
            "for each of them (it resumes where it stopped)")
    parts = [p for n in names for p in _part_dirs(output / n)]
    return _concatenate([_load_part(p, meta) for p in parts], features, meta)


def read_codec_metadata(dataset: Dataset | IterableDataset) -> dict[str, Any]:
    """The codec that made `dataset`'s codes: name, fingerprint, sample_rate, channels, frame_rate (Hz),
    hop_length (samples), num_codebooks (K stored), codec_num_codebooks, codebook_size, codes_dtype.

    Stored as JSON in `dataset.info.description` under "rvqaudio_codes".
    """
    description = getattr(getattr(dataset, "info", None), "description", None) or ""
    try:
        meta = json.loads(description)[METADATA_KEY]
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise TokenizeError("this dataset carries no rvqaudio codec metadata in info.description; was it written "
                            "by tokenize_dataset (and its info kept)?") from e
    return dict(meta)


# ---- sources and columns ------------------------------------------------------------------------------------
def _open_source(source) -> Dataset | IterableDataset:
    if isinstance(source, (DatasetDict, IterableDatasetDict)):
        return _one_split(source, "the DatasetDict given")
    if isinstance(source, (Dataset, IterableDataset)):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TokenizeError(f"source must be a Dataset, an IterableDataset or a folder, got {type(source).__name__}")
    root = Path(source)
    if not root.is_dir():
        raise TokenizeError(f"source {str(root)!r} is not a folder: pass a folder of audio files, an audiofolder, "
                            "a folder written by save_to_disk, or a Dataset")
    if any((root / marker).is_file() for marker in _DATASET_MARKERS):
        return _one_split(datasets.load_from_disk(str(root)), repr(str(root)))
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                   key=lambda p: p.relative_to(root).as_posix())
    if any(root.rglob("metadata.csv")) or any(root.rglob("metadata.jsonl")):
        ds = _one_split(datasets.load_dataset("audiofolder", data_dir=str(root)), repr(str(root)))
        column = next(c for c, f in ds.features.items() if isinstance(f, Audio))
        paths = [Path(cell["path"]) for cell in ds.cast_column(column, Audio(decode=False))[column]]
        if "file_name" not in ds.column_names:
            ds = ds.add_column("file_name", [_relative(p, root) for p in paths])
        unlisted = len({p.resolve() for p in files} - {p.resolve() for p in paths})
        if unlisted:
            warnings.warn(f"{unlisted} audio files under {str(root)!r} have no row in its metadata file(s) and are "
                          "not tokenized (audiofolder semantics); add rows for them to include them", stacklevel=3)
        return ds
    if not files:
        raise TokenizeError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found under {str(root)!r}")
    # Cast from plain strings: Audio's encode_example would import torchcodec, which wav/flac files never need.
    ds = Dataset.from_dict({"audio": [str(p) for p in files], "file_name": [_relative(p, root) for p in files]})
    return ds.cast_column("audio", Audio(decode=False))


def _one_split(dd, what: str):
    if not isinstance(dd, (DatasetDict, IterableDatasetDict)):
        return dd
    if "train" in dd:
        return dd["train"]
    if len(dd) == 1:
        return next(iter(dd.values()))
    raise TokenizeError(f"{what} has splits {sorted(dd)} and none is 'train'; pass the split to tokenize, "
                        "e.g. dataset['validation']")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclasses.dataclass
class _Columns:
    audio: str
    text: str | None
    extras: list[str]
    source_features: Features

    @classmethod
    def pick(cls, ds: Dataset | IterableDataset, audio: str | None, text: str | None) -> _Columns:
        features = ds.features
        if features is None:
            raise TokenizeError("the dataset's features are unknown (an IterableDataset built from a generator?); "
                                "give it features, e.g. ds = ds.cast_column('audio', datasets.Audio())")
        if audio is None:
            audio = next((c for c, f in features.items() if isinstance(f, Audio)), None)
            if audio is None:
                raise TokenizeError(f"no Audio column among {dict(features)}; cast the column holding audio paths or "
                                    "bytes with ds.cast_column(name, datasets.Audio()), or pass audio_column")
        elif audio not in features or not isinstance(features[audio], Audio):
            raise TokenizeError(f"audio_column={audio!r} is not an Audio column; columns: {dict(features)}")
        if text is None:
            text = next((c for c in TEXT_COLUMNS if c in features and c != audio), None)
        elif text not in features:
            raise TokenizeError(f"text_column={text!r} is not a column; columns are {list(features)}")
        extras = [c for c in features if c not in (audio, text, "duration")]
        for clash in ("codes", "text"):
            if clash in extras:
                raise TokenizeError(f"the source already has a {clash!r} column, which the output would overwrite; "
                                    f"rename or remove it first (ds.rename_column / ds.remove_columns)")
        return cls(audio, text, extras, features)

    def raw_audio(self, ds):
        """Cast the audio column (and any other decodable column) to undecoded storage: audio is decoded by
        `_Encoder`, so one broken file is skipped instead of stopping the iteration."""
        ds = ds.cast_column(self.audio, Audio(decode=False))
        for c in self.extras:
            if getattr(self.source_features[c], "decode", False):
                ds = ds.cast_column(c, dataclasses.replace(self.source_features[c], decode=False))
        return ds

    def output_features(self, k: int, dtype: np.dtype) -> Features:
        return Features({"codes": List(List(Value(dtype.name)), length=k), "text": Value("string"),
                         "duration": Value("float64"), **{c: self.source_features[c] for c in self.extras}})


def _take_share(ds, num_shards: int, index: int) -> tuple[Dataset | IterableDataset, int | None]:
    """Contiguous share `index` of `num_shards`, and the source index of its first row (None if unknown)."""
    if num_shards == 1:
        return ds, 0
    if isinstance(ds, Dataset):
        lo, hi = index * len(ds) // num_shards, (index + 1) * len(ds) // num_shards
        return ds.select(range(lo, hi)), lo
    if ds.num_shards < num_shards:
        # split_dataset_by_node would fall back to every num_shards-th example, losing the concatenation order.
        raise TokenizeError(f"this IterableDataset has {ds.num_shards} source shards (files), fewer than "
                            f"num_shards={num_shards}; use at most {ds.num_shards} processes, or a map-style Dataset")
    return ds.shard(num_shards=num_shards, index=index, contiguous=True), None


def _resolve_sharding(num_shards: int, shard_index: int | None) -> tuple[int, int]:
    _check_int("num_shards", num_shards, 1)
    if shard_index is None:
        if num_shards != 1:
            raise TokenizeError(f"num_shards={num_shards} needs shard_index (0 to {num_shards - 1}) for this process")
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes > 1:
            return state.num_processes, state.process_index
        # accelerate counts each process of a torchrun launch on a machine without accelerators as alone.
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (world, int(os.environ.get("RANK", "0"))) if world > 1 else (1, 0)
    _check_int("shard_index", shard_index, 0, num_shards - 1)
    return num_shards, shard_index


def _codec_metadata(codec: RVQCodec, k: int) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "name": codec.config.name, "fingerprint": codec.fingerprint,
            "sample_rate": codec.sample_rate, "channels": codec.channels, "frame_rate": codec.frame_rate,
            "hop_length": codec.hop_length, "num_codebooks": k, "codec_num_codebooks": codec.num_codebooks,
            "codebook_size": codec.codebook_size,
            "codes_dtype": "int16" if codec.codebook_size <= 2**15 else "int32"}


def _check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise TokenizeError(f"{name} must be an integer {bounds}, got {value!r}")


# ---- decoding and encoding (runs in the worker processes) ---------------------------------------------------
class _Skip(Exception):
    """This example cannot be encoded; the message says why."""


class _Encoder:
    """Raw audio cells ({"bytes", "path"}) -> (codes ndarray (K, T) | None, seconds, reason | None), batched."""

    def __init__(self, codec: RVQCodec, num_codebooks: int, batch_size: int):
        self.codec, self.k, self.batch_size = codec, num_codebooks, batch_size
        self.rate, self.channels, self.hop = codec.sample_rate, codec.channels, codec.hop_length
        # Longer items are encoded alone: the codec chunks them internally, so memory stays bounded.
        self.alone_samples = int(codec.config.chunk_seconds * self.rate)
        # Right zero-padding leaves a causal codec's codes unchanged; a non-causal one only batches equal lengths.
        self.causal = bool(codec.config.causal)
        self.dtype = np.int16 if codec.codebook_size <= 2**15 else np.int32

    def __call__(self, cells: list) -> list[tuple[np.ndarray | None, float, str | None]]:
        out: list = [None] * len(cells)
        waiting = []
        for i, cell in enumerate(cells):
            try:
                wav = self.load(cell)
            except _Skip as e:
                out[i] = (None, 0.0, str(e))
                continue
            if wav.shape[-1] > self.alone_samples:
                out[i] = self.encode([wav])[0]
            else:
                waiting.append((i, wav))
        waiting.sort(key=lambda item: item[1].shape[-1])  # similar lengths together: less padding
        batch: list = []
        for item in waiting + [None]:
            if batch and (item is None or len(batch) == self.batch_size
                          or (not self.causal and item[1].shape[-1] != batch[0][1].shape[-1])):
                for (i, _), result in zip(batch, self.encode([w for _, w in batch])):
                    out[i] = result
                batch = []
            if item is not None:
                batch.append(item)
        return out

    def load(self, cell) -> torch.Tensor:
        """Decode, resample to the codec's rate, convert channels -> FloatTensor (C, N). Raises _Skip."""
        try:
            data, path = (cell.get("bytes"), cell.get("path")) if isinstance(cell, dict) else (None, None)
            if data:
                wav, sr = _decode_bytes(data, path)
            elif path:
                wav, sr = load_audio(path)
            else:
                raise _Skip(f"the audio cell holds neither bytes nor a path: {cell!r:.100}")
            if wav.shape[-1] == 0:
                raise _Skip("the file holds no audio samples")
            # Exactly as load_audio (resample, then channels), so the codes equal `rvqaudio encode`'s: a cached
            # torchaudio.transforms.Resample differs by ~1e-7, enough to flip a code near a tie.
            wav = to_channels(resample(wav, sr, self.rate), self.channels)
        except _Skip:
            raise
        except Exception as e:  # a broken file must not stop the run: it is reported instead
            raise _Skip(str(e) or type(e).__name__) from e
        n = wav.shape[-1]
        if n < self.hop:
            raise _Skip(f"too short: {n} samples at {self.rate} Hz; the codec needs at least one frame, {self.hop} "
                        f"samples ({1000 * self.hop / self.rate:.1f} ms)")
        if not bool(torch.isfinite(wav).all()):
            raise _Skip("the audio contains NaN or infinite samples")
        return wav

    def encode(self, wavs: list[torch.Tensor]) -> list[tuple[np.ndarray, float, None]]:
        lengths = [w.shape[-1] for w in wavs]
        longest = max(lengths)
        x = torch.stack([torch.nn.functional.pad(w, (0, longest - w.shape[-1])) for w in wavs])  # (B, C, N)
        codes = self.codec.encode(x, num_codebooks=self.k).cpu()  # (B, K, T); batch-invariant (see RVQCodec)
        return [(codes[b, :, : -(-n // self.hop)].numpy().astype(self.dtype), n / self.rate, None)
                for b, n in enumerate(lengths)]


def _decode_bytes(data: bytes, path: str | None) -> tuple[torch.Tensor, int]:
    suffix = Path(path).suffix.lower() if path else ""
    said = ""
    if suffix in (".wav", ".flac", ".ogg", ""):
        try:
            samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (N, C)
            return torch.from_numpy(np.ascontiguousarray(samples.T)), int(sr)
        except Exception as e:  # libsndfile lacks this codec: let ffmpeg try
            said = f"soundfile said: {e}; "
    try:
        from torchcodec.decoders import AudioDecoder

        decoded = AudioDecoder(data).get_all_samples()
        return decoded.data.to(torch.float32), int(decoded.sample_rate)
    except Exception as e:
        raise _Skip(f"cannot decode {path or 'the audio bytes'}: {said}torchcodec said: {e}") from e


_WORKER: _Encoder | None = None


def _init_worker(encoder: _Encoder, threads: int) -> None:
    global _WORKER
    _WORKER = encoder
    torch.set_num_threads(threads)


def _work(cells: list) -> list:
    assert _WORKER is not None
    return _WORKER(cells)


class _Ready:
    """An already computed result with the `get()` of a multiprocessing AsyncResult."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


# ---- the run: rows -> chunks -> encoder (in order) -> parts ---------------------------------------------------
class _Run:
    def __init__(self, encoder: _Encoder, columns: _Columns, features: Features, meta: dict, sink, bar,
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
            pool = ctx.Pool(self.num_proc, initializer=_init_worker, initargs=(self.encoder, threads))
        pending: deque = deque()
        max_pending = 2 * self.num_proc if pool else 0
        position = first_part * self.part_size  # index of the next row within the share
        try:
            for part in itertools.count(first_part):
                part_rows, taken = itertools.islice(rows, self.part_size), 0
                while chunk := list(itertools.islice(part_rows, self.chunk_rows)):
                    cells = [row.pop(self.columns.audio) for row in chunk]
                    job = pool.apply_async(_work, (cells,)) if pool else _Ready(self.encoder(cells))
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

    def _collect(self, position: int, chunk: list[dict] | None, cells, job) -> None:
        if chunk is None:  # end of part `position`
            part = self._build()
            report = {"rows": len(self.rows) + len(self.skipped), "encoded": len(self.rows),
                      "audio_seconds": float(sum(self.durations)), "skipped": self.skipped}
            self.sink.write(position, part, report)
            self._new_part()
            return
        for i, (row, cell, (codes, seconds, reason)) in enumerate(zip(chunk, cells, job.get())):
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
        info = datasets.DatasetInfo(description=_description(self.meta), features=self.features)
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


def _description(meta: dict) -> str:
    return json.dumps({METADATA_KEY: meta}, sort_keys=True)


# ---- where parts go ------------------------------------------------------------------------------------------
class _MemorySink:
    def __init__(self):
        self.parts: list[Dataset] = []
        self.skipped: list[dict] = []

    def finished_parts(self) -> int:
        return 0

    def write(self, part: int, dataset: Dataset | None, report: dict) -> None:
        if dataset is not None:
            self.parts.append(dataset)
        self.skipped.extend(report["skipped"])

    def finish(self, rows: int) -> None:
        pass

    def result(self, features: Features, meta: dict) -> Dataset:
        return _concatenate(self.parts, features, meta)


class _DiskSink:
    def __init__(self, output: Path, config: dict, num_shards: int, index: int, resume: bool):
        self.output, self.dir = output, output / _shard_name(index, num_shards)
        config = json.loads(json.dumps(config))  # as it reads back: lists, not tuples
        if (output / CONFIG_FILE).is_file() and resume:
            old = _read_config(output)
            changed = sorted(key for key in set(old) | set(config) if old.get(key) != config.get(key))
            if changed:
                raise TokenizeError(
                    f"{str(output)!r} holds a tokenization made with other settings ({', '.join(changed)} differ); "
                    "use another output folder, the same settings, or resume=False to start this share over")
        if not resume and self.dir.exists():
            shutil.rmtree(self.dir)
        output.mkdir(parents=True, exist_ok=True)
        _write_json(output / CONFIG_FILE, config)
        self.dir.mkdir(exist_ok=True)
        for stale in self.dir.glob(".part-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)

    def finished_parts(self) -> int | None:
        """Parts already written (they form a prefix: parts are written in order); None if the share is done."""
        if (self.dir / DONE_FILE).is_file():
            return None
        return sum(1 for _ in itertools.takewhile(lambda k: (self.dir / _part_name(k)).is_dir(), itertools.count()))

    def write(self, part: int, dataset: Dataset | None, report: dict) -> None:
        final = self.dir / _part_name(part)
        tmp = self.dir / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if dataset is not None:
            with _quiet_datasets():
                dataset.save_to_disk(str(tmp))
        else:  # every row was skipped (datasets cannot save an empty dataset): only the report
            tmp.mkdir()
        _write_json(tmp / PART_FILE, report)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)

    def finish(self, rows: int) -> None:
        _write_json(self.dir / DONE_FILE, {"parts": len(_part_dirs(self.dir)), "rows": rows})

    def result(self, features: Features, meta: dict) -> Dataset:
        return _concatenate([_load_part(p, meta) for p in _part_dirs(self.dir)], features, meta)


def _shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


def _part_name(part: int) -> str:
    return f"part-{part:05d}"


def _part_dirs(shard: Path) -> list[Path]:
    return sorted(p for p in shard.glob("part-*") if p.is_dir()) if shard.is_dir() else []


def _load_part(path: Path, meta: dict) -> Dataset | None:
    if not (path / "dataset_info.json").is_file():
        return None  # every row of this part was skipped
    with _quiet_datasets():
        part = datasets.load_from_disk(str(path))
    found = read_codec_metadata(part)
    if found.get("fingerprint") != meta["fingerprint"] or found.get("num_codebooks") != meta["num_codebooks"]:
        raise TokenizeError(f"{str(path)!r} holds codes of another codec or codebook count ({found}) than "
                            f"{CONFIG_FILE} says ({meta}); re-tokenize that shard with resume=False")
    return part


def _concatenate(parts: list[Dataset | None], features: Features, meta: dict) -> Dataset:
    parts = [p for p in parts if p is not None]
    info = datasets.DatasetInfo(description=_description(meta), features=features)
    if not parts:
        return Dataset.from_dict({c: [] for c in features}, features=features, info=info)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts, info=info)


def _read_config(output: Path) -> dict:
    path = output / CONFIG_FILE
    if not path.is_file():
        raise TokenizeError(f"{str(output)!r} is not a tokenize_dataset output: it has no {CONFIG_FILE}")
    return json.loads(path.read_text())


def _write_report(output: Path, config: dict) -> dict:
    """Sum the parts' reports of every shard into output/tokenize_report.json (atomically) and return it."""
    report: dict[str, Any] = {"complete": True, "missing_shards": [], "total": 0, "encoded": 0, "num_skipped": 0,
                              "audio_hours": 0.0, "skipped": [], "codec": config["codec"]}
    for r in range(config["num_shards"]):
        shard = output / _shard_name(r, config["num_shards"])
        if not (shard / DONE_FILE).is_file():
            report["complete"] = False
            report["missing_shards"].append(shard.name)
        for part in _part_dirs(shard):
            p = json.loads((part / PART_FILE).read_text())
            report["total"] += p["rows"]
            report["encoded"] += p["encoded"]
            report["audio_hours"] += p["audio_seconds"] / 3600
            report["skipped"] += [{"shard": shard.name, **s} for s in p["skipped"]]
    report["num_skipped"] = len(report["skipped"])
    _write_json(output / REPORT_FILE, report)
    return report


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet_datasets():
    """Hide datasets' own save/load bars (ours shows the progress); restores the caller's setting."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()
