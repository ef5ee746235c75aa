"""The prepared GPU check: train the codec and the LM briefly in bf16 on synthetic data, generate, report.

    .venv/bin/python benchmarks/gpu_check.py                 # on a machine with a CUDA device, under ten minutes
    .venv/bin/python benchmarks/gpu_check.py --smoke         # the same steps with tiny configs, on any device

Without a CUDA device (and without --smoke) it says so and exits 0. Otherwise it makes a few minutes of synthetic
audio (harmonic tones with captions), trains `configs/codec_24khz.json` (with the 4 x 2048 codebooks that
`lm_musicgen_small` is built for) for `--codec-steps` steps, tokenizes the
audio with it, trains `configs/lm_musicgen_small.json` for `--lm-steps` steps on the codes, both with
`mixed_precision="bf16"`, and generates `--seconds` of audio from the trained LM. Every result is one line
`gpu_check <stage> <key>=<value> ...` (fixed keys, so that runs compare with `grep`):

    gpu_check device name=... torch=... cuda=...
    gpu_check codec steps=N seconds=S steps_per_s=X audio_s_per_s=Y peak_gb=G loss_first=A loss_last=B fell=yes|no
    gpu_check lm steps=N seconds=S steps_per_s=X audio_s_per_s=Y peak_gb=G loss_first=A loss_last=B fell=yes|no
    gpu_check generate seconds_audio=A seconds=S x_realtime=X
    gpu_check done ok=yes|no

audio_s_per_s is the audio trained on per second (the codec: batch x crop length x steps / time; the LM: the median
of its log's frames per second over the frame rate). `fell` compares the mean of
the first and the last fifth of the logged losses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines import generate, tokenize_dataset  # noqa: E402
from pipelines.lm_training import train_lm  # noqa: E402
from pipelines.lm_training_config import LMTrainingConfig  # noqa: E402
from tokenizer import CodecConfig  # noqa: E402
from tokenizer.training import train_codec  # noqa: E402

CAPTIONS = ["a calm tone", "a bright tone", "a low hum", "a high whistle"]


def report(stage: str, **values) -> None:
    fields = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    print(f"gpu_check {stage} {fields}", flush=True)


def lm_code_layout(lm_preset: str) -> dict:
    """The codebooks (number, size) the LM preset is built for, which the codec trained beside it must make:
    lm_musicgen_small fixes MusicGen's 4 x 2048 codes, so codec_24khz is trained with that quantizer here (its
    own 32 x 1024 would not bind). Presets that leave them to the codec keep the codec's."""
    config = json.loads((ROOT / "configs" / f"{lm_preset}.json").read_text())
    return {k: config[k] for k in ("num_codebooks", "codebook_size") if k in config}


def make_audio(folder: Path, sample_rate: int, clips: int, seconds: float) -> None:
    """`clips` harmonic tones with captions: an audiofolder (wav files + metadata.csv)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file_name,text"]
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i in range(clips):
        f0 = 110.0 * 2 ** rng.uniform(0, 3)
        wav = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 6))
        wav *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t) ** 2
        sf.write(folder / f"{i:04d}.wav", wav.astype(np.float32), sample_rate)
        rows.append(f"{i:04d}.wav,{CAPTIONS[i % len(CAPTIONS)]}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")


def log_records(log: Path) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


def losses(log: Path) -> tuple[float, float]:
    values = [r["loss"] for r in log_records(log)]
    fifth = max(1, len(values) // 5)
    return float(np.mean(values[:fifth])), float(np.mean(values[-fifth:]))


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    return result, time.perf_counter() - start, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs, any device (checks the script itself)")
    parser.add_argument("--codec-steps", type=int, default=300)
    parser.add_argument("--lm-steps", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0, help="audio generated at the end")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = min(args.seconds, 0.5)  # the tiny LM's position range at the tiny codec's 400 Hz
    if not torch.cuda.is_available() and not args.smoke:
        print("gpu_check: no CUDA device on this machine; nothing to check (use --smoke to try the steps)")
        return 0
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    report("device", name=name.replace(" ", "_"), torch=torch.__version__, cuda=torch.version.cuda or "none")
    codec_preset, lm_preset = ("codec_tiny", "lm_tiny") if args.smoke else ("codec_24khz", "lm_musicgen_small")
    precision = "bf16" if torch.cuda.is_available() else "no"  # bf16 autocast is the GPU path being checked
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        config = CodecConfig.from_json_file(ROOT / "configs" / f"{codec_preset}.json").to_dict()
        config["training"].update(max_steps=args.codec_steps, mixed_precision=precision, log_every=1,
                                  save_every=args.codec_steps, warmup_steps=0)
        config["quantizer"].update(lm_code_layout(lm_preset))
        config = CodecConfig.from_dict(config)
        make_audio(work / "audio", config.sample_rate, clips=16 if args.smoke else 96, seconds=4.0)
        tc = config.training
        _, seconds, peak = timed(lambda: train_codec(config, work / "audio", work / "codec"))
        first, last = losses(work / "codec" / "log.jsonl")
        report("codec", steps=tc.max_steps, seconds=seconds, steps_per_s=tc.max_steps / seconds,
               audio_s_per_s=tc.max_steps * tc.batch_size * tc.segment_seconds / seconds, peak_gb=peak,
               loss_first=first, loss_last=last, fell="yes" if last < first else "no")
        codec_ok = last < first

        tokenize_dataset(work / "audio", codec=work / "codec" / "final", output=work / "codes", progress=False)
        lm_tc = LMTrainingConfig(batch_size=8, max_steps=args.lm_steps, warmup_steps=min(50, args.lm_steps // 5),
                                 lr=3e-4, max_frames=150, eval_every=args.lm_steps, save_every=args.lm_steps,
                                 log_every=1, mixed_precision=precision, text_vocab_size=300, seed=0)
        _, seconds, peak = timed(lambda: train_lm(ROOT / "configs" / f"{lm_preset}.json", work / "codes",
                                                  work / "lm", codec=work / "codec" / "final", training=lm_tc,
                                                  task="music"))
        first, last = losses(work / "lm" / "log.jsonl")
        frame_rate = CodecConfig.from_json_file(work / "codec" / "final" / "config.json").frame_rate
        frames_per_s = float(np.median([r["frames_per_second"] for r in log_records(work / "lm" / "log.jsonl")]))
        report("lm", steps=lm_tc.max_steps, seconds=seconds, steps_per_s=lm_tc.max_steps / seconds,
               audio_s_per_s=frames_per_s / frame_rate,
               peak_gb=peak, loss_first=first, loss_last=last, fell="yes" if last < first else "no")
        lm_ok = last < first

        clip, seconds, _ = timed(lambda: generate("a calm tone", model=work / "lm" / "final", duration=args.seconds,
                                                  min_duration=args.seconds, seed=0, progress=False))
        report("generate", seconds_audio=clip.duration, seconds=seconds, x_realtime=clip.duration / seconds)
    ok = codec_ok and lm_ok and clip.duration > 0
    report("done", ok="yes" if ok else "no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
