"""Fit and measure a codec folder's `DecoderChoice` (which decoder decodes given codes) on labelled datasets.

    rvqaudio fit-decoder-choice --codec DIR --speech data/speech data/real_speech --music data/music data/real_music

Each dataset's "train" split gives windows of codes (the clips encoded by the codec, cut into windows of
`window_seconds`) to fit on, each clip first brought to one of `FIT_LEVELS` in turn (as recorded, quiet, loud,
clipped) so that the choice holds for files at any level; its "test" split measures, as recorded, per dataset, the
share of windows and of whole clips whose choice is right. The choice and those figures are written into the codec
folder (`decoder_choice.json` + `.safetensors`), after which `rvqaudio decode` picks the decoder itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tokenizer import RVQCodec
from tokenizer.audio import resample, to_channels
from tokenizer.decoder_choice import DecoderChoice
from tokenizer.checkpoint import list_variants

from .evaluation.data import describe, iter_audio, load_split
from .evaluation.input_level import InputLevel

# The levels train clips are fitted at, one per clip in turn (`benchmarks/decoder_choice_levels.py` measures these).
FIT_LEVELS = (InputLevel(), InputLevel(-30.0), InputLevel(-20.0), InputLevel(-10.0), InputLevel(-20.0, 12.0))


def _windows(codec: RVQCodec, data: str | os.PathLike, split: str, max_clips: int, clip_seconds: float,
             window_frames: int, levels: Sequence[InputLevel] = (InputLevel(),)
             ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(windows LongTensor[K, window_frames] (a shorter clip is one window of its own length), each clip's codes).
    The i-th clip kept is encoded at `levels[i % len(levels)]`."""
    windows, clips = [], []
    limit = round(clip_seconds * codec.sample_rate)
    for wav, sr, _ in iter_audio(load_split(data, split), max_clips):
        audio = resample(to_channels(wav, codec.channels), sr, codec.sample_rate)[:, :limit]
        if audio.shape[-1] < codec.hop_length:
            continue
        audio = levels[len(clips) % len(levels)].apply(audio)[0]
        with torch.no_grad():
            codes = codec.encode(audio[None])[0]  # (K, T)
        clips.append(codes)
        T = codes.shape[1]
        windows += [codes[:, s:s + window_frames] for s in range(0, max(T - window_frames, 0) + 1, window_frames)]
    return windows, clips


def fit_decoder_choice(codec: str | os.PathLike, speech: Sequence[str | os.PathLike],
                       music: Sequence[str | os.PathLike], speech_variant: str = "speech",
                       window_seconds: float = 3.0, max_clips: int = 600, clip_seconds: float = 12.0,
                       levels: Sequence[InputLevel] = FIT_LEVELS, save: bool = True) -> dict[str, Any]:
    """Fit the decoder choice of the codec folder `codec` on the train splits of `speech` and `music` datasets,
    measure it on their test splits, and (with `save`) write it into the folder. Returns the measurements:
    `{"test": {dataset: {"label", "windows", "window_accuracy", "clips", "clip_accuracy"}}, "fitted_on": ...}`.

    Clips are encoded up to `clip_seconds` (at most `max_clips` per dataset and split) and cut into windows of
    `window_seconds`; train clips at `levels` in turn, test clips as recorded. ValueError when the folder has no
    `speech_variant`, a list is empty, or `levels` is.
    """
    if not levels:
        raise ValueError("give at least one input level to fit at (InputLevel() keeps clips as recorded)")
    directory = Path(codec)
    if speech_variant not in list_variants(directory):
        raise ValueError(f"the codec folder {str(directory)!r} has no decoder variant {speech_variant!r} to choose "
                         f"(its variants: {list_variants(directory)})")
    if not speech or not music:
        raise ValueError("give at least one speech and one music dataset")
    model = RVQCodec.from_pretrained(directory).float().eval()
    window_frames = max(1, round(window_seconds * model.frame_rate))
    labelled = [(d, "speech") for d in speech] + [(d, "music") for d in music]
    train = {"speech": [], "music": []}
    fitted_on = {}
    for data, label in labelled:
        windows, _ = _windows(model, data, "train", max_clips, clip_seconds, window_frames, levels)
        train[label] += windows
        fitted_on[describe(data)] = {"label": label, "windows": len(windows)}
    choice = DecoderChoice.fit(train["speech"], train["music"], model.codebook_size, speech_variant)
    test = {}
    for data, label in labelled:
        windows, clips = _windows(model, data, "test", max_clips, clip_seconds, window_frames)

        def right(items: list[torch.Tensor]) -> list[bool]:  # each item [K, T] decoded by its label's decoder?
            return [(choice.choose(c.unsqueeze(0))[0] == speech_variant) == (label == "speech") for c in items]

        test[describe(data)] = {"label": label, "windows": len(windows), "window_accuracy": _share(right(windows)),
                                "clips": len(clips), "clip_accuracy": _share(right(clips))}
    choice.info = {"window_seconds": window_seconds, "levels": [level.name for level in levels],
                   "fitted_on": fitted_on, "test": test}
    if save:
        choice.save(directory)
    return {"fitted_on": fitted_on, "test": test, "window_seconds": window_seconds, "levels": choice.info["levels"]}


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None
