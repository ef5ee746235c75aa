"""EnCodec's multi-scale STFT discriminator (MS-STFT-D), used only to train the codec.

Each scale looks at a complex STFT of the waveform, real and imaginary parts as separate input channels, through
2D convolutions that are dilated along time and strided along frequency (Défossez et al., 2022, fig. 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .config import CodecConfig


def _conv(in_channels: int, out_channels: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
          dilation: tuple[int, int] = (1, 1)) -> nn.Module:
    # "same" padding for odd kernels along both axes; strided axes then shrink by their stride.
    padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))
    return weight_norm(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, dilation=dilation, padding=padding))


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT-D.

    Input `FloatTensor[B, C, N]`; a Hann-windowed STFT of `n_fft` points (hop `n_fft / 4`, normalised, no centre
    padding) gives `[B, 2C, frames, n_fft / 2 + 1]` (time before frequency, so that time dilations apply to dim 2).
    Returns `(logits [B, 1, frames, F'], feature maps)`, one feature map per conv layer after its LeakyReLU.
    """

    def __init__(self, channels: int = 1, filters: int = 32, n_fft: int = 1024, max_filters: int = 1024,
                 dilations: Sequence[int] = (1, 2, 4), kernel: tuple[int, int] = (3, 9), negative_slope: float = 0.2):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.activation = nn.LeakyReLU(negative_slope)
        width = min(filters, max_filters)
        layers = [_conv(2 * channels, width, kernel)]
        for d in dilations:
            layers.append(_conv(width, width, kernel, stride=(1, 2), dilation=(d, 1)))
        layers.append(_conv(width, width, (kernel[0], kernel[0])))
        self.convs = nn.ModuleList(layers)
        self.conv_post = _conv(width, 1, (kernel[0], kernel[0]))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, n = x.shape
        if n < self.n_fft:
            raise ValueError(f"STFTDiscriminator with n_fft={self.n_fft} needs at least {self.n_fft} samples, got {n}")
        # The STFT runs in fp32 even under autocast: half-precision FFTs are unsupported or lossy.
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(x.float().reshape(b * c, n), self.n_fft, hop_length=self.hop_length, window=self.window,
                              center=False, normalized=True, return_complex=True)  # (B * C, freqs, frames)
        z = torch.view_as_real(spec).reshape(b, c, *spec.shape[1:], 2)  # (B, C, freqs, frames, 2)
        z = z.permute(0, 1, 4, 3, 2).reshape(b, 2 * c, spec.shape[2], spec.shape[1])  # (B, 2C, frames, freqs)
        features = []
        for conv in self.convs:
            z = self.activation(conv(z))
            features.append(z)
        return self.conv_post(z), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several `STFTDiscriminator`s at different FFT sizes.

    `forward(x [B, C, N])` returns `(logits, features)`: `logits[k]` is `[B, 1, frames_k, F'_k]` and `features[k]`
    the list of feature maps of scale k. N must be at least the largest FFT size.
    """

    def __init__(self, channels: int = 1, filters: int = 32, n_ffts: Sequence[int] = (1024, 2048, 512)):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(channels, filters, n) for n in n_ffts)

    @classmethod
    def from_config(cls, config: CodecConfig) -> MultiScaleSTFTDiscriminator:
        """Built from `config.channels` and `config.training.disc_filters` / `disc_n_ffts`."""
        return cls(config.channels, config.training.disc_filters, config.training.disc_n_ffts)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits, features = [], []
        for disc in self.discriminators:
            logit, feats = disc(x)
            logits.append(logit)
            features.append(feats)
        return logits, features
