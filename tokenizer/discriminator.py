"""The discriminators that train the codec (never part of a saved codec).

- EnCodec's multi-scale STFT discriminator (MS-STFT-D): each scale looks at a complex STFT of the waveform, real
  and imaginary parts as separate input channels, through 2D convolutions that are dilated along time and strided
  along frequency (Défossez et al., 2022, fig. 4).
- HiFi-GAN's multi-period discriminator (MPD): each sub-discriminator folds the waveform into rows of `period`
  samples and convolves along the time axis only, so it judges the sample-level periodic structure (pitch
  harmonics and their phase) that magnitude spectra miss (Kong et al., 2020; Vocos and DAC use it as well).
- `CodecDiscriminator`: both side by side, as one module whose outputs are the concatenated lists.
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
        return _run_all(self.discriminators, x)


class PeriodDiscriminator(nn.Module):
    """One period of HiFi-GAN's MPD.

    Input `FloatTensor[B, C, N]`, right-padded (reflect) to a multiple of `period` and folded to
    `[B, C, N / period, period]`; (5, 1) convolutions with stride 3 along the folded time axis then see only
    samples `period` apart. Widths are `filters × (1, 4, 16, 32, 32)`, capped at `max_filters` (HiFi-GAN: 32 and 1024).
    Returns `(logits [B, 1, T', period], feature maps)`, one feature map per conv layer after its LeakyReLU.
    """

    def __init__(self, period: int, channels: int = 1, filters: int = 32, max_filters: int = 1024,
                 kernel: int = 5, stride: int = 3, negative_slope: float = 0.1):
        super().__init__()
        self.period = period
        self.activation = nn.LeakyReLU(negative_slope)
        widths = [channels] + [min(filters * m, max_filters) for m in (1, 4, 16, 32)]
        layers = [_conv(c_in, c_out, (kernel, 1), stride=(stride, 1)) for c_in, c_out in zip(widths, widths[1:])]
        layers.append(_conv(widths[-1], widths[-1], (kernel, 1)))
        self.convs = nn.ModuleList(layers)
        self.conv_post = _conv(widths[-1], 1, (3, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, n = x.shape
        pad = -n % self.period
        if pad:
            if n <= pad:
                raise ValueError(f"PeriodDiscriminator with period={self.period} needs more than {pad} samples, got {n}")
            x = nn.functional.pad(x, (0, pad), mode="reflect")
        z = x.reshape(b, c, (n + pad) // self.period, self.period)
        features = []
        for conv in self.convs:
            z = self.activation(conv(z))
            features.append(z)
        return self.conv_post(z), features


class MultiPeriodDiscriminator(nn.Module):
    """Several `PeriodDiscriminator`s (HiFi-GAN: periods 2, 3, 5, 7, 11, primes so that they overlap little).

    `forward(x [B, C, N])` returns `(logits, features)` as `MultiScaleSTFTDiscriminator` does, one entry per period.
    """

    def __init__(self, channels: int = 1, filters: int = 32, periods: Sequence[int] = (2, 3, 5, 7, 11)):
        super().__init__()
        if not periods:
            raise ValueError("MultiPeriodDiscriminator needs at least one period, got none")
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels, filters) for p in periods)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        return _run_all(self.discriminators, x)


class CodecDiscriminator(nn.Module):
    """The discriminator `train_codec` uses: the MS-STFT-D and, when `training.disc_periods` lists periods, an MPD.

    `forward(x [B, C, N])` returns `(logits, features)` with the MS-STFT scales first, then the periods; the hinge
    and feature-matching losses average over every entry alike.
    """

    def __init__(self, stft: MultiScaleSTFTDiscriminator, period: MultiPeriodDiscriminator | None = None):
        super().__init__()
        self.stft = stft
        self.period = period

    @classmethod
    def from_config(cls, config: CodecConfig) -> CodecDiscriminator:
        tc = config.training
        period = (MultiPeriodDiscriminator(config.channels, tc.period_disc_filters, tc.disc_periods)
                  if tc.disc_periods else None)
        return cls(MultiScaleSTFTDiscriminator.from_config(config), period)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits, features = self.stft(x)
        if self.period is not None:
            more_logits, more_features = self.period(x)
            logits, features = logits + more_logits, features + more_features
        return logits, features


def _run_all(discriminators: nn.ModuleList, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
    logits, features = [], []
    for disc in discriminators:
        logit, feats = disc(x)
        logits.append(logit)
        features.append(feats)
    return logits, features
