"""The whole path a user takes, through the `rvqaudio` command: audio files -> tokenize -> train-lm ->
generate -> a wav of the expected rate and duration."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines import load_tokenized, read_codec_metadata
from pipelines.cli import main
from tokenizer import CodecConfig, RVQCodec

REPO = Path(__file__).resolve().parents[2]


def _audio_folder(folder: Path) -> list[str]:
    """Twelve short tones at 16 kHz (the codec resamples to 8 kHz) with captions in metadata.csv."""
    folder.mkdir()
    captions = []
    with open(folder / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text"])
        for i in range(12):
            pitch = 200 + 50 * i
            t = np.arange(int(16000 * (0.2 + 0.02 * i))) / 16000
            sf.write(folder / f"tone{i:02d}.wav", 0.3 * np.sin(2 * np.pi * pitch * t), 16000)
            captions.append(f"a steady tone at {pitch} hertz")
            writer.writerow([f"tone{i:02d}.wav", captions[-1]])
    return captions


@pytest.mark.slow
def test_audio_files_to_generated_wav(tmp_path):
    torch.manual_seed(0)
    codec = RVQCodec(CodecConfig(sample_rate=8000, n_filters=4, strides=(2, 4, 5), dimension=16,
                                 quantizer={"num_codebooks": 4, "codebook_size": 32}))
    codec.train()(torch.randn(2, 1, 1600) * 0.1)  # k-means init; the LM only needs a fixed code space
    codec.eval().save_pretrained(tmp_path / "codec")
    captions = _audio_folder(tmp_path / "audio")

    assert main(["tokenize", str(tmp_path / "audio"), "-o", str(tmp_path / "codes"),
                 "--codec", str(tmp_path / "codec"), "--no-progress"]) == 0
    codes = load_tokenized(tmp_path / "codes")
    assert len(codes) == 12 and sorted(codes["text"]) == sorted(captions)
    assert read_codec_metadata(codes)["fingerprint"] == codec.fingerprint

    assert main(["train-lm", "--config", str(REPO / "configs/lm_tiny.json"), "--data", str(tmp_path / "codes"),
                 "--codec", str(tmp_path / "codec"), "--out", str(tmp_path / "run"),
                 "--training-config", str(REPO / "configs/lm_train_tiny.json"), "--max-steps", "4"]) == 0
    assert (tmp_path / "run/final/codec/model.safetensors").is_file()

    duration = 0.25
    out = tmp_path / "tone.wav"
    assert main(["generate", "a steady tone at 300 hertz", "-o", str(out), "--model", str(tmp_path / "run/final"),
                 "--duration", str(duration), "--seed", "0", "--no-progress"]) == 0
    wav, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == codec.sample_rate and wav.shape[1] == codec.channels
    frames = wav.shape[0] / codec.hop_length
    assert frames == int(frames) and 1 <= frames <= math.ceil(duration * codec.frame_rate)
    assert np.isfinite(wav).all()

    # Same seed, same settings: the same file, byte for byte.
    again = tmp_path / "again.wav"
    assert main(["generate", "a steady tone at 300 hertz", "-o", str(again), "--model", str(tmp_path / "run/final"),
                 "--duration", str(duration), "--seed", "0", "--no-progress"]) == 0
    assert again.read_bytes() == out.read_bytes()
