"""How often the bundled codec's decoder choice is right on quiet, loud and clipped inputs.

    .venv/bin/python benchmarks/decoder_choice_levels.py --speech data/real_speech --music data/real_music

For the first `--max-clips` clips of each dataset's test split (up to 12 s each), brought to each input level
(`pipelines.decoder_choice.FIT_LEVELS`: as recorded, -30, -20 and -10 dBFS RMS, and -20 dBFS driven 12 dB into
clipping), encoded by the codec: the share of clips for which the folder's decoder choice picks the speech decoder
for speech and the codec's own decoder for music.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.decoder_choice import FIT_LEVELS  # noqa: E402
from pipelines.defaults import resolve_codec, resolve_decoder_choice  # noqa: E402
from pipelines.evaluation.data import iter_audio, load_split  # noqa: E402
from tokenizer.audio import resample, to_channels  # noqa: E402



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codec", default=None, help="codec folder with a decoder choice (default: the bundled)")
    parser.add_argument("--speech", nargs="+", default=[], help="speech datasets")
    parser.add_argument("--music", nargs="+", default=[], help="music datasets")
    parser.add_argument("--max-clips", type=int, default=150)
    args = parser.parse_args()
    codec, choice = resolve_codec(args.codec), resolve_decoder_choice(args.codec)
    if choice is None:
        raise SystemExit("the codec folder has no decoder choice (rvqaudio fit-decoder-choice)")
    print(f"{'dataset':<28}{'clips':>6}" + "".join(f"{level.name:>26}" for level in FIT_LEVELS))
    for data, is_speech in [(d, True) for d in args.speech] + [(d, False) for d in args.music]:
        right, clips = [0] * len(FIT_LEVELS), 0
        for wav, sr, _ in iter_audio(load_split(data, "test"), args.max_clips):
            ref = resample(to_channels(wav, codec.channels), sr, codec.sample_rate)[:, :12 * codec.sample_rate]
            if ref.shape[-1] < codec.hop_length:
                continue
            clips += 1
            for i, level in enumerate(FIT_LEVELS):
                picked = choice.choose(codec.encode(level.apply(ref)[0][None]))[0]
                right[i] += (picked == choice.speech_variant) == is_speech
        print(f"{data:<28}{clips:>6}" + "".join(f"{r / max(clips, 1):>26.3f}" for r in right))


if __name__ == "__main__":
    main()
