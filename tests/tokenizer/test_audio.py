"""Audio I/O: lossless round trips, compressed formats through ffmpeg, resampling, channels, and failures."""

import math
import shutil
import subprocess

import pytest
import soundfile as sf
import torch

from tokenizer import audio as audio_mod
from tokenizer.audio import audio_duration, load_audio, resample, save_audio, to_channels
from tokenizer.errors import AudioInputError

PCM16_STEP = 1.0 / 32768


def _sine(freq: float, seconds: float, sr: int, channels: int = 1, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    wav = amp * torch.sin(2 * math.pi * freq * t)
    # a different frequency per channel, so a swapped or duplicated channel shows
    return torch.stack([wav * (1.0 - 0.3 * c) for c in range(channels)])  # (C, N)


def _peak_hz(wav: torch.Tensor, sr: int) -> float:
    spectrum = torch.fft.rfft(wav.mean(dim=0)).abs()
    return spectrum.argmax().item() * sr / wav.shape[-1]


def _ffmpeg(tmp_path, name: str, args: list[str]):
    # ffmpeg is installed by `make setup`; its absence is a broken setup, not a reason to skip.
    assert shutil.which("ffmpeg"), "ffmpeg is missing: run `make setup`"
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    d = tmp_path_factory.mktemp("compressed")
    mp3 = _ffmpeg(d, "tone.mp3", ["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=44100",
                                  "-ac", "2", "-c:a", "libmp3lame", "-b:a", "64k"])
    opus = _ffmpeg(d, "tone.opus", ["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=48000",
                                    "-c:a", "libopus", "-b:a", "32k"])
    return {"mp3": mp3, "opus": opus}


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_save_load_round_trip_pcm16(tmp_path, suffix, channels):
    wav = _sine(440, 0.25, 16000, channels) + 0.01 * torch.randn(channels, 4000).clamp(-3, 3)
    path = tmp_path / f"x{suffix}"
    save_audio(path, wav, 16000)
    loaded, sr = load_audio(path)
    assert sr == 16000 and loaded.dtype == torch.float32 and loaded.shape == wav.shape
    assert (loaded - wav).abs().max() <= 2 * PCM16_STEP
    assert _files(tmp_path) == [f"x{suffix}"]  # no temporary file left behind


def test_pcm24_is_finer_than_pcm16(tmp_path):
    wav = _sine(300, 0.1, 8000) + 1e-3 * torch.randn(1, 800)
    save_audio(tmp_path / "x.wav", wav, 8000, subtype="PCM_24")
    loaded, _ = load_audio(tmp_path / "x.wav")
    assert (loaded - wav).abs().max() < PCM16_STEP / 16


@pytest.mark.parametrize("name, subtype", [("x.flac", "PCM_16"), ("x.wav", "FLOAT")])
def test_save_accepts_1d_and_clips(tmp_path, name, subtype):
    wav = torch.tensor([0.0, 1.7, -2.5, 0.5] * 100)
    save_audio(tmp_path / name, wav, 8000, subtype=subtype)  # libsndfile itself would keep 1.7 in a FLOAT wav
    loaded, _ = load_audio(tmp_path / name)
    assert loaded.shape == (1, 400)
    # clipped to full scale, not wrapped around to the opposite sign
    assert loaded.abs().max() <= 1.0
    assert loaded[0, 1] > 1 - 2 * PCM16_STEP and loaded[0, 2] < -1 + 2 * PCM16_STEP
    assert abs(loaded[0, 3] - 0.5) <= PCM16_STEP


def test_ogg_vorbis_round_trip_is_close(tmp_path):
    wav = _sine(440, 0.5, 22050)
    save_audio(tmp_path / "x.ogg", wav, 22050)  # a PCM subtype means Vorbis for ogg
    assert sf.info(str(tmp_path / "x.ogg")).subtype == "VORBIS"
    loaded, sr = load_audio(tmp_path / "x.ogg")
    assert sr == 22050 and loaded.shape == wav.shape
    assert abs(_peak_hz(loaded, sr) - 440) < 5
    assert abs(loaded.pow(2).mean().sqrt() - wav.pow(2).mean().sqrt()) < 0.02


def test_save_creates_missing_folder_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "x.wav"
    save_audio(path, torch.zeros(1, 100), 16000)
    save_audio(path, torch.full((1, 50), 0.25), 16000)
    loaded, _ = load_audio(path)
    assert loaded.shape == (1, 50) and abs(loaded.mean() - 0.25) < PCM16_STEP


# ------------------------------------------------------------------------------ compressed via torchcodec


def test_mp3_loads_through_torchcodec(compressed):
    wav, sr = load_audio(compressed["mp3"])
    assert sr == 44100 and wav.shape[0] == 2 and wav.dtype == torch.float32
    assert abs(wav.shape[-1] - 44100) < 0.05 * 44100
    assert abs(_peak_hz(wav, sr) - 440) < 5
    assert wav.abs().max() <= 1.0


def test_opus_loads_at_48k(compressed):
    wav, sr = load_audio(compressed["opus"])
    assert sr == 48000 and wav.shape[0] == 1
    assert abs(wav.shape[-1] - 48000) < 0.05 * 48000
    assert abs(_peak_hz(wav, sr) - 440) < 5


def test_load_resamples_and_downmixes(compressed):
    wav, sr = load_audio(compressed["mp3"], sample_rate=16000, channels=1)
    native, native_sr = load_audio(compressed["mp3"])
    assert sr == 16000 and wav.shape == (1, math.ceil(native.shape[-1] * 16000 / native_sr))
    assert abs(_peak_hz(wav, sr) - 440) < 5


def test_load_mono_to_stereo(tmp_path):
    save_audio(tmp_path / "m.wav", _sine(200, 0.1, 8000), 8000)
    wav, _ = load_audio(tmp_path / "m.wav", channels=2)
    assert wav.shape == (2, 800) and torch.equal(wav[0], wav[1])


def test_audio_duration(tmp_path, compressed):
    save_audio(tmp_path / "x.wav", torch.zeros(2, 12345), 24000)
    save_audio(tmp_path / "x.flac", torch.zeros(1, 8000), 16000)
    assert audio_duration(tmp_path / "x.wav") == pytest.approx(12345 / 24000)
    assert audio_duration(tmp_path / "x.flac") == pytest.approx(0.5)
    assert audio_duration(compressed["mp3"]) == pytest.approx(1.0, abs=0.1)  # header estimate
    assert audio_duration(compressed["opus"]) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(AudioInputError, match="does not exist"):
        audio_duration(tmp_path / "nope.wav")


# --------------------------------------------------------------------------------- resample / channels


@pytest.mark.parametrize("orig, new", [(48000, 16000), (16000, 24000), (44100, 22050), (22050, 16000)])
def test_resample_length_follows_ratio_and_keeps_pitch(orig, new):
    wav = _sine(440, 0.2, orig, channels=2)
    out = resample(wav, orig, new)
    assert out.shape == (2, math.ceil(wav.shape[-1] * new / orig))
    assert abs(_peak_hz(out, new) - 440) < 6


def test_resample_identity_batched_and_empty():
    wav = torch.randn(3, 2, 100)  # (B, C, N)
    assert resample(wav, 16000, 16000) is wav
    assert resample(wav, 16000, 8000).shape == (3, 2, 50)
    assert resample(torch.zeros(1, 0), 16000, 8000).shape == (1, 0)
    with pytest.raises(AudioInputError, match="orig_sr"):
        resample(wav, 0, 8000)


def test_to_channels():
    stereo = torch.randn(4, 2, 10)  # (B, C, N)
    mono = to_channels(stereo, 1)
    assert mono.shape == (4, 1, 10) and torch.allclose(mono[:, 0], (stereo[:, 0] + stereo[:, 1]) / 2)
    up = to_channels(mono, 2)
    assert up.shape == (4, 2, 10) and torch.equal(up[:, 0], up[:, 1]) and torch.equal(up[:, 0], mono[:, 0])
    up[:, 0] += 1  # a real copy, not a view sharing memory across channels
    assert not torch.equal(up[:, 0], up[:, 1])
    assert to_channels(stereo, 2) is stereo
    assert to_channels(torch.randn(6, 10), 1).shape == (1, 10)
    with pytest.raises(AudioInputError, match="3 channels to 2"):
        to_channels(torch.randn(3, 10), 2)
    with pytest.raises(AudioInputError, match="2 channels to 4"):
        to_channels(torch.randn(2, 10), 4)


# ------------------------------------------------------------------------------------------- failures


def test_missing_file_names_path(tmp_path):
    with pytest.raises(AudioInputError, match="nope.flac"):
        load_audio(tmp_path / "nope.flac")
    with pytest.raises(AudioInputError, match="not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_corrupt_file_names_path_and_decoder_message(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(torch.randint(0, 256, (20000,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(AudioInputError, match=rf"noise\{suffix}.*(soundfile|torchcodec)") as info:
        load_audio(path)
    assert "cannot decode" in str(info.value)


def test_bad_load_arguments(tmp_path):
    save_audio(tmp_path / "x.wav", torch.zeros(1, 10), 8000)
    with pytest.raises(AudioInputError, match="channels"):
        load_audio(tmp_path / "x.wav", channels=3)
    with pytest.raises(AudioInputError, match="sample_rate"):
        load_audio(tmp_path / "x.wav", sample_rate=-1)


@pytest.mark.parametrize(
    "wav, rate, name, match",
    [
        (torch.tensor([[0.0, float("nan"), 0.1]]), 16000, "x.wav", "NaN"),
        (torch.tensor([[0.0, float("inf")]]), 16000, "x.wav", "NaN or infinite"),
        (torch.zeros(1, 1, 10), 16000, "x.wav", r"shape \(1, 1, 10\)"),
        (torch.zeros(1, 10, dtype=torch.int16), 16000, "x.wav", "float"),
        (torch.zeros(1, 10), 0, "x.wav", "sample_rate"),
        (torch.zeros(1, 10), 16000, "x.mp3", "writes"),
    ],
)
def test_invalid_save_raises_and_writes_nothing(tmp_path, wav, rate, name, match):
    with pytest.raises(AudioInputError, match=match):
        save_audio(tmp_path / name, wav, rate)
    assert _files(tmp_path) == []


def test_invalid_subtype(tmp_path):
    with pytest.raises(AudioInputError, match="not valid for FLAC"):
        save_audio(tmp_path / "x.flac", torch.zeros(1, 10), 16000, subtype="FLOAT")
    assert _files(tmp_path) == []


def test_unwritable_path_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        save_audio(blocker / "x.wav", torch.zeros(1, 10), 16000)
    assert _files(tmp_path) == ["file"]


def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "x.wav"
    save_audio(path, torch.full((1, 100), 0.5), 16000)
    before = path.read_bytes()

    def broken_write(file, data, samplerate, **kwargs):
        with open(file, "wb") as f:
            f.write(b"RIFF half a header")
        raise sf.LibsndfileError(0, prefix="disk full while writing: ")

    monkeypatch.setattr(audio_mod.sf, "write", broken_write)
    with pytest.raises(AudioInputError, match="cannot write"):
        save_audio(path, torch.zeros(1, 100), 16000)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["x.wav"]
