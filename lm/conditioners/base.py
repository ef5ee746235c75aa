"""What a frame-aligned condition ("track") of the LM is, and the registry that builds an LM's tracks.

A track conditioner turns raw inputs (transcripts, captions, tasks, frame counts) into a `Track` for a batch, and
is itself the `nn.Module` that turns that track into features FloatTensor[B, S, D] added to the audio steps:

    class Loudness(TrackConditioner):
        name = "loudness"

        def __init__(self, config):
            super().__init__(config)
            self.projection = nn.Linear(1, config.hidden_size, bias=False)  # starts at zero

        def forward(self, track, num_positions):
            ...  # (B, num_positions, D); zeros for rows without a condition

    register(Loudness)   # an LM whose config lists "loudness" in `tracks` gets one

The model holds its conditioners in an `nn.ModuleDict` keyed by name (`build_tracks`) and sums the features of the
tracks it is given; it knows nothing of what a track means. Position s of the audio predicts frame
`frame_offset + s`; a row without a condition (a dropped one, or the null condition of guidance) gets zero
features, which is what `Track.without` must give.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Track(Protocol):
    """One batch's condition laid along its frames (rows are the batch's items)."""

    @property
    def batch_size(self) -> int:
        """B, the rows of the track."""

    def without(self, drop: torch.Tensor) -> Track:
        """The same track with the rows where drop BoolTensor[B] is True emptied (features of zero there)."""


Tracks = Mapping[str, "Track | None"]  # the tracks of a batch by conditioner name; None: that track is not given


class TrackConditioner(nn.Module):
    """Builds one kind of `Track` and embeds it: `forward(track, num_positions)` -> FloatTensor[B, num_positions, D].

    Subclasses set `name` (the key in the model's `tracks` and in its state dict: `tracks.<name>.*`) and may name
    `projection`, a linear layer that starts at zero, so that a track added to a trained LM changes nothing until
    it has learnt something. `enabled` says whether an LM of a config has this track; by default, when its config
    lists the name in `tracks`.
    """

    name: ClassVar[str]
    # Flat state-dict names that LM folders use for this conditioner's tensors -> its own names (the bundled
    # LMs' folders use them); `rename_state` maps them.
    flat_names: ClassVar[dict[str, str]] = {}

    def __init__(self, config) -> None:
        super().__init__()

    @classmethod
    def enabled(cls, config) -> bool:
        return cls.name in (config.tracks or [])

    @classmethod
    def config_changes(cls, config, **options) -> dict:
        """The config fields that give an LM of `config` this track (see `AudioLM.with_track`)."""
        if options:
            raise ValueError(f"the {cls.name} track takes no options, got {sorted(options)}")
        return {"tracks": [*(config.tracks or []), cls.name]}

    def forward(self, track: Track, num_positions: int) -> torch.Tensor:
        raise NotImplementedError


_REGISTRY: dict[str, type[TrackConditioner]] = {}


def register(conditioner: type[TrackConditioner]) -> type[TrackConditioner]:
    """Make `conditioner` known by its name (usable as a class decorator). ValueError if another class has it."""
    name = getattr(conditioner, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a track conditioner needs a `name` that is an identifier, got {name!r}")
    if _REGISTRY.get(name, conditioner) is not conditioner:
        raise ValueError(f"a track conditioner named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = conditioner
    return conditioner


def unregister(name: str) -> None:
    """Forget the conditioner registered as `name` (nothing if there is none)."""
    _REGISTRY.pop(name, None)


def registered() -> dict[str, type[TrackConditioner]]:
    """The known track conditioners by name, in the order of registration (the order their features are summed)."""
    return dict(_REGISTRY)


def build_tracks(config) -> nn.ModuleDict:
    """The track conditioners an LM of `config` has, keyed by name. ValueError for a name in `config.tracks` that no
    conditioner is registered for."""
    unknown = sorted(set(config.tracks or []) - set(_REGISTRY))
    if unknown:
        raise ValueError(f"the LM config names tracks {unknown} that no conditioner is registered for (known: "
                         f"{sorted(_REGISTRY)}); register one with lm.conditioners.register")
    built = nn.ModuleDict({name: cls(config) for name, cls in _REGISTRY.items() if cls.enabled(config)})
    off = sorted(set(config.tracks or []) - set(built))
    if off:
        raise ValueError(f"the LM config lists tracks {off} that its other fields turn off; set them with "
                         f"{[_REGISTRY[name].config_changes(config) for name in off]} instead")
    return built


def rename_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with each conditioner's flat names (`flat_names`, e.g. `phoneme_conv.weight`) given as the
    model names them (`tracks.phoneme.conv.weight`); other names are kept."""
    flat = {old: f"tracks.{name}.{new}" for name, cls in _REGISTRY.items() for old, new in cls.flat_names.items()}
    renamed = {}
    for key, value in state.items():
        head, dot, rest = key.partition(".")
        renamed[flat[head] + dot + rest if head in flat else key] = value
    return renamed
