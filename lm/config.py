"""Typed, validated configuration of the audio LM, a `transformers.PreTrainedConfig` (saved as config.json).

The architecture fields come from a preset in `configs/`; the codec fields (`num_codebooks`, `codebook_size`,
`frame_rate`, `sample_rate`, `codec_fingerprint`) and the text fields (`text_vocab_size`,
`null_condition_ids`) are filled from the codec and the text tokenizer by `AudioLM.from_config`. A preset may
set a codec field; it then has to match the codec.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig

from tokenizer.config_files import read_config_file  # the JSON reading only (stdlib), shared with the codec's configs

from .codec_interface import AudioTokenizer, same_code_space
from .patterns import PATTERNS, CodebookPattern, build_pattern

# Special tokens of each codebook's input vocabulary, after the codec's `codebook_size` real codes.
EMPTY_OFFSET = 0  # a slot the pattern leaves empty; also the slots of the start step
EOS_OFFSET = 1  # end of audio: every codebook of the frame after the last one
PAD_OFFSET = 2  # past an item's end in a padded batch (never attended by real steps, never a target)
NUM_SPECIAL_CODES = 3

CODEC_FIELDS = ("num_codebooks", "codebook_size", "frame_rate", "sample_rate", "codec_fingerprint")


class AudioLMConfig(PreTrainedConfig):
    """Decoder-only transformer over [text prefix | audio steps].

    Units: `frame_rate` in Hz (frames of codes per second), `sample_rate` in Hz, lengths in tokens / frames.
    `max_text_tokens` bounds the text prefix (task tag and eos included); `max_audio_frames` bounds the audio
    (prompt plus continuation). Together they fix the position range the model is trained for.
    """

    model_type = "rvqaudio_lm"

    # Transformer.
    hidden_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    initializer_range: float = 0.02
    # Sequence.
    pattern: str = "delay"
    max_text_tokens: int = 128
    max_audio_frames: int = 1500
    # Training: probability of replacing an item's text by the null condition (for classifier-free guidance).
    condition_dropout: float = 0.1
    # Aligned phoneme track (speech, `lm.conditioners.phonemes`): 0 turns it off, else the phoneme vocabulary
    # (`lm.conditioners.phonemizer.VOCAB_SIZE`), and the width in phonemes of the convolution that gives each frame
    # its neighbours (odd).
    phoneme_vocab_size: int = 0
    phoneme_kernel: int = 15
    # Beat track (music, `lm.conditioners.beats`): each audio position adds features of the requested tempo's beat
    # phase at its frame; False turns it off.
    beat_track: bool = False
    # Further tracks by the names their conditioners are registered under (`lm.conditioners.register`).
    tracks: list[str] | None = None
    # Text side, filled from the TextTokenizer.
    text_vocab_size: int | None = None
    null_condition_ids: list[int] | None = None  # text ids kept in the null condition (task tags, eos)
    # Codec side, filled from the AudioTokenizer.
    num_codebooks: int | None = None
    codebook_size: int | None = None
    frame_rate: float | None = None
    sample_rate: int | None = None
    codec_fingerprint: str | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self._validate()

    def _validate(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_text_tokens", "max_audio_frames"):
            positive_int(name)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = hidden_size / num_attention_heads = {self.head_dim} must be even for "
                             "rotary positions")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown codebook pattern {self.pattern!r}; known patterns are {sorted(PATTERNS)}")
        if not (self.rope_theta > 0 and self.norm_eps > 0 and self.initializer_range > 0):
            raise ValueError(f"rope_theta, norm_eps and initializer_range must be > 0, got {self.rope_theta!r}, "
                             f"{self.norm_eps!r}, {self.initializer_range!r}")
        for name in ("dropout", "condition_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if isinstance(self.phoneme_vocab_size, bool) or not isinstance(self.phoneme_vocab_size, int) or \
                self.phoneme_vocab_size < 0 or self.phoneme_vocab_size == 1:
            raise ValueError(f"phoneme_vocab_size must be 0 (no phoneme track) or an integer >= 2, got "
                             f"{self.phoneme_vocab_size!r}")
        positive_int("phoneme_kernel")
        if not isinstance(self.beat_track, bool):
            raise ValueError(f"beat_track must be true or false, got {self.beat_track!r}")
        if self.tracks is not None:
            if not isinstance(self.tracks, (list, tuple)) or not all(isinstance(t, str) for t in self.tracks) \
                    or len(set(self.tracks)) != len(self.tracks):
                raise ValueError(f"tracks must be a list of distinct track names, got {self.tracks!r}")
            self.tracks = list(self.tracks)
        if self.phoneme_kernel % 2 == 0:
            raise ValueError(f"phoneme_kernel must be odd (centred on each frame's phoneme), got {self.phoneme_kernel}")
        if self.text_vocab_size is not None:
            positive_int("text_vocab_size")
        if self.null_condition_ids is not None:
            self.null_condition_ids = [int(i) for i in self.null_condition_ids]
            if self.text_vocab_size is not None and not all(0 <= i < self.text_vocab_size for i in self.null_condition_ids):
                raise ValueError(f"null_condition_ids {self.null_condition_ids} must lie in "
                                 f"[0, text_vocab_size={self.text_vocab_size})")
        if self.num_codebooks is not None:
            positive_int("num_codebooks")
        if self.codebook_size is not None:
            positive_int("codebook_size")
        if self.frame_rate is not None and not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError(f"frame_rate must be a positive number of Hz, got {self.frame_rate!r}")
        if self.sample_rate is not None:
            positive_int("sample_rate")

    # -- derived values ------------------------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_bound(self) -> bool:
        """True once the codec and text fields are filled (a model can be built)."""
        return all(getattr(self, name) is not None for name in CODEC_FIELDS + ("text_vocab_size", "null_condition_ids"))

    def require_bound(self) -> None:
        if not self.is_bound:
            missing = [n for n in CODEC_FIELDS + ("text_vocab_size", "null_condition_ids") if getattr(self, n) is None]
            raise ValueError(f"AudioLMConfig has no {missing}: bind it to a codec and a text tokenizer with "
                             "AudioLM.from_config(config, text_tokenizer, codec)")

    @property
    def empty_id(self) -> int:
        """Input id of an empty slot (and of the start step), in every codebook."""
        return self.codebook_size + EMPTY_OFFSET

    @property
    def eos_id(self) -> int:
        """End-of-audio id in every codebook; also the last logit index."""
        return self.codebook_size + EOS_OFFSET

    @property
    def pad_id(self) -> int:
        """Input id of a step past an item's end in a padded batch."""
        return self.codebook_size + PAD_OFFSET

    @property
    def input_vocab_size(self) -> int:
        """Rows of each codebook's embedding: the codes plus empty, end-of-audio and pad."""
        return self.codebook_size + NUM_SPECIAL_CODES

    @property
    def num_logits(self) -> int:
        """Outputs of each codebook's head: the codes plus end-of-audio."""
        return self.codebook_size + 1

    def build_pattern(self) -> CodebookPattern:
        self.require_bound()
        return build_pattern(self.pattern, self.num_codebooks)

    @property
    def max_audio_steps(self) -> int:
        """Steps that lay out `max_audio_frames` frames plus the end-of-audio frame."""
        return self.build_pattern().num_steps(self.max_audio_frames + 1)

    @property
    def max_duration(self) -> float:
        """Seconds of audio that `max_audio_frames` covers."""
        self.require_bound()
        return self.max_audio_frames / self.frame_rate

    # -- the codec ---------------------------------------------------------------------------------------

    def codec_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CODEC_FIELDS}

    def check_codec(self, codec: AudioTokenizer) -> None:
        """ValueError naming both values if `codec` does not produce the codes this LM was built for."""
        theirs = codec_values_of(codec)
        for name in CODEC_FIELDS:
            ours = getattr(self, name)
            if ours is None:
                continue
            if name == "codec_fingerprint":
                same = same_code_space(ours, codec, "this LM's config")
            else:
                same = _same(ours, theirs[name])
            if not same:
                raise ValueError(
                    f"codec mismatch: the LM was built for {name}={ours!r}, the codec has {name}={theirs[name]!r}; "
                    "use the codec the LM was trained with (or train an LM for this codec)"
                )

    def bound_to(self, codec: AudioTokenizer, text_vocab_size: int, null_condition_ids: list[int]) -> AudioLMConfig:
        """A copy with the codec and text fields filled; fields the preset already set must agree."""
        self.check_codec(codec)
        if self.text_vocab_size is not None and self.text_vocab_size != text_vocab_size:
            raise ValueError(f"text mismatch: the config has text_vocab_size={self.text_vocab_size}, the text "
                             f"tokenizer has vocab_size={text_vocab_size}")
        bound = copy.deepcopy(self)
        for name, value in codec_values_of(codec).items():
            setattr(bound, name, value)
        bound.text_vocab_size = int(text_vocab_size)
        bound.null_condition_ids = [int(i) for i in null_condition_ids]
        bound._validate()
        return bound

    @classmethod
    def from_preset(cls, path: str | os.PathLike) -> AudioLMConfig:
        """Load a preset JSON file (e.g. configs/lm_small.json); unknown keys are an error, not ignored. A preset may
        name another that it `extends` and hold only the fields that differ (`tokenizer.config_files`)."""
        path = Path(path)
        data = read_config_file(path)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"model_type", "transformers_version", "architectures", "_comment"})
        if unknown:
            raise ValueError(f"LM config preset {str(path)!r} has unknown keys {unknown}")
        data.pop("_comment", None)
        return cls(**data)


def codec_values_of(codec: AudioTokenizer) -> dict[str, Any]:
    """The codec fields of an `AudioTokenizer`, keyed like the config."""
    if not isinstance(codec, AudioTokenizer):
        raise TypeError(f"codec must honour lm.codec_interface.AudioTokenizer, got {type(codec).__name__}")
    return {
        "num_codebooks": int(codec.num_codebooks),
        "codebook_size": int(codec.codebook_size),
        "frame_rate": float(codec.frame_rate),
        "sample_rate": int(codec.sample_rate),
        "codec_fingerprint": str(codec.fingerprint),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b
