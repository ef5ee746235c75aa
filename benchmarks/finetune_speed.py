"""Fine-tuning speed of the LM presets on this machine: seconds per optimizer step and frames (codes) per second.

    .venv/bin/python benchmarks/finetune_speed.py                        # lm_tiny and lm_small, batch 4 x 300 frames
    .venv/bin/python benchmarks/finetune_speed.py --configs configs/lm_small.json --batch-size 8 --frames 750

Each preset is bound to the project codec's shape (configs/codec_small.json: 8 codebooks x 1024 codes at 75 Hz;
a randomly initialised codec, since only its shape and fingerprint matter), saved as an LM folder, and fine-tuned
with `pipelines.lm_training.finetune` on a synthetic tokenized dataset whose items are all `--frames` frames long
with a short caption, so every step sees the same shape. The loop is the real one (batching, AdamW, clipping,
schedule, logging); evaluation and checkpoints are excluded from its timings. Reported after `--warmup` steps,
median over the `--steps` measured steps, from the run's log.jsonl:

    s/step      seconds per optimizer step (global batch of --batch-size items, one process)
    frames/s    audio frames trained per second (batch x frames / s_per_step); x 75 Hz gives seconds of audio
    tokens/s    codes trained per second (frames/s x codebooks)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lm import AudioLM, AudioLMConfig, TextTokenizer  # noqa: E402
from pipelines.defaults import save_lm  # noqa: E402
from pipelines.lm_training import finetune  # noqa: E402
from pipelines.lm_training_config import LMTrainingConfig  # noqa: E402
from pipelines.tokenize.storage import codec_metadata, metadata_description  # noqa: E402
from tokenizer import CodecConfig, RVQCodec  # noqa: E402

CAPTIONS = ["an upbeat electronic track with a driving bass line", "a calm piano melody with soft strings",
            "heavy drums, distorted guitars and a shouting crowd", "she sells sea shells by the sea shore"]


def synthetic_dataset(codec: RVQCodec, items: int, frames: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    features = datasets.Features({"codes": datasets.List(datasets.List(datasets.Value("int16"))),
                                  "text": datasets.Value("string"), "duration": datasets.Value("float64")})
    info = datasets.DatasetInfo(description=metadata_description(codec_metadata(codec, codec.num_codebooks)), features=features)
    datasets.Dataset.from_dict({
        "codes": [rng.integers(0, codec.codebook_size, (codec.num_codebooks, frames), dtype=np.int16).tolist()
                  for _ in range(items)],
        "text": [CAPTIONS[i % len(CAPTIONS)] for i in range(items)],
        "duration": [frames / codec.frame_rate] * items,
    }, features=features, info=info).save_to_disk(str(path))


def measure(preset: Path, codec: RVQCodec, data: Path, work: Path, args: argparse.Namespace) -> dict:
    tokenizer = TextTokenizer.train(CAPTIONS * 10, vocab_size=300, seed=0)
    torch.manual_seed(0)
    lm = AudioLM.from_config(AudioLMConfig.from_preset(preset), tokenizer, codec)
    if args.frames > lm.config.max_audio_frames:
        raise SystemExit(f"--frames {args.frames} is more than {preset.name}'s max_audio_frames")
    save_lm(lm, codec, work / f"{preset.stem}_lm")
    total = args.warmup + args.steps
    training = LMTrainingConfig(batch_size=args.batch_size, grad_accum=1, max_steps=total, warmup_steps=1,
                                max_frames=args.frames, eval_fraction=0.0, eval_every=total, save_every=total,
                                log_every=1, mixed_precision=args.mixed_precision)
    run = work / f"{preset.stem}_run"
    finetune(work / f"{preset.stem}_lm", data, run, training=training)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    seconds = statistics.median(r["seconds_per_step"] for r in log if "loss" in r and r["step"] > args.warmup)
    frames = args.batch_size * args.frames / seconds
    return {"preset": preset.name, "parameters": lm.model.num_parameters(), "s_per_step": seconds,
            "frames_per_s": frames, "tokens_per_s": frames * codec.num_codebooks,
            "audio_s_per_s": frames / codec.frame_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/lm_tiny.json", "configs/lm_small.json"])
    parser.add_argument("--codec-config", default="configs/codec_small.json")
    parser.add_argument("--batch-size", type=int, default=4, help="items per optimizer step")
    parser.add_argument("--frames", type=int, default=300, help="frames per item (300 = 4 s at 75 Hz)")
    parser.add_argument("--warmup", type=int, default=2, help="steps run before measuring")
    parser.add_argument("--steps", type=int, default=5, help="steps measured (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()
    torch.manual_seed(0)
    codec = RVQCodec(CodecConfig.from_json_file(REPO / args.codec_config)).eval()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s), load average "
          f"{os.getloadavg()[0]:.1f}; codec {codec.num_codebooks} x {codec.codebook_size} at {codec.frame_rate:g} Hz; "
          f"batch {args.batch_size} x {args.frames} frames, mixed_precision={args.mixed_precision}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synthetic_dataset(codec, max(2 * args.batch_size, 8), args.frames, work / "data")
        rows = [measure(REPO / c, codec, work / "data", work, args) for c in args.configs]
    print(f"{'preset':<16}{'params':>12}{'s/step':>10}{'frames/s':>11}{'tokens/s':>11}{'audio s/s':>11}")
    for r in rows:
        print(f"{r['preset']:<16}{r['parameters']:>12,}{r['s_per_step']:>10.3f}{r['frames_per_s']:>11.0f}"
              f"{r['tokens_per_s']:>11.0f}{r['audio_s_per_s']:>11.2f}")


if __name__ == "__main__":
    main()
