"""Conditioning lives outside the LM's core: a track conditioner defined here, registered, gives a tiny LM a new track
without any edit of lm/model.py. The track changes the logits, is emptied by condition dropout and in guidance's
unconditional rows, is saved and loaded with the model, and gives through the cache what it gives without. LM
folders that name the built-in tracks' tensors flat load into the model's names."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lm import AudioLM, GenerationConfig, TrackConditioner, register, unregister
from lm.conditioners import registered, rename_state
from lm.conditioners.phonemizer import VOCAB_SIZE
from lm.objective import LMObjective, drop_conditions

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["hello world", "drums and bass"]


@dataclass
class LoudnessTrack:
    """A loudness value per frame of each item: values FloatTensor[B, F]; rows where `present` is False have none."""

    values: torch.Tensor
    present: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    def without(self, drop: torch.Tensor) -> LoudnessTrack:
        return LoudnessTrack(self.values, self.present & ~drop.to(self.present.device))

    def row(self, index: int) -> LoudnessTrack:
        return LoudnessTrack(self.values[index:index + 1], self.present[index:index + 1])


class LoudnessConditioner(TrackConditioner):
    """The toy track: each audio position adds a projection of its frame's loudness (zero past the values)."""

    name = "loudness"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.projection = nn.Linear(2, config.hidden_size, bias=False)

    def track(self, loudness: list[list[float] | None]) -> LoudnessTrack:
        width = max(len(row or []) for row in loudness)
        values = torch.zeros(len(loudness), width)
        for index, row in enumerate(loudness):
            values[index, :len(row or [])] = torch.tensor(row or [], dtype=torch.float32)
        return LoudnessTrack(values, torch.tensor([row is not None for row in loudness]))

    def forward(self, track: LoudnessTrack, num_positions: int) -> torch.Tensor:
        device = self.projection.weight.device
        frames = torch.arange(num_positions, device=device)
        inside = frames < track.values.shape[1]  # (S,)
        values = track.values.to(device)[:, frames.clamp(max=track.values.shape[1] - 1)] * inside  # (B, S)
        features = torch.stack([values, inside.float().expand_as(values)], dim=2)  # (B, S, 2)
        return self.projection(features * track.present.to(device)[:, None, None])


@pytest.fixture
def loudness():
    register(LoudnessConditioner)
    yield LoudnessConditioner
    unregister(LoudnessConditioner.name)


def loud_lm(make_lm, seed: int = 0, **overrides) -> AudioLM:
    """A tiny LM with the loudness track, its projection made non-zero so that the track changes the logits."""
    lm = make_lm(seed=seed, tracks=["loudness"], **overrides)
    with torch.no_grad():
        nn.init.normal_(lm.model.tracks["loudness"].projection.weight, std=0.5,
                        generator=torch.Generator().manual_seed(seed))
    return lm


def some_loudness(lm: AudioLM, rows: int = 2, frames: int = 12) -> LoudnessTrack:
    generator = torch.Generator().manual_seed(1)
    return lm.conditioner("loudness").track([torch.rand(frames, generator=generator).tolist() for _ in range(rows)])


def steps_of(lm: AudioLM, S: int = 10) -> torch.Tensor:
    steps = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, S),
                          generator=torch.Generator().manual_seed(2))
    steps[:, :, 0] = lm.config.empty_id
    return steps


def test_the_core_model_imports_no_conditioner_and_names_no_task():
    source = (ROOT / "lm" / "model.py").read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert imported & {"conditioners.phonemes", "conditioners.beats", "conditioners.phonemizer", "phonemes"} == set()
    assert [module for module in imported if module and "conditioners" in module] == ["conditioners.base"]
    lowered = source.lower()
    assert not any(word in lowered for word in ("phonem", "beat", "tempo", "espeak", "music", "speech"))


def test_a_registered_conditioner_gives_the_lm_its_track_starting_silent(make_lm, loudness):
    lm = make_lm(tracks=["loudness"])
    assert isinstance(lm.model.tracks["loudness"], LoudnessConditioner) and lm.has_track("loudness")
    assert [name for name in lm.model.state_dict() if name.startswith("tracks.")] == [
        "tracks.loudness.projection.weight"]
    ids, mask = lm.encode_texts(TEXTS, "speech")
    steps, track = steps_of(lm), some_loudness(lm)
    with torch.no_grad():  # a zero projection: the track changes nothing until trained
        assert torch.equal(lm.model.logits(ids, mask, steps),
                           lm.model.logits(ids, mask, steps, tracks={"loudness": track}))
    with pytest.raises(ValueError, match="no loudness track"):
        make_lm().generate(TEXTS, GenerationConfig(duration=1.0), tracks={"loudness": track})


def test_the_track_changes_the_logits_and_a_dropped_row_is_the_row_without_it(make_lm, loudness):
    lm = loud_lm(make_lm)
    ids, mask = lm.encode_texts(TEXTS, "speech")
    steps, track = steps_of(lm), some_loudness(lm)
    with torch.no_grad():
        plain = lm.model.logits(ids, mask, steps)
        tracked = lm.model.logits(ids, mask, steps, tracks={"loudness": track})
        assert not torch.allclose(plain, tracked)
        drop = torch.tensor([True, False])
        null_mask, dropped = drop_conditions(lm.model, ids, mask, drop, {"loudness": track})
        assert dropped["loudness"].present.tolist() == [False, True]
        null = lm.model.logits(ids, null_mask, steps, tracks=dropped)
        assert torch.allclose(null[0], lm.model.logits(ids, null_mask, steps)[0], atol=1e-6)  # row 0: no track
        assert torch.allclose(null[1], tracked[1], atol=1e-6)  # row 1: kept, text and track


def test_track_dropout_in_training_leaves_out_some_rows_tracks_only(make_lm, loudness):
    lm = loud_lm(make_lm)
    seen = []
    original = lm.model.logits

    def logits(text_ids, text_mask, inputs, step_mask=None, tracks=None):
        seen.append(tracks["loudness"].present.clone())
        return original(text_ids, text_mask, inputs, step_mask, tracks)

    lm.model.logits = logits
    objective = LMObjective(lm.model, track_dropout={"loudness": 0.5})
    B = 64
    ids, mask = lm.encode_texts(["hello world"] * B, "speech")
    codes = torch.randint(0, lm.config.codebook_size, (B, lm.config.num_codebooks, 4))
    args = (ids, mask, torch.zeros(B, dtype=torch.bool), codes, torch.full((B,), 4), torch.zeros(B, dtype=torch.bool),
            {"loudness": some_loudness(lm, rows=B, frames=6)})
    objective.eval()
    objective(*args)
    objective.train()
    torch.manual_seed(0)
    objective(*args)
    evaluated, trained = seen
    assert bool(evaluated.all()) and (~trained).float().mean().item() == pytest.approx(0.5, abs=0.2)


def test_cache_with_the_track_equals_full_recomputation(make_lm, cached, loudness):
    lm = loud_lm(make_lm, phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=3, beat_track=True)
    ids, mask = lm.encode_texts(TEXTS, "speech")
    steps, track = steps_of(lm), some_loudness(lm, frames=7)  # shorter than the steps: zeros after it
    with torch.no_grad():
        full = lm.model.logits(ids, mask, steps, tracks={"loudness": track})
        features = lm.model.step_features(steps.shape[2], {"loudness": track})
    assert list(lm.model.tracks) == ["phoneme", "beat", "loudness"]  # the order of registration
    assert torch.allclose(cached(lm.model, ids, mask, steps, features), full[:, :, 2:], atol=1e-5)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_generation_with_the_track_equals_the_reference_whose_unconditional_rows_have_none(make_lm, reference,
                                                                                          loudness, guidance_scale):
    lm = loud_lm(make_lm)
    config = GenerationConfig(duration=2.0, top_k=1, guidance_scale=guidance_scale, seed=0, task="speech")
    track = some_loudness(lm, frames=25)
    codes = lm.generate(TEXTS, config, tracks={"loudness": track})
    expected = reference(lm, TEXTS, config, tracks={"loudness": [track.row(0), track.row(1)]})
    for b, item in enumerate(expected):
        assert torch.equal(codes[b, :, :item.shape[1]], item)
    assert not torch.equal(codes, lm.generate(TEXTS, config))  # the track is not ignored
    with pytest.raises(ValueError, match="the loudness track has 2 rows for 1 texts"):
        lm.generate(TEXTS[:1], config, tracks={"loudness": track})


def test_the_track_is_saved_and_loaded_with_the_model_and_added_to_a_trained_lm(make_lm, codec, loudness, tmp_path):
    lm = loud_lm(make_lm)
    lm.save_pretrained(tmp_path / "lm")
    loaded = AudioLM.from_pretrained(tmp_path / "lm", codec=codec)
    assert loaded.config.tracks == ["loudness"]
    ids, mask = lm.encode_texts(TEXTS, "speech")
    steps, track = steps_of(lm), some_loudness(lm)
    with torch.no_grad():
        assert torch.equal(loaded.model.logits(ids, mask, steps, tracks={"loudness": track}),
                           lm.model.logits(ids, mask, steps, tracks={"loudness": track}))
    base = make_lm()
    added = base.with_track("loudness")
    assert added.config.tracks == ["loudness"] and not base.has_track("loudness")
    assert all(torch.equal(value, added.model.state_dict()[name]) for name, value in base.model.state_dict().items())
    unregister("loudness")
    with pytest.raises(ValueError, match=r"tracks \['loudness'\] that no conditioner is registered for"):
        AudioLM.from_pretrained(tmp_path / "lm", codec=codec)


def test_a_name_is_registered_once_and_must_be_an_identifier(loudness):
    class Other(TrackConditioner):
        name = "loudness"

    with pytest.raises(ValueError, match="already registered"):
        register(Other)
    register(LoudnessConditioner)  # the same class again is fine
    Other.name = "not a name"
    with pytest.raises(ValueError, match="identifier"):
        register(Other)
    assert list(registered())[:2] == ["phoneme", "beat"]


def test_a_folder_with_flat_track_names_loads_into_the_models_names(make_lm, codec, tmp_path):
    lm = make_lm(phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=3, beat_track=True)
    with torch.no_grad():
        for track in lm.model.tracks.values():
            nn.init.normal_(track.projection.weight, std=0.5)
    lm.save_pretrained(tmp_path / "lm")
    weights = tmp_path / "lm" / "model.safetensors"
    flat = {"tracks.phoneme.embedding.weight": "phoneme_embedding.weight",
            "tracks.phoneme.conv.weight": "phoneme_conv.weight", "tracks.phoneme.conv.bias": "phoneme_conv.bias",
            "tracks.phoneme.projection.weight": "phoneme_projection.weight",
            "tracks.beat.projection.weight": "beat_projection.weight"}
    state = load_file(str(weights))
    assert set(flat) <= set(state)
    save_file({flat.get(name, name): value for name, value in state.items()}, str(weights))
    assert rename_state(load_file(str(weights))).keys() == state.keys()
    loaded = AudioLM.from_pretrained(tmp_path / "lm", codec=codec)
    assert all(torch.equal(value, loaded.model.state_dict()[name]) for name, value in lm.model.state_dict().items())


@pytest.mark.parametrize("task", ["speech", "music"])
def test_the_bundled_lms_flat_names_load(task):
    folder = ROOT / "pipelines" / "assets" / "lm" / task
    state = load_file(str(folder / "model.safetensors"))
    lm = AudioLM.from_pretrained(folder)
    assert torch.equal(lm.model.tracks["phoneme"].projection.weight, state["phoneme_projection.weight"].float())
    assert lm.has_track("beat") == ("beat_projection.weight" in state) == (task == "music")
