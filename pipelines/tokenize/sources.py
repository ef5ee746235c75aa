"""Sources and columns: what `tokenize_dataset` reads and accepts.

Opening a source (a Dataset, an IterableDataset, a DatasetDict, or a folder: save_to_disk, audiofolder or plain
audio files), picking its audio, text and extra columns, taking this process's contiguous share of its rows,
and checking the settings. `TokenizeError`, raised wherever a source, a setting or an output folder cannot be
used, is defined here: this module imports nothing else from the package.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import datasets
import numpy as np
from datasets import Audio, Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict, List, Value

TEXT_COLUMNS = ("text", "transcript", "caption", "sentence")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac", ".aif", ".aiff")
_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class TokenizeError(ValueError):
    """A source, a setting or an output folder cannot be used for tokenization."""


def open_source(source) -> Dataset | IterableDataset:
    """A Dataset or IterableDataset from what `tokenize_dataset` accepts (a split of a DatasetDict: 'train' or the
    only one); TokenizeError saying what to pass otherwise."""
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
class Columns:
    """The source's columns a run uses: audio, text (None: none), the extras carried over, and their features."""

    audio: str
    text: str | None
    extras: list[str]
    source_features: Features

    @classmethod
    def pick(cls, ds: Dataset | IterableDataset, audio: str | None, text: str | None) -> Columns:
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
        `Encoder`, so one broken file is skipped instead of stopping the iteration."""
        ds = ds.cast_column(self.audio, Audio(decode=False))
        for c in self.extras:
            if getattr(self.source_features[c], "decode", False):
                ds = ds.cast_column(c, dataclasses.replace(self.source_features[c], decode=False))
        return ds

    def output_features(self, k: int, dtype: np.dtype) -> Features:
        return Features({"codes": List(List(Value(dtype.name)), length=k), "text": Value("string"),
                         "duration": Value("float64"), **{c: self.source_features[c] for c in self.extras}})


def take_share(ds, num_shards: int, index: int) -> tuple[Dataset | IterableDataset, int | None]:
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


def resolve_sharding(num_shards: int, shard_index: int | None) -> tuple[int, int]:
    """(num_shards, shard_index) of this process: as given, or from accelerate's or torchrun's process group."""
    check_int("num_shards", num_shards, 1)
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
    check_int("shard_index", shard_index, 0, num_shards - 1)
    return num_shards, shard_index


def check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    """TokenizeError unless `value` is an integer in [lo, hi] (hi None: no upper bound), naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise TokenizeError(f"{name} must be an integer {bounds}, got {value!r}")
