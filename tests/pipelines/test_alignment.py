"""Forced alignment for the phoneme track: the Viterbi path, a flat start that finds known boundaries, alignments
turned into symbol starts, and duration tables."""

from __future__ import annotations

import numpy as np
import pytest

from lm.conditioners.phonemizer import LEAD, TRAIL, phoneme_ids, phoneme_units
from pipelines.alignment import SILENCE, Alignment, SoundAligner, SpeechItem, duration_table, flat_start, item_labels, viterbi


def test_viterbi_follows_the_cheapest_monotonic_path_and_may_skip_only_skippable_states():
    truth = np.array([0, 0, 1, 1, 1, 3, 3, 4])  # state 2 (skippable) takes no frames
    cost = np.ones((len(truth), 5))
    cost[np.arange(len(truth)), truth] = 0.0
    skippable = np.array([True, False, True, False, True])
    assert viterbi(cost, skippable).tolist() == truth.tolist()
    # The same costs, but state 2 may not be skipped: it gets at least one frame.
    path = viterbi(cost, np.array([True, False, False, False, True]))
    assert (path == 2).sum() >= 1 and (np.diff(path) >= 0).all() and (np.diff(path) <= 1).all()
    with pytest.raises(ValueError, match="do not fit"):
        viterbi(np.zeros((2, 5)), np.zeros(5, dtype=bool))


def _synthetic_items(seed: int, count: int = 40):
    """Utterances of random sounds, each sound a fixed vector plus noise held for a random number of frames."""
    alphabet = ["a", "b", "d", "e", "i", "k", "m", "o", "s", "t"]
    sounds_rng = np.random.default_rng(1234)  # the same sounds for every seed
    vectors = {label: sounds_rng.normal(0, 3, 8) for label in alphabet + [SILENCE]}
    rng = np.random.default_rng(seed)
    items, truths = [], []
    for _ in range(count):
        sounds = [str(rng.choice(alphabet))]
        while len(sounds) < rng.integers(4, 9):  # no sound twice in a row: nothing would mark their boundary
            sounds.append(str(rng.choice([a for a in alphabet if a != sounds[-1]])))
        labels = [SILENCE] + sounds + [SILENCE]
        lengths = rng.integers(2, 9, len(labels))
        frames = np.concatenate([np.tile(vectors[label], (n, 1)) for label, n in zip(labels, lengths)])
        items.append(SpeechItem((frames + rng.normal(0, 0.5, frames.shape)).astype(np.float32), labels, "v"))
        truths.append(np.repeat(np.arange(len(labels)), lengths))
    return items, truths


def test_a_flat_start_finds_the_boundaries_of_known_sounds():
    items, truths = _synthetic_items(0)
    start = np.mean([(flat_start(len(t), t[-1] + 1) == t).mean() for t in truths])
    aligner, paths = SoundAligner.fit(items, iterations=6, progress=False)
    exact = np.mean([(p == t).mean() for p, t in zip(paths, truths)])
    assert start < 0.75 and exact > 0.99
    held, held_truths = _synthetic_items(1, count=10)  # other utterances: the fitted means align them too
    assert np.mean([(p == t).mean() for p, t in zip(aligner.align(held), held_truths)]) > 0.97
    with pytest.raises(ValueError, match="iterations"):
        SoundAligner.fit(items, iterations=0)


def test_an_alignment_gives_each_symbol_its_start_and_a_skipped_pause_no_frames():
    phonemes = "h@l'oU | h'aU"
    labels = item_labels(phonemes)
    assert labels == [SILENCE, "h", "@", "l", "o", "U", "|", "h", "a", "U", SILENCE]
    # silence 0-2, h 3-4, @ 5, l 6-7, o 8, U 9-10, "|" skipped, h 11, a 12-13, U 14, silence 15-16
    path = np.repeat([0, 1, 2, 3, 4, 5, 7, 8, 9, 10], [3, 2, 1, 2, 1, 2, 1, 2, 1, 2])
    alignment = Alignment.from_path(path, phonemes)
    assert alignment.end == 15 and len(alignment.starts) == len(phoneme_ids(phonemes))
    starts = dict(zip(range(len(phonemes)), alignment.starts))
    assert [starts[first] for _, first in phoneme_units(phonemes)] == [3, 5, 6, 8, 9, 11, 11, 12, 14]
    assert starts[3] == 8 and starts[8] == 11  # the stress mark and the clause's spaces start with the next sound


def test_duration_table_averages_each_voices_sounds_and_silences():
    a = Alignment.from_path(np.repeat([0, 1, 2, 3], [2, 3, 5, 1]), "ab")  # lead 2, a 3, b 5, trail 1
    b = Alignment.from_path(np.repeat([1, 2, 3], [1, 1, 4]), "ab")  # lead 0, a 1, b 1, trail 4
    table = duration_table([a, b], ["ab", "ab"], ["v", "w"], [11, 6])
    assert table["v"] == {LEAD: 2.0, TRAIL: 1.0, "a": 3.0, "b": 5.0}
    assert table["w"] == {LEAD: 0.0, TRAIL: 4.0, "a": 1.0, "b": 1.0}
    assert table[""] == {LEAD: 1.0, TRAIL: 2.5, "a": 2.0, "b": 3.0}
