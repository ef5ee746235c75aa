"""A file that decodes to less than its header states (a cut download or copy) is used with a TruncatedAudioWarning
giving both durations, or refused with strict=True; a complete file loads silently."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import soundfile as sf

from tokenizer import AudioInputError
from tokenizer.audio import TruncatedAudioWarning, load_audio


def _sine_mp3(path, seconds: float, sample_rate: int):
    assert shutil.which("ffmpeg"), "ffmpeg is missing: run `make setup`"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}:sample_rate={sample_rate}", "-c:a", "libmp3lame",
                    str(path)], check=True)
    return path


def _cut(path, out, fraction: float = 0.5):
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def _loads_silently(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        return load_audio(path, **kwargs)


@pytest.fixture(scope="module")
def mp3(tmp_path_factory):
    return _sine_mp3(tmp_path_factory.mktemp("mp3") / "tone.mp3", 2.0, 44100)


def test_an_mp3_cut_in_half_warns_with_both_durations(mp3, tmp_path):
    cut = _cut(mp3, tmp_path / "cut.mp3")
    with pytest.warns(TruncatedAudioWarning, match=r"cut\.mp3' looks truncated: it decoded to 0\.\d\d s, its header "
                                                   r"states 2\.\d\d s; using the readable part") as record:
        wav, sr = load_audio(cut)
    assert len(record) == 1 and record[0].filename == __file__  # points at the caller's line
    assert sr == 44100 and 0.5 < wav.shape[-1] / sr < 1.5  # the readable part is used
    with pytest.raises(AudioInputError, match=r"cut\.mp3' looks truncated: .* refusing it \(strict\)"):
        load_audio(cut, strict=True)


def test_a_wav_whose_data_is_shorter_than_its_header_states_warns(tmp_path):
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "whole.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16000, subtype="PCM_16")
    cut = _cut(tmp_path / "whole.wav", tmp_path / "cut.wav", 0.6)
    with pytest.warns(TruncatedAudioWarning, match=r"decoded to 0\.60 s, its header states 1\.00 s"):
        wav, sr = load_audio(cut)
    data = cut.read_bytes()
    assert sr == 16000 and wav.shape == (1, (len(data) - data.find(b"data") - 8) // 2)  # every whole sample there
    with pytest.warns(TruncatedAudioWarning):  # resampled and down-mixed as any file
        assert load_audio(cut, sample_rate=8000, channels=1)[0].shape[-1] == pytest.approx(wav.shape[-1] / 2, abs=1)
    with pytest.raises(AudioInputError, match="refusing it"):
        load_audio(cut, strict=True)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_complete_lossless_files_load_without_a_warning(tmp_path, suffix):
    t = np.arange(8000) / 16000
    sf.write(tmp_path / f"whole{suffix}", 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    wav, sr = _loads_silently(tmp_path / f"whole{suffix}", strict=True)
    assert wav.shape == (1, 8000) and sr == 16000


def test_a_complete_44k_mp3_loads_without_a_warning(mp3):
    wav, sr = _loads_silently(mp3, strict=True)
    assert sr == 44100 and abs(wav.shape[-1] / sr - 2.0) < 0.01


def test_a_streamed_wav_with_an_open_data_size_is_not_called_truncated(tmp_path):
    """Writers that stream (ffmpeg to a pipe) leave the data size unknown (0xFFFFFFFF): nothing to compare."""
    t = np.arange(8000) / 16000
    sf.write(tmp_path / "x.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16000, subtype="PCM_16")
    data = bytearray((tmp_path / "x.wav").read_bytes())
    at = data.find(b"data")
    data[at + 4: at + 8] = b"\xff\xff\xff\xff"
    (tmp_path / "stream.wav").write_bytes(bytes(data))
    wav, _ = _loads_silently(tmp_path / "stream.wav", strict=True)
    assert wav.shape[-1] == 8000


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050])
def test_a_complete_low_rate_mp3_loads_without_a_warning(tmp_path, sample_rate):
    mp3 = _sine_mp3(tmp_path / "tone.mp3", 1.0, sample_rate)
    wav, sr = _loads_silently(mp3, strict=True)
    assert sr == sample_rate and abs(wav.shape[-1] / sr - 1.0) < 0.01
