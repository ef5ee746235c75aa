"""Config files that extend another: deep merge, chains, the errors of a missing parent and of a loop, and a saved
config that holds every field itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenizer import CodecConfig, ConfigError
from tokenizer.config_files import merge_config_dicts, read_config_file

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_nested_sections_merge_key_by_key_and_other_values_replace():
    base = {"name": "a", "strides": [2, 4], "training": {"max_steps": 10, "betas": [0.5, 0.9], "seed": 0},
            "spectral": {"dim": 8, "pitch_phase": False}}
    child = {"strides": [5], "training": {"max_steps": 20}, "spectral": None}
    merged = merge_config_dicts(base, child)
    assert merged == {"name": "a", "strides": [5], "training": {"max_steps": 20, "betas": [0.5, 0.9], "seed": 0},
                      "spectral": None}
    assert base["training"]["max_steps"] == 10 and child == {"strides": [5], "training": {"max_steps": 20},
                                                            "spectral": None}  # neither input changed
    # Deeper than one level, and a key only the child has.
    assert merge_config_dicts({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"d": 3}, "e": 4}}) == \
        {"a": {"b": {"c": 1, "d": 3}, "e": 4}}


def test_a_chain_resolves_relative_to_each_file(tmp_path):
    write(tmp_path / "base" / "root.json", {"_comment": "the root", "x": 1, "y": {"p": 1, "q": 2}, "z": [1, 2]})
    write(tmp_path / "base" / "mid.json", {"extends": "root.json", "y": {"q": 3}})
    leaf = write(tmp_path / "leaf.json", {"_comment": "the leaf", "extends": "base/mid.json", "z": [3]})
    assert read_config_file(leaf) == {"_comment": "the leaf", "x": 1, "y": {"p": 1, "q": 3}, "z": [3]}
    # A parent's comment describes the parent: a child without one inherits none.
    assert read_config_file(tmp_path / "base" / "mid.json") == {"x": 1, "y": {"p": 1, "q": 3}, "z": [1, 2]}


def test_an_extended_codec_config_equals_the_full_one_and_saves_in_full(tmp_path):
    full = json.loads((REPO / "configs" / "codec_tiny.json").read_text())
    write(tmp_path / "tiny.json", full)
    changed = {"training": {"max_steps": 7, "disc_periods": [2, 3]}, "quantizer": {"num_codebooks": 2}}
    child = write(tmp_path / "child.json", {"extends": "tiny.json", **changed})
    expected = merge_config_dicts(full, changed)
    assert expected["training"]["segment_seconds"] == full["training"]["segment_seconds"]  # kept, not dropped
    write(tmp_path / "expected.json", expected)
    config = CodecConfig.from_json_file(child)
    assert config == CodecConfig.from_json_file(tmp_path / "expected.json")
    assert config.training.max_steps == 7 and config.num_codebooks == 2 and config.training.disc_periods == (2, 3)
    # What is saved (a checkpoint's config.json) names no parent: it holds every field.
    config.to_json_file(tmp_path / "saved.json")
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert "extends" not in saved and saved["training"]["max_steps"] == 7
    assert CodecConfig.from_json_file(tmp_path / "saved.json") == config


def test_a_missing_parent_is_named_with_what_to_do(tmp_path):
    child = write(tmp_path / "child.json", {"extends": "nope.json", "name": "x"})
    with pytest.raises(ConfigError, match=r"child.json' extends 'nope.json', which does not exist \(looked for "
                                          r"'.*nope.json'\); 'extends' is a path relative to the folder"):
        CodecConfig.from_json_file(child)
    with pytest.raises(ConfigError, match=r"'extends' must name the JSON file it builds on .* got 3"):
        read_config_file(write(tmp_path / "bad.json", {"extends": 3}))
    with pytest.raises(ConfigError, match="must hold a JSON object of fields, got list"):
        read_config_file(write(tmp_path / "list.json", [1, 2]))
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "absent.json")


def test_a_loop_is_refused_naming_the_files(tmp_path):
    write(tmp_path / "a.json", {"extends": "b.json", "x": 1})
    write(tmp_path / "b.json", {"extends": "sub/../a.json", "y": 2})
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match=r"extend each other in a loop: .*a.json -> .*b.json -> .*a.json; remove "
                                          r"'extends' from one of them"):
        CodecConfig.from_json_file(tmp_path / "a.json")
    write(tmp_path / "self.json", {"extends": "self.json"})
    with pytest.raises(ConfigError, match=r"loop: .*self.json -> .*self.json"):
        read_config_file(tmp_path / "self.json")
