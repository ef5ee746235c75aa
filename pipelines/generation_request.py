"""One call of `generate` / `generate_stream`, checked and resolved (`GenerationRequest`): the texts, the sampling
settings with each task's defaults (`TASK_TOP_K`), the LM, the voice, the audio prompt's codes, and how a long input
is cut (music in windows, speech in sentences). `pipelines.generate` runs requests and decodes what they make.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lm import AudioLM, GenerationConfig, PhonemeTrack
from lm.conditioners.phonemizer import lay_out, phonemize, text_phoneme_ids
from tokenizer.audio import load_audio

from . import long_form
from .codec_files import read_codes
from .conditioning import condition_text, known_voices
from .defaults import resolve_lm


class _TaskDefault:
    """The value of a sampling setting that depends on the task (see `task_top_k`)."""

    def __repr__(self) -> str:
        return "TASK_DEFAULT"


TASK_DEFAULT = _TaskDefault()
# Top-k per task. Speech samples among the 50 likeliest codes: over its two flite/festival voices, 18 held-out
# sentences each and 3 seeds, pocketsphinx found +0.057 [+0.020, +0.094] more of the words than with 250 (the
# default voice's WER 0.65 -> 0.53); 0.7 for the temperature changed nothing. Music keeps MusicGen's 250.
TASK_TOP_K = {"music": 250, "speech": 50}


def task_top_k(task: str | None) -> int:
    """The top-k a task samples with when the caller names none (250 for a task the table does not list)."""
    return TASK_TOP_K.get(task, 250)



def voices(model: AudioLM | str | os.PathLike | None = None) -> list[str]:
    """The voices the LM was trained with (sorted), for `generate(..., task="speech", voice=...)`."""
    return known_voices(resolve_lm(model, task="speech").config)


def default_voice(model: AudioLM | str | os.PathLike | None = None) -> str | None:
    """The voice speech uses when none is named: the config's `default_voice`, else the first known voice, else
    None (an LM trained without voices)."""
    config = resolve_lm(model, task="speech").config
    known = known_voices(config)
    chosen = getattr(config, "default_voice", None)
    if chosen is None:
        return known[0] if known else None
    if chosen not in known:
        raise ValueError(f"the LM's config names default_voice={chosen!r}, which is not one of its voices {known}; "
                         "fix default_voice in its config.json")
    return chosen



class GenerationRequest:
    """Every argument of a generate call, checked and resolved: texts, settings, LM, voice, prompt codes, and how
    a long input is cut (music windows, speech sentences)."""

    def __init__(self, prompt, task, duration, seed, temperature, top_k, top_p, guidance_scale, voice,
                 num_codebooks, min_duration, model, audio_prompt, extend_stride=None) -> None:
        self.batched = not isinstance(prompt, str)
        self.texts = _check_prompts(prompt)
        if seed is None:
            seed = secrets.randbits(32)
        # Settings first: a bad value is reported before a model is loaded. The LM checks its own limits later.
        self.default_min_duration = min_duration is None
        if min_duration is None:
            min_duration = duration if task == "music" else 0.0
        if top_k is TASK_DEFAULT:
            top_k = task_top_k(task)
        self.config = GenerationConfig(duration=duration, temperature=temperature, top_k=top_k, top_p=top_p,
                                       guidance_scale=guidance_scale, seed=seed, task=task,
                                       num_codebooks=num_codebooks, min_duration=min_duration)
        if voice is not None and task != "speech":
            raise ValueError(f"voice={voice!r} is for task='speech'; task={task!r} has no voice: drop the voice or "
                             "use task='speech'")
        self.lm = resolve_lm(model, task)
        self.voice = _pick_voice(self.lm, voice) if task == "speech" else None
        self.prompt_codes, self.prompt_fingerprint = _prompt_codes(self.lm, audio_prompt)
        self.max_frames = round(duration * self.lm.config.frame_rate)  # as AudioLM counts them
        self.stride = long_form.stride_frames(self.lm, extend_stride)
        prompt_frames = 0 if self.prompt_codes is None else self.prompt_codes.shape[2]
        self.windowed = task != "speech" and long_form.needs_windows(self.lm, prompt_frames, self.max_frames)
        if self.windowed and prompt_frames >= self.lm.config.max_audio_frames:
            raise ValueError(f"the audio prompt is {prompt_frames / self.lm.config.frame_rate:g} s, as long as the "
                             f"LM's window of {long_form.window_seconds(self.lm):g} s or longer; give a shorter one")
        parts = [self._parts(text) for text in self.texts]
        self.parts = parts[0]  # what a request for one text is spoken in
        self.one_by_one = self.batched and (self.windowed or any(len(p) > 1 for p in parts))

    def _parts(self, text: str) -> list[str]:
        return long_form.speech_parts(text, self._fits) if self.config.task == "speech" else [text]

    def _fits(self, text: str) -> bool:
        """Whether the conditioning text of `text` fits the LM's text limit."""
        ids = self.lm.text_tokenizer.encode(condition_text(text, self.voice), self.config.task)
        return len(ids) <= self.lm.config.max_text_tokens

    def single(self, text: str, seed: int | None = None, parts: list[str] | None = None) -> GenerationRequest:
        """This request for `text` alone (seeded `seed`, or as this one), spoken in `parts` (None: as it splits)."""
        request = object.__new__(GenerationRequest)
        request.__dict__.update(self.__dict__)
        parts = self._parts(text) if parts is None else parts
        request.batched, request.texts, request.parts, request.one_by_one = False, [text], parts, False
        request.config = dataclasses.replace(self.config, seed=self.config.seed if seed is None else seed)
        return request

    def part_requests(self) -> Iterator[GenerationRequest]:
        """Speech in sentences: one request per sentence, seeded `long_form.part_seed(seed, i)`."""
        for index, part in enumerate(self.parts):
            yield self.single(part, long_form.part_seed(self.config.seed, index), parts=[part])

    def frames(self, progress: bool) -> Iterator[torch.Tensor]:
        """Run the LM: yield codes LongTensor[B, k, t_new] (on the CPU) as they complete, with a progress bar;
        music longer than the LM's window in windows (`long_form.windowed`)."""
        if self.windowed:
            k = self.config.num_codebooks or self.lm.config.num_codebooks
            chunks = (chunk[:, :k] for chunk in long_form.windowed(
                self._window, self.prompt_codes, self.max_frames, self.lm.config.max_audio_frames, self.stride))
        else:
            chunks = self._run_lm(self.prompt_codes, self.config, 0)
        with tqdm(total=self.max_frames, desc="generating", unit="frame", disable=not progress,
                  dynamic_ncols=True) as bar:
            for chunk in chunks:
                bar.update(chunk.shape[2])
                yield chunk.cpu()

    def _window(self, context: torch.Tensor | None, offset: int, frames: int, index: int) -> Iterator[torch.Tensor]:
        """One window of long music (see `long_form.windowed`): all K codebooks, the window's own seed, and the part
        of `min_duration` that falls in it."""
        rate = self.lm.config.frame_rate
        prompt_frames = 0 if self.prompt_codes is None else self.prompt_codes.shape[2]
        made = offset + (0 if context is None else context.shape[2]) - prompt_frames  # new frames so far
        floor = max(0, min(frames, round(self.config.min_duration * rate) - made))
        config = dataclasses.replace(self.config, duration=frames / rate, min_duration=floor / rate,
                                     seed=long_form.part_seed(self.config.seed, index), num_codebooks=None)
        for chunk in self._run_lm(context, config, offset):
            yield chunk.cpu()

    def _run_lm(self, prompt: torch.Tensor | None, config: GenerationConfig, offset: int) -> Iterator[torch.Tensor]:
        """One run of the LM continuing `prompt` [1, K, T_p] (None: nothing), whose first frame is frame `offset`
        of the audio (for the beat track): yield codes LongTensor[B, k, t_new] as they complete."""
        texts = [condition_text(text, self.voice) for text in self.texts]
        if prompt is not None:
            prompt = prompt.expand(len(texts), -1, -1)  # the same prompt for every text
        track = self.phoneme_track()
        # Not before its phonemes are laid out: an LM that learned a silent lead-in with the end-of-phonemes feature
        # (an aligned track) would otherwise now and then end there, before saying anything.
        spoken = track.total_frames if track is not None and self.default_min_duration else None
        tracks = {"phoneme": track}
        if self.lm.has_track("beat"):  # the tempo each music caption names, its first beat on the audio's frame 0
            tracks["beat"] = self.lm.conditioner("beat").track(texts, config.task,
                                                               [offset] * len(texts) if offset else None)
        yield from self.lm.stream(texts, config, audio_prompt=prompt, prompt_fingerprint=self.prompt_fingerprint,
                                  tracks=tracks, min_frames=spoken)

    def phoneme_track(self) -> PhonemeTrack | None:
        """Speech with an LM that has a phoneme track: each text's phonemes laid out after the audio prompt, each
        sound lasting as long as the voice's sounds did in training (`phoneme_durations`, written by a run with
        training.phoneme_alignment), or else spread evenly at the voice's frames per phoneme
        (`frames_per_phoneme`, written by train-lm)."""
        if self.config.task != "speech" or not self.lm.has_track("phoneme"):
            return None
        phonemes = self.lm.conditioner("phoneme")
        prompt_frames = 0 if self.prompt_codes is None else self.prompt_codes.shape[2]
        tables = getattr(self.lm.config, "phoneme_durations", None) or {}
        if tables:
            durations = {**tables.get("", {}), **tables.get(self.voice or "", {})}
            laid = [lay_out(phonemize(text), durations) for text in self.texts]
            return phonemes.track(self.texts, [end for _, end in laid], [-prompt_frames] * len(self.texts),
                                  [starts for starts, _ in laid])
        rates = getattr(self.lm.config, "frames_per_phoneme", None) or {}
        rate = rates.get(self.voice or "", rates.get(""))
        if rate is None:
            raise ValueError("the LM has a phoneme track but no frames_per_phoneme in its config; train it with "
                             "speech (train-lm writes them)")
        counts = [len(text_phoneme_ids(text)) for text in self.texts]
        return phonemes.track(self.texts, [max(1, round(n * rate)) for n in counts], [-prompt_frames] * len(self.texts))

    def no_frames(self) -> torch.Tensor:
        """LongTensor[B, k, 0]: the codes when every item ended before its first frame."""
        k = self.config.num_codebooks or self.lm.config.num_codebooks
        return torch.zeros(len(self.texts), k, 0, dtype=torch.long)

def _check_prompts(prompt: str | list[str]) -> list[str]:
    if isinstance(prompt, str):
        texts = [prompt]
    elif isinstance(prompt, (list, tuple)):
        texts = list(prompt)
        if not texts:
            raise ValueError("prompt is an empty list; give at least one text")
    else:
        raise ValueError(f"prompt must be a str or a list of str, got {type(prompt).__name__}")
    for index, text in enumerate(texts):
        which = "prompt" if isinstance(prompt, str) else f"prompt {index}"
        if not isinstance(text, str):
            raise ValueError(f"{which} must be a str, got {type(text).__name__}")
        # Checked here, not only by the LM: a voice tag would make an empty text look non-empty to it.
        if not text.strip():
            raise ValueError(f"{which} is empty ({text!r}); describe the audio (music) or give the words (speech)")
    return texts


def _pick_voice(lm: AudioLM, voice: str | None) -> str | None:
    if voice is None:
        return default_voice(lm)
    known = known_voices(lm.config)
    if not known:
        raise ValueError(f"voice={voice!r}, but this LM was trained without voices; drop the voice")
    if voice not in known:
        raise ValueError(f"unknown voice {voice!r}; this LM knows the voices {known}")
    return voice


def _prompt_codes(lm: AudioLM, audio_prompt: torch.Tensor | str | os.PathLike | None
                  ) -> tuple[torch.Tensor | None, str | None]:
    """An audio prompt -> (codes LongTensor[1, K, T_p] on the CPU, the fingerprint of the codec that made them)."""
    codec = lm.codec
    if audio_prompt is None:
        return None, None
    if isinstance(audio_prompt, (str, os.PathLike)):
        path = Path(audio_prompt)
        if path.suffix.lower() == ".npz":
            codes, meta = read_codes(path)
            return codes, str(meta["fingerprint"])
        wav, _ = load_audio(path, sample_rate=codec.sample_rate, channels=codec.channels)  # (C, N)
    elif isinstance(audio_prompt, torch.Tensor) and audio_prompt.is_floating_point() and audio_prompt.dim() in (1, 2):
        wav = audio_prompt if audio_prompt.dim() == 2 else audio_prompt[None]
    else:
        raise ValueError(f"audio_prompt must be a waveform FloatTensor[C, N] at the codec's {codec.sample_rate} Hz, "
                         f"an audio file or a codes file (.npz), got "
                         f"{getattr(audio_prompt, 'dtype', type(audio_prompt).__name__)} "
                         f"{list(getattr(audio_prompt, 'shape', []))}")
    return codec.encode(wav[None]).cpu(), codec.fingerprint  # encode checks channels, length and values
