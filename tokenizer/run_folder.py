"""The run folder that both trainers (the codec's, `tokenizer.training`, and the LM's, `pipelines.lm_training`)
write: its layout, the atomic checkpoint swap, resume checks, log truncation, and per-step seeds; and the
accelerator both train with (`make_accelerator`), which refuses setups it cannot run before any work starts.

    out/log.jsonl       one JSON record per logged step (records past a resumed checkpoint are dropped)
    out/checkpoint/     the training state (`state_files`: safetensors and JSON, never a pickle) plus the trainer's
                        own files, swapped in atomically
    out/final/          what the run produced (written by the trainer)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, parse_flag_from_env

from .errors import CheckpointError
from .state_files import load_training_state, refuse_pickles, save_training_state

CHECKPOINT_DIR = "checkpoint"
FINAL_DIR = "final"
LOG_NAME = "log.jsonl"
STATE_NAME = "train_state.json"
MIXED_PRECISIONS = ("no", "bf16", "fp16")


def make_accelerator(mixed_precision: str, **kwargs) -> Accelerator:
    """The trainers' `Accelerator`: on the CPU when there is no GPU, with `mixed_precision` ("no", "bf16" or "fp16").

    bf16 autocasts the models' forward passes on a GPU or a CPU (weights, optimizer state, losses and the codec's
    EMA codebooks stay float32). fp16 autocasts on a GPU with accelerate's gradient scaler; without a CUDA device it
    is a ValueError (accelerate would quietly train in float32). An FSDP launch (`configs/accelerate/fsdp.yaml`)
    is a ValueError too, before any work: with one process it shards nothing (accelerate would quietly run
    unsharded), with several the checkpoints, written from the main process's full tensors, would be shards.
    """
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {list(MIXED_PRECISIONS)}, got {mixed_precision!r}")
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("training.mixed_precision='fp16' needs a CUDA device and none is visible; use bf16 or no "
                         "(bf16 autocasts on the CPU too)")
    # Without cpu=True accelerate ignores a torchrun world on a machine without GPUs (DistributedType.NO).
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision, **kwargs)
    fsdp = accelerator.distributed_type == DistributedType.FSDP or parse_flag_from_env("ACCELERATE_USE_FSDP")
    if fsdp and accelerator.num_processes == 1:
        raise ValueError("FSDP was requested (accelerate's FSDP config, ACCELERATE_USE_FSDP) with 1 process, which "
                         "shards nothing: set num_processes to the GPU count (accelerate launch --num_processes N), "
                         "or train on one device with configs/accelerate/gpu.yaml or cpu.yaml")
    if fsdp:
        raise ValueError(f"FSDP was requested (accelerate's FSDP config, ACCELERATE_USE_FSDP) with "
                         f"{accelerator.num_processes} processes, but checkpoints and final/ are written from full "
                         "tensors on the main process, which a sharded model does not hold (they would come out "
                         "sharded and unloadable): train with configs/accelerate/multi_gpu.yaml, which keeps the whole "
                         "model on every GPU")
    return accelerator


def prepare(accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """`accelerator.prepare(model, optimizer)`, without torch 2.14's DDP deprecation warning."""
    with warnings.catch_warnings():
        # torch 2.14 renames DDP's broadcast_buffers to forward_sync_buffers, which accelerate cannot pass yet;
        # the old name still works (and its removal would fail loudly, as a TypeError).
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.* is deprecated", category=FutureWarning)
        return accelerator.prepare(model, optimizer)


def step_seed(seed: int, step: int, rank: int) -> int:
    """A torch seed from (seed, step, rank) alone: a step's randomness does not depend on the run's history."""
    return int(np.random.SeedSequence([seed, step, rank, 1]).generate_state(1, np.uint64)[0] >> 1)


def check_run_folder(out: Path, resume: bool) -> None:
    """CheckpointError unless `out` is free for a new run (resume=False) or holds a checkpoint to resume."""
    checkpoint, final = out / CHECKPOINT_DIR, out / FINAL_DIR
    interrupted = out / f".{CHECKPOINT_DIR}.old"
    if not resume:
        for existing in (checkpoint, interrupted, final):
            if existing.exists():
                raise CheckpointError(
                    f"{str(out)!r} already holds a training run ({existing.name}/); pass resume=True to continue "
                    "it, or choose another output folder (nothing is overwritten)")
    elif not (checkpoint / STATE_NAME).is_file() and not (interrupted / STATE_NAME).is_file():
        raise CheckpointError(f"cannot resume: {str(checkpoint)!r} holds no checkpoint ({STATE_NAME} is missing); "
                              "start the run without resume=True")
    else:
        refuse_pickles(out)  # before anything in it is read


def check_resume_processes(out: Path, num_processes: int) -> None:
    """CheckpointError unless the checkpoint in `out` was written by `num_processes` processes, read from its
    `train_state.json` before anything is built.

    A resume continues one run: every process's RNG state is stored by rank (`rng_state_<rank>.safetensors`), the
    codec's batch is per process (its effective batch is batch_size x processes) and its codebook statistics are
    summed over the processes. Under another world size none of these carry over, so the resume is refused rather
    than re-seeded; to go on with another number of processes, start a new run from the weights."""
    for folder in (out / CHECKPOINT_DIR, out / f".{CHECKPOINT_DIR}.old"):  # the second: a swap killed midway
        if (folder / STATE_NAME).is_file():
            try:
                saved = json.loads((folder / STATE_NAME).read_text()).get("num_processes", 1)
            except (json.JSONDecodeError, AttributeError) as e:
                raise CheckpointError(f"{str(folder / STATE_NAME)!r} is not a training state: {e}") from e
            if saved != num_processes:
                raise CheckpointError(
                    f"the checkpoint in {str(folder)!r} was written by {saved} process(es); resume it with the same "
                    f"number (got {num_processes}): its per-process RNG states and batches belong to {saved}. "
                    f"Launch with --num_processes {saved}, or start a new run from its weights")
            return


def recover_interrupted_swap(out: Path) -> None:
    """A save killed between its two renames leaves the previous checkpoint as `.checkpoint.old`: put it back."""
    checkpoint, old = out / CHECKPOINT_DIR, out / f".{CHECKPOINT_DIR}.old"
    if old.exists():
        if checkpoint.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, checkpoint)
    shutil.rmtree(out / f".{CHECKPOINT_DIR}.tmp", ignore_errors=True)


@dataclasses.dataclass
class Trained:
    """The objects whose state a checkpoint holds besides TrainState: models (`model.safetensors` is the first,
    `model_1.safetensors` the second, ...), their optimizers and LR schedulers, in that order."""

    models: Sequence[torch.nn.Module]
    optimizers: Sequence[torch.optim.Optimizer]
    schedulers: Sequence

    def save(self, accelerator: Accelerator, folder: Path) -> None:
        save_training_state(accelerator, folder, self.models, self.optimizers, self.schedulers)

    def load(self, accelerator: Accelerator, folder: Path) -> None:
        """Read what `save` wrote back into the live objects (every process); CheckpointError naming the file when
        something is missing, does not match, or is a pickle."""
        load_training_state(accelerator, folder, self.models, self.optimizers, self.schedulers)


def save_run_checkpoint(accelerator: Accelerator, out: Path, write_extra: Callable[[Path], None],
                        trained: Trained) -> None:
    """Write the training state (`state_files.save_training_state`: weights, optimizers, schedulers, every
    process's RNG) plus what `write_extra(folder)` adds (on the main process) into a temporary folder, then swap it
    in as `out/checkpoint`: a crash leaves the previous one usable. `recover_interrupted_swap` repairs a swap
    killed between its two renames. Shared by the codec and LM loops."""
    tmp, checkpoint, old = out / f".{CHECKPOINT_DIR}.tmp", out / CHECKPOINT_DIR, out / f".{CHECKPOINT_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    trained.save(accelerator, tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_extra(tmp)
        if checkpoint.exists():
            os.replace(checkpoint, old)
        os.replace(tmp, checkpoint)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def truncate_log(path: Path, step: int) -> None:
    """Drop records of steps after `step`: they are about to be trained (and logged) again."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))
