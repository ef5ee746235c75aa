"""`train_lm` / `finetune`: batches from (seed, step), the loss of a split batch, exact resume, one process equal
to two, held-out evaluation, voices, codec checks before any step, LoRA merged into a plain LM folder."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, List, Value
from safetensors.torch import load_file

from lm import AudioLM, AudioLMConfig, GenerationConfig, PhonemeTrack, TextTokenizer, split_items
from lm.conditioners.phonemizer import lay_out, phoneme_ids, phoneme_units, phonemize
from pipelines.defaults import load_lm
from pipelines.finetune import main as cli_main
from pipelines.generate import generate
from pipelines.generation_request import GenerationRequest
from pipelines.lm_data import BatchPlan, LMExamples, collate, split_held_out
from lm.objective import LMObjective
from pipelines.lm_examples import ALIGNMENT_NAME, load_examples
from pipelines.lm_training import TrainState, evaluate_lm, finetune, train_lm
from pipelines.lm_training_config import LMTrainingConfig, lr_factor
from pipelines.tokenize.storage import codec_metadata, metadata_description
from tokenizer import CodecConfig, RVQCodec

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["hello world", "a calm piano melody", "the quick brown fox jumps", "drums and bass", "she sells sea shells",
         "an upbeat electronic track"]
TRAIN_VOICES, TEST_VOICES = ["flite-rms", "espeak-en", "festival-kal"], ["flite-slt"]
# Tolerance of one process against two (and of accumulation against one pass): the same arithmetic, summed in
# another order, after a few AdamW steps. Measured: max abs difference 2e-7 (normalising each process's loss
# by its own target count instead of the global one gives 1.4e-2).
WEIGHT_TOLERANCE = 1e-5


def _codec(codebook_size: int = 32) -> RVQCodec:
    torch.manual_seed(0)
    config = CodecConfig(sample_rate=8000, n_filters=4, strides=(2, 4), dimension=16,
                         quantizer={"num_codebooks": 4, "codebook_size": codebook_size})
    return RVQCodec(config).eval()  # 1000 frames/s, K=4; untrained: only its fingerprint and shape matter


def _dataset(codec: RVQCodec, n: int, seed: int, voices: list[str] | None, frames=(5, 30)) -> Dataset:
    """Rows as `rvqaudio tokenize` writes them (codes K x T, text, duration, source columns) with its metadata."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(*frames, n)
    columns = {"codes": [rng.integers(0, codec.codebook_size, (codec.num_codebooks, int(t))).tolist() for t in lengths],
               "text": [TEXTS[i % len(TEXTS)] for i in range(n)],
               "duration": [float(t) / codec.frame_rate for t in lengths]}
    features = {"codes": List(List(Value("int16"))), "text": Value("string"), "duration": Value("float64")}
    if voices is not None:
        columns["voice"] = [voices[i % len(voices)] for i in range(n)]
        features["voice"] = Value("string")
    features = Features(features)
    info = datasets.DatasetInfo(description=metadata_description(codec_metadata(codec, codec.num_codebooks)),
                                features=features)
    return Dataset.from_dict(columns, features=features, info=info)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A codec folder, a speech DatasetDict (train/test, voices), an LM preset and a training config."""
    root = tmp_path_factory.mktemp("lm_training")
    codec = _codec()
    codec.save_pretrained(root / "codec")
    DatasetDict({"train": _dataset(codec, 24, 0, TRAIN_VOICES),
                 "test": _dataset(codec, 4, 1, TEST_VOICES)}).save_to_disk(str(root / "speech"))
    (root / "lm.json").write_text(json.dumps(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=64, max_text_tokens=64, max_audio_frames=40,
                                                  condition_dropout=0.2, dropout=0.0)))
    _training(max_steps=4).to_json_file(root / "training.json")
    return {"root": root, "codec": root / "codec", "speech": root / "speech", "lm": root / "lm.json",
            "training": root / "training.json"}


def _training(**overrides) -> LMTrainingConfig:
    fields = dict(batch_size=4, max_steps=4, warmup_steps=1, lr=3e-3, eval_every=2, save_every=2, log_every=1,
                  text_vocab_size=300, max_frames=20, seed=0)
    return LMTrainingConfig(**{**fields, **overrides})


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _dies_at(step: int):
    """A BatchPlan.batch that is killed (KeyboardInterrupt) when asked for `step`: a run dies before that step."""
    original = BatchPlan.batch

    def batch(self, s):
        if s == step:
            raise KeyboardInterrupt
        return original(self, s)
    return batch


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory) -> Path:
    """The run folder of a 4-step train_lm on the speech data."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train_lm(files["lm"], files["speech"], run, codec=files["codec"], training=files["training"])
    return run


# ---- configuration --------------------------------------------------------------------------------------

def test_training_config_validates_and_round_trips_json(tmp_path):
    for name in ("lm_train_tiny.json", "lm_train_small.json", "lm_train_base.json", "lm_train_base_continue.json",
                 "lm_train_base_continue2.json"):
        preset = LMTrainingConfig.from_json_file(REPO / "configs" / name)
        preset.to_json_file(tmp_path / name)
        assert LMTrainingConfig.from_json_file(tmp_path / name) == preset
    # Continued training of the bundled LM keeps the first run's held-out rows: same seed, same held-out fraction.
    first, *more = (LMTrainingConfig.from_json_file(REPO / "configs" / n)
                    for n in ("lm_train_base.json", "lm_train_base_continue.json", "lm_train_base_continue2.json"))
    for stage in more:
        assert (stage.seed, stage.eval_fraction, stage.max_eval_items) == \
            (first.seed, first.eval_fraction, first.max_eval_items)
    assert LMTrainingConfig.from_json_file(REPO / "configs" / "lm_train_tiny.json").max_frames <= \
        AudioLMConfig.from_preset(REPO / "configs" / "lm_tiny.json").max_audio_frames
    for bad, match in ((dict(batch_size=0), "batch_size"), (dict(lr=-1.0), "lr"), (dict(schedule="step"), "schedule"),
                       (dict(mixed_precision="fp8"), "mixed_precision"), (dict(betas=(0.9,)), "betas"),
                       (dict(max_frames=0), "max_frames"), (dict(eval_fraction=0.9), "eval_fraction"),
                       (dict(speech_crop="middle"), "speech_crop must be one of \\['start', 'random'\\]")):
        with pytest.raises(ValueError, match=match):
            LMTrainingConfig(**bad)
    (tmp_path / "typo.json").write_text(json.dumps({"batch_sise": 4}))
    with pytest.raises(ValueError, match="unknown keys \\['batch_sise'\\]"):
        LMTrainingConfig.from_json_file(tmp_path / "typo.json")


def test_learning_rate_warms_up_then_decays_to_the_floor():
    tc = LMTrainingConfig(lr=1.0, warmup_steps=4, max_steps=104, min_lr_ratio=0.1)
    factor = lr_factor(tc)
    assert [factor(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factor(4) == pytest.approx(1.0) and factor(54) == pytest.approx(0.55) and factor(104) == pytest.approx(0.1)
    assert all(factor(s) >= factor(s + 1) for s in range(4, 200))
    linear = lr_factor(dataclasses.replace(tc, schedule="linear"))
    assert linear(29) == pytest.approx(1 - 0.9 * 0.25)
    assert lr_factor(dataclasses.replace(tc, schedule="constant"))(90) == 1.0


# ---- data ----------------------------------------------------------------------------------------------

def test_batches_are_a_pure_function_of_seed_and_step_and_epochs_are_permutations():
    frames = np.array([3, 50, 7, 12, 40, 9, 21])
    plan = BatchPlan(frames, batch_size=3, max_frames=10, seed=5, condition_dropout=0.5)
    seen = np.concatenate([plan.batch(s).index for s in range(7)])  # 21 positions = 3 epochs of 7
    for epoch in range(3):
        assert sorted(seen[7 * epoch:7 * (epoch + 1)]) == list(range(7))
    fresh = BatchPlan(frames, batch_size=3, max_frames=10, seed=5, condition_dropout=0.5)  # as after a resume
    for step in (6, 2):
        a, b = plan.batch(step), fresh.batch(step)
        assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("index", "start", "length", "cut", "drop"))
    other = BatchPlan(frames, batch_size=3, max_frames=10, seed=6, condition_dropout=0.5)
    assert not all(np.array_equal(plan.batch(s).index, other.batch(s).index) for s in range(3))
    for step in range(40):
        b = plan.batch(step)
        total = frames[b.index]
        assert np.array_equal(b.length, np.minimum(total, 10)) and (b.start >= 0).all()
        assert np.array_equal(b.cut, b.start + b.length < total)  # only a window short of the end loses its eos
    drops = np.concatenate([plan.batch(s).drop for s in range(200)])
    assert 0.4 < drops.mean() < 0.6


def test_speech_crops_start_at_the_beginning_and_leave_the_other_crops_where_they_were():
    frames = np.array([30, 50, 7, 40, 90, 25])
    speech = np.array([True, False, True, True, False, False])
    plan = BatchPlan(frames, batch_size=4, max_frames=10, seed=3)
    anchored = BatchPlan(frames, batch_size=4, max_frames=10, seed=3, from_start=speech)
    moved = 0
    for step in range(30):
        a, b = plan.batch(step), anchored.batch(step)
        assert np.array_equal(a.index, b.index) and np.array_equal(a.length, b.length)
        flagged = speech[b.index]
        assert (b.start[flagged] == 0).all() and np.array_equal(b.start[~flagged], a.start[~flagged])
        assert np.array_equal(b.cut, b.start + b.length < frames[b.index])
        moved += int((a.start[flagged] > 0).sum())
    assert moved > 0  # random windows would have started mid-utterance
    with pytest.raises(ValueError, match="one flag per example"):
        BatchPlan(frames, batch_size=4, max_frames=10, seed=3, from_start=speech[:3])


def test_collate_crops_exact_windows_and_counts_targets():
    codec = _codec()
    examples = LMExamples.from_dataset(_dataset(codec, 6, 3, ["v1", "v2"], frames=(5, 30)))
    assert examples.voices == ["v1", "v2"] and examples.texts[1] == f"[v2] {TEXTS[1]}"
    assert examples.tasks == ["speech"] * 6  # a voice column makes the rows speech
    plan = BatchPlan(examples.frames, batch_size=4, max_frames=8, seed=0)
    batch = plan.batch(1)
    part = collate(examples, batch)
    assert part.codes.shape == (4, 4, int(batch.length.max())) and part.codes.dtype == torch.long
    for b, i in enumerate(batch.index):
        full = torch.from_numpy(examples.codes(int(i)))
        n, s = int(batch.length[b]), int(batch.start[b])
        assert torch.equal(part.codes[b, :, :n], full[:, s:s + n])
    assert batch.target_count() == int(part.code_lengths.sum() + (~part.cut).sum())
    music = LMExamples.from_dataset(_dataset(codec, 3, 4, None))
    assert music.tasks == ["music"] * 3 and music.voices == [] and music.texts[0] == TEXTS[0]
    assert LMExamples.from_dataset(_dataset(codec, 3, 4, None), task="speech").tasks == ["speech"] * 3
    mixed = _dataset(codec, 3, 4, ["v"]).add_column("task", ["music", "speech", "music"])
    assert LMExamples.from_dataset(mixed, task="speech").tasks == ["music", "speech", "music"]  # the column wins
    with pytest.raises(ValueError, match="task column holds \\['sing'\\]"):
        LMExamples.from_dataset(mixed.remove_columns("task").add_column("task", ["sing"] * 3))
    empty = _dataset(codec, 3, 4, None).map(lambda row, i: {"text": "  " if i == 1 else row["text"]}, with_indices=True)
    assert len(LMExamples.from_dataset(empty)) == 2 and LMExamples.from_dataset(empty).dropped == {"empty text": 1}


def test_held_out_rows_are_deterministic_disjoint_and_bounded():
    examples = LMExamples.from_dataset(_dataset(_codec(), 40, 5, None))
    train, held = split_held_out(examples, 0.1, 100, seed=3)
    assert len(held) == 4 and len(train) == 36 and not set(train) & set(held)
    assert np.array_equal(split_held_out(examples, 0.1, 100, seed=3)[1], held)
    assert not np.array_equal(split_held_out(examples, 0.1, 100, seed=4)[1], held)
    assert len(split_held_out(examples, 0.5, 3, seed=3)[1]) == 3  # at most max_eval_items
    assert len(split_held_out(examples, 0.0, 3, seed=3)[1]) == 0


def test_mismatched_texts_keep_each_voice_and_task_and_the_text_gain_is_zero_when_texts_agree():
    codec = _codec()
    speech = LMExamples.from_dataset(_dataset(codec, 5, 0, ["v1", "v2"]))
    music = LMExamples.from_dataset(_dataset(codec, 3, 1, None))
    examples = LMExamples.concatenate([speech, music])
    swapped = examples.with_mismatched_texts()
    assert swapped.tasks == examples.tasks and swapped.voice_of == examples.voice_of
    # Speech gets the next speech row's words in its own voice; music the next music row's caption.
    assert swapped.texts[:5] == [f"[{['v1', 'v2'][i % 2]}] {TEXTS[(i + 1) % 5]}" for i in range(5)]
    assert swapped.texts[5:] == [TEXTS[1], TEXTS[2], TEXTS[0]]
    assert LMExamples.from_dataset(_dataset(codec, 1, 0, ["v1"])).with_mismatched_texts().texts == [f"[v1] {TEXTS[0]}"]

    from accelerate import Accelerator
    from pipelines.lm_validation import evaluation_record

    tokenizer = TextTokenizer.train(examples.texts, vocab_size=300, seed=0)
    torch.manual_seed(0)
    lm = AudioLM.from_config(AudioLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=64, max_audio_frames=40), tokenizer, codec)
    objective = LMObjective(lm.model)
    gains = evaluation_record(Accelerator(cpu=True), objective, lm, examples, 4, 40)["eval_text_gain_codebooks"]
    assert set(gains) == {"speech", "music"} and all(len(g) == 4 for g in gains.values())
    same = dataclasses.replace(examples, texts=[f"[{v}] hello" if v else "a song" for v in examples.voice_of])
    record = evaluation_record(Accelerator(cpu=True), objective, lm, same, 4, 40)
    assert all(g == [0.0] * 4 for g in record["eval_text_gain_codebooks"].values())  # nothing to mismatch


def test_the_objective_is_the_lm_loss_and_a_split_batch_sums_to_the_whole():
    codec = _codec()
    examples = LMExamples.from_dataset(_dataset(codec, 6, 6, ["v"]))
    tokenizer = TextTokenizer.train(examples.texts, vocab_size=300, seed=0)
    torch.manual_seed(0)
    lm = AudioLM.from_config(AudioLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=64, max_audio_frames=40), tokenizer, codec)
    lm.model.eval()
    objective = LMObjective(lm.model)
    batch = collate(examples, BatchPlan(examples.frames, 6, 40, seed=0).batch(0))  # nothing cut, nothing dropped
    ids, mask = lm.encode_texts(batch.texts, batch.tasks)
    with torch.no_grad():
        nll, counted = objective(ids, mask, batch.drop, batch.codes, batch.code_lengths, batch.cut)
        reference = lm.loss(batch.texts, batch.codes, batch.code_lengths, task=batch.tasks)
    count = int(batch.code_lengths.sum()) + 6
    assert counted.tolist() == [count] * 4
    torch.testing.assert_close(nll.sum() / (count * 4), reference.loss, rtol=1e-5, atol=0)
    halves = []
    for lo, hi in ((0, 2), (2, 6)):  # the padding differs in each half: it must not change any term
        i2, m2 = lm.encode_texts(batch.texts[lo:hi], batch.tasks[lo:hi])
        n = int(batch.code_lengths[lo:hi].max())
        with torch.no_grad():
            halves.append(objective(i2, m2, batch.drop[lo:hi], batch.codes[lo:hi, :, :n], batch.code_lengths[lo:hi],
                                    batch.cut[lo:hi])[0])
    torch.testing.assert_close(halves[0] + halves[1], nll, rtol=1e-5, atol=0)
    # A cut item loses exactly its end-of-audio targets; dropping a text changes the loss.
    cut = batch.cut.clone()
    cut[0] = True
    with torch.no_grad():
        assert objective(ids, mask, batch.drop, batch.codes, batch.code_lengths, cut)[1].tolist() == [count - 1] * 4
        dropped = objective(ids, mask, torch.ones(6, dtype=torch.bool), batch.codes, batch.code_lengths, batch.cut)[0]
    assert not torch.allclose(dropped, nll)


# ---- training runs -------------------------------------------------------------------------------------

def test_train_lm_writes_an_lm_folder_that_generates_and_records_voices(trained, files):
    final = trained / "final"
    lm = load_lm(final)
    assert lm.config.voices == sorted(TRAIN_VOICES)  # the held-out test voices are not the model's voices
    assert lm.config.default_voice == sorted(TRAIN_VOICES)[0]  # as many rows each: the first in sorted order
    assert lm.config.codec_fingerprint == RVQCodec.from_pretrained(files["codec"]).fingerprint
    # 12 frames at 1000 Hz; an item that samples end of audio earlier is padded, so T is the longest item's length.
    texts = [f"[{voice}] hello world" for voice in TRAIN_VOICES] + ["[flite-rms] drums and bass"]
    codes = lm.generate(texts, GenerationConfig(duration=0.012, task="speech", seed=0))
    assert codes.shape == (4, 4, 12) and codes.dtype == torch.long
    assert all(0 <= int(item.min()) and int(item.max()) < 32 for item in split_items(codes))
    log = _log(trained)
    train_records = [r for r in log if "loss" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and len(r["codebook_losses"]) == 4 for r in train_records)
    assert train_records[0]["lr"] == pytest.approx(3e-3)  # warm-up of one step, then the cosine
    evals = [r for r in log if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval_items"] == 4 and r["eval_source"] == "the dataset's 'test' split" for r in evals)
    assert all(np.isfinite(r["eval_loss"]) for r in evals)
    assert all(set(r["eval_text_gain"]) == {"speech"} and np.isfinite(r["eval_text_gain"]["speech"])
               and len(r["eval_text_gain_codebooks"]["speech"]) == 4 for r in evals)
    # The checkpoint's model weights are the final folder's.
    state = load_file(trained / "checkpoint" / "model.safetensors")
    weights = load_file(final / "model.safetensors")
    assert _max_diff({k.removeprefix("model."): v for k, v in state.items()}, weights) == 0


def test_eval_lm_gives_the_runs_last_evaluation(trained, files, tmp_path, capsys):
    from pipelines.cli import main

    last = [r for r in _log(trained) if "eval_loss" in r][-1]
    out = tmp_path / "eval.json"
    assert main(["eval-lm", "--model", str(trained / "final"), "--data", str(files["speech"]),
                 "--training-config", str(files["training"]), "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["eval_items"] == last["eval_items"] and report["eval_source"] == last["eval_source"]
    assert report["eval_tasks"] == {"speech": 4}
    assert report["eval_loss"] == pytest.approx(last["eval_loss"], rel=1e-5)  # same rows, same weights
    assert report["eval_text_gain"]["speech"] == pytest.approx(last["eval_text_gain"]["speech"], abs=1e-4)
    assert "text gain, speech" in capsys.readouterr().out
    assert main(["eval-lm", "--model", str(tmp_path / "nothing"), "--data", str(files["speech"])]) == 2


def test_an_interrupted_run_resumes_to_the_same_weights(files, tmp_path, monkeypatch):
    lm_config = AudioLMConfig.from_preset(files["lm"])
    lm_config.dropout = 0.1  # model randomness too must follow (seed, step, rank)
    tc = _training(max_steps=6, save_every=2, eval_every=3)
    whole = train_lm(lm_config, files["speech"], tmp_path / "whole", codec=files["codec"], training=tc)

    monkeypatch.setattr(BatchPlan, "batch", _dies_at(5))  # after the checkpoint of step 4
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_lm(lm_config, files["speech"], cut, codec=files["codec"], training=tc)
    monkeypatch.undo()
    assert TrainState.load(cut / "checkpoint" / "train_state.json").step == 4 and not (cut / "final").exists()
    with pytest.raises(ValueError, match="already holds a training run"):
        train_lm(lm_config, files["speech"], cut, codec=files["codec"], training=tc)
    with pytest.raises(ValueError, match="differs from the checkpoint's .* in \\['hidden_size'\\]"):
        train_lm(dataclasses.replace(lm_config, hidden_size=64), files["speech"], cut, codec=files["codec"],
                 training=tc, resume=True)
    resumed = train_lm(lm_config, files["speech"], cut, codec=files["codec"], training=tc, resume=True)
    expected, got = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    # The resumed log has each step once, with the uninterrupted run's values (timings aside).
    timing = ("seconds_per_step", "frames_per_second")
    assert [{k: v for k, v in r.items() if k not in timing} for r in _log(cut)] == \
           [{k: v for k, v in r.items() if k not in timing} for r in _log(tmp_path / "whole")]


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one_with_the_same_global_batch(files, tmp_path):
    args = ["--config", str(files["lm"]), "--data", str(files["speech"]), "--codec", str(files["codec"]),
            "--training-config", str(files["training"])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipelines.finetune", "train-lm", *args, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert TrainState.load(tmp_path / "two" / "checkpoint" / "train_state.json").num_processes == 2
    assert cli_main(["train-lm", *args, "--out", str(tmp_path / "one")]) == 0
    one, two = (load_file(tmp_path / r / "final" / "model.safetensors") for r in ("one", "two"))
    assert _max_diff(one, two) < WEIGHT_TOLERANCE
    assert _max_diff(one, _initial_weights(files)) > 100 * WEIGHT_TOLERANCE  # training moved them far more than that
    losses = [[r["loss"] for r in _log(tmp_path / run) if "loss" in r] for run in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    # Two accumulation steps of half the batch are one pass of the whole batch, too.
    accumulated = train_lm(files["lm"], files["speech"], tmp_path / "accum", codec=files["codec"],
                           training=_training(grad_accum=2))
    assert _max_diff(one, load_file(accumulated / "model.safetensors")) < WEIGHT_TOLERANCE


def _initial_weights(files) -> dict:
    """The weights train_lm starts from, rebuilt as it builds them (tokenizer from the training texts, seed 0)."""
    from pipelines.lm_data import open_lm_data

    train, _, _ = open_lm_data(files["speech"])
    examples = LMExamples.from_dataset(train)
    tokenizer = TextTokenizer.train(examples.texts, vocab_size=300, seed=0)
    config = AudioLMConfig.from_preset(files["lm"])
    torch.manual_seed(0)
    lm = AudioLM.from_config(config, tokenizer, RVQCodec.from_pretrained(files["codec"]))
    return {k: v.detach() for k, v in lm.model.state_dict().items()}


def test_codec_mismatch_is_refused_before_any_step(files, trained, tmp_path):
    other = _codec(codebook_size=64)
    other.save_pretrained(tmp_path / "other_codec")
    with pytest.raises(ValueError, match="codec mismatch: the training data .*speech.* holds codes of codec fingerprint"):
        train_lm(files["lm"], files["speech"], tmp_path / "a", codec=tmp_path / "other_codec", training=_training())
    assert not (tmp_path / "a").exists()
    _dataset(other, 8, 2, None).save_to_disk(str(tmp_path / "other_data"))
    with pytest.raises(ValueError, match="fingerprint"):
        finetune(trained / "final", tmp_path / "other_data", tmp_path / "b", training=_training())
    assert not (tmp_path / "b").exists()
    assert cli_main(["finetune", "--model", str(trained / "final"), "--data", str(tmp_path / "other_data"),
                     "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()


def test_finetune_continues_the_lm_and_adds_the_new_voices(trained, files, tmp_path):
    codec = RVQCodec.from_pretrained(files["codec"])
    _dataset(codec, 12, 7, ["new-voice"]).save_to_disk(str(tmp_path / "mine"))
    final = finetune(trained / "final", tmp_path / "mine", tmp_path / "ft", training=_training(max_steps=2))
    base, tuned = load_lm(trained / "final"), load_lm(final)
    assert tuned.config.voices == sorted(TRAIN_VOICES + ["new-voice"])
    assert tuned.text_tokenizer.model_bytes() == base.text_tokenizer.model_bytes()
    before, after = base.model.state_dict(), tuned.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("qkv.weight"))
    evals = [r for r in _log(tmp_path / "ft") if "eval_loss" in r]
    assert evals and evals[-1]["eval_source"] == "a held-out fraction of the training rows" and evals[-1]["eval_items"] == 1


def test_lora_trains_adapters_only_and_saves_a_plain_merged_lm(trained, files, tmp_path, monkeypatch):
    pytest.importorskip("peft")
    tc = _training(max_steps=2, save_every=1)
    final = finetune(trained / "final", files["speech"], tmp_path / "lora", lora=True, training=tc)
    before = load_file(trained / "final" / "model.safetensors")
    after = load_file(final / "model.safetensors")
    assert after.keys() == before.keys()  # merged: no adapter tensors, the plain LM's names
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapted = {k for k in before if k.split(".")[-2] in ("qkv", "out", "fc", "proj")}
    assert changed and changed <= adapted  # embeddings, norms and heads are frozen
    assert load_lm(final).generate(["[flite-rms] hi"], GenerationConfig(duration=0.005, task="speech", seed=0)).shape[1] == 4
    # Killed after its first step and resumed, a LoRA run ends where the uninterrupted one did (adapters seeded).
    monkeypatch.setattr(BatchPlan, "batch", _dies_at(1))
    with pytest.raises(KeyboardInterrupt):
        finetune(trained / "final", files["speech"], tmp_path / "cut", lora=True, training=tc)
    monkeypatch.undo()
    resumed = finetune(trained / "final", files["speech"], tmp_path / "cut", lora=True, training=tc, resume=True)
    assert _max_diff(after, load_file(resumed / "model.safetensors")) == 0

    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    with pytest.raises(ImportError, match=r"pip install \"rvqaudio\[lora\]\""):
        finetune(trained / "final", files["speech"], tmp_path / "nolora", lora=True, training=_training())
    assert not (tmp_path / "nolora").exists()


def test_speech_and_music_sources_train_together_each_with_its_task_and_held_out_rows(files, tmp_path):
    codec = RVQCodec.from_pretrained(files["codec"])
    DatasetDict({"train": _dataset(codec, 10, 3, None), "test": _dataset(codec, 3, 4, None)}).save_to_disk(
        str(tmp_path / "music"))
    tc = _training(max_steps=2)
    train, held, source = load_examples([files["speech"], tmp_path / "music"], None, codec, None, tc)
    assert train.tasks == ["speech"] * 24 + ["music"] * 10 and held.tasks == ["speech"] * 4 + ["music"] * 3
    assert train.voices == sorted(TRAIN_VOICES) and train.texts[-1] == TEXTS[9 % len(TEXTS)]
    alone, _, _ = load_examples(tmp_path / "music", None, codec, None, tc)
    np.testing.assert_array_equal(train.codes(30), alone.codes(6))  # rows of a later source keep their codes
    assert str(tmp_path / "music") in source and "'test' split" in source
    final = train_lm(files["lm"], [files["speech"], tmp_path / "music"], tmp_path / "run", codec=codec, training=tc)
    assert load_lm(final).config.voices == sorted(TRAIN_VOICES)
    with pytest.raises(ValueError, match="several sources"):
        load_examples([files["speech"], tmp_path / "music"], files["speech"], codec, None, tc)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_finetune_adds_a_phoneme_track_with_each_voices_rate_and_generate_uses_it(trained, files, tmp_path,
                                                                                  monkeypatch):
    tc = _training(max_steps=2, save_every=1, phoneme_track=True)
    final = finetune(trained / "final", files["speech"], tmp_path / "ph", training=tc)
    base, tuned = load_lm(trained / "final"), load_lm(final)
    assert tuned.has_track("phoneme") and not base.has_track("phoneme")
    assert tuned.model.tracks["phoneme"].projection.weight.abs().sum() > 0  # the track trained from its zero start
    # Each voice's rate is the median of its rows' frames per phoneme, "" that of all rows.
    rows = datasets.load_from_disk(str(files["speech"]))["train"]
    rates = {}
    for text, voice, codes in zip(rows["text"], rows["voice"], rows["codes"]):
        rate = len(codes[0]) / len(phoneme_ids(phonemize(text)))
        rates.setdefault(voice, []).append(rate)
        rates.setdefault("", []).append(rate)
    expected = {voice: round(float(np.median(values)), 4) for voice, values in rates.items()}
    assert tuned.config.frames_per_phoneme == expected
    evals = [r for r in _log(tmp_path / "ph") if "eval_loss" in r]
    assert "speech" in evals[-1]["eval_text_gain"]
    # An interrupted run resumes (the track is added again before the checkpoint is loaded) to the same weights.
    monkeypatch.setattr(BatchPlan, "batch", _dies_at(1))
    with pytest.raises(KeyboardInterrupt):
        finetune(trained / "final", files["speech"], tmp_path / "cut", training=tc)
    monkeypatch.undo()
    resumed = finetune(trained / "final", files["speech"], tmp_path / "cut", training=tc, resume=True)
    assert _max_diff(load_lm(resumed).model.state_dict(), tuned.model.state_dict()) == 0.0
    # Speech generation spreads the text's phonemes over the voice's frames; music gets no track.
    clip = generate("hello world", task="speech", voice="flite-rms", model=final, duration=0.03, seed=0,
                    progress=False)
    assert clip.waveform.shape[-1] > 0 and torch.isfinite(clip.waveform).all()
    request = GenerationRequest("hello world", "speech", 0.03, 0, 1.0, 250, 1.0, 3.0, "flite-rms", None, None, tuned, None)
    track = request.phoneme_track()
    count = len(phoneme_ids(phonemize("hello world")))
    assert track.total_frames.tolist() == [max(1, round(count * expected["flite-rms"]))]
    assert GenerationRequest("drums", "music", 0.03, 0, 1.0, 250, 1.0, 3.0, None, None, None, tuned, None).phoneme_track() \
        is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_phoneme_alignment_places_the_phonemes_records_durations_and_resumes_from_its_cache(trained, files, tmp_path,
                                                                                           monkeypatch):
    tc = _training(max_steps=2, save_every=1, phoneme_track=True, phoneme_alignment=True)
    final = finetune(trained / "final", files["speech"], tmp_path / "al", training=tc)
    saved = json.loads((tmp_path / "al" / ALIGNMENT_NAME).read_text())
    rows = datasets.load_from_disk(str(files["speech"]))["train"]
    train, _, _ = load_examples(files["speech"], None, RVQCodec.from_pretrained(files["codec"]), None, tc)
    assert len(saved["train"]) == len(train)
    for i, entry in enumerate(saved["train"]):
        text = train.transcript(i)
        if entry is None:  # only a row whose sounds outnumber its frames is spread evenly
            assert len(phoneme_units(phonemize(text))) > train.frames[i]
            continue
        starts, end = entry
        assert len(starts) == len(phoneme_ids(phonemize(text))) and 1 <= end <= train.frames[i]
        assert starts == sorted(starts) and starts[-1] <= end
    assert sum(entry is not None for entry in saved["train"]) > len(train) // 2
    # eval-lm places the held-out phonemes as the run did: from the run's alignment, read only, or aligned again.
    last = [r for r in _log(tmp_path / "al") if "eval_loss" in r][-1]
    kept = (tmp_path / "al" / ALIGNMENT_NAME).read_bytes()
    for run in (tmp_path / "al", None):
        report = evaluate_lm(final, files["speech"], training=tc, run=run)
        assert report["eval_loss"] == pytest.approx(last["eval_loss"], abs=1e-9)  # same rows, weights, placement
        assert report["eval_text_gain"]["speech"] == pytest.approx(last["eval_text_gain"]["speech"], abs=1e-4)
    assert (tmp_path / "al" / ALIGNMENT_NAME).read_bytes() == kept
    spread = evaluate_lm(final, files["speech"], training=dataclasses.replace(tc, phoneme_alignment=False))
    assert abs(spread["eval_loss"] - last["eval_loss"]) > 1e-7  # an even spread is not the run's placement
    durations = load_lm(final).config.phoneme_durations
    assert set(durations) == set(rows["voice"]) | {""} and durations == saved["durations"]
    assert all(frames >= 0 for table in durations.values() for frames in table.values())
    # Generation lays the sentence out with the voice's durations.
    tuned = load_lm(final)
    request = GenerationRequest("hello world", "speech", 0.03, 0, 1.0, 250, 1.0, 3.0, "flite-rms", None, None, tuned, None)
    track = request.phoneme_track()
    starts, end = lay_out(phonemize("hello world"), {**durations[""], **durations["flite-rms"]})
    assert track.starts[0].tolist() == starts and track.total_frames.tolist() == [end]
    # ...and does not let the LM end the audio before that layout's end (unless min_duration says otherwise).
    seen = []
    monkeypatch.setattr(tuned, "stream", lambda texts, config, **kwargs: seen.append(kwargs["min_frames"]) or iter(()))
    list(GenerationRequest(["hello world", "hello"], "speech", 9.0, 0, 1.0, 250, 1.0, 3.0, "flite-rms", None, None, tuned,
                  None).frames(progress=False))
    short = lay_out(phonemize("hello"), {**durations[""], **durations["flite-rms"]})[1]
    assert seen[-1].tolist() == [end, short]  # each text's own layout
    list(GenerationRequest("hello world", "speech", 9.0, 0, 1.0, 250, 1.0, 3.0, "flite-rms", None, 0.0, tuned,
                  None).frames(progress=False))
    assert seen[-1] is None  # an explicit min_duration is the only floor
    monkeypatch.undo()
    # A resumed run reads the alignment back instead of aligning again, and ends with the same weights.
    monkeypatch.setattr(BatchPlan, "batch", _dies_at(1))
    with pytest.raises(KeyboardInterrupt):
        finetune(trained / "final", files["speech"], tmp_path / "cut", training=tc)
    monkeypatch.undo()
    monkeypatch.setattr("pipelines.lm_examples.align_examples", _fails)
    resumed = finetune(trained / "final", files["speech"], tmp_path / "cut", training=tc, resume=True)
    assert _max_diff(load_lm(resumed).model.state_dict(), tuned.model.state_dict()) == 0.0
    with pytest.raises(ValueError, match="phoneme track"):
        finetune(trained / "final", files["speech"], tmp_path / "no_track",
                 training=_training(max_steps=1, phoneme_alignment=True))


def _fails(*args, **kwargs):
    raise AssertionError("aligned again")


def test_phoneme_input_dropout_hides_only_tracked_items_inputs_in_training(files):
    codec = RVQCodec.from_pretrained(files["codec"])
    lm = AudioLM.from_config(AudioLMConfig.from_preset(files["lm"]), TextTokenizer.train(TEXTS, vocab_size=300),
                             codec).with_track("phoneme")
    with torch.no_grad():
        torch.nn.init.normal_(lm.model.tracks["phoneme"].projection.weight, std=0.5)
    seen = []
    original = lm.model.logits

    def logits(text_ids, text_mask, inputs, step_mask=None, tracks=None):
        seen.append(inputs.clone())
        return original(text_ids, text_mask, inputs, step_mask, tracks)

    lm.model.logits = logits
    objective = LMObjective(lm.model, phoneme_input_dropout=0.5)
    text_ids, text_mask = lm.encode_texts(["hello world", "drums and bass"], ["speech", "music"])
    codes = torch.randint(0, codec.codebook_size, (2, codec.num_codebooks, 20))
    args = (text_ids, text_mask, torch.zeros(2, dtype=torch.bool), codes, torch.tensor([20, 20]),
            torch.zeros(2, dtype=torch.bool),
            {"phoneme": PhonemeTrack(torch.tensor([[5, 6, 7], [0, 0, 0]]), torch.tensor([20, 20]))})
    objective.eval()
    objective(*args)
    objective.train()
    torch.manual_seed(0)
    objective(*args)
    clean, hidden = seen
    empty = lm.config.empty_id
    changed = (clean != hidden).any(dim=1)  # (B, S): steps that were hidden
    assert changed[0].float().mean().item() == pytest.approx(0.5, abs=0.25) and not changed[1].any()
    assert bool((hidden[0][:, changed[0]] == empty).all())


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_train_lm_with_a_phoneme_track_resumes_to_the_same_weights(files, tmp_path, monkeypatch):
    tc = _training(max_steps=3, save_every=1, eval_every=3, phoneme_track=True)
    whole = train_lm(files["lm"], files["speech"], tmp_path / "whole", codec=files["codec"], training=tc)
    assert load_lm(whole).has_track("phoneme") and load_lm(whole).config.frames_per_phoneme
    monkeypatch.setattr(BatchPlan, "batch", _dies_at(2))
    with pytest.raises(KeyboardInterrupt):
        train_lm(files["lm"], files["speech"], tmp_path / "cut", codec=files["codec"], training=tc)
    monkeypatch.undo()
    resumed = train_lm(files["lm"], files["speech"], tmp_path / "cut", codec=files["codec"], training=tc, resume=True)
    assert _max_diff(load_lm(resumed).model.state_dict(), load_lm(whole).model.state_dict()) == 0.0


def _music_with_tempos(codec: RVQCodec, n: int, seed: int) -> Dataset:
    captions = ["a calm piano melody at 72 bpm", "drums and bass, 128 beats per minute", "an upbeat track, tempo 140",
                "a quiet drone"]  # the last names no tempo
    ds = _dataset(codec, n, seed, None)
    return ds.remove_columns("text").add_column("text", [captions[i % len(captions)] for i in range(n)])


def test_finetune_adds_a_beat_track_that_trains_resumes_exactly_and_generate_uses(trained, files, tmp_path,
                                                                                  monkeypatch):
    codec = RVQCodec.from_pretrained(files["codec"])
    DatasetDict({"train": _music_with_tempos(codec, 12, 2), "test": _music_with_tempos(codec, 4, 3)}).save_to_disk(
        str(tmp_path / "music"))
    tc = _training(max_steps=2, save_every=1, beat_track=True, beat_dropout=0.25)
    final = finetune(trained / "final", tmp_path / "music", tmp_path / "beats", training=tc)
    base, tuned = load_lm(trained / "final"), load_lm(final)
    assert tuned.has_track("beat") and not base.has_track("beat") and tuned.config.beat_track is True
    assert tuned.model.tracks["beat"].projection.weight.abs().sum() > 0  # the track trained from its zero start
    monkeypatch.setattr(BatchPlan, "batch", _dies_at(1))
    with pytest.raises(KeyboardInterrupt):
        finetune(trained / "final", tmp_path / "music", tmp_path / "cut", training=tc)
    monkeypatch.undo()
    resumed = finetune(trained / "final", tmp_path / "music", tmp_path / "cut", training=tc, resume=True)
    assert _max_diff(load_lm(resumed).model.state_dict(), tuned.model.state_dict()) == 0.0
    # Generation reads the caption's tempo; the track changes the music it makes.
    seen = []
    original = AudioLM.stream

    def stream(self, texts, config, **kwargs):
        seen.append(kwargs["tracks"].get("beat"))
        return original(self, texts, config, **kwargs)

    monkeypatch.setattr(AudioLM, "stream", stream)
    clip = generate("a calm piano melody at 72 bpm", model=final, duration=0.03, seed=0, progress=False)
    assert clip.waveform.shape[-1] > 0 and torch.isfinite(clip.waveform).all()
    assert seen[-1].bpm.tolist() == [72.0]
    generate("a quiet drone", model=final, duration=0.03, seed=0, progress=False)
    assert seen[-1].bpm.tolist() == [0.0]


def test_beat_dropout_leaves_out_some_items_tempos_in_training_only(files):
    codec = RVQCodec.from_pretrained(files["codec"])
    lm = AudioLM.from_config(AudioLMConfig.from_preset(files["lm"]), TextTokenizer.train(TEXTS, vocab_size=300),
                             codec).with_track("beat")
    seen = []
    original = lm.model.logits

    def logits(text_ids, text_mask, inputs, step_mask=None, tracks=None):
        seen.append(tracks["beat"].bpm.clone())
        return original(text_ids, text_mask, inputs, step_mask, tracks)

    lm.model.logits = logits
    objective = LMObjective(lm.model, track_dropout={"beat": 0.5})
    B = 64
    text_ids, text_mask = lm.encode_texts(["drums at 120 bpm"] * B, "music")
    codes = torch.randint(0, codec.codebook_size, (B, codec.num_codebooks, 6))
    drop = torch.zeros(B, dtype=torch.bool)
    drop[0] = True  # a dropped condition loses its tempo in eval mode too
    args = (text_ids, text_mask, drop, codes, torch.full((B,), 6), torch.zeros(B, dtype=torch.bool),
            {"beat": lm.conditioner("beat").track(["drums at 120 bpm"] * B, "music")})
    objective.eval()
    objective(*args)
    objective.train()
    torch.manual_seed(0)
    objective(*args)
    evaluated, trained_on = seen
    assert evaluated[0] == 0 and bool((evaluated[1:] == 120).all())
    assert trained_on[0] == 0 and (trained_on[1:] == 0).float().mean().item() == pytest.approx(0.5, abs=0.2)


def test_gradient_checkpointing_trains_the_same_weights(files, tmp_path):
    lm_config = AudioLMConfig.from_preset(files["lm"])
    lm_config.dropout = 0.1  # recomputed blocks must draw the masks they drew in the forward pass
    plain = train_lm(lm_config, files["speech"], tmp_path / "plain", codec=files["codec"],
                     training=_training(max_steps=3))
    recomputed = train_lm(lm_config, files["speech"], tmp_path / "ckpt", codec=files["codec"],
                          training=_training(max_steps=3, gradient_checkpointing=True))
    a, b = load_file(plain / "model.safetensors"), load_file(recomputed / "model.safetensors")
    assert _max_diff(a, b) < 1e-6
