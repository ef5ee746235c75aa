"""Near-silence: the share of quiet frames and the longest gap on synthetic signals, and the clip summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.evaluation import near_silence, near_silence_summary
from pipelines.evaluation.silence import asks_for_sparseness

SR = 16000


def _tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_a_tone_with_a_one_second_gap_in_five_is_a_fifth_silent():
    wav = np.concatenate([_tone(2.0), np.zeros(SR, np.float32), _tone(2.0)])
    r = near_silence(wav, SR)
    assert r["share"] == pytest.approx(0.2, abs=0.02)
    assert r["longest_gap"] == pytest.approx(1.0, abs=0.05)  # within a frame (46 ms) of the gap
    assert r["frames"] == int(np.ceil(5 * SR / round(0.046 * SR)))


def test_a_pure_tone_has_no_silence_and_zeros_are_all_silence():
    assert near_silence(_tone(3.0), SR) == {"share": 0.0, "longest_gap": 0.0, "frames": 66}
    zeros = near_silence(torch.zeros(2, SR * 3), SR)  # [C, N]
    assert zeros["share"] == 1.0 and zeros["longest_gap"] == pytest.approx(3.0)
    assert near_silence(np.zeros(0), SR) == {"share": 1.0, "longest_gap": 0.0, "frames": 0}


def test_threshold_is_on_rms_and_channels_count_together():
    quiet = _tone(1.0, amplitude=0.01)  # RMS 0.007: below 0.01
    assert near_silence(quiet, SR)["share"] == 1.0
    assert near_silence(quiet, SR, threshold=0.005)["share"] == 0.0
    stereo = np.stack([_tone(1.0), np.zeros(SR, np.float32)])  # one channel plays: the frame is not silent
    assert near_silence(stereo, SR)["share"] == 0.0
    # tensor and array give the same figures
    wav = np.concatenate([_tone(0.5), np.zeros(SR // 2, np.float32)])
    assert near_silence(torch.from_numpy(wav), SR) == near_silence(wav, SR)
    with pytest.raises(ValueError, match="frame_seconds > 0"):
        near_silence(wav, SR, frame_seconds=0)


def test_summary_reports_sparse_captions_apart_and_names_the_worst_clip():
    assert asks_for_sparseness("A Sparse piano, with pauses") and asks_for_sparseness("quiet; strings")
    assert not asks_for_sparseness("a loud rock band") and not asks_for_sparseness(None)
    assert not asks_for_sparseness("quietly sparsest")  # whole words only
    items = [{"text": "rock", "seed": 0, "near_silence": 0.0, "longest_silence": 0.0},
             {"text": "folk", "seed": 1, "near_silence": 0.3, "longest_silence": 2.0},
             {"text": "jazz", "near_silence": 0.05, "longest_silence": 0.2},
             {"text": "sparse piano", "seed": 0, "near_silence": 0.6, "longest_silence": 3.0}]
    s = near_silence_summary(items)
    assert s["clips"] == 3 and s["over_limit_clips"] == 1 and s["over_limit"] == pytest.approx(1 / 3)
    assert s["median_share"] == pytest.approx(0.05)
    assert s["worst"] == {"text": "folk", "seed": 1, "share": 0.3, "longest_gap": 2.0}
    sparse = s["sparse_captions"]
    assert sparse["clips"] == 1 and sparse["over_limit"] == 1.0 and sparse["worst"]["text"] == "sparse piano"
    assert s["limit"] == 0.1 and s["threshold"] == 0.01 and s["frame_seconds"] == 0.046
    empty = near_silence_summary([])
    assert empty["clips"] == 0 and empty["worst"] is None and empty["sparse_captions"]["over_limit"] == 0.0
