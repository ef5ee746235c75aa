"""The models that ship inside the package: they load without a path, speak each other's codes, round-trip
audio, and generate both tasks out of the box (the README's promise)."""

from __future__ import annotations

import math

import pytest
import soundfile as sf
import torch

from pipelines import decode_file, default_codec, default_lm, default_voice, encode_file, generate, voices
from pipelines.cli import main as cli_main
from pipelines.defaults import DEFAULT_CODEC_DIR, DEFAULT_LM_DIR, LM_TASKS, default_lm_dir
from pipelines.evaluation.metrics import mel_distance
from tokenizer import CodecConfig, RVQCodec

MAX_SHIPPED_BYTES = 80 * 2**20  # the budget for the bundled weights


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> torch.Tensor:
    """A sentence spoken by espeak-ng (a Debian package of `make setup`), at the bundled codec's rate, [1, N]."""
    from pipelines.demo import speak
    from tokenizer.audio import load_audio

    path = speak("The quick brown fox jumps over the lazy dog.", tmp_path_factory.mktemp("speech") / "fox.wav")
    wav, _ = load_audio(path, sample_rate=default_codec().sample_rate, channels=1)
    return wav


def test_the_bundled_weights_are_within_budget():
    assert {"config.json", "model.safetensors"} <= {p.name for p in DEFAULT_CODEC_DIR.iterdir()}
    for task in LM_TASKS:
        names = {p.name for p in default_lm_dir(task).iterdir()}
        assert {"config.json", "model.safetensors", "text_tokenizer.model"} <= names
    files = [p for p in (*DEFAULT_CODEC_DIR.rglob("*"), *DEFAULT_LM_DIR.rglob("*")) if p.is_file()]
    assert sum(p.stat().st_size for p in files) < MAX_SHIPPED_BYTES


def test_the_bundled_codec_round_trips_audio(speech):
    codec = default_codec()
    codes = codec.encode(speech.unsqueeze(0))
    frames = math.ceil(speech.shape[-1] / codec.hop_length)
    assert codes.shape == (1, codec.num_codebooks, frames) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    decoded = codec.decode(codes)[..., :speech.shape[-1]]
    assert decoded.shape == (1, 1, speech.shape[-1]) and torch.isfinite(decoded).all()
    assert torch.equal(codec.encode(speech.unsqueeze(0)), codes)  # deterministic
    # Trained: its reconstruction is far closer to the input than silence, or than an untrained codec's, is.
    distance = mel_distance(speech, decoded[0], codec.sample_rate)
    torch.manual_seed(0)
    untrained = RVQCodec(codec.config).eval()
    baseline = mel_distance(speech, untrained.decode(untrained.encode(speech.unsqueeze(0)))[0, :, :speech.shape[-1]],
                            codec.sample_rate)
    assert distance < 0.5 * mel_distance(speech, torch.zeros_like(speech), codec.sample_rate)
    assert distance < 0.6 * baseline


def test_speech_decodes_with_the_bundled_speech_decoder_from_the_same_codes(speech):
    from pipelines.defaults import default_decoder_variants

    assert default_decoder_variants() == ["speech"]
    codec, speech_codec = default_codec(), default_codec("speech")
    assert default_codec("music") is codec and default_lm("speech").codec is speech_codec
    assert default_lm("music").codec is codec
    codes = codec.encode(speech.unsqueeze(0))
    assert torch.equal(speech_codec.encode(speech.unsqueeze(0)), codes)
    decoded = speech_codec.decode(codes)[0, :, :speech.shape[-1]]
    assert torch.isfinite(decoded).all() and not torch.allclose(decoded, codec.decode(codes)[0, :, :speech.shape[-1]])
    assert mel_distance(speech, decoded, codec.sample_rate) < 0.5 * mel_distance(speech, torch.zeros_like(speech),
                                                                                 codec.sample_rate)


def test_the_bundled_decoder_choice_picks_the_speech_decoder_for_speech_only(speech, tmp_path):
    from pipelines.codec_files import OWN_DECODER
    from tokenizer.decoder_choice import DecoderChoice

    choice = DecoderChoice.load(DEFAULT_CODEC_DIR)
    codec = default_codec()
    assert choice.speech_variant == "speech"
    assert all(figures["clip_accuracy"] >= 0.95 for figures in choice.info["test"].values())  # as measured when fitted
    t = torch.arange(3 * codec.sample_rate) / codec.sample_rate
    chord = sum(0.1 * torch.sin(2 * math.pi * f * t) for f in (261.6, 329.6, 392.0, 523.3))  # C major, held
    codes = {"speech": codec.encode(speech.unsqueeze(0)), "chord": codec.encode(chord[None, None])}
    assert choice.choose(codes["speech"]) == ["speech"] and choice.choose(codes["chord"]) == [None]
    # `rvqaudio decode` without --variant decodes the sentence with the speech decoder
    sf.write(tmp_path / "speech.wav", speech.numpy()[0], codec.sample_rate)
    encode_file(tmp_path / "speech.wav", tmp_path / "speech.npz")
    chosen, speech_decoder, own = (sf.read(decode_file(tmp_path / "speech.npz", tmp_path / f"{name}.wav",
                                                       variant=variant))[0]
                                   for name, variant in (("chosen", None), ("speech", "speech"), ("own", OWN_DECODER)))
    assert (chosen == speech_decoder).all() and not (chosen == own).all()


def test_the_bundled_lms_speak_the_bundled_codec_and_the_speech_lm_has_voices():
    for task in LM_TASKS:
        assert default_lm(task).config.codec_fingerprint == default_codec().fingerprint
        assert next(default_lm(task).model.parameters()).dtype == torch.float32  # whatever they are stored as
    assert default_lm() is default_lm("music")  # loaded once per task
    known = voices()
    assert known == voices(default_lm("speech")) and len(known) > 10 and default_voice() in known
    with pytest.raises(ValueError, match=r"one per task \['music', 'speech'\]; got task=None"):
        generate("hi", task=None, duration=0.1, progress=False)


def test_generate_music_with_defaults_gives_the_requested_duration():
    clip = generate("a calm piano melody", duration=1.0, seed=0, progress=False)
    codec = default_codec()
    assert clip.sample_rate == codec.sample_rate
    assert clip.waveform.shape == (codec.channels, round(1.0 * codec.frame_rate) * codec.hop_length)
    assert torch.isfinite(clip.waveform).all() and clip.waveform.pow(2).mean().sqrt() > 1e-3


def test_generate_speech_with_defaults_is_finite_audible_and_bounded():
    clip = generate("Hello, how are you today?", task="speech", duration=2.0, seed=0, progress=False)
    assert clip.voice == default_voice()
    assert 0 < clip.duration <= 2.0 + 1e-6
    assert torch.isfinite(clip.waveform).all() and clip.waveform.pow(2).mean().sqrt() > 1e-3


def test_voices_command_lists_the_voices_and_an_unknown_voice_names_them(capsys):
    assert cli_main(["voices"]) == 0
    listed = capsys.readouterr().out
    assert all(v in listed for v in voices())
    with pytest.raises(ValueError, match="festival-slt-hts"):
        generate("hi", task="speech", voice="no-such-voice", duration=0.1, progress=False)


def test_install_defaults_writes_an_lm_per_task_beside_the_codec_and_refuses_a_mismatch(tmp_path):
    from pipelines.defaults import install_defaults, save_lm

    lm_dir = save_lm(default_lm("speech"), default_codec(), tmp_path / "lm_folder")  # self-contained: has codec/
    models = {"music": lm_dir, "speech": lm_dir}
    assets = install_defaults(DEFAULT_CODEC_DIR, models, assets=tmp_path / "assets")
    assert sorted(p.name for p in (assets / "lm").iterdir()) == ["music", "speech"]
    assert sorted(p.name for p in (assets / "lm" / "music").iterdir()) == ["config.json", "model.safetensors",
                                                                           "text_tokenizer.model"]
    assert RVQCodec.from_pretrained(assets / "codec").fingerprint == default_codec().fingerprint
    half = install_defaults(DEFAULT_CODEC_DIR, models, assets=tmp_path / "half", codec_dtype=torch.float16,
                            lm_dtypes={"music": torch.float16})
    size = lambda a, *part: a.joinpath(*part, "model.safetensors").stat().st_size  # noqa: E731
    assert size(half, "codec") < 0.6 * size(assets, "codec")
    assert size(half, "lm", "music") < 0.6 * size(assets, "lm", "music")
    assert size(half, "lm", "speech") == size(assets, "lm", "speech")  # stored as it was
    with pytest.raises(ValueError, match=r"lm_dtypes names tasks \['sfx'\]"):
        install_defaults(DEFAULT_CODEC_DIR, models, assets=tmp_path / "assets1", lm_dtypes={"sfx": torch.float16})
    assert next(RVQCodec.from_pretrained(half / "codec").parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"an LM for each task \['music', 'speech'\], got \['speech'\]"):
        install_defaults(DEFAULT_CODEC_DIR, {"speech": lm_dir}, assets=tmp_path / "assets1")
    other = CodecConfig.from_dict({**default_codec().config.to_dict(), "dimension": 32})  # another fingerprint
    RVQCodec(other).save_pretrained(tmp_path / "other_codec")
    with pytest.raises(ValueError, match="the music LM .* does not match the codec .*fingerprint"):
        install_defaults(tmp_path / "other_codec", models, assets=tmp_path / "assets2")
    assert not (tmp_path / "assets1").exists() and not (tmp_path / "assets2").exists()


def test_install_defaults_ships_a_decoder_per_task_that_the_tasks_default_codec_reads(tmp_path, monkeypatch):
    import pipelines.defaults as defaults
    from pipelines.defaults import install_defaults, save_lm
    from tokenizer import CheckpointError

    lm_dir = save_lm(default_lm("music"), default_codec(), tmp_path / "lm_folder")
    models = {"music": lm_dir, "speech": lm_dir}
    tuned = RVQCodec.from_pretrained(DEFAULT_CODEC_DIR)
    with torch.no_grad():
        tuned.decoder.backbone.embed.bias.add_(0.01)  # as a decoder fine-tune would: encoder and codebooks untouched
    tuned.save_pretrained(tmp_path / "speech_codec")
    assets = install_defaults(DEFAULT_CODEC_DIR, models, assets=tmp_path / "assets", codec_dtype=torch.float16,
                              decoders={"speech": tmp_path / "speech_codec"})
    assert RVQCodec.decoder_variants(assets / "codec") == ["speech"]
    with pytest.raises(ValueError, match=r"decoders names tasks \['sfx'\]"):
        install_defaults(DEFAULT_CODEC_DIR, models, assets=tmp_path / "bad",
                         decoders={"sfx": tmp_path / "speech_codec"})
    RVQCodec(CodecConfig.from_dict({**default_codec().config.to_dict(), "dimension": 32})).save_pretrained(
        tmp_path / "other_codec")
    with pytest.raises(CheckpointError, match="the speech decoder .* is not a decoder of the codec"):
        install_defaults(DEFAULT_CODEC_DIR, models, assets=tmp_path / "bad",
                         decoders={"speech": tmp_path / "other_codec"})
    assert list((tmp_path / "bad").iterdir()) == []  # nothing written, nothing half-written

    monkeypatch.setattr(defaults, "DEFAULT_CODEC_DIR", assets / "codec")
    monkeypatch.setattr(defaults, "DEFAULT_LM_DIR", assets / "lm")
    default_codec.cache_clear(), default_lm.cache_clear()
    try:
        assert defaults.default_decoder_variants() == ["speech"]
        speech, music = default_codec("speech"), default_codec("music")
        assert music is default_codec() and speech is not music and default_lm("speech").codec is speech
        assert torch.equal(speech.decoder.backbone.embed.bias, tuned.decoder.backbone.embed.bias.half().float())
        assert torch.equal(speech.encoder.backbone.embed.weight, music.encoder.backbone.embed.weight)
        assert defaults.resolve_codec(None, "speech") is speech
        with pytest.raises(CheckpointError, match=r"has no decoder variant 'music'.*it has \['speech'\]"):
            defaults.resolve_codec(None, "music")
    finally:
        default_codec.cache_clear(), default_lm.cache_clear()
