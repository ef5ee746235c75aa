"""Seams of long music: near-silence and level jumps where the LM's windows meet, against the rest of the clip.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_form.py                     # 45 s, 3 captions, 2 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_form.py --seconds 30 --captions 2 --seeds 1

Each clip is `generate(caption, duration=--seconds, seed=s)` with the bundled music LM and the default
`extend_stride` (`pipelines.long_form`): the first window fills the LM's 20 s, each next one adds 12 s. A join is
the first sample of a window's new audio. Per join, two figures, each beside the same figure away from joins:

- near-silence: the share of 46 ms frames whose RMS is below 0.01 within 1 s of the join, against the share over
  the whole clip (a window that starts quiet, or a dropout at the join, shows here);
- level jump: |dB RMS of the 0.5 s after - dB RMS of the 0.5 s before| at the join, against the same at 20 random
  points per clip at least 1 s from any join and from the clip's ends (the music's own level changes).

The bundled music LM takes about 0.7-1 s per second of long music on one CPU thread: the default run (6 clips of
45 s) takes about 3-5 minutes. `--json` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines import long_form  # noqa: E402
from pipelines.defaults import default_lm  # noqa: E402
from pipelines.evaluation.silence import near_silence  # noqa: E402
from pipelines.generate import generate  # noqa: E402

CAPTIONS = ["a calm piano melody", "an upbeat electronic track with a steady beat at 128 bpm",
            "a cheerful flute tune over soft strings"]  # in no training or evaluation set of the project
AROUND_SECONDS = 1.0  # near-silence is counted within this of a join
LEVEL_SECONDS = 0.5  # the level before and after a point
RANDOM_POINTS = 20


def join_samples(new_frames: int, window: int, stride: int, hop: int) -> list[int]:
    """The samples where a window's new audio starts (no audio prompt): after the first window, every `stride`."""
    return [frame * hop for frame in range(window, new_frames, stride)]


def silence_near(audio: np.ndarray, sample_rate: int, at: int) -> float:
    """The share of near-silent frames (`near_silence`: 46 ms frames, RMS < 0.01) within AROUND_SECONDS of `at`."""
    half = round(AROUND_SECONDS * sample_rate)
    return near_silence(audio[max(0, at - half):at + half], sample_rate)["share"]


def level_jump(audio: np.ndarray, sample_rate: int, at: int) -> float:
    """|dB RMS after - dB RMS before| over LEVEL_SECONDS on each side of sample `at`."""
    span = round(LEVEL_SECONDS * sample_rate)

    def db(part: np.ndarray) -> float:
        return 20 * np.log10(np.sqrt((part ** 2).mean()) + 1e-9)

    return float(abs(db(audio[at:at + span]) - db(audio[at - span:at])))


def random_points(length: int, joins: list[int], sample_rate: int, rng: np.random.Generator) -> list[int]:
    """RANDOM_POINTS samples at least AROUND_SECONDS from every join and from both ends."""
    margin = round(AROUND_SECONDS * sample_rate)
    points: list[int] = []
    while len(points) < RANDOM_POINTS:
        at = int(rng.integers(margin, length - margin))
        if all(abs(at - j) >= margin for j in joins):
            points.append(at)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each clip (default 45)")
    parser.add_argument("--captions", type=int, default=3, choices=range(1, len(CAPTIONS) + 1),
                        help="how many of the captions (default 3)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0.. per caption (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()

    lm = default_lm("music")
    rate, hop = lm.config.frame_rate, round(lm.codec.sample_rate / lm.config.frame_rate)
    window, stride = lm.config.max_audio_frames, long_form.stride_frames(lm, None)
    rng = np.random.default_rng(0)
    rows, joins_all, points_all = [], [], []
    start = time.perf_counter()
    for caption in CAPTIONS[:args.captions]:
        for seed in range(args.seeds):
            clip = generate(caption, duration=args.seconds, seed=seed, model=lm, progress=False)
            audio = clip.waveform.mean(dim=0).numpy()  # mono (N,)
            sr = clip.sample_rate
            joins = join_samples(clip.codes.shape[1], window, stride, hop)
            whole = near_silence(audio, sr)["share"]
            at_joins = [{"second": j / sr, "silence": silence_near(audio, sr, j), "jump_db": level_jump(audio, sr, j)}
                        for j in joins]
            away = [level_jump(audio, sr, p) for p in random_points(len(audio), joins, sr, rng)]
            rows.append({"caption": caption, "seed": seed, "silence_whole": whole, "joins": at_joins,
                         "jump_db_away": away})
            joins_all += at_joins
            points_all += away
            for j in at_joins:
                print(f"{caption[:40]:40s} seed {seed}  join {j['second']:5.1f} s  silence within 1 s "
                      f"{j['silence']:.0%} (clip {whole:.0%})  jump {j['jump_db']:.2f} dB "
                      f"(away: median {statistics.median(away):.2f}, max {max(away):.2f})", flush=True)
    elapsed = time.perf_counter() - start
    clips = len(rows)
    print(f"\n{clips} clips of {args.seconds:g} s (window {window / rate:g} s, stride {stride / rate:g} s) in "
          f"{elapsed:.0f} s ({elapsed / (clips * args.seconds):.2f} s per second of audio)")
    if joins_all:
        jumps = [j["jump_db"] for j in joins_all]
        print(f"joins: {len(jumps)}; near-silence within 1 s: mean {np.mean([j['silence'] for j in joins_all]):.1%} "
              f"(whole clips: mean {np.mean([r['silence_whole'] for r in rows]):.1%}); level jump: median "
              f"{np.median(jumps):.2f} dB, mean {np.mean(jumps):.2f} dB, max {max(jumps):.2f} dB, "
              f"{np.mean(np.array(jumps) > 3):.0%} over 3 dB")
        print(f"away from joins ({len(points_all)} points): level jump median {np.median(points_all):.2f} dB, "
              f"mean {np.mean(points_all):.2f} dB, 95th percentile {np.percentile(points_all, 95):.2f} dB, "
              f"max {max(points_all):.2f} dB, {np.mean(np.array(points_all) > 3):.0%} over 3 dB")
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
