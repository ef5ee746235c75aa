"""Text -> audio with a self-contained LM folder: `generate` (whole clips) and `generate_stream` (as it is made).

    from pipelines import generate
    clip = generate("a calm piano melody", duration=8.0, seed=0, model="checkpoints/lm")
    clip.save("melody.wav")

The LM samples codes LongTensor[B, k, T] (see `lm.AudioLM.generate`); the LM folder's codec decodes them to
FloatTensor[C, N] at its sample rate. The conditioning text is built with `condition_text`, exactly as in
training, so a voice means what it meant there. A progress bar counts generated frames: the LM is run through
`AudioLM.stream`, whose chunks concatenate to what `AudioLM.generate` returns.

Streaming decodes frames as the LM completes them, through the codec's stream decoder
(`lm.codec_interface.stream_decoder`; rvqaudio's codec: `tokenizer.streaming`), whose pieces concatenate to the
samples that decoding all the codes at once gives.

Inputs longer than one generation of the LM go through `pipelines.long_form`: music past the LM's position range
continues in overlapping windows, and speech of several sentences is spoken sentence by sentence in one voice.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
from tqdm.auto import tqdm

from lm import AudioLM, GenerationConfig, PhonemeTrack, split_items
from lm.codec_interface import stream_decoder
from lm.conditioners.phonemizer import lay_out, phonemize, text_phoneme_ids
from tokenizer.audio import load_audio, save_audio

from . import long_form
from .codec_files import read_codes
from .conditioning import condition_text, known_voices
from .defaults import resolve_lm
from .outputs import check_output_file

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


# What `GeneratedAudio.save` and `AudioStream.save` write: lossless formats, whose bytes a seed fixes.
AUDIO_SUFFIXES = (".wav", ".flac")
_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
_SUBTYPE = "PCM_16"  # save_audio's default, so streamed and whole files hold the same samples


@dataclass
class GeneratedAudio:
    """One generated clip.

    waveform: FloatTensor[C, N] at `sample_rate` Hz (N = T * hop_length; with an audio prompt, the continuation
        only). prompt: the text as given (without the voice tag). ended_by_itself: the LM sampled end of audio
        before the requested duration (the clip is then shorter). codes: LongTensor[k, T], the codes decoded
        (speech spoken in sentences: each sentence's codes, one after another; the waveform adds the pauses).
    seed: the generator seed (drawn when none was given; pass it back to get the same clip). voice: the voice
        spoken with (speech only; the LM's default when none was asked for).
    """

    waveform: torch.Tensor
    sample_rate: int
    prompt: str
    ended_by_itself: bool
    codes: torch.Tensor
    seed: int
    voice: str | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.waveform.shape[-1] / self.sample_rate

    def save(self, path: str | os.PathLike) -> Path:
        """Write a .wav or .flac file (16-bit PCM, samples clipped to [-1, 1]) atomically; returns the path."""
        path = Path(path)
        check_output_path(path)
        save_audio(path, self.waveform, self.sample_rate, subtype=_SUBTYPE)
        return path


def generate(prompt: str | list[str], *, task: str | None = "music", duration: float = 10.0, seed: int | None = None,
             temperature: float = 1.0, top_k: int | None | _TaskDefault = TASK_DEFAULT, top_p: float = 1.0,
             guidance_scale: float = 3.0,
             voice: str | None = None, num_codebooks: int | None = None, min_duration: float | None = None,
             model: AudioLM | str | os.PathLike | None = None,
             audio_prompt: torch.Tensor | str | os.PathLike | None = None, extend_stride: float | None = None,
             progress: bool = True) -> GeneratedAudio | list[GeneratedAudio]:
    """Generate audio for a text, or for each text of a list (one batch).

    prompt: a caption (music) or a transcript (speech); a list gives a list of results, each trimmed to its own
        length. In a batch, one generator serves all items, so an item's audio depends on its place in it.
    task, duration (seconds of new audio, at most), seed, temperature, top_k, top_p, guidance_scale,
        num_codebooks: as in `lm.GenerationConfig`. seed=None draws one (kept in the result). top_k=TASK_DEFAULT
        takes the task's (`TASK_TOP_K`: 50 for speech, 250 for music).
    min_duration: seconds before the LM may end the audio. None: music plays for the whole `duration` (as
        MusicGen's does) and speech ends when the LM says the text is spoken, but, with an LM that has a phoneme
        track, not before the phonemes laid out for it are (each text's own). With an LM that has a beat track,
        music follows the tempo its caption names ("at 128 bpm", "96 beats per minute", "tempo 72", or a tempo word:
        "slow", "steady", "lively", "fast", ...; `lm.conditioners.beats.TEMPO_WORDS`).
    voice: task="speech" only; one of the LM's voices (`voices(model)`); None takes `default_voice(model)`.
    model: an `AudioLM` carrying its codec, a self-contained LM folder, or None for the bundled LM of the task.
    audio_prompt: audio to continue, the same for every text: a waveform FloatTensor[C, N] or [N] at the
        codec's sample rate, an audio file (any rate), or a codes file (.npz) from `rvqaudio encode`. The result
        holds only the continuation, decoded with the prompt as left context so that it joins seamlessly.
    extend_stride: music longer than the LM's window (`max_audio_frames`, 20 s for the bundled LMs, prompt
        included) is generated in overlapping windows, as MusicGen does: each window after the first continues the
        last `window - extend_stride` seconds of codes and adds `extend_stride` seconds (0 < extend_stride <
        window; None: 0.6 of the window, 12 s for the bundled LMs); all the codes are decoded at once at the end.
        Same seed, same audio.
    Speech of several sentences (split at . ! ? but not after "Mr." or inside "3.5"; a sentence past the LM's
    text limit also at words) is spoken sentence by sentence in the same voice, sentence i seeded from `seed`, each
    one with at most `duration` seconds, and joined with `long_form.SENTENCE_PAUSE` seconds of silence after its
    trailing near-silence is trimmed (each continues `audio_prompt`, if given). One sentence is generated in one
    go. Long inputs in a list are generated one by one, each as it would be alone.
    progress: show a tqdm bar of generated frames (on stderr).
    """
    request = _Request(prompt, task, duration, seed, temperature, top_k, top_p, guidance_scale, voice,
                       num_codebooks, min_duration, model, audio_prompt, extend_stride)
    if not request.batched:
        results = [_generate_one(request, progress)]
    elif request.one_by_one:
        results = [_generate_one(request.single(text), progress) for text in request.texts]
    else:
        results = _generate_batch(request, progress)
    return results if request.batched else results[0]


def _generate_batch(request: _Request, progress: bool) -> list[GeneratedAudio]:
    """Every text of `request` in one run of the LM (music windows included: a windowed request has one text)."""
    chunks = list(request.frames(progress))
    codes = torch.cat(chunks, dim=2) if chunks else request.no_frames()  # (B, k, T), PAD_FRAME past an end
    results = []
    for text, item in zip(request.texts, split_items(codes)):
        decoder = stream_decoder(request.lm.codec, context=request.prompt_codes)
        waveform = torch.cat([decoder.push(item), decoder.flush()], dim=-1)[0].cpu()  # (C, N)
        results.append(request.result(text, waveform, item[0]))
    return results


def _generate_one(request: _Request, progress: bool) -> GeneratedAudio:
    """The one text of `request`: in one go, in windows (music), or sentence by sentence (speech)."""
    if len(request.parts) == 1:
        return _generate_batch(request, progress)[0]
    clips = [_generate_batch(part, progress)[0] for part in request.part_requests()]
    sample_rate = int(request.lm.codec.sample_rate)
    waveform = torch.cat(list(long_form.joined_speech([c.waveform for c in clips], sample_rate)), dim=-1)
    return GeneratedAudio(waveform=waveform, sample_rate=sample_rate, prompt=request.texts[0],
                          ended_by_itself=all(c.ended_by_itself for c in clips),
                          codes=torch.cat([c.codes for c in clips], dim=1), seed=request.config.seed,
                          voice=request.voice)


def generate_stream(prompt: str, *, task: str | None = "music", duration: float = 10.0, seed: int | None = None,
                    temperature: float = 1.0, top_k: int | None | _TaskDefault = TASK_DEFAULT, top_p: float = 1.0,
                    guidance_scale: float = 3.0, voice: str | None = None, num_codebooks: int | None = None,
                    min_duration: float | None = None,
                    model: AudioLM | str | os.PathLike | None = None,
                    audio_prompt: torch.Tensor | str | os.PathLike | None = None,
                    extend_stride: float | None = None, progress: bool = True,
                    chunk_frames: int | None = None) -> AudioStream:
    """Like `generate` for one text, but yield FloatTensor[C, n] pieces of the waveform as frames complete.

    chunk_frames: decode this many new frames at a time and yield pieces of at least this many frames, the last
    apart (None: 1, each frame as soon as it is final). Concatenated, the pieces equal `generate(...).waveform`
    for the same arguments (long music: the frames of each window as they come; speech of several sentences: one
    sentence at a time, the pause before it included). Every argument is checked here, before the first frame;
    the returned `AudioStream` tells the sample rate and, once consumed, `codes` and `ended_by_itself`.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"generate_stream takes one prompt (a str), got {type(prompt).__name__}; "
                         "call it once per prompt, or use generate() for a batch")
    if chunk_frames is not None and (isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int)
                                     or chunk_frames < 1):
        raise ValueError(f"chunk_frames must be an integer >= 1 or None, got {chunk_frames!r}")
    request = _Request(prompt, task, duration, seed, temperature, top_k, top_p, guidance_scale, voice,
                       num_codebooks, min_duration, model, audio_prompt, extend_stride)
    return AudioStream(request, progress, chunk_frames or 1)


class AudioStream:
    """An iterator of waveform pieces FloatTensor[C, n] (see `generate_stream`), with what a writer needs."""

    def __init__(self, request: _Request, progress: bool, chunk_frames: int) -> None:
        codec = request.lm.codec
        self.sample_rate: int = int(codec.sample_rate)
        self.channels: int = int(codec.channels)
        self.prompt, self.seed, self.voice = request.texts[0], request.config.seed, request.voice
        self._request = request
        self._pieces = self._run(progress, chunk_frames)
        self._codes: list[torch.Tensor] = []
        self._parts_ended: list[bool] = []  # speech in sentences: whether each sentence ended by itself
        self._started = self._finished = False

    def __iter__(self) -> AudioStream:
        return self

    def __next__(self) -> torch.Tensor:
        self._started = True
        return next(self._pieces)

    def _run(self, progress: bool, chunk_frames: int) -> Iterator[torch.Tensor]:
        # Codes go to the decoder `chunk_frames` at a time, and its samples come out in pieces of at least that
        # many frames (a non-causal decoder holds frames back until their look-ahead has been generated).
        if len(self._request.parts) > 1:
            yield from self._run_parts(progress)
            return
        codec = self._request.lm.codec
        decoder = stream_decoder(codec, context=self._request.prompt_codes)
        least = chunk_frames * round(codec.sample_rate / codec.frame_rate)  # samples
        waiting: list[torch.Tensor] = []  # codes not yet pushed
        held: list[torch.Tensor] = []  # samples (C, n) not yet yielded
        for chunk in self._request.frames(progress):
            self._codes.append(chunk)
            waiting.append(chunk)
            if sum(c.shape[2] for c in waiting) >= chunk_frames:
                held.append(decoder.push(torch.cat(waiting, dim=2))[0].cpu())
                waiting = []
                if sum(p.shape[-1] for p in held) >= least:
                    yield torch.cat(held, dim=-1)
                    held = []
        if waiting:
            held.append(decoder.push(torch.cat(waiting, dim=2))[0].cpu())
        held.append(decoder.flush()[0].cpu())
        self._finished = True
        piece = torch.cat(held, dim=-1)
        if piece.shape[-1]:
            yield piece

    def _run_parts(self, progress: bool) -> Iterator[torch.Tensor]:
        # Speech in sentences: each is generated whole (its trailing silence is only known at its end), then
        # yielded with the pause before it, exactly as `generate` joins them.
        def clips() -> Iterator[torch.Tensor]:
            for part in self._request.part_requests():
                clip = _generate_batch(part, progress)[0]
                self._codes.append(clip.codes[None])
                self._parts_ended.append(clip.ended_by_itself)
                yield clip.waveform

        yield from long_form.joined_speech(clips(), self.sample_rate)
        self._finished = True

    @property
    def codes(self) -> torch.Tensor:
        """LongTensor[k, T]: the frames generated so far."""
        codes = torch.cat(self._codes, dim=2) if self._codes else self._request.no_frames()
        return codes[0]

    @property
    def duration(self) -> float:
        """Seconds of audio generated so far."""
        return self.codes.shape[1] / self._request.lm.config.frame_rate

    @property
    def ended_by_itself(self) -> bool:
        """Whether the LM sampled end of audio before the requested duration (only known once consumed)."""
        if not self._finished:
            raise RuntimeError("the stream is not finished yet; read it to the end first")
        if self._parts_ended:
            return all(self._parts_ended)
        return self.codes.shape[1] < self._request.max_frames

    def save(self, path: str | os.PathLike) -> Path:
        """Write the pieces to a .wav or .flac file as they come, then move it into place.

        The file grows under a temporary name next to `path`; an error or an interruption removes it, so `path`
        is either the whole clip or untouched. Same format and samples as `GeneratedAudio.save`.
        """
        path = Path(path)
        check_output_path(path)
        if self._started:
            raise ValueError(f"cannot save to {str(path)!r}: this stream has already been read from, so the file "
                             "would miss its start; save a fresh stream from generate_stream")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with sf.SoundFile(tmp, "w", samplerate=self.sample_rate, channels=self.channels, subtype=_SUBTYPE,
                              format=_FORMATS[path.suffix.lower()]) as out:
                for piece in self:
                    if not bool(torch.isfinite(piece).all()):
                        raise ValueError(f"the codec decoded NaN or infinite samples; refusing to write {str(path)!r}")
                    out.write(piece.clamp(-1.0, 1.0).T.numpy())  # soundfile wants [n, C]
                    out.flush()
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


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


def check_output_path(path: str | os.PathLike) -> None:
    """ValueError unless `path` ends in a suffix generation writes (.wav or .flac) and can be written there."""
    if Path(path).suffix.lower() not in AUDIO_SUFFIXES:
        raise ValueError(f"cannot write {str(path)!r}: generated audio is written as {list(AUDIO_SUFFIXES)}; "
                         "convert a .wav with ffmpeg for other formats")
    check_output_file(path, "output audio file")


# ----------------------------------------------------------------------------------------- one request


class _Request:
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

    def single(self, text: str, seed: int | None = None, parts: list[str] | None = None) -> _Request:
        """This request for `text` alone (seeded `seed`, or as this one), spoken in `parts` (None: as it splits)."""
        request = object.__new__(_Request)
        request.__dict__.update(self.__dict__)
        parts = self._parts(text) if parts is None else parts
        request.batched, request.texts, request.parts, request.one_by_one = False, [text], parts, False
        request.config = dataclasses.replace(self.config, seed=self.config.seed if seed is None else seed)
        return request

    def part_requests(self) -> Iterator[_Request]:
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

    def result(self, text: str, waveform: torch.Tensor, codes: torch.Tensor) -> GeneratedAudio:
        return GeneratedAudio(waveform=waveform, sample_rate=int(self.lm.codec.sample_rate), prompt=text,
                              ended_by_itself=codes.shape[1] < self.max_frames, codes=codes,
                              seed=self.config.seed, voice=self.voice)


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
