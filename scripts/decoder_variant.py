"""Move a decoder between a codec folder's variants and codec folders of its own (for `default_models.sh`).

    python scripts/decoder_variant.py extract pipelines/assets/codec speech runs/default/codec_speech_installed/final
    python scripts/decoder_variant.py install runs/default/codec_speech_real_mean/final pipelines/assets/codec speech

`extract` writes the codec of FOLDER with its decoder variant VARIANT as a codec folder of its own, in float32 (a
fine-tune's starting point). `install` writes the decoder of the codec folder SOURCE into FOLDER as variant VARIANT,
in float16 unless `--float32`; SOURCE must share FOLDER's codes (`RVQCodec.save_decoder_variant` checks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer import RVQCodec  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract", help="a folder's decoder variant as a codec folder of its own (float32)")
    p.add_argument("folder")
    p.add_argument("variant")
    p.add_argument("output")
    p = sub.add_parser("install", help="a codec folder's decoder into another folder as a decoder variant")
    p.add_argument("source")
    p.add_argument("folder")
    p.add_argument("variant")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    args = parser.parse_args(argv)

    if args.command == "extract":
        codec = RVQCodec.from_pretrained(args.folder, variant=args.variant).float()
        out = codec.save_pretrained(args.output)
        print(f"wrote decoder variant {args.variant!r} of {args.folder} as the codec folder {out}")
    else:
        codec = RVQCodec.from_pretrained(args.source)
        dtype = None if args.float32 else torch.float16
        out = codec.save_decoder_variant(args.folder, args.variant, dtype=dtype)
        print(f"wrote the decoder of {args.source} into {args.folder} as variant {args.variant!r} ({out})")


if __name__ == "__main__":
    main()
