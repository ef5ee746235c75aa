"""Reading an LM folder (`config.json` + `model.safetensors` + `text_tokenizer.model`) strictly.

transformers' `from_pretrained` would initialise missing layers at random, speak of `ignore_mismatched_sizes`, or
fall back to `pytorch_model.bin` through `torch.load`. Here weights come from safetensors only, and every tensor the
config's model has must be in the file with its shape, and nothing else: otherwise `CheckpointError` names the
folder and the tensors.

Track conditioners' tensors live under `tracks.<name>.` (`lm.conditioners`). LM folders may name them flat, as
the bundled LMs do; `lm.conditioners.rename_state` reads those names as the model's:

    phoneme_embedding.weight   -> tracks.phoneme.embedding.weight
    phoneme_conv.weight, .bias -> tracks.phoneme.conv.weight, .bias
    phoneme_projection.weight  -> tracks.phoneme.projection.weight
    beat_projection.weight     -> tracks.beat.projection.weight

Saving writes the model's names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .conditioners import rename_state
from .config import AudioLMConfig
from .model import AudioLMModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"  # a sharded checkpoint (transformers' layout)
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class CheckpointError(ValueError):
    """An LM folder is missing, incomplete, unsafe, or its weights do not match its config."""


def load_config(directory: Path) -> AudioLMConfig:
    """The folder's `config.json` as an AudioLMConfig; CheckpointError naming the folder when it cannot be."""
    if not directory.is_dir():
        raise CheckpointError(f"LM folder {str(directory)!r} does not exist")
    if not (directory / CONFIG_NAME).is_file():
        raise CheckpointError(f"no LM checkpoint at {str(directory)!r} ({CONFIG_NAME} is missing); an LM folder holds "
                              f"{CONFIG_NAME}, {WEIGHTS_NAME} and text_tokenizer.model (AudioLM.save_pretrained)")
    try:
        return AudioLMConfig.from_pretrained(directory)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{str(directory / CONFIG_NAME)!r} is not a valid LM config: {e}") from e


def load_model(directory: Path, config: AudioLMConfig) -> AudioLMModel:
    """An AudioLMModel built from `config` (float32) with every weight read from the folder's safetensors."""
    state = rename_state(_read_weights(directory))
    model = AudioLMModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)}, config {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{what} {names[:5]}{' ...' if len(names) > 5 else ''}" for what, names in
                (("missing tensors", missing), ("unexpected tensors", unexpected), ("shape mismatches", shapes))
                if names]
    if problems:
        raise CheckpointError(f"the weights in {str(directory)!r} do not match its {CONFIG_NAME} "
                              f"({config.num_hidden_layers} layers, hidden size {config.hidden_size}): "
                              + "; ".join(problems))
    bad = [k for k, v in state.items() if not (v.is_floating_point() and expected[k].is_floating_point())
           and v.dtype != expected[k].dtype]
    if bad:
        raise CheckpointError(f"the weights in {str(directory)!r} have unexpected dtypes for {bad[:5]}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{str(index)!r} is not a safetensors index: {e}") from e
        if any(Path(name).name != name or not name.endswith(".safetensors") for name in files):
            raise CheckpointError(f"{str(index)!r} names files other than .safetensors beside it: {files[:5]}")
        paths = [directory / name for name in files]
    else:
        paths = [directory / WEIGHTS_NAME]
    for path in paths:
        if not path.is_file():
            unsafe = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in UNSAFE_SUFFIXES)
            hint = (f"; it holds {unsafe}, which rvqaudio never loads (pickle formats can run code): convert them "
                    "to safetensors" if unsafe else "")
            raise CheckpointError(f"LM folder {str(directory)!r} has no {path.name}{hint}")
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    state[key] = f.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {e}") from e
    return state
