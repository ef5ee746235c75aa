"""benchmarks/scaling.py --quick on tiny configs: the fixed-format tables carry every column with positive figures,
the JSON holds the same rows, and the counted FLOPs behave as FLOPs must (an LM with twice the layers costs about
twice as much to train and to run; training costs more than inference). No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "scaling.py"
CODEC_COLUMNS = ["codec", "params (M)", "disc params (M)", "train GFLOP/audio-s", "disc share", "encode GFLOP/audio-s",
                 "decode GFLOP/audio-s", "CPU train steps/s (1 s crop)", "CPU train audio-s/s", "CPU encode audio-s/s"]
LM_COLUMNS = ["LM", "params (M)", "codes", "train GFLOP/audio-s (1 s)", "train GFLOP/audio-s (max crop)",
              "gen GFLOP/audio-s", "CPU train steps/s (1 s item)", "CPU train audio-s/s", "CPU gen audio-s/s"]
DATA_COLUMNS = ["data pipeline stage", "CPU audio-s/s per core"]


def _lm_config(path: Path, layers: int) -> Path:
    # Few, small codebooks: the per-codebook heads and embeddings cost little next to the layers.
    path.write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": layers, "num_attention_heads": 4,
                                "intermediate_size": 256, "max_text_tokens": 64, "max_audio_frames": 200,
                                "num_codebooks": 2, "codebook_size": 16}))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp("scaling")
    args = ["--quick", "--codec", f"tiny={REPO / 'configs' / 'codec_tiny.json'}",
            "--lm", f"two={_lm_config(tmp / 'two.json', 2)}", "--lm", f"four={_lm_config(tmp / 'four.json', 4)}",
            "--json", str(tmp / "out.json")]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads((tmp / "out.json").read_text())


def _tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in `text`: its rows of cells, the separator row left out."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _number(cell: str) -> float:
    return float(cell.split()[0].rstrip("%"))


def test_the_tables_have_every_column_and_positive_figures(run):
    stdout, _ = run
    assert "load average" in stdout.splitlines()[0]
    codec, lm, data = _tables(stdout)
    assert codec[0] == CODEC_COLUMNS and lm[0] == LM_COLUMNS and data[0] == DATA_COLUMNS
    assert [r[0] for r in codec[1:]] == ["tiny"] and [r[0] for r in lm[1:]] == ["two", "four"]
    assert len(data) == 1 + 3 + 4 + 1  # decode wav, flac, mp3; training crops of those and a 24 kHz wav; resample
    for table in (codec, lm, data):
        for row in table[1:]:
            for column, cell in zip(table[0][1:], row[1:]):
                if column != "codes":
                    assert _number(cell) > 0, (row[0], column, cell)
    assert lm[1][2] == "2 x 16 @ 75 Hz"


def test_twice_the_layers_cost_about_twice_the_flops(run):
    _, result = run
    two, four = result["lms"]
    assert four["parameters"] > two["parameters"]
    for key in ("train_flops_per_audio_s", "train_flops_per_audio_s_max_crop", "gen_flops_per_audio_s"):
        assert 1.8 < four[key] / two[key] < 2.0, key  # below 2: embeddings and heads do not double


def test_training_costs_more_than_inference(run):
    _, result = run
    for lm in result["lms"]:
        # forward + backward is about 3 forwards; generation is one forward per frame
        assert 2.5 < lm["train_flops_per_audio_s"] / lm["gen_flops_per_audio_s"] < 3.5
    (codec,) = result["codecs"]
    assert codec["adversarial"] and 0 < codec["disc_flops_per_audio_s"] < codec["train_flops_per_audio_s"]
    inference = codec["encode_flops_per_audio_s"] + codec["decode_flops_per_audio_s"]
    assert codec["train_flops_per_audio_s"] - codec["disc_flops_per_audio_s"] > 2.5 * inference
