"""CPU threads for encoding and decoding, chosen for the machine's load.

torch splits every large operation across `torch.get_num_threads()` threads that wait for each other at its end.
On an idle 2-core machine two threads encode and decode 10 s of audio 1.5x faster than one; beside one other busy
process, the thread that shares its core with it is descheduled for whole time slices while the other spins, and
decoding fell to 0.06x of its idle single-thread speed (benchmarks/load_speed.py). So the codec uses no more
threads than there are cores free at the moment it starts: the cores it may use, minus the runnable threads of
other processes (`/proc/stat`'s `procs_running`, less this process's own). `torch.set_num_threads(n)` stays the
upper bound; where `/proc` is unavailable, torch's setting is used as it is. `with fixed_threads(n):` makes the
codec use exactly `n` threads inside the block, whatever the load.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

import torch

_FIXED: contextvars.ContextVar[int | None] = contextvars.ContextVar("rvqaudio_fixed_threads", default=None)


@contextlib.contextmanager
def fixed_threads(num_threads: int) -> Iterator[None]:
    """Encode and decode with exactly `num_threads` CPU threads inside the block (no load check)."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    token = _FIXED.set(num_threads)
    try:
        yield
    finally:
        _FIXED.reset(token)


def others_running() -> int | None:
    """Threads of other processes runnable right now (None where the kernel does not say)."""
    try:
        stat = Path("/proc/stat").read_text()
        running = next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("procs_running"))
        own = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                # the state follows the command name, which is in parentheses and may hold spaces
                own += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                continue
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return max(0, running - max(own, 1))


def free_threads() -> int:
    """Threads for a large CPU computation now: torch's setting, capped by the cores that are free."""
    threads = torch.get_num_threads()
    if threads == 1:
        return 1
    others = others_running()
    if others is None:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or threads
    return max(1, min(threads, cores - others))


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run the block with `torch.set_num_threads(num_threads)`, restoring the previous setting after it."""
    before = torch.get_num_threads()
    if num_threads == before:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_threads(device: torch.device) -> contextlib.AbstractContextManager:
    """The block runs with `free_threads()` threads on the CPU (or `fixed_threads`'), torch's setting restored
    after it; nothing changes on another device."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    return torch_threads(_FIXED.get() or free_threads())
