"""Losses of codec training: spectral reconstruction, PESQ's perceptual disturbance, hinge adversarial and feature
matching.

Every reconstruction loss takes `(estimate, target)` waveforms `FloatTensor[B, C, N]` of the same shape and returns
a scalar that is 0 when they are equal (exactly, except PESQLoss: ~1e-21, from its clamps). Adversarial losses take
the per-scale outputs of a discriminator (see `tokenizer.discriminator`): a list of logits tensors, and a list (per
scale) of lists of feature maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor, nn

from .errors import AudioInputError
from .extras import import_extra

# DAC's multi-scale mel loss: seven windows, ~6.4 frequency bins per mel band at every scale.
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
STFT_SIZES = (2048, 1024, 512)


def _check_pair(estimate: Tensor, target: Tensor, min_length: int, what: str) -> None:
    if estimate.shape != target.shape or estimate.dim() != 3:
        raise AudioInputError(
            f"{what} expects estimate and target of the same shape [B, C, N], got {tuple(estimate.shape)} "
            f"and {tuple(target.shape)}"
        )
    if target.shape[-1] <= min_length:
        raise AudioInputError(
            f"{what} needs more than {min_length} samples per waveform (its largest window), got {target.shape[-1]}; "
            "train on longer segments or pass smaller windows"
        )


class MultiScaleMelLoss(nn.Module):
    """L1 distance between log-mel spectrograms at several window sizes, summed over scales (as DAC).

    Per scale: magnitude mel spectrogram (Hann window, hop = window / 4), `log10(clamp(mel, eps) ** 2)`, mean L1.
    Inputs: waveforms `FloatTensor[B, C, N]` at `sample_rate` Hz with N > max(windows) / 2. Output: scalar.
    """

    def __init__(
        self,
        sample_rate: int,
        windows: Sequence[int] = MEL_WINDOWS,
        n_mels: Sequence[int] = MEL_BANDS,
        clamp_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(windows) != len(n_mels) or not windows:
            raise ValueError(f"windows {tuple(windows)} and n_mels {tuple(n_mels)} must be non-empty and of equal length")
        self.clamp_eps = clamp_eps
        self.max_window = max(windows)
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4, n_mels=m, power=1.0,
                center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney",
            )
            for w, m in zip(windows, n_mels)
        )

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_pair(estimate, target, self.max_window // 2, "MultiScaleMelLoss")
        estimate, target = estimate.float(), target.float()
        loss = estimate.new_zeros(())
        for mel in self.mels:
            log_est = mel(estimate).clamp(min=self.clamp_eps).pow(2).log10()  # (B, C, n_mels, frames)
            log_tgt = mel(target).clamp(min=self.clamp_eps).pow(2).log10()
            loss = loss + (log_est - log_tgt).abs().mean()
        return loss


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1 at several FFT sizes (Parallel WaveGAN), averaged over sizes.

    Per size n: Hann window of n samples, hop n / 4, scaled so that a bin's magnitude is on the scale of the
    signal's RMS (white noise of RMS s gives |S| ~ s). Spectral convergence is `||S_t - S_e||_F / ||S_t||_F` per
    waveform, averaged over batch and channels, with `||S_t||` counted as at least that of `silence_rms` white
    noise: digital silence in the data would otherwise divide by ~0. Magnitudes are floored at
    `sqrt(power_floor)` (~ -70 dBFS) before the log.
    Inputs: waveforms `FloatTensor[B, C, N]` with N > max(n_ffts) / 2. Output: scalar.
    """

    def __init__(self, n_ffts: Sequence[int] = STFT_SIZES, power_floor: float = 1e-7,
                 silence_rms: float = 1e-3) -> None:
        super().__init__()
        if not n_ffts:
            raise ValueError("n_ffts must list at least one FFT size")
        self.n_ffts = tuple(n_ffts)
        self.power_floor = power_floor
        self.silence_rms = silence_rms
        for n in self.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _magnitude(self, x: Tensor, n_fft: int) -> Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length=n_fft // 4, window=window,
                          center=True, pad_mode="reflect", return_complex=True)
        # sqrt of a floored power, not |z|: the gradient of |z| is undefined at z = 0 (digital silence).
        power = torch.view_as_real(spec).pow(2).sum(-1) / window.pow(2).sum()
        return power.clamp(min=self.power_floor).sqrt()  # (B * C, freqs, frames)

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_pair(estimate, target, max(self.n_ffts) // 2, "MultiResolutionSTFTLoss")
        estimate, target = estimate.float(), target.float()
        loss = estimate.new_zeros(())
        for n in self.n_ffts:
            mag_est, mag_tgt = self._magnitude(estimate, n), self._magnitude(target, n)
            floor = self.silence_rms * mag_tgt[0].numel() ** 0.5
            convergence = (mag_tgt - mag_est).flatten(1).norm(dim=1) / mag_tgt.flatten(1).norm(dim=1).clamp(min=floor)
            log_mag = (mag_tgt.log() - mag_est.log()).abs().mean()
            loss = loss + convergence.mean() + log_mag
        return loss / len(self.n_ffts)


class CompressedComplexSTFTLoss(nn.Module):
    """Phase-aware spectral loss: distance between power-law compressed complex spectra `|S|^c e^{i angle(S)}`
    (Braun & Tashev 2021, the speech-enhancement loss that best predicted PESQ), at several FFT sizes.

    Mel and magnitude losses leave the phase free, and a decoder trained on them alone produces frames whose phases
    do not join up, which PESQ hears. Per size n (Hann window, hop n / 4, scaled as `MultiResolutionSTFTLoss`):
    `||C_t - C_e||_F / ||C_t||_F` per waveform with `C = S (|S|^2 + floor)^((c - 1) / 2)`, the target's norm counted
    as at least that of `silence_rms` white noise; averaged over batch, channels and sizes. The `floor` keeps the
    compression's gradient finite at silent bins.
    Inputs: waveforms `FloatTensor[B, C, N]` with N > max(n_ffts) / 2. Output: scalar, 0 when equal.
    """

    def __init__(self, n_ffts: Sequence[int] = (1024, 512, 256), compression: float = 0.3, power_floor: float = 1e-7,
                 silence_rms: float = 1e-3) -> None:
        super().__init__()
        if not n_ffts or not 0.0 < compression <= 1.0:
            raise ValueError(f"expected FFT sizes and a compression in (0, 1], got {tuple(n_ffts)} and {compression}")
        self.n_ffts = tuple(n_ffts)
        self.compression = compression
        self.power_floor = power_floor
        self.silence_rms = silence_rms
        for n in self.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _compressed(self, x: Tensor, n_fft: int) -> Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length=n_fft // 4, window=window,
                          center=True, pad_mode="reflect", return_complex=True)
        spec = torch.view_as_real(spec) / window.pow(2).sum().sqrt()  # (B * C, freqs, frames, 2)
        power = spec.pow(2).sum(-1, keepdim=True) + self.power_floor
        return spec * power.pow((self.compression - 1) / 2)

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_pair(estimate, target, max(self.n_ffts) // 2, "CompressedComplexSTFTLoss")
        estimate, target = estimate.float(), target.float()
        loss = estimate.new_zeros(())
        for n in self.n_ffts:
            est, tgt = self._compressed(estimate, n).flatten(1), self._compressed(target, n).flatten(1)
            floor = (self.silence_rms ** 2 + self.power_floor) ** (self.compression / 2) * (tgt.shape[1] / 2) ** 0.5
            loss = loss + ((tgt - est).norm(dim=1) / tgt.norm(dim=1).clamp(min=floor)).mean()
        return loss / len(self.n_ffts)


class PhaseDerivativeLoss(CompressedComplexSTFTLoss):
    """Phase-derivative loss: how far the estimate's instantaneous frequency and group delay are from the target's.

    A decoder that predicts each frame's phase freely (Vocos's inverse-STFT head) learns the magnitudes long before
    the phases, and frames whose phases do not join up are what PESQ hears most. The absolute phase of a frame is
    not what matters (and is hardly in a few kbps of codes); its differences to the neighbouring frame (the
    instantaneous frequency: which exact frequency a harmonic has) and to the neighbouring bin (the group delay:
    where in the frame a pitch pulse falls) are, as in APNet's instantaneous-frequency and group-delay losses
    (Ai & Ling 2023). Per FFT size (power-law compressed spectra `C`, as `CompressedComplexSTFTLoss`) and per
    direction d (next frame, next bin), with `z = C[x + d] conj(C[x])` the phase step and its magnitude as weight:

        1 - sum_x Re(z_est conj(z_tgt)) / sum_x |z_est| |z_tgt|

    a weighted mean of `1 - cos(step error)`: 0 when the phase steps agree wherever both have energy, 1 for
    unrelated phases, blind to a constant phase offset, 0 for a waveform silent throughout. It stays smooth where a
    spectrum is near 0 (no angle is taken). Averaged over batch, channels, both directions and the sizes.
    Inputs: waveforms `FloatTensor[B, C, N]` with N > max(n_ffts) / 2. Output: scalar in [0, 2].
    """

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_pair(estimate, target, max(self.n_ffts) // 2, "PhaseDerivativeLoss")
        estimate, target = estimate.float(), target.float()
        loss = estimate.new_zeros(())
        for n in self.n_ffts:
            est = torch.view_as_complex(self._compressed(estimate, n).contiguous())  # (B * C, freqs, frames)
            tgt = torch.view_as_complex(self._compressed(target, n).contiguous())
            for dim in (2, 1):  # next frame (instantaneous frequency), next bin (group delay)
                z_est = est.narrow(dim, 1, est.shape[dim] - 1) * est.narrow(dim, 0, est.shape[dim] - 1).conj()
                z_tgt = tgt.narrow(dim, 1, tgt.shape[dim] - 1) * tgt.narrow(dim, 0, tgt.shape[dim] - 1).conj()
                agree = (z_est * z_tgt.conj()).real.flatten(1).sum(1)
                weight = (z_est.abs() * z_tgt.abs()).flatten(1).sum(1)
                # Nothing to compare where either is silent throughout (a crop of silence): 0 there.
                loss = loss + torch.where(weight > 0, 1 - agree / weight.clamp(min=1e-12), 0.0).mean()
        return loss / (2 * len(self.n_ffts))


class PESQLoss(nn.Module):
    """A differentiable stand-in for PESQ: the disturbance between the perceived loudness of estimate and target.

    PESQ (ITU-T P.862) compares the two signals' loudness per Bark band and 32 ms frame at 16 kHz, after aligning
    their levels and equalising their long-term spectra; added loudness (noise in a spectral valley, between the
    harmonics of a low voice) weighs more than missing loudness. Mel and STFT distances weigh every bin alike and
    miss that asymmetry. This is torch-pesq's model of it (Schmidt et al.; P.862 without its time alignment, which
    a codec's output does not need): `0.1 d_sym + 0.0309 d_asym`, the two disturbances PESQ maps to its score, so
    lower is better and 0 means equal loudness everywhere.

    Channels are averaged first (PESQ is mono). Crops whose target is nearly silent (RMS below `min_rms`) have no
    speech to judge, and PESQ's level alignment divides by their power: they count 0. Inputs: waveforms
    `FloatTensor[B, C, N]` at `sample_rate` Hz, N above a quarter of a second. Output: scalar, the mean over the
    batch (silent crops count 0).
    """

    def __init__(self, sample_rate: int, min_rms: float = 1e-3) -> None:
        super().__init__()
        # imported here: only training with `perceptual_weight` > 0 needs it
        PesqLoss = import_extra("torch_pesq", "eval", "training.perceptual_weight (the PESQ loss)").PesqLoss

        self.sample_rate = sample_rate
        self.min_rms = min_rms
        # In float64: PESQ pools each 320 ms window's disturbance as (mean d^6)^(1/6), and in float32 d^6 underflows
        # to 0 wherever a window is quiet throughout (a pause), which makes that root's gradient NaN.
        self.pesq = PesqLoss(1.0, sample_rate=sample_rate).double()

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_pair(estimate, target, self.sample_rate // 4, "PESQLoss")
        estimate, target = estimate.double().mean(1), target.double().mean(1)  # (B, N)
        keep = target.pow(2).mean(1).sqrt() > self.min_rms
        if not bool(keep.any()):
            return (estimate * 0).sum().float()  # still part of the graph, so every process calls backward alike
        loss = self.pesq(target[keep], estimate[keep])
        return (loss.sum() / estimate.shape[0]).float()


def discriminator_hinge_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
    """Hinge loss of the discriminator: mean over scales of `mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat)))`.

    `real_logits[k]`, `fake_logits[k]`: logits of scale k, any shape (the MS-STFT-D gives `[B, 1, frames, freqs]`).
    Pass logits of detached reconstructions so that only the discriminator gets gradients.
    """
    if len(real_logits) != len(fake_logits) or not real_logits:
        raise ValueError(f"expected the same non-zero number of scales, got {len(real_logits)} and {len(fake_logits)}")
    loss = sum(torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))
    return loss / len(real_logits)


def generator_hinge_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """Adversarial loss of the generator (EnCodec): mean over scales of `mean(relu(1 - D(x_hat)))`."""
    if not fake_logits:
        raise ValueError("expected the logits of at least one scale")
    return sum(torch.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]], eps: float = 1e-8
) -> Tensor:
    """Relative feature matching (EnCodec eq. 3): mean over scales and layers of `L1(f_hat, f) / mean(|f|)`.

    `real_features[k][l]`: feature map l of scale k for the real audio (detached here: it is the target);
    `fake_features[k][l]`: the same for the reconstruction, any shape equal to the real one's.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"expected the same non-zero number of scales, got {len(real_features)} and {len(fake_features)}")
    terms = []
    for reals, fakes in zip(real_features, fake_features):
        if len(reals) != len(fakes):
            raise ValueError(f"expected the same number of feature maps per scale, got {len(reals)} and {len(fakes)}")
        for real, fake in zip(reals, fakes):
            real = real.detach()
            terms.append((fake - real).abs().mean() / (real.abs().mean() + eps))
    return torch.stack(terms).mean()
