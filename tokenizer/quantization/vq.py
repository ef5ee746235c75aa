"""One level of vector quantization: nearest-code lookup with two codebook-learning recipes.

`EMAVectorQuantizer` (EnCodec/AudioCraft): codebooks are buffers updated by exponential moving averages of
the vectors assigned to them, initialised by k-means on the first training batch, with dead codes replaced
by vectors of the current batch. Under torch.distributed the statistics are all-reduced and the k-means
init and replacements are broadcast from rank 0, so every rank keeps the same codebook.

`FactorizedVectorQuantizer` (DAC): codes live in a low-dimensional space behind linear projections and
are compared by cosine similarity (L2-normalised); the codebook is learned by gradient.

Both take latents `(B, D, T)` and return a `LevelResult` with codes `(B, T)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class LevelResult:
    quantized: torch.Tensor  # (B, D, T); straight-through to the input in training
    codes: torch.Tensor  # (B, T)
    commit_loss: torch.Tensor  # (B,) mean squared distance of the input to its (detached) code
    codebook_loss: torch.Tensor  # (B,) the codebook's pull towards the (detached) input; zeros for EMA


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def _sample_vectors(x: torch.Tensor, n: int) -> torch.Tensor:
    """n rows of x (M, D), without replacement where M >= n."""
    m = x.shape[0]
    idx = torch.randperm(m, device=x.device)[:n] if m >= n else torch.randint(0, m, (n,), device=x.device)
    return x[idx]


def _kmeans_plus_plus(x: torch.Tensor, k: int) -> torch.Tensor:
    """k-means++ seeding: each new centroid drawn with probability proportional to its squared distance
    from the nearest one chosen so far, which avoids most of plain random seeding's bad local minima."""
    if x.shape[0] <= k:
        return _sample_vectors(x, k)
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centroids[0] = x[torch.randint(0, x.shape[0], (1,))]
    nearest = (x - centroids[0]).pow(2).sum(-1)
    for i in range(1, k):
        if nearest.sum() <= 0:  # fewer distinct vectors than codes: fill with random ones
            centroids[i:] = _sample_vectors(x, k - i)
            break
        centroids[i] = x[torch.multinomial(nearest, 1)]
        nearest = torch.minimum(nearest, (x - centroids[i]).pow(2).sum(-1))
    return centroids


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on x (M, D) from k-means++ seeds: centroids (k, D) and cluster sizes (k,).

    Empty clusters keep their seed."""
    centroids = _kmeans_plus_plus(x, k)
    counts = torch.zeros(k, device=x.device)
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(-1)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


def _per_item_mean(per_item_sq: torch.Tensor) -> torch.Tensor:
    return per_item_sq.mean(dim=(1, 2))


class EMAVectorQuantizer(nn.Module):
    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, kmeans_init: bool = True,
                 kmeans_iters: int = 10, dead_code_threshold: float = 2.0, epsilon: float = 1e-5):
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.epsilon = epsilon
        embed = torch.randn(codebook_size, dim) if not kmeans_init else torch.zeros(codebook_size, dim)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("embed", embed)
        # The EMA statistics agree with the codebook from the start (embed = embed_sum / cluster_size): a random
        # codebook counts as seen once per code, so the first update moves it by a weighted mean, not by a division
        # of its values by the 1 - decay share of their first use. k-means replaces both with its own counts.
        self.register_buffer("cluster_size", torch.zeros(codebook_size) if kmeans_init else torch.ones(codebook_size))
        self.register_buffer("embed_sum", embed.clone())
        self.register_buffer("dead_fraction", torch.zeros(()))  # codes replaced at the last training step

    @property
    def codebook(self) -> torch.Tensor:
        """(codebook_size, D) in the latent space."""
        return self.embed

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent (B, D, T) -> codes (B, T): index of the nearest code by Euclidean distance."""
        flat = x.transpose(1, 2).reshape(-1, x.shape[1])  # (B*T, D): one row per frame
        return self._nearest(flat).view(x.shape[0], x.shape[2])

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        # ||x - e||² = ||x||² - 2 x·e + ||e||²; ||x||² is constant per row and dropped.
        # In float32 even under autocast: a bfloat16 matmul (8-bit mantissa) picked another code for a quarter of a
        # tiny codec's frames, and these assignments drive the EMA statistics.
        with torch.autocast(flat.device.type, enabled=False):
            embed = self.embed.float()  # the buffer itself unless the module was cast to a lower precision
            scores = flat.float() @ embed.t() * 2 - embed.pow(2).sum(-1)
        return scores.argmax(-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> latent (B, D, T)."""
        return F.embedding(codes, self.embed).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> LevelResult:
        flat = x.detach().transpose(1, 2).reshape(-1, x.shape[1]).float()  # (B*T, D)
        if self.training and not bool(self.initialized):
            self._init_from(flat)
        codes = self._nearest(flat)
        if self.training:
            self._ema_update(flat, codes)
            self._replace_dead_codes(flat)
        codes = codes.view(x.shape[0], x.shape[2])
        quantized = self.decode(codes).to(x.dtype)
        commit = _per_item_mean((x - quantized.detach()).pow(2))
        if self.training:
            quantized = x + (quantized - x).detach()  # straight-through estimator
        return LevelResult(quantized, codes, commit, torch.zeros_like(commit))

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        centroids, counts = kmeans(flat, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(_broadcast(centroids))
        self.cluster_size.copy_(_broadcast(counts))
        self.embed_sum.copy_(self.embed * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        counts = _all_reduce_sum(torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype))
        sums = _all_reduce_sum(torch.zeros_like(self.embed).index_add_(0, codes, flat))
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _replace_dead_codes(self, flat: torch.Tensor) -> None:
        if self.dead_code_threshold <= 0:
            return
        dead = self.cluster_size < self.dead_code_threshold
        self.dead_fraction.copy_(dead.float().mean())
        if not bool(dead.any()):
            return
        replacement = _broadcast(_sample_vectors(flat, self.codebook_size))
        self.embed[dead] = replacement[dead]
        self.cluster_size[dead] = self.dead_code_threshold
        self.embed_sum[dead] = replacement[dead] * self.dead_code_threshold

    def usage_counts(self) -> torch.Tensor:
        """EMA of how many vectors each code received per step, (codebook_size,)."""
        return self.cluster_size


class FactorizedVectorQuantizer(nn.Module):
    def __init__(self, dim: int, codebook_size: int, codebook_dim: int, decay: float = 0.99):
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.in_proj = weight_norm(nn.Conv1d(dim, codebook_dim, 1))
        self.out_proj = weight_norm(nn.Conv1d(codebook_dim, dim, 1))
        self.embedding = nn.Embedding(codebook_size, codebook_dim)
        # Usage statistics only (not used by the forward pass).
        self.register_buffer("cluster_size", torch.zeros(codebook_size))

    @property
    def codebook(self) -> torch.Tensor:
        """(codebook_size, D) in the latent space (after the output projection)."""
        return self.out_proj(self.embedding.weight.t()[None])[0].t()

    def _nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        flat = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]), dim=-1)  # (B*T, d)
        book = F.normalize(self.embedding.weight, dim=-1)
        return (flat @ book.t()).argmax(-1).view(z_e.shape[0], z_e.shape[2])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent (B, D, T) -> codes (B, T): the code of highest cosine similarity after projection."""
        return self._nearest(self.in_proj(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> latent (B, D, T)."""
        return self.out_proj(self.embedding(codes).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> LevelResult:
        z_e = self.in_proj(x)  # (B, d, T)
        codes = self._nearest(z_e)
        z_q = self.embedding(codes).transpose(1, 2)  # (B, d, T)
        commit = _per_item_mean((z_e - z_q.detach()).pow(2))
        codebook = _per_item_mean((z_q - z_e.detach()).pow(2))
        if self.training:
            z_q = z_e + (z_q - z_e).detach()  # straight-through estimator
            with torch.no_grad():
                counts = _all_reduce_sum(torch.bincount(codes.flatten(), minlength=self.codebook_size).float())
                self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        return LevelResult(self.out_proj(z_q), codes, commit, codebook)

    def usage_counts(self) -> torch.Tensor:
        return self.cluster_size
