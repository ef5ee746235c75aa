"""Codes files (.npz) are data checked field by field: a wrong, damaged or pickled file is a CodesError naming the
file and the field, read without unpickling, and `decode_file` writes nothing for it."""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines import decode_file, encode_file, read_codes
from tokenizer import CodesError, RVQCodec

from .conftest import fitted_codec as _codec


@pytest.fixture(scope="module")
def codec() -> RVQCodec:
    return _codec()


@pytest.fixture(scope="module")
def good(codec, tmp_path_factory):
    """(a codes file of 0.1 s of a tone, its fields as written)."""
    root = tmp_path_factory.mktemp("codes")
    t = np.arange(800) / 8000
    sf.write(root / "in.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 8000)
    encode_file(root / "in.wav", root / "good.npz", codec=codec)
    with np.load(root / "good.npz", allow_pickle=False) as data:
        fields = {k: data[k] for k in data.files}
    return root / "good.npz", fields


def _write(path, fields: dict, compressed: bool = True, pickled: bool = False):
    buffer = io.BytesIO()
    if pickled:
        np.savez(buffer, allow_pickle=True, **fields)
    elif compressed:
        np.savez_compressed(buffer, **fields)
    else:
        np.savez(buffer, **fields)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_good_file_round_trips(good, codec, tmp_path):
    path, fields = good
    codes, meta = read_codes(path)
    assert codes.shape == (1, 4, 100) and codes.dtype == torch.long
    assert meta["fingerprint"] == codec.fingerprint and meta["num_samples"] == 800 and meta["sample_rate"] == 8000
    assert torch.equal(codes[0], torch.from_numpy(fields["codes"].astype(np.int64)))
    out = decode_file(path, tmp_path / "out.wav", codec=codec)
    assert sf.info(out).frames == 800 and sf.info(out).samplerate == 8000


# field -> (a bad value, what the message must say about it)
BAD_FIELDS = {
    "float codes": ("codes", lambda f: f["codes"].astype(np.float32), "must be integer codes"),
    "NaN codes": ("codes", lambda f: np.where(f["codes"] > 3, np.nan, f["codes"]), "must be integer codes"),
    "boolean codes": ("codes", lambda f: f["codes"] > 3, "must be integer codes"),
    "1-D codes": ("codes", lambda f: f["codes"][0], r"must be integer codes \(K, T\), got int16 with shape \(100,\)"),
    "empty codes": ("codes", lambda f: f["codes"][:, :0], "is empty"),
    "codes above the codebook": ("codes", lambda f: f["codes"] + 32, r"outside \[0, 32\)"),
    "negative codes": ("codes", lambda f: f["codes"] - 1 - f["codes"].max(), r"holds values in \[-"),
    "negative num_samples": ("num_samples", lambda f: np.array(-5), "must be >= 0, got -5"),
    "float num_samples": ("num_samples", lambda f: np.array(800.5), "non-negative integer"),
    "string sample_rate": ("sample_rate", lambda f: np.array("8000"), r"positive integer \(Hz\), got <U4"),
    "zero sample_rate": ("sample_rate", lambda f: np.array(0), "must be positive, got 0"),
    "an array for sample_rate": ("sample_rate", lambda f: np.array([8000, 8000]), r"shape \(2,\)"),
    "NaN frame_rate": ("frame_rate", lambda f: np.array(np.nan), "must be positive, got nan"),
    "bytes fingerprint": ("fingerprint", lambda f: np.array(b"abc"), "must be a string"),
    "negative codebook_size": ("codebook_size", lambda f: np.array(-32), "must be positive"),
    "zero gain": ("gain", lambda f: np.array(0.0), "must be positive, got 0.0"),
    "NaN gain": ("gain", lambda f: np.array(np.nan), "must be positive, got nan"),
    "string gain": ("gain", lambda f: np.array("2"), "must be a positive number"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_a_bad_field_is_named(good, codec, tmp_path, case):
    path, fields = good
    name, make, expected = BAD_FIELDS[case]
    bad = _write(tmp_path / "bad.npz", {**fields, name: make(fields)})
    with pytest.raises(CodesError, match=expected) as error:
        read_codes(bad)
    assert str(bad) in str(error.value) and repr(name) in str(error.value)
    with pytest.raises(CodesError):
        decode_file(bad, tmp_path / "out.wav", codec=codec)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("name", ["codes", "fingerprint", "sample_rate", "num_samples"])
def test_a_missing_field_is_named(good, tmp_path, name):
    path, fields = good
    bad = _write(tmp_path / "bad.npz", {k: v for k, v in fields.items() if k != name})
    with pytest.raises(CodesError, match=rf"lacks \['{name}'\]; re-encode it"):
        read_codes(bad)


def test_fields_that_disagree_with_the_codec_are_refused_by_decode(good, codec, tmp_path):
    path, fields = good
    cases = {"num_samples": (np.array(100 * codec.hop_length + 1), "more than its 100 frames can hold"),
             "sample_rate": (np.array(16000), "is 16000, the codec's is 8000"),
             "codebook_size": (np.array(64), "is 64, the codec's is 32"),
             "channels": (np.array(2), "is 2, the codec's is 1")}
    for name, (value, expected) in cases.items():
        bad = _write(tmp_path / f"{name}.npz", {**fields, name: value})
        read_codes(bad)  # well-formed on its own
        with pytest.raises(CodesError, match=rf"{bad.name}.*'{name}'.*{expected}"):
            decode_file(bad, tmp_path / "out.wav", codec=codec)
        assert not (tmp_path / "out.wav").exists()
    more = _write(tmp_path / "more.npz", {**fields, "codes": np.concatenate([fields["codes"]] * 2)})
    with pytest.raises(CodesError, match="holds 8 codebooks, the codec has 4"):
        decode_file(more, tmp_path / "out.wav", codec=codec)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("damage", ["empty file", "half of a good file", "not a zip", "a pickle",
                                    "an uncompressed file cut short"])
def test_damaged_files_are_codes_errors_naming_the_file(good, codec, tmp_path, damage):
    path, fields = good
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    if damage == "empty file":
        bad.write_bytes(b"")
    elif damage == "half of a good file":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "not a zip":
        bad.write_text("codes: 1 2 3\n")
    elif damage == "a pickle":
        bad.write_bytes(pickle.dumps({"codes": [[1, 2]]}))
    else:
        plain = _write(tmp_path / "plain.npz", fields, compressed=False).read_bytes()
        bad.write_bytes(plain[: len(plain) - 40])
    with pytest.raises(CodesError, match="is not a readable codes file") as error:
        read_codes(bad)
    assert str(bad) in str(error.value)
    with pytest.raises(CodesError):
        decode_file(bad, tmp_path / "out.wav", codec=codec)
    assert not (tmp_path / "out.wav").exists()


def test_an_object_field_is_never_unpickled(good, tmp_path, monkeypatch):
    path, fields = good
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a))
    for name in ("codes", "fingerprint", "extra"):
        value = np.array([{"a": 1}, None], dtype=object) if name != "fingerprint" else np.array({"a": 1}, dtype=object)
        bad = _write(tmp_path / f"{name}.npz", {**fields, name: value}, pickled=True)
        with pytest.raises(CodesError, match="Object arrays cannot be loaded when allow_pickle=False") as error:
            read_codes(bad)
        assert str(bad) in str(error.value)
    assert calls == []


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CodesError, match=r"nope\.npz' does not exist"):
        read_codes(tmp_path / "nope.npz")


def test_a_file_with_the_legacy_fingerprint_decodes_with_a_warning(good, codec, tmp_path):
    path, fields = good
    old = _write(tmp_path / "old.npz", {**fields, "fingerprint": np.array(codec.legacy_fingerprint)})
    with pytest.warns(UserWarning, match=r"old\.npz.*older rvqaudio.*re-encode"):
        out = decode_file(old, tmp_path / "old.wav", codec=codec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current fingerprint: no warning
        decode_file(path, tmp_path / "new.wav", codec=codec)
    assert np.array_equal(sf.read(out)[0], sf.read(tmp_path / "new.wav")[0])


# ---- found while writing these tests (see the report): not yet project errors -----------------------------------

def test_a_single_array_file_is_a_codes_error(good, tmp_path):
    bad = tmp_path / "one.npz"
    with open(bad, "wb") as f:
        np.save(f, good[1]["codes"])
    with pytest.raises(CodesError, match="one array"):
        read_codes(bad)


def test_an_unknown_array_field_is_kept_or_named(good, tmp_path):
    path, fields = good
    extra = _write(tmp_path / "extra.npz", {**fields, "extra": np.arange(3)})
    try:
        read_codes(extra)
    except CodesError as e:
        assert "extra" in str(e)


def test_a_member_flagged_encrypted_is_a_codes_error(good, tmp_path):
    data = bytearray(good[0].read_bytes())
    central = data.find(b"PK\x01\x02")  # the first central directory entry: its flags are at offset 8
    data[central + 8] |= 1
    (tmp_path / "enc.npz").write_bytes(bytes(data))
    with pytest.raises(CodesError, match=r"enc\.npz"):
        read_codes(tmp_path / "enc.npz")
