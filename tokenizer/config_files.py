"""Config files that say only what differs from another: `"extends": "codec_spectral_small.json"`.

A preset may name a parent file in `extends`, a path relative to the folder of the file that names it. Its own
fields are deep-merged over the parent's: objects present in both (such as `training` or `spectral`) are merged key
by key, any other value (a number, a list, null) replaces the parent's. A parent may extend another in turn. The
parent's `_comment` describes the parent, so it is not inherited.

`read_config_file` returns the resolved fields without `extends`, so a config built from them and saved (a
checkpoint's config.json) holds every field itself. It is how `CodecConfig.from_json_file`,
`LMTrainingConfig.from_json_file` and `AudioLMConfig.from_preset` read their files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

EXTENDS_KEY = "extends"
COMMENT_KEY = "_comment"


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The fields of the JSON config file at `path`, with its `extends` chain resolved (see the module docstring).

    Raises ConfigError, naming the file, when a file of the chain is missing, is not a JSON object, names a parent
    that does not exist, or when the chain comes back to a file it already passed (a loop).
    """
    return _resolve(Path(path), [])


def merge_config_dicts(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override`'s fields over `base`'s: objects present in both are merged key by key, at any depth; any other
    value replaces the base's. Neither argument is modified."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve(path: Path, chain: list[Path]) -> dict[str, Any]:
    data = _read_object(path)
    parent_name = data.pop(EXTENDS_KEY, None)
    if parent_name is None:
        return data
    if not isinstance(parent_name, str) or not parent_name.strip():
        raise ConfigError(f"config file {str(path)!r}: {EXTENDS_KEY!r} must name the JSON file it builds on (a path "
                          f"relative to this file's folder), got {parent_name!r}")
    parent = path.parent / parent_name
    chain = [*chain, path]
    if parent.resolve() in {p.resolve() for p in chain}:
        loop = " -> ".join(str(p) for p in [*chain, parent])
        raise ConfigError(f"config files extend each other in a loop: {loop}; remove {EXTENDS_KEY!r} from one of "
                          "them (the file at the root of a chain holds every field itself)")
    if not parent.is_file():
        raise ConfigError(f"config file {str(path)!r} extends {parent_name!r}, which does not exist (looked for "
                          f"{str(parent)!r}); {EXTENDS_KEY!r} is a path relative to the folder of the file that names "
                          "it: fix the name, or write out the fields in full instead")
    inherited = _resolve(parent, chain)
    inherited.pop(COMMENT_KEY, None)
    return merge_config_dicts(inherited, data)


def _read_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a JSON object of fields, got {type(data).__name__}")
    return data
