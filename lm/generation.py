"""`AudioLM`, the user's object: the transformer, its text tokenizer and optionally the codec; loading and saving,
its conditioners (the text prefix, and the model's tracks, see `lm.conditioners`), the loss, and generation
(`generate`, `stream`), which runs `lm.decoding` with the settings of `lm.sampling`.

    tracks = {"beat": lm.conditioner("beat").track(texts, "music")}
    codes = lm.generate(texts, GenerationConfig(duration=5.0, task="music"), tracks=tracks)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from .checkpoint import load_config, load_model
from .codec_interface import AudioTokenizer
from .conditioners import TextConditioner, TrackConditioner, Tracks, registered
from .config import AudioLMConfig
from .decoding import Decoding
from .model import AudioLMModel, AudioLMOutput
from .sampling import GenerationConfig
from .text import TextTokenizer


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
        self.text_conditioner = TextConditioner(text_tokenizer, model.config.max_text_tokens)

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
        null_ids = TextConditioner(text_tokenizer, config.max_text_tokens).null_condition_ids
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

    def with_track(self, name: str, **options) -> AudioLM:
        """A copy of this LM with the track `name` added (a registered `TrackConditioner`; `options` go to its
        `config_changes`, e.g. `kernel` for "phoneme"): every trained weight is kept, and the track's projection
        starts at zero, so the copy generates exactly what this LM does until it is trained with the track."""
        conditioners = registered()
        if name not in conditioners:
            raise ValueError(f"no track conditioner is registered as {name!r}; known: {sorted(conditioners)}")
        if self.has_track(name):
            raise ValueError(f"this LM already has a {name} track")
        return self._with_new_weights(f"tracks.{name}.", **conditioners[name].config_changes(self.config, **options))

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

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> AudioLM:
        """Move the model to `device` and/or cast its weights to `dtype` (in place; returns self).

        `dtype=torch.bfloat16` is the reduced-precision inference path: half the bytes of weights read per step,
        logits sampled in float32. It is off by default: on the bundled LMs it is no faster on a CPU and its
        greedy codes drift from float32's (`benchmarks/lm_precision.py`). The codec is not cast.
        """
        if dtype is not None and dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        self.model.to(device=device, dtype=dtype)
        return self

    def set_inference_weights(self, kind: str) -> AudioLM:
        """How the LM multiplies at inference on a CPU (in place; returns self): 'float', its stored weights, or
        'int8', weight-only int8 copies of its linear layers and heads (a quarter of float32's bytes per step;
        speed and held-out loss in `benchmarks/lm_precision.py`). Training and other devices use the stored
        weights either way, and nothing saved changes."""
        self.model.set_inference_weights(kind)
        return self

    @property
    def inference_weights(self) -> str:
        return self.model.inference_weights

    # -- conditioning ---------------------------------------------------------------------------------------

    def encode_texts(self, texts: list[str], task: str | list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ids LongTensor[B, L] and mask BoolTensor[B, L] of the text prefix (`TextConditioner.encode`)."""
        return self.text_conditioner.encode(texts, task)

    def has_track(self, name: str) -> bool:
        return name in self.model.tracks

    def conditioner(self, name: str) -> TrackConditioner:
        """The conditioner of the track `name`, which builds that track from raw inputs (its `track` method)."""
        if not self.has_track(name):
            raise ValueError(f"this LM has no {name} track (its tracks: {sorted(self.model.tracks)}); add one with "
                             "with_track and train it")
        return self.model.tracks[name]

    # -- training -------------------------------------------------------------------------------------------

    def loss(self, texts: list[str], codes: torch.Tensor, code_lengths: torch.Tensor | None = None,
             task: str | list[str] | None = None, tracks: Tracks | None = None) -> AudioLMOutput:
        """Teacher-forced loss of texts -> codes LongTensor[B, K, T] (code_lengths [B]: real frames per item),
        with the `tracks` given (name -> track)."""
        text_ids, text_mask = self.encode_texts(texts, task)
        device = self.device
        lengths = None if code_lengths is None else code_lengths.to(device)
        return self.model(text_ids.to(device), text_mask.to(device), codes.to(device), lengths, tracks)

    # -- generation -----------------------------------------------------------------------------------------

    def generate(self, texts: list[str], config: GenerationConfig, audio_prompt: torch.Tensor | None = None,
                 prompt_fingerprint: str | None = None, tracks: Tracks | None = None,
                 min_frames: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Generate codes LongTensor[B, k, T] for `texts` (k = config.num_codebooks or K).

        T is the longest item's length, at most round(config.duration * frame_rate) frames; an item that ends
        earlier (codebook 0 sampled end of audio) is padded with PAD_FRAME (-1) after its end, see
        `split_items`. With `audio_prompt` LongTensor[B, K, T_p] (codes of the same codec; pass its
        `prompt_fingerprint` to have that checked) the model continues the prompt, and only the new frames
        are returned. Greedy decoding (top_k=1) gives the same codes in any batch as alone; with sampling, one
        generator serves the whole batch, so an item's draws depend on its place in the batch. `tracks` (name ->
        track, each from `conditioner(name).track`, its frames counted from the prompt's first) conditions on
        frame-aligned tracks: aligned phonemes for speech, a tempo for music. `min_frames` (one int per text) holds
        back each item's end of audio until that many new frames, where it is more than `config.min_duration`
        (e.g. each text's laid-out phonemes, `PhonemeTrack.total_frames`).
        """
        decoding = self._start(texts, config, audio_prompt, prompt_fingerprint, tracks, min_frames)
        for _ in decoding.run():
            pass
        return self._output(decoding, max(decoding.lengths) - 1 - decoding.prompt_frames)

    def stream(self, texts: list[str], config: GenerationConfig, audio_prompt: torch.Tensor | None = None,
               prompt_fingerprint: str | None = None, tracks: Tracks | None = None,
               min_frames: Sequence[int] | torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Like `generate`, but yield codes LongTensor[B, k, t_new] as soon as the pattern has completed them.

        Concatenating the chunks along the last axis gives what `generate` returns for the same arguments.
        """
        decoding = self._start(texts, config, audio_prompt, prompt_fingerprint, tracks, min_frames)
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
               prompt_fingerprint: str | None, tracks: Tracks | None = None,
               min_frames: Sequence[int] | torch.Tensor | None = None) -> Decoding:
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
        tracks = {name: track for name, track in (tracks or {}).items() if track is not None}
        for name, track in tracks.items():
            self.conditioner(name)  # ValueError naming the LM's tracks
            if track.batch_size != len(texts):
                raise ValueError(f"the {name} track has {track.batch_size} rows for {len(texts)} texts")
        if min_frames is not None:
            min_frames = torch.as_tensor(min_frames).reshape(-1).tolist()
            if len(min_frames) != len(texts) or not all(isinstance(f, int) and f >= 0 for f in min_frames):
                raise ValueError(f"min_frames must hold one integer >= 0 per text ({len(texts)}), got {min_frames}")
        return Decoding(self.model, text_ids, text_mask, prompt, new_frames, config, tracks, min_frames)

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
