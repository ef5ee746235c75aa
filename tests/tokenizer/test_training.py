"""Codec training: config presets, the crop sampler, and the training loop (overfit, exact resume, DDP)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from tokenizer import AudioInputError, CheckpointError, CodecConfig, RVQCodec, SpectralConfig
from tokenizer.config import EdgePhaseConfig, FramePhaseConfig, HarmonicSourcePhaseConfig, VoicedPhaseConfig
from tokenizer.data import AudioCrops
from tokenizer.pitch_training import train_pitch_head
from tokenizer.training import TrainState, _lr_factor, pitch_targets, export_checkpoint, train_codec

REPO = Path(__file__).resolve().parents[2]
SR = 16000


def tiny(**training) -> CodecConfig:
    """configs/codec_tiny.json with some training settings replaced."""
    config = CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json")
    config.training = dataclasses.replace(config.training, **training)
    return config


def harmonic(seconds: float, f0: float, seed: int, sample_rate: int = SR) -> np.ndarray:
    """A vibrato harmonic tone with a noise floor (energy at every frequency, like real audio), float32 (N,)."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))) / sample_rate
    wav = sum((0.3 / k) * np.sin(k * phase) for k in range(1, 20)) * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2 * t)))
    return (wav + 0.01 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three different 1 s clips at 16 kHz, one in a sub-folder."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "sub").mkdir()
    for name, f0 in (("a.wav", 110.0), ("b.flac", 190.0), ("sub/c.wav", 310.0)):
        sf.write(root / name, harmonic(1.0, f0, seed=int(f0)), SR)
    return root


# ---- presets -------------------------------------------------------------------------------------

def test_presets_load_and_have_the_advertised_rates():
    tiny_config = CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json")
    small = CodecConfig.from_json_file(REPO / "configs" / "codec_small.json")
    big = CodecConfig.from_json_file(REPO / "configs" / "codec_24khz.json")
    assert tiny_config.frame_rate == 400 and tiny_config.training.batch_size == 2
    assert small.sample_rate == 24000 and small.frame_rate == 75 and small.causal
    assert small.bitrate() == pytest.approx(6.0)
    assert 0 <= small.training.adversarial_start_step < small.training.max_steps
    assert big.frame_rate == 75 and big.n_filters == 32 and big.lstm_layers == 2 and big.causal
    spectral = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small.json")
    assert spectral.spectral is not None and not spectral.causal
    assert spectral.frame_rate == 75 and spectral.bitrate() == pytest.approx(6.0)
    # The decoder fine-tuning preset starts from the bundled codec: same code space, codes frozen.
    tuning = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_gan.json")
    assert tuning.fingerprint == spectral.fingerprint and tuning.training.freeze_codes
    assert tuning.training.adversarial_start_step == 0
    periods = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_mpd.json")
    assert periods.fingerprint == spectral.fingerprint and periods.training.freeze_codes
    assert periods.training.disc_periods == (2, 3, 5, 7, 11)
    # The harmonic-source stages: other phase models, the codes still the same.
    assert spectral.spectral.phase == periods.spectral.phase == FramePhaseConfig()
    pitch = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_pitch.json")
    assert pitch.fingerprint == spectral.fingerprint and pitch.training.freeze_codes
    assert pitch.spectral.phase == HarmonicSourcePhaseConfig()
    assert pitch.training.pitch_teacher_steps == 0 and pitch.training.pitch_weight > 0
    edge = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_edge.json")
    assert edge.fingerprint == spectral.fingerprint
    assert edge.spectral.phase == HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=True))
    assert edge.training.freeze_codes and edge.training == dataclasses.replace(pitch.training, max_steps=1000)
    source = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_edge_source.json")
    assert source.fingerprint == spectral.fingerprint and source.training == edge.training
    assert source.spectral.phase == HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=False))
    speech = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_speech_phase.json")
    assert speech.fingerprint == spectral.fingerprint and speech.spectral == source.spectral
    assert speech.training == dataclasses.replace(source.training, phase_weight=30.0)
    offsets = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_speech_phase_offsets.json")
    assert offsets.fingerprint == spectral.fingerprint and offsets.training == speech.training
    assert offsets.spectral == edge.spectral  # learned edge offsets again
    voiced = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_speech_voiced_offsets.json")
    assert voiced.fingerprint == spectral.fingerprint and voiced.training == speech.training
    assert voiced.spectral.phase == dataclasses.replace(edge.spectral.phase, voiced=VoicedPhaseConfig(hidden=0))
    wide = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_speech_voiced_wide.json")
    assert wide.fingerprint == spectral.fingerprint and wide.training == voiced.training
    assert wide.spectral.phase == dataclasses.replace(edge.spectral.phase, voiced=VoicedPhaseConfig(hidden=512))
    pesq = CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small_decoder_speech_pesq.json")
    assert pesq.fingerprint == spectral.fingerprint and pesq.spectral == wide.spectral
    assert pesq.training == dataclasses.replace(wide.training, perceptual_weight=1.0, max_steps=600)
    # EnCodec 24 kHz's bandwidths are the prefixes of 2, 4, 8, 16 and 32 codebooks.
    assert [big.bitrate(k) for k in (2, 4, 8, 16, 32)] == pytest.approx([1.5, 3.0, 6.0, 12.0, 24.0])


def test_learning_rate_warms_up_linearly_then_decays_exponentially():
    factor = _lr_factor(tiny(warmup_steps=4, lr_decay=0.5).training)
    assert [factor(s) for s in range(5)] == pytest.approx([0.25, 0.5 * 0.5, 0.75 * 0.25, 0.125, 0.0625])
    assert _lr_factor(tiny(warmup_steps=0, lr_decay=0.9).training)(0) == 1.0
    # A cool-down reaches 0 linearly at the last step and leaves every step before it unchanged.
    cooled = _lr_factor(tiny(warmup_steps=0, lr_decay=1.0, cooldown_steps=4).training, 10)
    assert [cooled(s) for s in range(4, 11)] == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


# ---- data ----------------------------------------------------------------------------------------

def test_batches_are_a_pure_function_of_seed_step_and_rank(corpus):
    crops = AudioCrops(corpus, SR, 1, 0.25, seed=0)
    assert len(crops) == 3
    later = crops.batch(7, 4)
    b = crops.batch(5, 4, rank=0)
    assert b.shape == (4, 1, 4000) and b.dtype == torch.float32
    fresh = AudioCrops(corpus, SR, 1, 0.25, seed=0)  # as after a resume: no history
    assert torch.equal(fresh.batch(5, 4, rank=0), b)
    assert torch.equal(fresh.batch(7, 4), later)
    assert not torch.equal(crops.batch(6, 4, rank=0), b)
    assert not torch.equal(crops.batch(5, 4, rank=1), b)
    assert not torch.equal(AudioCrops(corpus, SR, 1, 0.25, seed=1).batch(5, 4, rank=0), b)


def _naive_batch(crops: AudioCrops, step: int, batch_size: int) -> torch.Tensor:
    """Reference for a corpus of readable clips: `batch_size` (clip, position) pairs drawn in turn from one
    generator seeded (seed, step, 0), each cropped."""
    rng = np.random.default_rng([crops.seed, step, 0])
    return torch.stack([crops.crop(int(rng.integers(len(crops))), float(rng.random())) for _ in range(batch_size)])


def test_one_process_batches_are_the_naive_draw_and_ranks_split_the_global_batch(corpus):
    crops = AudioCrops(corpus, SR, 1, 0.25, seed=3)
    for step in range(6):
        for batch_size in (1, 2, 6):
            assert torch.equal(crops.batch(step, batch_size), _naive_batch(crops, step, batch_size))
        # Three processes with 2 crops each: rank order, the crops of one process with 6, each rank on its own.
        shares = [AudioCrops(corpus, SR, 1, 0.25, seed=3).batch(step, 2, rank) for rank in (2, 0, 1)]
        assert torch.equal(torch.cat([shares[1], shares[2], shares[0]]), crops.batch(step, 6))


def test_unreadable_clips_are_redrawn_alike_on_every_rank(tmp_path):
    for name, f0 in (("a.wav", 110.0), ("b.wav", 190.0)):
        sf.write(tmp_path / name, harmonic(1.0, f0, seed=int(f0)), SR)
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    one = AudioCrops(tmp_path, SR, 1, 0.25)
    batches = [one.batch(step, 6) for step in range(8)]
    assert set(one.skipped) == {"broken.wav"}
    for step, batch in enumerate(batches):
        # Each rank a fresh sampler (its own process), which meets only its own share's failures.
        shares = [AudioCrops(tmp_path, SR, 1, 0.25).batch(step, 3, rank) for rank in (0, 1)]
        assert torch.equal(torch.cat(shares), batch)
    # A redraw stays within its item: the items drawn readable at once are the naive draw's.
    rng = np.random.default_rng([0, 0, 0])
    first = [(int(rng.integers(3)), float(rng.random())) for _ in range(6)]
    readable = [i for i, (index, _) in enumerate(first) if one.name(index) != "broken.wav"]
    assert 0 < len(readable) < 6  # the draw of step 0 meets the broken clip
    assert all(torch.equal(batches[0][i], one.crop(*first[i])) for i in readable)


def test_a_crop_is_the_exact_slice_of_the_file_at_the_codec_rate(tmp_path):
    data = np.random.default_rng(0).uniform(-0.5, 0.5, 10_000).astype(np.float32)
    sf.write(tmp_path / "x.wav", data, SR, subtype="FLOAT")
    crops = AudioCrops(tmp_path / "x.wav", SR, 1, 0.25)
    n = crops.segment_samples
    for position in (0.0, 0.37, 0.999):
        start = int(position * (data.size - n + 1))
        torch.testing.assert_close(crops.crop(0, position), torch.from_numpy(data[None, start:start + n]),
                                   rtol=0, atol=0)


def test_short_clips_are_zero_padded_at_the_end(tmp_path):
    data = harmonic(0.1, 200.0, seed=0)
    sf.write(tmp_path / "short.wav", data, SR, subtype="FLOAT")
    crop = AudioCrops(tmp_path, SR, 1, 0.25).crop(0, 0.6)
    assert crop.shape == (1, 4000)
    assert torch.equal(crop[0, :data.size], torch.from_numpy(data))
    assert torch.count_nonzero(crop[0, data.size:]) == 0


def test_crops_are_resampled_and_down_mixed_to_the_codec_format(tmp_path):
    t = np.arange(22050) / 22050
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.flac", np.stack([left, 0.5 * left], axis=1), 22050)
    crop = AudioCrops(tmp_path, SR, 1, 0.5).crop(0, 0.5)
    assert crop.shape == (1, 8000)
    spectrum = torch.fft.rfft(crop[0] * torch.hann_window(8000)).abs()
    assert float(spectrum.argmax()) * SR / 8000 == pytest.approx(440, abs=2)  # 2 Hz bins
    assert float(crop.abs().max()) == pytest.approx(0.375, rel=0.02)  # mean of 0.5 and 0.25


def test_compressed_formats_are_read_through_ffmpeg(tmp_path):
    data = harmonic(1.0, 150.0, seed=0)
    sf.write(tmp_path / "src.wav", data, SR)
    for suffix, codec in ((".mp3", "libmp3lame"), (".opus", "libopus")):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp_path / "src.wav"), "-c:a", codec,
                        "-b:a", "64k", str(tmp_path / f"clip{suffix}")], check=True)
    (tmp_path / "src.wav").unlink()
    crops = AudioCrops(tmp_path, SR, 1, 0.5)
    assert len(crops) == 2
    rms = float(np.sqrt(np.mean(data ** 2)))
    for index in range(2):
        crop = crops.crop(index, 0.5)
        assert crop.shape == (1, 8000)
        assert float(crop.pow(2).mean().sqrt()) == pytest.approx(rms, rel=0.25), crops.name(index)


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    sf.write(tmp_path / "good.wav", harmonic(1.0, 200.0, seed=0), SR)
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    (tmp_path / "noise.mp3").write_bytes(os.urandom(2000))
    crops = AudioCrops(tmp_path, SR, 1, 0.25)
    batches = [crops.batch(step, 4) for step in range(10)]
    assert set(crops.skipped) == {"broken.wav", "noise.mp3"}
    assert "broken.wav" in crops.skipped["broken.wav"]  # the reason names the file
    assert all(float(b.abs().amax(dim=-1).min()) > 0.05 for b in batches)  # every crop came from good.wav
    # A fresh sampler meets the same failures and still draws the same batches.
    assert torch.equal(AudioCrops(tmp_path, SR, 1, 0.25).batch(3, 4), batches[3])

    (tmp_path / "good.wav").unlink()
    with pytest.raises(AudioInputError, match="2 of 2 clips .* could not be read"):
        AudioCrops(tmp_path, SR, 1, 0.25).batch(0, 1)


def test_missing_or_empty_data_is_a_clear_error(tmp_path):
    with pytest.raises(AudioInputError, match="does not exist"):
        AudioCrops(tmp_path / "nowhere", SR, 1, 0.25)
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(AudioInputError, match="no audio files .* found under"):
        AudioCrops(tmp_path, SR, 1, 0.25)


def test_a_saved_hugging_face_dataset_is_read_from_its_audio_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    clips = [harmonic(0.5, 120.0, seed=1), harmonic(0.5, 240.0, seed=2)]
    blobs = []
    for clip in clips:
        buf = io.BytesIO()
        sf.write(buf, clip, SR, format="WAV", subtype="FLOAT")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    ds = datasets.Dataset.from_dict({"text": ["low", "high"], "audio": blobs}).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ds"))
    crops = AudioCrops(tmp_path / "ds", SR, 1, 0.5)
    assert len(crops) == 2
    for index, clip in enumerate(clips):
        assert torch.equal(crops.crop(index, 0.3), torch.from_numpy(clip[None]))


# ---- training ------------------------------------------------------------------------------------

def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_tiny_codec_overfits_one_clip(tmp_path):
    sf.write(tmp_path / "clip.wav", harmonic(0.5, 180.0, seed=0), SR)
    config = tiny(log_every=1)  # 100 steps, adversarial from step 50
    final = train_codec(config, tmp_path / "clip.wav", tmp_path / "run")
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(1, 101))
    late = log[-10:]
    # Stated target: the total loss falls at least 3x within 100 steps (about 6x when measured).
    assert log[0]["loss"] / np.mean([r["loss"] for r in late]) >= 3.0
    assert log[0]["mel"] / np.mean([r["mel"] for r in late]) >= 3.0
    assert all("disc" not in r for r in log[:50]) and all({"disc", "adv", "feat"} <= set(r) for r in log[50:])
    for key in ("usage", "perplexity", "dead_fraction", "batch_usage"):
        assert len(log[-1][key]) == 4
    codec = RVQCodec.from_pretrained(final)
    assert codec.config == config
    # The last checkpoint, exported as a codec folder, is the final codec.
    exported = RVQCodec.from_pretrained(export_checkpoint(tmp_path / "run", tmp_path / "exported"))
    assert exported.config == config
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), codec.state_dict().values()))
    with pytest.raises(CheckpointError, match="no codec checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "nothing")


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, corpus, monkeypatch):
    # With both discriminators: the MS-STFT one and the multi-period one.
    config = tiny(max_steps=8, adversarial_start_step=3, save_every=4, log_every=1, disc_periods=(2, 3),
                  period_disc_filters=2)
    whole = train_codec(config, corpus, tmp_path / "whole")

    # The second run dies while computing step 7, after its checkpoint at step 4 and before the next one.
    original = AudioCrops.batch

    def dies_at_step_6(self, step, batch_size, rank=0):
        if step == 6:
            raise KeyboardInterrupt
        return original(self, step, batch_size, rank)

    monkeypatch.setattr(AudioCrops, "batch", dies_at_step_6)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_codec(config, corpus, cut)
    monkeypatch.undo()
    assert TrainState.load(cut / "checkpoint" / "train_state.json").step == 4
    assert not (cut / "final").exists()
    at_step_4 = load_file(cut / "checkpoint" / "model.safetensors")

    resumed = train_codec(config, corpus, cut, resume=True)
    expected, got = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), [k for k in expected
                                                                      if not torch.equal(expected[k], got[k])]
    assert not all(torch.equal(at_step_4[k], got[k]) for k in at_step_4)  # the resumed steps did train
    disc_whole = load_file(tmp_path / "whole" / "checkpoint" / "model_1.safetensors")
    disc_cut = load_file(cut / "checkpoint" / "model_1.safetensors")
    assert all(torch.equal(disc_whole[k], disc_cut[k]) for k in disc_whole)
    # The log of the resumed run has each step once, with the uninterrupted run's values.
    terms = ("loss", "mel", "stft", "commit", "disc", "adv", "feat")
    assert [[r["step"]] + [r.get(t) for t in terms] for r in _log(cut)] == \
           [[r["step"]] + [r.get(t) for t in terms] for r in _log(tmp_path / "whole")]


@pytest.mark.slow
def test_run_folders_are_never_overwritten_and_bad_resumes_are_refused(tmp_path, corpus):
    run = tmp_path / "run"
    train_codec(tiny(max_steps=2, adversarial_start_step=-1), corpus, run)
    with pytest.raises(CheckpointError, match="already holds a training run"):
        train_codec(tiny(max_steps=2), corpus, run)
    with pytest.raises(CheckpointError, match="cannot resume"):
        train_codec(tiny(max_steps=2), corpus, tmp_path / "empty", resume=True)
    other = tiny(max_steps=3, adversarial_start_step=-1)
    other.n_filters = 4
    with pytest.raises(CheckpointError, match="n_filters"):
        train_codec(other, corpus, run, resume=True)
    # A save killed between its two renames leaves only `.checkpoint.old`: resume puts it back.
    shutil.rmtree(run / "final")
    os.replace(run / "checkpoint", run / ".checkpoint.old")
    train_codec(tiny(max_steps=3, adversarial_start_step=-1), corpus, run, resume=True)
    assert TrainState.load(run / "checkpoint" / "train_state.json").step == 3
    assert not (run / ".checkpoint.old").exists()


def test_a_seed_override_trains_as_a_config_with_that_seed(tmp_path, corpus):
    config = tiny(max_steps=2, adversarial_start_step=-1)
    overridden = train_codec(config, corpus, tmp_path / "override", seed=3)
    assert config.training.seed == 0  # the caller's config is left as it was
    assert json.loads((tmp_path / "override" / "checkpoint" / "config.json").read_text())["training"]["seed"] == 3
    in_config = train_codec(tiny(max_steps=2, adversarial_start_step=-1, seed=3), corpus, tmp_path / "config")
    default = train_codec(config, corpus, tmp_path / "default")
    weights = {name: load_file(path / "model.safetensors") for name, path in
               (("override", overridden), ("config", in_config), ("default", default))}
    assert all(torch.equal(v, weights["config"][k]) for k, v in weights["override"].items())
    assert not all(torch.equal(v, weights["default"][k]) for k, v in weights["override"].items())


@pytest.mark.slow
def test_decoder_fine_tuning_keeps_every_code_and_changes_only_the_decoder(tmp_path, corpus):
    start = train_codec(tiny(max_steps=3, adversarial_start_step=-1), corpus, tmp_path / "start")
    with pytest.raises(ValueError, match="init_from"):
        train_codec(tiny(max_steps=2, freeze_codes=True), corpus, tmp_path / "no_init")

    config = tiny(max_steps=4, adversarial_start_step=0, freeze_codes=True, save_every=2, log_every=1,
                  disc_periods=(2, 3, 5), period_disc_filters=2, phase_weight=1.0, perceptual_weight=1.0)
    tuned = train_codec(config, corpus, tmp_path / "tuned", init_from=start)
    before, after = RVQCodec.from_pretrained(start), RVQCodec.from_pretrained(tuned)
    assert after.fingerprint == before.fingerprint
    changed = {k for k, v in before.state_dict().items() if not torch.equal(v, after.state_dict()[k])}
    assert changed and all(k.startswith("decoder.") for k in changed), sorted(changed)
    wav = torch.from_numpy(harmonic(1.0, 150.0, seed=1))
    codes = before.encode(wav, SR)
    assert torch.equal(after.encode(wav, SR), codes)
    assert not torch.equal(after.decode(codes), before.decode(codes))
    assert {"disc", "adv", "feat", "phase", "pesq"} <= set(_log(tmp_path / "tuned")[0])

    # Resuming with another freeze_codes would give the optimizer other parameters: refused by name.
    shutil.rmtree(tmp_path / "tuned" / "final")
    with pytest.raises(CheckpointError, match="freeze_codes"):
        train_codec(tiny(max_steps=5, adversarial_start_step=0), corpus, tmp_path / "tuned", resume=True)
    # A codec with another code space cannot be the starting point.
    other = tiny(max_steps=2, freeze_codes=True)
    other.n_filters = 4
    with pytest.raises(CheckpointError, match="n_filters"):
        train_codec(other, corpus, tmp_path / "other", init_from=start)


def spectral(pitch_phase: bool, **training) -> CodecConfig:
    """`tiny` with the frame-rate spectral encoder and decoder (16 kHz, hop 40, n_fft 160)."""
    config = tiny(**training)
    config.causal = False
    config.spectral = SpectralConfig(dim=16, hidden_dim=32, num_layers=1, kernel_size=3, n_fft=160,
                                     phase=HarmonicSourcePhaseConfig() if pitch_phase else FramePhaseConfig())
    return config


@pytest.mark.slow
def test_a_pitch_head_is_added_to_a_trained_decoder_and_learns_from_yin(tmp_path, corpus):
    start = train_codec(spectral(False, max_steps=2, adversarial_start_step=-1), corpus, tmp_path / "start")
    config = spectral(True, max_steps=4, adversarial_start_step=-1, freeze_codes=True, log_every=1,
                      pitch_teacher_steps=2)
    tuned = train_codec(config, corpus, tmp_path / "tuned", init_from=start)
    before, after = RVQCodec.from_pretrained(start), RVQCodec.from_pretrained(tuned)
    assert after.pitch_phase and after.fingerprint == before.fingerprint
    added = set(after.state_dict()) - set(before.state_dict())
    assert added and all(k.startswith("decoder.phase.pitch_head.") for k in added)
    log = _log(tmp_path / "tuned")
    assert all({"f0", "voicing"} <= set(r) for r in log) and all(np.isfinite(r["f0"]) for r in log)
    wav = torch.from_numpy(harmonic(1.0, 150.0, seed=1))
    codes = before.encode(wav, SR)
    assert torch.equal(after.encode(wav, SR), codes)
    audio = after.decode(codes)
    assert audio.shape == before.decode(codes).shape and bool(torch.isfinite(audio).all())
    # YIN's targets for the clips: the training data's pitch, every frame of them voiced.
    target = pitch_targets(torch.from_numpy(harmonic(1.0, 190.0, seed=190))[None, None], config)
    inner = target[0, :, 10:-10]
    assert bool((inner[1] == 1).all()) and float((inner[0] / 190.0 - 1).abs().max()) < 0.06  # the vibrato's 5%
    # Edge phases added to the tuned decoder: a new layer only, starting at zero (the source's phase).
    config.spectral.phase = HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=True))
    config.training = dataclasses.replace(config.training, max_steps=2, pitch_teacher_steps=0)
    edged_dir = train_codec(config, corpus, tmp_path / "edged", init_from=tuned)
    edged = RVQCodec.from_pretrained(edged_dir)
    added = set(edged.state_dict()) - set(after.state_dict())
    assert added == {"decoder.phase.edge_offset.weight", "decoder.phase.edge_offset.bias"}
    assert torch.equal(edged.encode(wav, SR), codes)
    # And dropped again: a run without offsets starts from the edged decoder's other weights.
    config.spectral.phase = HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=False))
    dropped = RVQCodec.from_pretrained(train_codec(config, corpus, tmp_path / "dropped", init_from=edged_dir))
    assert set(dropped.state_dict()) == set(after.state_dict()) and torch.equal(dropped.encode(wav, SR), codes)
    # Voiced residuals added to the edged decoder: again a new layer only.
    config.spectral.phase = HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(), voiced=VoicedPhaseConfig())
    residual = RVQCodec.from_pretrained(train_codec(config, corpus, tmp_path / "residual", init_from=edged_dir))
    assert set(residual.state_dict()) - set(edged.state_dict()) == {"decoder.phase.voiced_offset.weight",
                                                                    "decoder.phase.voiced_offset.bias"}
    # And a hidden branch added to those residuals: its own layers only, the rest from the run before.
    config.spectral.phase = HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(), voiced=VoicedPhaseConfig(hidden=4))
    wide_dir = train_codec(config, corpus, tmp_path / "wide", init_from=tmp_path / "residual" / "final")
    wide = RVQCodec.from_pretrained(wide_dir)
    assert set(wide.state_dict()) - set(residual.state_dict()) == {
        f"decoder.phase.voiced_offset_mlp.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}


@pytest.mark.slow
def test_fitting_only_a_pitch_head_changes_no_other_weight_and_learns_the_pitch(tmp_path, corpus):
    start = train_codec(spectral(False, max_steps=2, adversarial_start_step=-1), corpus, tmp_path / "start")
    final = train_pitch_head(start, corpus, tmp_path / "pitch", steps=150, batch_size=4, learning_rate=3e-3,
                             progress=False)
    assert final == tmp_path / "pitch" / "final"
    before, after = RVQCodec.from_pretrained(start), RVQCodec.from_pretrained(final)
    assert after.pitch_phase and not before.pitch_phase and after.fingerprint == before.fingerprint
    for name, tensor in before.state_dict().items():
        assert torch.equal(after.state_dict()[name], tensor), name
    log = _log(tmp_path / "pitch")
    assert [r["step"] for r in log] == [100, 150]
    # Three steady tones with vibrato: the head finds their pitch (YIN's targets) on most voiced frames.
    assert log[-1]["f0_within_5pct"] > 0.5 and log[-1]["voicing_agreement"] > 0.8, log[-1]
    assert log[-1]["f0"] < log[0]["f0"]
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_pitch_head(start, corpus, tmp_path / "pitch", steps=1, progress=False)
    seanet = train_codec(tiny(max_steps=1, adversarial_start_step=-1), corpus, tmp_path / "seanet")
    with pytest.raises(ValueError, match="spectral"):
        train_pitch_head(seanet, corpus, tmp_path / "other", steps=1, progress=False)


def _torchrun(tmp_path: Path, corpus: Path, *flags: str) -> tuple[subprocess.CompletedProcess, Path]:
    config = tiny(max_steps=6, adversarial_start_step=3, save_every=3, log_every=2)
    config.to_json_file(tmp_path / "config.json")
    out = tmp_path / "run"
    # CUDA hidden: the test is about CPU processes over gloo even on a machine with a GPU.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path / "config.json"), str(corpus), str(out),
           *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600), out


@pytest.mark.slow
def test_two_cpu_processes_keep_identical_weights_and_codebooks(tmp_path, corpus):
    proc, out = _torchrun(tmp_path, corpus)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(i["distributed_type"] == "MULTI_CPU" and i["backend"] == "gloo" and i["num_processes"] == 2
               for i in info)
    assert info[0]["first_batch"] != info[1]["first_batch"]  # each process trained on its own crops
    states = [load_file(out / f"rank{r}.safetensors") for r in range(2)]
    codebooks = [k for k in states[0] if k.endswith(".embed")]
    assert len(codebooks) == 4
    assert all(bool(states[0][k.replace(".embed", ".initialized")]) for k in codebooks)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), \
        [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    assert TrainState.load(out / "checkpoint" / "train_state.json").num_processes == 2
    assert [r["step"] for r in _log(out)] == [2, 4, 6]


@pytest.mark.slow
def test_unsynchronised_codebooks_are_caught(tmp_path, corpus):
    """Negative control: without the quantizer's all-reduce the processes' codebooks drift, and training says so."""
    proc, out = _torchrun(tmp_path, corpus, "--no-codebook-sync")
    assert proc.returncode != 0
    assert "processes disagree" in proc.stdout + proc.stderr
    assert "quantizer.levels.0.embed" in proc.stdout + proc.stderr


def test_several_sources_pool_their_clips_in_order(tmp_path):
    for name, freq in (("a", 220.0), ("b", 440.0)):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "x.wav", np.sin(2 * np.pi * freq * np.arange(SR) / SR).astype(np.float32), SR)
    pooled = AudioCrops([tmp_path / "a", tmp_path / "b"], SR, 1, 0.25)
    assert len(pooled) == 2 and pooled.name(1) == "x.wav"
    assert torch.equal(pooled.crop(1, 0.3), AudioCrops(tmp_path / "b", SR, 1, 0.25).crop(0, 0.3))
    with pytest.raises(AudioInputError, match="does not exist"):
        AudioCrops([tmp_path / "a", tmp_path / "missing"], SR, 1, 0.25)
