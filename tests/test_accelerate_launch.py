"""`accelerate launch --config_file configs/accelerate/...`: the shipped configs parse, and two CPU processes
(cpu_ddp2.yaml, DDP over gloo) train the codec and the LM through their real entry points: both ranks run, the
global batch of each is split and gives one process's weights, a rank killed mid-run fails the launch and
`--resume` continues exactly, and bad world sizes are clear errors, never hangs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # an accelerate dependency
import pytest
import soundfile as sf
import torch
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import DistributedType
from datasets import DatasetDict
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "accelerate"
LAUNCH_TIMEOUT = 300  # seconds; a launch that hangs fails the test instead of the CI job


def _helpers(relative: str):
    """A sibling test module, for its tiny-data helpers (the tests are not a package)."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem + "_helpers", REPO / "tests" / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lm_tests = _helpers("pipelines/test_lm_training.py")
codec_tests = _helpers("tokenizer/test_training.py")


def _env() -> dict[str, str]:
    # CUDA hidden: cpu_ddp2.yaml is about CPU processes over gloo even on a machine with a GPU.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def _launch_cmd(*args: str, config: str = "cpu_ddp2.yaml") -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config), *args]


def _launch(*args: str, config: str = "cpu_ddp2.yaml") -> subprocess.CompletedProcess:
    return subprocess.run(_launch_cmd(*args, config=config), env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)


def _output(proc) -> str:
    return proc.stdout + proc.stderr


# ---- the config files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kind, processes, machines", [
    ("cpu.yaml", DistributedType.NO, 1, 1),
    ("cpu_ddp2.yaml", DistributedType.MULTI_GPU, 2, 1),  # accelerate's torchrun path: see the file's comments
    ("gpu.yaml", DistributedType.NO, 1, 1),
    ("multi_gpu.yaml", DistributedType.MULTI_GPU, 8, 1),
    ("fsdp.yaml", DistributedType.FSDP, 8, 1),
    ("two_machines.yaml", DistributedType.MULTI_GPU, 16, 2),
])
def test_each_config_parses_as_an_accelerate_cluster_config(name, kind, processes, machines):
    config = ClusterConfig.from_yaml_file(CONFIGS / name)  # unknown keys are errors
    assert (config.distributed_type, config.num_processes, config.num_machines) == (kind, processes, machines)
    assert config.use_cpu == (name == "cpu.yaml")
    if name == "fsdp.yaml":
        from lm.model import Block

        fsdp = config.fsdp_config
        assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD" and config.mixed_precision == "bf16"
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == Block.__name__
    if name == "two_machines.yaml":
        assert config.machine_rank == 0 and config.main_process_ip and config.main_process_port


# ---- the LM ------------------------------------------------------------------------------------------------

STEPS = 12


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory) -> dict[str, Path]:
    """A tiny codec, speech data, LM preset and training config (12 steps, a checkpoint every 2)."""
    root = tmp_path_factory.mktemp("launch_lm")
    codec = lm_tests._codec()
    codec.save_pretrained(root / "codec")
    DatasetDict({"train": lm_tests._dataset(codec, 24, 0, lm_tests.TRAIN_VOICES),
                 "test": lm_tests._dataset(codec, 4, 1, lm_tests.TEST_VOICES)}).save_to_disk(str(root / "speech"))
    (root / "lm.json").write_text(json.dumps(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=64, max_text_tokens=64, max_audio_frames=40,
                                                  condition_dropout=0.2, dropout=0.0)))
    # dropout 0: its masks follow (seed, step, rank), so two ranks would draw other masks than one process
    lm_tests._training(max_steps=STEPS, save_every=2, eval_every=4).to_json_file(root / "training.json")
    lm_tests._training(max_steps=STEPS, batch_size=3).to_json_file(root / "odd.json")
    return {"root": root, "codec": root / "codec", "speech": root / "speech", "lm": root / "lm.json",
            "training": root / "training.json", "odd": root / "odd.json"}


def _train_lm_args(files, out: Path, training: str = "training") -> list[str]:
    return ["-m", "pipelines.finetune", "train-lm", "--config", str(files["lm"]), "--data", str(files["speech"]),
            "--codec", str(files["codec"]), "--training-config", str(files[training]), "--out", str(out)]


@pytest.fixture(scope="module")
def two_process_lm(lm_files) -> tuple[subprocess.CompletedProcess, Path]:
    out = lm_files["root"] / "two"
    return _launch(*_train_lm_args(lm_files, out)), out


@pytest.fixture(scope="module")
def one_process_lm(lm_files) -> Path:
    """The same run in this process, without a launcher."""
    out = lm_files["root"] / "one"
    assert lm_tests.cli_main(_train_lm_args(lm_files, out)[2:]) == 0
    return out


@pytest.mark.slow
def test_two_ranks_split_the_lms_global_batch_and_train_the_weights_of_one_process(lm_files, two_process_lm,
                                                                                    one_process_lm):
    proc, two = two_process_lm
    assert proc.returncode == 0, _output(proc)[-4000:]
    state = json.loads((two / "checkpoint" / "train_state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == STEPS
    # batch_size 4 over 2 processes: 2 items each (the main process's log line).
    assert "2 process(es) x 2 items x 1 accumulation" in _output(proc)
    one = one_process_lm
    assert json.loads((one / "checkpoint" / "train_state.json").read_text())["num_processes"] == 1
    a, b = (load_file(run / "final" / "model.safetensors") for run in (one, two))
    # Same arithmetic summed in another order (test_lm_training's stated tolerance). Only the main process saves:
    # rank 1's weights are DDP's copy of these, not read back here.
    assert lm_tests._max_diff(a, b) < lm_tests.WEIGHT_TOLERANCE
    assert lm_tests._max_diff(a, lm_tests._initial_weights(lm_files)) > 100 * lm_tests.WEIGHT_TOLERANCE


def _workers(launcher: psutil.Process, module: str) -> dict[int, psutil.Process]:
    """The launch's training processes by rank (torchrun gives each its RANK in the environment)."""
    found = {}
    for child in launcher.children(recursive=True):
        try:
            rank = child.environ().get("RANK")
            if rank is not None and module in child.cmdline():
                found[int(rank)] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _kill_rank_1_after_a_checkpoint(args: list[str], out: Path, steps: int) -> str:
    """Launch `args` on cpu_ddp2.yaml, SIGKILL rank 1 once `out` holds a checkpoint and the run is not done; the
    launch's output (it must fail, naming rank 1 and the signal)."""
    launcher = subprocess.Popen(_launch_cmd(*args), env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    workers = {}
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while not (out / "checkpoint" / "train_state.json").exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "the launch ended before a checkpoint"
            time.sleep(0.02)
        workers = _workers(psutil.Process(launcher.pid), args[1])
        assert sorted(workers) == [0, 1]
        for worker in workers.values():  # frozen, so the run is surely mid-way when rank 1 dies
            worker.send_signal(signal.SIGSTOP)
        step = json.loads((out / "checkpoint" / "train_state.json").read_text())["step"]
        assert 0 < step < steps and not (out / "final").exists()
        workers[1].send_signal(signal.SIGKILL)
        workers[0].send_signal(signal.SIGCONT)
        output, _ = launcher.communicate(timeout=LAUNCH_TIMEOUT)
    finally:  # nothing outlives a failed test
        for worker in workers.values():
            if worker.is_running():
                worker.kill()
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    # torchrun's report (ChildFailedError) names the dead rank and its signal as the root cause.
    root_cause = output.partition("Root Cause (first observed failure)")[2]
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s+exitcode\s*: -9 .*\(SIGKILL\)", root_cause), output[-4000:]
    assert not (out / "final").exists()
    return output


@pytest.mark.slow
def test_a_killed_rank_fails_the_launch_clearly_and_resume_continues_exactly(lm_files, two_process_lm):
    _, whole = two_process_lm
    cut = lm_files["root"] / "cut"
    _kill_rank_1_after_a_checkpoint(_train_lm_args(lm_files, cut), cut, STEPS)
    resumed = _launch(*_train_lm_args(lm_files, cut), "--resume")
    assert resumed.returncode == 0, _output(resumed)[-4000:]
    expected, got = (load_file(run / "final" / "model.safetensors") for run in (whole, cut))
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


@pytest.mark.slow
def test_bad_world_sizes_are_clear_errors_on_every_rank_not_hangs(lm_files, one_process_lm):
    # finetune of the one-process LM with a global batch of 3.
    proc = _launch("-m", "pipelines.finetune", "finetune", "--model", str(one_process_lm / "final"), "--data",
                   str(lm_files["speech"]), "--training-config", str(lm_files["odd"]), "--out",
                   str(lm_files["root"] / "odd"))
    assert proc.returncode != 0
    # Both ranks refuse at once (neither waits for the other) with the message that says what to do.
    message = "training.batch_size=3 (the global batch) must be divisible by processes x grad_accum = 2 x 1"
    assert _output(proc).count(message) == 2, _output(proc)[-4000:]
    # A one-process checkpoint resumed by two: both ranks refuse before any step.
    proc = _launch(*_train_lm_args(lm_files, one_process_lm), "--resume")
    assert proc.returncode != 0
    message = "written by 1 process(es); resume it with the same number (got 2)"
    assert _output(proc).count(message) == 2, _output(proc)[-4000:]


@pytest.mark.slow
def test_an_fsdp_launch_is_refused_before_any_step_not_trained_into_unloadable_checkpoints(lm_files):
    # On a CPU accelerate runs an FSDP config as plain DDP; the flag it sets for FSDP is what the trainers read.
    out = lm_files["root"] / "fsdp"
    proc = subprocess.run(_launch_cmd(*_train_lm_args(lm_files, out)), env={**_env(), "ACCELERATE_USE_FSDP": "true"},
                          cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert proc.returncode != 0
    message = "with 2 processes, but checkpoints and final/ are written from full tensors on the main process"
    assert _output(proc).count(message) == 2, _output(proc)[-4000:]
    assert not (out / "checkpoint").exists()


# ---- the codec ---------------------------------------------------------------------------------------------

def _codec_corpus(root: Path) -> Path:
    """Three different 1 s clips at 16 kHz."""
    corpus = root / "corpus"
    corpus.mkdir()
    for name, f0 in (("a.wav", 110.0), ("b.wav", 190.0), ("c.wav", 310.0)):
        sf.write(corpus / name, codec_tests.harmonic(1.0, f0, seed=int(f0)), codec_tests.SR)
    return corpus


def _train_codec_args(config: Path, corpus: Path, run: Path) -> list[str]:
    return ["-m", "tokenizer.training", str(config), str(corpus), str(run)]


@pytest.mark.slow
def test_two_ranks_train_one_codec_with_identical_codebooks_and_a_killed_rank_resumes_exactly(tmp_path):
    corpus = _codec_corpus(tmp_path)
    config = codec_tests.tiny(max_steps=6, adversarial_start_step=3, save_every=2, log_every=2)
    config.to_json_file(tmp_path / "codec.json")

    def args(run: Path) -> list[str]:
        return _train_codec_args(tmp_path / "codec.json", corpus, run)

    # The real entry point. At every checkpoint it compares every tensor of the codec, codebooks included, across
    # the ranks and fails if one differs (test_training.py's negative control shows that check catching drift).
    whole = tmp_path / "whole"
    proc = _launch(*args(whole))
    assert proc.returncode == 0, _output(proc)[-4000:]
    assert json.loads((whole / "checkpoint" / "train_state.json").read_text())["num_processes"] == 2
    assert "steps 0 -> 6, 2 process(es)" in _output(proc)

    cut = tmp_path / "cut"
    _kill_rank_1_after_a_checkpoint(args(cut), cut, config.training.max_steps)
    with pytest.raises(codec_tests.CheckpointError, match=r"written by 2 process\(es\); .* \(got 1\)"):
        codec_tests.train_codec(config, corpus, cut, resume=True)  # one process may not resume it
    resumed = _launch(*args(cut), "--resume")
    assert resumed.returncode == 0, _output(resumed)[-4000:]
    for name in ("final/model.safetensors", "checkpoint/model_1.safetensors"):  # the codec, the discriminator
        expected, got = load_file(whole / name), load_file(cut / name)
        assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


# Two processes against one after 6 steps of the test below, as measured: weights 8.9e-6 apart at most, codebooks and
# their EMA statistics 3.2e-5 of their magnitude. The same arithmetic, its sums (DDP's gradient average, the
# all-reduced codebook statistics) taken in another order: one process on 2 intra-op threads instead of 1 lands as
# far (8.6e-6 and 2.1e-5). Tolerances leave about 5x for other CPUs and thread counts.
CODEC_WEIGHT_TOLERANCE = 5e-5  # absolute, the codec's parameters
CODEBOOK_TOLERANCE = 2e-4  # relative to the tensor's largest magnitude (at least 1), the quantizer's buffers


def _codec_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float]:
    """The largest difference of two codecs' parameters, and of their quantizer buffers relative to magnitude."""
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if not a[k].is_floating_point())  # `initialized`
    weights, codebooks = [0.0], [0.0]
    for k in a:
        if a[k].is_floating_point():
            diff = float((a[k].double() - b[k].double()).abs().max())
            if k.startswith("quantizer."):
                codebooks.append(diff / max(1.0, float(a[k].abs().max())))
            else:
                weights.append(diff)
    return max(weights), max(codebooks)


def _codec_with_initialised_codebooks(config, corpus: Path, folder: Path) -> Path:
    """`config`'s codec after one training-mode pass over a batch in this process: codebooks k-means initialised
    (and EMA statistics that agree with them), saved to `folder` for runs to start from."""
    torch.manual_seed(0)
    codec = codec_tests.RVQCodec(config).train()
    with torch.no_grad():
        codec(codec_tests.AudioCrops.from_config(config, corpus).batch(1000, 4))
    assert all(bool(level.initialized) for level in codec.quantizer.levels)
    return codec.save_pretrained(folder)


@pytest.mark.slow
def test_two_ranks_split_the_codecs_global_batch_and_train_the_weights_of_one_process(tmp_path):
    corpus = _codec_corpus(tmp_path)
    per_process = 2
    config = codec_tests.tiny(max_steps=6, adversarial_start_step=-1, save_every=2, log_every=1,
                              batch_size=per_process)
    # Off, as each is drawn per process by design rather than from the global batch: dead-code replacement takes
    # rank 0's vectors (tokenizer/quantization/vq.py; threshold 0 never replaces), quantizer dropout draws its items
    # from (seed, step, rank), and the adversarial stage's feature matching divides by the mean feature magnitude
    # of the process's own batch. K-means init also takes rank 0's batch: both runs start from codebooks already
    # initialised. (Not kmeans_init=false: the random codebooks start with cluster sizes of 0, so the EMA's first
    # update divides them by about 1% of their use, into codes of up to 4e5, and gradients that 2 intra-op
    # threads instead of 1 change by 1e-3 relative.)
    config.quantizer = dataclasses.replace(config.quantizer, dead_code_threshold=0.0, quantizer_dropout=0.0)
    config.to_json_file(tmp_path / "codec.json")
    start = _codec_with_initialised_codebooks(config, corpus, tmp_path / "start")
    two = tmp_path / "two"
    proc = _launch(*_train_codec_args(tmp_path / "codec.json", corpus, two), "--init-from", str(start))
    assert proc.returncode == 0, _output(proc)[-4000:]
    # Both ranks ran. The entry point compares every tensor of the codec, codebooks included, across the ranks at
    # every checkpoint (steps 2, 4, 6) and fails if one differs: the codebooks are identical on both.
    assert json.loads((two / "checkpoint" / "train_state.json").read_text())["num_processes"] == 2
    assert "steps 0 -> 6, 2 process(es)" in _output(proc)

    def one_process(batch_size: int, run: str) -> dict[str, torch.Tensor]:
        with_batch = dataclasses.replace(config, training=dataclasses.replace(config.training, batch_size=batch_size))
        return load_file(codec_tests.train_codec(with_batch, corpus, tmp_path / run, init_from=start)
                         / "model.safetensors")

    one = one_process(2 * per_process, "one")
    weights, codebooks = _codec_diffs(one, load_file(two / "final" / "model.safetensors"))
    assert weights < CODEC_WEIGHT_TOLERANCE and codebooks < CODEBOOK_TOLERANCE, (weights, codebooks)
    # The global batch, not one rank's share: a process with rank 0's share alone ends far away; so does the start.
    for other in (one_process(per_process, "alone"), load_file(start / "model.safetensors")):
        weights, codebooks = _codec_diffs(one, other)
        assert weights > 50 * CODEC_WEIGHT_TOLERANCE and codebooks > 50 * CODEBOOK_TOLERANCE, (weights, codebooks)
    # The loss logged at each step, the mean over the processes, is one process's loss on the global batch.
    losses = [[r["loss"] for r in codec_tests._log(run)] for run in (tmp_path / "one", two)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
