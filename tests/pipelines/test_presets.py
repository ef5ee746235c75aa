"""The presets in configs/: each loads and validates with its loader; those that extend another are their parent plus
the differences listed here; the ones scripts/default_models.sh trains the bundled models with keep their settings.
Also: the LM's two config loaders resolve `extends` like the codec's."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from lm import AudioLMConfig
from pipelines.lm_training_config import LMTrainingConfig
from tokenizer import CodecConfig, ConfigError
from tokenizer.config_files import merge_config_dicts, read_config_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
PRESETS = sorted(p.name for p in CONFIGS.glob("*.json"))

# Each preset that extends another: its parent and the fields it sets over the parent's.
EXTENDED = {
    "codec_spectral_small_decoder_gan.json": ("codec_spectral_small.json", {"training": {
        "max_steps": 2000, "learning_rate": 0.0002, "discriminator_learning_rate": 0.0002, "cooldown_steps": 500,
        "adversarial_start_step": 0, "save_every": 100, "freeze_codes": True}}),
    "codec_spectral_small_decoder_mpd.json": ("codec_spectral_small_decoder_gan.json", {"training": {
        "disc_periods": [2, 3, 5, 7, 11], "period_disc_filters": 8}}),
    "codec_spectral_small_decoder_pitch.json": ("codec_spectral_small_decoder_mpd.json", {
        "training": {"max_steps": 700, "warmup_steps": 50, "cooldown_steps": 200, "pitch_weight": 1.0,
                     "pitch_teacher_steps": 0},
        "spectral": {"phase": {"kind": "harmonic_source"}}}),
    "codec_spectral_small_decoder_edge.json": ("codec_spectral_small_decoder_pitch.json", {
        "training": {"max_steps": 1000}, "spectral": {"phase": {"edge": {"offsets": True}}}}),
    "codec_spectral_small_decoder_edge_source.json": ("codec_spectral_small_decoder_edge.json", {"spectral": {
        "phase": {"edge": {"offsets": False}}}}),
    "codec_spectral_small_decoder_speech_phase.json": ("codec_spectral_small_decoder_edge_source.json", {"training": {
        "phase_weight": 30.0}}),
    "codec_spectral_small_decoder_speech_phase_offsets.json": ("codec_spectral_small_decoder_speech_phase.json", {
        "spectral": {"phase": {"edge": {"offsets": True}}}}),
    "codec_spectral_small_decoder_speech_voiced_offsets.json": (
        "codec_spectral_small_decoder_speech_phase_offsets.json", {"spectral": {"phase": {"voiced": {"hidden": 0}}}}),
    "codec_spectral_small_decoder_speech_voiced_wide.json": (
        "codec_spectral_small_decoder_speech_voiced_offsets.json",
        {"spectral": {"phase": {"voiced": {"hidden": 512}}}}),
    "codec_spectral_small_decoder_speech_pesq.json": ("codec_spectral_small_decoder_speech_voiced_wide.json", {
        "training": {"max_steps": 600, "perceptual_weight": 1.0}}),
    "codec_spectral_small_decoder_speech_real.json": ("codec_spectral_small_decoder_speech_pesq.json", {
        "training": {"seed": 7}}),
    "lm_train_base_continue.json": ("lm_train_base.json", {"lr": 0.0005, "warmup_steps": 50}),
    "lm_train_base_continue2.json": ("lm_train_base_continue.json", {"max_steps": 2000, "speech_crop": "start"}),
    "lm_train_phonemes.json": ("lm_train_base_continue2.json", {
        "max_steps": 2600, "phoneme_track": True, "phoneme_input_dropout": 0.3}),
    "lm_train_aligned.json": ("lm_train_phonemes.json", {"max_steps": 1800, "phoneme_alignment": True}),
    "lm_train_aligned_continue.json": ("lm_train_aligned.json", {"lr": 0.0002, "max_steps": 1000}),
    "lm_train_music.json": ("lm_train_phonemes.json", {"lr": 0.0003, "max_steps": 1000}),
    "lm_train_beats.json": ("lm_train_music.json", {
        "max_steps": 1500, "eval_every": 500, "beat_track": True, "beat_dropout": 0.2}),
    "lm_train_beats_continue.json": ("lm_train_beats.json", {"lr": 0.0002}),
}

# The resolved settings (`_comment` aside) of every preset that scripts/default_models.sh trains the bundled models
# with: sha256 of their sorted JSON, first 16 hex digits.
RECIPE_DIGESTS = {
    "codec_spectral_small.json": "e9a86be2cc032103",
    "codec_spectral_small_decoder_edge.json": "abffb7377506a69a",
    "codec_spectral_small_decoder_edge_source.json": "488a1d50e8d2b3a1",
    "codec_spectral_small_decoder_gan.json": "ffb06a7812ae06b3",
    "codec_spectral_small_decoder_mpd.json": "8d0eab2f03445373",
    "codec_spectral_small_decoder_pitch.json": "2af94792681b2f03",
    "codec_spectral_small_decoder_speech_pesq.json": "6c0d07f189f38404",
    "codec_spectral_small_decoder_speech_real.json": "0e200cf96a7fc14b",
    "codec_spectral_small_decoder_speech_phase.json": "13aeb06ace0ef0a2",
    "codec_spectral_small_decoder_speech_phase_offsets.json": "ba2d2d50aa341bdd",
    "codec_spectral_small_decoder_speech_voiced_offsets.json": "0218020eeef9ced2",
    "codec_spectral_small_decoder_speech_voiced_wide.json": "2e3d63fe577b2048",
    "lm_base.json": "0873c72d953b3512",
    "lm_train_aligned.json": "0c4e3a91412a0292",
    "lm_train_aligned_continue.json": "4067e70ee3557e71",
    "lm_train_base.json": "9b4ff23821a86627",
    "lm_train_base_continue.json": "9a5c937468b4624f",
    "lm_train_base_continue2.json": "f0a28e79623ef312",
    "lm_train_beats.json": "10c0f10a4570046d",
    "lm_train_beats_continue.json": "0ddd554c76f1b642",
    "lm_train_music.json": "6c43f37203e9c8f1",
    "lm_train_phonemes.json": "cd6d01a925faa79e",
}


def load(name: str):
    """A preset through the loader that its users call."""
    path = CONFIGS / name
    if name.startswith("codec_"):
        return CodecConfig.from_json_file(path)
    if name.startswith("lm_train_"):
        return LMTrainingConfig.from_json_file(path)
    return AudioLMConfig.from_preset(path)


def settings(path: Path) -> dict:
    data = read_config_file(path)
    data.pop("_comment", None)
    return data


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_loads_and_validates(name):
    assert name.startswith(("codec_", "lm_")), f"configs/{name}: name it codec_*, lm_* or (training) lm_train_*"
    load(name)  # validates on construction
    raw = json.loads((CONFIGS / name).read_text())
    assert ("extends" in raw) == (name in EXTENDED), f"configs/{name}: list it in EXTENDED with its differences"


@pytest.mark.parametrize("name", sorted(EXTENDED))
def test_an_extended_preset_is_its_parent_plus_the_listed_differences(name):
    parent, differences = EXTENDED[name]
    raw = json.loads((CONFIGS / name).read_text())
    assert raw.pop("extends") == parent
    raw.pop("_comment", None)
    assert raw == differences  # the file holds the differences and nothing else
    assert settings(CONFIGS / name) == merge_config_dicts(settings(CONFIGS / parent), differences)
    # Every difference is one: a field set to its parent's value would be noise.
    parent_settings = settings(CONFIGS / parent)
    for key, value in differences.items():
        if isinstance(value, dict):
            assert all(parent_settings[key].get(k, object()) != v for k, v in value.items()), (name, key)
        else:
            assert parent_settings.get(key, object()) != value, (name, key)


def test_the_recipe_presets_keep_the_settings_the_bundled_models_were_trained_with():
    script = (REPO / "scripts" / "default_models.sh").read_text()
    named = set(re.findall(r"configs/([\w.]+\.json)", script))
    assert named == set(RECIPE_DIGESTS), "scripts/default_models.sh names other presets than RECIPE_DIGESTS lists"
    for name, digest in RECIPE_DIGESTS.items():
        text = json.dumps(settings(CONFIGS / name), sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest, (
            f"configs/{name} no longer resolves to the settings scripts/default_models.sh trained the bundled models "
            "with: leave it (and its parents) as they are and add a preset that extends it instead")


def test_the_lm_loaders_resolve_extends(tmp_path):
    (tmp_path / "lm.json").write_text((CONFIGS / "lm_tiny.json").read_text())
    (tmp_path / "lm_child.json").write_text(json.dumps({"extends": "lm.json", "num_hidden_layers": 3}))
    full = json.loads((CONFIGS / "lm_tiny.json").read_text()) | {"num_hidden_layers": 3}
    (tmp_path / "lm_full.json").write_text(json.dumps(full))
    child = AudioLMConfig.from_preset(tmp_path / "lm_child.json")
    assert child.num_hidden_layers == 3
    assert child.to_dict() == AudioLMConfig.from_preset(tmp_path / "lm_full.json").to_dict()
    (tmp_path / "lm_typo.json").write_text(json.dumps({"extends": "lm.json", "num_layers": 3}))
    with pytest.raises(ValueError, match=r"unknown keys \['num_layers'\]"):
        AudioLMConfig.from_preset(tmp_path / "lm_typo.json")

    (tmp_path / "train.json").write_text((CONFIGS / "lm_train_tiny.json").read_text())
    (tmp_path / "train_child.json").write_text(json.dumps({"extends": "train.json", "lr": 0.002, "betas": [0.8, 0.9]}))
    full = json.loads((CONFIGS / "lm_train_tiny.json").read_text()) | {"lr": 0.002, "betas": [0.8, 0.9]}
    (tmp_path / "train_full.json").write_text(json.dumps(full))
    child = LMTrainingConfig.from_json_file(tmp_path / "train_child.json")
    assert child == LMTrainingConfig.from_json_file(tmp_path / "train_full.json") and child.betas == (0.8, 0.9)
    child.to_json_file(tmp_path / "saved.json")  # as a run folder keeps it: in full
    assert "extends" not in json.loads((tmp_path / "saved.json").read_text())
    assert LMTrainingConfig.from_json_file(tmp_path / "saved.json") == child

    (tmp_path / "loop.json").write_text(json.dumps({"extends": "loop.json"}))
    (tmp_path / "orphan.json").write_text(json.dumps({"extends": "gone.json"}))
    for loader in (AudioLMConfig.from_preset, LMTrainingConfig.from_json_file):
        with pytest.raises(ConfigError, match="loop"):
            loader(tmp_path / "loop.json")
        with pytest.raises(ConfigError, match="extends 'gone.json', which does not exist"):
            loader(tmp_path / "orphan.json")
