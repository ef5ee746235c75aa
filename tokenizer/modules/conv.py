"""Convolutions whose output length is exactly input length / stride (or × stride when transposed).

Padding is done by hand instead of by `nn.Conv1d(padding=...)` so that causal models pad only on the left
(a frame never depends on future samples) and non-causal models split the padding between both sides.
Every layer can report how far it looks back/ahead, which `RVQCodec` uses to encode long inputs in
chunks that give exactly the codes of one pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _apply_norm(module: nn.Module, norm: str) -> nn.Module:
    return weight_norm(module) if norm == "weight_norm" else module


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last axis of `x` [B, C, L]; reflect padding of a signal shorter than the pad pads zeros first."""
    if mode == "reflect":
        length = x.shape[-1]
        max_pad = max(left, right)
        extra = max(0, max_pad - length + 1)
        if extra:
            x = F.pad(x, (0, extra))
        x = F.pad(x, (left, right), mode="reflect")
        return x[..., : x.shape[-1] - extra]
    return F.pad(x, (left, right), mode="constant", value=0.0)


class Conv1d(nn.Module):
    """Conv1d mapping L samples to L / stride outputs (L must be a multiple of stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, norm: str = "weight_norm"):
        super().__init__()
        self.conv = _apply_norm(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation), norm)
        self.causal = causal
        self.stride = stride
        effective_kernel = (kernel_size - 1) * dilation + 1
        total = effective_kernel - stride
        self.pad_right = 0 if causal else total // 2
        self.pad_left = total - self.pad_right
        self.pad_mode = "constant" if causal else "reflect"
        self.reach = effective_kernel - 1  # input steps this layer looks across

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L) -> (B, C_out, L / stride)
        return self.conv(pad1d(x, self.pad_left, self.pad_right, self.pad_mode))


class ConvTranspose1d(nn.Module):
    """ConvTranspose1d mapping L inputs to exactly L * stride outputs."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 causal: bool = False, norm: str = "weight_norm"):
        super().__init__()
        self.conv = _apply_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride), norm)
        self.stride = stride
        total = kernel_size - stride
        # Causal: trim only the right, so output sample t never depends on inputs after t / stride.
        self.trim_right = total if causal else total // 2
        self.trim_left = total - self.trim_right
        self.reach = math.ceil(kernel_size / stride) - 1  # input steps one output depends on, minus one

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L) -> (B, C_out, L * stride)
        y = self.conv(x)
        return y[..., self.trim_left: y.shape[-1] - self.trim_right]


def receptive_field(module: nn.Module, step: float = 1.0) -> float:
    """How many input steps (of size `step`) the outputs of `module` depend on, summed over its convolutions.

    Walks the convolutions in registration order, which is forward order in this package's modules.
    The strided convolutions change the step size of everything after them. Used as the context each
    chunk of a chunked encode/decode needs on each side.
    """
    reach = 0.0
    for layer in module.modules():
        if isinstance(layer, Conv1d):
            reach += layer.reach * step
            step *= layer.stride
        elif isinstance(layer, ConvTranspose1d):
            reach += layer.reach * step
            step /= layer.stride
    return reach
