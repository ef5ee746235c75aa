"""The aligned phoneme track: espeak-ng phonemes, where each frame's phoneme sits, padding and batch invariance,
an added track that starts silent, and cached generation with a track against the cache-free reference."""

from __future__ import annotations

import shutil

import pytest
import torch

from lm import AudioLM, GenerationConfig, PhonemeTrack
from lm.conditioners import phonemizer as phonemizer_module
from lm.conditioners.phonemizer import (END_ID, LEAD, VOCAB_SIZE, PhonemizerError, lay_out, phoneme_ids, phoneme_units,
                                        phonemize)

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog"]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def tracked_lm(make_lm, seed: int = 0, **overrides) -> AudioLM:
    """A tiny random LM with a phoneme track whose projection is not zero (so the track changes the logits)."""
    lm = make_lm(seed=seed, phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=3, **overrides)
    with torch.no_grad():
        weight = lm.model.tracks["phoneme"].projection.weight
        torch.nn.init.normal_(weight, std=0.5, generator=torch.Generator().manual_seed(seed))
    return lm


def random_track(B: int, lengths: list[int], total: list[int], offset: list[int] | None = None) -> PhonemeTrack:
    generator = torch.Generator().manual_seed(1)
    ids = torch.zeros(B, max(lengths), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(2, VOCAB_SIZE, (n,), generator=generator)
    return PhonemeTrack(ids, torch.tensor(total), None if offset is None else torch.tensor(offset))


# ----------------------------------------------------------------------------------------- phonemes


@needs_espeak
def test_phonemize_gives_espeak_mnemonics_with_clause_breaks_and_ids_in_range():
    hello = phonemize("Hello, how are you?")
    assert hello == phonemize("Hello, how are you?")
    assert hello.startswith("h@l'oU | ") and "ju:" in hello  # espeak-ng's ASCII mnemonics; a comma breaks a clause
    ids = phoneme_ids(hello)
    assert len(ids) == len(hello) and all(2 <= i < VOCAB_SIZE for i in ids)
    assert phonemize("[voice] $5 -v --help") != ""  # read from stdin: never an option or a command


def test_phoneme_ids_map_printable_ascii_and_skip_the_rest():
    assert phoneme_ids(" ~") == [2, VOCAB_SIZE - 1]
    assert phoneme_ids("a\nb\u00e9") == [ord("a") - 30, ord("b") - 30]


def test_a_missing_espeak_is_a_clear_error(monkeypatch):
    phonemize.cache_clear()
    monkeypatch.setattr(phonemizer_module.shutil, "which", lambda name: None)
    with pytest.raises(PhonemizerError, match="apt install espeak-ng"):
        phonemize("never phonemized before")
    phonemize.cache_clear()


# ----------------------------------------------------------------------------------------- the track


def test_each_frame_gets_its_phoneme_then_the_end_and_rows_without_phonemes_get_nothing(make_lm):
    lm = make_lm(phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=3)
    phonemes, D = lm.model.tracks["phoneme"], lm.config.hidden_size
    with torch.no_grad():  # the centre tap passes each phoneme's embedding through, the projection is identity
        phonemes.conv.weight.zero_()
        phonemes.conv.bias.zero_()
        phonemes.conv.weight[:, :, 1] = torch.eye(D)
        phonemes.projection.weight.copy_(torch.eye(D))
    track = PhonemeTrack(torch.tensor([[5, 6, 7, 0], [0, 0, 0, 0], [9, 10, 11, 12]]), torch.tensor([6, 4, 8]),
                         torch.tensor([0, 0, -2]))
    with torch.no_grad():
        features = phonemes(track, 10)  # (B, S, D)
    table = phonemes.embedding.weight
    # Row 0: 3 phonemes over 6 frames, 2 frames each, then the end feature.
    expected = torch.stack([table[i] for i in [5, 5, 6, 6, 7, 7] + [END_ID] * 4])
    assert torch.allclose(features[0], expected, atol=1e-6)
    assert torch.equal(features[1], torch.zeros(10, D))
    # Row 2 starts 2 frames before the utterance (an audio prompt): nothing there, then 4 phonemes over 8 frames.
    expected = torch.stack([torch.zeros(D)] * 2 + [table[i] for i in [9, 9, 10, 10, 11, 11, 12, 12]])
    assert torch.allclose(features[2], expected, atol=1e-6)


def test_starts_put_each_symbol_at_its_frame_skip_symbols_without_frames_and_silence_the_edges(make_lm):
    lm = make_lm(phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=3)
    phonemes, D = lm.model.tracks["phoneme"], lm.config.hidden_size
    with torch.no_grad():
        phonemes.conv.weight.zero_()
        phonemes.conv.bias.zero_()
        phonemes.conv.weight[:, :, 1] = torch.eye(D)
        phonemes.projection.weight.copy_(torch.eye(D))
    # Row 0: symbol 6 takes no frames (it starts where 7 does), frames 0-1 come before the first symbol and
    # frames from 7 on are past the end; row 1 is seen from 2 frames before its start (an audio prompt).
    track = PhonemeTrack(torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), torch.tensor([7, 4]), torch.tensor([0, -2]),
                         starts=torch.tensor([[2, 4, 4, 5], [0, 1, 99, 0]]))
    with torch.no_grad():
        features = phonemes(track, 8)
    table, end = phonemes.embedding.weight, phonemes.embedding.weight[END_ID]
    expected = torch.stack([end, end, table[5], table[5], table[7], table[8], table[8], end])
    assert torch.allclose(features[0], expected, atol=1e-6)
    expected = torch.stack([torch.zeros(D)] * 2 + [table[9], table[10], table[10], table[10], end, end])
    assert torch.allclose(features[1], expected, atol=1e-6)


@needs_espeak
def test_rows_without_starts_are_spread_evenly_when_others_have_starts(make_lm):
    lm = tracked_lm(make_lm)
    totals, offsets = [40, 23], [0, -3]
    phonemes = lm.conditioner("phoneme")
    even = phonemes.track(TEXTS, totals, offsets)
    given = list(range(len(phoneme_ids(phonemize(TEXTS[0])))))
    mixed = phonemes.track(TEXTS, totals, offsets, starts=[given, None])  # row 1 written as even starts
    assert mixed.starts is not None and torch.equal(mixed.starts[0, :len(given)], torch.tensor(given))
    with torch.no_grad():
        assert torch.allclose(phonemes(even, 30)[1], phonemes(mixed, 30)[1], atol=1e-6)
    with pytest.raises(ValueError, match="starts"):
        phonemes.track(TEXTS, totals, offsets, starts=[given[:-1], None])


def test_starts_must_match_the_ids_and_not_decrease():
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="shape of ids"):
        PhonemeTrack(ids, torch.tensor([9]), starts=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="must not decrease"):
        PhonemeTrack(ids, torch.tensor([9]), starts=torch.tensor([[0, 4, 3]]))


def test_phoneme_units_group_modifiers_and_skip_stress_and_word_boundaries():
    assert phoneme_units("h@l'oU") == [("h", 0), ("@", 1), ("l", 2), ("o", 4), ("U", 5)]
    assert phoneme_units("D@2 i: | n'0t") == [("D", 0), ("@2", 1), ("i:", 4), ("|", 7), ("n", 9), ("0", 11),
                                               ("t", 12)]
    assert phoneme_units("'") == [] and phoneme_units("") == []


def test_lay_out_gives_each_sound_its_duration_and_symbols_without_sound_no_frames():
    starts, end = lay_out("h@l'oU", {LEAD: 3, "h": 2, "@": 4, "l": 3, "o": 5, "U": 1})
    assert starts == [3, 5, 9, 12, 12, 17] and end == 18
    assert len(starts) == len(phoneme_ids("h@l'oU"))
    starts, end = lay_out("h@", {"h": 2, "x": 6})  # an unknown sound lasts the mean of the known ones
    assert starts == [0, 2] and end == 6


def test_track_features_do_not_depend_on_the_batchs_padding(make_lm):
    lm = tracked_lm(make_lm)
    track = random_track(2, [5, 11], [12, 30], [0, 3])
    with torch.no_grad():
        phonemes = lm.model.tracks["phoneme"]
        together = phonemes(track, 20)
        alone = phonemes(PhonemeTrack(track.ids[:1, :5], track.total_frames[:1], track.frame_offset[:1]), 20)
    assert torch.allclose(together[:1], alone, atol=1e-6)


def test_an_added_track_keeps_every_weight_and_changes_nothing_until_trained(make_lm):
    lm = make_lm()
    tracked = lm.with_track("phoneme")
    assert tracked.config.phoneme_vocab_size == VOCAB_SIZE and not lm.has_track("phoneme")
    before, after = lm.model.state_dict(), tracked.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert sorted(set(after) - set(before)) == ["tracks.phoneme.conv.bias", "tracks.phoneme.conv.weight",
                                                "tracks.phoneme.embedding.weight", "tracks.phoneme.projection.weight"]
    ids, mask = lm.encode_texts(TEXTS, "speech")
    codes = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, 12))
    track = random_track(2, [4, 9], [12, 12])
    assert torch.equal(lm.model(ids, mask, codes).logits,
                       tracked.model(ids, mask, codes, tracks={"phoneme": track}).logits)
    with pytest.raises(ValueError, match="already has a phoneme track"):
        tracked.with_track("phoneme")


def test_a_dropped_condition_drops_the_track(make_lm):
    track = random_track(2, [4, 9], [12, 12])
    dropped = track.without(torch.tensor([True, False]))
    assert not dropped.ids[0].any() and torch.equal(dropped.ids[1], track.ids[1])


def test_cache_with_track_features_equals_full_recomputation(make_lm, cached):
    lm = tracked_lm(make_lm)
    ids, mask = lm.encode_texts(TEXTS, "speech")
    track = random_track(2, [6, 13], [9, 14])
    steps = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, 10))
    steps[:, :, 0] = lm.config.empty_id
    with torch.no_grad():
        full = lm.model.logits(ids, mask, steps, tracks={"phoneme": track})
        features = lm.model.tracks["phoneme"](track, 10)
    assert torch.allclose(cached(lm.model, ids, mask, steps, features), full[:, :, 2:], atol=1e-5)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_cached_greedy_generation_with_a_track_equals_the_reference(make_lm, reference, guidance_scale):
    lm = tracked_lm(make_lm)
    config = GenerationConfig(duration=2.0, top_k=1, guidance_scale=guidance_scale, seed=0, task="speech")
    track = random_track(2, [7, 12], [15, 20])
    codes = lm.generate(TEXTS, config, tracks={"phoneme": track})
    expected = reference(lm, TEXTS, config, phonemes=track)
    for b, item in enumerate(expected):
        assert torch.equal(codes[b, :, :item.shape[1]], item)
    assert not torch.equal(codes, lm.generate(TEXTS, config))  # the track is not ignored


def test_a_track_after_an_audio_prompt_equals_the_reference(make_lm, reference):
    lm = tracked_lm(make_lm, seed=3)
    config = GenerationConfig(duration=1.5, top_k=1, guidance_scale=3.0, seed=0, task="speech")
    prompt = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, 4))
    track = random_track(2, [5, 8], [12, 15], [-4, -4])
    codes = lm.generate(TEXTS, config, audio_prompt=prompt, tracks={"phoneme": track})
    for b, item in enumerate(reference(lm, TEXTS, config, prompt, phonemes=track)):
        assert torch.equal(codes[b, :, :item.shape[1]], item)


def test_bad_tracks_and_configs_are_refused(make_lm, config_factory):
    plain, tracked = make_lm(), tracked_lm(make_lm)
    config = GenerationConfig(duration=1.0, top_k=1, task="speech")
    track = random_track(2, [3, 4], [10, 10])
    with pytest.raises(ValueError, match="no phoneme track"):
        plain.generate(TEXTS, config, tracks={"phoneme": track})
    with pytest.raises(ValueError, match="2 rows for 1 texts"):
        tracked.generate(TEXTS[:1], config, tracks={"phoneme": track})
    with pytest.raises(ValueError, match="phoneme ids must lie in"):
        tracked.model.tracks["phoneme"](PhonemeTrack(torch.tensor([[VOCAB_SIZE]]), torch.tensor([5])), 4)
    with pytest.raises(ValueError, match="total_frames must be >= 1"):
        PhonemeTrack(torch.tensor([[3]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="phoneme_vocab_size must be 0"):
        config_factory(phoneme_vocab_size=1)
    with pytest.raises(ValueError, match="phoneme_kernel must be odd"):
        config_factory(phoneme_vocab_size=VOCAB_SIZE, phoneme_kernel=4)
