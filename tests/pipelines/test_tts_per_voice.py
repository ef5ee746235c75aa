"""TTS evaluation per voice: each voice's row is computed from that voice's items, the reference goes through the
codec given, an absent voice is reported absent, and the pooled figure is the mean of the per-voice ratios."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Audio, Dataset, DatasetDict

from lm import AudioLM, TextTokenizer
from pipelines.cli import main
from pipelines.defaults import save_lm
from pipelines.evaluation import transcribe, wer, word_recall
from pipelines.evaluation.data import iter_audio, load_split
from pipelines.evaluation.tts_voices import (evaluate_tts_voices, format_voices_report, pooled_ratio,
                                             select_voices, synthesize_references)
from tokenizer.audio import resample

from .conftest import fitted_codec

REPO = Path(__file__).resolve().parents[2]
SENTENCES = ("The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.")
# (voice, sentence) rows of the test split: flite-rms reads both sentences, flite-slt the second one only.
ROWS = (("flite-rms", 0), ("flite-slt", 1), ("flite-rms", 1))


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices")
    paths = []
    for i, (voice, s) in enumerate(ROWS):
        path = root / f"{i}.wav"
        subprocess.run(["flite", "-voice", voice.removeprefix("flite-"), "-t", SENTENCES[s], "-o", str(path)],
                       check=True, capture_output=True)
        paths.append(str(path))
    test = Dataset.from_dict({"audio": paths, "text": [SENTENCES[s] for _, s in ROWS],
                              "voice": [v for v, _ in ROWS], "engine": ["flite"] * len(ROWS)})
    train = Dataset.from_dict({"audio": paths[:1], "text": SENTENCES[:1], "voice": ["flite-rms"],
                               "engine": ["flite"]})
    DatasetDict({"train": train.cast_column("audio", Audio()),
                 "test": test.cast_column("audio", Audio())}).save_to_disk(str(root / "ds"))
    return root / "ds"


class IdentityCodec:
    """A stand-in codec at 16 kHz whose codes are the 16-bit samples: decode(encode(x)) is x, to 16-bit precision."""

    sample_rate, channels = 16000, 1

    def encode(self, wav: torch.Tensor) -> torch.Tensor:  # (B, C, N) -> (B, 1, N)
        return (wav.clamp(-1, 1).mean(1, keepdim=True) * 32767).round().long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # (B, 1, N) -> (B, 1, N)
        return codes.float() / 32767


class SilentCodec(IdentityCodec):
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(codes.shape, dtype=torch.float32)


def _references(data) -> dict[tuple[str, str], tuple[torch.Tensor, int]]:
    return {(row["voice"], row["text"]): (wav, sr) for wav, sr, row in iter_audio(load_split(data, "test"))}


@pytest.fixture(scope="module")
def report(voices_dir):
    """flite-rms: its own reference audio; flite-slt: silence; flite-kal16 reads nothing in the test split."""
    audio = _references(voices_dir)
    calls = []

    def speak(texts, max_seconds, voice):
        calls.append((voice, list(texts)))
        if voice == "flite-rms":
            return [(*audio[(voice, t)], True) for t in texts]
        return [(torch.zeros(8000), 16000, False) for _ in texts]

    result = evaluate_tts_voices(speak, voices_dir, ["flite-rms", "flite-slt", "flite-kal16"], IdentityCodec(),
                                 progress=False)
    return result, calls


def test_each_voice_speaks_its_own_held_out_sentences_in_that_voice(report):
    result, calls = report
    assert calls == [("flite-rms", list(SENTENCES)), ("flite-slt", [SENTENCES[1]])]
    assert [(i["voice"], i["text"]) for i in result["items"]] == [("flite-rms", SENTENCES[0]),
                                                                 ("flite-rms", SENTENCES[1]),
                                                                 ("flite-slt", SENTENCES[1])]
    assert [r["voice"] for r in result["per_voice"]] == ["flite-rms", "flite-slt", "flite-kal16"]
    assert result["n"] == 3 and result["wer_generated"] is None and result["wer_reference"] is None


def test_per_voice_rows_are_computed_from_that_voice_s_items(report):
    result, _ = report
    rms, slt, _ = result["per_voice"]
    for row in (rms, slt):
        items = [i for i in result["items"] if i["voice"] == row["voice"]]
        texts = [i["text"] for i in items]
        assert row["n"] == len(items)
        assert row["wer_reference"] == pytest.approx(wer(texts, [i["hyp_reference"] for i in items]))
        assert row["wer_generated"] == pytest.approx(wer(texts, [i["hyp_generated"] for i in items]))
        assert row["wer_reference_codec"] == pytest.approx(wer(texts, [i["hyp_reference_codec"] for i in items]))
        assert row["word_recall_reference_codec"] == pytest.approx(
            word_recall(texts, [i["hyp_reference_codec"] for i in items]))
        assert row["ratio"] == pytest.approx(row["wer_generated"] / row["wer_reference_codec"])
    # flite-rms spoke its own reference through a lossless codec: as intelligible as the codec allows.
    assert 0 < rms["wer_reference"] == rms["wer_generated"] == rms["wer_reference_codec"] < 0.5
    assert rms["ratio"] == pytest.approx(1.0) and rms["ended_by_itself"] == 1.0
    # flite-slt said nothing and never ended.
    assert slt["wer_generated"] == 1.0 and slt["word_recall_generated"] == 0.0 and slt["ended_by_itself"] == 0.0
    assert 0 < slt["wer_reference"] < 0.5 and slt["ratio"] > 2


def test_a_voice_without_held_out_sentences_is_absent_not_zero(report):
    result, _ = report
    kal = result["per_voice"][2]
    assert kal == {"voice": "flite-kal16", "engine": "flite", "n": 0, "absent": True}
    assert "flite-kal16" not in result["pooled"]["voices"]
    table = format_voices_report(result | {"reference_voices": ["flite-rms", "flite-slt"]})
    assert "| flite-kal16 | 0 | absent: no held-out sentence of this voice |" in table
    assert "Absent: ['flite-kal16']" in table and "| flite-rms | 2 |" in table


def test_the_pooled_figure_is_the_mean_of_per_voice_ratios_not_a_pooled_wer(report):
    result, _ = report
    rms, slt, _ = result["per_voice"]
    pooled = result["pooled"]
    assert pooled["voices"] == ["flite-rms", "flite-slt"]
    assert pooled["ratio"] == pytest.approx((rms["ratio"] + slt["ratio"]) / 2)
    items = result["items"]
    texts = [i["text"] for i in items]
    pooled_wer_ratio = (wer(texts, [i["hyp_generated"] for i in items])
                        / wer(texts, [i["hyp_reference_codec"] for i in items]))
    assert pooled["ratio"] != pytest.approx(pooled_wer_ratio)
    assert "mean over voices" in pooled["definition"]
    # A voice whose ceiling WER is 0 has no ratio and is left out of the mean rather than counted as 0 or infinity.
    assert pooled_ratio([{"voice": "a", "ratio": 2.0}, {"voice": "b", "ratio": None}, {"voice": "c", "n": 0}]) == \
        {"ratio": 2.0, "voices": ["a"], "definition": pooled["definition"]}


def test_the_codec_row_uses_the_codec_given(voices_dir):
    audio = _references(voices_dir)

    def speak(texts, max_seconds, voice):
        return [(*audio[(voice, t)], True) for t in texts]

    silent = evaluate_tts_voices(speak, voices_dir, ["flite-slt"], SilentCodec(), progress=False)
    row = silent["per_voice"][0]
    assert row["wer_reference_codec"] == 1.0 and row["word_recall_reference_codec"] == 0.0
    assert row["ratio"] == pytest.approx(row["wer_generated"])  # a ceiling of 1

    codec = fitted_codec(strides=(4, 5, 8), init_samples=1600)  # a real (random) RVQ codec at 8 kHz
    real = evaluate_tts_voices(speak, voices_dir, ["flite-slt"], codec, progress=False)
    (wav, sr), = [audio[("flite-slt", SENTENCES[1])]]
    x = resample(wav, sr, codec.sample_rate)
    decoded = codec.decode(codec.encode(x[None]))[0, :, : x.shape[-1]]
    assert real["items"][0]["hyp_reference_codec"] == transcribe(decoded, codec.sample_rate)


def test_max_clips_is_per_voice_and_voices_are_selected_by_group_or_name(voices_dir):
    seen = []

    def speak(texts, max_seconds, voice):
        seen.append((voice, len(texts)))
        return [(torch.zeros(1600), 16000, True) for _ in texts]

    result = evaluate_tts_voices(speak, voices_dir, ["flite-rms", "flite-slt"], SilentCodec(), max_clips=1,
                                 progress=False)
    assert seen == [("flite-rms", 1), ("flite-slt", 1)] and [r["n"] for r in result["per_voice"]] == [1, 1]
    known = ["espeak-en-us", "festival-kal", "flite-rms", "flite-slt"]
    assert select_voices("flite-festival", known) == ["festival-kal", "flite-rms", "flite-slt"]
    assert select_voices("all", known) == known
    assert select_voices("flite-slt,espeak-en-us", known) == ["flite-slt", "espeak-en-us"]
    with pytest.raises(ValueError, match=r"unknown voices \['bob'\]"):
        select_voices("flite-rms,bob", known)
    with pytest.raises(ValueError, match="holds none"):
        select_voices("festival", ["flite-rms"])


@pytest.fixture(scope="module")
def voices_lm_dir(tmp_path_factory):
    """A random tiny LM over an 8 kHz codec whose voices are flite-rms and flite-slt."""
    codec = fitted_codec(strides=(4, 5, 8), init_samples=1600)
    text_tokenizer = TextTokenizer.train(list(SENTENCES) * 4, vocab_size=300)
    torch.manual_seed(0)
    lm = AudioLM.from_config(REPO / "configs/lm_tiny.json", text_tokenizer, codec)
    lm.config.voices = ["flite-rms", "flite-slt"]
    return save_lm(lm, codec, tmp_path_factory.mktemp("lm") / "lm")


def test_eval_tts_voices_command_end_to_end(voices_dir, voices_lm_dir, tmp_path, capsys):
    out = tmp_path / "tts.json"
    assert main(["eval-tts", "--data", str(voices_dir), "--model", str(voices_lm_dir), "--voices", "flite-slt",
                 "--max-clips", "1", "--seed", "2", "-o", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert (tmp_path / "tts.md").read_text() in printed and "| flite-slt | 1 |" in printed
    assert "Pooled ratio" in printed and "mean over voices" in printed and "Absent" not in printed
    row, = report["per_voice"]
    assert row["voice"] == "flite-slt" and row["n"] == 1 and report["items"][0]["voice"] == "flite-slt"
    assert report["seed"] == 2 and np.isfinite(row["wer_generated"])
    assert report["pooled"]["voices"] == (["flite-slt"] if row["ratio"] is not None else [])
    # `compare-reports` reads per-voice reports as it reads the others: items paired sentence by sentence.
    assert main(["compare-reports", str(out), str(out), "--resamples", "100"]) == 0
    # --voice and --voices exclude each other; unknown voices are named.
    assert main(["eval-tts", "--data", str(voices_dir), "--model", str(voices_lm_dir), "--voices", "bob"]) == 2
    assert "unknown voices ['bob']" in capsys.readouterr().err
    assert main(["eval-tts", "--data", str(voices_dir), "--model", str(voices_lm_dir), "--voices", "all",
                 "--voice", "flite-rms"]) == 2
    assert main(["eval-tts", "--data", str(voices_dir), "--model", str(voices_lm_dir), "--references",
                 "synthesize"]) == 2
    assert "goes with voices=" in capsys.readouterr().err


def test_synthesized_references_read_the_same_sentences_in_every_voice(voices_dir):
    ds = synthesize_references(voices_dir, ["flite-kal16", "flite-slt"], max_clips=1, sample_rate=8000)
    assert ds["voice"] == ["flite-kal16", "flite-slt"] and ds["text"] == [SENTENCES[0]] * 2
    assert ds["engine"] == ["flite", "flite"]
    (wav, sr, _), = list(iter_audio(ds, max_items=1))
    assert sr == 8000 and wav.shape[0] == 1 and 1.0 < wav.shape[-1] / sr < 5.0
    assert wer(SENTENCES[0], transcribe(wav, sr)) < 0.5  # the voice says the sentence
    with pytest.raises(ValueError, match=r"\['bob'\] are not voices of the speech recipe"):
        synthesize_references(voices_dir, ["flite-slt", "bob"])
