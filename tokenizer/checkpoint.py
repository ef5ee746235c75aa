"""Checkpoint folders: `config.json` + `model.safetensors`, written atomically, never pickled.

A codec folder may also hold decoder variants, `decoder.<name>.safetensors` and `decoder.<name>.json`: other decoder
weights for the same codes (e.g. a decoder trained on speech alone) and the config they are built from, which
`RVQCodec.from_pretrained(folder, variant=name)` reads instead of the decoder of `model.safetensors`
(`tokenizer.variants`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VARIANT_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def variant_file(directory: str | os.PathLike, variant: str) -> Path:
    """The path of decoder variant `variant` in a codec folder: `decoder.<variant>.safetensors`."""
    if not isinstance(variant, str) or not VARIANT_PATTERN.fullmatch(variant):
        raise CheckpointError(f"a decoder variant's name is letters, digits, '-' and '_' (e.g. 'speech'); "
                              f"got {variant!r}")
    return Path(directory) / f"decoder.{variant}.safetensors"


def variant_config_file(directory: str | os.PathLike, variant: str) -> Path:
    """The path of decoder variant `variant`'s config in a codec folder: `decoder.<variant>.json`."""
    return variant_file(directory, variant).with_suffix(".json")


def list_variants(directory: str | os.PathLike) -> list[str]:
    """The names of the decoder variants a codec folder holds, sorted (empty when none, or no such folder)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = (path.name[len("decoder."):-len(".safetensors")] for path in directory.glob("decoder.*.safetensors"))
    return sorted(name for name in names if VARIANT_PATTERN.fullmatch(name))


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], dtype: torch.dtype | None = None,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write one safetensors file atomically (a temporary sibling renamed over it), casting floating tensors to
    `dtype` when given; `metadata` (strings) goes into its header beside `format`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(_cast(tensors, dtype), str(tmp), metadata={**(metadata or {}), "format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read one safetensors file: its tensors and its header's metadata. CheckpointError naming it when it is
    missing or unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {e}") from e


def _cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
            for k, v in state_dict.items()}


@contextlib.contextmanager
def atomic_folder(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling of `directory` to fill; when the block succeeds it replaces
    `directory`, when it fails it is deleted and `directory` is left as it was."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
        yield tmp
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(directory: str | os.PathLike, config_json: str, state_dict: dict[str, torch.Tensor],
                    dtype: torch.dtype | None = None, extra_files: dict[str, str] | None = None) -> Path:
    """Write `directory/{config.json, model.safetensors}` so that a failure leaves the old folder intact.

    Everything is written into a temporary sibling folder which then replaces `directory`.
    Floating-point tensors are cast to `dtype` when given (e.g. torch.float16 for shipping).
    """
    tensors = _cast(state_dict, dtype)
    with atomic_folder(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(config_json)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
    return Path(directory)


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a checkpoint folder: (config as a dict, state dict). Errors name the folder and the missing part."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {str(directory)!r} does not exist")
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint folder {str(directory)!r} has no {path.name}; a checkpoint holds "
                f"{CONFIG_NAME} and {WEIGHTS_NAME} (written by save_pretrained)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON: {e}") from e
    return config, load_tensors(weights_path)[0]


def check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError naming missing/unexpected keys and shape mismatches between two state dicts."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(found[k].shape)}, model {tuple(v.shape)}"
              for k, v in expected.items() if k in found and found[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        problems.append(f"shape mismatches {shapes[:5]}{' ...' if len(shapes) > 5 else ''}")
    if problems:
        raise CheckpointError(f"weights in {where} do not match its config.json: " + "; ".join(problems))
