"""Real music: the soundtracks and songs shipped in Debian game packages, and drum tracks played with real hits.

`MUSIC_SOURCES` lists the music files of seven packages (about 3.4 hours in 83 tracks: Frets on Fire's songs by
Muldjord, mixed from their backing and guitar stems; Frozen Bubble's tracker module; the soundtracks of
Drascula, Advanced Strategic Command, Colobot, FreedroidRPG and LinCity-NG). Each track is decoded with FFmpeg,
mixed to mono, resampled, and cut into consecutive 10 s clips (a last piece of 5-10 s is kept); each clip is
trimmed of silence at its ends and peak-normalized to a random level between -6 and -1 dBFS, as the synthetic
music recipe does. Near-silent clips are skipped. `drums.py` adds drum tracks rendered from the real hits of
`hydrogen-drumkits` (`DRUM_TRACKS_PER_KIT` per kit). Captions say what is known: the game or album, the title,
and for drum tracks the pattern, tempo and kit.

The test split is held out by track: all clips of a track are in one split. A track is a test track when the
CRC-32 of its id is divisible by `_TEST_TRACK_MODULUS` (whatever the seed, so no build's train split ever holds
a test track); drum tracks are held out by kit (`TEST_DRUM_KITS`).
"""

from __future__ import annotations

import functools
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (ClipResult, check_common_args, check_tools, collect_splits, decode_audio, finish_clip,
                     split_seconds, write_dataset)
from .drums import DRUMKITS_DIR, drum_kits, render_drum_track


@dataclass(frozen=True)
class MusicSource:
    """The music files of one Debian package: `pattern` under `folder`; `stems` are files beside each match
    that are mixed into it (one track)."""

    package: str
    name: str  # the game or album, as captions say it
    folder: str
    pattern: str
    stems: tuple[str, ...] = ()


MUSIC_SOURCES = (
    MusicSource("fretsonfire-songs-muldjord", "the rhythm game Frets on Fire",
                "/usr/share/games/fretsonfire/data/songs/muldjord", "*/song.ogg", stems=("guitar.ogg",)),
    MusicSource("fb-music-high", "the game Frozen Bubble", "/usr/share/games/frozen-bubble/snd", "*.xm"),
    MusicSource("drascula-music", "the adventure game Drascula: The Vampire Strikes Back",
                "/usr/share/scummvm/drascula/audio", "*.ogg"),  # de/, en/, ... hold copies of audio/
    MusicSource("asc-music", "the strategy game Advanced Strategic Command", "/usr/share/games/asc/music", "*.mp3"),
    MusicSource("colobot-common-sounds", "the programming game Colobot", "/usr/share/games/colobot/music", "*.ogg"),
    MusicSource("freedroidrpg-data", "the role-playing game FreedroidRPG",
                "/usr/share/freedroidrpg/data/sound/music", "*.ogg"),
    MusicSource("lincity-ng-data", "the city-building game LinCity-NG", "/usr/share/games/lincity-ng/music/default",
                "*.ogg"),
)
DRUM_PACKAGE = "hydrogen-drumkits"
REAL_MUSIC_APT_PACKAGES = ("ffmpeg", *(s.package for s in MUSIC_SOURCES), DRUM_PACKAGE)
TEST_DRUM_KITS = frozenset({"The Black Pearl 1.0", "circAfrique v4"})  # a drum kit and a percussion kit
DRUM_TRACKS_PER_KIT = 3
_TEST_TRACK_MODULUS = 6
CLIP_SECONDS = 10.0
_MIN_CLIP_SECONDS = 5.0
_MIN_PEAK = 0.01  # -40 dBFS: quieter clips are fade-outs or pauses, not music to learn from
_PEAK_DB_RANGE = (-6.0, -1.0)
_SPLIT_ID = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Track:
    """One music track (`files` mixed) or, with `kit` set, one drum track to render."""

    id: str  # "<package>/<path under the source folder>" or "hydrogen-drumkits/<kit>/<n>"
    package: str
    title: str
    text: str
    files: tuple[str, ...] = ()
    kit: str | None = None
    drum_seed: int = 0


def _title(stem: str) -> str:
    stem = re.sub(r"^\d+\s*-\s*", "", stem)  # "02 - Robert van Herk - City Blues"
    stem = re.sub(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[A-Za-z])(?=\d)", " ", stem.replace("_", " "))
    return stem[0].upper() + stem[1:] if stem else stem


def _source_tracks(source: MusicSource) -> list[Track]:
    folder = Path(source.folder)
    tracks = []
    for path in sorted(folder.glob(source.pattern)):
        rel = path.relative_to(folder)
        key = rel.parent.as_posix() if source.stems else rel.with_suffix("").as_posix()
        title = _title(Path(key).name)
        files = (str(path), *(str(path.parent / s) for s in source.stems if (path.parent / s).is_file()))
        text = f"Music from {source.name}, \"{title}\""
        tracks.append(Track(f"{source.package}/{key}", source.package, title, text, files))
    return tracks


@functools.lru_cache(maxsize=1)
def music_tracks() -> dict[str, tuple[Track, ...]]:
    """Every installed track per split, sorted by id: {"train": ..., "test": ...}."""
    pools: dict[str, list[Track]] = {"train": [], "test": []}
    for source in MUSIC_SOURCES:
        for track in _source_tracks(source):
            test = zlib.crc32(track.id.encode()) % _TEST_TRACK_MODULUS == 0
            pools["test" if test else "train"].append(track)
    for kit in drum_kits():
        for n in range(DRUM_TRACKS_PER_KIT):
            track_id = f"{DRUM_PACKAGE}/{kit}/{n}"
            pools["test" if kit in TEST_DRUM_KITS else "train"].append(
                Track(track_id, DRUM_PACKAGE, f"{kit} drum track {n}", "", kit=kit,
                      drum_seed=zlib.crc32(track_id.encode())))
    return {k: tuple(sorted(v, key=lambda t: t.id)) for k, v in pools.items()}


@dataclass(frozen=True)
class TrackJob:
    index: int
    split: str
    track: Track
    seed: int
    sample_rate: int


def plan_real_music(seed: int, sample_rate: int) -> dict[str, list[TrackJob]]:
    """Each split's tracks in a seeded order."""
    plans = {}
    for split, tracks in music_tracks().items():
        order = np.random.default_rng([seed, _SPLIT_ID[split], 1]).permutation(len(tracks))
        plans[split] = [TrackJob(i, split, tracks[j], seed, sample_rate) for i, j in enumerate(order)]
    return plans


def _track_audio(job: TrackJob) -> tuple[np.ndarray, str, dict]:
    """The whole track as mono float [N], its caption, and extra metadata."""
    track = job.track
    if track.kit is not None:
        wav, meta = render_drum_track(track.kit, track.drum_seed, CLIP_SECONDS, job.sample_rate)
        return wav, meta["text"], {"title": f"{meta['style']} at {meta['tempo']} bpm on {track.kit}"}
    stems = [decode_audio(f, job.sample_rate) for f in track.files]
    n = max(len(s) for s in stems)
    wav = np.zeros(n, dtype=np.float64)
    for s in stems:
        wav[: len(s)] += s
    return wav, track.text, {}


def cut_track(job: TrackJob, clips_dir: str) -> list[ClipResult]:
    """Worker: one track to consecutive FLAC clips of CLIP_SECONDS in `clips_dir`, in order."""
    track = job.track
    try:
        wav, text, extra = _track_audio(job)
    except (RuntimeError, ValueError, OSError) as exc:
        return [ClipResult(job.index, error=f"{track.id}: {exc}")]
    sr = job.sample_rate
    size, results = round(CLIP_SECONDS * sr), []
    for k, start in enumerate(range(0, len(wav), size)):
        piece = wav[start:start + size]
        if len(piece) < _MIN_CLIP_SECONDS * sr:
            break
        where = f"{track.id} at {start / sr:.0f} s"
        if np.max(np.abs(piece)) < _MIN_PEAK:
            results.append(ClipResult(job.index, error=f"{where}: near silence"))
            continue
        peak_db = float(np.random.default_rng([job.seed, _SPLIT_ID[job.split], 2, job.index, k])
                        .uniform(*_PEAK_DB_RANGE))
        out = Path(clips_dir) / f"real-music-{job.split}-{job.index:05d}-{k:03d}.flac"
        try:
            duration = finish_clip(piece, sr, out, peak_db, min_seconds=2.0, trim_db=-60.0, margin_s=0.05)
        except (ValueError, OSError) as exc:
            results.append(ClipResult(job.index, error=f"{where}: {exc}"))
            continue
        results.append(ClipResult(job.index, str(out), duration, meta={
            "text": text, "source": track.package, "track": track.id, "title": extra.get("title", track.title),
            "kind": "drum track" if track.kit is not None else "music track", "start": round(start / sr, 3),
        }))
    return results


def _features(sample_rate: int):
    from datasets import Audio, Features, Value

    return Features({
        "audio": Audio(sampling_rate=sample_rate), "text": Value("string"), "source": Value("string"),
        "track": Value("string"), "title": Value("string"), "kind": Value("string"), "start": Value("float32"),
        "duration": Value("float32"),
    })


def make_real_music_dataset(
    output: str | os.PathLike,
    hours: float,
    seed: int = 0,
    sample_rate: int = 24000,
    num_proc: int = 1,
    progress: bool = True,
    test_fraction: float = 0.1,
    overwrite: bool = False,
):
    """Real music (Debian's game soundtracks and songs, and drum tracks of real hits) as a DatasetDict at `output`.

    Splits "train" and "test" hold their share of `hours` (`test_fraction` for test), or all the packages have if
    that is less: tracks are cut in a seeded order until the split reaches its share (about 2.6 hours exist for
    train and 0.8 for test; ask for more hours than that to get all of it). Columns: `audio` (datasets `Audio`,
    mono at `sample_rate` Hz, 16-bit FLAC, 2-10 s), `text` (the caption, e.g. 'Music from the programming game
    Colobot, "Hv 2"'), `source` (the Debian package), `track` (the track's id; all its clips share it), `title`,
    `kind` ("music track" or "drum track"), `start` (seconds into the track), `duration` (seconds).
    Train and test share no track and no drum kit.

    The same `seed` gives the same clips, whatever `num_proc`. A file that fails to decode and a near-silent clip
    are skipped and counted (warning, and `recipe.json`). Written to a temporary folder and moved into place
    when complete; an existing `output` is replaced only with `overwrite=True`. Returns the dataset loaded
    from `output`.

    Raises FileNotFoundError (naming the apt command) if FFmpeg or a music package is missing, ValueError for
    bad arguments, FileExistsError if `output` exists.
    """
    targets = split_seconds(hours, test_fraction)
    check_common_args(sample_rate, num_proc)
    check_tools("real-music", REAL_MUSIC_APT_PACKAGES, binaries=("ffmpeg",),
                files=[*(s.folder for s in MUSIC_SOURCES), DRUMKITS_DIR])

    def recipe(clips_dir: Path):
        return collect_splits(plan_real_music(seed, sample_rate), cut_track, targets, clips_dir, num_proc,
                              progress, desc="real-music", window=num_proc)

    info = {"recipe": "real-music", "hours": hours, "seed": seed, "sample_rate": sample_rate,
            "test_fraction": test_fraction, "clip_seconds": CLIP_SECONDS,
            "test_tracks": [t.id for t in music_tracks()["test"] if t.kit is None],
            "test_drum_kits": sorted(TEST_DRUM_KITS), "packages": list(REAL_MUSIC_APT_PACKAGES[1:])}
    return write_dataset(output, recipe, functools.partial(_features, sample_rate), info, overwrite, progress)
