"""Fuzzing the two readers of user files, the codes-file reader and the audio loader: random bytes, truncations,
flipped bytes and fields of the wrong dtype or shape give a clean result or a project error naming the file
(CodesError, AudioInputError: `tokenizer.CodecError`), never another exception. Seeded, a few hundred cases each."""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines.codec_files import read_codes
from tokenizer import AudioInputError, CodecError
from tokenizer.audio import load_audio

FIELDS = {"codes": np.arange(4 * 25, dtype=np.int16).reshape(4, 25) % 32, "format_version": np.array(1),
          "fingerprint": np.array("0123456789abcdef"), "sample_rate": np.array(8000), "frame_rate": np.array(1000.0),
          "codebook_size": np.array(32), "channels": np.array(1), "num_samples": np.array(200)}
# Values of the wrong dtype, shape or range for any field.
WRONG_VALUES = [np.array(1.5), np.array(np.nan), np.array(-np.inf), np.array("8000"), np.array(b"ab"), np.array(True),
                np.array(1 + 2j), np.array(-7), np.array(0), np.array(2**62), np.array([1, 2]), np.zeros((0,)),
                np.zeros((2, 3)), np.zeros((2, 3, 4), np.int16), np.full((4, 25), np.nan), np.full((4, 25), -1),
                np.full((4, 25), 40, np.int64), np.zeros((4, 25), np.uint64), np.zeros((4, 0), np.int16),
                np.array(5, dtype="m8[s]"), np.array("2020-01-01", dtype="M8[D]"), np.zeros((4, 25), np.float16),
                np.array(["a", "b"])]


def _npz(fields: dict, compressed: bool) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **fields)
    return buffer.getvalue()


def _flip(data: bytes, rng: np.random.Generator, within: int | None = None) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        out[int(rng.integers(0, min(len(out), within or len(out))))] = int(rng.integers(0, 256))
    return bytes(out)


def _codes_cases(rng: np.random.Generator, count: int):
    """(label, bytes) of damaged and ill-typed codes files."""
    good = {False: _npz(FIELDS, False), True: _npz(FIELDS, True)}
    for i in range(count):
        kind, compressed = i % 5, bool(i % 2)
        if kind == 0:
            yield "random bytes", rng.bytes(int(rng.integers(0, 3000)))
        elif kind == 1:
            yield "truncated", good[compressed][: int(rng.integers(0, len(good[compressed])))]
        elif kind == 2:
            yield "flipped bytes", _flip(good[compressed], rng)
        else:  # one or two fields replaced by a value of the wrong dtype or shape, or dropped
            fields = dict(FIELDS)
            for _ in range(kind - 2):
                name = list(FIELDS)[int(rng.integers(0, len(FIELDS)))]
                if rng.random() < 0.15:
                    fields.pop(name, None)
                else:
                    fields[name] = WRONG_VALUES[int(rng.integers(0, len(WRONG_VALUES)))]
            yield "wrong fields", _npz(fields, compressed)


def _outcome(call, path) -> str:
    """'ok' or 'refused'; fails the test on any exception but a CodecError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. TruncatedAudioWarning: a clean result
            call(path)
    except CodecError as e:
        assert str(path) in str(e), str(e)
        return "refused"
    return "ok"


def test_the_codes_reader_gives_codes_or_a_codes_error(tmp_path):
    rng = np.random.default_rng(20261207)
    outcomes: dict[str, set[str]] = {}
    for i, (label, data) in enumerate(_codes_cases(rng, 400)):
        path = tmp_path / f"case{i}.npz"
        path.write_bytes(data)
        try:
            outcome = _outcome(read_codes, path)
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 (the point of the test)
            pytest.fail(f"case {i} ({label}): {type(e).__name__}: {e}")
        if outcome == "ok":
            codes, meta = read_codes(path)
            assert codes.dtype == torch.long and codes.dim() == 3 and int(codes.min()) >= 0
            assert meta["num_samples"] >= 0 and meta["sample_rate"] > 0
        outcomes.setdefault(label, set()).add(outcome)
        path.unlink()
    assert outcomes["random bytes"] == {"refused"} and outcomes["truncated"] >= {"refused"}
    assert outcomes["wrong fields"] == {"ok", "refused"}  # some replacements are harmless (an unread field)


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("fuzz_audio")
    t = np.arange(8000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(root / "a.wav", tone, 16000, subtype="PCM_16")
    sf.write(root / "a.flac", np.stack([tone, tone], 1), 16000)
    assert shutil.which("ffmpeg"), "ffmpeg is missing: run `make setup`"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(root / "a.wav"), "-ar", "44100",
                    "-c:a", "libmp3lame", str(root / "a.mp3")], check=True)
    return {suffix: (root / f"a{suffix}").read_bytes() for suffix in (".wav", ".flac", ".mp3")}


def test_the_audio_loader_gives_audio_or_an_audio_input_error(tmp_path, audio_files):
    rng = np.random.default_rng(7)
    suffixes = list(audio_files) + [".ogg"]
    outcomes: dict[str, set[str]] = {}
    for i in range(240):
        suffix = suffixes[i % 4]
        good = audio_files.get(suffix, audio_files[".flac"])  # .ogg: another container's bytes under its name
        kind = (i // 4) % 4
        label, data = [("random bytes", lambda: rng.bytes(int(rng.integers(0, 3000)))),
                       ("truncated", lambda: good[: int(rng.integers(0, len(good)))]),
                       ("flipped header", lambda: _flip(good, rng, within=120)),
                       ("flipped bytes", lambda: _flip(good, rng))][kind]
        data = data()
        path = tmp_path / f"case{i}{suffix}"
        path.write_bytes(data)
        strict = bool(i % 2)
        try:
            # resampled: a flipped rate field must be refused, not turned into a huge resampling kernel
            outcome = _outcome(lambda p: load_audio(p, sample_rate=16000, channels=1, strict=strict), path)
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 (the point of the test)
            pytest.fail(f"case {i} ({label}, {suffix}): {type(e).__name__}: {e}")
        outcomes.setdefault(label, set()).add(outcome)
        path.unlink()
    assert outcomes["random bytes"] == {"refused"} and outcomes["truncated"] == {"ok", "refused"}


def test_an_absurd_header_rate_is_refused_without_a_huge_resampling(tmp_path, monkeypatch):
    import tokenizer.audio as audio

    sf.write(tmp_path / "x.wav", np.zeros(1600), 16000, subtype="PCM_16")
    data = bytearray((tmp_path / "x.wav").read_bytes())
    data[24:28] = (1879064192).to_bytes(4, "little")  # the fmt chunk's sample rate
    (tmp_path / "x.wav").write_bytes(bytes(data))

    def guarded(wav, orig_freq, new_freq, *args, **kwargs):
        raise AssertionError(f"resampling {orig_freq} Hz -> {new_freq} Hz was attempted")
    monkeypatch.setattr(audio.AF, "resample", guarded)
    with pytest.raises(AudioInputError, match=r"x\.wav"):
        load_audio(tmp_path / "x.wav", sample_rate=8000)
