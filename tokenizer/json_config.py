"""`JsonConfig`: the JSON side of the project's dataclass configs (the codec's, `tokenizer.config`, and the LM
trainer's, `pipelines.lm_training_config`). Validation stays in each config's `__post_init__`.

- `to_dict` / `from_dict`: plain JSON types out; in, nested configs are rebuilt from their field's type, lists
  become tuples where the field's default is a tuple, a `_comment` key is ignored and any other unknown key is
  an error that lists the known ones.
- `to_json_file` (atomic: a failure leaves no partial file) / `from_json_file` (errors name the file; a preset
  may `extend` another, see `tokenizer.config_files`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from .config_files import read_config_file
from .errors import ConfigError

T = TypeVar("T", bound="JsonConfig")
COMMENT_KEY = "_comment"  # presets may explain themselves; the key is not a setting


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary sibling moved into place with `os.replace`: readers see the old
    file or the new one, never a partial one, and a failure leaves the old file as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class JsonConfig:
    """Mixin for `@dataclass` configs: JSON round trips, with nested `JsonConfig` fields and tuple fields."""

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} expects a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields) - {COMMENT_KEY})
        if unknown:
            raise ConfigError(f"{cls.__name__} got unknown keys {unknown}; known keys are {sorted(fields)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            if name == COMMENT_KEY:
                continue
            nested = hints.get(name)
            if isinstance(nested, type) and issubclass(nested, JsonConfig) and isinstance(value, dict):
                value = nested.from_dict(value)
            elif isinstance(value, list) and isinstance(fields[name].default, tuple):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (a failure leaves no partial file)."""
        write_text_atomic(path, self.to_json_string())

    @classmethod
    def from_json_file(cls: type[T], path: str | os.PathLike) -> T:
        """Load a preset or a saved config. A preset may name another that it `extends` and hold only the fields
        that differ (`tokenizer.config_files`); the loaded config holds them all."""
        return cls.from_dict(read_config_file(path))
