"""`tokenizer.level.CodecLevel`: the gain that brings a file to the level the codec codes best."""

from __future__ import annotations

import math

import pytest
import torch

from tokenizer.level import CodecLevel, rms_of


@pytest.mark.parametrize("dbfs", [-45.0, -30.0, -18.0, -6.0])
def test_the_gain_brings_audio_to_the_target_level(dbfs):
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    wav = wav * (10 ** (dbfs / 20) / rms_of(wav))
    level = CodecLevel(-18.0)
    assert 20 * math.log10(rms_of(wav * level.gain_for(wav))) == pytest.approx(-18.0, abs=1e-5)  # float32 samples


def test_the_gain_is_bounded_and_silence_keeps_its_level():
    level = CodecLevel(-18.0, max_gain_db=30.0)
    assert level.gain(10 ** (-90 / 20)) == pytest.approx(10 ** (30 / 20))  # near silence: raised by 30 dB, no more
    assert level.gain(1.0) == pytest.approx(10 ** (-18 / 20))
    assert level.gain(0.0) == 1.0 and level.gain_for(torch.zeros(1, 100)) == 1.0
    assert level.gain_for(torch.zeros(1, 0)) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"target_dbfs": 3.0}, "target_dbfs must be <= 0"),
    ({"target_dbfs": float("nan")}, "target_dbfs must be a finite number"),
    ({"target_dbfs": True}, "target_dbfs must be a finite number"),
    ({"max_gain_db": 0.0}, "max_gain_db must be > 0"),
    ({"max_gain_db": "30"}, "max_gain_db must be a finite number"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CodecLevel(**kwargs)


@pytest.mark.parametrize("rms", [-0.1, float("inf"), float("nan")])
def test_a_bad_rms_is_named(rms):
    with pytest.raises(ValueError, match="rms must be a finite number >= 0"):
        CodecLevel().gain(rms)
