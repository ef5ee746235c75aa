"""Long files in bounded memory: block-wise reading, resampling and encoding give what one pass over the whole
file gives."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from tokenizer import AudioInputError
from tokenizer.audio import load_audio, resample
from tokenizer.long_audio import BlockResampler, SpanEncoder, encode_audio_file

from .conftest import tone


@pytest.mark.parametrize("orig, new", [(44100, 24000), (16000, 24000), (48000, 16000), (22050, 8000), (8000, 8000)])
def test_block_resampling_equals_resampling_the_whole_signal(orig, new):
    generator = torch.Generator().manual_seed(orig + new)
    signal = torch.randn(2, orig * 3 + 17, generator=generator)
    whole = resample(signal, orig, new)
    resampler = BlockResampler(orig, new)
    sizes = torch.randint(1, orig // 2, (100,), generator=generator).tolist()
    pieces, at = [], 0
    for size in sizes:
        if at >= signal.shape[-1]:
            break
        pieces.append(resampler.push(signal[:, at:at + size]))
        at += size
    pieces.append(resampler.finish())
    blocked = torch.cat(pieces, dim=-1)
    assert blocked.shape == whole.shape and resampler.produced == whole.shape[-1]
    assert torch.allclose(blocked, whole, atol=1e-5)


def test_span_encoding_equals_one_encode(codec):
    wav = torch.cat([tone(1.3, codec.sample_rate), 0.3 * torch.randn(1, 4000)], dim=-1)
    whole = codec.encode(wav[None])
    encoder = SpanEncoder(codec, span_frames=7)
    for piece in torch.split(wav, 333, dim=-1):
        encoder.push(piece)
    assert torch.equal(encoder.finish(), whole)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
def test_a_file_encodes_block_by_block_as_in_one_pass(codec, tmp_path, suffix):
    rate = 16000  # resampled to the codec's 8 kHz, stereo down-mixed
    t = np.arange(int(2.7 * rate)) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 550 * t + 1)], axis=1)
    wav_path = tmp_path / "clip.wav"
    sf.write(wav_path, stereo.astype(np.float32), rate, subtype="PCM_16")
    path = wav_path
    if suffix == ".flac":
        path = tmp_path / "clip.flac"
        sf.write(path, stereo.astype(np.float32), rate)
    elif suffix == ".mp3":
        path = tmp_path / "clip.mp3"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav_path), "-b:a", "64k", str(path)],
                       check=True)
    audio, _ = load_audio(path, sample_rate=codec.sample_rate, channels=codec.channels)
    whole = codec.encode(audio[None], num_codebooks=3)
    codes, samples = encode_audio_file(codec, path, num_codebooks=3, block_seconds=0.37, span_frames=11)
    assert samples == audio.shape[-1] and codes.shape == whole.shape
    assert torch.equal(codes, whole)


def test_a_missing_or_empty_file_is_an_audio_input_error(codec, tmp_path):
    with pytest.raises(AudioInputError, match="does not exist"):
        encode_audio_file(codec, tmp_path / "nothing.wav")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    with pytest.raises(AudioInputError, match="empty.wav"):
        encode_audio_file(codec, tmp_path / "empty.wav")
