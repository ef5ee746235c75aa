"""How long the bundled LMs take to their first complete frame of codes, with float32 and int8 inference weights.

    .venv/bin/python benchmarks/first_frame.py                 # both tasks, guidance 3 and 1, median of 15
    .venv/bin/python benchmarks/first_frame.py --tasks speech --runs 30

What a live caller waits for before `generate_stream` has anything to decode: from the request (text, voice and
tracks resolved, as `generate` does) to the first frame [1, K, 1] out of the LM, which with the delay pattern takes
the text prefill and K steps. Torch's default threads (the prefill uses the cores free at the time, the steps one
thread, `lm.decoding`); one warm-up per setting, then `--runs` runs per setting with the variants interleaved, median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.defaults import read_default_lm  # noqa: E402
from pipelines.generation_request import TASK_DEFAULT, GenerationRequest  # noqa: E402

TEXTS = {"music": "a calm piano melody", "speech": "Please close the window before you go."}  # in no training set


def first_frame(lm, task: str, guidance: float, seed: int) -> float:
    start = time.perf_counter()
    request = GenerationRequest(TEXTS[task], task, 5.0, seed, 1.0, TASK_DEFAULT, 1.0, guidance, None, None, None, lm,
                                None)
    frames = request.frames(progress=False)
    next(frames)
    elapsed = time.perf_counter() - start
    frames.close()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["music", "speech"], choices=sorted(TEXTS))
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print("| task | guidance | float32 weights | int8 weights |")
    print("| --- | ---: | ---: | ---: |")
    for task in args.tasks:
        lms = {weights: read_default_lm(task).set_inference_weights(weights) for weights in ("float", "int8")}
        for guidance in (3.0, 1.0):
            times = {weights: [] for weights in lms}
            for weights, lm in lms.items():
                first_frame(lm, task, guidance, seed=0)  # warm-up (the int8 copies are made on first use)
            for run in range(args.runs):
                for weights, lm in lms.items():
                    times[weights].append(first_frame(lm, task, guidance, seed=run))
            cells = " | ".join(f"{statistics.median(times[w]) * 1000:.1f} ms" for w in lms)
            print(f"| {task} | {guidance:g} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
