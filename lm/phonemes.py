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
