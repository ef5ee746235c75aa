"""benchmarks/gpu_check.py: on a machine without a CUDA device it says so and exits 0; `--smoke` runs every step
(codec and LM training, tokenization, generation) with tiny configs and prints the fixed-format lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
KEYS = {
    "device": ["name", "torch", "cuda"],
    "codec": ["steps", "seconds", "steps_per_s", "audio_s_per_s", "peak_gb", "loss_first", "loss_last", "fell"],
    "lm": ["steps", "seconds", "steps_per_s", "audio_s_per_s", "peak_gb", "loss_first", "loss_last", "fell"],
    "generate": ["seconds_audio", "seconds", "x_realtime"],
    "done": ["ok"],
}


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a CUDA device")
def test_without_a_gpu_it_says_so_and_exits_0():
    proc = _run()
    assert proc.returncode == 0 and "no CUDA device" in proc.stdout


@pytest.mark.slow
def test_the_smoke_run_prints_every_stage_in_the_fixed_format(tmp_path):
    proc = _run("--smoke", "--codec-steps", "12", "--lm-steps", "12", "--work", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("gpu_check ")]
    assert [line[1] for line in lines] == list(KEYS)
    for line in lines:
        fields = dict(part.split("=", 1) for part in line[2:])
        assert list(fields) == KEYS[line[1]]
        if line[1] in ("codec", "lm"):
            assert int(fields["steps"]) == 12 and float(fields["steps_per_s"]) > 0
            assert re.fullmatch(r"yes|no", fields["fell"])
    assert not list(tmp_path.iterdir())  # the working folder is cleaned up
