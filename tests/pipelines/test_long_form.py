"""Long inputs (`pipelines.long_form` through `generate`): music past the LM's window continues in overlapping
windows (length, seeds, each window continuing the previous codes, streaming equal to whole); speech of several
sentences is spoken sentence by sentence in one voice and joined with pauses; the sentence splitter."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from lm import AudioLM, TextTokenizer
from pipelines import long_form
from pipelines.cli import main
from pipelines.defaults import save_lm
from pipelines.generate import generate, generate_stream

from .test_generate import end_of_audio, tiny_codec, tiny_lm

PROMPT = "a calm piano melody"
HOP, RATE = 160, 50  # the tiny codec: 8 kHz, 50 frames/s
WINDOW, STRIDE = 20, 12  # frames: a 0.4 s window, continued every 0.24 s
VOICES = ["bob", "alice"]


@pytest.fixture(scope="module")
def small_window_lm():
    """The tiny LM of test_generate, its position range cut to WINDOW frames, never ending a clip by itself."""
    tokenizer = TextTokenizer.train([PROMPT, "hello world", "drums and bass", "good morning"] * 4, vocab_size=300)
    lm = tiny_lm(tiny_codec(), tokenizer, VOICES)
    lm.config.max_audio_frames = WINDOW
    with end_of_audio(lm):
        yield lm


class Recorder:
    """Wraps `lm.stream` to keep each call's texts, audio prompt, settings and output codes."""

    def __init__(self, lm: AudioLM, monkeypatch) -> None:
        self.calls: list[dict] = []
        stream = lm.stream

        def recorded(texts, config, audio_prompt=None, **kwargs):
            call = {"texts": list(texts), "prompt": audio_prompt, "config": config, "tracks": kwargs.get("tracks")}
            self.calls.append(call)
            chunks = list(stream(texts, config, audio_prompt=audio_prompt, **kwargs))
            call["codes"] = torch.cat(chunks, dim=2)
            yield from chunks

        monkeypatch.setattr(lm, "stream", recorded)


def long_music(lm, seconds=1.0, **kwargs):
    return generate(PROMPT, duration=seconds, seed=kwargs.pop("seed", 0), model=lm, progress=False,
                    extend_stride=kwargs.pop("extend_stride", STRIDE / RATE), **kwargs)


# ----------------------------------------------------------------------------------------- music


def test_long_music_has_the_requested_length(small_window_lm):
    clip = long_music(small_window_lm, 1.0)  # 50 frames: windows of 20 + 12 + 12 + 6 new frames
    assert clip.codes.shape == (4, 50) and clip.waveform.shape == (1, 50 * HOP)
    assert not clip.ended_by_itself and clip.duration == pytest.approx(1.0)
    assert bool(torch.isfinite(clip.waveform).all())


def test_long_music_is_deterministic_per_seed(small_window_lm):
    first, again, other = (long_music(small_window_lm, 0.8, seed=s) for s in (5, 5, 6))
    assert torch.equal(first.codes, again.codes) and torch.equal(first.waveform, again.waveform)
    assert not torch.equal(first.codes, other.codes)


def test_each_window_continues_the_last_codes_of_the_previous(small_window_lm, monkeypatch):
    recorder = Recorder(small_window_lm, monkeypatch)
    clip = long_music(small_window_lm, 1.0)
    calls, overlap = recorder.calls, WINDOW - STRIDE
    assert [round(c["config"].duration * RATE) for c in calls] == [20, 12, 12, 6]
    assert calls[0]["prompt"] is None
    for index, call in enumerate(calls[1:], start=1):
        start = index * STRIDE  # the window's first frame in the whole clip
        assert torch.equal(call["prompt"][0], clip.codes[:, start:start + overlap]), f"window {index}"
        assert torch.equal(call["codes"][0], clip.codes[:, start + overlap:start + overlap + call["codes"].shape[2]])
        assert call["config"].seed == long_form.part_seed(0, index) != 0
    # The first window is what a clip of one window gives: a long clip starts as the short one.
    short = generate(PROMPT, duration=WINDOW / RATE, seed=0, model=small_window_lm, progress=False)
    assert torch.equal(short.codes, clip.codes[:, :WINDOW])


def test_the_beat_track_of_each_window_counts_frames_from_the_start(small_window_lm, monkeypatch):
    lm = small_window_lm.with_track("beat")
    lm.config.max_audio_frames = WINDOW
    recorder = Recorder(lm, monkeypatch)
    with end_of_audio(lm):
        generate(f"{PROMPT} at 120 bpm", duration=1.0, seed=0, model=lm, progress=False, extend_stride=STRIDE / RATE)
    offsets = [c["tracks"]["beat"].frame_offset for c in recorder.calls]
    assert offsets[0] is None and [o.tolist() for o in offsets[1:]] == [[12], [24], [36]]
    assert all(float(c["tracks"]["beat"].bpm[0]) == 120.0 for c in recorder.calls)


def test_long_music_continues_an_audio_prompt(small_window_lm, monkeypatch):
    recorder = Recorder(small_window_lm, monkeypatch)
    wav = torch.randn(1, 5 * HOP) * 0.1  # 5 frames
    clip = long_music(small_window_lm, 0.6, audio_prompt=wav)  # 30 frames: 15 + 12 + 3 new frames
    prompt = small_window_lm.codec.encode(wav[None])
    assert clip.codes.shape == (4, 30)
    assert torch.equal(recorder.calls[0]["prompt"], prompt)
    assert torch.equal(recorder.calls[1]["prompt"][0], torch.cat([prompt[0], clip.codes], dim=1)[:, 12:20])


def test_fewer_codebooks_are_the_first_of_all(small_window_lm):
    fewer = long_music(small_window_lm, 0.8, num_codebooks=2)
    assert torch.equal(fewer.codes, long_music(small_window_lm, 0.8).codes[:2])


@pytest.mark.parametrize("chunk_frames", [None, 5])
def test_streamed_long_music_equals_the_whole(small_window_lm, chunk_frames):
    clip = long_music(small_window_lm, 1.0, seed=3)
    stream = generate_stream(PROMPT, duration=1.0, seed=3, model=small_window_lm, progress=False,
                             extend_stride=STRIDE / RATE, chunk_frames=chunk_frames)
    pieces = list(stream)
    assert len(pieces) > 4, "the windows did not come out as they were generated"
    assert torch.equal(stream.codes, clip.codes) and not stream.ended_by_itself
    assert torch.allclose(torch.cat(pieces, dim=-1), clip.waveform, atol=1e-5, rtol=0)


def test_a_batch_of_long_music_is_each_clip_alone(small_window_lm):
    both = generate([PROMPT, "drums and bass"], duration=0.6, seed=2, model=small_window_lm, progress=False)
    for text, clip in zip([PROMPT, "drums and bass"], both):
        assert torch.equal(clip.codes, generate(text, duration=0.6, seed=2, model=small_window_lm,
                                                progress=False).codes)


@pytest.mark.parametrize("stride", [0, -0.1, 0.4, 1.0, 0.001, "12", True])
def test_bad_extend_stride_is_refused_with_the_window(small_window_lm, stride):
    with pytest.raises(ValueError, match=r"extend_stride.*(window of 0.4 s|number of seconds)"):
        long_music(small_window_lm, 1.0, extend_stride=stride)


def test_the_default_stride_is_musicgens_share_of_the_window(small_window_lm):
    assert long_form.stride_frames(small_window_lm, None) == 12  # 0.6 x 20 frames
    assert long_form.window_seconds(small_window_lm) == pytest.approx(0.4)


def test_cli_long_music_with_extend_stride(small_window_lm, tmp_path, capsys):
    lm_dir = save_lm(small_window_lm, small_window_lm.codec, tmp_path / "lm")
    base = ["generate", PROMPT, "--model", str(lm_dir), "--duration", "0.7", "--seed", "0", "--no-progress",
            "--extend-stride", "0.2"]
    assert main(base + ["-o", str(tmp_path / "a.wav")]) == 0
    assert "(0.70 s, full length, seed 0)" in capsys.readouterr().out
    audio, rate = sf.read(tmp_path / "a.wav", dtype="int16")
    assert rate == 8000 and audio.shape == (35 * HOP,)
    assert main(base[:-1] + ["0.5", "-o", str(tmp_path / "b.wav")]) == 2
    assert "extend_stride=0.5" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- speech


@pytest.mark.parametrize("text, sentences", [
    ("Hello world. Good morning!", ["Hello world.", "Good morning!"]),
    ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
    ("It costs 3.5 euros, e.g. a coffee. Fine", ["It costs 3.5 euros, e.g. a coffee.", "Fine"]),
    ("Really?! Yes... \"Sure.\" Then", ["Really?!", "Yes...", "\"Sure.\"", "Then"]),
    ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
    ("no period at the end", ["no period at the end"]),
    ("  ", []),
])
def test_sentences_split_at_their_ends_only(text, sentences):
    assert long_form.split_sentences(text) == sentences


def test_a_sentence_past_the_text_limit_is_cut_at_words():
    parts = long_form.speech_parts("one two three four five. six", lambda t: len(t) <= 9)
    assert parts == ["one two", "three", "four", "five.", "six"]
    with pytest.raises(ValueError, match="alone is longer than the LM's text limit"):
        long_form.speech_parts("incomprehensibilities", lambda t: len(t) <= 9)


def test_trailing_near_silence_is_trimmed():
    loud = torch.full((1, 800), 0.5)
    quiet = torch.full((1, 400), 0.001)
    assert long_form.trim_trailing_silence(torch.cat([loud, quiet], dim=1), 8000).shape == (1, 800)
    assert long_form.trim_trailing_silence(quiet, 8000).shape == (1, 400)  # all silence: kept


def test_sentences_are_spoken_in_one_voice_and_joined_with_pauses(small_window_lm, monkeypatch):
    recorder = Recorder(small_window_lm, monkeypatch)
    text = "Hello world. Good morning!"
    clip = generate(text, task="speech", voice="bob", duration=0.2, seed=4, model=small_window_lm, progress=False)
    assert [c["texts"] for c in recorder.calls] == [["[bob] Hello world."], ["[bob] Good morning!"]]
    alone = [generate(s, task="speech", voice="bob", duration=0.2, seed=long_form.part_seed(4, i),
                      model=small_window_lm, progress=False) for i, s in enumerate(long_form.split_sentences(text))]
    pause = round(long_form.SENTENCE_PAUSE * 8000)
    first, second = (long_form.trim_trailing_silence(a.waveform, 8000) for a in alone)
    assert torch.equal(clip.waveform, torch.cat([first, torch.zeros(1, pause), second], dim=1))
    assert torch.equal(clip.codes, torch.cat([a.codes for a in alone], dim=1))
    assert clip.voice == "bob" and clip.seed == 4 and clip.prompt == text
    stream = generate_stream(text, task="speech", voice="bob", duration=0.2, seed=4, model=small_window_lm,
                             progress=False)
    pieces = list(stream)
    assert len(pieces) == 2 and torch.equal(torch.cat(pieces, dim=-1), clip.waveform)
    assert torch.equal(stream.codes, clip.codes) and stream.ended_by_itself == clip.ended_by_itself


def test_one_sentence_is_generated_in_one_go(small_window_lm, monkeypatch):
    recorder = Recorder(small_window_lm, monkeypatch)
    clip = generate("Hello world.", task="speech", duration=0.2, seed=4, model=small_window_lm, progress=False)
    assert len(recorder.calls) == 1 and recorder.calls[0]["config"].seed == 4
    assert torch.equal(clip.codes, recorder.calls[0]["codes"][0])


def test_a_text_past_the_limit_is_spoken_in_parts(small_window_lm, monkeypatch):
    recorder = Recorder(small_window_lm, monkeypatch)
    monkeypatch.setattr(small_window_lm.config, "max_text_tokens", 20)  # "[bob] hello world" is 17 tokens
    text = "hello world good morning hello world good morning"  # one sentence of 36 tokens
    clip = generate(text, task="speech", voice="bob", duration=0.1, seed=0, model=small_window_lm, progress=False)
    assert len(recorder.calls) > 1 and " ".join(t[6:] for c in recorder.calls for t in c["texts"]) == text
    assert clip.waveform.shape[1] >= (len(recorder.calls) - 1) * round(long_form.SENTENCE_PAUSE * 8000)
    assert np.isfinite(clip.waveform.numpy()).all()
