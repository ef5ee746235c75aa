"""Residual vector quantization: K levels, each quantizing what the previous ones left over."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import QuantizerConfig
from .vq import EMAVectorQuantizer, FactorizedVectorQuantizer


@dataclass
class QuantizedResult:
    quantized: torch.Tensor  # (B, D, T) sum of the active levels' codes
    codes: torch.Tensor  # (B, K, T) all K levels, even those dropped for an item in training
    commit_loss: torch.Tensor  # scalar, mean over items and active levels
    codebook_loss: torch.Tensor  # scalar, same reduction; zero for EMA codebooks
    num_codebooks: torch.Tensor  # (B,) how many levels each item used


class ResidualVectorQuantizer(nn.Module):
    """Latent (B, D, T) <-> codes (B, K, T).

    In training, with probability `quantizer_dropout` an item uses only its first n ~ U{1..K} levels
    (DAC's per-item quantizer dropout), so one model serves every bitrate. All K levels still run for
    every item, which keeps the autograd graph the same on every DDP rank.
    """

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__()
        self.config = config
        if config.kind == "ema":
            levels = [
                EMAVectorQuantizer(dim, config.codebook_size, config.decay, config.kmeans_init,
                                   config.kmeans_iters, config.dead_code_threshold)
                for _ in range(config.num_codebooks)
            ]
        else:
            levels = [
                FactorizedVectorQuantizer(dim, config.codebook_size, config.codebook_dim, config.decay)
                for _ in range(config.num_codebooks)
            ]
        self.levels = nn.ModuleList(levels)

    @property
    def num_codebooks(self) -> int:
        return len(self.levels)

    def forward(self, x: torch.Tensor) -> QuantizedResult:
        batch, K = x.shape[0], self.num_codebooks
        n_active = torch.full((batch,), K, device=x.device)
        if self.training and self.config.quantizer_dropout > 0:
            dropped = torch.rand(batch, device=x.device) < self.config.quantizer_dropout
            n_active = torch.where(dropped, torch.randint(1, K + 1, (batch,), device=x.device), n_active)

        quantized = torch.zeros_like(x)
        residual = x
        codes, commit, codebook = [], x.new_zeros(()), x.new_zeros(())
        for k, level in enumerate(self.levels):
            res = level(residual)
            active = (n_active > k).to(x.dtype)  # (B,)
            quantized = quantized + res.quantized * active[:, None, None]
            residual = residual - res.quantized
            commit = commit + (res.commit_loss * active).sum()
            codebook = codebook + (res.codebook_loss * active).sum()
            codes.append(res.codes)
        n_terms = n_active.sum().clamp(min=1)
        return QuantizedResult(quantized, torch.stack(codes, dim=1), commit / n_terms, codebook / n_terms, n_active)

    def encode(self, x: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """Latent (B, D, T) -> codes (B, k, T) of the first k = num_codebooks (default K) levels."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        residual, codes = x, []
        for level in self.levels[:k]:
            c = level.encode(residual)
            residual = residual - level.decode(c)
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, k, T) with k <= K -> latent (B, D, T): the sum of the first k levels' codes."""
        out = None
        for k in range(codes.shape[1]):
            q = self.levels[k].decode(codes[:, k])
            out = q if out is None else out + q
        return out

    @torch.no_grad()
    def stats(self) -> list[dict[str, float]]:
        """Per level: perplexity of the code-usage distribution, usage (perplexity / codebook size: the
        effective fraction of the codebook in use) and the fraction of dead codes.

        All three come from each level's EMA of code counts per training step.
        """
        out = []
        for level in self.levels:
            counts = level.usage_counts().float()
            total = counts.sum()
            p = counts / total if total > 0 else torch.full_like(counts, 1.0 / counts.numel())
            entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
            if hasattr(level, "dead_fraction"):  # EMA: codes found dead (and replaced) at the last step
                dead = level.dead_fraction
            else:  # factorized: codes that receive (almost) no vectors any more
                dead = (counts < 1e-3).float().mean()
            out.append({
                "usage": float(entropy.exp()) / counts.numel(),
                "perplexity": float(entropy.exp()),
                "dead_fraction": float(dead),
            })
        return out
