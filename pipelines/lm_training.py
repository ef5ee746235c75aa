"""Training the audio LM from scratch (`train_lm`) or from a trained one (`finetune`), with one accelerate loop.

    final = train_lm("configs/lm_small.json", "data/speech_codes", "runs/lm", codec="runs/codec/final",
                     training="configs/lm_train_small.json")
    final = finetune("runs/lm/final", "data/my_voice_codes", "runs/ft", lora=True)

From a shell, on one process, several CPU processes (DDP over gloo) or GPUs (NCCL), with no code change:

    python -m pipelines.finetune train-lm --config configs/lm_small.json --data DATA --codec CODEC --out OUT
    torchrun --standalone --nproc_per_node 2 -m pipelines.finetune finetune --model LM --data DATA --out OUT
    accelerate launch --config_file configs/accelerate/cpu_ddp2.yaml -m pipelines.finetune train-lm ...

(`configs/accelerate/` holds one config per setup; cpu_ddp2.yaml says why two CPU processes need accelerate's
torchrun path, MULTI_GPU: its CPU launcher starts one process only.)

`training.batch_size` is the GLOBAL batch: items per optimizer step, over all processes and accumulation steps;
each process runs `batch_size / (processes * grad_accum)` items per forward. The loss of a step is the loss of
the whole global batch (every target of every item weighs the same, as `AudioLM.loss` on the batch would give),
so a run's weights do not depend on how the batch is split: one process and two processes give the same weights
up to floating-point summation order. Items longer than `training.max_frames` frames are cropped: music to a random
window, speech from its start unless `training.speech_crop` is "random" (see `lm_data.BatchPlan`). A batch_size that
processes x grad_accum does not divide is refused when the run starts, on every process.

`training.mixed_precision` "bf16" autocasts the forward passes on a GPU or a CPU (weights, optimizer state and the
loss, computed from float32 logits, stay float32); "fp16" needs a CUDA device and trains with a gradient scaler.

What is written to `out`:
    log.jsonl       one record per `log_every` steps (loss, per-codebook losses, lr, grad_norm, speed) and one
                    per evaluation (eval_loss, eval_codebook_losses, eval_items, eval_source, and per task
                    eval_text_gain and eval_text_gain_codebooks: how much worse the held-out loss is with other
                    examples' texts, i.e. how much the LM uses its text; see `lm_validation.evaluation_record`)
    checkpoint/     every `save_every` steps and at the end, swapped in atomically: accelerate's state (weights,
                    optimizer, scheduler, RNG), train_state.json, training_config.json and lm/ (the LM's config and
                    text tokenizer)
    final/          the self-contained LM folder (`pipelines.defaults.save_lm`) that `load_lm` and generate read

Exact resume: the batches of a step follow from (seed, step) (see `lm_data`) and the model's own randomness
(dropout) from (seed, step, rank), so `resume=True` after a kill ends with the same weights as an uninterrupted
run on the same number of processes; a resume on another number is refused before anything is built.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from lm import AudioLM, AudioLMConfig, AudioLMModel, TextTokenizer
from lm.config import CODEC_FIELDS
from lm.objective import LMObjective
from lm.conditioners.phonemizer import VOCAB_SIZE as PHONEME_VOCAB_SIZE
from tokenizer import CheckpointError, RVQCodec
from tokenizer.extras import require_extra
# The run folder both trainers share: the same folder rules and atomic checkpoint swap.
from tokenizer.run_folder import (CHECKPOINT_DIR, FINAL_DIR, LOG_NAME, STATE_NAME, Trained, check_resume_processes,
                                  check_run_folder, make_accelerator, prepare, recover_interrupted_swap,
                                  save_run_checkpoint, step_seed, truncate_log)

from .defaults import load_lm, resolve_codec, save_lm
from .lm_data import BatchPlan, LMExamples, collate
from .lm_examples import (ALIGNMENT_NAME, align_phonemes, batch_tracks, examples_digest, fitting_texts, load_examples,
                          speech_rates)
from .lm_training_config import LMTrainingConfig, check_global_batch, lr_factor
from .lm_validation import evaluation_record

logger = logging.getLogger(__name__)

TRAINING_CONFIG_NAME, LM_SUBDIR = "training_config.json", "lm"
LORA_TARGETS = ["qkv", "out", "fc", "proj"]  # the attention and MLP linear layers of every block


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint."""

    step: int = 0
    num_processes: int = 1
    kind: str = "train-lm"  # or "finetune"
    lora: bool = False
    data_digest: str = ""  # of the training examples: a resume on other data is warned about

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


# ----------------------------------------------------------------------------------------- entry points


def train_lm(config: str | os.PathLike | AudioLMConfig, data, out: str | os.PathLike,
             codec: RVQCodec | str | os.PathLike | None = None, *, training: LMTrainingConfig | str | os.PathLike | None = None,
             max_steps: int | None = None, resume: bool = False, eval_data=None, task: str | None = None) -> Path:
    """Train a text tokenizer and a fresh LM on a tokenized dataset; returns `out/final` (a `save_lm` folder).

    Args:
        config: the LM architecture, an `AudioLMConfig` or a preset path (configs/lm_tiny.json, lm_small.json).
        data: a `rvqaudio tokenize` output folder, a saved Dataset/DatasetDict (train split; a "validation" or
            "test" split is the held-out set), or such an object; see `pipelines.lm_data`. A list of them trains
            on all together (e.g. speech and music, each with its own task and held-out rows).
        out: run folder: log.jsonl, checkpoint/, final/.
        codec: the codec that tokenized `data` (a folder or an RVQCodec; None: the bundled codec). The dataset
            records only the codec's fingerprint: a different codec is refused before anything runs.
        training: an `LMTrainingConfig`, a JSON file (configs/lm_train_*.json) or None for the defaults.
        max_steps: total optimizer steps (replaces training.max_steps, which the LR schedule spans).
        resume: continue `out/checkpoint` (the text tokenizer and LM config are taken from it).
        eval_data: the held-out set, replacing the data's own split or held-out fraction.
        task: the task of rows without a `task` column ("speech"/"music"; None: speech if there is a `voice`
            column, else music).

    The tokenizer is trained on the conditioning texts of the training rows (`condition_text(text, voice)`), with
    at most `training.text_vocab_size` pieces; the voices of the training rows are recorded as `config.voices`,
    and the one with the most rows as `config.default_voice`.
    """
    tc = _training_config(training, max_steps)
    accelerator = _accelerator(tc)
    out = Path(out)
    check_run_folder(out, resume)
    if resume:
        check_resume_processes(out, accelerator.num_processes)
    codec = resolve_codec(codec)
    train, held, source = load_examples(data, eval_data, codec, task, tc)
    _open_run_folder(accelerator, out)
    config = copy.deepcopy(config) if isinstance(config, AudioLMConfig) else AudioLMConfig.from_preset(config)
    if tc.phoneme_track and not config.phoneme_vocab_size:
        config.phoneme_vocab_size = PHONEME_VOCAB_SIZE
    if tc.beat_track:
        config.beat_track = True
    if resume:
        saved = out / CHECKPOINT_DIR / LM_SUBDIR
        text_tokenizer = TextTokenizer.from_pretrained(saved)
        lm_config = AudioLMConfig.from_pretrained(saved)
        lm_config.check_codec(codec)
        _check_same_architecture(config, lm_config, saved)
        lm = AudioLM(AudioLMModel(lm_config), text_tokenizer, codec)  # weights come from the checkpoint
    else:
        # The config's text_vocab_size, when set, bounds the vocabulary; sentencepiece may learn fewer pieces.
        vocab_size = config.text_vocab_size or tc.text_vocab_size
        text_tokenizer = TextTokenizer.train(train.texts, vocab_size=vocab_size, seed=tc.seed)
        config.text_vocab_size, config.null_condition_ids = None, None  # filled from the tokenizer
        config.voices = train.voices
        config.default_voice = train.most_frequent_voice  # the voice generation uses when none is named
        set_seed(tc.seed)  # the same initial weights on every process
        lm = AudioLM.from_config(config, text_tokenizer, codec)
        if lm.has_track("phoneme"):
            lm.config.frames_per_phoneme = speech_rates(train)
    if tc.phoneme_alignment:
        train, held = align_phonemes(accelerator, lm, codec, train, held, out)
    return _run(accelerator, lm, codec, train, held, source, tc, out, resume, TrainState(kind="train-lm"))


def finetune(model: str | os.PathLike, data, out: str | os.PathLike, *,
             training: LMTrainingConfig | str | os.PathLike | None = None, max_steps: int | None = None,
             resume: bool = False, lora: bool = False, eval_data=None, task: str | None = None) -> Path:
    """Continue training a self-contained LM folder on a tokenized dataset; returns `out/final` (a `save_lm` folder).

    `model` is a folder written by `train_lm`/`finetune`/`save_lm`; its text tokenizer is kept, and the data's
    voices are added to `config.voices`. The data's codec fingerprint must be the LM's codec's: a mismatch is
    refused before anything runs. With `lora=True` (needs `pip install peft`) only LoRA adapters of rank
    `training.lora_rank` on the attention and MLP layers are trained, then merged into the weights, so `final/`
    is a plain LM folder. Other arguments are those of `train_lm`.
    """
    tc = _training_config(training, max_steps)
    if lora:
        require_extra("lora", "lora=True (LoRA fine-tuning)")
    accelerator = _accelerator(tc)
    out = Path(out)
    check_run_folder(out, resume)
    if resume:
        check_resume_processes(out, accelerator.num_processes)
    lm = load_lm(model)
    codec = lm.codec
    train, held, source = load_examples(data, eval_data, codec, task, tc)
    _open_run_folder(accelerator, out)
    lm.config.voices = sorted(set(getattr(lm.config, "voices", None) or []) | set(train.voices))
    if tc.phoneme_track and not lm.has_track("phoneme"):
        set_seed(tc.seed)  # the same new weights on every process
        lm = lm.with_track("phoneme")
    if tc.beat_track and not lm.has_track("beat"):
        lm = lm.with_track("beat")  # its projection starts at zero: nothing random to agree on
    if lm.has_track("phoneme"):
        lm.config.frames_per_phoneme = {**(getattr(lm.config, "frames_per_phoneme", None) or {}),
                                        **speech_rates(train)}
    if tc.phoneme_alignment:
        train, held = align_phonemes(accelerator, lm, codec, train, held, out)
    return _run(accelerator, lm, codec, train, held, source, tc, out, resume, TrainState(kind="finetune", lora=lora))


def evaluate_lm(model: str | os.PathLike, data, *, training: LMTrainingConfig | str | os.PathLike | None = None,
                eval_data=None, task: str | None = None, run: str | os.PathLike | None = None,
                output: str | os.PathLike | None = None, weights: str = "float") -> dict:
    """The held-out loss and text gain of a trained LM, as a training run with these arguments would log them.

    `model` is a self-contained LM folder; `data`, `training`, `eval_data` and `task` are those of `train_lm`, and
    pick the same held-out rows (a run's seed, eval_fraction and max_eval_items decide them). Returns `eval_loss`,
    `eval_codebook_losses`, `eval_text_gain` and `eval_text_gain_codebooks` per task (see `lm_validation.evaluation_record`),
    `eval_items`, `eval_tasks` (held-out rows per task), `eval_source` and `model`; written as JSON to `output`.

    With `training.phoneme_alignment` the held-out phonemes are placed as the run placed them: read from the
    alignment that `run` (the run's output folder) kept when it was made from the same data and codec, else aligned
    again (minutes on a CPU). The run folder is only read.

    `weights` is how the LM multiplies on a CPU (`AudioLM.set_inference_weights`): 'int8' measures the loss of the
    int8 inference path, as generation with it computes (on other devices the stored weights serve either way).
    """
    from .evaluation.data import write_report

    tc = _training_config(training, None)
    lm = load_lm(model, weights=weights)
    train, held, source = load_examples(data, eval_data, lm.codec, task, tc)
    accelerator = Accelerator()
    if tc.phoneme_alignment:
        with tempfile.TemporaryDirectory() as scratch:
            if run is not None and (Path(run) / ALIGNMENT_NAME).is_file():
                # align_phonemes reuses the copy when its digest matches and replaces it, in scratch only, if not.
                shutil.copyfile(Path(run) / ALIGNMENT_NAME, Path(scratch) / ALIGNMENT_NAME)
            _, held = align_phonemes(accelerator, lm, lm.codec, train, held, Path(scratch))
    held = fitting_texts(lm, held, "evaluation")
    if len(held) == 0:
        raise ValueError("no held-out rows to evaluate: the data has no evaluation split and eval_fraction or "
                         "max_eval_items leaves none out")
    objective = LMObjective(lm.model.to(accelerator.device))
    max_frames = tc.max_frames or lm.config.max_audio_frames
    report = {"model": str(model), "weights": weights, **evaluation_record(accelerator, objective, lm, held, tc.batch_size, max_frames),
              "eval_items": len(held), "eval_tasks": {t: held.tasks.count(t) for t in sorted(set(held.tasks))},
              "eval_source": source}
    write_report(output, report)
    return report


def _check_same_architecture(config: str | os.PathLike | AudioLMConfig, saved: AudioLMConfig, where: Path) -> None:
    given = config if isinstance(config, AudioLMConfig) else AudioLMConfig.from_preset(config)
    filled = set(CODEC_FIELDS) | {"text_vocab_size", "null_condition_ids"}  # from the codec and the tokenizer
    own = AudioLMConfig.__annotations__  # the LM's fields, not PreTrainedConfig's bookkeeping
    differ = sorted(name for name in own if name not in filled and getattr(given, name) != getattr(saved, name))
    if differ:
        raise CheckpointError(f"cannot resume: the LM config given differs from the checkpoint's ({where}) in "
                              f"{differ}; resume with the config the run was started with")


def _training_config(training, max_steps: int | None) -> LMTrainingConfig:
    if training is None:
        tc = LMTrainingConfig()
    elif isinstance(training, LMTrainingConfig):
        tc = dataclasses.replace(training)
    else:
        tc = LMTrainingConfig.from_json_file(training)
    if max_steps is not None:
        tc = dataclasses.replace(tc, max_steps=max_steps)  # validated again
    return tc


def _accelerator(tc: LMTrainingConfig) -> Accelerator:
    """The run's accelerator; fp16 without CUDA, FSDP on one process and a global batch that the processes do not
    divide are ValueErrors here, before the data is read: every process refuses at once, none waits."""
    accelerator = make_accelerator(tc.mixed_precision)
    check_global_batch(tc, accelerator.num_processes)
    return accelerator


def _open_run_folder(accelerator: Accelerator, out: Path) -> None:
    accelerator.wait_for_everyone()  # every process has checked the data before the main one writes
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        recover_interrupted_swap(out)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------- the loop


def _run(accelerator: Accelerator, lm: AudioLM, codec: RVQCodec, train: LMExamples, held: LMExamples,
         source: str, tc: LMTrainingConfig, out: Path, resume: bool, state: TrainState) -> Path:
    cfg = lm.config
    P, A, rank, main = accelerator.num_processes, tc.grad_accum, accelerator.process_index, accelerator.is_main_process
    micro = tc.batch_size // (P * A)  # divisible: checked by _accelerator
    max_frames = tc.max_frames or cfg.max_audio_frames
    if max_frames > cfg.max_audio_frames:
        raise ValueError(f"training.max_frames={max_frames} is more than the model's max_audio_frames="
                         f"{cfg.max_audio_frames}; lower it, or use a model config with a longer audio range")
    train, held = fitting_texts(lm, train, "training"), fitting_texts(lm, held, "evaluation")
    if len(train) == 0:
        raise ValueError(f"no training rows are left: every text is longer than max_text_tokens="
                         f"{cfg.max_text_tokens}")
    from_start = np.asarray([task == "speech" for task in train.tasks]) if tc.speech_crop == "start" else None
    plan = BatchPlan(train.frames, tc.batch_size, max_frames, tc.seed, cfg.condition_dropout, from_start)
    state = dataclasses.replace(state, num_processes=P, data_digest=examples_digest(train))

    if tc.gradient_checkpointing:
        lm.model.activation_checkpointing_enable()
    peft_model = None
    if state.lora:
        from peft import LoraConfig, get_peft_model

        set_seed(tc.seed)  # the adapters' initial weights
        peft_model = get_peft_model(lm.model, LoraConfig(r=tc.lora_rank, lora_alpha=tc.lora_alpha,
                                                         target_modules=LORA_TARGETS, lora_dropout=0.0))
    # With LoRA, lm.model holds the adapters.
    objective = LMObjective(lm.model, tc.phoneme_input_dropout, {"beat": tc.beat_dropout})
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": tc.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=tc.lr, betas=tc.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tc))
    wrapped, optimizer = prepare(accelerator, objective, optimizer)
    # the scheduler stays outside prepare(): it would step once per process
    trained = Trained([wrapped], [optimizer], [scheduler])  # what a checkpoint saves besides TrainState
    if resume:
        state = _load_checkpoint(accelerator, out / CHECKPOINT_DIR, tc, state, trained)
    if main:
        truncate_log(out / LOG_NAME, state.step)  # records past the checkpoint are about to be redone
        logger.info("%s: %d parameters (%d trained), %d training items, %d held out (%s), steps %d -> %d, "
                    "%d process(es) x %d items x %d accumulation", state.kind, lm.model.num_parameters(),
                    sum(p.numel() for p in params), len(train), len(held), source, state.step, tc.max_steps,
                    P, micro, A)

    device, K = accelerator.device, cfg.num_codebooks
    sums, steps_done, frames_done, tick = torch.zeros(K, dtype=torch.float64), 0, 0, time.perf_counter()
    bar = tqdm(total=tc.max_steps, initial=state.step, disable=not main, desc=state.kind, dynamic_ncols=True)
    for step in range(state.step, tc.max_steps):
        torch.manual_seed(step_seed(tc.seed, step, rank))  # dropout: from (seed, step, rank), no RNG history
        batch = plan.batch(step)
        count = batch.target_count()  # targets per codebook in the whole global batch, all processes together
        mine = batch.part(rank * micro * A, (rank + 1) * micro * A)
        wrapped.train()
        optimizer.zero_grad(set_to_none=True)
        for a in range(A):
            part = collate(train, mine.part(a * micro, (a + 1) * micro))
            text_ids, text_mask = lm.encode_texts(part.texts, part.tasks)
            sync = contextlib.nullcontext() if a == A - 1 else accelerator.no_sync(wrapped)
            with sync:
                nll, counted = wrapped(text_ids.to(device), text_mask.to(device), part.drop.to(device),
                                       part.codes.to(device), part.code_lengths.to(device), part.cut.to(device),
                                       batch_tracks(lm, part))
                expected = int(part.code_lengths.sum() + (~part.cut).sum())
                if not bool((counted == expected).all()):
                    raise RuntimeError(f"the pattern laid out {counted.tolist()} targets per codebook, expected "
                                       f"{expected}: every frame must be a target once per codebook")
                # DDP averages gradients over processes: times P, the sum of the processes' terms is the loss.
                accelerator.backward(nll.sum() / (count * K) * P)
            sums += nll.detach().double().cpu() / count
        grad_norm = accelerator.clip_grad_norm_(params, tc.clip)
        lr = optimizer.param_groups[0]["lr"]  # this step's
        optimizer.step()
        scheduler.step()
        state.step = step + 1
        steps_done += 1
        frames_done += int(batch.length.sum())
        bar.update(1)

        if state.step % tc.log_every == 0 or state.step == tc.max_steps:
            per_codebook = accelerator.reduce(sums.to(device), reduction="sum").cpu() / steps_done
            seconds = (time.perf_counter() - tick) / steps_done
            record = {"step": state.step, "loss": float(per_codebook.mean()),
                      "codebook_losses": [round(float(x), 5) for x in per_codebook], "lr": lr,
                      "grad_norm": float(grad_norm), "epoch": batch.epoch, "seconds_per_step": seconds,
                      "frames_per_second": frames_done / steps_done / seconds}
            _append_log(accelerator, out, record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            sums.zero_()
            steps_done, frames_done, tick = 0, 0, time.perf_counter()
        paused = time.perf_counter()  # evaluation and saving are not counted in seconds_per_step
        if len(held) and (state.step % tc.eval_every == 0 or state.step == tc.max_steps):
            record = evaluation_record(accelerator, objective, lm, held, micro, max_frames)
            _append_log(accelerator, out, {"step": state.step, **record, "eval_items": len(held),
                                           "eval_source": source})
        if state.step % tc.save_every == 0 or state.step == tc.max_steps:
            _save_checkpoint(accelerator, out, state, tc, lm, trained)
        tick += time.perf_counter() - paused
    bar.close()

    if peft_model is not None:
        peft_model.merge_and_unload()  # folds the adapters into lm.model's linear layers, in place
    final = out / FINAL_DIR
    if main:
        lm.model.eval()
        save_lm(AudioLM(lm.model, lm.text_tokenizer, codec), codec, final)
    accelerator.wait_for_everyone()
    return final


def _append_log(accelerator: Accelerator, out: Path, record: dict) -> None:
    if accelerator.is_main_process:
        with open(out / LOG_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------------------- checkpoints


def _save_checkpoint(accelerator: Accelerator, out: Path, state: TrainState, tc: LMTrainingConfig, lm: AudioLM,
                     trained: Trained) -> None:
    """The shared checkpoint swap, with the LM's training state, training config, model config and tokenizer."""
    def write_extra(folder: Path) -> None:
        state.save(folder / STATE_NAME)
        tc.to_json_file(folder / TRAINING_CONFIG_NAME)
        lm.config.save_pretrained(folder / LM_SUBDIR)
        lm.text_tokenizer.save_pretrained(folder / LM_SUBDIR)

    save_run_checkpoint(accelerator, out, write_extra, trained)


def _load_checkpoint(accelerator: Accelerator, checkpoint: Path, tc: LMTrainingConfig, current: TrainState,
                     trained: Trained) -> TrainState:
    saved = TrainState.load(checkpoint / STATE_NAME)
    if (saved.kind, saved.lora) != (current.kind, current.lora):
        raise CheckpointError(f"cannot resume: {str(checkpoint)!r} is a {saved.kind} run (lora={saved.lora}), this "
                              f"is a {current.kind} run (lora={current.lora}); resume it the way it was started")
    if accelerator.is_main_process:
        old = LMTrainingConfig.from_json_file(checkpoint / TRAINING_CONFIG_NAME).to_dict()
        changed = sorted(k for k, v in tc.to_dict().items() if old.get(k) != v)
        if changed:
            logger.warning("resuming with changed training settings %s: the run will differ from an uninterrupted "
                           "one (max_steps changes the LR schedule)", changed)
        if saved.data_digest != current.data_digest:
            logger.warning("resuming on other training data than the checkpoint's: batches will differ")
    trained.load(accelerator, checkpoint)
    return dataclasses.replace(current, step=saved.step)
