"""The beat track: tempos read from captions, beat phase at each frame, rows without a tempo, an added track that
starts silent, the null condition, cached generation against full recomputation, and batch invariance."""

from __future__ import annotations

import math

import pytest
import torch

from lm import AudioLM, AudioLMConfig, BeatTrack, GenerationConfig, PhonemeTrack
from lm.conditioners.beats import (BEAT_FEATURES, BEAT_RATES, TEMPO_WORDS, tempo_from_digits, tempo_from_text,
                                   tempo_word)
from lm.conditioners.phonemizer import VOCAB_SIZE

TEXTS = ["a calm piano melody at 120 bpm", "drums and bass"]


def beat_lm(make_lm, seed: int = 0, **overrides) -> AudioLM:
    """A tiny random LM with a beat track whose projection (and any other track's) is not zero, so the tracks
    change the logits."""
    lm = make_lm(seed=seed, beat_track=True, **overrides)
    with torch.no_grad():
        for track in lm.model.tracks.values():
            torch.nn.init.normal_(track.projection.weight, std=0.5, generator=torch.Generator().manual_seed(seed))
    return lm


@pytest.mark.parametrize("text, bpm", [
    ("At 135 beats per minute, a sawtooth synth lead", 135.0),
    ("ambient: vibraphone over pads; tempo 67, Ab major", 67.0),
    ("an upbeat groove, 128 BPM", 128.0),
    ("120bpm techno", 120.0),
    ("96 beats a minute, then at 140 bpm", 96.0),  # the first mention wins
    ("tempo: 90.5", 90.5),
    ("drums and bass", None),
    ("9 bpm", None),  # not a tempo
    ("1000 bpm", None),
    ("track 12, 3.5 bpm", None),
])
def test_tempo_from_text_reads_the_captions_tempo(text, bpm):
    assert tempo_from_text(text) == bpm


@pytest.mark.parametrize("text, bpm", [
    ("a slow piano ballad", 72.0),
    ("A CALM guitar piece", 72.0),  # any case
    ("strings rising slowly", 72.0),  # the adverb counts as its adjective
    ("a steady rock groove", 104.0),
    ("a mid-tempo pop track", 104.0),
    ("a lively brass tune", 128.0),
    ("a fast-paced drum groove", 144.0),  # a hyphen ends a word
    ("an energetic, urgent synth line", 144.0),
    ("a slow intro, then a fast chorus", 72.0),  # the first tempo word wins
    ("not fast", 144.0),  # only plain words are read
    ("a slow ballad at 140 bpm", 140.0),  # a number wins
    ("a fast groove, tempo 80", 80.0),
    ("breakfast jazz", None),  # whole words only
    ("a steadfast anthem", None),
    ("fasten your belts", None),
    ("a soft piano melody", None),  # loudness, not tempo
    ("drums and bass", None),
])
def test_tempo_words_give_their_bpm_when_no_number_is_named(text, bpm):
    assert tempo_from_text(text) == bpm
    assert tempo_from_digits(text) is None or tempo_from_text(text) == tempo_from_digits(text)


def test_every_tempo_word_lies_in_its_class_and_in_the_trained_tempos():
    # eval-music's classes: slow < 90, moderate 90-120, fast > 120 bpm; the music recipes caption 60-168 bpm.
    assert set(TEMPO_WORDS.values()) == {72.0, 104.0, 128.0, 144.0}
    assert all(60 <= bpm <= 168 and not 85 <= bpm <= 95 and not 115 <= bpm <= 125 for bpm in TEMPO_WORDS.values())
    for word, bpm in TEMPO_WORDS.items():
        assert word == word.lower() and tempo_word(f"a {word.upper()} tune") == (word, bpm)
    assert {w for w, b in TEMPO_WORDS.items() if b < 90} >= {"slow", "calm", "gentle", "relaxed", "peaceful"}
    assert {w for w, b in TEMPO_WORDS.items() if 90 <= b <= 120} >= {"moderate", "steady", "walking"}
    assert {w for w, b in TEMPO_WORDS.items() if b > 120} >= {"lively", "quick", "fast", "urgent", "energetic"}


def test_features_are_the_beat_phase_at_each_frame_and_zero_without_a_tempo(make_lm, codec):
    lm = make_lm(beat_track=True)
    beat = lm.model.tracks["beat"]
    with torch.no_grad():  # the projection copies the raw features into the first BEAT_FEATURES channels
        beat.projection.weight.zero_()
        beat.projection.weight[:BEAT_FEATURES] = torch.eye(BEAT_FEATURES)
    track = BeatTrack(torch.tensor([150.0, 0.0, 60.0]), torch.tensor([0, 0, -2]))
    with torch.no_grad():
        features = beat(track, 8)[..., :BEAT_FEATURES]  # (B, S, F)
    # 150 bpm at 10 frames/s: a quarter of a beat per frame.
    frames = torch.arange(8, dtype=torch.float64)
    angle = 2 * math.pi * (frames * 0.25).unsqueeze(1) * torch.tensor(BEAT_RATES, dtype=torch.float64)
    expected = torch.cat([angle.cos(), angle.sin(), torch.full((8, 1), math.log2(150 / 120))], dim=1).float()
    assert codec.frame_rate == 10.0
    assert torch.allclose(features[0], expected, atol=1e-6)
    assert torch.equal(features[1], torch.zeros(8, BEAT_FEATURES))
    # Row 2 starts 2 frames before the first beat: nothing there, then the beat phase from 0.
    assert torch.equal(features[2, :2], torch.zeros(2, BEAT_FEATURES))
    assert torch.allclose(features[2, 2, :len(BEAT_RATES)], torch.ones(len(BEAT_RATES)), atol=1e-6)


def test_a_crop_sees_the_phase_of_its_frames(make_lm):
    beat = beat_lm(make_lm).model.tracks["beat"]
    with torch.no_grad():
        whole = beat(BeatTrack(torch.tensor([97.0])), 20)
        crop = beat(BeatTrack(torch.tensor([97.0]), torch.tensor([7])), 13)
    assert torch.allclose(crop, whole[:, 7:], atol=1e-5)


def test_beat_tracks_are_checked_and_a_dropped_condition_drops_the_tempo():
    with pytest.raises(ValueError, match="bpm must be 0"):
        BeatTrack(torch.tensor([10.0]))
    with pytest.raises(ValueError, match="bpm must be 0"):
        BeatTrack(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="frame_offset"):
        BeatTrack(torch.tensor([120.0, 90.0]), torch.tensor([0]))
    dropped = BeatTrack(torch.tensor([120.0, 90.0])).without(torch.tensor([True, False]))
    assert dropped.bpm.tolist() == [0.0, 90.0]
    with pytest.raises(ValueError, match="beat_track must be true or false"):
        AudioLMConfig(beat_track=1)


def test_the_lm_reads_each_music_captions_tempo_and_gives_other_tasks_none(make_lm):
    lm = make_lm(beat_track=True)
    texts = TEXTS + ["hello at 120 bpm", "a slow ballad", "a slow ballad"]
    track = lm.conditioner("beat").track(texts, ["music", "music", "speech", "music", "speech"], [3, 0, 0, 0, 0])
    assert track.bpm.tolist() == [120.0, 0.0, 0.0, 72.0, 0.0] and track.frame_offset.tolist() == [3, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="no beat track"):
        make_lm().conditioner("beat").track(TEXTS, "music")
    with pytest.raises(ValueError, match="no beat track"):
        make_lm().generate(TEXTS, GenerationConfig(duration=1.0, task="music"), tracks={"beat": track})


def test_an_added_track_keeps_every_weight_and_changes_nothing_until_trained(make_lm, tmp_path):
    lm = make_lm()
    tracked = lm.with_track("beat")
    assert tracked.has_track("beat") and not lm.has_track("beat")
    before, after = lm.model.state_dict(), tracked.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert sorted(set(after) - set(before)) == ["tracks.beat.projection.weight"]
    ids, mask = lm.encode_texts(TEXTS, "music")
    codes = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, 12))
    track = tracked.conditioner("beat").track(TEXTS, "music")
    assert torch.equal(lm.model(ids, mask, codes).logits,
                       tracked.model(ids, mask, codes, tracks={"beat": track}).logits)
    with pytest.raises(ValueError, match="already has a beat track"):
        tracked.with_track("beat")
    # Saved and loaded: the config keeps the track, and the weights come back.
    trained = beat_lm(make_lm)
    trained.save_pretrained(tmp_path / "lm")
    loaded = AudioLM.from_pretrained(tmp_path / "lm", codec=trained.codec)
    assert loaded.has_track("beat")
    assert torch.equal(loaded.model.tracks["beat"].projection.weight, trained.model.tracks["beat"].projection.weight)


@pytest.mark.parametrize("with_phonemes", [False, True])
def test_cache_with_beat_features_equals_full_recomputation(make_lm, cached, with_phonemes):
    lm = beat_lm(make_lm, phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=3) if with_phonemes else beat_lm(make_lm)
    ids, mask = lm.encode_texts(TEXTS, "music")
    beats = BeatTrack(torch.tensor([133.0, 71.0]), torch.tensor([0, 4]))
    phonemes = PhonemeTrack(torch.tensor([[5, 6, 7], [0, 0, 0]]), torch.tensor([8, 8])) if with_phonemes else None
    steps = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, 10))
    steps[:, :, 0] = lm.config.empty_id
    with torch.no_grad():
        full = lm.model.logits(ids, mask, steps, tracks={"phoneme": phonemes, "beat": beats})
        assert not torch.allclose(full, lm.model.logits(ids, mask, steps, tracks={"phoneme": phonemes}))  # it matters
        features = lm.model.step_features(10, {"phoneme": phonemes, "beat": beats})
    assert torch.allclose(cached(lm.model, ids, mask, steps, features), full[:, :, 2:], atol=1e-5)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_greedy_generation_with_beats_is_the_same_in_a_batch_as_alone(make_lm, guidance_scale):
    lm = beat_lm(make_lm)
    config = GenerationConfig(duration=2.0, top_k=1, guidance_scale=guidance_scale, seed=0, task="music")
    texts = ["a calm piano melody at 120 bpm", "a calm piano melody at 75 bpm"]
    beats = lm.conditioner("beat")
    together = lm.generate(texts, config, tracks={"beat": beats.track(texts, "music")})
    for row, text in enumerate(texts):
        alone = lm.generate([text], config, tracks={"beat": beats.track([text], "music")})
        assert torch.equal(together[row:row + 1, :, :alone.shape[2]], alone)
    # The same caption at two tempos: only the track differs, and the codes follow it.
    same = lm.generate([texts[0]] * 2, config, tracks={"beat": BeatTrack(torch.tensor([120.0, 75.0]))})
    assert not torch.equal(same[0], same[1])
