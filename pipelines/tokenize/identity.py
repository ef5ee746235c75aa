"""What identifies a source row, so that a resumed run can tell whether the parts already written still match it.

A row's identity hashes its audio cell (the bytes when the dataset embeds them, else the file's path, size and
modification time) and its other columns. Each part stores its rows' identities (`tokenize_part.json`, "sources");
a resumed run recomputes them from the current source and re-encodes from the first part that differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable


def cell_name(cell, index: int) -> str:
    """How a row is named in messages: its audio file's path, else its index in the share."""
    path = cell.get("path") if isinstance(cell, dict) else None
    return str(path) if path else f"row {index}"


def row_identity(fields: dict, cell) -> str:
    """A short hash of one source row: `cell` its raw audio ({"bytes", "path"}), `fields` its other columns."""
    h = hashlib.sha256()
    data = cell.get("bytes") if isinstance(cell, dict) else None
    path = cell.get("path") if isinstance(cell, dict) else None
    if data is not None:
        h.update(b"bytes:" + hashlib.sha256(data).digest())
    elif path:
        try:
            stat = os.stat(path)
            h.update(f"file:{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        except OSError:
            h.update(f"missing:{path}".encode())
    else:
        h.update(repr(cell).encode())
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def identities(rows: Iterable[dict], audio_column: str, start: int = 0) -> list[list[str]]:
    """[[name, identity], ...] of source rows (dicts holding `audio_column` as a raw cell), numbered from `start`."""
    out = []
    for i, row in enumerate(rows, start):
        cell = row[audio_column]
        out.append([cell_name(cell, i), row_identity({k: v for k, v in row.items() if k != audio_column}, cell)])
    return out
