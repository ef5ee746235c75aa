"""Peak memory of codec training batches for a corpus of S clips and of 10 x S clips, as a folder and as a dataset.

    .venv/bin/python benchmarks/codec_data_memory.py                  # S = 300 clips of 4 s (16 kHz mono FLAC)
    .venv/bin/python benchmarks/codec_data_memory.py --clips 100 --batches 20

Codec training (`tokenizer.data.AudioCrops`) keeps only the list of its clips and reads each batch's crops from
disk (soundfile seeks; a saved dataset is memory-mapped Arrow with undecoded bytes), so what a process holds must
not grow with the corpus. Each measurement runs in a fresh process: open the source as `train-codec` does
(`AudioCrops.from_config` for the bundled codec's config: 24 kHz mono, 1 s crops), then draw `--batches` batches of
8 crops. Printed per source:

    anon peak   the peak of the process's anonymous resident memory (RssAnon, sampled after opening and every 10
                batches): what data loading holds, the figure that must stay flat
    RSS peak    `ru_maxrss`, which also counts mapped file pages (the page cache, which the kernel reclaims)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory_probe import run_child  # noqa: E402  (benchmarks/, the script's own folder)

SAMPLE_RATE, SECONDS = 16_000, 4.0

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from tokenizer import CodecConfig
from tokenizer.data import AudioCrops

sys.path.insert(0, sys.argv[1] + "/benchmarks")
from memory_probe import anon_mb

config = CodecConfig.from_json_file(sys.argv[3])
start = time.perf_counter()
crops = AudioCrops.from_config(config, sys.argv[2])
peak = anon_mb()
for step in range(int(sys.argv[4])):
    crops.batch(step, 8)
    if step % 10 == 9:
        peak = max(peak, anon_mb())
peak = max(peak, anon_mb())
print(json.dumps({"clips": len(crops), "anon_peak_mb": peak, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - start, "skipped": len(crops.skipped)}))
"""


def write_corpus(folder: Path, clips: int, seed: int) -> None:
    """`clips` FLAC files of SECONDS of harmonic tones in noise, in subfolders of 100."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    for i in range(clips):
        path = folder / f"{i // 100:03d}" / f"clip{i:05d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        f0 = 110.0 * 2 ** rng.uniform(0, 3)
        wav = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 5))
        sf.write(path, (wav + 0.01 * rng.standard_normal(len(t))).astype(np.float32), SAMPLE_RATE)


def write_dataset(corpus: Path, out: Path) -> None:
    """The corpus as a saved dataset with an Audio column (the files' bytes inside the Arrow table)."""
    from datasets import Audio, Dataset

    files = sorted(str(p) for p in corpus.rglob("*.flac"))
    Dataset.from_dict({"audio": files}).cast_column("audio", Audio(decode=False)).map(
        lambda row: {"audio": {"bytes": Path(row["audio"]["path"]).read_bytes(), "path": row["audio"]["path"]}}
    ).cast_column("audio", Audio()).save_to_disk(str(out))


def measure(source: Path, batches: int) -> dict:
    return run_child(CHILD, ROOT, source, ROOT / "pipelines" / "assets" / "codec" / "config.json", batches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300, help="S: clips of the small corpus (the large has 10 x S)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clips in (args.clips, 10 * args.clips):
            corpus = Path(tmp) / f"corpus{clips}"
            write_corpus(corpus, clips, seed=clips)
            dataset = Path(tmp) / f"dataset{clips}"
            write_dataset(corpus, dataset)
            hours = clips * SECONDS / 3600
            for kind, source in (("folder", corpus), ("saved dataset", dataset)):
                result = measure(source, args.batches)
                rows.append({"source": kind, "hours": round(hours, 2), **result})
    print("| source | clips | audio (h) | anon peak (MB) | RSS peak (MB) | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['source']} | {r['clips']} | {r['hours']:.2f} | {r['anon_peak_mb']:.0f} | {r['rss_peak_mb']:.0f} "
              f"| {r['seconds']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
