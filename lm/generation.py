"""Sampling codes from the audio LM: per-call settings (`GenerationConfig`) and the decoding loop.

The loop runs the model one step at a time with a key/value cache. Each step it samples every slot the
pattern lays out for that step, then overwrites the slots whose value is already known ("forcing"):

    empty slot                          -> empty id
    a frame of the audio prompt         -> the prompt's code
    the end frame (one past the last)   -> end of audio

The audio ends when codebook 0 samples end of audio for frame t: the item is then t frames long, and the
layout of a (t + 1)-frame sequence (t frames plus the end frame, as in training) drives the rest of it. At the
requested duration, end of audio is forced. An item stops needing steps once all of its frames are complete.

With classifier-free guidance the conditional and the unconditional (null-condition) rows run as one batch of
2B, and the next step is sampled from uncond + guidance_scale * (cond - uncond). An aligned phoneme track, when
given, is part of the condition: the unconditional rows run without it.
"""

from __future__ import annotations

import copy
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_config, load_model
from .codec_interface import AudioTokenizer
from .config import AudioLMConfig
from .model import AudioLMModel, AudioLMOutput, BeatTrack, KVCache, PhonemeTrack
from .phonemes import VOCAB_SIZE as PHONEME_VOCAB_SIZE
from .phonemes import text_phoneme_ids
from .text import TextTokenizer, tempo_from_text
from .threads import step_threads, torch_threads

PAD_FRAME = -1  # value of the frames after an item's end in a batch of generated codes


@dataclass(frozen=True)
class GenerationConfig:
    """Settings of one `AudioLM.generate` / `AudioLM.stream` call (never stored on the model).

    duration: seconds of new audio to generate at most (the continuation, not counting an audio prompt);
        generation stops earlier for an item whose codebook 0 samples end of audio.
    temperature: > 0; divides the logits.
    top_k: keep the k most likely codes (None: all). top_k=1 is greedy decoding (argmax, no randomness).
    top_p: nucleus sampling, in (0, 1]; 1.0 keeps everything.
    guidance_scale: classifier-free guidance; 1.0 is plain conditional sampling (and skips the unconditional
        rows), 0.0 is unconditional, 3.0 is MusicGen's default.
    seed: seeds the torch.Generator that draws every sample, so the same seed, texts, prompt and settings give
        the same codes. None draws a fresh seed.
    task: the task tag put before the text ("speech" or "music" with the default text tokenizer; None: no tag).
    num_codebooks: return only the first k codebooks (None: all K). All K are still generated, because each
        step's input is the sum of all K codebooks' embeddings; k only trims the result.
    min_duration: seconds of new audio before end of audio may be sampled (0: any time; >= duration: always the
        whole duration, as MusicGen does).
    num_threads: CPU threads while a step computes (None: chosen for the step's size, `lm.threads`; one thread for
        the bundled LMs, which keeps generation fast beside other busy processes).
    """

    duration: float = 10.0
    temperature: float = 1.0
    top_k: int | None = 250
    top_p: float = 1.0
    guidance_scale: float = 3.0
    seed: int | None = None
    task: str | None = None
    num_codebooks: int | None = None
    min_duration: float = 0.0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            return float(value)

        if number("duration") <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration!r}")
        if number("temperature") <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}; for greedy decoding use top_k=1")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 (1 = greedy) or None, got {self.top_k!r}")
        if not 0.0 < number("top_p") <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}; 1.0 turns nucleus sampling off")
        if number("guidance_scale") < 0:
            raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {self.guidance_scale!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be an integer >= 0 or None, got {self.seed!r}")
        if self.task is not None and not isinstance(self.task, str):
            raise ValueError(f"task must be a str or None, got {self.task!r}")
        if self.num_codebooks is not None and (isinstance(self.num_codebooks, bool)
                                               or not isinstance(self.num_codebooks, int) or self.num_codebooks < 1):
            raise ValueError(f"num_codebooks must be an integer >= 1 or None, got {self.num_codebooks!r}")
        if number("min_duration") < 0:
            raise ValueError(f"min_duration must be >= 0 seconds, got {self.min_duration!r}")
        if self.num_threads is not None and (isinstance(self.num_threads, bool)
                                             or not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"num_threads must be an integer >= 1 or None (automatic), got {self.num_threads!r}")

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale != 1.0


def sample_logits(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator) -> torch.Tensor:
    """Draw one index per row of logits FloatTensor[N, V] (temperature, then top-k, then top-p) -> LongTensor[N].

    Entries at -inf are never drawn. top_k=1 is the argmax and draws nothing from the generator.
    """
    if config.top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely entries
        drop_sorted = before >= config.top_p  # keeps the smallest prefix reaching top_p (never empty)
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), -math.inf)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)


class Decoding:
    """The state of one generation: the cache, each item's layout and end, and the frames found so far.

    `run()` advances one step at a time and yields, after each, how many leading output frames are final for
    every item; `frames` holds them (prompt frames first, then the continuation; PAD_FRAME past an item's end).
    """

    def __init__(self, model: AudioLMModel, text_ids: torch.Tensor, text_mask: torch.Tensor,
                 prompt: torch.Tensor | None, new_frames: int, config: GenerationConfig,
                 phonemes: PhonemeTrack | None = None, min_frames: list[int] | None = None,
                 beats: BeatTrack | None = None) -> None:
        cfg = model.config
        self.model, self.config, self.pattern = model, config, model.pattern
        device = model.device
        B, K = text_ids.shape[0], cfg.num_codebooks
        self.batch_size, self.num_codebooks = B, K
        self.prompt_frames = 0 if prompt is None else prompt.shape[2]
        self.max_frames = self.prompt_frames + new_frames + 1  # + the end frame
        # End of audio may be sampled from the first step whose codebook-0 slot holds frame prompt + floor on (the
        # floor: config.min_duration, or the item's min_frames if more): derived once from the full-length layout,
        # which is every unfinished item's (an ended item samples nothing).
        floor = round(config.min_duration * cfg.frame_rate)
        floors = [min(new_frames, max(floor, extra)) for extra in (min_frames or [0] * B)]
        frame_of_step = self.pattern.layout(self.max_frames)[0]  # (num_steps,) codebook 0's frame, -1 where empty

        def first_end_step(floor: int) -> int:
            allowed = (frame_of_step >= self.prompt_frames + floor).nonzero()[:, 0]
            return 0 if not floor else int(allowed[0]) if len(allowed) else len(frame_of_step)

        self.first_end_steps = torch.tensor([first_end_step(f) for f in floors], device=device)  # (B,)
        self.text_ids, self.text_mask = text_ids.to(device), text_mask.to(device)
        self.prompt = None if prompt is None else prompt.to(device)
        self.phonemes, self.beats = phonemes, beats
        # Provisional length of each item (max_frames) until codebook 0 says where it ends.
        self.lengths = [self.max_frames] * B  # frames + the end frame
        self.frames = torch.full((B, K, self.max_frames - 1), PAD_FRAME, dtype=torch.long, device=device)
        if prompt is not None:
            self.frames[:, :, :self.prompt_frames] = self.prompt
        self.num_steps = self.pattern.num_steps(self.max_frames)
        self.steps = torch.full((B, K, self.num_steps), cfg.empty_id, dtype=torch.long, device=device)
        seed = secrets.randbits(63) if config.seed is None else config.seed
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.ended = [False] * B  # codebook 0 has placed end of audio
        self.done = [False] * B  # every frame is complete

    # -- layout of each item -------------------------------------------------------------------------------

    def _slot_frames(self, step: int) -> torch.Tensor:
        """LongTensor[B, K]: the frame each slot of `step` holds for each item, -1 where empty."""
        columns = []
        for length in self.lengths:
            layout = self.pattern.layout(length)
            columns.append(layout[:, step] if step < layout.shape[1] else torch.full((self.num_codebooks,), -1))
        return torch.stack(columns).to(self.frames.device)

    def _force(self, step: int, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Overwrite the known slots of `values` [B, K] at `step`; returns (values, slot frames [B, K])."""
        cfg = self.model.config
        slot_frames = self._slot_frames(step)  # (B, K)
        values = torch.where(slot_frames < 0, cfg.empty_id, values)
        if self.prompt is not None:
            in_prompt = (slot_frames >= 0) & (slot_frames < self.prompt_frames)
            prompt_values = self.prompt.gather(2, slot_frames.clamp(0, self.prompt_frames - 1).unsqueeze(2))[:, :, 0]
            values = torch.where(in_prompt, prompt_values, values)
        end_frame = torch.tensor(self.lengths, device=values.device).unsqueeze(1) - 1  # (B, 1)
        values = torch.where(slot_frames == end_frame, cfg.eos_id, values)
        return values, slot_frames

    def _take_step(self, step: int, sampled: torch.Tensor) -> torch.Tensor:
        """Force the known slots of the sampled step [B, K], settle ends, store codes; returns the step to feed."""
        cfg = self.model.config
        values, slot_frames = self._force(step, sampled)
        # Codebook 0 saying end of audio (sampled, or forced at the duration) fixes the item's length; the
        # layout of that length then decides the slots of this step and of the next ones.
        ended = (values[:, 0] == cfg.eos_id) & (slot_frames[:, 0] >= self.prompt_frames)
        if bool(ended.any()):
            for b in ended.nonzero()[:, 0].tolist():
                if not self.ended[b]:
                    self.ended[b] = True
                    self.lengths[b] = int(slot_frames[b, 0]) + 1
            values, slot_frames = self._force(step, sampled)
        end_frame = torch.tensor(self.lengths, device=values.device).unsqueeze(1) - 1  # (B, 1)
        new = (slot_frames >= self.prompt_frames) & (slot_frames < end_frame)  # (B, K)
        if bool(new.any()):
            b, k = new.nonzero(as_tuple=True)
            self.frames[b, k, slot_frames[b, k]] = values[b, k]
        self.steps[:, :, step] = values
        return values

    def _ready(self, num_steps: int) -> int:
        """Leading frames (prompt included) final for every item after `num_steps` steps; updates `done`."""
        ready = []
        for b, length in enumerate(self.lengths):
            complete = self.pattern.frames_complete(num_steps, length)
            self.done[b] = complete >= length - 1
            if not self.done[b]:
                ready.append(complete)
        if ready:
            return min(ready)
        return max(self.lengths) - 1  # all items are done: the batch is as long as its longest item

    # -- the loop ------------------------------------------------------------------------------------------

    def _guided(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Logits of the cache rows [R, K, V] at `step` -> logits to sample from [B, K, V]."""
        B = self.batch_size
        if self.config.uses_guidance:
            cond, uncond = logits[:B], logits[B:]
            logits = uncond + self.config.guidance_scale * (cond - uncond)
        logits = logits.float().clone()
        # End of audio is decided by codebook 0 only; the other codebooks are forced to it.
        logits[:, 1:, -1] = -math.inf
        early = step < self.first_end_steps  # (B,): min_duration / min_frames not reached yet
        logits[:, 0, -1] = logits[:, 0, -1].masked_fill(early, -math.inf)
        return logits

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Guided logits [B, K, V] -> step values [B, K] (codes, or end of audio as its id)."""
        cfg = self.model.config
        B, K, V = logits.shape
        index = sample_logits(logits.reshape(B * K, V), self.config, self.generator).view(B, K)
        return torch.where(index == cfg.num_logits - 1, cfg.eos_id, index)

    @torch.inference_mode()
    def run(self) -> Iterator[int]:
        """Generate step by step; after each step yield the number of frames (prompt included) final for all items.

        The model is in eval mode while this runs (its previous mode is restored at the end).
        """
        was_training = self.model.training
        self.model.eval()
        steps, threads = self._run(), self._threads()
        try:
            while True:
                with torch_threads(threads):  # only while this computes: not while the caller works
                    ready = next(steps, None)
                if ready is None:
                    return
                yield ready
        finally:
            steps.close()
            self.model.train(was_training)

    def _threads(self) -> int:
        """CPU threads for a step (`lm.threads`): ~2 FLOPs per weight per row of the batch (guidance doubles it)."""
        if self.model.device.type != "cpu":
            return torch.get_num_threads()
        rows = self.batch_size * (2 if self.config.uses_guidance else 1)
        weights = sum(p.numel() for name, p in self.model.named_parameters() if "embedding" not in name)
        return step_threads(2.0 * rows * weights, self.config.num_threads)

    def _run(self) -> Iterator[int]:
        model, cfg = self.model, self.model.config
        B = self.batch_size
        text_ids, text_mask = self.text_ids, self.text_mask
        if self.config.uses_guidance:
            text_ids = torch.cat([text_ids, text_ids])
            text_mask = torch.cat([text_mask, model.null_condition(self.text_ids, self.text_mask)])
        rows = text_ids.shape[0]
        # The tracks' additions at every audio position, (rows, num_steps + 1, D); the unconditional rows get none.
        features = model.step_features(self.num_steps + 1, self.phonemes, self.beats)
        if features is not None:
            if self.config.uses_guidance:
                features = torch.cat([features, torch.zeros_like(features)])
        # Steps before the first one with a frame to sample hold only prompt frames: one prefill pass.
        layout = self.pattern.layout(self.max_frames)
        first = int((layout >= self.prompt_frames).any(dim=0).nonzero()[0])
        for step in range(first):
            self._take_step(step, torch.full((B, self.num_codebooks), cfg.empty_id, device=self.frames.device))
        cache = KVCache(cfg, rows, text_ids.shape[1] + self.num_steps, device=model.device, dtype=model.dtype)
        inputs = torch.cat([model.start_step(B), self.steps[:, :, :first]], dim=2)  # (B, K, first + 1)
        logits = model.prefill(text_ids, text_mask, inputs.repeat(rows // B, 1, 1), cache,
                               None if features is None else features[:, :first + 1])  # (R, K, V)
        for step in range(first, self.num_steps):
            values = self._take_step(step, self._sample(self._guided(logits, step)))
            yield self._ready(step + 1)
            if all(self.done):
                return
            logits = model.decode_step(values.repeat(rows // B, 1), cache,
                                       None if features is None else features[:, step + 1:step + 2])


# ----------------------------------------------------------------------------------------- the user's object


class AudioLM:
    """Text -> codes: the transformer (`AudioLMModel`), its text tokenizer, and optionally the codec.

    The codec (anything honouring `lm.codec_interface.AudioTokenizer`) is only used to check that its codes
    are the ones the LM was built for; pass it to catch a mismatch early.
    """

    def __init__(self, model: AudioLMModel, text_tokenizer: TextTokenizer, codec: AudioTokenizer | None = None) -> None:
        if text_tokenizer.vocab_size != model.config.text_vocab_size:
            raise ValueError(f"text tokenizer has vocab_size={text_tokenizer.vocab_size}, the LM was built for "
                             f"text_vocab_size={model.config.text_vocab_size}; use the tokenizer saved with the LM")
        if codec is not None:
            model.config.check_codec(codec)
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.codec = codec

    # -- building, saving, loading ---------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: AudioLMConfig | str | os.PathLike, text_tokenizer: TextTokenizer,
                    codec: AudioTokenizer) -> AudioLM:
        """A freshly initialised LM for `codec`'s codes and `text_tokenizer`'s ids.

        `config` is an `AudioLMConfig` or the path of a preset (configs/lm_*.json). Its codec fields are filled
        from `codec` (a preset that sets one must agree with the codec); the null condition keeps the task
        tags and end of text.
        """
        if not isinstance(config, AudioLMConfig):
            config = AudioLMConfig.from_preset(config)
        null_ids = [text_tokenizer.eos_id] + [text_tokenizer.task_id(task) for task in text_tokenizer.TASKS]
        bound = config.bound_to(codec, text_tokenizer.vocab_size, null_ids)
        return cls(AudioLMModel(bound), text_tokenizer, codec)

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write `directory` with config.json, model.safetensors and text_tokenizer.model.

        `dtype=torch.float16` stores the floating-point weights in half the bytes (for shipping); `from_pretrained`
        loads them back as float32.
        """
        state = None
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating-point dtype (e.g. torch.float16), got {dtype}")
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.model.state_dict().items()}
        self.model.save_pretrained(directory, state_dict=state)
        for name in ("config.json", "model.safetensors"):  # transformers may write them private (0600)
            os.chmod(Path(directory) / name, 0o644)
        self.text_tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, codec: AudioTokenizer | None = None,
                        device: torch.device | str | None = None) -> AudioLM:
        """Load what `save_pretrained` wrote; ValueError naming both values if `codec` does not match.

        Weights are read from safetensors only, each checked against the config (`lm.checkpoint`): a missing,
        unexpected or misshapen tensor is a CheckpointError naming the folder, never a silent random layer.
        """
        directory = Path(directory)
        config = load_config(directory)
        if codec is not None:
            config.check_codec(codec)  # before reading the weights
        model = load_model(directory, config)
        if device is not None:
            model.to(device)
        model.eval()
        return cls(model, TextTokenizer.from_pretrained(directory), codec)

    def with_phoneme_track(self, kernel: int = AudioLMConfig.phoneme_kernel) -> AudioLM:
        """A copy of this LM with an aligned phoneme track added (see `lm.model`): every trained weight is kept,
        and the track's projection starts at zero, so the copy generates exactly what this LM does until it is
        trained with phonemes."""
        if self.has_phoneme_track:
            raise ValueError("this LM already has a phoneme track")
        return self._with_new_weights("phoneme_", phoneme_vocab_size=PHONEME_VOCAB_SIZE, phoneme_kernel=kernel)

    def with_beat_track(self) -> AudioLM:
        """A copy of this LM with a beat track added (see `lm.model`): every trained weight is kept, and the
        track's projection starts at zero, so the copy generates exactly what this LM does until it is trained
        with tempos."""
        if self.has_beat_track:
            raise ValueError("this LM already has a beat track")
        return self._with_new_weights("beat_", beat_track=True)

    def _with_new_weights(self, prefix: str, **config_changes) -> AudioLM:
        """A copy of this LM with `config_changes` applied: every trained weight is kept, and the new weights (all
        named `prefix`...) are freshly initialised."""
        config = copy.deepcopy(self.config)
        for name, value in config_changes.items():
            setattr(config, name, value)
        config._validate()
        model = AudioLMModel(config).to(device=self.device, dtype=self.model.dtype)
        missing, unexpected = model.load_state_dict(self.model.state_dict(), strict=False)
        if unexpected or not all(name.startswith(prefix) for name in missing):
            raise RuntimeError(f"adding {prefix}* weights changed other weights: missing {missing}, unexpected "
                               f"{unexpected}")
        model.train(self.model.training)
        return AudioLM(model, self.text_tokenizer, self.codec)

    @property
    def config(self) -> AudioLMConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: torch.device | str) -> AudioLM:
        self.model.to(device)
        return self

    # -- text -----------------------------------------------------------------------------------------------

    def encode_texts(self, texts: list[str], task: str | list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ids LongTensor[B, L] and mask BoolTensor[B, L], left-padded so that the audio starts together.

        ValueError for an empty text, an unknown task, or a text longer than `config.max_text_tokens`.
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise ValueError(f"texts must be a list of str, got {type(texts).__name__}; wrap one text as [text]")
        if not texts:
            raise ValueError("texts is empty; give at least one text")
        tasks = list(task) if isinstance(task, (list, tuple)) else [task] * len(texts)
        if len(tasks) != len(texts):
            raise ValueError(f"got {len(tasks)} tasks for {len(texts)} texts; give one task or one per text")
        limit = self.config.max_text_tokens
        encoded = []
        for index, (text, text_task) in enumerate(zip(texts, tasks)):
            if not isinstance(text, str):
                raise ValueError(f"text {index} must be a str, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"text {index} is empty ({text!r}); give at least one visible character")
            ids = self.text_tokenizer.encode(text, text_task)
            if len(ids) > limit:
                raise ValueError(f"text {index} is {len(ids)} tokens long (task tag and eos included), more than the "
                                 f"model's context of max_text_tokens={limit}; shorten or split it")
            encoded.append(ids)
        width = max(len(ids) for ids in encoded)
        text_ids = torch.full((len(encoded), width), self.text_tokenizer.pad_id, dtype=torch.long)  # (B, L)
        text_mask = torch.zeros(len(encoded), width, dtype=torch.bool)  # (B, L)
        for row, ids in enumerate(encoded):
            text_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            text_mask[row, width - len(ids):] = True
        return text_ids, text_mask

    @property
    def has_phoneme_track(self) -> bool:
        return bool(self.config.phoneme_vocab_size)

    @property
    def has_beat_track(self) -> bool:
        return self.config.beat_track

    def beat_track(self, texts: list[str], tasks: list[str | None] | str | None, frame_offset=None) -> BeatTrack:
        """The beat track of a batch: the tempo each music text names (`lm.text.tempo_from_text`; rows of
        other tasks, and captions that name none, get no tempo). `frame_offset` (ints [B], None: 0) is the frame of
        each item's first audio position; the first beat falls on frame 0."""
        if not self.has_beat_track:
            raise ValueError("this LM has no beat track (config.beat_track=false)")
        tasks = [tasks] * len(texts) if tasks is None or isinstance(tasks, str) else list(tasks)
        if len(tasks) != len(texts):
            raise ValueError(f"got {len(tasks)} tasks for {len(texts)} texts")
        bpm = [(tempo_from_text(text) or 0.0) if task == "music" else 0.0 for text, task in zip(texts, tasks)]
        offset = None if frame_offset is None else torch.as_tensor(frame_offset, dtype=torch.long).reshape(-1)
        return BeatTrack(torch.tensor(bpm, dtype=torch.float32), offset)

    def phoneme_track(self, transcripts: list[str | None], total_frames, frame_offset=None,
                      starts: list | None = None) -> PhonemeTrack:
        """The aligned phoneme track of a batch: each transcript (None: no track for that row, e.g. music)
        phonemized by espeak-ng and laid over its item's frames up to `total_frames` (ints [B]): spread evenly, or
        from `starts` (per row None or the start frame of each `phoneme_ids` symbol, see `PhonemeTrack`; rows
        without starts are spread evenly). `frame_offset` (ints [B], None: 0) is the frame of each item's first
        audio position."""
        if not self.has_phoneme_track:
            raise ValueError("this LM has no phoneme track (config.phoneme_vocab_size=0)")
        ids = [text_phoneme_ids(t) if t is not None else [] for t in transcripts]
        padded = torch.zeros(len(ids), max((len(i) for i in ids), default=0), dtype=torch.long)  # (B, P)
        for row, item in enumerate(ids):
            padded[row, :len(item)] = torch.tensor(item, dtype=torch.long)
        total = torch.as_tensor(total_frames, dtype=torch.long).reshape(-1)
        offset = None if frame_offset is None else torch.as_tensor(frame_offset, dtype=torch.long).reshape(-1)
        laid = None
        if starts is not None and any(row is not None for row in starts):
            if len(starts) != len(ids):
                raise ValueError(f"got starts for {len(starts)} rows, the batch has {len(ids)}")
            laid = torch.zeros_like(padded)
            for row, (item, given) in enumerate(zip(ids, starts)):
                if given is None:  # the even spread, written as starts
                    n = len(item)
                    given = [-((n - 2 * j * int(total[row])) // (2 * n)) for j in range(n)]  # ceil(j T / n - 1/2)
                if len(given) != len(item):
                    raise ValueError(f"row {row} has {len(item)} phoneme symbols and {len(given)} starts")
                laid[row, :len(item)] = torch.as_tensor(given, dtype=torch.long)
        return PhonemeTrack(padded, total, offset, laid)

    # -- training -------------------------------------------------------------------------------------------

    def loss(self, texts: list[str], codes: torch.Tensor, code_lengths: torch.Tensor | None = None,
             task: str | list[str] | None = None, phonemes: PhonemeTrack | None = None,
             beats: BeatTrack | None = None) -> AudioLMOutput:
        """Teacher-forced loss of texts -> codes LongTensor[B, K, T] (code_lengths [B]: real frames per item),
        with the aligned phoneme track `phonemes` and the beat track `beats` if given."""
        text_ids, text_mask = self.encode_texts(texts, task)
        device = self.device
        lengths = None if code_lengths is None else code_lengths.to(device)
        return self.model(text_ids.to(device), text_mask.to(device), codes.to(device), lengths, phonemes, beats)

    # -- generation -----------------------------------------------------------------------------------------

    def generate(self, texts: list[str], config: GenerationConfig, audio_prompt: torch.Tensor | None = None,
                 prompt_fingerprint: str | None = None, phonemes: PhonemeTrack | None = None,
                 min_frames: Sequence[int] | torch.Tensor | None = None, beats: BeatTrack | None = None
                 ) -> torch.Tensor:
        """Generate codes LongTensor[B, k, T] for `texts` (k = config.num_codebooks or K).

        T is the longest item's length, at most round(config.duration * frame_rate) frames; an item that ends
        earlier (codebook 0 sampled end of audio) is padded with PAD_FRAME (-1) after its end, see
        `split_items`. With `audio_prompt` LongTensor[B, K, T_p] (codes of the same codec; pass its
        `prompt_fingerprint` to have that checked) the model continues the prompt, and only the new frames
        are returned. Greedy decoding (top_k=1) gives the same codes in any batch as alone; with sampling, one
        generator serves the whole batch, so an item's draws depend on its place in the batch. `phonemes` (from
        `phoneme_track`, its frames counted from the prompt's first) conditions speech on aligned phonemes.
        `min_frames` (one int per text) holds back each item's end of audio until that many new frames, where it
        is more than `config.min_duration` (e.g. each text's laid-out phonemes, `PhonemeTrack.total_frames`).
        `beats` (from `beat_track`, its frames counted from the prompt's first) conditions music on a tempo.
        """
        decoding = self._start(texts, config, audio_prompt, prompt_fingerprint, phonemes, min_frames, beats)
        for _ in decoding.run():
            pass
        return self._output(decoding, max(decoding.lengths) - 1 - decoding.prompt_frames)

    def stream(self, texts: list[str], config: GenerationConfig, audio_prompt: torch.Tensor | None = None,
               prompt_fingerprint: str | None = None, phonemes: PhonemeTrack | None = None,
               min_frames: Sequence[int] | torch.Tensor | None = None, beats: BeatTrack | None = None
               ) -> Iterator[torch.Tensor]:
        """Like `generate`, but yield codes LongTensor[B, k, t_new] as soon as the pattern has completed them.

        Concatenating the chunks along the last axis gives what `generate` returns for the same arguments.
        """
        decoding = self._start(texts, config, audio_prompt, prompt_fingerprint, phonemes, min_frames, beats)
        sent = 0
        for ready in decoding.run():
            ready -= decoding.prompt_frames
            if ready > sent:
                yield self._output(decoding, ready)[:, :, sent:]
                sent = ready

    def _output(self, decoding: Decoding, ready: int) -> torch.Tensor:
        k = decoding.config.num_codebooks or self.config.num_codebooks
        return decoding.frames[:, :k, decoding.prompt_frames:decoding.prompt_frames + max(ready, 0)].clone()

    def _start(self, texts: list[str], config: GenerationConfig, audio_prompt: torch.Tensor | None,
               prompt_fingerprint: str | None, phonemes: PhonemeTrack | None = None,
               min_frames: Sequence[int] | torch.Tensor | None = None, beats: BeatTrack | None = None) -> Decoding:
        """Check every input against the model's limits, then set up a `Decoding`."""
        cfg = self.config
        if not isinstance(config, GenerationConfig):
            raise ValueError(f"config must be a GenerationConfig, got {type(config).__name__}")
        if config.task is not None:
            self.text_tokenizer.task_id(config.task)  # ValueError listing the known tasks
        if config.num_codebooks is not None and config.num_codebooks > cfg.num_codebooks:
            raise ValueError(f"num_codebooks={config.num_codebooks} is more than the model's "
                             f"{cfg.num_codebooks} codebooks")
        text_ids, text_mask = self.encode_texts(texts, config.task)
        prompt = self._check_prompt(audio_prompt, prompt_fingerprint, len(texts))
        prompt_frames = 0 if prompt is None else prompt.shape[2]
        new_frames = round(config.duration * cfg.frame_rate)
        if new_frames < 1:
            raise ValueError(f"duration={config.duration} s is less than one frame at {cfg.frame_rate} Hz; "
                             f"ask for at least {1 / cfg.frame_rate:.3g} s")
        if prompt_frames + new_frames > cfg.max_audio_frames:
            room = (cfg.max_audio_frames - prompt_frames) / cfg.frame_rate
            raise ValueError(
                f"duration={config.duration} s is {new_frames} frames at {cfg.frame_rate} Hz; with the "
                f"{prompt_frames}-frame prompt that is more than the model's position range of "
                f"max_audio_frames={cfg.max_audio_frames} frames; ask for at most {room:.3g} s")
        if phonemes is not None:
            if not self.has_phoneme_track:
                raise ValueError("phonemes were given, but this LM has no phoneme track (config.phoneme_vocab_size=0)")
            if phonemes.ids.shape[0] != len(texts):
                raise ValueError(f"the phoneme track has {phonemes.ids.shape[0]} rows for {len(texts)} texts")
        if beats is not None:
            if not self.has_beat_track:
                raise ValueError("beats were given, but this LM has no beat track (config.beat_track=false)")
            if beats.bpm.shape[0] != len(texts):
                raise ValueError(f"the beat track has {beats.bpm.shape[0]} rows for {len(texts)} texts")
        if min_frames is not None:
            min_frames = torch.as_tensor(min_frames).reshape(-1).tolist()
            if len(min_frames) != len(texts) or not all(isinstance(f, int) and f >= 0 for f in min_frames):
                raise ValueError(f"min_frames must hold one integer >= 0 per text ({len(texts)}), got {min_frames}")
        return Decoding(self.model, text_ids, text_mask, prompt, new_frames, config, phonemes, min_frames, beats)

    def _check_prompt(self, prompt: torch.Tensor | None, fingerprint: str | None, batch_size: int) -> torch.Tensor | None:
        cfg = self.config
        if fingerprint is not None and fingerprint != cfg.codec_fingerprint:
            raise ValueError(f"audio prompt comes from codec fingerprint {fingerprint!r}, the LM was built for "
                             f"codec_fingerprint={cfg.codec_fingerprint!r}; encode the prompt with the LM's codec")
        if prompt is None:
            return None
        if not isinstance(prompt, torch.Tensor) or prompt.dtype not in (torch.int64, torch.int32, torch.int16):
            raise ValueError(f"audio_prompt must be an integer tensor of codes [B, K, T], got "
                             f"{getattr(prompt, 'dtype', type(prompt).__name__)}")
        if prompt.dim() != 3 or prompt.shape[0] != batch_size or prompt.shape[1] != cfg.num_codebooks:
            raise ValueError(f"audio_prompt must be [B={batch_size}, K={cfg.num_codebooks}, T] (all the codec's "
                             f"codebooks), got shape {list(prompt.shape)}")
        if prompt.shape[2] == 0:
            return None
        low, high = int(prompt.min()), int(prompt.max())
        if low < 0 or high >= cfg.codebook_size:
            raise ValueError(f"audio_prompt codes must lie in [0, codebook_size={cfg.codebook_size}), got values in "
                             f"[{low}, {high}]; was it made by another codec?")
        return prompt.long()


def split_items(codes: torch.Tensor) -> list[torch.Tensor]:
    """Generated codes [B, k, T] -> one LongTensor[1, k, T_b] per item, without the PAD_FRAME tail."""
    lengths = (codes[:, 0] != PAD_FRAME).sum(dim=1)
    return [codes[b:b + 1, :, :int(lengths[b])] for b in range(codes.shape[0])]
