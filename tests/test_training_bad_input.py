"""Training setups that cannot run as asked are refused when the run starts, before data is read or a model is
built, with an error that names the value and what to do: fp16 without CUDA, FSDP on one process, a global batch
that the processes do not divide, a resume under another number of processes. The codec's per-process batch, which
any number of processes divides, is checked as documented."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from accelerate.state import AcceleratorState

from pipelines.lm_training import finetune, train_lm
from pipelines.lm_training_config import LMTrainingConfig, check_global_batch
from tokenizer import CheckpointError, CodecConfig
from tokenizer.data import AudioCrops
from tokenizer.run_folder import CHECKPOINT_DIR, STATE_NAME, check_resume_processes
from tokenizer.training import train_codec

REPO = Path(__file__).resolve().parents[1]
MISSING = "no-such-data"  # any step that reads the data or the codec would fail on this, with another error


@pytest.fixture(autouse=True)
def fresh_accelerate():
    """accelerate keeps one process-wide state whose mixed precision cannot change once set: start and leave clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def codec_config(**training) -> CodecConfig:
    """configs/codec_tiny.json with some training settings replaced."""
    config = CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json")
    config.training = dataclasses.replace(config.training, **training)
    return config


def lm_training(**fields) -> LMTrainingConfig:
    return LMTrainingConfig(**{"batch_size": 4, "max_steps": 2, "text_vocab_size": 300, **fields})


def _train_lm(tmp_path: Path, training: LMTrainingConfig, resume: bool = False) -> None:
    train_lm(REPO / "configs" / "lm_tiny.json", tmp_path / MISSING, tmp_path / "run", codec=tmp_path / MISSING,
             training=training, resume=resume)


# ---- fp16 without CUDA -------------------------------------------------------------------------------------

FP16_ERROR = r"mixed_precision='fp16' needs a CUDA device and none is visible; use bf16 or no"


def test_fp16_without_cuda_is_refused_by_both_trainers_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine, wherever this runs
    with pytest.raises(ValueError, match=FP16_ERROR):
        train_codec(codec_config(mixed_precision="fp16"), tmp_path / MISSING, tmp_path / "run")
    with pytest.raises(ValueError, match=FP16_ERROR):
        _train_lm(tmp_path, lm_training(mixed_precision="fp16"))
    with pytest.raises(ValueError, match=FP16_ERROR):
        finetune(tmp_path / MISSING, tmp_path / MISSING, tmp_path / "run", training=lm_training(mixed_precision="fp16"))
    assert not (tmp_path / "run").exists()


# ---- FSDP on one process ---------------------------------------------------------------------------------

def test_fsdp_on_one_process_is_refused_by_both_trainers(tmp_path, monkeypatch):
    # What `accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1` sets; accelerate itself
    # would then train unsharded on one device without a word.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    message = r"FSDP was requested .* with 1 process, which shards nothing: set num_processes to the GPU count"
    with pytest.raises(ValueError, match=message):
        train_codec(codec_config(), tmp_path / MISSING, tmp_path / "run")
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=message):
        _train_lm(tmp_path, lm_training())
    assert not (tmp_path / "run").exists()


# ---- the batch and the number of processes -------------------------------------------------------------------

def test_the_lms_global_batch_must_split_into_processes_times_accumulation(tmp_path):
    check_global_batch(lm_training(batch_size=8, grad_accum=2), 4)  # 1 item per forward pass on each process
    check_global_batch(lm_training(batch_size=6), 3)
    with pytest.raises(ValueError, match=r"training.batch_size=6 \(the global batch\) must be divisible by processes "
                                         r"x grad_accum = 4 x 1; use a multiple of 4, e.g. 4"):
        check_global_batch(lm_training(batch_size=6), 4)
    # On one process too, through grad_accum, before the data is read.
    with pytest.raises(ValueError, match=r"batch_size=3 .* = 1 x 2; use a multiple of 2"):
        _train_lm(tmp_path, lm_training(batch_size=3, grad_accum=2))
    assert not (tmp_path / "run").exists()


def test_the_codecs_batch_is_per_process_so_any_number_of_processes_divides_it(tmp_path):
    sf.write(tmp_path / "a.wav", torch.randn(16000).numpy() * 0.1, 16000)
    config = codec_config(batch_size=3)
    crops = AudioCrops.from_config(config, tmp_path / "a.wav")
    # Each process draws batch_size crops of its own for a step: the effective batch is batch_size x processes.
    batches = [crops.batch(5, config.training.batch_size, rank) for rank in range(3)]
    assert [b.shape[0] for b in batches] == [3, 3, 3]
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[1], batches[2])
    assert torch.equal(crops.batch(5, 3, 1), batches[1])


# ---- resuming under another number of processes -------------------------------------------------------------

def _checkpoint_of(tmp_path: Path, processes: int, folder: str = CHECKPOINT_DIR, **state) -> Path:
    """A run folder whose checkpoint's train_state.json says it was written by `processes` processes."""
    run = tmp_path / "run"
    (run / folder).mkdir(parents=True)
    (run / folder / STATE_NAME).write_text(json.dumps({"step": 2, "num_processes": processes, **state}))
    return run


def test_a_resume_under_another_number_of_processes_is_refused_naming_both(tmp_path):
    run = _checkpoint_of(tmp_path, 2)
    message = (r"was written by 2 process\(es\); resume it with the same number \(got 1\): its per-process RNG "
               r"states and batches belong to 2. Launch with --num_processes 2")
    # Refused before the data is read (it does not exist here) or a model built.
    with pytest.raises(CheckpointError, match=message):
        train_codec(codec_config(), tmp_path / MISSING, run, resume=True)
    with pytest.raises(CheckpointError, match=message):
        _train_lm(tmp_path, lm_training(), resume=True)
    with pytest.raises(CheckpointError, match=message):
        finetune(tmp_path / MISSING, tmp_path / MISSING, run, training=lm_training(), resume=True)
    check_resume_processes(run, 2)  # the same number resumes


def test_the_world_size_check_reads_a_checkpoint_left_by_an_interrupted_swap(tmp_path):
    run = _checkpoint_of(tmp_path, 4, folder=f".{CHECKPOINT_DIR}.old")
    with pytest.raises(CheckpointError, match=r"written by 4 process\(es\); .* \(got 1\)"):
        check_resume_processes(run, 1)
    check_resume_processes(run, 4)
