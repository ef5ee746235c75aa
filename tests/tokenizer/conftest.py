"""Tiny codecs shared by the tokenizer tests: small enough that the whole suite runs on 2 CPU cores."""

from __future__ import annotations

import math

import pytest
import torch

from tokenizer import CodecConfig, RVQCodec


def tiny_config(**overrides) -> CodecConfig:
    quantizer = dict(num_codebooks=4, codebook_size=32, kmeans_iters=5)
    quantizer.update(overrides.pop("quantizer", {}))
    base = dict(sample_rate=8000, n_filters=4, strides=(2, 4), dimension=16, n_residual_layers=1,
                quantizer=quantizer)
    base.update(overrides)
    return CodecConfig(**base)


def tone(seconds: float = 0.5, sample_rate: int = 8000, channels: int = 1) -> torch.Tensor:
    """A deterministic two-partial tone with an envelope, (channels, N)."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    wav = 0.4 * torch.sin(2 * math.pi * 220 * t) + 0.2 * torch.sin(2 * math.pi * 660 * t + 1.0)
    wav = wav * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))
    return wav.repeat(channels, 1)


def move_decoder(codec: RVQCodec, seed: int) -> RVQCodec:
    """`codec` with its decoder's weights moved by 0.05 x Gaussian noise (in place, returned): what a decoder
    fine-tune on other audio gives, with the same codes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in codec.decoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return codec


@pytest.fixture
def codec() -> RVQCodec:
    torch.manual_seed(0)
    return RVQCodec(tiny_config()).eval()


@pytest.fixture(scope="session")
def trained_codec() -> RVQCodec:
    """A tiny codec fitted to one clip with a waveform L1 loss (a few seconds of CPU)."""
    torch.manual_seed(0)
    model = RVQCodec(tiny_config())
    clip = tone(0.5)[None]  # (1, 1, N)
    batch = torch.cat([clip, clip.roll(1000, -1)], dim=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        out = model(batch)
        loss = (out.audio - batch).abs().mean() + out.commit_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
