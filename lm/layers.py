"""Linear layers whose CPU inference is fast, in float32 or with int8 weights.

A decoding step multiplies one row per sequence (two with guidance) by every weight of the model, so on a CPU a
step costs about what it takes to read the weights. How a `Linear` multiplies at inference is its `products`, a
small object the model can swap (`AudioLMModel.set_inference_weights`):

- `FloatProducts` (the default): `F.linear` multiplies by the transpose of the stored [out, in] weight, and for a
  handful of rows on a CPU that product runs about 1.45x slower than one with the weight laid out [in, out],
  1.65x with the heads stacked into one product (`benchmarks/step_products.py`, lm_base, one thread). So for at
  most `FEW_ROWS` rows these layers multiply by a transposed copy made on first use and kept until the weight
  changes.
- `Int8Products`: weight-only int8, a quarter of float32's bytes per step: each output row of the weight
  rounded to 255 levels of its own scale (symmetric, per output channel), multiplied by bfloat16 activations
  in torch's int8-weight kernel, the output back in the input's dtype (`benchmarks/lm_precision.py` measures
  its speed and its held-out loss against float32).

Training, autograd and other devices always use `F.linear` on the stored weights; parameters and checkpoint
names are `nn.Linear`'s, so accelerate and peft see ordinary linear layers (peft's adapters wrap the layer and
add their own term).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FEW_ROWS = 16  # above this many rows a matrix product amortises the transpose itself (prefill, training)
INT8_IN_MULTIPLE = 16  # torch's int8-weight CPU kernel reads inputs in blocks of 16: other widths crash it


def _inference_product(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x [..., in] times weight [out, in] may take a cached copy of the weight: on a CPU, without
    autograd, and for a weight with a version counter (an inference tensor has none, so a copy of it could go
    stale unseen)."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and not weight.is_inference()


def transposable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x [..., in] times weight [out, in] takes the transposed-weight path: an inference product
    (`_inference_product`) of at most FEW_ROWS rows in the weight's dtype."""
    return (_inference_product(x, weight) and x.numel() <= FEW_ROWS * weight.shape[1]
            and x.dtype == weight.dtype)


class DerivedWeights:
    """A tensor made from weights [out_i, in] (concatenated along out) by `make`, rebuilt when any of them
    changes: in place (its version counter moves), replaced, moved or cast (its storage, shape or dtype differ)."""

    def __init__(self, make) -> None:
        self._make = make
        self._key: tuple | None = None
        self._value = None

    def get(self, weights: Sequence[torch.Tensor]):
        key = tuple((w.data_ptr(), w._version, w.shape, w.dtype) for w in weights)
        if key != self._key:
            with torch.no_grad():
                self._value = self._make(torch.cat([w.detach() for w in weights]))
            self._key = key
        return self._value


class FloatProducts:
    """The weights as stored; for a few rows, multiplied by a contiguous transposed copy [in, sum(out_i)]."""

    name = "float"

    def __init__(self) -> None:
        self.transposed = DerivedWeights(lambda w: w.t().contiguous())

    def applies(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        return transposable(x, weight)

    def __call__(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        return x @ self.transposed.get(weights)  # (..., sum(out_i))


def int8_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (int8 [out, in], bfloat16 scales [out]): each row rounded to -127..127 times its scale."""
    weight = weight.float()
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    quantized = (weight / scales[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
    return quantized, scales.to(torch.bfloat16)


class Int8Products:
    """Weight-only int8 at inference on a CPU, for any number of rows (see the module docstring)."""

    name = "int8"

    def __init__(self) -> None:
        self.quantized = DerivedWeights(int8_weights)

    def applies(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        return (_inference_product(x, weight) and x.is_floating_point() and weight.is_floating_point()
                and weight.shape[1] % INT8_IN_MULTIPLE == 0)

    def __call__(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        quantized, scales = self.quantized.get(weights)
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(rows, quantized, scales)  # (rows, sum(out_i)) bfloat16
        return y.to(x.dtype).view(*x.shape[:-1], quantized.shape[0])


PRODUCTS = {products.name: products for products in (FloatProducts, Int8Products)}


def int8_kernel_available() -> bool:
    """Whether this torch has the int8-weight CPU kernel that `Int8Products` multiplies with."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def products_for(name: str):
    """A new products object of the kind `name` ('float' or 'int8')."""
    if name not in PRODUCTS:
        raise ValueError(f"inference weights must be one of {sorted(PRODUCTS)}, got {name!r}")
    if name == "int8" and not int8_kernel_available():
        raise ValueError(f"inference weights 'int8' need torch's int8-weight kernel (aten._weight_int8pack_mm), "
                         f"which torch {torch.__version__} lacks; use 'float'")
    return PRODUCTS[name]()


def hooked(module: nn.Module) -> bool:
    """Whether a forward hook or pre-hook is registered on `module`: it must then run its own forward."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state-dict names) whose inference product is its `products`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.products = FloatProducts()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.products.applies(x, self.weight):
            y = self.products(x, [self.weight])  # (..., out)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight, self.bias)


class StackedHeads:
    """Several `Linear` layers reading the same input [B, S, D], as one product on the fast path.

    `__call__(heads, hidden)` -> FloatTensor[B, len(heads), S, out]: the heads' outputs stacked on dim 1. One
    product by `products` with the concatenated weights when every head is a plain `Linear` without bias or
    forward hooks (an adapter wrapping a head, a hook on one, autograd or a GPU take the heads one by one).
    """

    def __init__(self) -> None:
        self.products = FloatProducts()

    def __call__(self, heads: Sequence[nn.Module], hidden: torch.Tensor) -> torch.Tensor:
        if all(type(head) is Linear and head.bias is None and not hooked(head)
               and self.products.applies(hidden, head.weight) for head in heads):
            B, S, _ = hidden.shape
            logits = self.products(hidden, [head.weight for head in heads])  # (B, S, len(heads) * out)
            return logits.view(B, S, len(heads), -1).transpose(1, 2)
        return torch.stack([head(hidden) for head in heads], dim=1)
