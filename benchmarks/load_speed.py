"""Speed of generation, encoding and decoding on an idle machine and beside busy processes, in one run.

    .venv/bin/python benchmarks/load_speed.py --load 1            # idle, then with 1 busy process
    .venv/bin/python benchmarks/load_speed.py --load 1 --runs 5 --threads 1 2 auto

For each thread setting (a number, or `auto`: rvqaudio's own choice) it times, with the bundled models, median of
`--runs` after a warm-up: `generate` of `--duration` s of music (the LM only: the clock stops before waveform
decoding), `codec.encode` and `codec.decode` of 10 s of audio. The busy processes are `yes > /dev/null`, the
simplest competitor for a core, started after the idle figures and killed at the end. Reported as x realtime
(seconds of audio per wall-clock second) idle and loaded, and loaded / idle-at-one-thread, the ratio that says
whether a shared machine keeps its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm import GenerationConfig  # noqa: E402
from tokenizer.threads import fixed_threads  # noqa: E402
from pipelines import default_codec, default_lm  # noqa: E402


@contextlib.contextmanager
def busy(n: int):
    procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(n)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cases(duration: float, threads: str):
    """{name: (function to time, seconds of audio it handles)} for one thread setting."""
    lm, codec = default_lm("music"), default_codec()
    wav = torch.randn(1, codec.channels, 10 * codec.sample_rate) * 0.1
    codes = codec.encode(wav)
    num_threads = None if threads == "auto" else int(threads)
    fixed = contextlib.nullcontext if num_threads is None else lambda: fixed_threads(num_threads)

    def generate():
        config = GenerationConfig(duration=duration, task="music", seed=0, min_duration=duration,
                                  num_threads=num_threads)
        lm.generate(["a calm piano melody"], config)

    def encode():
        with fixed():
            codec.encode(wav)

    def decode():
        with fixed():
            codec.decode(codes)

    return {"generate (music LM)": (generate, duration), "encode (codec)": (encode, 10.0),
            "decode (codec)": (decode, 10.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", type=int, default=1, help="busy processes beside the loaded measurement")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of music generated")
    parser.add_argument("--threads", nargs="+", default=["1", "2", "auto"], help="numbers of threads, or auto")
    args = parser.parse_args()
    results: dict[tuple[str, str], dict[str, float]] = {}
    for load in (0, args.load):
        with busy(load):
            for threads in args.threads:
                for name, (fn, seconds) in cases(args.duration, threads).items():
                    results.setdefault((name, threads), {})[f"load{load}"] = seconds / median_time(fn, args.runs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default, load = {args.load} busy "
          f"process(es), median of {args.runs}")
    print("| case | threads | idle x realtime | loaded x realtime | loaded / idle at 1 thread |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (name, threads), r in results.items():
        one = results.get((name, "1"), {}).get("load0")
        ratio = f"{r[f'load{args.load}'] / one:.2f}" if one else "-"
        print(f"| {name} | {threads} | {r['load0']:.2f} | {r[f'load{args.load}']:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
