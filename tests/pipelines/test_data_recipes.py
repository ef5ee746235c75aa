"""The data recipes: tiny real runs of the speech and music synthesizers, and the properties of their plans.

The tiny runs need the Debian packages in SPEECH_APT_PACKAGES / MUSIC_APT_PACKAGES (`make setup` installs them).
Split hold-outs are checked on hundreds of planned clips (planning is cheap; synthesis is not).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import datasets
import mido
import numpy as np
import pytest

from pipelines.data import make_music_dataset, make_speech_dataset
from pipelines.data import common, music, speech
from pipelines.data.common import ClipResult, synthesize_splits

HOURS = 0.004  # 14.4 s: a few clips in train, one in test


def _metadata(ds: datasets.DatasetDict) -> dict[str, list[dict]]:
    return {s: ds[s].remove_columns("audio").to_list() for s in ds}


def _audio_bytes(ds: datasets.DatasetDict) -> dict[str, list[bytes]]:
    return {s: [a["bytes"] for a in ds[s].cast_column("audio", datasets.Audio(decode=False))["audio"]] for s in ds}


@pytest.fixture(scope="module")
def speech_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    a = make_speech_dataset(root / "a", HOURS, seed=0, sample_rate=16000, num_proc=2, progress=False)
    b = make_speech_dataset(root / "b", HOURS, seed=0, sample_rate=16000, num_proc=1, progress=False)
    return root, a, b


@pytest.fixture(scope="module")
def music_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    a = make_music_dataset(root / "a", HOURS, seed=0, sample_rate=22050, num_proc=2, progress=False)
    b = make_music_dataset(root / "b", HOURS, seed=0, sample_rate=22050, num_proc=1, progress=False)
    return root, a, b


def _check_saved_dataset(path, columns: set[str], sample_rate: int, hours: float) -> datasets.DatasetDict:
    ds = datasets.load_from_disk(str(path))
    assert set(ds) == {"train", "test"}
    for split, target in (("train", hours * 3600 * 0.9), ("test", hours * 3600 * 0.1)):
        d = ds[split]
        assert set(d.column_names) == columns
        assert len(d) >= 1
        assert sum(d["duration"]) >= target  # filled up to its share of the hours
        for row in d:
            samples = row["audio"].get_all_samples()  # torchcodec decoder
            wav = samples.data.numpy()
            assert samples.sample_rate == sample_rate and wav.shape[0] == 1  # mono at the requested rate
            assert wav.shape[1] == pytest.approx(row["duration"] * sample_rate, abs=2)
            assert np.sqrt(np.mean(wav**2)) > 0.01  # not silent
            assert 0.05 < np.abs(wav).max() <= 1.0
    info = json.loads((path / "recipe.json").read_text())
    assert info["splits"]["train"]["clips"] == len(ds["train"]) and info["splits"]["test"]["failures"] >= 0
    return ds


def test_speech_dataset_on_disk_decodes_with_its_columns(speech_runs):
    root, a, _ = speech_runs
    ds = _check_saved_dataset(root / "a", {"audio", "text", "voice", "engine", "speed", "synth_settings",
                                           "text_source", "duration"}, 16000, HOURS)
    assert _metadata(ds) == _metadata(a)
    for row in ds["train"].remove_columns("audio"):
        assert speech.clean_sentence(row["text"]) == row["text"]
        assert row["voice"] in {v.name for v in speech.VOICES}
        assert 1.0 < row["duration"] < 15.0


def test_speech_same_seed_same_clips_whatever_num_proc(speech_runs):
    _, a, b = speech_runs
    assert _metadata(a) == _metadata(b)
    assert _audio_bytes(a) == _audio_bytes(b)  # flite, festival, espeak-ng and sox are deterministic


def test_speech_test_split_holds_out_voices_and_sentences(speech_runs):
    _, a, _ = speech_runs
    assert set(a["test"]["voice"]) <= speech.TEST_VOICES
    assert not set(a["train"]["voice"]) & speech.TEST_VOICES
    plans = {s: [speech.plan_speech_job(0, s, i, 16000) for i in range(400)] for s in ("train", "test")}
    train_voices = {j.voice.name for j in plans["train"]}
    test_voices = {j.voice.name for j in plans["test"]}
    assert not train_voices & test_voices
    assert {"flite", "festival", "espeak"} == {j.voice.engine for j in plans["test"]}
    pools = speech.speech_sentences()
    assert len(pools["train"]) > 10000 and len(pools["test"]) > 1000
    assert not {t for _, t in pools["train"]} & {t for _, t in pools["test"]}
    assert {j.text for j in plans["test"]} <= {t for _, t in pools["test"]}


def test_the_extra_voice_set_reads_the_same_sentences_with_other_speakers_and_holds_two_out(tmp_path):
    ds = make_speech_dataset(tmp_path / "extra", HOURS, seed=0, sample_rate=16000, progress=False,
                             voice_set="extra")
    _check_saved_dataset(tmp_path / "extra", set(ds["train"].column_names), 16000, HOURS)
    extra = {v.name for v in speech.EXTRA_VOICES}
    assert set(ds["train"]["voice"]) <= extra - speech.EXTRA_TEST_VOICES
    assert set(ds["test"]["voice"]) <= speech.EXTRA_TEST_VOICES
    assert json.loads((tmp_path / "extra" / "recipe.json").read_text())["voice_set"] == "extra"
    plans = {s: [speech.plan_speech_job(0, s, i, 16000, "extra") for i in range(300)] for s in ("train", "test")}
    assert {j.voice.name for j in plans["train"]} == extra - speech.EXTRA_TEST_VOICES  # every voice in use
    assert {j.voice.name for j in plans["test"]} == speech.EXTRA_TEST_VOICES
    assert not extra & {v.name for v in speech.VOICES}  # no speaker of the English set
    # The same sentences, rates, pitches and levels as the English set's plan; only the voices differ.
    english = [speech.plan_speech_job(0, "train", i, 16000) for i in range(300)]
    assert [(j.text, j.speed) for j in plans["train"]] == [(j.text, j.speed) for j in english]


def test_the_extra2_voice_set_reads_both_splits_with_every_voice_and_holds_out_only_sentences(tmp_path):
    ds = make_speech_dataset(tmp_path / "extra2", HOURS, seed=0, sample_rate=16000, progress=False,
                             voice_set="extra2")
    _check_saved_dataset(tmp_path / "extra2", set(ds["train"].column_names), 16000, HOURS)
    extra2 = {v.name for v in speech.EXTRA2_VOICES}
    assert extra2 == {"festival-ru-nsh"} | speech.EXTRA_TEST_VOICES
    assert set(ds["train"]["voice"]) | set(ds["test"]["voice"]) <= extra2
    assert not set(ds["train"]["text"]) & set(ds["test"]["text"])
    plans = {s: [speech.plan_speech_job(0, s, i, 16000, "extra2") for i in range(100)] for s in ("train", "test")}
    assert {j.voice.name for j in plans["train"]} == {j.voice.name for j in plans["test"]} == extra2
    assert not extra2 & {v.name for v in speech.VOICES}


def test_the_cli_offers_every_voice_set():
    from pipelines.cli import build_parser

    data = build_parser()._subparsers._group_actions[0].choices["data"]
    voice_set = next(a for a in data._actions if a.dest == "voice_set")
    assert set(voice_set.choices) == set(speech.VOICE_SETS)


def test_speech_plan_depends_on_the_seed():
    jobs = [[speech.plan_speech_job(seed, "train", i, 24000) for i in range(20)] for seed in (0, 0, 1)]
    assert jobs[0] == jobs[1]
    assert [j.text for j in jobs[0]] != [j.text for j in jobs[2]]


def test_clean_sentence_keeps_only_readable_text():
    assert speech.clean_sentence("And the LORD spake unto Moses, saying,  Go.") == \
        "And the Lord spake unto Moses, saying, Go."
    assert speech.clean_sentence("Q: Why did the chicken cross the road?") == "Why did the chicken cross the road?"
    for bad in ("Too short.", "He paid 100 dollars for it.", "The NASA probe left orbit.", "lowercase start here.",
                "No final punctuation here", "Call (me) maybe tonight.", "He met Mr.", "J. R. Smith wrote it down.",
                " ".join(["word"] * 26) + "."):
        assert speech.clean_sentence(bad) is None, bad


def test_music_dataset_on_disk_decodes_with_its_columns(music_runs):
    root, a, _ = music_runs
    ds = _check_saved_dataset(root / "a", {"audio", "text", "instrument", "family", "program", "accompaniment",
                                           "genre", "mood", "tempo", "key", "mode", "meter", "dynamics",
                                           "soundfont", "caption_template", "midi", "duration"}, 22050, HOURS)
    assert _metadata(ds) == _metadata(a)
    for split in ("train", "test"):
        for row in ds[split].remove_columns("audio"):
            assert 4.0 < row["duration"] <= 15.0
            assert row["instrument"] in row["text"] and str(row["tempo"]) in row["text"]
            # The stored MIDI is what was rendered: its tempo and lead program are the row's.
            mid = mido.MidiFile(file=io.BytesIO(row["midi"]))
            tempo = next(m.tempo for m in mid if m.type == "set_tempo")
            assert round(mido.tempo2bpm(tempo)) == row["tempo"]
            programs = {m.channel: m.program for m in mid if m.type == "program_change"}
            assert programs[0] == row["program"]
            assert music.GM_FAMILIES[row["program"] // 8] == row["family"]


def test_music_same_seed_same_clips_whatever_num_proc(music_runs):
    _, a, b = music_runs
    assert _metadata(a) == _metadata(b)
    assert _audio_bytes(a) == _audio_bytes(b)  # a new synthesizer per clip: no state carried between clips


def test_music_test_split_holds_out_soundfont_templates_and_pairs(music_runs):
    _, a, _ = music_runs
    assert set(a["train"]["soundfont"]) == {music.TRAIN_SOUNDFONT.name}
    assert set(a["test"]["soundfont"]) == {music.TEST_SOUNDFONT.name}
    plans = {s: [music.plan_music_job(0, s, i, 24000) for i in range(600)] for s in ("train", "test")}
    templates = {s: {j.meta["caption_template"] for j in plans[s]} for s in plans}
    assert templates["train"] == {f"train-{i}" for i in range(len(music.CAPTION_TEMPLATES))}
    assert templates["test"] == {f"test-{i}" for i in range(len(music.TEST_CAPTION_TEMPLATES))}
    pairs = {s: {(j.meta["instrument"], j.meta["mood"]) for j in plans[s]} for s in plans}
    assert not pairs["train"] & music.TEST_INSTRUMENT_MOODS
    assert pairs["test"] & music.TEST_INSTRUMENT_MOODS == music.TEST_INSTRUMENT_MOODS
    for j in plans["train"] + plans["test"]:  # every caption names what it was built from
        assert j.meta["instrument"] in j.meta["text"] and f"{j.meta['tempo']}" in j.meta["text"]
        assert j.spec.tempo == j.meta["tempo"] and j.spec.melody_program == j.meta["program"]
        assert j.spec.duration <= 13.0 + 1e-9 and j.spec.bars >= 2
    assert len({j.meta["text"] for j in plans["train"]}) > 0.95 * len(plans["train"])  # varied wording


def _fake_plan(split: str, index: int) -> int:
    return index


def _fake_work(jobs: list[int], clips_dir: str) -> list[ClipResult]:
    # every third clip fails; the others last 1 + index/10 seconds
    return [ClipResult(i, error="boom") if i % 3 == 2 else ClipResult(i, f"{clips_dir}/{i}", 1.0 + i / 10)
            for i in jobs]


def test_failed_clips_are_skipped_counted_and_the_split_still_fills(tmp_path):
    with pytest.warns(RuntimeWarning, match="skipped"):
        clips, stats = synthesize_splits(_fake_plan, _fake_work, {"train": 10.0, "test": 2.0}, tmp_path, 1,
                                         progress=False, desc="fake", expected_clip_seconds=1.0, batch_size=4)
    # in job order, up to the first clip that brings the split to 10 s: 1.0 + 1.1 + 1.3 + ... + 1.9 = 10.0
    assert [c.index for c in clips["train"]] == [0, 1, 3, 4, 6, 7, 9]
    assert stats["train"].failures == 3 and stats["train"].seconds == pytest.approx(10.0)
    assert [c.index for c in clips["test"]] == [0, 1]


def test_a_run_where_everything_fails_stops_with_the_errors(tmp_path):
    def always_fails(jobs, clips_dir):
        return [ClipResult(i, error="no such voice") for i in jobs]

    with pytest.raises(RuntimeError, match="no such voice"):
        synthesize_splits(_fake_plan, always_fails, {"train": 10.0}, tmp_path, 1, progress=False, desc="fake",
                          expected_clip_seconds=1.0, batch_size=4)


def test_existing_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_music_dataset(tmp_path / "out", 0.001, progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind


def test_make_setup_installs_every_package_the_recipes_need():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    listed = set(re.search(r"^APT_PACKAGES := (.*?)\n\S", makefile, re.S | re.M).group(1).replace("\\", " ").split())
    needed = {*music.MUSIC_APT_PACKAGES, *(p for vs in speech.VOICE_SETS.values() for p in vs.apt_packages)}
    assert needed <= listed, sorted(needed - listed)


def test_missing_tools_name_the_apt_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite, festival, espeak-ng, sox on PATH
    with pytest.raises(FileNotFoundError, match="apt-get install --no-install-recommends flite festival"):
        make_speech_dataset(tmp_path / "out", 0.001, progress=False)
    with pytest.raises(FileNotFoundError, match="timgm6mb-soundfont"):
        common.check_tools("music", music.MUSIC_APT_PACKAGES, files=[tmp_path / "missing.sf2"])


@pytest.mark.parametrize("kwargs", [dict(hours=0), dict(hours=-1.0), dict(hours=1, test_fraction=1.0),
                                    dict(hours=1, sample_rate=1000), dict(hours=1, num_proc=0),
                                    dict(hours=1, voice_set="german")])
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_speech_dataset(tmp_path / "out", **kwargs)
