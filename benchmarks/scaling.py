"""Compute per audio-second for the codecs and LMs, their CPU throughput, and the data pipeline's rates.

    .venv/bin/python benchmarks/scaling.py                          # the default models, about 4 minutes
    .venv/bin/python benchmarks/scaling.py --json scaling.json      # also writes the figures as JSON
    .venv/bin/python benchmarks/scaling.py --quick --codec tiny=configs/codec_tiny.json --lm tiny=configs/lm_tiny.json

Every model is built from its config with random weights (FLOPs and speed do not depend on the weights). FLOPs
are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts matrix products and convolutions (the
work a GPU's tensor cores do; elementwise work is left out). Three additions, so that nothing large goes uncounted:
oneDNN is off while counting (its LSTM kernel is opaque to the counter; without it the LSTM runs as matrix
products), the CPU's fused attention kernel is counted with the counter's own attention formula (the full
S x S score matrix, causal or not), and an FFT of length n over m values is counted as 2.5 m log2 n (real) or
5 m log2 n (complex) FLOPs.

Codec rows (`--codec NAME=PATH`, a codec config or a codec folder's config.json):
    train GFLOP/audio-s   one training step on 1 s of audio at the codec's rate, divided by that second: the generator's
                          forward, the mel and multi-resolution STFT losses, and, when the config trains
                          adversarially (`training.adversarial_start_step >= 0`), the discriminator update on the
                          real and the detached generated audio plus the generator's pass through the
                          discriminator, then the generator's backward. Every part of the codec trains (no frozen
                          encoder), as in a run from scratch.
    disc share            the part of it spent in the discriminators (the step with them less the step without)
    encode, decode        GFLOP of encoding 1 s, and of decoding its codes
    CPU train             training steps per second of 1 s crops (batch 1, AdamW steps included); = audio-s/s
    CPU encode            audio seconds encoded per second (10 s of audio per call)

LM rows (`--lm NAME=PATH`, a preset or an LM folder's config.json; a preset is bound to a codec shape:
the one it names, else 8 x 1024 codes at 75 Hz, the bundled codec's; lm_musicgen_small to 4 x 2048 at 50 Hz,
MusicGen's EnCodec):
    train GFLOP/audio-s   forward + backward of one item of 1 s (frame_rate frames) with a text prefix of
                          `--text-tokens` tokens, divided by that second; "max crop": the same per second for a
                          crop of max_audio_frames frames, from a quadratic fit through the counts at 1 s and 2 s
                          (FLOPs = a n + b n^2 in the sequence length n: attention is the only quadratic term;
                          the JSON's `train_flops_fit` gives a and b for any crop)
    gen GFLOP/audio-s     generation of 1 s after the text prefix: prefill, then one cached decoding step per
                          frame, batch 1 (classifier-free guidance doubles it)
    CPU train             training steps per second of one 1 s item (AdamW step included); = audio-s/s
    CPU gen               audio seconds generated per second at batch 1 (decoding steps / frame_rate)

Data pipeline rows: `--source-seconds` of 44.1 kHz stereo audio written as wav, flac and mp3, decoded by
`tokenizer.audio.load_audio` (soundfile for wav/flac, torchcodec/FFmpeg for mp3), down-mixed and resampled to
24 kHz by torchaudio's `Resample` (the kernel built once, as `AudioCrops` does), and read as codec training reads
them (`AudioCrops.crop`: 1 s crops at random positions, decoded, down-mixed and resampled; also from a 24 kHz
mono wav, which needs no resampling), in audio-seconds per second.

All timings run on one thread (`torch.set_num_threads(1)`), median of `--runs` runs after a warm-up; per core
figures scale with cores when each core runs its own process. The load average is printed before and after:
figures from a loaded machine are low.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm import AudioLMConfig  # noqa: E402
from lm.model import AudioLMModel, KVCache  # noqa: E402
from tokenizer import CodecConfig, RVQCodec  # noqa: E402
from tokenizer.audio import load_audio, to_channels  # noqa: E402
from tokenizer.data import AudioCrops  # noqa: E402
from tokenizer.discriminator import CodecDiscriminator  # noqa: E402
from code_shape import CodeShape  # noqa: E402  (benchmarks/, the script's own folder)
from tokenizer.losses import (MultiResolutionSTFTLoss, MultiScaleMelLoss, discriminator_hinge_loss,  # noqa: E402
                              feature_matching_loss, generator_hinge_loss)

DEFAULT_CODECS = [("bundled codec", "pipelines/assets/codec/config.json"), ("codec_24khz", "configs/codec_24khz.json")]
DEFAULT_LMS = [("bundled music LM", "pipelines/assets/lm/music/config.json"), ("lm_small", "configs/lm_small.json"),
               ("lm_musicgen_small", "configs/lm_musicgen_small.json")]


BUNDLED_SHAPE = CodeShape(8, 1024, 75.0, 24000)
MUSICGEN_SHAPE = CodeShape(4, 2048, 50.0, 32000)  # MusicGen's EnCodec 32 kHz


# ---- counting ----------------------------------------------------------------------------------------------------
def _fft_flop(real: bool) -> Callable:
    def count(x, dim, *args, out_shape=None, **kwargs) -> int:
        n = math.prod(x[d] for d in dim)
        return int((2.5 if real else 5.0) * math.prod(x) * math.log2(max(n, 2)))
    return count


def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


_ATEN = torch.ops.aten
_EXTRA_FLOPS = {
    _ATEN._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    _ATEN._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
    _ATEN._fft_r2c: _fft_flop(real=True),
    _ATEN._fft_c2r: _fft_flop(real=True),
    _ATEN._fft_c2c: _fft_flop(real=False),
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of running `fn`, forward and backward."""
    with warnings.catch_warnings():  # the oneDNN switch warns about Intel GPUs
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False), \
                FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
            fn()
    return counter.get_total_flops()


def median_rate(work: Callable[[], float], runs: int) -> float:
    """Median over `runs` of (units of work done / seconds), after one warm-up call; `work` returns its units."""
    work()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        units = work()
        rates.append(units / (time.perf_counter() - start))
    return statistics.median(rates)


# ---- codec -------------------------------------------------------------------------------------------------------
class CodecStep:
    """One training step of `tokenizer.training` on a batch of crops: the same losses and passes, plain."""

    def __init__(self, config: CodecConfig):
        torch.manual_seed(0)
        self.config, self.codec = config, RVQCodec(config).train()
        tc = config.training
        self.mel, self.stft = MultiScaleMelLoss(config.sample_rate), MultiResolutionSTFTLoss()
        self.disc = CodecDiscriminator.from_config(config) if tc.adversarial_start_step >= 0 else None
        self.opt_g = torch.optim.AdamW(self.codec.parameters(), lr=tc.learning_rate, betas=tc.betas)
        self.opt_d = (None if self.disc is None else
                      torch.optim.AdamW(self.disc.parameters(), lr=tc.discriminator_learning_rate, betas=tc.betas))

    def __call__(self, wav: torch.Tensor, optimize: bool = True, adversarial: bool = True) -> None:
        """wav FloatTensor[B, C, N] at the codec's rate; `adversarial=False` leaves the discriminators out (the
        reconstruction-only stage)."""
        tc = self.config.training
        res = self.codec(wav)
        loss = (tc.mel_weight * self.mel(res.audio, wav) + tc.stft_weight * self.stft(res.audio, wav)
                + tc.commitment_weight * res.commit_loss + tc.codebook_weight * res.codebook_loss)
        if self.disc is not None and adversarial:
            b = wav.shape[0]
            logits, _ = self.disc(torch.cat([wav, res.audio.detach()]))
            self.disc.zero_grad(set_to_none=True)
            discriminator_hinge_loss([x[:b] for x in logits], [x[b:] for x in logits]).backward()
            if optimize:
                self.opt_d.step()
            logits, features = self.disc(torch.cat([wav, res.audio]))
            loss = (loss + tc.adversarial_weight * generator_hinge_loss([x[b:] for x in logits])
                    + tc.feature_weight * feature_matching_loss([[f[:b] for f in fs] for fs in features],
                                                                [[f[b:] for f in fs] for fs in features]))
        self.codec.zero_grad(set_to_none=True)
        loss.backward()
        if optimize:
            self.opt_g.step()


def measure_codec(name: str, path: Path, runs: int, quick: bool) -> dict:
    config = CodecConfig.from_json_file(path)
    step = CodecStep(config)
    sr, channels = config.sample_rate, config.channels
    torch.manual_seed(1)
    second = 0.1 * torch.randn(1, channels, sr)  # (B, C, N): 1 s
    step(second, optimize=False)  # k-means init of the codebooks happens on the first batch: not a training step
    train = count_flops(lambda: step(second, optimize=False))
    disc = train - count_flops(lambda: step(second, optimize=False, adversarial=False))
    codec = step.codec.eval().requires_grad_(False)  # encode/decode run in inference mode, where the counter's
    codes = codec.encode(second)  # backward hooks need no gradients either
    encode, decode = count_flops(lambda: codec.encode(second)), count_flops(lambda: codec.decode(codes))
    codec.train().requires_grad_(True)

    def train_step() -> float:
        step(second)
        return 1.0
    train_rate = median_rate(train_step, runs)
    codec.eval()
    seconds = 2.0 if quick else 10.0
    long = 0.1 * torch.randn(1, channels, int(seconds * sr))

    def encode_long() -> float:
        codec.encode(long)
        return seconds
    encode_rate = median_rate(encode_long, runs)
    return {"name": name, "config": str(path), "parameters": codec.num_parameters(),
            "disc_parameters": 0 if step.disc is None else sum(p.numel() for p in step.disc.parameters()),
            "sample_rate": sr, "frame_rate": codec.frame_rate, "num_codebooks": codec.num_codebooks,
            "codebook_size": codec.codebook_size, "adversarial": step.disc is not None,
            "train_flops_per_audio_s": train, "disc_flops_per_audio_s": disc, "encode_flops_per_audio_s": encode,
            "decode_flops_per_audio_s": decode,
            "cpu_train_steps_per_s": train_rate, "cpu_train_audio_s_per_s": train_rate,
            "cpu_encode_audio_s_per_s": encode_rate}


# ---- LM ----------------------------------------------------------------------------------------------------------
def bound_lm_config(path: Path, shape: CodeShape | None, text_vocab_size: int = 1024) -> AudioLMConfig:
    """The config at `path`, bound (if it is a preset) to `shape`, or to the codebooks it names and the bundled
    codec's rates."""
    if "model_type" in json.loads(Path(path).read_text()):  # an LM folder's config.json, written by save_pretrained
        config = AudioLMConfig.from_json_file(path)
    else:
        config = AudioLMConfig.from_preset(path)
    if config.is_bound:
        return config
    if shape is None:
        shape = dataclasses.replace(BUNDLED_SHAPE, num_codebooks=config.num_codebooks or 8,
                                    codebook_size=config.codebook_size or 1024)
    return config.bound_to(shape, config.text_vocab_size or text_vocab_size, null_condition_ids=[3, 4, 5])


def _lm_batch(config: AudioLMConfig, frames: int, text_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    text = torch.randint(6, config.text_vocab_size, (1, text_tokens), generator=g)  # (B, L)
    codes = torch.randint(0, config.codebook_size, (1, config.num_codebooks, frames), generator=g)  # (B, K, T)
    return text, codes


def lm_train_flops(model: AudioLMModel, frames: int, text_tokens: int) -> int:
    text, codes = _lm_batch(model.config, frames, text_tokens)
    flops = count_flops(lambda: model(text, None, codes).loss.backward())
    model.zero_grad(set_to_none=True)
    return flops


def lm_generation(model: AudioLMModel, frames: int, text_tokens: int) -> Callable[[], float]:
    """A call that generates `frames` steps after the text prefix (random steps: the cost is the same) and returns
    how many it ran."""
    text, _ = _lm_batch(model.config, 1, text_tokens)
    mask = torch.ones_like(text, dtype=torch.bool)
    steps = torch.randint(0, model.config.codebook_size, (frames, 1, model.config.num_codebooks))

    @torch.no_grad()
    def run() -> float:
        cache = KVCache(model.config, 1, text_tokens + frames + 1)
        model.prefill(text, mask, model.start_step(1), cache)
        for step in steps:
            model.decode_step(step, cache)
        return float(frames)
    return run


def measure_lm(name: str, path: Path, shape: CodeShape | None, text_tokens: int, runs: int) -> dict:
    config = bound_lm_config(path, shape)
    config.condition_dropout, config.dropout = 0.0, 0.0  # the same work on every call
    torch.manual_seed(0)
    model = AudioLMModel(config).train()
    rate = config.frame_rate
    one, two = round(rate), 2 * round(rate)
    f1, f2 = lm_train_flops(model, one, text_tokens), lm_train_flops(model, two, text_tokens)
    # FLOPs = a n + b n^2 over the sequence of n = text + steps positions (steps = frames + K for delay).
    extra = model.pattern.num_steps(1) - 1
    n1, n2 = text_tokens + one + extra, text_tokens + two + extra
    b = (f2 / n2 - f1 / n1) / (n2 - n1)
    a = f1 / n1 - b * n1
    max_frames = config.max_audio_frames
    n_max = text_tokens + max_frames + extra
    max_crop = (a * n_max + b * n_max ** 2) / (max_frames / rate)
    model.eval()
    gen = count_flops(lm_generation(model, one, text_tokens))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    text, codes = _lm_batch(config, one, text_tokens)

    def train_step() -> float:
        opt.zero_grad(set_to_none=True)
        model(text, None, codes).loss.backward()
        opt.step()
        return 1.0
    train_rate = median_rate(train_step, runs)
    model.eval()
    gen_rate = median_rate(lm_generation(model, one, text_tokens), runs) / rate
    return {"name": name, "config": str(path), "parameters": model.num_parameters(),
            "num_codebooks": config.num_codebooks, "codebook_size": config.codebook_size, "frame_rate": rate,
            "text_tokens": text_tokens, "max_audio_frames": max_frames,
            "train_flops_per_audio_s": f1 * rate / one, "train_flops_per_audio_s_max_crop": max_crop,
            "gen_flops_per_audio_s": gen * rate / one,
            # training FLOPs of one item of T frames: a n + b n^2 with n = T + extra_positions (text and pattern)
            "train_flops_fit": {"a": a, "b": b, "extra_positions": text_tokens + extra},
            "cpu_train_steps_per_s": train_rate, "cpu_train_audio_s_per_s": train_rate * one / rate,
            "cpu_gen_audio_s_per_s": gen_rate}


# ---- data pipeline ------------------------------------------------------------------------------------------------
def music_like(seconds: float, sample_rate: int = 44100) -> np.ndarray:
    """(N, 2) float32: harmonic tones with a slow tremolo and a little noise, stereo."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wav = sum(0.2 / k * np.sin(2 * np.pi * k * 220.0 * t + rng.uniform(0, 6.3)) for k in range(1, 6))
    wav = wav * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    return (np.stack([wav, np.roll(wav, 100)], axis=1) + 0.01 * rng.standard_normal((t.size, 2))).astype(np.float32)


def _write_mp3(path: Path, wav: np.ndarray, sample_rate: int) -> bool:
    try:
        from torchcodec.encoders import AudioEncoder

        AudioEncoder(torch.from_numpy(wav.T.copy()), sample_rate=sample_rate).to_file(str(path), bit_rate=192_000)
        return True
    except Exception as exc:  # noqa: BLE001 - an FFmpeg without an mp3 encoder: the row says so
        print(f"(mp3 skipped: {exc})", file=sys.stderr)
        return False


def measure_data(seconds: float, runs: int) -> list[dict]:
    import torchaudio

    wav = music_like(seconds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {"44.1 kHz stereo wav": Path(tmp) / "a.wav", "44.1 kHz stereo flac": Path(tmp) / "a.flac",
                 "44.1 kHz stereo mp3": Path(tmp) / "a.mp3"}
        sf.write(files["44.1 kHz stereo wav"], wav, 44100, subtype="PCM_16")
        sf.write(files["44.1 kHz stereo flac"], wav, 44100)
        if not _write_mp3(files["44.1 kHz stereo mp3"], wav, 44100):
            del files["44.1 kHz stereo mp3"]
        for kind, path in files.items():
            reader = "torchcodec" if path.suffix == ".mp3" else "soundfile"
            rate = median_rate(lambda path=path: load_audio(path)[0].shape[-1] / 44100, runs)
            rows.append({"stage": f"decode {kind} ({reader})", "audio_s_per_s": rate})
        files["24 kHz mono wav"] = Path(tmp) / "b.wav"  # stored at the codec's rate: nothing to resample
        mono, _ = load_audio(files["44.1 kHz stereo wav"], sample_rate=24000, channels=1)
        sf.write(files["24 kHz mono wav"], mono[0].numpy(), 24000, subtype="PCM_16")
        positions = np.random.default_rng(0).uniform(0, 1, 20)
        for kind, path in files.items():
            crops = AudioCrops([path], sample_rate=24000, channels=1, segment_seconds=1.0)
            rate = median_rate(lambda crops=crops: sum(crops.crop(0, p).shape[-1] for p in positions) / 24000, runs)
            rows.append({"stage": f"codec-training crop: 1 s of a {kind} file -> 24 kHz mono (AudioCrops)",
                         "audio_s_per_s": rate})
    resample = torchaudio.transforms.Resample(44100, 24000)
    stereo = torch.from_numpy(wav.T.copy())  # (C, N)
    rate = median_rate(lambda: resample(to_channels(stereo, 1)).shape[-1] / 24000, runs)
    rows.append({"stage": "down-mix + resample 44.1 -> 24 kHz (torchaudio)", "audio_s_per_s": rate})
    return rows


# ---- output --------------------------------------------------------------------------------------------------------
def _g(flops: float) -> str:
    return f"{flops / 1e9:.3g}"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"torch {m['torch']}, {m['threads']} thread, {m['cpus']} CPUs, load average {m['load_before']:.2f} "
             f"before, {m['load_after']:.2f} after; FLOPs per second of audio; CPU rates median of {m['runs']}", ""]
    if result["codecs"]:
        lines += ["| codec | params (M) | disc params (M) | train GFLOP/audio-s | disc share | encode GFLOP/audio-s "
                  "| decode GFLOP/audio-s | CPU train steps/s (1 s crop) | CPU train audio-s/s "
                  "| CPU encode audio-s/s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["codecs"]:
            share = r["disc_flops_per_audio_s"] / r["train_flops_per_audio_s"]
            lines.append(f"| {r['name']} | {r['parameters'] / 1e6:.2f} | {r['disc_parameters'] / 1e6:.2f} "
                         f"| {_g(r['train_flops_per_audio_s'])} | {share:.0%} | {_g(r['encode_flops_per_audio_s'])} "
                         f"| {_g(r['decode_flops_per_audio_s'])} "
                         f"| {r['cpu_train_steps_per_s']:.3g} | {r['cpu_train_audio_s_per_s']:.3g} "
                         f"| {r['cpu_encode_audio_s_per_s']:.3g} |")
        lines.append("")
    if result["lms"]:
        lines += ["| LM | params (M) | codes | train GFLOP/audio-s (1 s) | train GFLOP/audio-s (max crop) "
                  "| gen GFLOP/audio-s | CPU train steps/s (1 s item) | CPU train audio-s/s | CPU gen audio-s/s |",
                  "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["lms"]:
            codes = f"{r['num_codebooks']} x {r['codebook_size']} @ {r['frame_rate']:g} Hz"
            crop = f"{_g(r['train_flops_per_audio_s_max_crop'])} ({r['max_audio_frames'] / r['frame_rate']:g} s)"
            lines.append(f"| {r['name']} | {r['parameters'] / 1e6:.2f} | {codes} "
                         f"| {_g(r['train_flops_per_audio_s'])} | {crop} | {_g(r['gen_flops_per_audio_s'])} "
                         f"| {r['cpu_train_steps_per_s']:.3g} | {r['cpu_train_audio_s_per_s']:.3g} "
                         f"| {r['cpu_gen_audio_s_per_s']:.3g} |")
        lines.append("")
    if result["data"]:
        lines += ["| data pipeline stage | CPU audio-s/s per core |", "| --- | ---: |"]
        lines += [f"| {r['stage']} | {r['audio_s_per_s']:.4g} |" for r in result["data"]]
        lines.append("")
    return "\n".join(lines)


def _named(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {spec!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codec", action="append", type=_named, metavar="NAME=PATH",
                        help="a codec config (repeatable; default: the bundled codec and codec_24khz)")
    parser.add_argument("--lm", action="append", type=_named, metavar="NAME=PATH",
                        help="an LM preset or config (repeatable; default: the bundled music LM, lm_small, "
                             "lm_musicgen_small)")
    parser.add_argument("--text-tokens", type=int, default=32, help="text prefix length of the LM items")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per CPU figure (median)")
    parser.add_argument("--source-seconds", type=float, default=30.0, help="audio decoded per data-pipeline run")
    parser.add_argument("--quick", action="store_true", help="one timed run, 2 s of audio per timing (for tests)")
    parser.add_argument("--no-data", action="store_true", help="leave out the data-pipeline rows")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.source_seconds = 1, 2.0
    torch.set_num_threads(1)
    codecs = args.codec or [(n, ROOT / p) for n, p in DEFAULT_CODECS]
    lms = args.lm or [(n, ROOT / p) for n, p in DEFAULT_LMS]
    shapes = {"lm_musicgen_small.json": MUSICGEN_SHAPE}
    result = {"machine": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                          "load_before": os.getloadavg()[0], "runs": args.runs}}
    result["codecs"], result["lms"] = [], []
    for name, path in codecs:
        print(f"scaling: codec {name} ({path})", file=sys.stderr, flush=True)
        result["codecs"].append(measure_codec(name, path, args.runs, args.quick))
    for name, path in lms:
        print(f"scaling: LM {name} ({path})", file=sys.stderr, flush=True)
        result["lms"].append(measure_lm(name, path, shapes.get(path.name), args.text_tokens, args.runs))
    if not args.no_data:
        print("scaling: data pipeline", file=sys.stderr, flush=True)
    result["data"] = [] if args.no_data else measure_data(args.source_seconds, args.runs)
    result["machine"]["load_after"] = os.getloadavg()[0]
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
