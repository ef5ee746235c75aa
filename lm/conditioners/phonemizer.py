"""Phonemes of English text for the LM's aligned phoneme track, from espeak-ng (a Debian package).

    phonemize("Hello, how are you?")   # "h@l'oU | h,aU A@ ju:"  (espeak-ng's ASCII phoneme mnemonics)
    phoneme_ids("h@l'oU")              # [END_ID + ...]: one id per character, see below

English spelling says little about sound ("though", "through", "tough"), and a small LM trained for an hour on a
CPU does not learn it; a phoneme string does that part for it, as in VITS or Piper. espeak-ng's `-x` output is
plain ASCII, so each printable character is one symbol: ids 2..96 are the characters 32..126 (space, the word
boundary, included), 0 pads and 1 marks "after the last phoneme". Clause breaks (espeak-ng starts a new line at
a comma or full stop) become " | ". The result is a pure function of the text and espeak-ng's version.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

ESPEAK = "espeak-ng"
LANGUAGE = "en-us"
PAD_ID = 0  # padding of a batch; also a row without phonemes (music, or the null condition)
END_ID = 1  # the frames after the last phoneme
_FIRST, _LAST = 32, 126  # printable ASCII
VOCAB_SIZE = 2 + _LAST - _FIRST + 1
CLAUSE_BREAK = " | "


class PhonemizerError(RuntimeError):
    """espeak-ng is missing or failed on a text."""


@functools.lru_cache(maxsize=1 << 16)
def phonemize(text: str, language: str = LANGUAGE) -> str:
    """espeak-ng's phonemes of `text` (ASCII mnemonics, words separated by spaces, clauses by " | ").

    Cached: training asks for the same transcripts every epoch. PhonemizerError if espeak-ng is not installed or
    fails; the text goes through stdin, so it is never read as an option or a command.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if shutil.which(ESPEAK) is None:
        raise PhonemizerError(f"{ESPEAK} is not installed; the LM's phoneme track needs it (Debian: apt install "
                              "espeak-ng, part of the README's setup)")
    try:
        done = subprocess.run([ESPEAK, "-q", "-x", "-b", "1", "-v", language], input=text.encode("utf-8"),
                              capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as e:
        raise PhonemizerError(f"{ESPEAK} took more than 60 s on a {len(text)}-character text") from e
    if done.returncode != 0:
        raise PhonemizerError(f"{ESPEAK} -v {language} failed (exit {done.returncode}): "
                              f"{done.stderr.decode(errors='replace').strip()[:300]}")
    clauses = (" ".join(line.split()) for line in done.stdout.decode("ascii", errors="replace").splitlines())
    return CLAUSE_BREAK.join(c for c in clauses if c)


def phoneme_ids(phonemes: str) -> list[int]:
    """One id per printable ASCII character of a `phonemize` string (others, which espeak-ng does not write,
    are skipped)."""
    return [ord(c) - _FIRST + 2 for c in phonemes if _FIRST <= ord(c) <= _LAST]


def text_phoneme_ids(text: str, language: str = LANGUAGE) -> list[int]:
    """`phoneme_ids(phonemize(text))`: the ids the phoneme track reads for a transcript."""
    return phoneme_ids(phonemize(text, language))


# ----------------------------------------------------------------------------------------- sounds and durations

SILENT = frozenset("',% !?")  # stress marks, word boundaries and punctuation: no sound of their own
MODIFIERS = frozenset(":2#;-")  # length, reduction, palatalisation and the like: part of the sound before them
LEAD, TRAIL = "<lead>", "<trail>"  # the silence before the first sound and after the last, in a duration table


def phoneme_units(phonemes: str) -> list[tuple[str, int]]:
    """The sounds of a `phonemize` string, each as (label, position of its first symbol in `phoneme_ids`).

    A sound is a symbol with the modifiers that follow it ("i:", "@2", "I#"); stress marks, word boundaries and
    punctuation (`SILENT`) are no sound. "|" (a clause break) and "_" (espeak-ng's pause) are sounds: a pause.

        phoneme_units("h@l'oU")  # [("h", 0), ("@", 1), ("l", 2), ("o", 4), ("U", 5)]
    """
    units: list[tuple[str, int]] = []
    position = 0
    for c in phonemes:
        if not _FIRST <= ord(c) <= _LAST:
            continue  # phoneme_ids skips it too
        if c in MODIFIERS and units and position == units[-1][1] + len(units[-1][0]):
            units[-1] = (units[-1][0] + c, units[-1][1])
        elif c not in SILENT and c not in MODIFIERS:
            units.append((c, position))
        position += 1
    return units


def lay_out(phonemes: str, durations: dict[str, float]) -> tuple[list[int], int]:
    """Where each symbol of `phonemes` starts, in frames, when each sound lasts as long as `durations` says.

    `durations` maps a sound's label to its frames, and LEAD and TRAIL to the silence before the first sound and
    after the last (a missing label lasts the mean of the others). Returns (starts, end): one start per
    `phoneme_ids` symbol (a symbol that is no sound starts where the next sound does, so it takes no frames) and
    the frame after the last sound, which is what a `PhonemeTrack`'s `starts` and `total_frames` take.
    """
    sounds = [float(v) for k, v in durations.items() if k not in (LEAD, TRAIL)]
    fallback = sum(sounds) / len(sounds) if sounds else 1.0
    units = phoneme_units(phonemes)
    count = len(phoneme_ids(phonemes))
    position = float(durations.get(LEAD, 0.0))
    unit_starts = []
    for label, _ in units:
        unit_starts.append(round(position))
        position += max(float(durations.get(label, fallback)), 1.0)
    end = max(round(position), 1)
    return starts_of_symbols(count, [first for _, first in units], unit_starts, end), end


def starts_of_symbols(count: int, unit_positions: list[int], unit_starts: list[int], end: int) -> list[int]:
    """Start frames of `count` symbols given the start of each sound (at symbol `unit_positions[i]`): a symbol that
    begins no sound starts where the next sound does (`end` after the last sound)."""
    starts = [end] * count
    following = end
    at = dict(zip(unit_positions, unit_starts))
    for position in range(count - 1, -1, -1):
        following = at.get(position, following)
        starts[position] = following
    return starts
