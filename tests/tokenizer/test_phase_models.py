"""The spectral decoder's phase models (`spectral.phase`, `tokenizer.modules.phase`) and decoder variants that describe
themselves (`decoder.<name>.json`, `tokenizer.variants`): each kind builds from its config and round-trips JSON, the
six flags of the older config form read as the same model, tensors under their older names load, and a variant
loads on its own and only over the codes it was made for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tokenizer import CheckpointError, CodecConfig, ConfigError, RVQCodec
from tokenizer.config import (EdgePhaseConfig, FramePhaseConfig, FrequencyInvariantPhaseConfig,
                              HarmonicSourcePhaseConfig, SpectralConfig, VoicedPhaseConfig, phase_flags)
from tokenizer.modules.phase import FramePhase, FrequencyInvariantPhase, HarmonicSourcePhase, rename_phase_tensors
from tokenizer.variants import load_decoder_variant

from .conftest import tiny_config

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "pipelines" / "assets" / "codec"

# Each phase model, its JSON object, its class, and the flags of the older config form that describe it.
KINDS = [
    (FramePhaseConfig(), {"kind": "frame"}, FramePhase, {}),
    (FrequencyInvariantPhaseConfig(), {"kind": "frequency_invariant"}, FrequencyInvariantPhase,
     {"frequency_invariant_phase": True}),
    (HarmonicSourcePhaseConfig(), {"kind": "harmonic_source", "edge": None, "voiced": None}, HarmonicSourcePhase,
     {"pitch_phase": True}),
    (HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=False)),
     {"kind": "harmonic_source", "edge": {"offsets": False}, "voiced": None}, HarmonicSourcePhase,
     {"pitch_phase": True, "edge_phase": True, "edge_offsets": False}),
    (HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(), voiced=VoicedPhaseConfig(hidden=8)),
     {"kind": "harmonic_source", "edge": {"offsets": True}, "voiced": {"hidden": 8}}, HarmonicSourcePhase,
     {"pitch_phase": True, "edge_phase": True, "voiced_offsets": True, "voiced_offset_hidden": 8}),
]
IDS = ["frame", "frequency-invariant", "source", "source-edge-fixed", "source-edge-voiced-hidden"]


def config(phase: dict | None = None, **flags) -> CodecConfig:
    """A tiny spectral codec at 24 kHz (hop 320, n_fft 1280: the harmonic source's band is bins below 5 kHz)."""
    spectral = {"dim": 16, "hidden_dim": 32, "num_layers": 1, "kernel_size": 3, "n_fft": 1280, **flags}
    if phase is not None:
        spectral["phase"] = phase
    return tiny_config(sample_rate=24000, strides=(4, 80), causal=False, spectral=spectral)


@pytest.mark.parametrize("phase, data, module, flags", KINDS, ids=IDS)
def test_each_phase_model_builds_from_its_config_and_round_trips_json(phase, data, module, flags):
    built = config(data)
    assert built.spectral.phase == phase and built.spectral.phase.to_dict() == data
    again = CodecConfig.from_dict(json.loads(built.to_json_string()))
    assert again == built and json.loads(built.to_json_string())["spectral"]["phase"] == data
    codec = RVQCodec(built)
    assert type(codec.decoder.phase) is module
    assert codec.pitch_phase == (module is HarmonicSourcePhase)
    assert codec.decoder_period == (4 if module is FrequencyInvariantPhase else 1)  # n_fft 1280 / gcd(1280, 320)
    # Outside the code space: every phase model has the frame model's fingerprint.
    assert built.fingerprint == config({"kind": "frame"}).fingerprint
    own = {k for k in codec.state_dict() if k.startswith("decoder.phase.")}
    assert own == {f"decoder.phase.{k}" for k in codec.decoder.phase.state_dict()}


@pytest.mark.parametrize("phase, data, module, flags", KINDS, ids=IDS)
def test_the_flags_of_the_older_form_read_as_the_same_phase_model(phase, data, module, flags):
    legacy = config(**flags)
    assert legacy == config(data) and legacy.spectral.phase == phase
    assert {k: v for k, v in phase_flags(phase).items() if v != phase_flags(FramePhaseConfig())[k]} == flags
    assert "pitch_phase" not in legacy.to_dict()["spectral"]  # saved in the new form
    torch.manual_seed(0)
    old = RVQCodec(legacy).eval()
    torch.manual_seed(0)
    new = RVQCodec(config(data)).eval()
    assert old.state_dict().keys() == new.state_dict().keys()
    codes = old.encode(torch.randn(1, 1, 24000) * 0.1)
    assert torch.equal(old.decode(codes), new.decode(codes))


def test_flags_beside_a_phase_model_apply_over_it():
    """A config of the new form merged with older flags (a preset extending a new one, `from_pretrained`
    overrides): the flags change the phase model they sit beside."""
    source = {"kind": "harmonic_source", "edge": {"offsets": False}}
    assert config(source, edge_offsets=True).spectral.phase == HarmonicSourcePhaseConfig(edge=EdgePhaseConfig())
    assert config(source, voiced_offsets=True).spectral.phase == HarmonicSourcePhaseConfig(
        edge=EdgePhaseConfig(offsets=False), voiced=VoicedPhaseConfig())


@pytest.mark.parametrize("phase, message", [
    ({"kind": "vocos"}, r"spectral.phase.kind must be one of \['frame', 'frequency_invariant', 'harmonic_source'\], "
                        r"got 'vocos'"),
    ({}, r"spectral.phase.kind must be one of .* got None"),
    ({"kind": "frame", "edge": {"offsets": True}}, r"kind 'frame' takes only \['kind'\], got \['edge'\] too"),
    ({"kind": "harmonic_source", "edge": {"offsets": 0}}, r"spectral.phase.edge.offsets must be true or false, got 0"),
    ({"kind": "harmonic_source", "voiced": {"hidden": -1}},
     r"spectral.phase.voiced.hidden must be an integer >= 0, got -1"),
    ({"kind": "harmonic_source", "voiced": {"hidden": 2.5}},
     r"spectral.phase.voiced.hidden must be an integer >= 0, got 2.5"),
    ({"kind": "harmonic_source", "edge": True}, r"spectral.phase.edge must be an object .* or null, got True"),
    ({"kind": "harmonic_source", "voiced": {"width": 8}}, r"VoicedPhaseConfig got unknown keys \['width'\]"),
    ("harmonic_source", r"spectral.phase must be an object with a 'kind' .*, got 'harmonic_source'"),
])
def test_a_bad_phase_model_is_refused_naming_the_value(phase, message):
    with pytest.raises(ConfigError, match=message):
        config(phase)


@pytest.mark.parametrize("flags, message", [
    ({"edge_phase": True}, r"spectral.edge_phase offsets the harmonic source's phase: it needs spectral.pitch_phase"),
    ({"pitch_phase": True, "edge_offsets": False}, r"spectral.edge_offsets false .* needs edge_phase true"),
    ({"voiced_offsets": True}, r"spectral.voiced_offsets offsets the harmonic source's phase"),
    ({"pitch_phase": True, "voiced_offset_hidden": 8}, r"voiced_offset_hidden widens .* needs voiced_offsets true"),
    ({"pitch_phase": "yes"}, r"spectral.pitch_phase must be true or false, got 'yes'"),
    ({"pitch_phase": True, "frequency_invariant_phase": True},
     r"frequency_invariant_phase and spectral.pitch_phase are two phase models; set one of them"),
])
def test_contradictory_flags_of_the_older_form_are_refused_as_before(flags, message):
    with pytest.raises(ConfigError, match=message):
        config(**flags)


def test_a_spectral_config_takes_a_phase_config_or_its_json():
    assert SpectralConfig(phase={"kind": "frequency_invariant"}).phase == FrequencyInvariantPhaseConfig()
    assert SpectralConfig().phase == FramePhaseConfig()
    with pytest.raises(ConfigError, match="spectral.phase must be an object with a 'kind'"):
        SpectralConfig(phase=3)


def test_tensors_under_their_older_names_load():
    """Files written when the phase model's tensors were the decoder's own (`decoder.pitch_head.*`) load, by
    `load_state_dict` and by `from_state_dict`, into the same weights."""
    torch.manual_seed(0)
    codec = RVQCodec(config({"kind": "harmonic_source", "edge": {"offsets": True}, "voiced": {"hidden": 4}}))
    state = {k: v.clone() for k, v in codec.state_dict().items() if v.is_floating_point()}
    older = {k.replace("decoder.phase.", "decoder."): v.clone() + 1 for k, v in state.items()}
    assert "decoder.pitch_head.0.weight" in older and "decoder.voiced_offset_mlp.2.bias" in older
    assert rename_phase_tensors(older).keys() == state.keys()
    codec.load_state_dict(older, strict=False)  # the quantizer's integer buffers aside
    assert all(torch.equal(codec.state_dict()[k], v + 1) for k, v in state.items())
    whole = {**{k: v for k, v in codec.state_dict().items() if not v.is_floating_point()}, **older}
    rebuilt = RVQCodec.from_state_dict(codec.config.to_dict(), whole, "older names")
    assert all(torch.equal(rebuilt.state_dict()[k], v + 1) for k, v in state.items())
    shifted = {k.removeprefix("decoder."): v * 2 for k, v in older.items() if k.startswith("decoder.")}
    codec.decoder.load_state_dict(shifted)  # the decoder on its own too
    assert all(torch.equal(codec.decoder.state_dict()[k], v) for k, v in rename_phase_tensors(shifted, "").items())


def _folder_and_variant(tmp_path: Path, seed: int = 0) -> tuple[Path, RVQCodec]:
    """A harmonic-source codec saved in a folder, and a decoder for its codes with learned edge offsets."""
    torch.manual_seed(seed)
    base = RVQCodec(config({"kind": "harmonic_source", "edge": {"offsets": False}}))
    base.train()(torch.randn(2, 1, 24000) * 0.1)
    with torch.no_grad():
        base.decoder.phase.pitch_head[-1].bias[-1] = 0.0  # some frames voiced
    folder = base.eval().save_pretrained(tmp_path / f"codec{seed}")
    tuned = RVQCodec(config({"kind": "harmonic_source", "edge": {"offsets": True}}))
    tuned.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        torch.nn.init.normal_(tuned.decoder.phase.edge_offset.weight)
    return folder, tuned.eval()


def test_a_decoder_variant_describes_itself_and_loads_on_its_own(tmp_path):
    folder, tuned = _folder_and_variant(tmp_path)
    tuned.save_decoder_variant(folder, "speech")
    described = json.loads((folder / "decoder.speech.json").read_text())
    assert described["code_space"] == tuned.fingerprint
    assert CodecConfig.from_dict(described["config"]).spectral == tuned.config.spectral
    own_config, decoder, code_space = load_decoder_variant(folder, "speech")
    assert code_space == tuned.fingerprint and own_config.spectral.phase == tuned.config.spectral.phase
    assert not decoder.training
    latent = torch.randn(1, tuned.config.dimension, 30)
    with torch.no_grad():
        assert torch.equal(decoder(latent), tuned.decoder(latent))
        loaded = RVQCodec.from_pretrained(folder, variant="speech")
        assert torch.equal(loaded.decoder(latent), decoder(latent))
    assert loaded.config.spectral == tuned.config.spectral and loaded.fingerprint == tuned.fingerprint
    with pytest.raises(CheckpointError, match="cannot load on its own: it has no decoder.none.json"):
        load_decoder_variant(folder, "none")


def test_a_variant_made_for_other_codes_is_refused(tmp_path):
    folder, tuned = _folder_and_variant(tmp_path)
    tuned.save_decoder_variant(folder, "speech")
    other, _ = _folder_and_variant(tmp_path, seed=1)  # the same config, other encoder and codebooks
    for suffix in (".json", ".safetensors"):
        shutil.copy(folder / f"decoder.speech{suffix}", other / f"decoder.speech{suffix}")
    with pytest.raises(CheckpointError, match=rf"decoder variant 'speech' decodes the codes of the codec with "
                                              rf"fingerprint '{tuned.fingerprint}', but the codec in .* has "
                                              r"fingerprint '[0-9a-f]{16}'"):
        RVQCodec.from_pretrained(other, variant="speech")
    # A config of another code space is refused by the config, before any weight is read.
    described = json.loads((folder / "decoder.speech.json").read_text())
    described["config"]["quantizer"]["codebook_size"] = 64
    (other / "decoder.speech.json").write_text(json.dumps(described))
    with safe_open(str(folder / "decoder.speech.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(other / "decoder.speech.safetensors"))  # without the JSON's digest
    with pytest.raises(CheckpointError, match=r"decoder.speech.json describes a codec whose code space differs in "
                                              r"\['quantizer'\]"):
        RVQCodec.from_pretrained(other, variant="speech")


def test_a_variants_two_files_must_have_been_saved_together(tmp_path):
    folder, tuned = _folder_and_variant(tmp_path)
    tuned.save_decoder_variant(folder, "speech")
    text = (folder / "decoder.speech.json").read_text()
    (folder / "decoder.speech.json").write_text(text.replace('"offsets": true', '"offsets": false'))
    for load in (lambda: RVQCodec.from_pretrained(folder, variant="speech"),
                 lambda: load_decoder_variant(folder, "speech")):
        with pytest.raises(CheckpointError, match="decoder.speech.json .* was not saved with "
                                                  "decoder.speech.safetensors"):
            load()
    (folder / "decoder.speech.json").unlink()
    with pytest.raises(CheckpointError, match="its config file decoder.speech.json is missing"):
        RVQCodec.from_pretrained(folder, variant="speech")


def test_a_variant_file_of_the_older_form_still_loads(tmp_path):
    """Tensors under their older names and the phase flags that differ from the folder's in the metadata, no JSON."""
    folder, tuned = _folder_and_variant(tmp_path)
    older = {k.replace("decoder.phase.", "decoder."): v for k, v in tuned.state_dict().items()
             if k.startswith("decoder.")}
    save_file(older, str(folder / "decoder.speech.safetensors"),
              metadata={"decoder_settings": json.dumps({"spectral": {"edge_offsets": True}})})
    loaded = RVQCodec.from_pretrained(folder, variant="speech")
    assert loaded.config.spectral == tuned.config.spectral
    codes = loaded.encode(torch.randn(1, 1, 24000) * 0.1)
    assert torch.equal(loaded.decode(codes), tuned.decode(codes))


def test_from_pretrained_overrides_the_phase_model_in_the_new_form(tmp_path):
    folder, tuned = _folder_and_variant(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing tensors \['decoder.phase.edge_offset.bias'"):
        RVQCodec.from_pretrained(folder, spectral={"phase": {"edge": {"offsets": True}}})
    plain = RVQCodec.from_pretrained(folder, spectral={"phase": {"edge": None}})
    assert plain.config.spectral.phase == HarmonicSourcePhaseConfig()
    # Another kind replaces the phase model: a frame model would leave the pitch head unused, refused.
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['decoder.phase.pitch_head"):
        RVQCodec.from_pretrained(folder, spectral={"phase": {"kind": "frame"}})


def test_the_bundled_speech_decoder_describes_itself():
    described = json.loads((BUNDLED / "decoder.speech.json").read_text())
    with safe_open(str(BUNDLED / "decoder.speech.safetensors"), "pt") as f:
        assert "decoder_settings" not in f.metadata()  # the current form: its config is in decoder.speech.json
    folder = CodecConfig.from_dict(json.loads((BUNDLED / "config.json").read_text()))
    spectral = CodecConfig.from_dict(described["config"]).spectral
    assert spectral.phase == HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(offsets=True),
                                                       voiced=VoicedPhaseConfig(hidden=512))
    assert spectral.n_fft == folder.spectral.n_fft and spectral.phase != folder.spectral.phase
    own_config, decoder, code_space = load_decoder_variant(BUNDLED, "speech")
    assert code_space == RVQCodec.from_pretrained(BUNDLED).fingerprint == described["code_space"]
    assert type(decoder.phase) is HarmonicSourcePhase and decoder.phase.voiced_offset_mlp is not None
