"""The mean of decoders that share one code space: a "model soup" (Wortsman et al., 2022) of decoder fine-tunes.

Runs that fine-tune one codec's decoder with frozen codes (`training.freeze_codes`), from the same start or one
after another, end near each other in weight space; the uniform mean of their decoders often decodes better than
any one of them, as averaging weights along a trajectory does (EMA, SWA). The encoder and codebooks, and so the
codes, must be the same in every folder: only decoder tensors are averaged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .errors import CheckpointError
from .model import RVQCodec, split_decoder

# Config fields that may differ between the codecs averaged: how each was trained, and its name.
_FREE_FIELDS = ("training", "name")


def average_decoders(folders: Sequence[str | os.PathLike]) -> RVQCodec:
    """A codec with the first folder's config, encoder and codebooks, and the uniform mean of the folders' decoders.

    `folders` are codec folders (`save_pretrained` output, e.g. `train-codec` runs' `final`), at least two. Their
    configs must agree apart from `training` and `name`, and their encoder and quantizer tensors must be equal (the
    same codes), else CheckpointError names what differs. Means are taken in float64 and stored in the model's
    dtype. Decoder variants stored in the folders are not read.
    """
    folders = list(folders)
    if len(folders) < 2:
        raise ValueError(f"average_decoders needs at least two codec folders, got {len(folders)}: {folders}")
    codecs = [RVQCodec.from_pretrained(f) for f in folders]
    first = codecs[0]
    mine = {k: v for k, v in first.config.to_dict().items() if k not in _FREE_FIELDS}
    states = [c.state_dict() for c in codecs]
    for folder, codec, state in zip(folders[1:], codecs[1:], states[1:]):
        theirs = {k: v for k, v in codec.config.to_dict().items() if k not in _FREE_FIELDS}
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differ:
            raise CheckpointError(f"{str(folder)!r} is another codec than {str(folders[0])!r}: its config differs "
                                  f"in {differ} (only {list(_FREE_FIELDS)} may)")
        codes_side = sorted(k for k, v in split_decoder(state)[0].items() if not torch.equal(v, states[0][k]))
        if codes_side:
            raise CheckpointError(f"{str(folder)!r} makes other codes than {str(folders[0])!r}: its encoder or "
                                  f"codebooks differ ({codes_side[:5]}); only decoders that share their codes can "
                                  f"be averaged")
    mean = dict(states[0])
    for key, value in split_decoder(states[0])[1].items():
        if value.is_floating_point():
            mean[key] = (sum(s[key].double() for s in states) / len(states)).to(value.dtype)
    first.load_state_dict(mean)
    return first
