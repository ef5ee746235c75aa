"""Where parts go, and what they carry.

The codec metadata stored in each dataset's `info.description` (`read_codec_metadata`), the layout of the output
folder (config, shards, parts, done markers, report; see the package docstring), the sinks a run writes its parts
to (`MemorySink`, `DiskSink`), and `load_tokenized`, which reads a finished output back.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features, IterableDataset

from tokenizer import RVQCodec
from tokenizer.json_config import write_text_atomic

from .sources import TokenizeError

METADATA_KEY = "rvqaudio_codes"
FORMAT_VERSION = 1
CONFIG_FILE, REPORT_FILE = "tokenize_config.json", "tokenize_report.json"
PART_FILE, DONE_FILE = "tokenize_part.json", "done.json"


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


def codec_metadata(codec: RVQCodec, k: int) -> dict[str, Any]:
    """What a tokenized dataset records of its codec, `k` codebooks kept (see `read_codec_metadata`)."""
    return {"format_version": FORMAT_VERSION, "name": codec.config.name, "fingerprint": codec.fingerprint,
            "sample_rate": codec.sample_rate, "channels": codec.channels, "frame_rate": codec.frame_rate,
            "hop_length": codec.hop_length, "num_codebooks": k, "codec_num_codebooks": codec.num_codebooks,
            "codebook_size": codec.codebook_size,
            "codes_dtype": "int16" if codec.codebook_size <= 2**15 else "int32"}


def metadata_description(meta: dict) -> str:
    """The `info.description` that carries codec metadata `meta` in a dataset."""
    return json.dumps({METADATA_KEY: meta}, sort_keys=True)


class MemorySink:
    """Keeps the parts in memory (no output folder, no resume)."""

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


class DiskSink:
    """Writes a share's parts into the output folder atomically, and knows which are done (resume)."""

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

    def written_parts(self) -> int:
        """Parts on disk (a prefix of the share's parts, finished or not)."""
        return sum(1 for _ in itertools.takewhile(lambda k: (self.dir / _part_name(k)).is_dir(), itertools.count()))

    def part_sources(self, part: int) -> list[list[str]] | None:
        """The [name, identity] pairs of the source rows part `part` was made from (None if it records none)."""
        try:
            sources = json.loads((self.dir / _part_name(part) / PART_FILE).read_text()).get("sources")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None
        return sources if isinstance(sources, list) else None

    def drop_from(self, part: int) -> None:
        """Forget part `part` and every later one (and the done marker): they are encoded again."""
        (self.dir / DONE_FILE).unlink(missing_ok=True)
        for path in _part_dirs(self.dir)[part:]:
            shutil.rmtree(path)

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
    info = datasets.DatasetInfo(description=metadata_description(meta), features=features)
    if not parts:
        return Dataset.from_dict({c: [] for c in features}, features=features, info=info)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts, info=info)


def _read_config(output: Path) -> dict:
    path = output / CONFIG_FILE
    if not path.is_file():
        raise TokenizeError(f"{str(output)!r} is not a tokenize_dataset output: it has no {CONFIG_FILE}")
    return json.loads(path.read_text())


def write_report(output: Path, config: dict) -> dict:
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
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


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
