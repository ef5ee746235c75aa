"""Synthetic English speech: sentences from Debian's text packages read by flite, festival and espeak-ng voices.

Sentences come from `bible-kjv` (the King James verses, public domain) and `fortunes` (proverbs, jokes and
short quotations, freely redistributable as Debian main ships them; the files of song lyrics and of quotations
from in-copyright novels and TV series are left out), split into sentences of 3-25 words made only of letters
and plain punctuation, so the transcript is exactly what the voice reads. Each clip is one sentence read by
one voice at a random speaking rate (engine-native) and pitch (espeak-ng natively; sox's `pitch` for flite and
festival), resampled with sox to the requested rate, mono, trimmed of leading/trailing silence and
peak-normalized to a random level between -8 and -1 dBFS.

The test split is held out twice over: it is read only by voices that never occur in train (`TEST_VOICES`),
and only from sentences that never occur in train (a fixed hash of each sentence decides its side).

A second voice set, "extra", reads the same sentences with festival's voices of other languages: more speakers
for a codec's decoder, which needs timbres rather than English (`EXTRA_VOICES`). A third, "extra2", adds
festival's Russian voice and puts the extra set's two held-out speakers in train (`EXTRA2_VOICES`).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (ClipResult, check_common_args, check_tools, finish_clip, split_seconds, synthesize_splits,
                     write_dataset)

# Exactly what the recipe uses; `fortunes` pulls in `fortunes-min`, the festival voices pull in festlex-*.
# (`EXTRA_SPEECH_APT_PACKAGES` and `EXTRA2_SPEECH_APT_PACKAGES` add the voices of the other voice sets.)
SPEECH_APT_PACKAGES = (
    "flite", "festival", "festlex-cmu", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts",
    "espeak-ng", "espeak-ng-data", "sox", "fortunes", "bible-kjv",
)
_BINARIES = ("flite", "festival", "espeak-ng", "sox", "bible")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
_FESTIVAL_VOICE_DIRS = (
    Path("/usr/share/festival/voices/english/kal_diphone"),
    Path("/usr/share/festival/voices/english/ked_diphone"),
    Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts"),
)
# Fortune files left out: ASCII art, code and shell jokes, dictionary entries, song lyrics (songs-poems),
# quotations from in-copyright novels and series (pratchett, startrek), and the files most likely to read as
# stereotypes or politics.
_FORTUNE_FILES_SKIPPED = frozenset({
    "art", "ascii-art", "computers", "debian", "definitions", "drugs", "ethnic", "linux", "linuxcookie",
    "men-women", "perl", "politics", "pratchett", "songs-poems", "startrek", "translate-me", "zippy",
})


@dataclass(frozen=True)
class Voice:
    """One synthesizer voice. `name` is the stable name stored in the dataset's `voice` column."""

    name: str
    engine: str  # "flite" | "festival" | "espeak"
    ident: str  # the engine's own name: flite -voice, festival (voice_...) function, espeak-ng -v


_ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                   "en-029", "en-us-nyc")
# espeak-ng's human-sounding variants ("" is the accent's default voice); whisper, croak and robots left out.
_ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                    "klatt", "klatt2", "klatt3")


def _espeak_voice(accent: str, variant: str) -> Voice:
    ident = f"{accent}+{variant}" if variant else accent
    return Voice(f"espeak-{ident}", "espeak", ident)


VOICES: tuple[Voice, ...] = (
    Voice("flite-kal16", "flite", "kal16"),
    Voice("flite-rms", "flite", "rms"),
    Voice("flite-slt", "flite", "slt"),
    Voice("flite-awb", "flite", "awb"),
    Voice("festival-kal", "festival", "voice_kal_diphone"),
    Voice("festival-ked", "festival", "voice_ked_diphone"),
    Voice("festival-slt-hts", "festival", "voice_cmu_us_slt_arctic_hts"),
    *(_espeak_voice(a, v) for a in _ESPEAK_ACCENTS for v in _ESPEAK_VARIANTS),
)
# Held out for the test split: one speaker per engine that no train voice shares, two espeak-ng accents and
# three espeak-ng variants (every accent with them).
_TEST_ESPEAK_ACCENTS = ("en-029", "en-gb-x-gbcwmd")
_TEST_ESPEAK_VARIANTS = ("f4", "m6", "klatt3")
TEST_VOICES: frozenset[str] = frozenset(
    {"flite-awb", "festival-ked"}
    | {v.name for v in VOICES if v.engine == "espeak" and (
        v.ident.split("+")[0] in _TEST_ESPEAK_ACCENTS or v.ident.partition("+")[2] in _TEST_ESPEAK_VARIANTS)}
)

# `voice_set="extra"`: more speakers for a codec's decoder, which needs timbres rather than English. festival's
# recorded voices of other languages read the same English sentences through their own language's front end (a
# Czech, Italian, Finnish or Catalan reading of English): nine speakers (adult and child, male and female) against
# the five recorded ones of the English set's train split. Two are held out for its test split, as in that set.
EXTRA_SPEECH_APT_PACKAGES = (
    "festvox-czech-dita", "festvox-czech-krb", "festvox-czech-machac", "festvox-czech-ph", "festvox-italp16k",
    "festvox-itapc16k", "festvox-suopuhe-lj", "festvox-suopuhe-mv", "festvox-ca-ona-hts",
)
_EXTRA_VOICE_DIRS = tuple(Path("/usr/share/festival/voices") / d for d in (
    "czech/czech_dita", "czech/czech_krb", "czech/czech_machac", "czech/czech_ph", "italian/lp_diphone",
    "italian/pc_diphone", "finnish/suo_fi_lj_diphone", "finnish/hy_fi_mv_diphone", "catalan/upc_ca_ona_hts"))
EXTRA_VOICES: tuple[Voice, ...] = tuple(Voice(f"festival-{name}", "festival", ident) for name, ident in (
    ("cs-dita", "voice_czech_dita"), ("cs-krb", "voice_czech_krb"), ("cs-machac", "voice_czech_machac"),
    ("cs-ph", "voice_czech_ph"), ("it-lp", "voice_lp_diphone"), ("it-pc", "voice_pc_diphone"),
    ("fi-lj", "voice_suo_fi_lj_diphone"), ("fi-mv", "voice_hy_fi_mv_diphone"), ("ca-ona", "voice_upc_ca_ona_hts")))
EXTRA_TEST_VOICES: frozenset[str] = frozenset({"festival-cs-ph", "festival-it-lp"})

# `voice_set="extra2"`: three more speakers for a decoder, all in train. festival's Russian voice (msu_ru_nsh, a
# recorded male speaker, unit selection) and the two speakers the extra set holds out. With no speaker to spare,
# its test split is read by the same voices, from the held-out sentences; the English set's test split stays the
# measure of generalisation to new speakers.
EXTRA2_SPEECH_APT_PACKAGES = ("festvox-ru", "festvox-czech-ph", "festvox-italp16k")
_EXTRA2_VOICE_DIRS = tuple(Path("/usr/share/festival/voices") / d for d in (
    "russian/msu_ru_nsh_clunits", "czech/czech_ph", "italian/lp_diphone"))
EXTRA2_VOICES: tuple[Voice, ...] = (
    Voice("festival-ru-nsh", "festival", "voice_msu_ru_nsh_clunits"),
    *(v for v in EXTRA_VOICES if v.name in EXTRA_TEST_VOICES),
)


@dataclass(frozen=True)
class VoiceSet:
    """The voices a speech dataset is read by, those of them held out for its test split, and what they need."""

    voices: tuple[Voice, ...]
    test_voices: frozenset[str]  # empty: both splits are read by every voice (sentences are still held out)
    apt_packages: tuple[str, ...]
    voice_dirs: tuple[Path, ...]


VOICE_SETS = {
    "english": VoiceSet(VOICES, TEST_VOICES, SPEECH_APT_PACKAGES, _FESTIVAL_VOICE_DIRS),
    "extra": VoiceSet(EXTRA_VOICES, EXTRA_TEST_VOICES, SPEECH_APT_PACKAGES + EXTRA_SPEECH_APT_PACKAGES,
                      _EXTRA_VOICE_DIRS),
    "extra2": VoiceSet(EXTRA2_VOICES, frozenset(), SPEECH_APT_PACKAGES + EXTRA2_SPEECH_APT_PACKAGES,
                       _EXTRA2_VOICE_DIRS),
}

# Share of clips per engine, so espeak-ng's many voices do not crowd out the more natural flite and festival.
_ENGINE_WEIGHTS = {"flite": 0.35, "festival": 0.30, "espeak": 0.35}
_SPEED_RANGE = (0.85, 1.2)  # speaking rate relative to the voice's default
_PITCH_SEMITONES = 2.5  # flite/festival pitch shift drawn from +-this many semitones
_ESPEAK_WPM = 175  # espeak-ng's default rate, words per minute
_ESPEAK_PITCH_RANGE = (25, 75)  # espeak-ng -p, 0-99, default 50
_PEAK_DB_RANGE = (-8.0, -1.0)
_SPLIT_ID = {"train": 0, "test": 1}
_TEST_SENTENCE_MODULUS = 10  # one sentence in ten (by a fixed hash) is test-only
_TIMEOUT_S = 120
# Jobs per worker task: festival starts once per voice per task (~0.4 s), so larger tasks amortize it better.
# (A sentence festival reads in a batch sounds exactly as when read alone: checked, byte for byte.)
_BATCH_SIZE = 48


# ---------------------------------------------------------------------------------------------------- sentences

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"^[A-Za-z]+(?:['-][A-Za-z]+)*[,.;:!?]?$")
_ABBREVIATION_END = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|Prof|Inc|Ltd|Co|Mt|No)\.$")
_ATTRIBUTION = re.compile(r"^\s*(?:--|- )")  # "-- Mark Twain" lines under a quotation
_DIALOGUE_LABEL = re.compile(r"^[QA]:\s+")  # "Q: Why did ...?"


def clean_sentence(text: str) -> str | None:
    """Return `text` as a clean sentence to read aloud, or None if it does not qualify.

    A sentence qualifies with 3-25 words, a capital first letter, a final . ! or ?, and words made of ASCII
    letters (with inner ' or -) and trailing , . ; : ! ? only: no digits, symbols, quotes, acronyms or initials,
    whose reading differs between engines. KJV's small-capital "LORD"/"GOD" become "Lord"/"God".
    """
    text = text.replace("LORD", "Lord").replace("GOD", "God")
    text = re.sub(r"\"|``|''", "", text)
    text = _DIALOGUE_LABEL.sub("", re.sub(r"\s+", " ", text).strip())
    words = text.split()
    if not 3 <= len(words) <= 25 or not text[0].isupper() or text[-1] not in ".!?":
        return None
    if _ABBREVIATION_END.search(text):
        return None
    for w in words:
        core = w.rstrip(",.;:!?")
        if not _WORD.match(w) or (len(core) > 1 and core.isupper()) or (len(core) == 1 and w.endswith(".")
                                                                        and core not in ("I", "a")):
            return None
    return text


def _fortune_entries() -> list[tuple[str, str]]:
    entries = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.suffix or path.name in _FORTUNE_FILES_SKIPPED or not path.is_file():
            continue  # .dat indexes and .u8 copies are skipped by the suffix test
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"\n%\n", text):
            lines = [ln.strip() for ln in entry.splitlines() if not _ATTRIBUTION.match(ln)]
            entries.append((f"fortunes/{path.name}", " ".join(lines)))
    return entries


def _bible_verses() -> list[tuple[str, str]]:
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True,
                         timeout=_TIMEOUT_S).stdout
    # Each line is "Ge1:1 In the beginning ..."; drop the reference.
    return [("kjv", line.split(" ", 1)[1]) for line in out.splitlines() if " " in line]


@functools.lru_cache(maxsize=1)
def speech_sentences() -> dict[str, tuple[tuple[str, str], ...]]:
    """All usable sentences as `(source, sentence)` pairs, per split: {"train": ..., "test": ...}.

    Deterministic (file order, then verse order; duplicates, compared case-insensitively, keep the first).
    A sentence is test-only when the CRC-32 of its lowercase text is divisible by 10, whatever the seed.
    """
    seen: set[str] = set()
    pools: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for source, text in _fortune_entries() + _bible_verses():
        for piece in _SENTENCE_END.split(text):
            sentence = clean_sentence(piece)
            if sentence is None or sentence.lower() in seen:
                continue
            seen.add(sentence.lower())
            test = zlib.crc32(sentence.lower().encode()) % _TEST_SENTENCE_MODULUS == 0
            pools["test" if test else "train"].append((source, sentence))
    return {k: tuple(v) for k, v in pools.items()}


# ---------------------------------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class SpeechJob:
    """One clip to synthesize; a pure function of (seed, split, index), see `plan_speech_job`."""

    index: int
    split: str
    voice: Voice
    text: str
    text_source: str
    speed: float  # speaking rate relative to the voice's default (>1 is faster)
    semitones: float  # sox pitch shift; 0 for espeak-ng, which shifts natively with `espeak_pitch`
    espeak_pitch: int
    peak_db: float
    sample_rate: int

    @property
    def settings(self) -> str:
        if self.voice.engine == "espeak":
            return f"espeak-ng -s {round(_ESPEAK_WPM * self.speed)} -p {self.espeak_pitch}"
        return f"speed {self.speed:.3f}, pitch {self.semitones:+.2f} st (sox)"


@functools.lru_cache(maxsize=8)
def _voices_by_engine(split: str, voice_set: str) -> dict[str, tuple[Voice, ...]]:
    by_engine: dict[str, list[Voice]] = defaultdict(list)
    chosen = VOICE_SETS[voice_set]
    for v in chosen.voices:
        if not chosen.test_voices or (v.name in chosen.test_voices) == (split == "test"):
            by_engine[v.engine].append(v)
    return {e: tuple(vs) for e, vs in by_engine.items()}


@functools.lru_cache(maxsize=8)
def _sentence_order(seed: int, split: str) -> np.ndarray:
    return np.random.default_rng([seed, _SPLIT_ID[split], 1]).permutation(len(speech_sentences()[split]))


def plan_speech_job(seed: int, split: str, index: int, sample_rate: int, voice_set: str = "english") -> SpeechJob:
    """The `index`-th clip of `split`: its voice (from `VOICE_SETS[voice_set]`), sentence, speed, pitch and level."""
    rng = np.random.default_rng([seed, _SPLIT_ID[split], 0, index])
    voices = _voices_by_engine(split, voice_set)
    engines = sorted(voices)
    weights = np.array([_ENGINE_WEIGHTS[e] for e in engines])
    engine = engines[rng.choice(len(engines), p=weights / weights.sum())]
    voice = voices[engine][rng.integers(len(voices[engine]))]
    pool = speech_sentences()[split]
    order = _sentence_order(seed, split)
    source, text = pool[order[index % len(order)]]
    speed = float(rng.uniform(*_SPEED_RANGE))
    semitones = 0.0 if engine == "espeak" else float(rng.uniform(-_PITCH_SEMITONES, _PITCH_SEMITONES))
    espeak_pitch = int(rng.integers(_ESPEAK_PITCH_RANGE[0], _ESPEAK_PITCH_RANGE[1] + 1))
    peak_db = float(rng.uniform(*_PEAK_DB_RANGE))
    return SpeechJob(index, split, voice, text, source, speed, semitones, espeak_pitch, peak_db, sample_rate)


# ---------------------------------------------------------------------------------------------------- synthesis

def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")


def _festival_batch(jobs: list[SpeechJob], wavs: dict[int, Path], tmp: Path) -> str | None:
    """Read all `jobs` (one festival voice) in one festival process; returns festival's error, if any.

    Loading festival and a voice costs ~0.4 s against ~0.04 s per diphone sentence, hence one process per batch.
    """
    voice = jobs[0].voice.ident
    lines = [f"({voice})"]
    for job in jobs:
        if voice.endswith("_hts"):  # the HTS engine ignores Duration_Stretch; its -r option is a speed factor
            lines.append(f"(set! hts_engine_params (append {voice.removeprefix('voice_')}::hts_engine_params "
                         f"(list (list \"-r\" {job.speed:.4f}))))")
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / job.speed:.4f})")
        assert '"' not in job.text and "\\" not in job.text  # clean_sentence guarantees it
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text \"{job.text}\")) \"{wavs[job.index]}\" 'riff)")
    script = tmp / f"{voice}.scm"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=_TIMEOUT_S)
    if proc.returncode != 0:  # festival stops at the first error: later sentences have no file and fail below
        return f"festival exited with {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return None


def _raw_wave(job: SpeechJob, wav: Path) -> None:
    if job.voice.engine == "flite":
        _run(["flite", "-voice", job.voice.ident, "--setf", f"duration_stretch={1.0 / job.speed:.4f}",
              "-t", job.text, "-o", str(wav)])
    elif job.voice.engine == "espeak":
        _run(["espeak-ng", "-v", job.voice.ident, "-s", str(round(_ESPEAK_WPM * job.speed)),
              "-p", str(job.espeak_pitch), "-w", str(wav), job.text])
    else:
        raise AssertionError(job.voice.engine)


def _resampled(job: SpeechJob, wav: Path) -> np.ndarray:
    """Pitch-shift (when asked), resample and down-mix with sox; mono float32 [N] at job.sample_rate."""
    effects = ["pitch", f"{100 * job.semitones:.1f}"] if job.semitones else []
    cmd = ["sox", "-q", str(wav), "-t", "raw", "-e", "floating-point", "-b", "32", "-",
           *effects, "rate", "-v", str(job.sample_rate), "channels", "1"]
    proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"sox exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
    return np.frombuffer(proc.stdout, dtype=np.float32)


def synthesize_speech_batch(jobs: list[SpeechJob], clips_dir: str) -> list[ClipResult]:
    """Worker: synthesize `jobs` into FLAC files in `clips_dir`; one ClipResult per job, in order."""
    results = []
    with tempfile.TemporaryDirectory(prefix="rvq-speech-") as tmp_name:
        tmp = Path(tmp_name)
        wavs = {job.index: tmp / f"{job.index}.wav" for job in jobs}
        festival_errors: dict[str, str | None] = {}
        by_voice: dict[str, list[SpeechJob]] = defaultdict(list)
        for job in jobs:
            if job.voice.engine == "festival":
                by_voice[job.voice.ident].append(job)
        for ident, group in sorted(by_voice.items()):
            try:
                festival_errors[ident] = _festival_batch(group, wavs, tmp)
            except subprocess.TimeoutExpired as exc:
                festival_errors[ident] = f"festival timed out: {exc}"
        for job in jobs:
            try:
                if job.voice.engine != "festival":
                    _raw_wave(job, wavs[job.index])
                elif not wavs[job.index].exists():
                    raise RuntimeError(festival_errors.get(job.voice.ident) or "festival wrote no file")
                out = Path(clips_dir) / f"speech-{job.split}-{job.index:08d}.flac"
                duration = finish_clip(_resampled(job, wavs[job.index]), job.sample_rate, out, job.peak_db)
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                results.append(ClipResult(job.index, error=f"{job.voice.name}: {exc}"))
                continue
            results.append(ClipResult(job.index, str(out), duration, meta={
                "text": job.text, "voice": job.voice.name, "engine": job.voice.engine, "speed": round(job.speed, 4),
                "synth_settings": job.settings, "text_source": job.text_source,
            }))
    return results


def _features(sample_rate: int):
    from datasets import Audio, Features, Value

    return Features({
        "audio": Audio(sampling_rate=sample_rate), "text": Value("string"), "voice": Value("string"),
        "engine": Value("string"), "speed": Value("float32"), "synth_settings": Value("string"),
        "text_source": Value("string"), "duration": Value("float32"),
    })


def make_speech_dataset(
    output: str | os.PathLike,
    hours: float,
    seed: int = 0,
    sample_rate: int = 24000,
    num_proc: int = 1,
    progress: bool = True,
    test_fraction: float = 0.1,
    overwrite: bool = False,
    voice_set: str = "english",
):
    """Synthesize `hours` of English speech into a Hugging Face DatasetDict saved at `output`.

    Splits "train" and "test" (`test_fraction` of the hours), each split filled clip by clip until it holds its
    share. Columns: `audio` (datasets `Audio`, mono at `sample_rate` Hz, 16-bit FLAC), `text` (the transcript,
    exactly what the voice read), `voice` (e.g. "flite-rms", "festival-slt-hts", "espeak-en-us+f3"), `engine`,
    `speed` (speaking rate relative to the voice's default), `synth_settings` (how rate and pitch were set),
    `text_source` ("kjv" or "fortunes/<file>"), `duration` (seconds). Test voices (`TEST_VOICES`) and test
    sentences never occur in train. Clips are 1-10 s, one sentence each. `voice_set` "extra" reads the sentences
    with festival's voices of other languages instead (`EXTRA_VOICES`, test voices `EXTRA_TEST_VOICES`): more
    speakers for a codec's decoder to learn from, in the same sentences, rates, pitches and levels. "extra2"
    reads them with `EXTRA2_VOICES` (festival's Russian voice and the extra set's two test speakers), all in
    both splits: only its sentences are held out.

    The same `seed` gives the same clips, whatever `num_proc` (worker processes). A clip whose synthesis fails
    is skipped and counted (warning, and `recipe.json` in the output folder). The dataset is built in a
    temporary folder next to `output` and moved into place when complete; an existing `output` is replaced only
    with `overwrite=True`. Returns the dataset loaded from `output` (`datasets.load_from_disk`).

    Raises FileNotFoundError (naming the apt command) if a synthesizer, voice or text package is missing,
    ValueError for bad arguments, FileExistsError if `output` exists.
    """
    if voice_set not in VOICE_SETS:
        raise ValueError(f"voice_set must be one of {sorted(VOICE_SETS)}, got {voice_set!r}")
    chosen = VOICE_SETS[voice_set]
    targets = split_seconds(hours, test_fraction)
    check_common_args(sample_rate, num_proc)
    check_tools("speech", chosen.apt_packages, binaries=_BINARIES, files=(FORTUNES_DIR, *chosen.voice_dirs))

    def recipe(clips_dir: Path):
        speech_sentences()  # read the texts once here, not in every worker
        return synthesize_splits(
            functools.partial(_plan, seed, sample_rate, voice_set), synthesize_speech_batch, targets, clips_dir,
            num_proc, progress, desc="speech", expected_clip_seconds=4.0,
            batch_size=_BATCH_SIZE,
        )

    info = {"recipe": "speech", "hours": hours, "seed": seed, "sample_rate": sample_rate,
            "test_fraction": test_fraction, "test_voices": sorted(chosen.test_voices)}
    if voice_set != "english":  # recipe.json of the English set stays as it was
        info["voice_set"] = voice_set
    return write_dataset(output, recipe, functools.partial(_features, sample_rate), info, overwrite,
                         progress)


def _plan(seed: int, sample_rate: int, voice_set: str, split: str, index: int) -> SpeechJob:
    return plan_speech_job(seed, split, index, sample_rate, voice_set)
