"""SEANet encoder and mirrored decoder (EnCodec's architecture), with ELU or DAC's Snake activation."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import CodecConfig
from .conv import Conv1d, ConvTranspose1d, receptive_field


class Snake(nn.Module):
    """x + sin²(αx) / α with a learned α per channel (DAC): a periodic inductive bias for audio."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def activation(name: str, channels: int) -> nn.Module:
    return Snake(channels) if name == "snake" else nn.ELU()


class ResidualUnit(nn.Module):
    """act → dilated conv (dim → dim / compress) → act → 1×1 conv back to dim, plus the identity."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int, config: CodecConfig):
        super().__init__()
        hidden = max(1, dim // compress)
        self.block = nn.Sequential(
            activation(config.activation, dim),
            Conv1d(dim, hidden, kernel_size, dilation=dilation, causal=config.causal, norm=config.norm),
            activation(config.activation, hidden),
            Conv1d(hidden, dim, 1, causal=config.causal, norm=config.norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class LSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection; takes and returns (B, C, T)."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(2, 0, 1)  # nn.LSTM wants (T, B, C)
        y, _ = self.lstm(y)
        return y.permute(1, 2, 0) + x


def _residual_units(dim: int, config: CodecConfig) -> list[nn.Module]:
    return [
        ResidualUnit(dim, config.residual_kernel_size, config.dilation_base ** j, config.compress, config)
        for j in range(config.n_residual_layers)
    ]


class SEANetEncoder(nn.Module):
    """Waveform (B, channels, N) -> latent (B, dimension, N / hop_length)."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c = config
        layers: list[nn.Module] = [Conv1d(c.channels, c.n_filters, c.kernel_size, causal=c.causal, norm=c.norm)]
        dim = c.n_filters
        for stride in c.strides:
            layers += _residual_units(dim, c)
            layers += [
                activation(c.activation, dim),
                Conv1d(dim, dim * 2, 2 * stride, stride=stride, causal=c.causal, norm=c.norm),
            ]
            dim *= 2
        if c.lstm_layers:
            layers.append(LSTM(dim, c.lstm_layers))
        layers += [
            activation(c.activation, dim),
            Conv1d(dim, c.dimension, c.last_kernel_size, causal=c.causal, norm=c.norm),
        ]
        self.model = nn.Sequential(*layers)
        self.context_frames = math.ceil(receptive_field(self) / c.hop_length)  # frames of input seen on each side

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)


class SEANetDecoder(nn.Module):
    """Latent (B, dimension, T) -> waveform (B, channels, T * hop_length), the encoder's mirror image."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c = config
        dim = c.n_filters * 2 ** len(c.strides)
        layers: list[nn.Module] = [Conv1d(c.dimension, dim, c.kernel_size, causal=c.causal, norm=c.norm)]
        if c.lstm_layers:
            layers.append(LSTM(dim, c.lstm_layers))
        for stride in reversed(c.strides):
            layers += [
                activation(c.activation, dim),
                ConvTranspose1d(dim, dim // 2, 2 * stride, stride, causal=c.causal, norm=c.norm),
            ]
            dim //= 2
            layers += _residual_units(dim, c)
        layers += [
            activation(c.activation, dim),
            Conv1d(dim, c.channels, c.last_kernel_size, causal=c.causal, norm=c.norm),
        ]
        self.model = nn.Sequential(*layers)
        self.context_frames = math.ceil(receptive_field(self))  # frames of codes seen on each side

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model(latent)
