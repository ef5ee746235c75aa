"""Generation speed of our LM next to transformers' MusicGen built with the same decoder shape.

    .venv/bin/python benchmarks/lm_speed.py                      # configs/lm_small.json, 5 s, median of 3
    .venv/bin/python benchmarks/lm_speed.py --config configs/lm_tiny.json --duration 2 --runs 5

Both models have random weights (nothing is downloaded) and generate the same number of frames with top-k
sampling (k=250), with classifier-free guidance (scale 3, a batch of 2) and without (scale 1, a batch of 1).
Reported per model and guidance setting, median over runs after one warm-up run:

    x realtime   seconds of audio generated per wall-clock second (frames / frame_rate / seconds)
    first frame  seconds from the call until the first complete frame [B, K, 1] is available

MusicGen is `MusicgenForConditionalGeneration` from a `MusicgenConfig` whose decoder has our width, depth,
heads, MLP size and codebooks, with a one-layer T5 text encoder and a small EnCodec (its waveform decoding at
the end is not timed: the clock stops at the last decoder step, seen through a forward hook). Its first frame
is its K-th generated step (delay pattern). Ours is timed through `AudioLM.stream`.

Ours runs twice: with its stored float32 weights and with generation's default int8 inference weights
(`AudioLM.set_inference_weights("int8")`, `lm.layers`). Random weights can sample end of audio early, so ours holds
it back until the duration (`min_duration`), as `generate` does for music: every model generates the same number
of frames.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from code_shape import CodeShape  # noqa: E402  (benchmarks/, the script's own folder)
from lm import AudioLM, AudioLMConfig, GenerationConfig, TextTokenizer  # noqa: E402

PROMPT = "an upbeat electronic track with a driving bass line"
CORPUS = [
    "an upbeat electronic track with a driving bass line",
    "a calm piano melody with soft strings in the background",
    "heavy drums, distorted guitars and a shouting crowd",
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
] * 20


def build_ours(preset: AudioLMConfig, codec: CodeShape, max_frames: int) -> AudioLM:
    tokenizer = TextTokenizer.train(CORPUS, vocab_size=1024, seed=0)
    preset.max_audio_frames = max(preset.max_audio_frames, max_frames)
    lm = AudioLM.from_config(preset, tokenizer, codec)
    lm.model.eval()
    return lm


def build_musicgen(config: AudioLMConfig, max_steps: int):
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)

    hop = round(config.sample_rate / config.frame_rate)
    ratios = _factor(hop)
    text = T5Config(vocab_size=1024, d_model=256, d_kv=32, d_ff=512, num_layers=1, num_heads=8)
    audio = EncodecConfig(
        sampling_rate=config.sample_rate, upsampling_ratios=ratios, codebook_size=config.codebook_size,
        num_filters=4, hidden_size=32, num_residual_layers=1, num_lstm_layers=1,
        target_bandwidths=[config.num_codebooks * config.frame_rate * 10 / 1000],
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=config.codebook_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, ffn_dim=config.intermediate_size,
        num_codebooks=config.num_codebooks, max_position_embeddings=max(2048, max_steps + 16),
        pad_token_id=config.codebook_size, bos_token_id=config.codebook_size, dropout=0.0,
    )
    model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder))
    return model.eval()


def _factor(hop: int) -> list[int]:
    """Upsampling ratios whose product is `hop` (EnCodec-like: 8, 5, 4, 2 for 320)."""
    ratios, rest = [], hop
    for r in (8, 5, 4, 3, 2):
        while rest % r == 0 and len(ratios) < 6:
            ratios.append(r)
            rest //= r
    if rest != 1:
        ratios.append(rest)
    return ratios


def time_ours(lm: AudioLM, frames: int, guidance: float, seed: int) -> tuple[float, float, int]:
    seconds = frames / lm.config.frame_rate
    config = GenerationConfig(duration=seconds, min_duration=seconds, top_k=250, guidance_scale=guidance,
                              task="music", seed=seed)
    start = time.perf_counter()
    first, total = None, 0
    for chunk in lm.stream([PROMPT], config):
        if first is None:
            first = time.perf_counter() - start
        total += chunk.shape[2]
    return time.perf_counter() - start, first, total


def time_musicgen(model, frames: int, guidance: float) -> tuple[float, float, int]:
    # transformers 5.24's MusicgenForConditionalGeneration.generate drops its `streamer` argument, so the
    # steps are clocked with a forward hook on the decoder: its call j ends when step j's logits exist.
    K = model.decoder.num_codebooks
    inputs = torch.randint(10, 1000, (1, 12))
    times: list[float] = []
    hook = model.decoder.register_forward_hook(lambda module, args, output: times.append(time.perf_counter()))
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True, top_k=250,
                           guidance_scale=guidance, max_new_tokens=frames + K - 1)
    finally:
        hook.remove()
    # It makes max_new_tokens + 1 decoder calls for max_new_tokens steps, max_new_tokens - (K - 1) frames
    # (delay pattern). Frame 0 is complete after K steps: counted at call K - 1, the earlier reading.
    return times[-1] - start, times[K - 1] - start, len(times) - 1 - (K - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/lm_small.json", help="LM preset (default: lm_small)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of audio per run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per setting (median reported)")
    parser.add_argument("--num-codebooks", type=int, default=8)
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--frame-rate", type=float, default=75.0)
    parser.add_argument("--sample-rate", type=int, default=24_000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-musicgen", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    preset = AudioLMConfig.from_preset(args.config)
    codec = CodeShape(preset.num_codebooks or args.num_codebooks, preset.codebook_size or args.codebook_size,
                       args.frame_rate, args.sample_rate)
    frames = round(args.duration * codec.frame_rate)
    lm = build_ours(preset, codec, frames)
    cfg = lm.config
    decoder_params = sum(p.numel() for p in lm.model.parameters())
    print(f"config {args.config}: {cfg.num_hidden_layers} layers x {cfg.hidden_size} wide, {cfg.num_attention_heads} "
          f"heads, MLP {cfg.intermediate_size}, {cfg.num_codebooks} x {cfg.codebook_size} codes at {cfg.frame_rate:g} Hz; "
          f"{frames} frames ({args.duration:g} s) per run, median of {args.runs}; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}", flush=True)

    rows = []
    # Ours with its stored float32 weights and with generation's default int8 inference weights (lm.layers).
    int8 = build_ours(AudioLMConfig.from_preset(args.config), codec, frames)
    int8.model.load_state_dict(lm.model.state_dict())
    int8.set_inference_weights("int8")
    models = [("ours", lambda g: time_ours(lm, frames, g, seed=0), decoder_params),
              ("ours, int8 weights", lambda g: time_ours(int8, frames, g, seed=0), decoder_params)]
    if not args.skip_musicgen:
        musicgen = build_musicgen(cfg, frames + cfg.num_codebooks)
        musicgen_params = sum(p.numel() for p in musicgen.decoder.parameters())
        models.append(("musicgen (transformers)", lambda g: time_musicgen(musicgen, frames, g), musicgen_params))
    # Runs of the models alternate, so a machine whose load drifts slows both alike.
    for guidance in (3.0, 1.0):
        results = {name: [] for name, _, _ in models}
        for name, run, _ in models:
            run(guidance)  # warm-up
        for _ in range(args.runs):
            for name, run, _ in models:
                results[name].append(run(guidance))
                wall, first, made = results[name][-1]
                print(f"  {name}, guidance {guidance:g}: {made} frames in {wall:.2f} s, first frame after "
                      f"{first * 1000:.0f} ms", flush=True)
        for name, _, params in models:
            made = {r[2] for r in results[name]}
            assert made == {frames}, f"{name} generated {made} frames, expected {frames}"
            total = statistics.median(r[0] for r in results[name])
            first = statistics.median(r[1] for r in results[name])
            rows.append((name, guidance, params, frames / cfg.frame_rate / total, first, total))
    rows.sort(key=lambda row: not row[0].startswith("ours"))
    print(f"load average after the runs {os.getloadavg()[0]:.2f}")

    print(f"\n{'model':<26}{'guidance':>9}{'params':>10}{'x realtime':>12}{'first frame':>13}{'wall':>9}")
    for name, guidance, params, speed, first, total in rows:
        print(f"{name:<26}{guidance:>9g}{params / 1e6:>9.1f}M{speed:>11.2f}x{first * 1000:>11.0f}ms{total:>8.2f}s")
    if not args.skip_musicgen:
        print()
        for guidance in (3.0, 1.0):
            theirs = next(r for r in rows if not r[0].startswith("ours") and r[1] == guidance)
            for ours in (r for r in rows if r[0].startswith("ours") and r[1] == guidance):
                print(f"guidance {guidance:g}: {ours[0]} / musicgen speed = {ours[3] / theirs[3]:.2f}, "
                      f"first frame {ours[4] * 1000:.0f} ms vs {theirs[4] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
