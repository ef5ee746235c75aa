"""`rvqaudio encode` / `rvqaudio decode`: files in, files out, metadata checked, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines import decode_file, encode_file, read_codes
from pipelines.cli import main
from tokenizer import CodesError, RVQCodec

from .conftest import fitted_codec as _codec


@pytest.fixture
def codec_dir(tmp_path):
    _codec().save_pretrained(tmp_path / "codec")
    return tmp_path / "codec"


@pytest.fixture
def wav_file(tmp_path):
    t = np.arange(11025) / 22050  # half a second at 22.05 kHz, stereo: the codec is 8 kHz mono
    wav = np.stack([np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.3
    sf.write(tmp_path / "in.wav", wav, 22050)
    return tmp_path / "in.wav"


def test_cli_encode_then_decode_restores_length_and_rate(tmp_path, codec_dir, wav_file):
    assert main(["encode", str(wav_file), "-o", str(tmp_path / "c.npz"), "--codec", str(codec_dir),
                 "--num-codebooks", "2"]) == 0
    codes, meta = read_codes(tmp_path / "c.npz")
    assert codes.shape == (1, 2, 500) and meta["num_samples"] == 4000 and meta["sample_rate"] == 8000
    assert meta["fingerprint"] == RVQCodec.from_pretrained(codec_dir).fingerprint
    assert main(["decode", str(tmp_path / "c.npz"), "-o", str(tmp_path / "out.wav"), "--codec", str(codec_dir)]) == 0
    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == 8000 and info.frames == 4000 and info.channels == 1


def _add_speech_variant(codec_dir):
    """Save the folder's codec with its decoder weights x 1.5 as its variant "speech"; return that codec."""
    other = RVQCodec.from_pretrained(codec_dir)
    with torch.no_grad():
        for p in other.decoder.parameters():
            p.mul_(1.5)
    other.save_decoder_variant(codec_dir, "speech")
    return other


def test_decode_with_a_decoder_variant_reads_the_same_codes_file(tmp_path, codec_dir, wav_file):
    from tokenizer import CheckpointError

    other = _add_speech_variant(codec_dir)
    assert main(["encode", str(wav_file), "-o", str(tmp_path / "c.npz"), "--codec", str(codec_dir)]) == 0
    for variant in ([], ["--variant", "speech"]):
        assert main(["decode", str(tmp_path / "c.npz"), "-o", str(tmp_path / f"out{len(variant)}.wav"),
                     "--codec", str(codec_dir), *variant]) == 0
    own, speech = (sf.read(tmp_path / f"out{n}.wav")[0] for n in (0, 2))
    codes, meta = read_codes(tmp_path / "c.npz")
    expected = other.decode(codes)[0, 0, :4000].numpy() / meta["gain"]
    assert np.allclose(speech, expected, atol=1e-4) and not np.allclose(own, speech, atol=1e-3)
    with pytest.raises(CheckpointError, match=r"no decoder variant 'music'.*it has \['speech'\]"):
        decode_file(tmp_path / "c.npz", tmp_path / "x.wav", codec=codec_dir, variant="music")
    with pytest.raises(ValueError, match="pass the folder, not a loaded RVQCodec"):
        decode_file(tmp_path / "c.npz", tmp_path / "x.wav", codec=other, variant="speech")
    assert not (tmp_path / "x.wav").exists()


def test_codes_in_the_file_equal_encode(tmp_path, codec_dir, wav_file):
    from tokenizer.audio import load_audio

    codec = RVQCodec.from_pretrained(codec_dir)
    encode_file(wav_file, tmp_path / "c.npz", codec=codec, level=None)
    wav, _ = load_audio(wav_file, sample_rate=8000, channels=1)
    assert torch.equal(read_codes(tmp_path / "c.npz")[0], codec.encode(wav[None]))


def test_decoding_with_another_codec_is_refused(tmp_path, codec_dir, wav_file):
    encode_file(wav_file, tmp_path / "c.npz", codec=codec_dir)
    other = _codec(codebook_size=64)
    with pytest.raises(CodesError, match="fingerprint .* but the codec given has fingerprint"):
        decode_file(tmp_path / "c.npz", tmp_path / "out.wav", codec=other)
    assert not (tmp_path / "out.wav").exists()


def test_cli_reports_bad_input_without_a_traceback(tmp_path, codec_dir, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + bytes(100))
    assert main(["encode", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "c.npz"), "--codec", str(codec_dir)]) == 2
    assert "bad.wav" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()
    assert main(["decode", str(tmp_path / "nope.npz"), "-o", str(tmp_path / "o.wav"), "--codec", str(codec_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_failed_write_leaves_no_partial_codes_file(tmp_path, codec_dir, wav_file, monkeypatch):
    import pipelines.codec_files as codec_files

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(codec_files.os, "replace", broken_replace)
    with pytest.raises(OSError):
        encode_file(wav_file, tmp_path / "c.npz", codec=codec_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codec", "in.wav"]


def test_without_a_bundled_codec_the_error_says_what_to_pass(tmp_path, wav_file, monkeypatch):
    import pipelines.defaults as defaults

    monkeypatch.setattr(defaults, "DEFAULT_CODEC_DIR", tmp_path / "none")
    defaults.default_codec.cache_clear()
    with pytest.raises(ValueError, match="--codec DIR"):
        encode_file(wav_file, tmp_path / "c.npz")


# ---- the folder's decoder choice ------------------------------------------------------------------------------


def _leaning_choice(codebook_size: int, towards_speech: bool):
    """A decoder choice whose answer does not depend on the codes: a bias far to one side."""
    from tokenizer.decoder_choice import FEATURE_CODEBOOKS, DecoderChoice

    return DecoderChoice(torch.zeros(FEATURE_CODEBOOKS * codebook_size), 20.0 if towards_speech else -20.0,
                         codebook_size, "speech")


@pytest.mark.parametrize("towards_speech", [True, False])
def test_decode_follows_the_folder_s_decoder_choice_unless_told(tmp_path, codec_dir, wav_file, towards_speech):
    from pipelines.codec_files import OWN_DECODER

    _add_speech_variant(codec_dir)
    encode_file(wav_file, tmp_path / "c.npz", codec=codec_dir)

    def decoded(variant=None):
        return sf.read(decode_file(tmp_path / "c.npz", tmp_path / f"{variant}.wav", codec=codec_dir,
                                   variant=variant))[0]

    own, speech = decoded(OWN_DECODER), decoded("speech")
    assert np.array_equal(decoded(), own)  # no choice in the folder: its own decoder
    _leaning_choice(32, towards_speech).save(codec_dir)
    assert np.array_equal(decoded(), speech if towards_speech else own)
    assert np.array_equal(decoded(OWN_DECODER), own) and np.array_equal(decoded("speech"), speech)


def test_decoder_choice_fits_separable_codes_and_round_trips(tmp_path):
    from tokenizer.decoder_choice import DecoderChoice, code_shares

    generator = torch.Generator().manual_seed(0)
    speech = [torch.randint(0, 16, (4, 40), generator=generator) for _ in range(30)]  # low codes
    music = [torch.randint(12, 32, (4, 40), generator=generator) for _ in range(50)]  # high codes, some overlap
    choice = DecoderChoice.fit(speech, music, 32, "speech")
    tests = [torch.randint(0, 16, (1, 4, 25), generator=generator), torch.randint(12, 32, (1, 4, 25),
                                                                                    generator=generator)]
    assert [choice.choose(codes)[0] for codes in tests] == ["speech", None]
    choice.save(tmp_path)
    loaded = DecoderChoice.load(tmp_path)
    both = torch.cat(tests)
    assert torch.equal(loaded.speech_probability(both), choice.speech_probability(both))
    padded = torch.cat([tests[0], torch.full((1, 4, 10), -1)], dim=2)  # generated codes past an item's end
    assert torch.allclose(code_shares(padded, 32), code_shares(tests[0], 32))
    assert torch.allclose(code_shares(both, 32).view(2, 2, 32).sum(dim=2), torch.ones(2, 2))
    assert DecoderChoice.load(tmp_path / "nothing") is None


def test_a_damaged_decoder_choice_is_refused_by_name(tmp_path):
    from tokenizer import CheckpointError
    from tokenizer.decoder_choice import CHOICE_WEIGHTS, DecoderChoice

    _leaning_choice(32, True).save(tmp_path)
    (tmp_path / CHOICE_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"decoder choice in .* cannot be read"):
        DecoderChoice.load(tmp_path)
    with pytest.raises(ValueError, match=r"weight must have shape \[64\]"):
        DecoderChoice(torch.zeros(10), 0.0, 32, "speech")


def test_a_file_is_encoded_at_the_codec_s_level_and_decoded_back_at_its_own(tmp_path, codec_dir, wav_file):
    from tokenizer.audio import load_audio
    from tokenizer.level import CodecLevel, rms_of

    codec = RVQCodec.from_pretrained(codec_dir)
    wav, _ = load_audio(wav_file, sample_rate=8000, channels=1)
    for level in (CodecLevel(), CodecLevel(-30.0)):
        encode_file(wav_file, tmp_path / "c.npz", codec=codec, level=level)
        codes, meta = read_codes(tmp_path / "c.npz")
        gain = meta["gain"]
        # the gain of the file's own RMS (read at its rate, mixed to the codec's channels), close to the decoded one
        assert gain == pytest.approx(level.gain(rms_of(wav)), rel=0.02)
        assert torch.equal(codes, codec.encode(wav[None] * gain))
        decode_file(tmp_path / "c.npz", tmp_path / "out.wav", codec=codec)
        out = torch.from_numpy(sf.read(tmp_path / "out.wav", dtype="float32")[0])
        expected = codec.decode(codes)[0, 0, :out.shape[-1]] / gain
        assert torch.allclose(out, expected.clamp(-1, 1), atol=1 / 2**15)  # a 16-bit file


def test_keep_level_encodes_the_file_as_it_is(tmp_path, codec_dir, wav_file):
    from tokenizer.audio import load_audio

    codec = RVQCodec.from_pretrained(codec_dir)
    assert main(["encode", str(wav_file), "-o", str(tmp_path / "c.npz"), "--codec", str(codec_dir),
                 "--keep-level"]) == 0
    codes, meta = read_codes(tmp_path / "c.npz")
    wav, _ = load_audio(wav_file, sample_rate=8000, channels=1)
    assert meta["gain"] == 1.0 and torch.equal(codes, codec.encode(wav[None]))
    assert main(["encode", str(wav_file), "-o", str(tmp_path / "d.npz"), "--codec", str(codec_dir),
                 "--level-dbfs", "-30"]) == 0
    assert read_codes(tmp_path / "d.npz")[1]["gain"] < 1  # the file (about -13 dBFS) is lowered to -30
    with pytest.raises(SystemExit, match="exclude each other"):
        main(["encode", str(wav_file), "-o", str(tmp_path / "e.npz"), "--keep-level", "--level-dbfs", "-20"])
