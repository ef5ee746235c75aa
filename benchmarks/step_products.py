"""The matrix products of one decoding step: `F.linear` against `lm.layers.Linear`'s transposed-weight path.

    .venv/bin/python benchmarks/step_products.py                         # configs/lm_base.json, 1 and 2 rows
    .venv/bin/python benchmarks/step_products.py --config configs/lm_small.json

A decoding step multiplies one row per sequence (two with classifier-free guidance) by every linear layer of the
transformer and by the K heads. This times exactly those products on one thread, with random weights of the
preset's shapes, three ways: `F.linear` on the stored [out, in] weights (what `nn.Linear` does), the same
products with each weight transposed once to [in, out] (`lm.layers.Linear`), and that with the K heads as one
product (`lm.layers.StackedHeads`). Median of `--runs` passes, the three ways interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm import AudioLMConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/lm_base.json")
    parser.add_argument("--num-codebooks", type=int, default=8)
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = AudioLMConfig.from_preset(args.config)
    D, I, L, K = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, args.num_codebooks
    layers = [torch.randn(out, inp) for _ in range(L) for out, inp in ((3 * D, D), (D, D), (I, D), (D, I))]
    heads = [torch.randn(args.codebook_size + 1, D) for _ in range(K)]
    transposed = [w.t().contiguous() for w in layers + heads]
    stacked = torch.cat(heads).t().contiguous()
    megabytes = sum(w.numel() for w in layers + heads) * 4 / 1e6
    print(f"{args.config}: {len(layers)} layer products + {K} heads, {megabytes:.1f} MB of float32 weights, 1 thread")
    for rows in (1, 2):
        x = {n: torch.randn(rows, n) for n in (D, I)}
        ways = {
            "F.linear": lambda: [F.linear(x[w.shape[1]], w) for w in layers + heads],
            "transposed": lambda: [x[w.shape[0]] @ w for w in transposed],
            "transposed, stacked heads": lambda: ([x[w.shape[0]] @ w for w in transposed[:len(layers)]],
                                                  x[D] @ stacked),
        }
        times = {name: [] for name in ways}
        with torch.inference_mode():
            for run in range(args.runs + 3):
                for name, way in ways.items():
                    start = time.perf_counter()
                    way()
                    if run >= 3:  # warm-up passes
                        times[name].append(time.perf_counter() - start)
        base = statistics.median(times["F.linear"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {rows} row{'s' if rows > 1 else ''}  {name:<26} {median * 1e3:6.2f} ms   "
                  f"{base / median:4.2f}x F.linear")


if __name__ == "__main__":
    main()
