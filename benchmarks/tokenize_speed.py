"""Throughput of `tokenize_dataset` on this machine, in audio seconds per wall-clock second (= audio hours per hour).

Writes a synthetic folder of `--files` wav files of `--seconds` s each at the codec's rate (default 60 x 5 s at
24 kHz), builds the codec from `--config` (random weights, k-means initialised: speed does not depend on training)
and tokenizes the folder into a fresh output folder for every batch size x num_proc, after one small warm-up run.
Then two measurements behind choices in pipelines/tokenize/:
  - codec.encode alone with oneDNN's convolution on and off (tokenize_dataset turns it off: oneDNN's results change
    with the batch size, ATen's do not);
  - decoding + resampling 16 kHz stereo files to the codec's rate and channels, with `load_audio` (soundfile +
    torchaudio, what tokenize_dataset does) and with datasets' `Audio(sampling_rate=..., num_channels=...)`
    (torchcodec/FFmpeg).
Run:

    .venv/bin/python benchmarks/tokenize_speed.py [--config configs/codec_small.json] [--files 60] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipelines.tokenize import tokenize_dataset
from tokenizer import CodecConfig, RVQCodec
from tokenizer.audio import load_audio


def make_codec(config_path: str) -> RVQCodec:
    path = Path(config_path)
    config = (CodecConfig.from_json_file(path) if path.is_file() else
              CodecConfig(sample_rate=24000, n_filters=16, strides=(2, 4, 5, 8), dimension=128))
    torch.manual_seed(0)
    codec = RVQCodec(config)
    codec.train()(0.1 * torch.randn(2, config.channels, config.sample_rate))  # k-means init
    return codec.eval()


def write_folder(root: Path, files: int, seconds: float, sample_rate: int, channels: int) -> float:
    """Noise-plus-tone wav files; returns their total duration in seconds."""
    rng = np.random.default_rng(0)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    for i in range(files):
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 1000) * t)[:, None]
        sf.write(root / f"clip{i:04d}.wav", tone + 0.05 * rng.standard_normal((n, channels)), sample_rate)
    return files * n / sample_rate


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_timed(fn) -> float:
    start = cpu_seconds()
    fn()
    return cpu_seconds() - start


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the num_proc workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/codec_small.json")
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--num-procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the encode-only and decode timings")
    args = parser.parse_args()

    codec = make_codec(args.config)
    print("load average (1, 5, 15 min) at start: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"codec {codec.config.name} ({codec.num_parameters() / 1e6:.2f} M params, {codec.sample_rate} Hz, "
          f"{codec.num_codebooks} x {codec.codebook_size} codes), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        total = write_folder(tmp / "audio", args.files, args.seconds, codec.sample_rate, codec.channels)
        (tmp / "warm").mkdir()
        write_folder(tmp / "warm", 2, 1.0, codec.sample_rate, codec.channels)
        tokenize_dataset(tmp / "warm", codec, output=tmp / "warm-out", progress=False)  # lazy imports, caches

        print(f"\ntokenize_dataset: {args.files} files x {args.seconds:g} s = {total:.0f} s of audio, one run each")
        print("(audio s per CPU s does not depend on other processes sharing the machine; wall-clock speed does)")
        print(f"{'batch_size':>10s} {'num_proc':>8s} {'wall s':>8s} {'audio s/s (= h/h)':>18s} {'audio s/CPU s':>14s}")
        for batch_size in args.batch_sizes:
            for num_proc in args.num_procs:
                out = tmp / f"out-b{batch_size}-p{num_proc}"
                cpu = cpu_seconds()
                wall = timed(lambda: tokenize_dataset(tmp / "audio", codec, output=out, batch_size=batch_size,
                                                      num_proc=num_proc, progress=False))
                cpu = cpu_seconds() - cpu
                print(f"{batch_size:10d} {num_proc:8d} {wall:8.1f} {total / wall:18.1f} {total / cpu:14.2f}")

        print(f"\ncodec.encode alone, {args.seconds:g} s clips, median of {args.repeats} (audio s per CPU s)")
        clip = 0.1 * torch.randn(8, codec.channels, int(args.seconds * codec.sample_rate))
        for batch in (1, 8):
            speeds = []
            for onednn in (True, False):
                torch.backends.mkldnn.enabled = onednn
                codec.encode(clip[:batch])
                speeds.append(batch * args.seconds / statistics.median(
                    cpu_timed(lambda: codec.encode(clip[:batch])) for _ in range(args.repeats)))
            torch.backends.mkldnn.enabled = True
            print(f"  batch {batch}: oneDNN on {speeds[0]:.2f}, off {speeds[1]:.2f} "
                  f"(off costs {100 * (1 - speeds[1] / speeds[0]):.0f}%)")

        decode_files = min(args.files, 20)
        (tmp / "16k").mkdir()
        seconds16 = write_folder(tmp / "16k", decode_files, args.seconds, 16000, 2)
        paths = sorted(str(p) for p in (tmp / "16k").glob("*.wav"))
        print(f"\ndecode + resample {decode_files} x {args.seconds:g} s 16 kHz stereo wav to {codec.sample_rate} Hz "
              f"x {codec.channels} ch, median of {args.repeats} (audio s per CPU s)")
        ours = statistics.median(cpu_timed(lambda: [load_audio(p, codec.sample_rate, codec.channels) for p in paths])
                                 for _ in range(args.repeats))
        import datasets

        ds = datasets.Dataset.from_dict({"audio": paths}).cast_column(
            "audio", datasets.Audio(sampling_rate=codec.sample_rate, num_channels=codec.channels))
        theirs = statistics.median(cpu_timed(lambda: [row["audio"].get_all_samples().data for row in ds])
                                   for _ in range(args.repeats))
        print(f"  load_audio (soundfile + torchaudio sinc): {seconds16 / ours:.0f}")
        print(f"  datasets Audio(sampling_rate) (torchcodec/FFmpeg swresample): {seconds16 / theirs:.0f}")
    print("load average (1, 5, 15 min) at end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
