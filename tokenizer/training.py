"""Training of the RVQ codec on one process or several (DDP through accelerate), resumable exactly.

    codec_dir = train_codec(CodecConfig.from_json_file("configs/codec_small.json"), "data/", "runs/small")

From a shell, on one process or several CPU processes (DDP over gloo):

    python -m tokenizer.training configs/codec_small.json data/ runs/small [--max-steps N] [--resume]
    torchrun --standalone --nproc_per_node 2 -m tokenizer.training configs/codec_small.json data/ runs/small
    accelerate launch --config_file configs/accelerate/cpu_ddp2.yaml -m tokenizer.training CONFIG DATA OUT

(`configs/accelerate/` holds one config per setup; cpu_ddp2.yaml says why two CPU processes need accelerate's
torchrun path, MULTI_GPU: its CPU launcher starts one process only.) `training.batch_size` is per process, so any
number of processes works: the global batch is batch_size x processes. A step's crops are drawn once from
(seed, step) and split in rank order (`AudioCrops.batch`), so P processes with batch_size b train on the crops of
one process with b x P. Started from initialised codebooks (k-means takes rank 0's crops), with dead-code
replacement (rank 0's too) and quantizer dropout (per process) off and no adversarial stage (feature matching is
normalised per process), they end with its weights up to float summation order.
On a machine with GPUs the same launchers give one GPU per process over NCCL. A resume must use the number of
processes that wrote the checkpoint (refused otherwise, before anything is built); exact resume also needs the
same number of intra-op threads (reductions are summed in a different order otherwise).

Mixed precision (`training.mixed_precision`): "bf16" autocasts the codec's and discriminator's forward passes on a
GPU or a CPU; weights, optimizer state, the losses (computed on float32 outputs) and the EMA codebooks stay float32,
and the nearest-code search runs in float32. "fp16" needs a CUDA device (a ValueError otherwise) and trains with
accelerate's gradient scaler.

Stages: steps `[0, adversarial_start_step)` train on reconstruction only (multi-scale mel + multi-resolution
STFT + commitment/codebook losses, plus the phase-aware compressed complex STFT loss when `complex_weight` > 0 and
the phase-derivative loss, instantaneous frequency and group delay, when `phase_weight` > 0, and PESQ's loudness
disturbance when `perceptual_weight` > 0); from
`adversarial_start_step` on, each step first updates the discriminator (EnCodec's MS-STFT-D, plus HiFi-GAN's
multi-period one when `training.disc_periods` lists periods; hinge loss on the detached reconstruction), then the
codec with the added hinge and feature-matching losses against the updated discriminator. Loss weights are fixed, from `config.training`.

Decoder fine-tuning (`training.freeze_codes`, from a trained codec passed as `init_from`): the encoder and the
quantizer's codebooks stay as they are (no gradients, no EMA updates, no dead-code replacement) while quantizer
dropout still varies the bitrate, so the run changes how codes sound, never which codes audio gets. Datasets
tokenized and LMs trained with the starting codec stay valid (Vocos and EnCodec's MBD decoders are trained the
same way on fixed codes).

What is written to `out`:
    log.jsonl       one JSON record per `log_every` steps: loss terms, learning rate, gradient norm and, per
                    codebook level, usage, perplexity, dead-code fraction and the fraction of codes in the batch
    checkpoint/     every `save_every` steps and at the end, replaced atomically: accelerate's state (weights,
                    optimizers, schedulers), `train_state.json` and `config.json`
    final/          the trained codec (`RVQCodec.save_pretrained`), written by `train_codec`

`export_checkpoint(out, dir)` (`rvqaudio export-codec`) writes the latest checkpoint's codec as a codec folder while
the run goes on, to evaluate it or tokenize with it.

Exact resume: a step's crops are drawn from (seed, step) and its other randomness (quantizer dropout, k-means init,
dead-code replacement) is seeded from (seed, step, rank), so `resume=True` after an interruption ends with the same
weights as an uninterrupted run with the same number of processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .config import CodecConfig, CodecTrainingConfig
from .data import AudioCrops
from .discriminator import CodecDiscriminator
from .errors import CheckpointError
from .losses import (CompressedComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, PESQLoss,
                     PhaseDerivativeLoss, discriminator_hinge_loss, feature_matching_loss, generator_hinge_loss)
from .model import RVQCodec
from .pitch import PITCH_RANGE_HZ, VOICING_THRESHOLD, pitch_losses, yin
from .run_folder import (CHECKPOINT_DIR, FINAL_DIR, LOG_NAME, STATE_NAME, Trained, check_resume_processes,
                         check_run_folder, make_accelerator, prepare, recover_interrupted_swap, save_run_checkpoint,
                         step_seed, truncate_log)

logger = logging.getLogger(__name__)

_PITCH_HEAD_LR_SCALE = 10.0


@dataclass
class TrainState:
    """Where training stands; saved next to accelerate's state in every checkpoint."""

    step: int = 0  # optimisation steps done
    num_processes: int = 1
    skipped_files: list[str] = field(default_factory=list)  # clips that could not be read, on any process

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


def train_codec(config: CodecConfig, data: str | os.PathLike | list[str | os.PathLike], out: str | os.PathLike, max_steps: int | None = None,
                resume: bool = False, init_from: str | os.PathLike | None = None, seed: int | None = None) -> Path:
    """Train a codec on `data` and save it to `out/final`; returns that folder.

    Args:
        config: architecture and `config.training` (batch size per process, segment length, optimiser, loss
            weights, stages, seed, log and save intervals).
        data: a folder of audio files (searched recursively), one audio file, a saved HF dataset, or a list of
            these pooled together (see `AudioCrops`).
        out: run folder; holds `log.jsonl`, `checkpoint/` and, at the end, `final/`.
        max_steps: total optimisation steps (default `config.training.max_steps`), counted from step 0 on resume.
        resume: continue from `out/checkpoint`. Without it, a run folder that already holds a checkpoint or a
            final model is refused rather than overwritten.
        init_from: a codec folder (`save_pretrained` output) whose weights the run starts from instead of random
            ones; its fingerprint must be the config's. Required by `training.freeze_codes`; ignored on resume.
        seed: overrides `config.training.seed`, which draws every batch (clips and crops) and the step's other
            randomness: runs chained with `init_from` see new crops only with a new seed. Saved with the run.

    Raises CheckpointError for the cases above, AudioInputError when the data holds no readable audio.
    """
    codec = fit_codec(config, data, out, max_steps=max_steps, resume=resume, init_from=init_from, seed=seed)
    final = Path(out) / FINAL_DIR
    processes = PartialState()  # the distributed state fit_codec set up
    if processes.is_main_process:
        codec.save_pretrained(final)
    processes.wait_for_everyone()
    return final


def fit_codec(config: CodecConfig, data: str | os.PathLike | list[str | os.PathLike], out: str | os.PathLike, max_steps: int | None = None,
              resume: bool = False, init_from: str | os.PathLike | None = None, seed: int | None = None) -> RVQCodec:
    """The training loop of `train_codec`, without the final save: returns this process's trained codec (eval mode).

    Under DDP every process returns its own copy; they are checked to be identical at every checkpoint.
    """
    if seed is not None:  # validated as the config's own field
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seed))
    tc = config.training
    total = tc.max_steps if max_steps is None else max_steps
    if total < 1:
        raise ValueError(f"max_steps must be >= 1, got {total}")
    if tc.freeze_codes and init_from is None and not resume:
        raise ValueError("training.freeze_codes fine-tunes the decoder of a trained codec: pass init_from (the codec "
                         "folder to start from), or set freeze_codes to false")
    out = Path(out)
    # broadcast_buffers=False: EMA codebooks are buffers that the quantizer itself keeps in sync (all-reduced
    # statistics); DDP's default would re-send every buffer from rank 0 before each forward.
    accelerator = make_accelerator(tc.mixed_precision,
                                   kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
    main = accelerator.is_main_process
    checkpoint = out / CHECKPOINT_DIR
    check_run_folder(out, resume)
    if resume:
        check_resume_processes(out, accelerator.num_processes)
    crops = AudioCrops.from_config(config, data)  # bad data fails here, before anything is written
    accelerator.wait_for_everyone()  # every process has looked before the main one changes anything
    if main:
        out.mkdir(parents=True, exist_ok=True)
        recover_interrupted_swap(out)
    accelerator.wait_for_everyone()

    set_seed(tc.seed)  # the same initial weights on every process
    codec = RVQCodec(config)
    if init_from is not None and not resume:
        load_initial_weights(codec, init_from)
    if tc.freeze_codes:
        codec.encoder.requires_grad_(False)
        codec.quantizer.requires_grad_(False)
    # A pitch head added to a trained decoder starts from scratch: it learns at a higher rate than the rest.
    head = list(codec.decoder.phase.pitch_head.parameters()) if codec.pitch_phase else []
    groups = [{"params": [p for p in codec.parameters() if p.requires_grad and all(p is not q for q in head)]}]
    if head:
        groups.append({"params": head, "lr": tc.learning_rate * _PITCH_HEAD_LR_SCALE})
    opt_g = torch.optim.AdamW(groups, lr=tc.learning_rate, betas=tc.betas)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, _lr_factor(tc, total))
    adversarial_from = tc.adversarial_start_step if tc.adversarial_start_step >= 0 else None
    codec, opt_g = prepare(accelerator, codec, opt_g)
    # Schedulers stay out of prepare(): accelerate would step them once per process per call.
    disc = opt_d = sched_d = None
    if adversarial_from is not None:
        disc = CodecDiscriminator.from_config(config)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=tc.discriminator_learning_rate, betas=tc.betas)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, _lr_factor(tc, total))
        disc, opt_d = prepare(accelerator, disc, opt_d)
    mel_loss = MultiScaleMelLoss(config.sample_rate).to(accelerator.device)
    stft_loss = MultiResolutionSTFTLoss().to(accelerator.device)
    # The optional reconstruction losses, (log name, weight, loss), built only when weighted.
    optional_losses = [(name, weight, make().to(accelerator.device)) for name, weight, make in (
        ("complex", tc.complex_weight, CompressedComplexSTFTLoss),
        ("phase", tc.phase_weight, PhaseDerivativeLoss),
        ("pesq", tc.perceptual_weight, lambda: PESQLoss(config.sample_rate)),
    ) if weight > 0]
    model = accelerator.unwrap_model(codec)
    # What a checkpoint holds besides TrainState, in this order (model.safetensors is the codec, model_1 the
    # discriminator).
    trained = Trained([codec] + ([disc] if disc is not None else []), [opt_g] + ([opt_d] if opt_d else []),
                       [sched_g] + ([sched_d] if sched_d else []))

    state = TrainState(num_processes=accelerator.num_processes)
    if resume:
        state = _load_checkpoint(accelerator, checkpoint, config, trained)
        crops.skipped.update((name, "reported before the resume") for name in state.skipped_files)
        if state.step >= total and main:
            logger.warning("the checkpoint is at step %d, max_steps is %d: nothing to train", state.step, total)
    if main:
        # Records past the checkpoint (or of a run that died before its first one) are about to be redone.
        truncate_log(out / LOG_NAME, state.step)
        logger.info("training %s (%d parameters) on %d clips from %s, steps %d -> %d, %d process(es)",
                    config.name, model.num_parameters(), len(crops), data, state.step, total,
                    accelerator.num_processes)

    rank = accelerator.process_index
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # per term: the adversarial ones exist only from adversarial_start_step
    steps, tick, reported = 0, time.perf_counter(), set(crops.skipped)
    bar = tqdm(total=total, initial=state.step, disable=not main, desc="codec", dynamic_ncols=True)
    for step in range(state.step, total):
        # Everything random in this step follows from (seed, step, rank): resume needs no RNG history.
        torch.manual_seed(step_seed(tc.seed, step, rank))
        # This rank's share of the step's global batch (batch_size x processes crops drawn from (seed, step)).
        wav = crops.batch(step, tc.batch_size, rank).to(accelerator.device)  # (B, C, N)
        codec.train()
        if tc.freeze_codes:  # the quantizer itself stays in train mode: its dropout still picks the bitrate
            model.encoder.eval()
            model.quantizer.levels.eval()
        pitch_target = pitch_targets(wav, config) if model.pitch_phase else None
        teacher = pitch_target if pitch_target is not None and step < tc.pitch_teacher_steps else None
        res = _float32(codec(wav, pitch=teacher))
        terms = {
            "mel": mel_loss(res.audio, wav),
            "stft": stft_loss(res.audio, wav),
            "commit": res.commit_loss,
            "codebook": res.codebook_loss,
        }
        loss = (tc.mel_weight * terms["mel"] + tc.stft_weight * terms["stft"]
                + tc.commitment_weight * terms["commit"] + tc.codebook_weight * terms["codebook"])
        for name, weight, optional_loss in optional_losses:
            terms[name] = optional_loss(res.audio, wav)
            loss = loss + weight * terms[name]
        if pitch_target is not None:
            terms["f0"], terms["voicing"] = pitch_losses(res.pitch, pitch_target)
            loss = loss + tc.pitch_weight * (terms["f0"] + terms["voicing"])
        if disc is not None and step >= adversarial_from:
            batch = wav.shape[0]
            logits, _ = disc(torch.cat([wav, res.audio.detach()]))  # one pass over real and fake
            terms["disc"] = discriminator_hinge_loss([x[:batch] for x in logits], [x[batch:] for x in logits])
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(terms["disc"])
            terms["disc_grad_norm"] = accelerator.clip_grad_norm_(disc.parameters(), tc.grad_clip)
            opt_d.step()
            sched_d.step()
            # The generator's pass through the updated discriminator leaves gradients on it that the next
            # zero_grad discards: no need to all-reduce them.
            with accelerator.no_sync(disc):
                logits, features = disc(torch.cat([wav, res.audio]))
            terms["adv"] = generator_hinge_loss([x[batch:] for x in logits])
            terms["feat"] = feature_matching_loss([[f[:batch] for f in fs] for fs in features],
                                                  [[f[batch:] for f in fs] for fs in features])
            loss = loss + tc.adversarial_weight * terms["adv"] + tc.feature_weight * terms["feat"]
        terms["loss"] = loss
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        terms["grad_norm"] = accelerator.clip_grad_norm_(codec.parameters(), tc.grad_clip)
        opt_g.step()
        sched_g.step()
        state.step = step + 1
        bar.update(1)

        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
            counts[name] = counts.get(name, 0) + 1
        steps += 1
        if state.step % tc.log_every == 0 or state.step == total:
            means = {name: sums[name] / counts[name] for name in sums}
            record = _log_record(accelerator, model, means, steps, res.codes, state.step, opt_g, tick)
            new_skips = gather_object([name for name in crops.skipped if name not in reported])
            reported.update(new_skips)
            state.skipped_files.extend(n for n in dict.fromkeys(new_skips) if n not in state.skipped_files)
            if main:
                record["skipped_files"] = len(state.skipped_files)
                with open(out / LOG_NAME, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['loss']:.3f}", mel=f"{record['mel']:.3f}")
                for name in dict.fromkeys(new_skips):
                    logger.warning("skipped unreadable clip %s: %s", name, crops.skipped.get(name, "see its process"))
            sums, counts, steps, tick = {}, {}, 0, time.perf_counter()
        if state.step % tc.save_every == 0 or state.step == total:
            _save_checkpoint(accelerator, out, state, config, model, trained)
    bar.close()
    if state.skipped_files and main:
        logger.warning("%d clip(s) could not be read and were skipped: %s", len(state.skipped_files),
                       ", ".join(state.skipped_files[:20]) + (" ..." if len(state.skipped_files) > 20 else ""))
    return model.eval()


def pitch_targets(wav: torch.Tensor, config: CodecConfig) -> torch.Tensor:
    """YIN's f0 (Hz) and voicing (0 or 1, at `VOICING_THRESHOLD`) of every channel, (B * C, 2, T) at the codec's
    frame rate: what a pitch head learns."""
    b, c, n = wav.shape
    flat = torch.nn.functional.pad(wav.reshape(b * c, n), (0, -n % config.hop_length))
    f0, voiced = yin(flat, config.sample_rate, config.hop_length, *PITCH_RANGE_HZ, threshold=VOICING_THRESHOLD)
    return torch.stack([f0, voiced.to(f0.dtype)], dim=1)


def export_checkpoint(run: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write the codec of a run's latest checkpoint (`run/checkpoint`) as a codec folder (`config.json` +
    `model.safetensors`, atomically) and return it: to evaluate or tokenize with a run that is still training.

    `dtype=torch.float16` halves the file. Raises CheckpointError when `run` holds no readable checkpoint.
    """
    checkpoint = Path(run) / CHECKPOINT_DIR
    if not checkpoint.is_dir():
        raise CheckpointError(f"{str(run)!r} holds no codec checkpoint (no {CHECKPOINT_DIR}/ folder); pass the run "
                              "folder of `rvqaudio train-codec --out`")
    # accelerate names the first prepared model's weights model.safetensors, beside the config.json we write.
    config_dict, state = load_checkpoint(checkpoint)
    # Under DDP accelerate stores the wrapped model, whose keys carry DistributedDataParallel's prefix.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return RVQCodec.from_state_dict(config_dict, state, checkpoint).save_pretrained(out, dtype=dtype)


def load_initial_weights(codec: RVQCodec, init_from: str | os.PathLike) -> None:
    """Copy a trained codec's weights into `codec`; their code spaces (fingerprints) must be the same."""
    start = RVQCodec.from_pretrained(init_from)
    diff = codec.config.code_space_differences(start.config)
    if diff:
        raise CheckpointError(f"cannot start from {str(init_from)!r}: its codec differs from this config in {diff}")
    # A decoder gaining a pitch head or phase offsets starts them from scratch (the offsets from zero); one losing
    # its offsets drops them (the source's own phase, as a harmonic-source phase without `edge.offsets` or without
    # `voiced` reads them). Every other weight must be there.
    offsets = ("decoder.phase.edge_offset.", "decoder.phase.voiced_offset.", "decoder.phase.voiced_offset_mlp.")
    missing, unexpected = codec.load_state_dict(start.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith(("decoder.phase.pitch_head.", *offsets))]
    unexpected = [k for k in unexpected if not k.startswith(offsets)]
    if missing or unexpected:
        raise CheckpointError(f"cannot start from {str(init_from)!r}: missing weights {missing[:5]}, unexpected "
                              f"weights {unexpected[:5]}")


def _float32(output):
    """A codec output (dataclass) with its floating-point tensors in float32, so that the losses are computed in
    float32: under bf16 autocast they come out bfloat16, and accelerate converts tuples and dicts only."""
    changes = {}
    for f in dataclasses.fields(output):
        value = getattr(output, f.name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            changes[f.name] = value.float()
    return dataclasses.replace(output, **changes)


def _lr_factor(tc: CodecTrainingConfig, total: int | None = None):
    """LR multiplier after `s` scheduler steps: linear warm-up over `warmup_steps`, exponential decay throughout and,
    with `cooldown_steps`, a linear fall to 0 over the last `cooldown_steps` of a run of `total` steps."""
    total = tc.max_steps if total is None else total

    def factor(s: int) -> float:
        warm = min(1.0, (s + 1) / tc.warmup_steps) if tc.warmup_steps > 0 else 1.0
        cool = min(1.0, (total - s) / tc.cooldown_steps) if tc.cooldown_steps > 0 else 1.0
        return warm * tc.lr_decay ** s * max(0.0, cool)
    return factor


def _log_record(accelerator: Accelerator, model: RVQCodec, means: dict[str, float], steps: int, codes: torch.Tensor,
                step: int, optimizer: torch.optim.Optimizer, tick: float) -> dict:
    """Loss terms averaged over the interval and the processes, learning rate, speed and codebook statistics."""
    names = sorted(means)
    values = torch.tensor([means[n] for n in names], dtype=torch.float64, device=accelerator.device)
    values = accelerator.reduce(values, reduction="mean")
    record: dict = {"step": step, **{n: float(v) for n, v in zip(names, values)}}
    record["lr"] = optimizer.param_groups[0]["lr"]
    record["seconds_per_step"] = (time.perf_counter() - tick) / steps
    stats = model.quantizer.stats()
    for key in ("usage", "perplexity", "dead_fraction"):
        record[key] = [round(s[key], 4) for s in stats]
    # Distinct codes in this process's last batch, per level: a direct view of collapse, independent of EMAs.
    record["batch_usage"] = [round(codes[:, k].unique().numel() / model.codebook_size, 4)
                             for k in range(codes.shape[1])]
    return record


# ---- run folder and checkpoints -----------------------------------------------------------------

def _save_checkpoint(accelerator: Accelerator, out: Path, state: TrainState, config: CodecConfig,
                     model: RVQCodec, trained: Trained) -> None:
    _check_processes_agree(accelerator, model)

    def write_extra(folder: Path) -> None:
        state.save(folder / STATE_NAME)
        config.to_json_file(folder / "config.json")

    save_run_checkpoint(accelerator, out, write_extra, trained)


def _load_checkpoint(accelerator: Accelerator, checkpoint: Path, config: CodecConfig, trained: Trained) -> TrainState:
    saved = CodecConfig.from_json_file(checkpoint / "config.json")
    diff = config.code_space_differences(saved)
    if diff:
        raise CheckpointError(f"cannot resume from {str(checkpoint)!r}: its codec differs from this config in {diff}")
    if saved.training.freeze_codes != config.training.freeze_codes:
        raise CheckpointError(f"cannot resume from {str(checkpoint)!r} with training.freeze_codes="
                              f"{config.training.freeze_codes}: it was written with {saved.training.freeze_codes}, "
                              "and the optimizer's parameters differ")
    changed = sorted(k for k, v in dataclasses.asdict(config.training).items()
                     if k != "max_steps" and dataclasses.asdict(saved.training)[k] != v)
    if changed and accelerator.is_main_process:
        logger.warning("resuming with changed training settings %s: the run will differ from an uninterrupted one",
                       changed)
    state = TrainState.load(checkpoint / STATE_NAME)  # its num_processes: checked by check_resume_processes
    trained.load(accelerator, checkpoint)
    return state


def _check_processes_agree(accelerator: Accelerator, model: RVQCodec) -> None:
    """Every process must hold the same weights and codebooks; DDP syncs gradients, the quantizer its buffers."""
    if accelerator.num_processes == 1:
        return
    differing = []
    for name, tensor in model.state_dict().items():
        mine = tensor.detach().to(torch.float64)
        reference = mine.clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(mine, reference):
            differing.append(name)
    flags = gather_object([differing])
    bad = sorted({name for names in flags for name in names})
    if bad:
        raise RuntimeError(f"processes disagree on {len(bad)} tensors of the codec, e.g. {bad[:5]}: a "
                           "synchronisation bug (codebooks must be all-reduced or broadcast under DDP)")


def main(argv: list[str] | None = None) -> None:
    """`python -m tokenizer.training CONFIG DATA [DATA ...] OUT [--max-steps N] [--resume] [--seed S]`:
    `train_codec`, for launchers.

    torchrun and `accelerate launch` start one such process per worker (see the module docstring).
    """
    parser = argparse.ArgumentParser(prog="python -m tokenizer.training", description=train_codec.__doc__.split("\n")[0])
    parser.add_argument("config", help="codec config JSON, e.g. configs/codec_small.json")
    parser.add_argument("data", nargs="+",
                        help="folders of audio files, audio files, or saved Hugging Face datasets (pooled)")
    parser.add_argument("out", help="run folder: log.jsonl, checkpoint/ and final/")
    parser.add_argument("--max-steps", type=int, default=None, help="total steps (default: the config's max_steps)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--init-from", default=None, help="codec folder to start from (required by freeze_codes)")
    parser.add_argument("--seed", type=int, default=None, help="override training.seed (the batches drawn)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    final = train_codec(CodecConfig.from_json_file(args.config), args.data, args.out, args.max_steps, args.resume,
                        init_from=args.init_from, seed=args.seed)
    if PartialState().is_main_process:
        print(final)


if __name__ == "__main__":
    main()
