"""Properties of the training losses and of the MS-STFT discriminator."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from pesq import pesq

from tokenizer import AudioInputError, CodecConfig
from tokenizer.discriminator import CodecDiscriminator, MultiPeriodDiscriminator, MultiScaleSTFTDiscriminator
from tokenizer.losses import (CompressedComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, PESQLoss,
                              PhaseDerivativeLoss, discriminator_hinge_loss, feature_matching_loss,
                              generator_hinge_loss)

SR = 16000


def _clip(batch: int = 2, channels: int = 1, seconds: float = 0.25, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with a noise floor, (batch, channels, N): energy at every frequency, like real audio."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 150 + 100 * torch.rand(batch, channels, 1, generator=g)
    wav = sum((0.3 / k) * torch.sin(2 * math.pi * k * f0 * t) for k in range(1, 12))
    return wav + 0.01 * torch.randn(batch, channels, t.numel(), generator=g)


@pytest.fixture(scope="module")
def spectral_losses():
    return {"mel": MultiScaleMelLoss(SR), "stft": MultiResolutionSTFTLoss(), "complex": CompressedComplexSTFTLoss(),
            "phase": PhaseDerivativeLoss()}


@pytest.mark.parametrize("name", ["mel", "stft", "complex", "phase"])
def test_reconstruction_loss_is_zero_for_identical_inputs(spectral_losses, name):
    target = _clip()
    tolerance = 1e-6 if name == "phase" else 0  # |z|^2 against Re(z conj z): equal up to rounding
    assert spectral_losses[name](target.clone(), target).item() == pytest.approx(0.0, abs=tolerance)
    silence = torch.zeros(1, 1, 4000)
    assert spectral_losses[name](silence, silence.clone()).item() == 0.0


@pytest.mark.parametrize("name", ["mel", "stft", "complex", "phase"])
def test_reconstruction_loss_falls_as_the_estimate_approaches_the_target(spectral_losses, name):
    target = _clip(channels=2)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    other = _clip(channels=2, seed=7)
    losses = [spectral_losses[name](target + a * (other - target) + 0.1 * a * noise, target).item()
              for a in (1.0, 0.5, 0.2, 0.05, 0.01)]
    assert all(x > 0 for x in losses)
    assert all(a > b for a, b in zip(losses, losses[1:])), losses


@pytest.mark.parametrize("name", ["mel", "stft", "complex", "phase"])
def test_reconstruction_loss_gradients_are_finite_even_on_digital_silence(spectral_losses, name):
    target = _clip()
    estimate = torch.zeros_like(target, requires_grad=True)  # |STFT| = 0 everywhere: the non-smooth point of |z|
    spectral_losses[name](estimate, target).backward()
    assert torch.isfinite(estimate.grad).all()  # zero (below the floors), but never NaN
    for start in (1e-3 * _clip(seed=3), 0.5 * target):
        estimate = start.requires_grad_()
        spectral_losses[name](estimate, target).backward()
        assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


def test_stft_loss_on_a_silent_target_is_large_but_bounded(spectral_losses):
    """Digital silence in the data: spectral convergence is measured against a -60 dBFS floor, not ~0."""
    noise = 0.1 * torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(0))  # -20 dBFS
    loss = spectral_losses["stft"](noise, torch.zeros_like(noise)).item()
    assert 50 < loss < 300  # ~ 0.1 / 1e-3 from the convergence term; ~1e5 without the floor
    assert loss > 10 * spectral_losses["stft"](noise, noise.roll(1000, -1)).item()


def test_complex_loss_hears_the_phase_that_magnitude_losses_ignore(spectral_losses):
    target = _clip()
    flipped = -target  # the same magnitudes everywhere, every phase turned by pi
    assert spectral_losses["stft"](flipped, target).item() < 1e-4
    assert spectral_losses["complex"](flipped, target).item() == pytest.approx(2.0, abs=1e-4)
    assert spectral_losses["complex"](torch.zeros_like(target), target).item() == pytest.approx(1.0, abs=1e-3)
    shifts = [spectral_losses["complex"](target.roll(k, -1), target).item() for k in (1, 4, 16)]
    assert 0 < shifts[0] < shifts[1] < shifts[2], shifts


def test_phase_derivative_loss_hears_frequency_and_timing_not_a_constant_phase(spectral_losses):
    target = _clip()
    phase = spectral_losses["phase"]
    assert phase(-target, target).item() == pytest.approx(0.0, abs=1e-6)  # every phase turned by pi: same steps
    t = torch.arange(SR) / SR
    tone = lambda f, offset=0.0: torch.sin(2 * math.pi * f * t + offset)[None, None]  # noqa: E731
    assert phase(tone(200, 1.0), tone(200)).item() < 0.02  # a phase offset: hardly anything (the edges)
    detuned = [phase(tone(200 + df), tone(200)).item() for df in (4, 16)]
    assert 0.02 < detuned[0] < detuned[1], detuned  # instantaneous frequency
    shifted = [phase(target.roll(k, -1), target).item() for k in (1, 4, 16)]
    assert 0 < shifted[0] < shifted[1] < shifted[2], shifted  # group delay
    assert 0.5 < phase(0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2)), target).item() < 1.5


def test_reconstruction_losses_reject_mismatched_or_too_short_inputs(spectral_losses):
    with pytest.raises(AudioInputError, match="same shape"):
        spectral_losses["mel"](torch.zeros(1, 1, 4000), torch.zeros(1, 1, 3999))
    with pytest.raises(AudioInputError, match="more than 1024 samples"):
        spectral_losses["stft"](torch.zeros(1, 1, 1000), torch.zeros(1, 1, 1000))


def _speechlike(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A low voice's pulse train through two formants, in syllables with pauses: (1, 1, N) at SR."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    pulses = torch.zeros(n)
    pulses[:: SR // 100] = 1.0  # 100 Hz: harmonics 100 Hz apart, deep valleys between them
    t = torch.arange(n) / SR
    wav = torch.zeros(n)
    for formant, bandwidth in ((500.0, 80.0), (1500.0, 120.0)):
        k = torch.arange(400) / SR
        ring = torch.exp(-math.pi * bandwidth * k) * torch.sin(2 * math.pi * formant * k)
        wav = wav + torch.nn.functional.conv1d(pulses[None, None], ring.flip(0)[None, None], padding=399)[0, 0, :n]
    envelope = torch.sin(2 * math.pi * 2 * t).clamp(min=0)  # syllables and pauses
    wav = wav * envelope + 1e-4 * torch.randn(n, generator=g)
    return (0.3 * wav / wav.abs().max())[None, None]


def test_pesq_loss_ranks_degradations_as_pesq_does():
    """Kinds of damage PESQ weighs very differently (a level change, lost treble, added noise, and the noisy
    signal as the reference) come out in the real PESQ's order, reversed: lower loss, higher score."""
    loss = PESQLoss(SR)
    target = _speechlike()
    assert loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1)) * target.abs().max()
    pairs = [(0.5 * target, target),  # level: PESQ aligns it away
             (torchaudio.functional.lowpass_biquad(target, SR, 4000.0), target),
             (torchaudio.functional.lowpass_biquad(target, SR, 2000.0), target),
             (target + 0.01 * noise, target),
             (target + 0.03 * noise, target),
             (target, target + 0.03 * noise)]  # the noise is missing, not added: PESQ scores it lower still
    losses = [loss(estimate, reference).item() for estimate, reference in pairs]
    scores = [pesq(SR, reference[0, 0].numpy(), estimate[0, 0].numpy(), "wb") for estimate, reference in pairs]
    assert sorted(range(len(pairs)), key=losses.__getitem__) == list(range(len(pairs))), losses
    assert sorted(range(len(pairs)), key=lambda i: -scores[i]) == list(range(len(pairs))), scores


def test_pesq_loss_counts_silent_crops_as_zero_and_keeps_gradients_finite_through_pauses():
    loss = PESQLoss(SR)
    target = torch.cat([_speechlike(), torch.zeros(1, 1, SR)])  # the second crop is digital silence
    estimate = (target + 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2)))
    estimate.requires_grad_()
    value = loss(estimate, target)
    assert value.item() == pytest.approx(loss(estimate[:1].detach(), target[:1]).item() / 2, rel=1e-5)
    value.backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad[0].abs().sum() > 0
    assert estimate.grad[1].abs().sum() == 0
    # A pause longer than PESQ's 320 ms pooling window: its disturbance is ~0 there, which float32 underflows.
    paused = _speechlike()
    paused[..., 6000:] = 0.0
    estimate = (paused + 1e-3 * torch.randn(paused.shape, generator=torch.Generator().manual_seed(3)) * (paused != 0))
    estimate.requires_grad_()
    loss(estimate, paused).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    silent = torch.zeros(2, 1, SR, requires_grad=True)
    loss(silent, torch.zeros(2, 1, SR)).backward()  # nothing to judge: 0, and still a graph
    assert torch.equal(silent.grad, torch.zeros_like(silent))
    with pytest.raises(AudioInputError, match="more than 4000 samples"):
        loss(torch.zeros(1, 1, 4000), torch.zeros(1, 1, 4000))


def test_hinge_losses_have_their_textbook_values_and_gradients():
    far_real, far_fake = [torch.full((2, 1, 3, 4), 2.0)], [torch.full((2, 1, 3, 4), -2.0)]
    assert discriminator_hinge_loss(far_real, far_fake).item() == 0.0  # both beyond the margin
    zeros = [torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 5, 2)]
    assert discriminator_hinge_loss(zeros, zeros).item() == pytest.approx(2.0)
    assert generator_hinge_loss([torch.full((2, 1, 3, 4), 3.0)]).item() == 0.0
    fake = [torch.full((2, 1, 3, 4), -0.5, requires_grad=True)]
    loss = generator_hinge_loss(fake)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert (fake[0].grad < 0).all()  # raising the fake logits lowers the generator's loss


def test_feature_matching_is_relative_zero_at_equality_and_only_trains_the_fake_side():
    g = torch.Generator().manual_seed(0)
    real = [[torch.randn(2, 4, 5, 6, generator=g) for _ in range(3)] for _ in range(2)]
    fake = [[(r + 0.1 * torch.randn(r.shape, generator=g)).requires_grad_() for r in rs] for rs in real]
    for rs in real:
        for r in rs:
            r.requires_grad_()
    assert feature_matching_loss(real, [[r.detach().clone() for r in rs] for rs in real]).item() == 0.0
    loss = feature_matching_loss(real, fake)
    assert loss.item() > 0
    scaled = feature_matching_loss([[10 * r for r in rs] for rs in real], [[10 * f for f in fs] for fs in fake])
    assert scaled.item() == pytest.approx(loss.item(), rel=1e-5)  # normalised by the real features' scale
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for fs in fake for f in fs)
    assert all(r.grad is None for rs in real for r in rs)


@pytest.mark.parametrize("channels", [1, 2])
def test_discriminator_shapes_per_scale_and_gradient_to_the_input(channels):
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(channels=channels, filters=4, n_ffts=(256, 128))
    x = _clip(batch=3, channels=channels, seconds=0.1).requires_grad_()  # 1600 samples
    logits, features = disc(x)
    assert len(logits) == len(features) == 2
    for n_fft, logit, feats in zip((256, 128), logits, features):
        frames = (x.shape[-1] - n_fft) // (n_fft // 4) + 1
        freqs = n_fft // 2 + 1
        assert len(feats) == 5  # first conv, three dilated convs, last conv
        assert feats[0].shape == (3, 4, frames, freqs)
        assert logit.shape[:3] == (3, 1, frames)
        assert logit.shape[3] == math.ceil(freqs / 8)  # three stride-2 convs along frequency
    sum(logit.mean() for logit in logits).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_discriminator_from_config_and_items_are_independent():
    config = CodecConfig(sample_rate=SR, training={"disc_filters": 4, "disc_n_ffts": [512, 256, 128]})
    disc = MultiScaleSTFTDiscriminator.from_config(config).eval()
    assert [d.n_fft for d in disc.discriminators] == [512, 256, 128]
    x = _clip(batch=2, seconds=0.1)
    logits, _ = disc(x)
    single, _ = disc(x[1:])
    for batched, alone in zip(logits, single):
        torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 512 samples"):
        disc(torch.zeros(1, 1, 500))


@pytest.mark.parametrize("channels", [1, 2])
def test_period_discriminator_shapes_and_gradient_to_the_input(channels):
    torch.manual_seed(0)
    disc = MultiPeriodDiscriminator(channels=channels, filters=2, periods=(2, 3, 5))
    x = _clip(batch=3, channels=channels, seconds=0.1).requires_grad_()  # 1600 samples
    logits, features = disc(x)
    assert len(logits) == len(features) == 3
    for period, logit, feats in zip((2, 3, 5), logits, features):
        rows = math.ceil(x.shape[-1] / period)
        assert len(feats) == 5  # four stride-3 convs, one more
        assert feats[0].shape == (3, 2, math.ceil(rows / 3), period)
        assert [f.shape[1] for f in feats] == [2, 8, 32, 64, 64]
        assert logit.shape[:2] == (3, 1) and logit.shape[3] == period
    sum(logit.mean() for logit in logits).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_period_discriminator_sees_each_phase_of_its_period_apart():
    # A column of the folded input holds samples period apart: changing one sample changes one column's logits.
    torch.manual_seed(0)
    disc = MultiPeriodDiscriminator(filters=2, periods=(4,)).eval()
    x = _clip(batch=1, seconds=0.1)
    changed = x.clone()
    changed[..., 801] += 1.0  # 801 = 4 * 200 + 1: column 1
    (before,), _ = disc(x)
    (after,), _ = disc(changed)
    moved = (before - after).abs().amax(dim=(0, 1, 2))
    assert moved[1] > 0 and moved[[0, 2, 3]].max() == 0


def test_codec_discriminator_adds_the_periods_after_the_stft_scales():
    config = CodecConfig(sample_rate=SR, training={"disc_filters": 4, "disc_n_ffts": [256, 128],
                                                   "disc_periods": [2, 3], "period_disc_filters": 2})
    disc = CodecDiscriminator.from_config(config).eval()
    x = _clip(batch=2, seconds=0.1)
    logits, features = disc(x)
    assert len(logits) == len(features) == 4
    stft_logits, _ = disc.stft(x)
    period_logits, _ = disc.period(x)
    for got, want in zip(logits, stft_logits + period_logits):
        torch.testing.assert_close(got, want)
    single, _ = disc(x[1:])
    for batched, alone in zip(logits, single):
        torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-6)
    assert CodecDiscriminator.from_config(CodecConfig(sample_rate=SR)).period is None  # no periods: MS-STFT only
    with pytest.raises(ValueError, match="disc_periods"):
        CodecConfig(sample_rate=SR, training={"disc_periods": [2, 2]})
