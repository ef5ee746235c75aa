"""How many CPU threads a decoding step uses, chosen for the work size.

A decoding step of a small LM is a chain of small matrix products (batch rows x hidden size): split across
threads, each product waits for the slowest thread, and beside any other busy process on the machine that wait
becomes a scheduler time slice. On a 2-core machine with one busy process, the bundled music LM fell from 3.9x to
0.20x real time at torch's default 2 threads, and kept 3.2x at 1 thread (benchmarks/load_speed.py). So a step whose
arithmetic is below `SINGLE_THREAD_FLOPS` runs on one thread; larger ones keep torch's setting. The choice applies
only while the decoding computes and is undone between steps, so the caller's setting is never changed for long;
`GenerationConfig(num_threads=N)` overrides it.
"""

from __future__ import annotations

import torch


# Below this many floating-point operations per step (~5 ms at one core's ~180 GFLOP/s), one thread is as fast on
# an idle machine and many times faster on a busy one.
SINGLE_THREAD_FLOPS = 1e9


def step_threads(flops_per_step: float, requested: int | None = None) -> int:
    """Threads for one step of `flops_per_step`: `requested` when given, else 1 for a small step and torch's current
    setting for a large one."""
    if requested is not None:
        return requested
    return 1 if flops_per_step < SINGLE_THREAD_FLOPS else torch.get_num_threads()
