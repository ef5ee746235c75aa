"""YIN and the harmonic source behind pitch-phase decoders, and what such a decoder keeps: a held pitch."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.evaluation.metrics import harmonic_energy_fraction, harmonic_tone
from tokenizer import ConfigError, RVQCodec
from tokenizer.config import EdgePhaseConfig, HarmonicSourcePhaseConfig
from tokenizer.pitch import PITCH_BINS, f0_from_logits, harmonic_source, pitch_losses, yin

from .conftest import tiny_config

SR, HOP = 24000, 320


@pytest.mark.parametrize("f0", [60.0, 97.0, 130.0, 220.0, 347.0, 480.0])
def test_yin_finds_the_pitch_of_a_harmonic_tone(f0):
    found, voiced = yin(harmonic_tone(f0, SR, 1.0)[None], SR, HOP)
    assert found.shape == voiced.shape == (1, 75)
    inner = slice(5, -5)
    assert bool(voiced[0, inner].all())
    assert (found[0, inner] / f0 - 1).abs().max() < 0.002  # within 3.5 cents


def test_yin_calls_noise_and_silence_unvoiced_and_checks_its_input():
    torch.manual_seed(0)
    assert not bool(yin(0.1 * torch.randn(2, SR), SR, HOP)[1].any())
    assert not bool(yin(torch.zeros(1, SR), SR, HOP)[1].any())
    f0, voiced = yin(torch.zeros(3, HOP - 1), SR, HOP)  # shorter than a frame: no frames
    assert f0.shape == voiced.shape == (3, 0)
    with pytest.raises(ValueError, match=r"\(M, N\)"):
        yin(torch.zeros(SR), SR, HOP)
    with pytest.raises(ValueError, match="fmin"):
        yin(torch.zeros(1, SR), SR, HOP, fmin=400.0, fmax=100.0)


def test_the_harmonic_source_accumulates_phase_and_can_be_anchored_anywhere():
    f0 = torch.full((1, 30), 150.0)  # 160 samples a period at 24 kHz
    source, phase = harmonic_source(f0, HOP, SR, 6000.0)
    assert source.shape == (1, 30 * HOP) and phase.shape == (1, 31) and phase.dtype == torch.float64
    step = 2 * math.pi * 150.0 * HOP / SR
    assert torch.allclose(phase[0], torch.arange(31, dtype=torch.float64) * step)
    assert torch.allclose(source[0, 160:], source[0, :-160], atol=1e-4)  # periodic at 1 / f0
    assert source.dtype == torch.float64 and source[0, 0].item() == pytest.approx(39.0)  # 39 partials < 6 kHz at phase 0
    # The closed form is the sum of the partials, each counted while it stays below max_hz.
    partials = sum(torch.cos(h * 2 * math.pi * 150.0 * torch.arange(30 * HOP, dtype=torch.float64) / SR) for h in range(1, 40))
    assert torch.allclose(source[0], partials, atol=1e-6)
    # Anchoring at frame 12 shifts the whole phase track so that it passes through the anchor there.
    gliding = torch.linspace(90.0, 300.0, 30)[None]
    _, free = harmonic_source(gliding, HOP, SR, 6000.0)
    _, anchored = harmonic_source(gliding, HOP, SR, 6000.0, anchor_frame=12,
                                      anchor_phase=torch.tensor([1.25], dtype=torch.float64))
    assert anchored[0, 12].item() == pytest.approx(1.25)
    assert torch.allclose(anchored - free, (1.25 - free[0, 12]).expand_as(free))
    # A span of the track with a frame of context before frame 10, anchored there where the whole track stands,
    # is the whole source from frame 10 on (chunked decoding); without that context f0 is held, not interpolated,
    # over the first half frame and the phase drifts from there.
    whole, whole_phase = harmonic_source(gliding, HOP, SR, 6000.0)
    part, part_phase = harmonic_source(gliding[:, 9:], HOP, SR, 6000.0, 1, whole_phase[:, 10])
    assert torch.allclose(part[:, HOP:], whole[:, 10 * HOP:], atol=1e-3)
    assert torch.allclose(part_phase[:, 1:], whole_phase[:, 10:])
    bare, _ = harmonic_source(gliding[:, 10:], HOP, SR, 6000.0, 0, whole_phase[:, 10])
    assert not torch.allclose(bare, whole[:, 10 * HOP:], atol=1e-3)
    with pytest.raises(ValueError, match="anchor_frame"):
        harmonic_source(gliding, HOP, SR, 6000.0, anchor_frame=31)


def test_f0_classes_decode_finer_than_their_spacing_and_never_between_octaves():
    lo, hi = math.log(50.0), math.log(500.0)
    position = lambda hz: (math.log(hz) - lo) / (hi - lo) * (PITCH_BINS - 1)
    classes = torch.arange(PITCH_BINS, dtype=torch.float32)
    for hz in (55.0, 123.4, 220.0, 471.0):
        logits = -0.5 * (classes - position(hz)) ** 2  # a Gaussian (log-probabilities) centred between classes
        assert f0_from_logits(logits[None, :, None]).item() == pytest.approx(hz, rel=0.002)
    # Two octaves, the upper one likelier: the estimate is the upper one, not their mean.
    two = torch.logaddexp(-0.5 * (classes - position(110.0)) ** 2, 0.5 - 0.5 * (classes - position(220.0)) ** 2)
    assert f0_from_logits(two[None, :, None]).item() == pytest.approx(220.0, rel=0.01)


def test_pitch_losses_are_least_for_the_right_class_and_ignore_f0_where_unvoiced():
    lo, hi = math.log(50.0), math.log(500.0)
    target = torch.tensor([[[150.0, 150.0], [1.0, 0.0]]])  # (1, 2, T=2): voiced at 150 Hz, then unvoiced
    def logits(hz: float, voicing: float) -> torch.Tensor:
        classes = torch.arange(PITCH_BINS, dtype=torch.float32)
        peak = -0.5 * (classes - (math.log(hz) - lo) / (hi - lo) * (PITCH_BINS - 1)) ** 2
        return torch.cat([peak, torch.tensor([voicing])])[None, :, None].expand(1, -1, 2).clone()
    right, wrong = pitch_losses(logits(150.0, 0.0), target), pitch_losses(logits(300.0, 0.0), target)
    assert right[0] < wrong[0] and right[1] == wrong[1]
    # The unvoiced frame's f0 does not count: changing it changes nothing.
    other = logits(150.0, 0.0)
    other[0, :PITCH_BINS, 1] = 0.0
    assert pitch_losses(other, target)[0] == right[0]
    nothing_voiced = pitch_losses(logits(300.0, -20.0), torch.tensor([[[150.0, 150.0], [0.0, 0.0]]]))
    assert nothing_voiced[0] == 0 and nothing_voiced[1] < 1e-6


def pitch_codec(pitch_phase: bool = True, edge_phase: bool = False, edge_offsets: bool = True,
                voiced_offsets: bool = False, voiced_offset_hidden: int = 0) -> RVQCodec:
    torch.manual_seed(0)
    spectral = {"dim": 16, "hidden_dim": 32, "num_layers": 1, "kernel_size": 3, "n_fft": 1280,
                "pitch_phase": pitch_phase, "edge_phase": edge_phase, "edge_offsets": edge_offsets,
                "voiced_offsets": voiced_offsets, "voiced_offset_hidden": voiced_offset_hidden}
    config = tiny_config(sample_rate=SR, strides=(2, 4, 5, 8), causal=False, spectral=spectral)
    return RVQCodec(config).eval()


def test_pitch_phase_is_validated_and_leaves_the_code_space_alone():
    assert pitch_codec(True).fingerprint == pitch_codec(False).fingerprint
    assert pitch_codec(True).pitch_phase and not pitch_codec(False).pitch_phase
    with pytest.raises(ConfigError, match="pitch_phase"):
        tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": "yes"})
    with pytest.raises(ConfigError, match="pitch_teacher_steps"):
        tiny_config(training={"pitch_teacher_steps": -1})
    with pytest.raises(ConfigError, match="pitch_weight"):
        tiny_config(training={"pitch_weight": -0.5})
    assert pitch_codec(True, edge_phase=True).fingerprint == pitch_codec(False).fingerprint
    with pytest.raises(ConfigError, match="edge_phase.*pitch_phase"):
        tiny_config(causal=False, spectral={"n_fft": 32, "edge_phase": True})
    with pytest.raises(ConfigError, match="edge_phase"):
        tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": True, "edge_phase": 1})
    assert pitch_codec(True, edge_phase=True, edge_offsets=False).fingerprint == pitch_codec(False).fingerprint
    with pytest.raises(ConfigError, match="edge_offsets.*edge_phase"):
        tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": True, "edge_offsets": False})
    with pytest.raises(ConfigError, match="edge_offsets"):
        tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": True, "edge_phase": True, "edge_offsets": 0})
    assert pitch_codec(True, voiced_offsets=True).fingerprint == pitch_codec(False).fingerprint
    with pytest.raises(ConfigError, match="voiced_offsets.*pitch_phase"):
        tiny_config(causal=False, spectral={"n_fft": 32, "voiced_offsets": True})
    with pytest.raises(ConfigError, match="voiced_offsets"):
        tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": True, "voiced_offsets": "no"})
    assert pitch_codec(True, voiced_offsets=True, voiced_offset_hidden=8).fingerprint == pitch_codec(False).fingerprint
    with pytest.raises(ConfigError, match="voiced_offset_hidden.*needs voiced_offsets"):
        tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": True, "voiced_offset_hidden": 8})
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match=f"voiced_offset_hidden must be an integer >= 0, got {bad!r}"):
            tiny_config(causal=False, spectral={"n_fft": 32, "pitch_phase": True, "voiced_offsets": True,
                                                "voiced_offset_hidden": bad})


def test_edge_phases_are_the_source_phase_plus_an_offset_in_the_frame_either_side_of_a_voiced_run():
    """Voiced low bins take the source's phase; the unvoiced frame on each side of a voiced run takes it plus the
    predicted offset (zero at initialisation); other frames and the bins above the band keep the head's phases."""
    decoder = pitch_codec(True, edge_phase=True).decoder
    assert decoder.context_frames == pitch_codec(True).decoder.context_frames + 1
    assert not decoder.phase.edge_offset.weight.any() and not decoder.phase.edge_offset.bias.any()
    voiced = torch.tensor([[0, 0, 1, 1, 0, 0, 0, 1, 0, 0]], dtype=torch.bool)  # edges: 1, 4 and 6, 8
    frames, low = voiced.shape[-1], decoder.phase.n_low
    pitch = torch.stack([torch.full((1, frames), 150.0), voiced.float()], dim=1)
    head = torch.rand(1, decoder.bins, frames) * 6 - 3
    offset = torch.rand(1, low, frames) + 0.5
    with torch.no_grad():
        plain, _ = decoder.phase.source_phase(head, pitch, predicted=False, anchor=None)
        edged, _ = decoder.phase.source_phase(head, pitch, predicted=False, anchor=None, edge_offset=offset)
        all_voiced = torch.stack([torch.full((1, frames), 150.0), torch.ones(1, frames)], dim=1)
        source, _ = decoder.phase.source_phase(head, all_voiced, predicted=False, anchor=None)  # in every frame
    edge, other = [1, 4, 6, 8], [0, 5, 9]
    assert torch.equal(edged[:, low:], head[:, low:]) and torch.equal(edged[..., other], head[..., other])
    assert torch.equal(edged[:, :low, voiced[0]], source[:, :low, voiced[0]])
    assert torch.equal(plain[..., edge], head[..., edge])  # without offsets, edges keep the head's phases
    assert torch.allclose(edged[:, :low, edge], source[:, :low, edge] + offset[..., edge])
    # In the decoder, the offsets are learned: the waveform's gradient reaches their layer.
    decoder.run(torch.randn(1, 16, frames), pitch=pitch).audio.square().sum().backward()
    assert decoder.phase.edge_offset.weight.grad.abs().max() > 0


def test_voiced_phases_are_the_source_phase_plus_a_learned_residual_that_starts_at_zero():
    """With `voiced_offsets`, voiced low bins take the source's phase plus the predicted residual; edge frames,
    unvoiced frames and the bins above the band are as without it. The residual's layer starts at zero, so a decoder
    gaining it decodes as before, and the waveform's gradient reaches it."""
    decoder = pitch_codec(True, edge_phase=True, voiced_offsets=True).decoder
    before = pitch_codec(True, edge_phase=True).decoder
    assert not decoder.phase.voiced_offset.weight.any() and not decoder.phase.voiced_offset.bias.any()
    assert decoder.context_frames == before.context_frames and before.phase.voiced_offset is None
    voiced = torch.tensor([[0, 0, 1, 1, 0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    frames, low = voiced.shape[-1], decoder.phase.n_low
    pitch = torch.stack([torch.full((1, frames), 150.0), voiced.float()], dim=1)
    head = torch.rand(1, decoder.bins, frames) * 6 - 3
    edge_offset, voiced_offset = torch.rand(1, low, frames) + 0.5, torch.rand(1, low, frames) - 1.5
    with torch.no_grad():
        edged, _ = decoder.phase.source_phase(head, pitch, predicted=False, anchor=None, edge_offset=edge_offset)
        both, _ = decoder.phase.source_phase(head, pitch, predicted=False, anchor=None, edge_offset=edge_offset,
                                        voiced_offset=voiced_offset)
    assert torch.equal(both[:, low:], head[:, low:]) and torch.equal(both[..., ~voiced[0]], edged[..., ~voiced[0]])
    assert torch.allclose(both[:, :low, voiced[0]], edged[:, :low, voiced[0]] + voiced_offset[..., voiced[0]])
    before.load_state_dict({k: v for k, v in decoder.state_dict().items() if not k.startswith("phase.voiced_offset.")})
    latent = torch.randn(1, 16, frames)
    with torch.no_grad():
        assert torch.equal(decoder.run(latent, pitch=pitch).audio, before.run(latent, pitch=pitch).audio)
    decoder.run(latent, pitch=pitch).audio.square().sum().backward()
    assert decoder.phase.voiced_offset.weight.grad.abs().max() > 0


def test_a_hidden_residual_branch_starts_at_zero_and_adds_to_the_linear_residual():
    """`voiced_offset_hidden` adds a one-hidden-layer branch to the voiced residual: zero at initialisation (a
    decoder gaining it decodes as before), learning from the first step, and summed with the linear branch."""
    wide = pitch_codec(True, edge_phase=True, voiced_offsets=True, voiced_offset_hidden=8).decoder
    narrow = pitch_codec(True, edge_phase=True, voiced_offsets=True).decoder
    assert narrow.phase.voiced_offset_mlp is None and wide.phase.voiced_offset_mlp[0].out_features == 8
    assert not wide.phase.voiced_offset_mlp[-1].weight.any() and not wide.phase.voiced_offset_mlp[-1].bias.any()
    with torch.no_grad():  # a trained-looking linear residual, which the narrow decoder shares
        torch.nn.init.normal_(wide.phase.voiced_offset.weight)
    narrow.load_state_dict({k: v for k, v in wide.state_dict().items() if not k.startswith("phase.voiced_offset_mlp.")})
    voiced = torch.tensor([[0, 1, 1, 1, 0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    pitch = torch.stack([torch.full((1, voiced.shape[-1]), 150.0), voiced.float()], dim=1)
    latent = torch.randn(1, 16, voiced.shape[-1])
    with torch.no_grad():
        assert torch.equal(wide.run(latent, pitch=pitch).audio, narrow.run(latent, pitch=pitch).audio)
    wide.run(latent, pitch=pitch).audio.square().sum().backward()
    assert wide.phase.voiced_offset_mlp[-1].weight.grad.abs().max() > 0
    # Once trained, the residual that reaches the voiced bins is the sum of the two branches.
    with torch.no_grad():
        torch.nn.init.normal_(wide.phase.voiced_offset_mlp[-1].weight)
        feats = wide.backbone(latent)
        model = wide.phase
        expected = model._per_channel(model.voiced_offset(feats) + model.voiced_offset_mlp(feats))
        seen = {}
        source_phase = model.source_phase
        model.source_phase = lambda *a, **kw: seen.update(kw) or source_phase(*a, **kw)
        wide.run(latent, pitch=pitch)
    assert torch.allclose(seen["voiced_offset"], expected) and expected.abs().max() > 0.1
    assert not torch.allclose(expected, model._per_channel(model.voiced_offset(feats)))


def test_edge_phases_without_offsets_are_the_source_phase_itself():
    """`edge_offsets: false` has no offset layer and decodes as a learned-offset decoder whose offsets are zero;
    with the same weights, a pitch decoder without edge phases decodes the edge frames differently."""
    learned = pitch_codec(True, edge_phase=True).decoder
    fixed, plain = pitch_codec(True, edge_phase=True, edge_offsets=False).decoder, pitch_codec(True).decoder
    assert fixed.phase.edge_offset is None and fixed.context_frames == learned.context_frames
    weights = {k: v for k, v in learned.state_dict().items() if not k.startswith("phase.edge_offset.")}
    fixed.load_state_dict(weights)
    plain.load_state_dict(weights)
    voiced = torch.tensor([[0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0]], dtype=torch.float)
    pitch = torch.stack([torch.full_like(voiced, 150.0), voiced], dim=1)
    latent = torch.randn(1, 16, voiced.shape[-1])
    with torch.no_grad():
        audio = [d.run(latent, pitch=pitch).audio for d in (learned, fixed, plain)]
    assert torch.equal(audio[0], audio[1]) and not torch.allclose(audio[1], audio[2], atol=1e-4)


def test_from_pretrained_overrides_how_the_decoder_states_phase_and_nothing_else(tmp_path):
    """A pitch codec's folder loads with edge phases (no weights needed without offsets) and decodes as a codec built
    that way with its weights; settings that change the codes or need weights the folder lacks are refused."""
    from tokenizer import CheckpointError, CodecError

    plain = pitch_codec(True)
    plain.save_pretrained(tmp_path / "pitch")
    loaded = RVQCodec.from_pretrained(tmp_path / "pitch", spectral={"edge_phase": True, "edge_offsets": False})
    built = pitch_codec(True, edge_phase=True, edge_offsets=False)
    built.load_state_dict(plain.state_dict())
    assert loaded.config.spectral.phase == HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=False))
    assert loaded.config.to_dict() == built.config.to_dict() and not loaded.training
    assert RVQCodec.from_pretrained(tmp_path / "pitch").config.to_dict() == plain.config.to_dict()  # file unchanged
    t = torch.arange(SR * 3 // 5) / SR
    clip = (0.3 * torch.sin(2 * math.pi * 150 * t) * (t > 0.2))[None, None]  # a voiced run starting mid-clip
    codes = plain.encode(clip)
    assert torch.equal(loaded.encode(clip), codes)
    with torch.no_grad():
        assert torch.equal(loaded.decode(codes), built.decode(codes))
    with pytest.raises(CheckpointError, match=r"with overrides .*missing tensors \['decoder.phase.edge_offset.bias'"):
        RVQCodec.from_pretrained(tmp_path / "pitch", spectral={"edge_phase": True})
    with pytest.raises(CodecError, match=r"change what the codes .* mean \(fields \['strides'\]\)"):
        RVQCodec.from_pretrained(tmp_path / "pitch", strides=[4, 2, 5, 8])
    with pytest.raises(CodecError, match="not make a valid config.*edge_offsets must be true or false, got 0"):
        RVQCodec.from_pretrained(tmp_path / "pitch", spectral={"edge_phase": True, "edge_offsets": 0})


@pytest.mark.parametrize("f0", [97.0, 130.0, 220.0])
def test_a_pitch_phase_decoder_holds_a_pitch_that_repeated_frames_cannot(f0):
    """A held tone is one latent frame over and over. The frame-wise decoder alone overlap-adds it into a signal
    periodic at the frame rate (75 Hz); driven by the harmonic source, the same frames keep the tone's pitch."""
    latent = torch.randn(1, 16, 1).expand(1, 16, 180)  # 2.4 s
    pitch = torch.stack([torch.full((1, 180), f0), torch.ones(1, 180)], dim=1)  # f0 (Hz) and voicing
    with torch.no_grad():
        held = pitch_codec(True).decoder.run(latent, pitch=pitch).audio[0, 0]
        repeated = pitch_codec(False).decoder(latent)[0, 0]
    assert torch.allclose(repeated[2000:-2000 - HOP], repeated[2000 + HOP:-2000], atol=1e-5)
    # Scored up to 5 kHz, the band that takes the source's phase.
    kept = harmonic_energy_fraction(held[2000:-2000], SR, f0, max_hz=5000.0)
    lost = harmonic_energy_fraction(repeated[2000:-2000], SR, f0, max_hz=5000.0)
    assert kept > 0.8 and lost < 0.3, (kept, lost)
