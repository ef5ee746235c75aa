"""The codec on the Hugging Face Hub: hub repo ids resolved to local folders, and the codec's model card.

`RVQCodec` takes the hub conventions from `huggingface_hub.ModelHubMixin` (`push_to_hub`, a model card with the
library's name and tags, `from_pretrained` of a repo id). The mixin's own loading and saving are not used: they
would write a second config form and, for folders without safetensors, fall back to pickled weights. Instead a
repo id is downloaded (or found in the hub cache) as a folder with `snapshot_download`, and that folder is read
exactly as a local one: `config.json` + `model.safetensors` (+ decoder variants), checked tensor by tensor.

    codec = RVQCodec.from_pretrained("org/rvqaudio-codec")            # the hub, or its cache when offline
    codec = RVQCodec.from_pretrained("checkpoints/codec")             # a local folder, as always
    codec.push_to_hub("org/my-codec")                                 # needs `huggingface-cli login`
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME
from .errors import CheckpointError

# What a codec repo holds and a download fetches: the checkpoint, its decoder variants and the card.
REPO_FILES = (CONFIG_NAME, WEIGHTS_NAME, "decoder.*.safetensors", "decoder.*.json", "README.md")
CARD_NAME = "README.md"
LIBRARY_NAME = "rvqaudio"
TAGS = ["audio", "audio-tokenizer", "neural-codec", "residual-vector-quantization"]
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def resolve_folder(name_or_path: str | os.PathLike, *, revision: str | None = None,
                   cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                   local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """The local folder of a codec: `name_or_path` itself when it is a folder, else the snapshot of hub repo
    `name_or_path` ("org/name") at `revision`, downloaded into (or, offline or with `local_files_only`, found in)
    the hub cache. Raises CheckpointError naming the path or repo when neither exists."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    text = str(name_or_path)
    if not _REPO_ID.fullmatch(text) or path.exists():
        raise CheckpointError(f"checkpoint folder {text!r} does not exist (nor is it a hub repo id 'org/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(text, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=local_files_only, token=token, allow_patterns=list(REPO_FILES))
    except LocalEntryNotFoundError as e:
        raise CheckpointError(f"checkpoint folder {text!r} does not exist, and hub repo {text!r} is not in the hub "
                              f"cache{'' if cache_dir is None else f' {str(cache_dir)!r}'} and cannot be downloaded "
                              f"here (offline or local_files_only): {e}") from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint folder {text!r} does not exist, and hub repo {text!r} could not be "
                              f"read: {e}") from e
    return Path(folder)


def model_card(codec) -> str:
    """A model card (README.md with the hub's metadata header) stating what the codec is and how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    config = codec.config
    data = ModelCardData(library_name=LIBRARY_NAME, tags=TAGS, license="mit")
    body = (f"# {config.name}\n\nAn RVQ neural audio codec for [rvqaudio](https://pypi.org/project/rvqaudio/): "
            f"waveform FloatTensor[B, {config.channels}, N] at {config.sample_rate} Hz <-> codes LongTensor[B, "
            f"{config.num_codebooks}, T] at {config.frame_rate:g} Hz ({config.num_codebooks} codebooks of "
            f"{config.codebook_size}, {config.bitrate():g} kbps).\n\n"
            f"```python\nfrom tokenizer import RVQCodec\ncodec = RVQCodec.from_pretrained(\"<this repo>\")\n"
            f"codes = codec.encode(wav, sample_rate)\nwav = codec.decode(codes)\n```\n\n"
            f"Code space fingerprint: `{codec.fingerprint}`.\n")
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))
