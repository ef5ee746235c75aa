"""The real-recording recipes: tiny datasets built from the installed Debian packages, their hold-outs by speaker
and track, determinism, and `rvqaudio eval-codec` on a tiny real split.

The packages are REAL_SPEECH_APT_PACKAGES / REAL_MUSIC_APT_PACKAGES (`make setup` installs them); a test skips,
naming the missing package, only when one is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import datasets
import numpy as np
import pytest

from pipelines.data import make_real_music_dataset, make_real_speech_dataset
from pipelines.data import drums, real_music, real_speech

SPEECH_HOURS = 0.004  # 14.4 s: about ten prompts in train, one or two in test
MUSIC_HOURS = 0.02  # 72 s: a track or two in train, one in test


def _require(packages: tuple[str, ...]) -> None:
    missing = [p for p in packages if p != "ffmpeg" and subprocess.run(
        ["dpkg", "-s", p], capture_output=True).returncode != 0]
    if shutil.which("ffmpeg") is None:
        missing.insert(0, "ffmpeg")
    if missing:
        pytest.skip(f"Debian packages not installed: {' '.join(missing)} (`make setup` installs them)")


def _metadata(ds: datasets.DatasetDict) -> dict[str, list[dict]]:
    return {s: ds[s].remove_columns("audio").to_list() for s in ds}


def _audio_bytes(ds: datasets.DatasetDict) -> dict[str, list[bytes]]:
    return {s: [a["bytes"] for a in ds[s].cast_column("audio", datasets.Audio(decode=False))["audio"]] for s in ds}


def _check_audio(ds: datasets.DatasetDict, sample_rate: int) -> None:
    for split in ("train", "test"):
        assert len(ds[split]) >= 1
        for row in ds[split]:
            samples = row["audio"].get_all_samples()
            wav = samples.data.numpy()
            assert samples.sample_rate == sample_rate and wav.shape[0] == 1  # mono at the requested rate
            assert wav.shape[1] == pytest.approx(row["duration"] * sample_rate, abs=2)
            assert 0.05 < np.abs(wav).max() <= 1.0


@pytest.fixture(scope="module")
def speech_runs(tmp_path_factory):
    _require(real_speech.REAL_SPEECH_APT_PACKAGES)
    root = tmp_path_factory.mktemp("real-speech")
    a = make_real_speech_dataset(root / "a", SPEECH_HOURS, seed=0, sample_rate=16000, num_proc=2, progress=False)
    b = make_real_speech_dataset(root / "b", SPEECH_HOURS, seed=0, sample_rate=16000, num_proc=1, progress=False)
    return root, a, b


@pytest.fixture(scope="module")
def music_runs(tmp_path_factory):
    _require(real_music.REAL_MUSIC_APT_PACKAGES)
    root = tmp_path_factory.mktemp("real-music")
    a = make_real_music_dataset(root / "a", MUSIC_HOURS, seed=0, sample_rate=16000, num_proc=2, progress=False)
    b = make_real_music_dataset(root / "b", MUSIC_HOURS, seed=0, sample_rate=16000, num_proc=1, progress=False)
    return root, a, b


def test_real_speech_on_disk_has_the_recipe_columns_and_transcripts(speech_runs):
    root, a, _ = speech_runs
    ds = datasets.load_from_disk(str(root / "a"))
    assert set(ds) == {"train", "test"}
    assert set(ds["train"].column_names) == {"audio", "text", "voice", "engine", "language", "prompt", "source",
                                             "duration"}
    assert _metadata(ds) == _metadata(a)
    _check_audio(ds, 16000)
    for split, share in (("train", 0.9), ("test", 0.1)):
        assert sum(ds[split]["duration"]) >= SPEECH_HOURS * 3600 * share  # filled to its share of the hours
    transcripts = {s.folder: real_speech.read_transcripts(s.language) for s in real_speech.PROMPT_SETS}
    for row in ds["train"].remove_columns("audio").to_list() + ds["test"].remove_columns("audio").to_list():
        folder, name = row["prompt"].split("/", 1)
        assert row["text"] and row["text"] == transcripts[folder][name]  # what the package says the prompt says
        assert row["engine"] == "recording" and row["source"].startswith(f"asterisk-core-sounds-{row['language']}")
    info = json.loads((root / "a" / "recipe.json").read_text())
    assert info["recipe"] == "real-speech" and info["splits"]["test"]["clips"] == len(ds["test"])


def test_real_speech_same_seed_same_clips_whatever_num_proc(speech_runs):
    _, a, b = speech_runs
    assert _metadata(a) == _metadata(b)
    assert _audio_bytes(a) == _audio_bytes(b)


def test_real_speech_test_split_holds_out_speakers(speech_runs):
    _, a, _ = speech_runs
    voices = {s.speaker: s.voice for s in real_speech.PROMPT_SETS}
    test_voices = {voices[s] for s in real_speech.REAL_SPEECH_TEST_SPEAKERS}
    assert set(a["test"]["voice"]) <= test_voices and not set(a["train"]["voice"]) & test_voices
    pools = real_speech.asterisk_prompts()  # every prompt either split can ever hold
    train = {p.prompt_set.speaker for p in pools["train"]}
    test = {p.prompt_set.speaker for p in pools["test"]}
    assert test == set(real_speech.REAL_SPEECH_TEST_SPEAKERS) and not train & test
    assert {p.prompt_set.language for p in pools["train"]} == {"en", "es", "it", "ru"}
    assert len(pools["train"]) > 2000 and len(pools["test"]) > 400
    assert all(p.text and not p.name.startswith("silence/") for p in pools["train"] + pools["test"])


def test_real_speech_order_depends_on_the_seed():
    _require(real_speech.REAL_SPEECH_APT_PACKAGES)
    plans = [real_speech.plan_real_speech(seed, 16000)["train"][:20] for seed in (0, 0, 1)]
    assert plans[0] == plans[1] and [j.prompt for j in plans[0]] != [j.prompt for j in plans[2]]


def test_real_music_on_disk_has_its_columns_and_cuts_tracks_into_clips(music_runs):
    root, a, _ = music_runs
    ds = datasets.load_from_disk(str(root / "a"))
    assert set(ds["train"].column_names) == {"audio", "text", "source", "track", "title", "kind", "start",
                                             "duration"}
    assert _metadata(ds) == _metadata(a)
    _check_audio(ds, 16000)
    packages = set(real_music.REAL_MUSIC_APT_PACKAGES)
    for split in ("train", "test"):
        rows = ds[split].remove_columns("audio").to_list()
        for row in rows:
            assert row["source"] in packages and row["track"].startswith(row["source"] + "/")
            assert row["title"] and row["text"] and 2.0 <= row["duration"] <= real_music.CLIP_SECONDS + 1e-3
        for track in {r["track"] for r in rows}:  # a track's clips are its pieces, in order (silent ones left out)
            pieces = [r["start"] / real_music.CLIP_SECONDS for r in rows if r["track"] == track]
            assert pieces == sorted(set(pieces)) and np.allclose(pieces, np.round(pieces), atol=1e-4)


def test_real_music_same_seed_same_clips_whatever_num_proc(music_runs):
    _, a, b = music_runs
    assert _metadata(a) == _metadata(b)
    assert _audio_bytes(a) == _audio_bytes(b)


def test_real_music_test_split_shares_no_track_or_drum_kit_with_train(music_runs):
    _, a, _ = music_runs
    assert not set(a["train"]["track"]) & set(a["test"]["track"])
    tracks = real_music.music_tracks()  # every track either split can ever hold, whatever the seed
    train, test = ({t.id for t in tracks[s]} for s in ("train", "test"))
    assert not train & test
    assert {t.kit for t in tracks["test"] if t.kit} == set(real_music.TEST_DRUM_KITS)
    assert not {t.kit for t in tracks["train"]} & real_music.TEST_DRUM_KITS
    assert {t.package for t in tracks["test"]} >= {"drascula-music", "colobot-common-sounds", "hydrogen-drumkits"}
    assert {t.package for t in tracks["train"]} == set(real_music.REAL_MUSIC_APT_PACKAGES[1:])
    assert len(tracks["train"]) > 60 and len(tracks["test"]) > 12
    assert len({t.id for t in tracks["train"] if t.package == "drascula-music"}) > 20  # one copy of each track


def test_drum_tracks_sequence_a_kit_s_real_hits():
    _require((real_music.DRUM_PACKAGE,))
    kits = drums.drum_kits()
    assert len(kits) >= 10 and set(real_music.TEST_DRUM_KITS) <= set(kits)
    a, meta = drums.render_drum_track("The Black Pearl 1.0", seed=3, seconds=4.0, sample_rate=16000)
    b, _ = drums.render_drum_track("The Black Pearl 1.0", seed=3, seconds=4.0, sample_rate=16000)
    assert a.shape == (64000,) and np.array_equal(a, b) and np.abs(a).max() > 0.1
    assert meta["style"] in drums.STYLES and str(meta["tempo"]) in meta["text"] and meta["kind"] == "drum kit"
    # Onsets fall on the pattern's 16th notes: the loudest 10 ms frames are kick or snare hits.
    step = 60.0 / meta["tempo"] / 4
    frames = np.abs(a[: len(a) // 160 * 160]).reshape(-1, 160).max(axis=1)
    onsets = np.flatnonzero((frames[1:] > 4 * frames[:-1] + 0.02))[:8] * 0.01
    assert len(onsets) >= 2
    assert all(min(t % step, step - t % step) < 0.02 for t in onsets)
    roles, kind = drums.kit_roles(drums.read_drumkit(drums.DRUMKITS_DIR / "circAfrique v4"))
    assert kind == "percussion kit" and {"kick", "snare", "hat"} <= set(roles)


def test_make_setup_installs_the_real_audio_packages():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    listed = set(re.search(r"^REAL_AUDIO_PACKAGES := (.*?)\n\S", makefile, re.S | re.M).group(1)
                 .replace("\\", " ").split())
    assert "APT_PACKAGES += $(REAL_AUDIO_PACKAGES)" in makefile
    needed = {*real_speech.REAL_SPEECH_APT_PACKAGES, *real_music.REAL_MUSIC_APT_PACKAGES} - {"ffmpeg"}
    assert needed == listed, sorted(needed ^ listed)


def test_missing_packages_name_the_apt_command(monkeypatch, tmp_path):
    monkeypatch.setattr(real_speech, "SOUNDS_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install --no-install-recommends ffmpeg asterisk-core"):
        make_real_speech_dataset(tmp_path / "out", 0.001, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_eval_codec_runs_on_a_tiny_real_speech_split(speech_runs, tmp_path, capsys):
    import torch

    from pipelines.cli import main
    from tokenizer import CodecConfig, RVQCodec

    root, _, _ = speech_runs
    torch.manual_seed(0)
    codec = RVQCodec(CodecConfig(sample_rate=16000, n_filters=4, strides=(2, 4), dimension=16,
                                 quantizer={"num_codebooks": 2, "codebook_size": 32}))
    codec.train()(torch.randn(2, 1, 1600) * 0.1)  # k-means init
    codec_dir = codec.eval().save_pretrained(tmp_path / "codec")
    assert main(["eval-codec", "--data", str(root / "a"), "--codec", str(codec_dir), "--max-clips", "2",
                 "--opus-kbps", "12", "--by", "language", "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["domain"] == "speech" and 1 <= report["clips"] <= 2
    assert "| codec k=2 |" in capsys.readouterr().out
