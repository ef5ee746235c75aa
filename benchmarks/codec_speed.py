"""Encode/decode speed of rvqaudio's codec vs transformers' EncodecModel (24 kHz), at matched bitrate.

Real-time factor = seconds of audio per wall-clock second (higher is faster), median of `--repeats` runs,
random weights for both (speed does not depend on training). Run:

    .venv/bin/python benchmarks/codec_speed.py [--config configs/codec_small.json] [--seconds 10] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tokenizer import CodecConfig, RVQCodec


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_rvqaudio(config: CodecConfig, wav: torch.Tensor, kbps: float, repeats: int) -> dict:
    codec = RVQCodec(config).eval()
    codec.train()(wav[:1, :, : config.sample_rate])  # k-means init so codes are spread, as in a trained model
    codec.eval()
    k = max(1, min(config.num_codebooks, round(kbps / config.bitrate(1))))
    codes = codec.encode(wav, num_codebooks=k)
    return {
        "name": f"rvqaudio ({config.name})",
        "params_M": codec.num_parameters() / 1e6,
        "kbps": config.bitrate(k),
        "encode_s": median_seconds(lambda: codec.encode(wav, num_codebooks=k), repeats),
        "decode_s": median_seconds(lambda: codec.decode(codes), repeats),
    }


def bench_encodec(wav: torch.Tensor, kbps: float, repeats: int) -> dict:
    from transformers import EncodecConfig, EncodecModel

    model = EncodecModel(EncodecConfig()).eval()  # the default config is EnCodec 24 kHz
    bandwidth = min(model.config.target_bandwidths, key=lambda b: abs(b - kbps))

    @torch.inference_mode()
    def encode():
        return model.encode(wav, bandwidth=bandwidth)

    encoded = encode()

    @torch.inference_mode()
    def decode():
        return model.decode(encoded.audio_codes, encoded.audio_scales)

    return {
        "name": "transformers EncodecModel (24 kHz)",
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "kbps": bandwidth,
        "encode_s": median_seconds(encode, repeats),
        "decode_s": median_seconds(decode, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/codec_small.json")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kbps", type=float, default=6.0, help="bitrate both codecs are run at")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = CodecConfig.from_json_file(args.config)
    audio_seconds = args.seconds * args.batch
    rows = []
    for rate, bench in ((config.sample_rate, lambda w: bench_rvqaudio(config, w, args.kbps, args.repeats)),
                        (24_000, lambda w: bench_encodec(w, args.kbps, args.repeats))):
        wav = 0.1 * torch.randn(args.batch, config.channels if rate == config.sample_rate else 1,
                                int(args.seconds * rate))
        rows.append(bench(wav))

    print(f"{args.batch} x {args.seconds:.1f} s of audio, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'codec':40s} {'params':>8s} {'kbps':>6s} {'encode xRT':>11s} {'decode xRT':>11s}")
    for r in rows:
        print(f"{r['name']:40s} {r['params_M']:7.2f}M {r['kbps']:6.2f} "
              f"{audio_seconds / r['encode_s']:11.1f} {audio_seconds / r['decode_s']:11.1f}")
    ours, ref = rows
    print(f"ratio rvqaudio / EnCodec: encode {ref['encode_s'] / ours['encode_s']:.2f}x, "
          f"decode {ref['decode_s'] / ours['decode_s']:.2f}x faster")


if __name__ == "__main__":
    main()
