"""Reduced-precision LM inference on a CPU: speed and greedy-code agreement of int8 and bf16 against float32.

    .venv/bin/python benchmarks/lm_precision.py                      # bundled music and speech LMs, 1 thread
    .venv/bin/python benchmarks/lm_precision.py --seconds 2 --runs 1 --tasks music

Variants: `fp32` (the stored weights, `AudioLM.set_inference_weights("float")`), `int8` (generation's default:
weight-only int8 copies of every linear layer of the transformer and the heads, bfloat16 activations,
`set_inference_weights("int8")`, `rvqaudio generate --weights int8`) and `bf16` (`AudioLM.to(dtype=torch.bfloat16)`,
`rvqaudio generate --dtype bfloat16 --weights float`: weights and activations in bfloat16, logits sampled in
float32). Each loads its own copy of the bundled LM.

Speed: `generate` of `--seconds` s with the default settings (guidance 3, top-k 250 for music, 50 for speech), the
median of `--runs` runs per variant, variants interleaved so that the machine's load hits all alike; reported as
times real time and as a ratio to fp32. Agreement, per task: greedy (top_k=1) generation of `--seconds` s for each
held-out text, compared frame by frame with fp32's greedy codes: the share of frames whose codes all agree and the
first frame that differs (greedy decoding is deterministic, so any difference is the precision's; one near-tie
decided the other way changes every later frame, so this is a strict measure: the held-out loss, `rvqaudio eval-lm
--weights int8`, is the one that says whether the model got worse).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.defaults import read_default_lm  # noqa: E402
from pipelines.generate import generate  # noqa: E402

TEXTS = {  # in no training or evaluation set of the project
    "music": ["a calm piano melody", "an upbeat electronic track with a steady beat", "a slow cello solo",
              "a cheerful flute tune over soft strings"],
    "speech": ["The train leaves the station at seven in the morning.", "Please close the window before you go.",
               "My sister bought a red bicycle last week.", "We will meet again after the holidays."],
}
VARIANTS = ("fp32", "int8", "bf16")


def load_variant(task: str, variant: str):
    lm = read_default_lm(task)  # a copy of its own, multiplying with its stored weights
    if variant == "bf16":
        lm.to(dtype=torch.bfloat16)
    if variant == "int8":
        lm.set_inference_weights("int8")
    return lm


def codes(lm, task: str, text: str, seconds: float, greedy: bool) -> torch.Tensor:
    settings = dict(top_k=1) if greedy else {}
    return generate(text, task=task, duration=seconds, seed=0, model=lm, progress=False, min_duration=seconds,
                    **settings).codes


def agreement(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, int]:
    """(share of frames whose K codes all equal the reference's, first differing frame or the length)."""
    t = min(reference.shape[-1], other.shape[-1])
    same = (reference[:, :t] == other[:, :t]).all(dim=0)
    first = int((~same).nonzero()[0]) if not bool(same.all()) else t
    return float(same.float().sum()) / max(reference.shape[-1], other.shape[-1]), first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["music", "speech"], choices=sorted(TEXTS))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for task in args.tasks:
        models = {v: load_variant(task, v) for v in VARIANTS}
        times = {v: [] for v in VARIANTS}
        for v in VARIANTS:  # warm-up
            codes(models[v], task, TEXTS[task][0], 0.5, greedy=False)
        for _ in range(args.runs):
            for v in VARIANTS:
                start = time.perf_counter()
                codes(models[v], task, TEXTS[task][0], args.seconds, greedy=False)
                times[v].append(time.perf_counter() - start)
        greedy = {v: [codes(models[v], task, text, args.seconds, greedy=True) for text in TEXTS[task]]
                  for v in VARIANTS}
        for v in VARIANTS:
            median = statistics.median(times[v])
            scores = [agreement(ref, got) for ref, got in zip(greedy["fp32"], greedy[v])]
            rows.append({"task": task, "variant": v, "x_realtime": args.seconds / median,
                         "speed_vs_fp32": statistics.median(times["fp32"]) / median,
                         "greedy_frames_agree": statistics.mean(s[0] for s in scores),
                         "first_difference_frames": [s[1] for s in scores]})
    print("| task | variant | × real time | speed vs fp32 | greedy frames equal to fp32 | first differing frame |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['task']} | {r['variant']} | {r['x_realtime']:.2f} | {r['speed_vs_fp32']:.2f} | "
              f"{100 * r['greedy_frames_agree']:.1f}% | {r['first_difference_frames']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
