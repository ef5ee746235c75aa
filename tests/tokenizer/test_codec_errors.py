"""Every bad input gets an error that names the problem and the expected value."""

from __future__ import annotations

import json

import pytest
import torch

from tokenizer import (AudioInputError, CheckpointError, CodecConfig, CodesError, ConfigError, RVQCodec)

from .conftest import tiny_config


@pytest.mark.parametrize("wav, match", [
    (torch.zeros(1, 1, 0), r"0 samples .* at least one frame, 8 samples"),
    (torch.zeros(1, 1, 5), r"5 samples .* at least one frame"),
    (torch.full((1, 1, 100), float("nan")), "NaN or infinite"),
    (torch.tensor([[[0.0] * 50 + [float("inf")]]]), "NaN or infinite"),
    (torch.zeros(1, 1, 1, 100), r"shaped \(N,\), \(C, N\) or \(B, C, N\), got shape \(1, 1, 1, 100\)"),
    (torch.zeros(1, 1, 100, dtype=torch.int16), "floating-point .* got dtype torch.int16"),
    (torch.zeros(1, 3, 100), "3 channels but this codec takes 1"),
    (torch.zeros(0, 1, 100), "empty batch"),
])
def test_bad_waveforms(codec, wav, match):
    with pytest.raises(AudioInputError, match=match):
        codec.encode(wav)


def test_bad_sample_rate_and_num_codebooks(codec):
    with pytest.raises(AudioInputError, match="sample_rate must be a positive integer"):
        codec.encode(torch.zeros(1, 1, 100), sample_rate=-5)
    with pytest.raises(ValueError, match=r"num_codebooks must be an integer in \[1, 4\], got 5"):
        codec.encode(torch.zeros(1, 1, 100), num_codebooks=5)


@pytest.mark.parametrize("codes, match", [
    (torch.zeros(1, 5, 3, dtype=torch.long), r"K=5 codebooks; this codec has 4"),
    (torch.full((1, 2, 3), 32), r"must lie in \[0, 31\], got values in \[32, 32\]"),
    (torch.full((1, 2, 3), -1), r"must lie in \[0, 31\], got values in \[-1, -1\]"),
    (torch.zeros(1, 2, 3), "integer codes .* got dtype torch.float32"),
    (torch.zeros(2, 3, dtype=torch.long), r"shaped \(B, K, T\), got shape \(2, 3\); add a batch axis"),
    (torch.zeros(1, 2, 0, dtype=torch.long), "codes are empty"),
])
def test_bad_codes(codec, codes, match):
    with pytest.raises(CodesError, match=match):
        codec.decode(codes)


@pytest.mark.parametrize("overrides, match", [
    ({"channels": 3}, "channels must be 1 .* or 2 .*, got 3"),
    ({"strides": ()}, "strides must be a non-empty list"),
    ({"norm": "batch"}, "norm must be 'weight_norm' or 'none', got 'batch'"),
    ({"quantizer": {"kind": "fsq"}}, "quantizer.kind must be 'ema' or 'factorized', got 'fsq'"),
    ({"quantizer": {"decay": 1.5}}, r"quantizer.decay must be in \(0, 1\), got 1.5"),
    ({"training": {"seed": -1}}, "training.seed must be an integer >= 0, got -1"),
    ({"training": {"perceptual_weight": -1.0}}, "training.perceptual_weight must be >= 0, got -1.0"),
])
def test_bad_config_values(overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**overrides)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CodecConfig.from_json_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        CodecConfig.from_json_file(tmp_path / "bad.json")
    (tmp_path / "extra.json").write_text(json.dumps({"sample_rate": 16000, "hop": 3}))
    with pytest.raises(ConfigError, match=r"unknown keys \['hop'\]"):
        CodecConfig.from_json_file(tmp_path / "extra.json")


def test_checkpoint_errors(codec, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        RVQCodec.from_pretrained(tmp_path / "missing")

    codec.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        RVQCodec.from_pretrained(tmp_path / "c")

    codec.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        RVQCodec.from_pretrained(tmp_path / "c")

    codec.save_pretrained(tmp_path / "c")
    other = tiny_config(dimension=24)
    other.to_json_file(tmp_path / "c" / "config.json")
    with pytest.raises(CheckpointError, match="do not match its config.json: shape mismatches"):
        RVQCodec.from_pretrained(tmp_path / "c")

    codec.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(json.dumps({"channels": 7}))
    with pytest.raises(CheckpointError, match="not a valid codec config: channels must be"):
        RVQCodec.from_pretrained(tmp_path / "c")


def test_failed_save_keeps_the_previous_checkpoint(codec, tmp_path, monkeypatch):
    import tokenizer.checkpoint as checkpoint

    codec.save_pretrained(tmp_path / "c")
    before = (tmp_path / "c" / "model.safetensors").read_bytes()

    def broken_save_file(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError):
        codec.save_pretrained(tmp_path / "c")
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
