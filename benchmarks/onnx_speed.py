"""Encode and decode speed of the bundled codec in PyTorch and in onnxruntime (`rvqaudio export`), one thread each.

Real-time factor = seconds of audio per wall-clock second (higher is faster). PyTorch and onnxruntime run turn about
(interleaved), so that load from other work on the machine falls on both alike; the median of `--repeats` runs of
each. Also the largest difference of the outputs: codes that differ, and decoded samples (full scale 1). Run:

    .venv/bin/python benchmarks/onnx_speed.py [--seconds 10] [--repeats 5] [--variant speech]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pipelines.defaults import default_codec
from tokenizer.export import DECODER_FILE, ENCODER_FILE, check_signal, export_onnx, onnx_runner


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--variant", default=None, help="decoder variant of the bundled codec, e.g. speech")
    args = parser.parse_args()

    torch.set_num_threads(1)
    codec = default_codec(args.variant)
    wav = check_signal(codec.sample_rate, codec.channels, seconds=args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = export_onnx(codec, Path(tmp) / "onnx", check=False)
        export_s = time.perf_counter() - start
        encoder, decoder = onnx_runner(folder / ENCODER_FILE, threads=1), onnx_runner(folder / DECODER_FILE, threads=1)
    codes = codec.encode(wav)
    runs = {
        ("encode", "PyTorch"): lambda: codec.encode(wav),
        ("encode", "onnxruntime"): lambda: encoder.run(None, {"waveform": wav.numpy()}),
        ("decode", "PyTorch"): lambda: codec.decode(codes),
        ("decode", "onnxruntime"): lambda: decoder.run(None, {"codes": codes.numpy()}),
    }
    for fn in runs.values():  # warm-up: allocator, caches
        fn()
    times = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, fn in runs.items():
            times[key].append(_seconds(fn))

    onnx_codes = torch.from_numpy(encoder.run(None, {"waveform": wav.numpy()})[0])
    audio = torch.from_numpy(decoder.run(None, {"codes": codes.numpy()})[0])
    differing = int((onnx_codes != codes).sum())
    max_abs = float((audio - codec.decode(codes)).abs().max())

    name = "bundled codec" + (f", decoder {args.variant}" if args.variant else "")
    print(f"{name}: {args.seconds:g} s of audio, 1 thread, median of {args.repeats} (interleaved); "
          f"export took {export_s:.0f} s")
    print("| step | PyTorch s | onnxruntime s | PyTorch RTF | onnxruntime RTF | onnxruntime / PyTorch speed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for step in ("encode", "decode"):
        torch_s = statistics.median(times[(step, "PyTorch")])
        onnx_s = statistics.median(times[(step, "onnxruntime")])
        print(f"| {step} | {torch_s:.3f} | {onnx_s:.3f} | {args.seconds / torch_s:.0f}x | {args.seconds / onnx_s:.0f}x "
              f"| {torch_s / onnx_s:.2f} |")
    print(f"codes that differ: {differing} of {codes.numel()}; decoded samples: max |onnxruntime - PyTorch| = "
          f"{max_abs:.1e}")


if __name__ == "__main__":
    main()
