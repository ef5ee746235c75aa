"""Training state as data: what a run checkpoint holds besides `train_state.json`, in safetensors and JSON only.

A checkpoint must never be able to run code, so nothing here unpickles (accelerate's `save_state`/`load_state`
write `optimizer.bin`, `scheduler.bin` and `random_states_*.pkl` through pickle and are not used):

    model.safetensors, model_1.safetensors, ...        the unwrapped models' weights (main process)
    optimizer.safetensors, optimizer_1.safetensors, ... optimizer tensors; their param groups as JSON metadata
    scheduler.json, scheduler_1.json, ...               LR scheduler state (plain numbers)
    rng_state_<rank>.safetensors                        each process's torch/CUDA RNG, numpy and `random` states

`load_training_state` checks every tensor against the live objects (names, shapes) and raises CheckpointError naming
the file and what differs. `refuse_pickles` rejects a folder holding a pickle-format file, naming it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from .checkpoint import check_state_dict, load_tensors, save_tensors
from .errors import CheckpointError
from .json_config import write_text_atomic

# Files that torch.save / pickle write (accelerate names its own `.bin` and `.pkl`): never read from a run folder.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt")
_GROUPS_KEY = "param_groups"
_SCALARS_KEY = "state_scalars"


def indexed_name(stem: str, index: int, suffix: str) -> str:
    """`model.safetensors`, `model_1.safetensors`, ...: the n-th object of a kind, as accelerate names them."""
    return f"{stem}{'' if index == 0 else f'_{index}'}{suffix}"


def refuse_pickles(folder: Path) -> None:
    """CheckpointError naming every pickle-format file in `folder` (recursively): a run folder holds none."""
    found = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise CheckpointError(
            f"refusing to resume from {str(folder)!r}: it holds pickle-format files {found[:5]}"
            f"{' ...' if len(found) > 5 else ''}, which could run code when loaded. rvqaudio checkpoints are "
            "safetensors and JSON only; if these files are yours from an older run, restart from its weights "
            "(--init-from the run's final/ folder) in a new run folder")


def save_training_state(accelerator: Accelerator, folder: Path, models: Sequence[torch.nn.Module],
                        optimizers: Sequence[torch.optim.Optimizer], schedulers: Sequence) -> None:
    """Write the models' weights, optimizer and scheduler states (main process) and every process's RNG states
    into `folder`, which must exist. The caller swaps the folder in atomically (`run_folder.save_run_checkpoint`)."""
    folder = Path(folder)
    if accelerator.is_main_process:
        for i, model in enumerate(models):
            weights = accelerator.unwrap_model(model).state_dict()
            # clone: tied weights share storage, which safetensors refuses; each name is stored on its own
            save_tensors(folder / indexed_name("model", i, ".safetensors"),
                         {k: v.detach().clone() for k, v in weights.items()})
        for i, optimizer in enumerate(optimizers):
            tensors, metadata = _optimizer_to_data(optimizer.state_dict())
            save_tensors(folder / indexed_name("optimizer", i, ".safetensors"), tensors, metadata=metadata)
        for i, scheduler in enumerate(schedulers):
            write_text_atomic(folder / indexed_name("scheduler", i, ".json"),
                              json.dumps(scheduler.state_dict(), indent=1) + "\n")
    tensors, metadata = _rng_to_data()
    save_tensors(folder / f"rng_state_{accelerator.process_index}.safetensors", tensors, metadata=metadata)


def load_training_state(accelerator: Accelerator, folder: Path, models: Sequence[torch.nn.Module],
                        optimizers: Sequence[torch.optim.Optimizer], schedulers: Sequence) -> None:
    """Read back what `save_training_state` wrote into the live objects, on every process. CheckpointError
    names the file when one is missing, unreadable, or does not match the objects (tensor names and shapes)."""
    folder = Path(folder)
    refuse_pickles(folder)
    for i, model in enumerate(models):
        path = folder / indexed_name("model", i, ".safetensors")
        state, _ = _read(path)
        target = accelerator.unwrap_model(model)
        expected = target.state_dict()
        check_state_dict(expected, state, repr(str(path)))
        target.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    for i, optimizer in enumerate(optimizers):
        path = folder / indexed_name("optimizer", i, ".safetensors")
        tensors, metadata = _read(path)
        try:
            optimizer.load_state_dict(_optimizer_from_data(tensors, metadata, optimizer.state_dict()))
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{str(path)!r} does not hold this run's optimizer state: {e}") from e
    for i, scheduler in enumerate(schedulers):
        path = folder / indexed_name("scheduler", i, ".json")
        if not path.is_file():
            raise CheckpointError(f"the checkpoint {str(folder)!r} has no {path.name}")
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{str(path)!r} is not valid JSON: {e}") from e
        current = scheduler.state_dict()
        if not isinstance(saved, dict) or set(saved) != set(current):
            raise CheckpointError(f"{str(path)!r} does not hold this run's scheduler state (fields "
                                  f"{sorted(saved) if isinstance(saved, dict) else type(saved).__name__}, "
                                  f"expected {sorted(current)})")
        scheduler.load_state_dict(saved)
    path = folder / f"rng_state_{accelerator.process_index}.safetensors"
    _rng_from_data(*_read(path), path)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"the checkpoint {str(path.parent)!r} has no {path.name}; it is incomplete or was "
                              "written by an older version: restart from its weights in a new run folder")
    return load_tensors(path)


# ---- optimizer: {"state": {index: {name: tensor | number}}, "param_groups": [...]} <-> tensors + JSON ----------

def _optimizer_to_data(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    groups = json.dumps(state_dict["param_groups"])
    return tensors, {_GROUPS_KEY: groups, _SCALARS_KEY: json.dumps(scalars)}


def _optimizer_from_data(tensors: dict[str, torch.Tensor], metadata: dict[str, str], current: dict) -> dict:
    groups = json.loads(metadata[_GROUPS_KEY])
    if len(groups) != len(current["param_groups"]):
        raise ValueError(f"{len(groups)} parameter groups, this run has {len(current['param_groups'])}")
    for saved, live in zip(groups, current["param_groups"]):
        if len(saved["params"]) != len(live["params"]):
            raise ValueError(f"a parameter group of {len(saved['params'])} tensors, this run's has "
                             f"{len(live['params'])}")
        for key, value in live.items():  # JSON has no tuples (e.g. AdamW's betas)
            if isinstance(value, tuple) and isinstance(saved.get(key), list):
                saved[key] = tuple(saved[key])
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    for key, value in json.loads(metadata.get(_SCALARS_KEY, "{}")).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    known = {i for group in groups for i in group["params"]}
    if not set(state) <= known:
        raise ValueError(f"state for parameters {sorted(set(state) - known)[:5]} that no group holds")
    return {"state": state, "param_groups": groups}


# ---- RNG: torch (CPU and CUDA), numpy's global generator, Python's random --------------------------------------

def _rng_to_data() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.int32).copy())
    version, internal, py_gauss = random.getstate()
    metadata = {"numpy": json.dumps([kind, int(pos), int(has_gauss), float(gauss)]),
                "python": json.dumps([version, list(internal), py_gauss])}
    return tensors, metadata


def _rng_from_data(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    try:
        torch.set_rng_state(tensors["torch"])
        cuda = sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
        kind, pos, has_gauss, gauss = json.loads(metadata["numpy"])
        np.random.set_state((kind, tensors["numpy"].numpy().view(np.uint32), pos, has_gauss, gauss))
        version, internal, py_gauss = json.loads(metadata["python"])
        random.setstate((version, tuple(internal), py_gauss))
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{str(path)!r} does not hold RNG states as rvqaudio writes them: {e}") from e
