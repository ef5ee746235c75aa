"""Peak memory of encoding a long file: block by block (`rvqaudio encode`) against loading it whole.

    .venv/bin/python benchmarks/long_file_memory.py                  # 1 min, 10 min, 1 h of 16 kHz mono
    .venv/bin/python benchmarks/long_file_memory.py --minutes 1 10

Each measurement runs in a fresh process (peak resident memory, `ru_maxrss`, of that process alone) with the
bundled codec: `blocks` is `pipelines.encode_file` (a pass over the file for its level, then read, resample to
24 kHz and encode in 60 s blocks), `whole` is `codec.encode(gain * load_audio(...))`, the whole file decoded and
resampled at once and brought to the same level. The input is pink noise written by sox (a wav: 1.9 MB a minute).
Also printed: the wall time of each, and whether both give the same codes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory_probe import run_child  # noqa: E402  (benchmarks/, the script's own folder)

from pipelines import read_codes  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from safetensors.numpy import save_file
from pipelines import default_codec, encode_file
from tokenizer.audio import load_audio
from tokenizer.level import CodecLevel
from tokenizer.long_audio import audio_file_rms
mode, path, out = sys.argv[2], sys.argv[3], sys.argv[4]
codec = default_codec()
start = time.perf_counter()
if mode == "blocks":
    encode_file(path, out)
else:  # the same level as encode_file brings the file to
    gain = CodecLevel().gain(audio_file_rms(path, codec.channels))
    wav, _ = load_audio(path, sample_rate=codec.sample_rate, channels=codec.channels)
    save_file({"codes": codec.encode(wav[None] * gain)[0].numpy()}, out)
seconds = time.perf_counter() - start
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds}))
"""


def measure(mode: str, path: Path, out: Path) -> dict:
    return run_child(CHILD, ROOT, mode, path, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    args = parser.parse_args()
    print("| audio | blocks: peak RSS | whole: peak RSS | blocks: time | whole: time | same codes |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.wav"
            subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "synth",
                            str(minutes * 60), "pinknoise", "vol", "0.3"], check=True)
            blocks = measure("blocks", path, Path(tmp) / "blocks.npz")
            whole = measure("whole", path, Path(tmp) / "whole.safetensors")
            codes, _ = read_codes(Path(tmp) / "blocks.npz")
            same = bool(np.array_equal(codes[0].numpy(), load_file(str(Path(tmp) / "whole.safetensors"))["codes"]))
            print(f"| {minutes:g} min | {blocks['peak_mb']:.0f} MB | {whole['peak_mb']:.0f} MB | "
                  f"{blocks['seconds']:.1f} s | {whole['seconds']:.1f} s | {same} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
