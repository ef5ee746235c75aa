"""Real speech: the studio-recorded voice prompts of Asterisk's core sounds, with their transcripts.

Debian's `asterisk-core-sounds-{en,es,fr,it,ru}-g722` packages hold about 2.2 hours of 16 kHz G.722 prompts
("Please enter your password followed by the pound key.", digits, letters, the phonetic alphabet) read by one
professional speaker per language; the transcripts ship in `asterisk-core-sounds-{lang}` as
`core-sounds-{lang}.txt.gz`. Each prompt that has a transcript becomes one clip, decoded with FFmpeg, resampled
to the requested rate, trimmed of leading/trailing silence and peak-normalized to a random level between -8 and
-1 dBFS, as the synthetic speech recipe does. G.722 carries nothing above 7 kHz, whatever the output rate.

The test split is held out by speaker: every prompt of `REAL_SPEECH_TEST_SPEAKERS` (June, who reads the
Canadian French set) and nothing else, so train and test share no speaker and no language. The English and
Spanish sets are read by the same speaker, Allison; both are in train.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (ClipResult, check_common_args, check_tools, collect_splits, decode_audio, finish_clip,
                     split_seconds, write_dataset)

SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz"


@dataclass(frozen=True)
class PromptSet:
    """One language's prompts: the folder under SOUNDS_DIR, its language code and who reads it."""

    folder: str
    language: str
    speaker: str

    @property
    def packages(self) -> tuple[str, str]:
        return f"asterisk-core-sounds-{self.language}-g722", f"asterisk-core-sounds-{self.language}"

    @property
    def voice(self) -> str:
        return f"asterisk-{self.speaker.lower()}"


PROMPT_SETS = (
    PromptSet("en_US_f_Allison", "en", "Allison"),
    PromptSet("es_MX_f_Allison", "es", "Allison"),
    PromptSet("fr_CA_f_June", "fr", "June"),
    PromptSet("it_IT_m_Carlo", "it", "Carlo"),
    PromptSet("ru_RU_f_IvrvoiceRU", "ru", "IvrvoiceRU"),
)
REAL_SPEECH_TEST_SPEAKERS = frozenset({"June"})
REAL_SPEECH_APT_PACKAGES = ("ffmpeg", *(p for s in PROMPT_SETS for p in s.packages))
_SKIPPED_FOLDERS = ("silence/",)  # silence/1 ... silence/10: seconds of silence, nothing to transcribe
_NOT_SPEECH = frozenset({"beep", "beeperr", "ascending-2tone", "descending-2tone"})  # tones, "[beep]" transcripts
_PEAK_DB_RANGE = (-8.0, -1.0)
_SPLIT_ID = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Prompt:
    """One recorded prompt: a G.722 file and what it says."""

    prompt_set: PromptSet
    name: str  # the file's path under the set's folder without extension, e.g. "vm-deleted", "digits/7"
    text: str

    @property
    def path(self) -> Path:
        return SOUNDS_DIR / self.prompt_set.folder / f"{self.name}.g722"


def read_transcripts(language: str) -> dict[str, str]:
    """`core-sounds-{language}.txt.gz` as {prompt name: transcript}; empty transcripts are left out."""
    out = {}
    with gzip.open(TRANSCRIPTS.format(language=language), "rt", encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = re.sub(r"\s+", " ", text).strip()
            if text and " " not in name.strip():
                out[name.strip()] = text
    return out


@functools.lru_cache(maxsize=1)
def asterisk_prompts() -> dict[str, tuple[Prompt, ...]]:
    """Every transcribed prompt per split, sorted by set and name: {"train": ..., "test": ...}."""
    pools: dict[str, list[Prompt]] = {"train": [], "test": []}
    for prompt_set in PROMPT_SETS:
        transcripts = read_transcripts(prompt_set.language)
        folder = SOUNDS_DIR / prompt_set.folder
        names = sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.g722"))
        split = "test" if prompt_set.speaker in REAL_SPEECH_TEST_SPEAKERS else "train"
        pools[split] += [Prompt(prompt_set, n, transcripts[n]) for n in names
                         if n in transcripts and not n.startswith(_SKIPPED_FOLDERS) and n not in _NOT_SPEECH]
    return {k: tuple(v) for k, v in pools.items()}


@dataclass(frozen=True)
class SpeechClipJob:
    index: int
    split: str
    prompt: Prompt
    peak_db: float
    sample_rate: int


def plan_real_speech(seed: int, sample_rate: int) -> dict[str, list[SpeechClipJob]]:
    """Each split's prompts in a seeded order, each with its output level."""
    plans = {}
    for split, prompts in asterisk_prompts().items():
        order = np.random.default_rng([seed, _SPLIT_ID[split], 1]).permutation(len(prompts))
        levels = np.random.default_rng([seed, _SPLIT_ID[split], 2]).uniform(*_PEAK_DB_RANGE, size=len(prompts))
        plans[split] = [SpeechClipJob(i, split, prompts[j], float(levels[i]), sample_rate)
                        for i, j in enumerate(order)]
    return plans


def decode_prompt(job: SpeechClipJob, clips_dir: str) -> list[ClipResult]:
    """Worker: one prompt to one FLAC clip in `clips_dir`."""
    prompt = job.prompt
    try:
        wav = decode_audio(prompt.path, job.sample_rate)
        out = Path(clips_dir) / f"real-speech-{job.split}-{job.index:06d}.flac"
        duration = finish_clip(wav, job.sample_rate, out, job.peak_db, min_seconds=0.15)  # single letters
    except (RuntimeError, ValueError, OSError) as exc:
        return [ClipResult(job.index, error=f"{prompt.prompt_set.folder}/{prompt.name}: {exc}")]
    return [ClipResult(job.index, str(out), duration, meta={
        "text": prompt.text, "voice": prompt.prompt_set.voice, "engine": "recording",
        "language": prompt.prompt_set.language, "prompt": f"{prompt.prompt_set.folder}/{prompt.name}",
        "source": prompt.prompt_set.packages[0],
    })]


def _features(sample_rate: int):
    from datasets import Audio, Features, Value

    return Features({
        "audio": Audio(sampling_rate=sample_rate), "text": Value("string"), "voice": Value("string"),
        "engine": Value("string"), "language": Value("string"), "prompt": Value("string"),
        "source": Value("string"), "duration": Value("float32"),
    })


def make_real_speech_dataset(
    output: str | os.PathLike,
    hours: float,
    seed: int = 0,
    sample_rate: int = 24000,
    num_proc: int = 1,
    progress: bool = True,
    test_fraction: float = 0.1,
    overwrite: bool = False,
):
    """Real recorded speech with transcripts (Asterisk's prompts in five languages) as a DatasetDict at `output`.

    Splits "train" and "test" hold their share of `hours` (`test_fraction` for test), or all the packages have if
    that is less: prompts are taken in a seeded order until the split reaches its share (about 1.7 hours exist
    for train and 0.4 for test; ask for more hours than that to get all of it). Tones and silences are left out. Columns:
    `audio` (datasets `Audio`, mono at `sample_rate` Hz, 16-bit FLAC), `text` (the transcript the package ships),
    `voice` (the speaker, e.g. "asterisk-allison"), `engine` ("recording"), `language` ("en", "es", "fr", "it",
    "ru"), `prompt` (the source file, e.g. "en_US_f_Allison/vm-deleted"), `source` (the Debian package),
    `duration` (seconds: median 1.3, 0.15 to 86; 44 spoken menus last over 20).
    Test holds only `REAL_SPEECH_TEST_SPEAKERS`, train every other speaker.

    The same `seed` gives the same clips, whatever `num_proc`. A prompt that fails to decode or is too short
    is skipped and counted (warning, and `recipe.json`). Written to a temporary folder and moved into place when
    complete; an existing `output` is replaced only with `overwrite=True`. Returns the dataset loaded from `output`.

    Raises FileNotFoundError (naming the apt command) if FFmpeg or a prompt package is missing, ValueError for
    bad arguments, FileExistsError if `output` exists.
    """
    targets = split_seconds(hours, test_fraction)
    check_common_args(sample_rate, num_proc)
    check_tools("real-speech", REAL_SPEECH_APT_PACKAGES, binaries=("ffmpeg",),
                files=[p for s in PROMPT_SETS
                       for p in (SOUNDS_DIR / s.folder, TRANSCRIPTS.format(language=s.language))])

    def recipe(clips_dir: Path):
        return collect_splits(plan_real_speech(seed, sample_rate), decode_prompt, targets, clips_dir, num_proc,
                              progress, desc="real-speech", window=16 * num_proc)

    info = {"recipe": "real-speech", "hours": hours, "seed": seed, "sample_rate": sample_rate,
            "test_fraction": test_fraction, "test_speakers": sorted(REAL_SPEECH_TEST_SPEAKERS),
            "packages": list(REAL_SPEECH_APT_PACKAGES[1:])}
    return write_dataset(output, recipe, functools.partial(_features, sample_rate), info, overwrite, progress)
