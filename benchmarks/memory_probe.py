"""What the memory benchmarks share: the anonymous resident memory of a process, and a measurement run in a fresh
Python process (so that one measurement's peak cannot hide in another's).

    result = run_child(CHILD, ROOT, *args)    # CHILD: code that prints one JSON line last; argv[1] is ROOT

A child script reads `anon_mb` with `sys.path.insert(0, sys.argv[1] + "/benchmarks"); from memory_probe import
anon_mb`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def anon_mb() -> float:
    """This process's anonymous resident memory (RssAnon of /proc/self/status) in MiB; 0 where it is not known."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(code: str, root: Path, *args: object) -> dict:
    """Run `code` in a fresh interpreter with argv [root, *args]; its last line of output, parsed as JSON.
    RuntimeError with the end of its stderr when it fails."""
    result = subprocess.run([sys.executable, "-c", code, str(root), *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the measurement {[str(a) for a in args]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
