"""Checks on where results go, made before any work: a long encode, generation or training run must not end in a
PermissionError or IsADirectoryError after all the work was done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """An output path cannot be written: it is a folder where a file is expected, or not writable."""


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """`path` as a Path, after checking a file can be written there (its missing parent folders will be created).
    OutputError naming the path and the reason otherwise."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"the {what} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'out.wav')!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"the {what} {str(path)!r} exists and is not writable")
    _check_creatable(path.parent, what, path)
    return path


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """`path` as a Path, after checking it is (or can be made) a writable folder; OutputError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"the {what} {str(path)!r} is a file; give a folder")
    _check_creatable(path, what, path)
    return path


def _check_creatable(folder: Path, what: str, target: Path) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write the {what} {str(target)!r}: {str(existing)!r} is a file, not a folder")
    try:  # a real write: permission bits do not tell for root, nor for read-only file systems
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".rvqaudio-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write the {what} {str(target)!r}: the folder {str(existing)!r} is not writable "
                          f"({e.strerror or e}); choose another location") from e
