"""`generate` / `generate_stream` / `rvqaudio generate|voices`: lengths, rates, seeds, batches, voices, streaming
equal to whole decoding, files written whole or not at all, and every bad input's message."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
import torch

from lm import AudioLM, GenerationConfig, TextTokenizer, split_items
from pipelines.cli import main
from pipelines.conditioning import condition_text
from pipelines.defaults import load_lm, save_lm
from pipelines.generate import GeneratedAudio, default_voice, generate, generate_stream, voices
from tokenizer import CheckpointError, CodecConfig, RVQCodec

PROMPT = "a calm piano melody"
FRAMES = 20  # DURATION at the tiny codec's 50 Hz
DURATION = 0.4
HOP = 160
VOICES = ["bob", "alice"]


def tiny_codec(causal: bool = True, spectral: bool = False, frequency_invariant_phase: bool = False,
               pitch_phase: bool = False, edge_phase: bool = False) -> RVQCodec:
    """8 kHz mono, hop 160 (50 frames/s), K=4 codebooks of 32; its decoder sees 9 frames, fewer than a clip.

    `spectral`: the frame-rate ConvNeXt/iSTFT encoder and decoder (non-causal) instead of SEANet, with
    `frequency_invariant_phase` (its decoder's spans must then start at even frames) or `pitch_phase` (its
    source's phase must carry over from span to span), with `edge_phase` (the source's own phase at voicing edges,
    as the bundled codec)."""
    torch.manual_seed(0)
    layers = {"dim": 16, "hidden_dim": 32, "num_layers": 1, "kernel_size": 3, "n_fft": 320,
              "frequency_invariant_phase": frequency_invariant_phase, "pitch_phase": pitch_phase or edge_phase,
              "edge_phase": edge_phase, "edge_offsets": not edge_phase} if spectral else None
    config = CodecConfig(sample_rate=8000, n_filters=4, strides=(4, 5, 8), dimension=16, causal=causal,
                         spectral=layers, quantizer={"num_codebooks": 4, "codebook_size": 32})
    codec = RVQCodec(config)
    codec.train()(torch.randn(2, 1, 1600) * 0.1)  # k-means init
    return codec.eval()


def tiny_lm(codec: RVQCodec, text_tokenizer: TextTokenizer, voices: list[str] | None = None) -> AudioLM:
    """A random LM whose head for codebook 0 never favours end of audio: its end-of-audio row is zero while the
    code rows are scaled up, so it rarely ends a clip by itself (the seeds below were checked to run full length).
    Tests that need a clip of an exact length make sure with `end_of_audio`."""
    torch.manual_seed(0)
    lm = AudioLM.from_config("configs/lm_tiny.json", text_tokenizer, codec)
    with torch.no_grad():
        for head in lm.model.heads:
            head.weight.mul_(40.0)
        lm.model.heads[0].weight[-1] = 0.0
    if voices is not None:
        lm.config.voices = list(voices)
    lm.model.eval()
    return lm


@pytest.fixture(scope="module")
def text_tokenizer():
    return TextTokenizer.train([PROMPT, "hello world", "drums and bass", "good morning"] * 4, vocab_size=300)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, text_tokenizer):
    codec = tiny_codec()
    return save_lm(tiny_lm(codec, text_tokenizer, VOICES), codec, tmp_path_factory.mktemp("lm") / "lm")


@pytest.fixture(scope="module")
def lm(lm_dir):
    return load_lm(lm_dir)


@contextlib.contextmanager
def end_of_audio(lm: AudioLM, rows: slice = slice(None), at: int | None = None) -> Iterator[AudioLM]:
    """Within the block, set codebook 0's end-of-audio logit of the batch `rows` (CFG rows included): -1e4, so
    the clip never ends by itself, or with `at`, +1e4 from step `at` on, so it ends at frame `at` (the delay
    pattern samples frame s of codebook 0 at step s; each step runs the heads once)."""
    calls = [0]

    def hook(module, inputs, output):
        output = output.clone()
        output[rows, :, -1] = -1e4 if at is None or calls[0] < at else 1e4
        calls[0] += 1
        return output

    handle = lm.model.heads[0].register_forward_hook(hook)
    try:
        yield lm
    finally:
        handle.remove()


@pytest.fixture
def no_early_end(lm):
    with end_of_audio(lm):
        yield lm


# ----------------------------------------------------------------------------------------- one clip


def test_clip_has_the_requested_length_and_rate(no_early_end, capsys):
    clip = generate(PROMPT, duration=DURATION, seed=0, model=no_early_end)
    assert isinstance(clip, GeneratedAudio) and not clip.ended_by_itself
    assert clip.sample_rate == 8000 and clip.waveform.shape == (1, FRAMES * HOP)
    assert clip.waveform.dtype == torch.float32
    assert clip.duration == pytest.approx(DURATION) and clip.codes.shape == (4, FRAMES)
    assert bool(torch.isfinite(clip.waveform).all()) and clip.waveform.abs().max() > 0
    assert clip.prompt == PROMPT and clip.seed == 0 and clip.voice is None
    assert f"{FRAMES}/{FRAMES}" in capsys.readouterr().err  # the progress bar counted every frame


def test_progress_path_gives_what_lm_generate_gives(no_early_end):
    lm = no_early_end
    clip = generate(PROMPT, duration=DURATION, seed=4, top_k=8, model=lm, progress=True)
    codes = lm.generate([PROMPT], GenerationConfig(duration=DURATION, seed=4, top_k=8, task="music"))
    assert torch.equal(clip.codes, codes[0])
    assert torch.allclose(clip.waveform, lm.codec.decode(codes)[0], atol=1e-5)


def test_save_writes_the_clip(lm, tmp_path):
    clip = generate(PROMPT, duration=DURATION, seed=0, model=lm, progress=False)
    for name in ("clip.wav", "clip.flac"):
        clip.save(tmp_path / name)
        data, rate = sf.read(tmp_path / name, dtype="float32", always_2d=True)
        assert rate == 8000 and data.shape == (clip.waveform.shape[1], 1)
        assert np.abs(data[:, 0] - clip.waveform[0].clamp(-1, 1).numpy()).max() <= 1 / 32768 + 1e-6
    with pytest.raises(ValueError, match=r"clip.mp3.*\.wav"):
        clip.save(tmp_path / "clip.mp3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.flac", "clip.wav"]


def test_same_seed_same_bytes_other_seed_other_audio(lm, tmp_path):
    first = generate(PROMPT, duration=DURATION, seed=7, model=lm, progress=False)
    again = generate(PROMPT, duration=DURATION, seed=7, model=lm, progress=False)
    assert torch.equal(first.waveform, again.waveform)
    assert first.save(tmp_path / "a.wav").read_bytes() == again.save(tmp_path / "b.wav").read_bytes()
    other = generate(PROMPT, duration=DURATION, seed=8, model=lm, progress=False)
    assert not torch.equal(first.codes, other.codes)
    drawn = generate(PROMPT, duration=DURATION, model=lm, progress=False)  # no seed: one is drawn and kept
    assert torch.equal(generate(PROMPT, duration=DURATION, seed=drawn.seed, model=lm, progress=False).waveform,
                       drawn.waveform)


# ----------------------------------------------------------------------------------------- batches, ends


@pytest.mark.parametrize("end_at", [0, 5])
def test_batch_items_are_trimmed_to_their_own_end(lm, tmp_path, end_at):
    texts = [PROMPT, "drums and bass"]

    def ending_first_item():  # rows 0, 2: item 0 (conditional, unconditional) ends; rows 1, 3: item 1 does not
        stack = contextlib.ExitStack()
        stack.enter_context(end_of_audio(lm, rows=slice(0, None, 2), at=end_at))
        stack.enter_context(end_of_audio(lm, rows=slice(1, None, 2)))
        return stack

    with ending_first_item():
        clips = generate(texts, duration=DURATION, min_duration=0.0, seed=1, model=lm, progress=False)
    with ending_first_item():
        codes = lm.generate(texts, GenerationConfig(duration=DURATION, seed=1, task="music"))
    assert isinstance(clips, list) and [c.prompt for c in clips] == [PROMPT, "drums and bass"]
    short, full = clips
    assert short.ended_by_itself and short.codes.shape == (4, end_at) and short.waveform.shape == (1, end_at * HOP)
    assert not full.ended_by_itself and full.waveform.shape == (1, FRAMES * HOP)
    for clip, item in zip(clips, split_items(codes)):
        assert torch.equal(clip.codes, item[0])
    short.save(tmp_path / "short.wav")
    assert sf.info(tmp_path / "short.wav").frames == end_at * HOP


def test_a_list_of_one_prompt_gives_a_list(lm):
    clips = generate([PROMPT], duration=0.1, seed=0, model=lm, progress=False)
    assert isinstance(clips, list) and len(clips) == 1


# ----------------------------------------------------------------------------------------- voices


def test_speech_conditions_on_the_voice_as_training_does(no_early_end):
    lm = no_early_end
    settings = dict(duration=0.2, seed=2, top_k=8)
    default = generate("hello world", task="speech", model=lm, progress=False, **settings)
    assert default.voice == "alice" == default_voice(lm)  # the first known voice
    bob = generate("hello world", task="speech", voice="bob", model=lm, progress=False, **settings)
    for clip, voice in ((default, "alice"), (bob, "bob")):
        expected = lm.generate([condition_text("hello world", voice)], GenerationConfig(task="speech", **settings))
        assert torch.equal(clip.codes, expected[0]), voice
    assert not torch.equal(default.codes, bob.codes)


def test_default_voice_comes_from_the_config(lm_dir):
    lm = load_lm(lm_dir)
    lm.config.default_voice = "bob"
    assert default_voice(lm) == "bob" and voices(lm) == ["alice", "bob"]
    assert generate("hello", task="speech", duration=0.1, seed=0, model=lm, progress=False).voice == "bob"
    lm.config.default_voice = "carol"
    with pytest.raises(ValueError, match="default_voice='carol'.*'alice', 'bob'"):
        default_voice(lm)


def test_voice_errors_name_the_known_voices(lm):
    with pytest.raises(ValueError, match=r"unknown voice 'carol'.*\['alice', 'bob'\]"):
        generate("hello", task="speech", voice="carol", duration=0.1, model=lm, progress=False)
    with pytest.raises(ValueError, match="voice='bob' is for task='speech'"):
        generate("hello", task="music", voice="bob", duration=0.1, model=lm, progress=False)


def test_an_lm_without_voices(lm_dir):
    lm = load_lm(lm_dir)
    lm.config.voices = []
    assert voices(lm) == [] and default_voice(lm) is None
    clip = generate("hello", task="speech", duration=0.1, seed=0, model=lm, progress=False)
    assert clip.voice is None
    with pytest.raises(ValueError, match="trained without voices"):
        generate("hello", task="speech", voice="bob", duration=0.1, model=lm, progress=False)


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("prompt, kwargs, message", [
    ("", {}, r"prompt is empty \(''\)"),
    ("   ", {"task": "speech"}, "prompt is empty"),  # a voice tag must not make it look non-empty
    ([], {}, "empty list"),
    ([PROMPT, ""], {}, "prompt 1 is empty"),
    (3, {}, "must be a str or a list of str"),
    (PROMPT, {"duration": 0}, "duration must be > 0"),
    (PROMPT, {"duration": -1.0}, "duration must be > 0"),
    (PROMPT, {"top_p": 1.5}, "top_p must be in"),
    (PROMPT, {"num_codebooks": 9}, "num_codebooks=9 is more than the model's 4"),
    (PROMPT, {"duration": 60.0, "task": "speech"}, "max_audio_frames"),  # music that long goes in windows
    (PROMPT, {"task": "poetry"}, "unknown task 'poetry'"),
    (PROMPT, {"audio_prompt": torch.zeros(4, 3, dtype=torch.long)}, "audio_prompt must be a waveform"),
])
def test_bad_arguments_are_refused_with_the_value(lm, prompt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(prompt, model=lm, progress=False, **{"duration": 0.1, **kwargs})


def test_bad_stream_arguments_are_refused_before_any_frame(lm):
    with pytest.raises(ValueError, match="one prompt"):
        generate_stream([PROMPT], duration=0.1, model=lm)
    with pytest.raises(ValueError, match="chunk_frames must be an integer >= 1"):
        generate_stream(PROMPT, duration=0.1, model=lm, chunk_frames=0)
    with pytest.raises(ValueError, match="duration must be > 0"):
        generate_stream(PROMPT, duration=0, model=lm)  # raised by the call itself, not by the first next()


def test_without_a_bundled_lm_the_error_says_what_to_pass(tmp_path, monkeypatch):
    import pipelines.defaults as defaults

    monkeypatch.setattr(defaults, "DEFAULT_LM_DIR", tmp_path / "none")
    defaults.default_lm.cache_clear()
    with pytest.raises(CheckpointError, match=r"no bundled LM.*--model DIR"):
        generate(PROMPT, duration=0.1)
    defaults.default_lm.cache_clear()


# ----------------------------------------------------------------------------------------- prompts, streaming


def test_audio_prompt_as_waveform_or_codes_file(no_early_end, tmp_path):
    from pipelines import encode_file, read_codes

    lm = no_early_end
    wav = torch.sin(torch.arange(2400) / 8000 * 2 * torch.pi * 440)[None] * 0.3  # (1, N): 15 frames
    prompt = lm.codec.encode(wav[None])  # (1, K, 15)
    clip = generate(PROMPT, duration=0.2, seed=0, model=lm, audio_prompt=wav, progress=False)
    codes = lm.generate([PROMPT], GenerationConfig(duration=0.2, seed=0, task="music"), audio_prompt=prompt)
    assert torch.equal(clip.codes, codes[0]) and clip.codes.shape == (4, 10)
    # The continuation is decoded with the prompt as left context: the tail of decoding both together.
    whole = lm.codec.decode(torch.cat([prompt, codes], dim=2))[0, :, 15 * HOP:]
    assert torch.allclose(clip.waveform, whole, atol=1e-5)
    sf.write(tmp_path / "p.wav", wav[0].numpy(), 8000, subtype="FLOAT")
    encode_file(tmp_path / "p.wav", tmp_path / "p.npz", codec=lm.codec, level=None)  # the file at its own level
    for source in (tmp_path / "p.wav", str(tmp_path / "p.npz")):
        assert torch.equal(generate(PROMPT, duration=0.2, seed=0, model=lm, audio_prompt=source,
                                    progress=False).codes, clip.codes)
    # at `rvqaudio encode`'s level (the default): the codes in the file are the prompt, whatever its gain
    encode_file(tmp_path / "p.wav", tmp_path / "q.npz", codec=lm.codec)
    scaled, meta = read_codes(tmp_path / "q.npz")
    assert meta["gain"] != 1.0
    assert torch.equal(generate(PROMPT, duration=0.2, seed=0, model=lm, audio_prompt=tmp_path / "q.npz",
                                progress=False).codes,
                       lm.generate([PROMPT], GenerationConfig(duration=0.2, seed=0, task="music"),
                                   audio_prompt=scaled)[0])


@pytest.mark.parametrize("kind", ["causal", "non-causal", "spectral", "spectral-fi", "spectral-pitch", "spectral-edge"])
@pytest.mark.parametrize("chunk_frames", [None, 3])
def test_streamed_audio_equals_decoding_everything(kind, chunk_frames, lm, text_tokenizer):
    # A non-causal decoder needs look-ahead too: frames are held back until it has been generated.
    causal = kind == "causal"
    model = lm if causal else tiny_lm(tiny_codec(causal=False, spectral=kind.startswith("spectral"),
                                                 frequency_invariant_phase=kind == "spectral-fi",
                                                 pitch_phase=kind == "spectral-pitch",
                                                 edge_phase=kind == "spectral-edge"), text_tokenizer)
    assert model.codec.decoder_period == (2 if kind == "spectral-fi" else 1)
    assert model.codec.pitch_phase == (kind in ("spectral-pitch", "spectral-edge"))
    with end_of_audio(model):
        stream = generate_stream(PROMPT, duration=DURATION, seed=3, model=model, chunk_frames=chunk_frames)
        assert stream.sample_rate == 8000 and stream.channels == 1
        pieces = list(stream)
        clip = generate(PROMPT, duration=DURATION, seed=3, model=model, progress=False)
    assert torch.equal(stream.codes, clip.codes) and not stream.ended_by_itself
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == (1, FRAMES * HOP)
    assert torch.allclose(streamed, model.codec.decode(clip.codes[None])[0], atol=1e-5, rtol=0)
    assert torch.allclose(streamed, clip.waveform, atol=1e-5, rtol=0)
    assert len(pieces) >= 3, "the audio did not come out as it was generated"
    if causal and not chunk_frames:
        assert len(pieces) == FRAMES  # each frame is decoded as soon as the LM completes it
    if chunk_frames:
        assert all(p.shape[-1] >= chunk_frames * HOP for p in pieces[:-1])


def test_streaming_with_an_audio_prompt_joins_it_seamlessly(no_early_end, text_tokenizer):
    wav = torch.randn(1, 1600) * 0.1  # 10 frames
    # Also with pitch-phase decoders (with and without edge phases), whose source phase must start from where the
    # prompt leaves it.
    pitch_lms = [tiny_lm(tiny_codec(causal=False, spectral=True, pitch_phase=True, edge_phase=edge), text_tokenizer)
                 for edge in (False, True)]
    for lm in (no_early_end, *pitch_lms):
        with end_of_audio(lm):
            clip = generate(PROMPT, duration=0.2, seed=0, model=lm, audio_prompt=wav, progress=False)
            streamed = torch.cat(list(generate_stream(PROMPT, duration=0.2, seed=0, model=lm, audio_prompt=wav,
                                                      progress=False)), dim=-1)
        assert torch.allclose(streamed, clip.waveform, atol=1e-5, rtol=0)


def test_an_interrupted_stream_leaves_no_file(lm, tmp_path, monkeypatch):
    decode, calls = lm.codec.decode, [0]

    def decode_then_interrupt(codes):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return decode(codes)

    monkeypatch.setattr(lm.codec, "decode", decode_then_interrupt)
    stream = generate_stream(PROMPT, duration=DURATION, seed=0, model=lm, progress=False)
    with pytest.raises(KeyboardInterrupt):
        stream.save(tmp_path / "clip.wav")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="already been read from"):
        stream.save(tmp_path / "clip.wav")


# ----------------------------------------------------------------------------------------- command line


def test_cli_writes_the_clip_whole_or_streamed(lm_dir, tmp_path, capsys):
    base = ["generate", PROMPT, "--model", str(lm_dir), "--duration", str(DURATION), "--seed", "0",
            "--no-progress"]
    assert main(base + ["-o", str(tmp_path / "whole.wav")]) == 0
    assert f"wrote {tmp_path / 'whole.wav'} ({DURATION:.2f} s, full length, seed 0)" in capsys.readouterr().out
    assert main(base + ["-o", str(tmp_path / "streamed.wav"), "--stream"]) == 0
    assert "full length" in capsys.readouterr().out
    whole, rate = sf.read(tmp_path / "whole.wav", dtype="int16")
    streamed, _ = sf.read(tmp_path / "streamed.wav", dtype="int16")
    assert rate == 8000 and whole.shape == streamed.shape == (FRAMES * HOP,)
    assert np.abs(whole.astype(int) - streamed.astype(int)).max() <= 1  # equal up to a rounding of 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.wav", "whole.wav"]  # no temp file left


def test_cli_several_prompts_go_to_a_folder_or_a_pattern(lm_dir, tmp_path):
    base = ["generate", PROMPT, "drums and bass", "--model", str(lm_dir), "--duration", "0.1", "--seed", "0"]
    assert main(base + ["-o", f"{tmp_path}/clips/"]) == 0
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["0.wav", "1.wav"]
    assert main(base + ["-o", str(tmp_path / "take_{i}.flac")]) == 0
    assert sf.info(tmp_path / "take_1.flac").samplerate == 8000 and (tmp_path / "take_0.flac").is_file()


@pytest.mark.parametrize("extra, message", [
    (["", "-o", "x.wav"], "prompt 0 is empty"),
    ([PROMPT, "-o", "x.wav", "--duration", "0"], "duration must be > 0"),
    ([PROMPT, "-o", "x.wav", "--task", "speech", "--voice", "carol"], r"unknown voice 'carol'.*'alice', 'bob'"),
    ([PROMPT, "-o", "x.wav", "--voice", "bob"], "is for task='speech'"),
    ([PROMPT, "hello", "-o", "x.wav"], r"2 prompts need 2 files.*\{i\}"),
    ([PROMPT, "-o", "x.mp3"], r"x.mp3.*\.wav"),
    ([PROMPT, "hello", "-o", "{i}.wav", "--stream"], "--stream writes one file"),
])
def test_cli_bad_input_exits_2_with_a_message(lm_dir, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--model", str(lm_dir), "--duration", "0.1"] + extra) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("rvqaudio generate: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_cli_without_a_bundled_lm(tmp_path, monkeypatch, capsys):
    import pipelines.defaults as defaults

    monkeypatch.setattr(defaults, "DEFAULT_LM_DIR", tmp_path / "none")
    defaults.default_lm.cache_clear()
    assert main(["generate", PROMPT, "-o", str(tmp_path / "x.wav")]) == 2
    assert "no bundled LM" in capsys.readouterr().err
    assert main(["voices"]) == 2
    assert "--model DIR" in capsys.readouterr().err
    defaults.default_lm.cache_clear()


def test_cli_voices_lists_them_with_the_default_marked(lm_dir, capsys):
    assert main(["voices", "--model", str(lm_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["alice (default)", "bob"]


def test_music_plays_for_the_whole_duration_unless_asked_otherwise(lm):
    def ending_at_2(**settings):  # the model wants to stop after 2 frames
        with end_of_audio(lm, rows=slice(0, None, 2), at=2):
            return generate(PROMPT, duration=DURATION, seed=1, model=lm, progress=False, **settings)

    whole, early, speech = ending_at_2(), ending_at_2(min_duration=0.0), ending_at_2(task="speech")
    assert not whole.ended_by_itself and whole.codes.shape == (4, FRAMES)
    assert early.ended_by_itself and early.codes.shape == (4, 2)
    assert speech.ended_by_itself and speech.codes.shape == (4, 2)  # speech ends when the LM says so


def test_each_task_samples_with_its_own_top_k_unless_given(lm, monkeypatch):
    from pipelines.generate import TASK_TOP_K

    seen = []
    stream = lm.stream

    def recording(texts, config, **kwargs):
        seen.append(config.top_k)
        return stream(texts, config, **kwargs)

    monkeypatch.setattr(lm, "stream", recording)
    generate(PROMPT, duration=0.1, seed=0, model=lm, progress=False)
    generate(PROMPT, duration=0.1, seed=0, model=lm, progress=False, top_k=7)
    generate(PROMPT, duration=0.1, seed=0, model=lm, progress=False, top_k=None)
    assert seen == [TASK_TOP_K["music"], 7, None] and TASK_TOP_K == {"music": 250, "speech": 50}
