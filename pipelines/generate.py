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

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from lm import AudioLM, split_items
from lm.codec_interface import stream_decoder
from tokenizer.audio import save_audio

from . import long_form
from .generation_request import (TASK_DEFAULT, TASK_TOP_K, GenerationRequest, _TaskDefault, default_voice,
                                 task_top_k, voices)
from .outputs import check_output_file

__all__ = ["AUDIO_SUFFIXES", "TASK_DEFAULT", "TASK_TOP_K", "AudioStream", "GeneratedAudio", "check_output_path",
           "default_voice", "generate", "generate_stream", "task_top_k", "voices"]

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
        holds only the continuation, decoded with the prompt as left context so that it joins seamlessly. Audio is
        encoded at its level; a codes file holds the codes of its file brought to `rvqaudio encode`'s level (its
        `gain`), and the continuation keeps that level.
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
    request = GenerationRequest(prompt, task, duration, seed, temperature, top_k, top_p, guidance_scale, voice,
                       num_codebooks, min_duration, model, audio_prompt, extend_stride)
    if not request.batched:
        results = [_generate_one(request, progress)]
    elif request.one_by_one:
        results = [_generate_one(request.single(text), progress) for text in request.texts]
    else:
        results = _generate_batch(request, progress)
    return results if request.batched else results[0]


def _generate_batch(request: GenerationRequest, progress: bool) -> list[GeneratedAudio]:
    """Every text of `request` in one run of the LM (music windows included: a windowed request has one text)."""
    chunks = list(request.frames(progress))
    codes = torch.cat(chunks, dim=2) if chunks else request.no_frames()  # (B, k, T), PAD_FRAME past an end
    results = []
    for text, item in zip(request.texts, split_items(codes)):
        decoder = stream_decoder(request.lm.codec, context=request.prompt_codes)
        waveform = torch.cat([decoder.push(item), decoder.flush()], dim=-1)[0].cpu()  # (C, N)
        codes = item[0]  # (k, T_b)
        results.append(GeneratedAudio(waveform=waveform, sample_rate=int(request.lm.codec.sample_rate), prompt=text,
                                      ended_by_itself=codes.shape[1] < request.max_frames, codes=codes,
                                      seed=request.config.seed, voice=request.voice))
    return results


def _generate_one(request: GenerationRequest, progress: bool) -> GeneratedAudio:
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
    request = GenerationRequest(prompt, task, duration, seed, temperature, top_k, top_p, guidance_scale, voice,
                       num_codebooks, min_duration, model, audio_prompt, extend_stride)
    return AudioStream(request, progress, chunk_frames or 1)


class AudioStream:
    """An iterator of waveform pieces FloatTensor[C, n] (see `generate_stream`), with what a writer needs."""

    def __init__(self, request: GenerationRequest, progress: bool, chunk_frames: int) -> None:
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


def check_output_path(path: str | os.PathLike) -> None:
    """ValueError unless `path` ends in a suffix generation writes (.wav or .flac) and can be written there."""
    if Path(path).suffix.lower() not in AUDIO_SUFFIXES:
        raise ValueError(f"cannot write {str(path)!r}: generated audio is written as {list(AUDIO_SUFFIXES)}; "
                         "convert a .wav with ffmpeg for other formats")
    check_output_file(path, "output audio file")
