"""Give a trained spectral codec a pitch-phase decoder (`spectral.phase` of kind "harmonic_source"): fit only the
pitch head, on the frozen decoder's features.

    codec_dir = train_pitch_head("pipelines/assets/codec", ["data/speech", "data/music"], "runs/pitch", steps=3000)
    # runs/pitch/log.jsonl, and the codec in runs/pitch/final (as train_codec's run folders)

The encoder, codebooks and every other decoder weight stay exactly as they were: the codes, and so every dataset
tokenized and LM trained with the codec, stay valid, and so do the decoder's magnitudes. The head learns f0 classes
and voicing per frame against YIN on the training crops (`tokenizer.pitch`). It needs no discriminator and no
audio loss, so a step costs a forward pass of the encoder and the decoder's backbone: a few minutes on a CPU. A
decoder fine-tune with `train-codec` (`configs/codec_spectral_small_decoder_pitch.json`) can follow from its output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import HarmonicSourcePhaseConfig
from .data import AudioCrops
from .model import RVQCodec
from .pitch import PITCH_BINS, f0_from_logits, pitch_losses
from .run_folder import FINAL_DIR
from .training import load_initial_weights, pitch_targets


def train_pitch_head(codec: str | os.PathLike, data: str | os.PathLike | list[str | os.PathLike],
                     out: str | os.PathLike, steps: int = 3000, batch_size: int = 8, learning_rate: float = 1e-3,
                     seed: int = 0, progress: bool = True) -> Path:
    """Fit a pitch head for the spectral codec in folder `codec`; save the pitch-phase codec to `out/final`.

    Each step draws `batch_size` crops of `training.segment_seconds` (as `train_codec`, seeded by step) and a
    number of codebooks as quantizer dropout would (all of them half the time, else uniform), so the head serves
    every bitrate. `out/log.jsonl` gets the losses and, per 100 steps, the fraction of frames whose voicing agrees
    with YIN's and of frames voiced in both whose f0 is within 5% of YIN's. Returns `out/final`.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    start = RVQCodec.from_pretrained(codec)
    if start.config.spectral is None:
        raise ValueError(f"{str(codec)!r} is a SEANet codec: pitch-phase decoding needs a spectral one "
                         "(configs/codec_spectral_small.json)")
    phase = start.config.spectral.phase
    if not isinstance(phase, HarmonicSourcePhaseConfig):
        phase = HarmonicSourcePhaseConfig()
    config = dataclasses.replace(start.config, spectral=dataclasses.replace(start.config.spectral, phase=phase))
    out = Path(out)
    if (out / "log.jsonl").exists() or (out / FINAL_DIR).exists():
        raise FileExistsError(f"{str(out)!r} already holds a run; choose another folder")
    crops = AudioCrops.from_config(config, data)  # bad data fails here, before anything is written
    torch.manual_seed(seed)
    model = RVQCodec(config)
    load_initial_weights(model, codec)  # all but the new head
    model.eval().requires_grad_(False)
    head = model.decoder.phase.pitch_head.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.jsonl", "w") as log:
        sums: dict[str, float] = {}
        tick = time.perf_counter()
        for step in tqdm(range(steps), desc="pitch head", disable=not progress, dynamic_ncols=True):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
            wav = crops.batch(step, batch_size, 0)
            k = model.num_codebooks
            if torch.rand((), generator=generator) >= 0.5:
                k = int(torch.randint(1, model.num_codebooks + 1, (), generator=generator))
            with torch.no_grad():
                latent = model.quantizer.decode(model.quantizer.encode(model.encoder(wav), k))
                features = model.decoder.backbone(latent)  # (B, T, dim)
            logits = model.decoder.phase.pitch_logits(features)
            target = pitch_targets(wav, config)
            f0_loss, voicing_loss = pitch_losses(logits, target)
            optimizer.zero_grad(set_to_none=True)
            (f0_loss + voicing_loss).backward()
            optimizer.step()
            with torch.no_grad():
                voiced, predicted = target[:, 1] > 0.5, logits[:, PITCH_BINS] > 0
                both = voiced & predicted
                ratio = f0_from_logits(logits[:, :PITCH_BINS])[both] / target[:, 0][both]
            within = float(((ratio - 1).abs() < 0.05).float().mean()) if both.any() else 0.0
            for name, value in (("f0", f0_loss.item()), ("voicing", voicing_loss.item()),
                                ("voicing_agreement", float((voiced == predicted).float().mean())),
                                ("f0_within_5pct", within)):
                sums[name] = sums.get(name, 0.0) + value
            if (step + 1) % 100 == 0 or step + 1 == steps:
                count = 100 if (step + 1) % 100 == 0 else (step + 1) % 100
                record = {"step": step + 1, **{key: total / count for key, total in sums.items()},
                          "seconds_per_step": (time.perf_counter() - tick) / count}
                log.write(json.dumps(record) + "\n")
                log.flush()
                sums, tick = {}, time.perf_counter()
    return model.eval().save_pretrained(out / FINAL_DIR)
