"""What the speech and music recipes share: tool checks, the ordered process pool, and the atomic dataset writer.

A recipe describes one clip as a small picklable job, planned as a pure function of `(seed, split, index)`;
workers turn batches of jobs into FLAC files. `synthesize_splits` hands batches to a process pool but consumes
the results in job order and stops each split at the first clip that brings it to its target duration, so the
dataset is the same whatever `num_proc` is and however the pool schedules the work.
"""

from __future__ import annotations

import ctypes.util
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

# A run whose clips keep failing stops instead of looping forever: after this many attempts in a split ...
_MIN_ATTEMPTS_BEFORE_GIVING_UP = 24
# ... if more than this fraction of them failed.
_MAX_FAILURE_FRACTION = 0.5


def check_tools(recipe: str, apt_packages: Sequence[str], binaries: Sequence[str] = (),
                libraries: Sequence[str] = (), files: Sequence[str | os.PathLike] = ()) -> None:
    """Raise FileNotFoundError naming what is missing and the apt command that installs it.

    `binaries` are looked up on PATH, `libraries` with ctypes (e.g. "fluidsynth" for libfluidsynth.so.3),
    `files` are data files or folders that Debian packages install (voices, SoundFonts, texts).
    """
    missing = [b for b in binaries if shutil.which(b) is None]
    missing += [f"lib{name}" for name in libraries if ctypes.util.find_library(name) is None]
    missing += [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise FileNotFoundError(
            f"the {recipe} recipe needs Debian packages that are not installed (missing: {', '.join(missing)}); "
            f"install them with: sudo apt-get install --no-install-recommends {' '.join(apt_packages)}"
        )


def split_seconds(hours: float, test_fraction: float) -> dict[str, float]:
    """Target audio seconds per split; validates the user's numbers."""
    if not (isinstance(hours, (int, float)) and np.isfinite(hours) and hours > 0):
        raise ValueError(f"hours must be a positive number of hours of audio, got {hours!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    total = float(hours) * 3600.0
    return {"train": total * (1.0 - test_fraction), "test": total * test_fraction}


def check_common_args(sample_rate: int, num_proc: int) -> None:
    if not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 96000:
        raise ValueError(f"sample_rate must be an integer number of Hz in [8000, 96000], got {sample_rate!r}")
    if not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc must be a positive integer, got {num_proc!r}")


def finish_clip(wav: np.ndarray, sample_rate: int, path: Path, peak_db: float, min_seconds: float = 0.3,
                trim_db: float = -45.0, margin_s: float = 0.15) -> float:
    """Trim silence at both ends, normalize the peak to `peak_db` dBFS, fade 10 ms in and out, write a 16-bit FLAC.

    `wav` is mono float [N] at `sample_rate` Hz. Silence is what lies below `trim_db` relative to the peak,
    measured on 10 ms frames; `margin_s` seconds of it are kept on each side. Returns the duration in seconds.
    Raises ValueError if the clip is silent or shorter than `min_seconds` after trimming.
    """
    wav = np.asarray(wav, dtype=np.float64)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if not np.isfinite(peak) or peak < 1e-4:
        raise ValueError("the synthesizer produced silence")
    hop = max(1, sample_rate // 100)
    n_frames = len(wav) // hop
    frames = np.abs(wav[: n_frames * hop]).reshape(n_frames, hop).max(axis=1)
    loud = np.flatnonzero(frames > peak * 10.0 ** (trim_db / 20.0))
    margin = round(margin_s * sample_rate)
    start = max(0, int(loud[0]) * hop - margin)
    stop = min(len(wav), (int(loud[-1]) + 1) * hop + margin)
    wav = wav[start:stop]
    if len(wav) < min_seconds * sample_rate:
        raise ValueError(f"clip is only {len(wav) / sample_rate:.2f} s long after trimming silence")
    wav = wav * (10.0 ** (peak_db / 20.0) / peak)
    fade = min(len(wav) // 2, sample_rate // 100)  # 10 ms: no click where trimming cut into a tail
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    wav[:fade] *= ramp
    wav[len(wav) - fade:] *= ramp[::-1]
    sf.write(path, wav.astype(np.float32), sample_rate, subtype="PCM_16", format="FLAC")
    return len(wav) / sample_rate


@dataclass
class ClipResult:
    """What a worker returns for one job: the FLAC it wrote and metadata, or why it failed."""

    index: int
    path: str | None = None
    duration: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SplitStats:
    clips: int = 0
    seconds: float = 0.0
    failures: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the report


def _pool_context() -> mp.context.BaseContext:
    # Workers only run subprocesses, numpy and libsndfile/libfluidsynth, so forking is safe and starts them
    # in milliseconds; spawn would re-import torch (via the `pipelines` package) in every worker (~4 s).
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _ordered_batches(pool: ProcessPoolExecutor | None, work: Callable[[list, str], list[ClipResult]],
                     batches: Iterator[list], clips_dir: str, window: int,
                     wanted: Callable[[int], bool]) -> Iterator[list[ClipResult]]:
    """Yield each batch's results in batch order.

    Up to `window` batches are in flight, fewer while `wanted(jobs_in_flight)` says the ones in flight probably
    suffice (so a small dataset does not synthesize many clips only to drop them).
    """
    if pool is None:
        for batch in batches:
            yield work(batch, clips_dir)
        return
    in_flight: deque[tuple[Future, int]] = deque()
    try:
        while True:
            while len(in_flight) < window and (not in_flight or wanted(sum(n for _, n in in_flight))):
                batch = next(batches)
                in_flight.append((pool.submit(work, batch, clips_dir), len(batch)))
            yield in_flight.popleft()[0].result()
    finally:
        for fut, _ in in_flight:  # the split reached its target: drop work that is no longer needed
            fut.cancel()


def _batches(plan: Callable[[str, int], Any], split: str, batch_size: int) -> Iterator[list]:
    """Jobs 0, 1, 2, ... of `split` in batches of 2, 4, ... up to `batch_size`: small first batches let a small
    dataset finish without synthesizing clips it drops, and get the first results back sooner."""
    start, size = 0, 2
    while True:
        yield [plan(split, i) for i in range(start, start + size)]
        start, size = start + size, min(2 * size, batch_size)


def _take(results: list[ClipResult], clips: list[ClipResult], st: SplitStats, target: float, bar: Any,
          what: str) -> bool:
    """Add a batch's clips in order until the split reaches `target` seconds; True once it has."""
    for res in results:
        if res.error is not None:
            st.failures += 1
            if len(st.errors) < 5:
                st.errors.append(f"job {res.index}: {res.error}")
            attempts = st.failures + st.clips
            if attempts >= _MIN_ATTEMPTS_BEFORE_GIVING_UP and st.failures > _MAX_FAILURE_FRACTION * attempts:
                raise RuntimeError(f"{what}: {st.failures} of {attempts} clips failed; "
                                   f"first errors: {'; '.join(st.errors)}")
            continue
        clips.append(res)
        st.clips += 1
        before, st.seconds = st.seconds, st.seconds + res.duration
        bar.update(min(st.seconds, target) - min(before, target))
        if st.seconds >= target:
            return True
    return False


def _close(bar: Any, pool: ProcessPoolExecutor | None) -> None:
    bar.close()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _warn_failures(stats: dict[str, SplitStats], desc: str) -> None:
    """One warning per split that skipped clips, at the recipe's caller (stack: here, the collector, the recipe)."""
    for split, st in stats.items():
        if st.failures:
            warnings.warn(f"{desc}: skipped {st.failures} failed clips in the {split} split "
                          f"(first errors: {'; '.join(st.errors)})", RuntimeWarning, stacklevel=4)


def synthesize_splits(
    plan: Callable[[str, int], Any],
    work: Callable[[list, str], list[ClipResult]],
    targets: dict[str, float],
    clips_dir: Path,
    num_proc: int,
    progress: bool,
    desc: str,
    expected_clip_seconds: float,
    batch_size: int,
) -> tuple[dict[str, list[ClipResult]], dict[str, SplitStats]]:
    """Run jobs `plan(split, 0), plan(split, 1), ...` until each split holds `targets[split]` seconds.

    `work(jobs, clips_dir)` runs in a worker and returns one ClipResult per job, in order. Clips are taken in
    job order until the split reaches its target (at least one clip per split), so the result does not depend
    on `num_proc`. Jobs go to workers in batches of up to `batch_size` (a worker may share work across a
    batch, as speech does with one festival process per voice), so `work` must give a job the same result
    whatever batch it is in. `expected_clip_seconds` guides how many batches to start before the first return.
    Failed jobs are skipped and counted. Raises RuntimeError if most jobs fail.
    """
    from tqdm.auto import tqdm

    clips: dict[str, list[ClipResult]] = {s: [] for s in targets}
    stats = {s: SplitStats() for s in targets}
    pool = ProcessPoolExecutor(num_proc, mp_context=_pool_context()) if num_proc > 1 else None
    bar = tqdm(total=round(sum(targets.values())), unit="s", unit_scale=True, desc=desc, disable=not progress)
    try:
        for split, target in targets.items():
            st = stats[split]

            def wanted(jobs_in_flight: int, st: SplitStats = st, target: float = target) -> bool:
                mean = st.seconds / st.clips if st.clips else expected_clip_seconds
                return st.seconds + jobs_in_flight * mean * 0.8 < target

            ordered = _ordered_batches(pool, work, _batches(plan, split, batch_size), str(clips_dir),
                                       2 * num_proc, wanted)

            with closing(ordered):
                for results in ordered:
                    if _take(results, clips[split], st, target, bar, f"{desc} ({split} split)"):
                        break
                    bar.set_postfix(failed=sum(s.failures for s in stats.values()))
    finally:
        _close(bar, pool)
    _warn_failures(stats, desc)
    return clips, stats


def _rows(clips: list[ClipResult]) -> Iterator[dict[str, Any]]:
    for res in clips:
        path = Path(res.path)
        yield {"audio": {"bytes": path.read_bytes(), "path": path.name}, "duration": round(res.duration, 4),
               **res.meta}


def write_dataset(
    output: str | os.PathLike,
    recipe: Callable[[Path], tuple[dict[str, list[ClipResult]], dict[str, SplitStats]]],
    features_fn: Callable[[], Any],
    info: dict[str, Any],
    overwrite: bool,
    progress: bool = True,
):
    """Build a DatasetDict in a temporary folder next to `output` and move it into place only when complete.

    `recipe(clips_dir)` writes the clips and returns them per split. The folder gets the dataset
    (`save_to_disk` layout) and `recipe.json` (the arguments and per-split counts). An existing `output` is
    replaced only with `overwrite=True`, and only after the new dataset is complete. Returns the dataset
    loaded from `output`.
    """
    import datasets

    output = Path(output)
    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"{str(output)!r} already exists; pick another output folder or pass overwrite=True")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        clips_dir = tmp / "clips"
        clips_dir.mkdir()
        clips, stats = recipe(clips_dir)
        features = features_fn()
        splits = {}
        for split, split_clips in clips.items():
            splits[split] = datasets.Dataset.from_generator(
                _rows, features=features, gen_kwargs={"clips": split_clips}, cache_dir=str(tmp / "cache"),
                split=datasets.NamedSplit(split),
            )
        dataset_dir = tmp / "dataset"
        datasets.DatasetDict(splits).save_to_disk(str(dataset_dir))
        info = {**info, "splits": {s: {"clips": st.clips, "hours": round(st.seconds / 3600, 4),
                                       "failures": st.failures, "first_errors": st.errors}
                                   for s, st in stats.items()}}
        (dataset_dir / "recipe.json").write_text(json.dumps(info, indent=2) + "\n")
        del splits  # release the memory maps of the cache before deleting it
        if output.exists():
            old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
            os.replace(output, old / "data")
            os.replace(dataset_dir, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(dataset_dir, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    return datasets.load_from_disk(str(output))


# ---------------------------------------------------------------------------------------------------- real recordings

_DECODE_TIMEOUT_S = 300


def decode_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode a file with FFmpeg (wav, flac, aiff, ogg, mp3, G.722, tracker modules...): mono float32 [N] at
    `sample_rate` Hz (channels averaged, resampled by FFmpeg). Raises RuntimeError if FFmpeg fails or finds no audio.
    """
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-ar", str(sample_rate),
           "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=_DECODE_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    wav = np.frombuffer(proc.stdout, dtype=np.float32)
    if wav.size == 0:
        raise RuntimeError(f"ffmpeg found no audio in {path}")
    return wav


def collect_splits(
    units: dict[str, Sequence[Any]],
    work: Callable[[Any, str], list[ClipResult]],
    targets: dict[str, float],
    clips_dir: Path,
    num_proc: int,
    progress: bool,
    desc: str,
    window: int,
) -> tuple[dict[str, list[ClipResult]], dict[str, SplitStats]]:
    """Turn each split's finite list of `units` (source files, tracks) into clips until the split holds
    `targets[split]` seconds or its units run out.

    `work(unit, clips_dir)` runs in a worker and returns the unit's clips in order (a track gives several, a bad
    file one failed ClipResult). Results are taken in unit order and a split stops at the first clip that brings
    it to its target, so the dataset does not depend on `num_proc`; up to `window` units are in flight at once.
    Failed clips are skipped, counted and warned about. Raises RuntimeError if a split ends with no clip.
    """
    from tqdm.auto import tqdm

    clips: dict[str, list[ClipResult]] = {s: [] for s in targets}
    stats = {s: SplitStats() for s in targets}
    pool = ProcessPoolExecutor(num_proc, mp_context=_pool_context()) if num_proc > 1 else None
    # Counted in units, not seconds: how much audio the packages hold is known only once decoded.
    bar = tqdm(total=sum(len(units[s]) for s in targets), unit="file", desc=desc, disable=not progress)
    try:
        for split, target in targets.items():
            todo, st, full = list(units[split]), stats[split], False
            for start in range(0, len(todo), window):
                chunk = todo[start:start + window]
                if pool is None:
                    results = (work(unit, str(clips_dir)) for unit in chunk)
                else:
                    results = (f.result() for f in [pool.submit(work, unit, str(clips_dir)) for unit in chunk])
                for unit_results in results:
                    bar.update(1)
                    for res in unit_results:
                        if res.error is not None:
                            st.failures += 1
                            if len(st.errors) < 5:
                                st.errors.append(res.error)
                            continue
                        clips[split].append(res)
                        st.clips += 1
                        st.seconds += res.duration
                        if st.seconds >= target:
                            full = True
                            break
                    if full:
                        break
                if full:
                    break
            if not st.clips:
                raise RuntimeError(f"{desc}: the {split} split got no clip ({st.failures} failed; first errors: "
                                   f"{'; '.join(st.errors) or 'none'})")
    finally:
        _close(bar, pool)
    _warn_failures(stats, desc)
    return clips, stats
