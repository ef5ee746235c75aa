"""The project speaks of what it is, not of how it was made: no file that git tracks (docs, configs, code, tests,
scripts) names the stretches of work it was made in, in its text or in its name, and no file name is a numbered
snapshot such as `report_s26.json`. History belongs in CHANGELOG.md, by version and date.

pytest's `scope=` for fixtures is the one use of the word that is allowed. This file builds the word from parts so
that it does not flag itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORD = "ses" + "sion"
FORBIDDEN = re.compile(rf"(?<![a-z]){WORD}s?(?![a-z])", re.IGNORECASE)  # also in names: run_{WORD}_3
ALLOWED = re.compile(rf"""scope\s*=\s*["']{WORD}["']""")  # pytest's fixture scope
SNAPSHOT_NAME = re.compile(r"[_-]s\d+\.", re.IGNORECASE)  # report_s26.json, eval-s14.md
BINARY_SUFFIXES = {".safetensors", ".model", ".wav", ".flac", ".mp3", ".ogg", ".png", ".jpg", ".jpeg", ".gif", ".pdf",
                   ".pt", ".bin", ".npz", ".npy", ".arrow", ".parquet", ".sf2", ".mid", ".gz", ".zip"}


def project_files() -> list[Path]:
    """The files git tracks, or would track once added (not ignored), that exist in the working tree."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the project to list its files")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sorted({REPO / name for name in out.split("\0") if name and (REPO / name).is_file()})


def text_of(path: Path) -> str | None:
    if path.suffix.lower() in BINARY_SUFFIXES:
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def test_no_file_speaks_of_how_the_project_was_made():
    hits = []
    for path in project_files():
        name = path.relative_to(REPO).as_posix()
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(ALLOWED.sub("", line)):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not hits, (f"{len(hits)} lines speak of the {WORD}s the project was made in; say what the thing is or does "
                      "(dates and versions belong in CHANGELOG.md):\n" + "\n".join(hits))


def test_no_file_name_is_a_numbered_snapshot():
    bad = [path.relative_to(REPO).as_posix() for path in project_files()
           if FORBIDDEN.search(path.relative_to(REPO).as_posix()) or SNAPSHOT_NAME.search(path.name)]
    assert not bad, ("file names that carry when they were made (a stretch of work or a numbered snapshot); name the "
                     "file by what it holds:\n" + "\n".join(bad))
