"""How `train_lm` and `finetune` train: `LMTrainingConfig` (validated, JSON round-trippable) and the LR schedule.

Presets: configs/lm_train_tiny.json, lm_train_base.json (the bundled LMs' first stage), lm_train_small.json; the later
stages of the bundled LMs extend lm_train_base.json with the fields they change. Load one with
`LMTrainingConfig.from_json_file`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lm import TextTokenizer
from tokenizer.json_config import JsonConfig

SCHEDULES = ("cosine", "linear", "constant")
SPEECH_CROPS = ("start", "random")


@dataclass
class LMTrainingConfig(JsonConfig):
    """How `train_lm` and `finetune` train (not part of the model). Presets: configs/lm_train_*.json.

    batch_size: items per optimizer step over ALL processes and accumulation steps (the global batch); it must
        be divisible by processes * grad_accum.
    grad_accum: forward/backward passes per optimizer step on each process.
    lr, betas, weight_decay: AdamW (weight decay on matrices only, not on norms). clip: max gradient L2 norm.
    warmup_steps: linear warm-up from lr / warmup_steps; then `schedule` ("cosine", "linear" or "constant")
        decays to min_lr_ratio * lr at max_steps.
    max_steps: optimizer steps of the run; the schedule spans them.
    max_frames: items longer than this many frames are cropped to it (None: the model's max_audio_frames, so
        only items the model cannot hold are cropped). Music is cropped to a random window (its caption holds
        for any part of it).
    speech_crop: where speech longer than max_frames is cropped: "start" (its first max_frames frames, so the
        audio begins where its transcript does, as TTS needs) or "random" (a random window, like music: its
        audio then starts mid-sentence while the text starts at the beginning; the first 1800 steps of the
        bundled LM trained so).
    eval_every: steps between evaluations of the held-out loss (and at the end). eval_fraction: share of the
        training rows held out when the data has no validation/test split. max_eval_items: at most this many
        items are evaluated (and held out).
    save_every, log_every: steps between checkpoints / log records (both also at the end).
    mixed_precision: "no", "bf16" or "fp16". bf16 autocasts the forward passes on a GPU or a CPU (weights,
        optimizer state and the loss stay float32); fp16 trains with a gradient scaler and needs a CUDA device (a
        ValueError when the run starts otherwise).
    gradient_checkpointing: recompute each transformer block in the backward pass instead of keeping its
        activations (transformers' `activation_checkpointing_enable`): activation memory of one block, not of all, for
        about a third more compute per step. The gradients are the same (tested).
    text_vocab_size: upper bound of the text tokenizer's vocabulary that `train_lm` trains.
    lora_rank, lora_alpha: LoRA adapters of `finetune(lora=True)`.
    phoneme_track: give the LM an aligned phoneme track for speech (see `lm.model`): `finetune` adds one to an LM
        that has none (its other weights kept, the track starting from zero), `train_lm` builds the LM with one.
        The track needs espeak-ng.
    phoneme_input_dropout: share of the audio steps fed to speech with a phoneme track that are hidden (made
        empty) in training, so that the LM reads the track rather than continuing its own audio (see
        `LMObjective`). 0 turns it off.
    phoneme_alignment: lay each speech row's phonemes where a forced alignment puts them (`pipelines.alignment`,
        fitted on the training rows when the run starts and kept in the run folder) instead of spreading them
        evenly, and record each voice's mean frames per sound (`config.phoneme_durations`), by which generation
        lays out a sentence. Needs phoneme_track.
    beat_track: give the LM a beat track for music (see `lm.model`): the tempo each caption names, laid along its
        frames as beat phase. `finetune` adds one to an LM that has none (its other weights kept, the track
        starting from zero), `train_lm` builds the LM with one.
    beat_dropout: share of the training items with a tempo whose beat track is left out (their caption kept),
        so that the LM also composes for captions that name no tempo.
    """

    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    clip: float = 1.0
    warmup_steps: int = 200
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    max_steps: int = 10_000
    max_frames: int | None = None
    speech_crop: str = "start"
    eval_every: int = 500
    eval_fraction: float = 0.02
    max_eval_items: int = 256
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    text_vocab_size: int = 1024
    lora_rank: int = 16
    lora_alpha: float = 32.0
    phoneme_track: bool = False
    phoneme_input_dropout: float = 0.0
    phoneme_alignment: bool = False
    beat_track: bool = False
    beat_dropout: float = 0.0

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"training.{name} must be an integer >= {low}, got {value!r}")

        def number(name: str, low: float, high: float, low_open: bool) -> None:
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if not ok or (value <= low if low_open else value < low) or value > high:
                bounds = f"{'(' if low_open else '['}{low}, {high}]"
                raise ValueError(f"training.{name} must be a number in {bounds}, got {value!r}")

        for name in ("batch_size", "grad_accum", "max_steps", "eval_every", "max_eval_items", "save_every",
                     "log_every", "lora_rank"):
            integer(name, 1)
        for name in ("warmup_steps", "seed"):
            integer(name, 0)
        integer("text_vocab_size", 4 + len(TextTokenizer.TASKS) + 256 + 1)
        if self.max_frames is not None:
            integer("max_frames", 1)
        number("lr", 0.0, 1.0, True)
        number("weight_decay", 0.0, math.inf, False)
        number("clip", 0.0, math.inf, True)
        number("min_lr_ratio", 0.0, 1.0, False)
        number("eval_fraction", 0.0, 0.5, False)
        number("lora_alpha", 0.0, math.inf, True)
        number("phoneme_input_dropout", 0.0, 0.9, False)
        number("beat_dropout", 0.0, 1.0, False)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"training.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in self.betas)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"training.schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        for name in ("phoneme_track", "phoneme_alignment", "beat_track", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"training.{name} must be true or false, got {getattr(self, name)!r}")
        if self.speech_crop not in SPEECH_CROPS:
            raise ValueError(f"training.speech_crop must be one of {list(SPEECH_CROPS)}, got {self.speech_crop!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"training.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")


def check_global_batch(tc: LMTrainingConfig, num_processes: int) -> None:
    """ValueError unless `tc.batch_size`, the global batch, splits evenly into `num_processes` x `tc.grad_accum`
    micro-batches; each process then runs batch_size / (num_processes x grad_accum) items per forward pass."""
    parts = num_processes * tc.grad_accum
    if tc.batch_size % parts:
        raise ValueError(f"training.batch_size={tc.batch_size} (the global batch) must be divisible by processes x "
                         f"grad_accum = {num_processes} x {tc.grad_accum}; use a multiple of {parts}, e.g. "
                         f"{max(parts, tc.batch_size // parts * parts)}, or launch a number of processes that "
                         "divides it")


def lr_factor(tc: LMTrainingConfig):
    """LR multiplier after `s` optimizer steps: linear warm-up, then `tc.schedule` down to min_lr_ratio at max_steps."""
    def factor(s: int) -> float:
        if s < tc.warmup_steps:
            return (s + 1) / tc.warmup_steps
        if tc.schedule == "constant":
            return 1.0
        progress = min(1.0, (s - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if tc.schedule == "cosine" else 1 - progress
        return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * shape
    return factor
