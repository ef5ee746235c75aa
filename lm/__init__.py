"""The language model over codec codes: text (a transcript or a caption) -> codes LongTensor[B, K, T].

    from lm import AudioLM, GenerationConfig
    lm = AudioLM.from_pretrained("checkpoints/lm", codec=codec)
    codes = lm.generate(["a calm piano melody"], GenerationConfig(duration=5.0, task="music", seed=0))

Conditioning besides the text comes as frame-aligned tracks, each built and embedded by its conditioner
(`lm.conditioners`): `lm.generate(texts, config, tracks={"beat": lm.conditioner("beat").track(texts, "music")})`.

It depends only on the narrow codec interface in `lm.codec_interface`.
"""

from .checkpoint import CheckpointError
from .codec_interface import AudioTokenizer
from .conditioners import BeatTrack, PhonemeTrack, TextConditioner, Track, TrackConditioner, register, unregister
from .config import AudioLMConfig
from .decoding import PAD_FRAME, split_items
from .generation import AudioLM
from .model import AudioLMModel, AudioLMOutput
from .objective import LMObjective
from .patterns import (
    CoarseFirstPattern,
    CodebookPattern,
    DelayPattern,
    FlattenPattern,
    ParallelPattern,
    build_pattern,
)
from .sampling import GenerationConfig, sample_logits
from .text import TextTokenizer

__all__ = [
    "AudioLM",
    "AudioLMConfig",
    "AudioLMModel",
    "AudioLMOutput",
    "AudioTokenizer",
    "CodebookPattern",
    "CoarseFirstPattern",
    "DelayPattern",
    "FlattenPattern",
    "GenerationConfig",
    "LMObjective",
    "PAD_FRAME",
    "ParallelPattern",
    "BeatTrack",
    "CheckpointError",
    "PhonemeTrack",
    "TextConditioner",
    "TextTokenizer",
    "Track",
    "TrackConditioner",
    "build_pattern",
    "register",
    "sample_logits",
    "split_items",
    "unregister",
]
