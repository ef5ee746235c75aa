"""Linear layers whose CPU inference on a few rows is fast.

A decoding step multiplies one row per sequence (two with guidance) by every weight of the model. `F.linear`
multiplies by the transpose of the stored [out, in] weight, and for a handful of rows on a CPU that product runs
about 1.45x slower than one with the weight laid out [in, out], 1.65x with the heads stacked into one product
(`benchmarks/step_products.py`, lm_base, one thread). So at inference on a CPU, for at most `FEW_ROWS` rows, these
layers multiply by a transposed copy made on first use and kept until the weight changes. Training, larger batches and other devices
use `F.linear` unchanged; parameters and checkpoint names are `nn.Linear`'s, so accelerate and peft see ordinary
linear layers (peft's adapters wrap the layer and add their own term).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FEW_ROWS = 16  # above this many rows a matrix product amortises the transpose itself (prefill, training)


def transposable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x [..., in] times weight [out, in] takes the transposed-weight path: on a CPU, without autograd, at most
    FEW_ROWS rows, the same dtype, and a weight with a version counter (an inference tensor has none, so a copy of it
    could go stale unseen)."""
    return (x.device.type == "cpu" and not torch.is_grad_enabled() and x.numel() <= FEW_ROWS * weight.shape[1]
            and x.dtype == weight.dtype and not weight.is_inference())


class TransposedWeights:
    """A contiguous [in, sum(out_i)] copy of weights [out_i, in] (concatenated along out), rebuilt when any of them
    changes: in place (its version counter moves), replaced, moved or cast (its storage, shape or dtype differ)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None

    def get(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        key = tuple((w.data_ptr(), w._version, w.shape, w.dtype) for w in weights)
        if key != self._key:
            with torch.no_grad():
                self._value = torch.cat([w.detach() for w in weights]).t().contiguous()
            self._key = key
        return self._value


def hooked(module: nn.Module) -> bool:
    """Whether a forward hook or pre-hook is registered on `module`: it must then run its own forward."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state-dict names) with the transposed-weight path for a few rows on a CPU."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.transposed = TransposedWeights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if transposable(x, self.weight):
            y = x @ self.transposed.get([self.weight])  # (..., out)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight, self.bias)


class StackedHeads:
    """Several `Linear` layers reading the same input [B, S, D], as one product on the fast path.

    `__call__(heads, hidden)` -> FloatTensor[B, len(heads), S, out]: the heads' outputs stacked on dim 1. One
    product with the concatenated transposed weights when every head is a plain `Linear` without bias or forward
    hooks (an adapter wrapping a head, a hook on one, autograd or a GPU take the heads one by one).
    """

    def __init__(self) -> None:
        self.transposed = TransposedWeights()

    def __call__(self, heads: Sequence[nn.Module], hidden: torch.Tensor) -> torch.Tensor:
        if all(type(head) is Linear and head.bias is None and not hooked(head) and transposable(hidden, head.weight)
               for head in heads):
            B, S, _ = hidden.shape
            logits = hidden @ self.transposed.get([head.weight for head in heads])  # (B, S, len(heads) * out)
            return logits.view(B, S, len(heads), -1).transpose(1, 2)
        return torch.stack([head(hidden) for head in heads], dim=1)
