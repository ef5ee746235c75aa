"""Evaluation: metrics against known values, the codec report against its own metrics, Opus' real bitrate and
alignment, the family classifier's round trip, the TTS/music evaluations with stand-in generators, and
`rvqaudio eval-tts` / `eval-music` end to end with a tiny random LM."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import pytest
import torch
from datasets import Audio, Dataset, DatasetDict

from lm import AudioLM, TextTokenizer
from pipelines.cli import main
from pipelines.defaults import save_lm
from pipelines.decoder_choice import FIT_LEVELS, fit_decoder_choice
from pipelines.evaluation import (FamilyClassifier, InputLevel, audio_features, compare_codec_reports, compare_reports,
                                  duration_correlation, estimate_tempo, evaluate_codec, evaluate_music,
                                  evaluate_music_generation, evaluate_music_references, evaluate_tts, evaluate_tts_lm,
                                  format_music_report, frechet_distance, mel_distance, normalize_text, opus_roundtrip,
                                  pesq_wb, phase_swap, si_sdr, stft_distance, stoi, tempo_errors,
                                  train_family_classifier, transcribe, wer, word_hits, word_recall)
from pipelines.evaluation.metrics import (FEATURE_DIM, FEATURE_N_MELS, harmonic_energy_fraction, harmonic_tone,
                                          tempo_or_none, tempo_within)
from pipelines.generate import generate
from tokenizer import RVQCodec

from .conftest import fitted_codec

REPO = Path(__file__).resolve().parents[2]

SENTENCES = ("The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.",
             "She sells sea shells by the sea shore.")


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    """A recipe-shaped speech dataset: flite's rms voice reading SENTENCES (16 kHz); two test clips, one train."""
    root = tmp_path_factory.mktemp("speech")
    paths = []
    for i, text in enumerate(SENTENCES):
        path = root / f"{i}.wav"
        subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(path)], check=True, capture_output=True)
        paths.append(str(path))

    def split(idx):
        return Dataset.from_dict({"audio": [paths[i] for i in idx], "text": [SENTENCES[i] for i in idx],
                                  "voice": ["flite-rms"] * len(idx)}).cast_column("audio", Audio())

    DatasetDict({"train": split([2]), "test": split([0, 1])}).save_to_disk(str(root / "ds"))
    return root / "ds"


@pytest.fixture(scope="module")
def speech_clip(speech_dir):
    from pipelines.evaluation.data import iter_audio, load_split

    wav, sr, row = next(iter_audio(load_split(speech_dir, "test")))
    return wav, sr, row["text"]


def _codec(strides: tuple[int, ...] = (2, 4)) -> RVQCodec:
    return fitted_codec(strides=strides, init_samples=1600)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """A self-contained LM folder with random weights: the tiny LM config over an 8 kHz codec at 50 frames/s,
    trained on no audio, with the voices "alice" and "bob" (neither is the test split's "flite-rms")."""
    codec = _codec(strides=(4, 5, 8))
    text_tokenizer = TextTokenizer.train(list(SENTENCES) + ["bass at 100 bpm", "flute and drum"] * 4, vocab_size=300)
    torch.manual_seed(0)
    lm = AudioLM.from_config(REPO / "configs/lm_tiny.json", text_tokenizer, codec)
    lm.config.voices = ["bob", "alice"]
    return save_lm(lm, codec, tmp_path_factory.mktemp("lm") / "lm")


def _clicks(bpm: float, sr: int = 22050, seconds: float = 8.0, pitch: float = 0.8) -> np.ndarray:
    x = np.zeros(int(sr * seconds))
    click = np.exp(-np.arange(200) / 30) * np.sin(np.arange(200) * pitch)
    for start in range(0, len(x) - 200, int(round(60 / bpm * sr))):
        x[start: start + 200] += click
    return (0.5 * x).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- metrics
def test_si_sdr_known_values():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(16000)
    assert si_sdr(s, s) > 100
    assert si_sdr(s, 0.3 * s) == pytest.approx(si_sdr(s, s), abs=1e-6)  # scale-invariant
    noise = rng.standard_normal(16000)
    noise *= np.linalg.norm(s) / np.linalg.norm(noise) / 10 ** (10 / 20)  # 10 dB SNR
    assert si_sdr(s, s + noise) == pytest.approx(10.0, abs=0.3)
    assert si_sdr(torch.from_numpy(s), torch.from_numpy(s + noise)) == pytest.approx(si_sdr(s, s + noise))
    with pytest.raises(ValueError, match="same shape"):
        si_sdr(s, s[:-1])


def test_spectral_distances_are_zero_for_identical_signals_and_grow_with_noise():
    rng = np.random.default_rng(0)
    s = torch.from_numpy(rng.standard_normal(8000).astype(np.float32) * 0.1)
    small, big = s + 0.01 * torch.randn(8000), s + 0.1 * torch.randn(8000)
    assert mel_distance(s, s, 16000) == 0 and stft_distance(s, s) == 0
    assert 0 < mel_distance(s, small, 16000) < mel_distance(s, big, 16000)
    assert 0 < stft_distance(s, small) < stft_distance(s, big)


def test_pesq_and_stoi_of_identical_speech_are_their_maxima(speech_clip):
    wav, sr, _ = speech_clip
    assert pesq_wb(wav, wav, sr) == pytest.approx(4.64, abs=0.01)
    assert stoi(wav, wav, sr) == pytest.approx(1.0, abs=1e-3)
    noisy = wav + 0.05 * torch.randn(wav.shape, generator=torch.Generator().manual_seed(0))
    assert pesq_wb(wav, noisy, sr) < 2.5 and stoi(wav, noisy, sr) < 0.95


def test_harmonic_energy_fraction_of_a_tone_itself_detuned_and_in_noise():
    tone = harmonic_tone(220.0, 24000)
    assert tone.shape == (48000,) and tone.abs().max() < 1
    assert harmonic_energy_fraction(tone, 24000, 220.0) == pytest.approx(1.0, abs=1e-6)
    assert harmonic_energy_fraction(harmonic_tone(230.0, 24000), 24000, 220.0) < 0.01  # its pitch moved
    noise = torch.randn(48000, generator=torch.Generator().manual_seed(0))
    noisy = tone + noise * tone.norm() / noise.norm()  # as much noise energy as tone (mostly above 2 kHz)
    assert 0.5 < harmonic_energy_fraction(noisy, 24000, 220.0) < 1.0
    with pytest.raises(ValueError, match="1.5 s"):
        harmonic_energy_fraction(tone[:24000], 24000, 220.0)
    with pytest.raises(ValueError, match="f0"):
        harmonic_energy_fraction(tone, 24000, 2500.0)


def test_phase_swap_keeps_a_signal_and_takes_magnitude_and_phase_from_each_side(speech_clip):
    wav, _, _ = speech_clip
    x = wav.mean(0) if wav.dim() > 1 else wav
    assert phase_swap(x, x) == pytest.approx(x, abs=1e-5)  # a consistent STFT comes back whole
    assert phase_swap(0.5 * x, x) == pytest.approx(0.5 * x, abs=1e-5)  # magnitudes from the first
    assert phase_swap(x, -x) == pytest.approx(-x, abs=1e-5)  # phases from the second
    stereo = phase_swap(torch.stack([x, 2 * x]), torch.stack([x, -x]))  # channel by channel
    assert stereo.shape == (2, x.numel()) and stereo[1] == pytest.approx(-2 * x, abs=1e-5)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * x.std()
    assert si_sdr(x, phase_swap(x, noise)) < -10  # its own magnitudes with noise's phase: the waveform is lost
    with pytest.raises(ValueError, match="same shape"):
        phase_swap(x, x[:-1])
    with pytest.raises(ValueError, match="more than 512 samples"):
        phase_swap(x[:512], x[:512])


def test_wer_known_cases():
    assert normalize_text("Well-known, isn't it? \u2018Yes\u2019 -- 42!") == "well known isn't it yes 42"
    assert wer("The cat sat.", "the cat sat") == 0
    assert wer("a b c d", "a x c") == 0.5  # one substitution, one deletion
    assert wer("a", "a b c") == 2.0  # insertions count
    assert wer("a b", "") == 1.0
    assert wer(["a b", "c d e f"], ["a b", ""]) == pytest.approx(4 / 6)  # errors summed over the corpus
    assert wer("in 1611 there were 7 men", "in 1611 there were seven men") == pytest.approx(1 / 6)  # numbers as written
    with pytest.raises(ValueError, match="no words"):
        wer(["...", "a"], ["a", "a"])


def test_word_recall_counts_hits_and_ignores_insertions():
    assert word_recall("The cat sat.", "the cat sat") == 1.0
    assert word_recall("a b c d", "a x c") == 0.5  # a and c found; b substituted, d deleted
    assert word_recall("a", "a b c") == 1.0 and wer("a", "a b c") == 2.0  # babble around the word costs no recall
    assert word_recall("a b", "") == 0.0 and wer("a b", "") == 1.0
    assert word_recall(["a b", "c d e f"], ["a b", "x d"]) == pytest.approx(3 / 6)  # hits summed over the corpus
    with pytest.raises(ValueError, match="word_recall needs as many hypotheses"):
        word_recall(["a", "b"], ["a"])


def test_word_hits_per_sentence_sum_to_word_recall():
    refs, hyps = ["a b", "c d e f", "The cat sat."], ["a b", "x d", "the cat sat down"]
    assert word_hits(refs, hyps) == [(2, 2), (1, 4), (3, 3)]
    hits = word_hits(refs, hyps)
    assert sum(h for h, _ in hits) / sum(n for _, n in hits) == pytest.approx(word_recall(refs, hyps))
    with pytest.raises(ValueError, match="word_hits needs as many hypotheses"):
        word_hits(["a", "b"], ["a"])


def test_frechet_distance_zero_for_a_set_with_itself_and_mean_shift_squared():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    shift = rng.standard_normal(8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # against the textbook formula with scipy's sqrtm, on well-conditioned sets
    import scipy.linalg

    b = rng.standard_normal((400, 8)) * 2 + 1
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    # fewer rows than dimensions: rank-deficient covariances still give a finite, non-negative distance
    few = frechet_distance(rng.standard_normal((5, 20)), rng.standard_normal((6, 20)))
    assert np.isfinite(few) and few >= 0


@pytest.mark.parametrize("bpm", [90, 120, 140])
def test_tempo_of_a_click_track(bpm):
    assert estimate_tempo(_clicks(bpm), 22050) == pytest.approx(bpm, rel=0.04)


def test_tempo_or_none_is_the_estimate_or_none_for_silence():
    clicks = _clicks(120.0)
    assert tempo_or_none(clicks, 22050) == estimate_tempo(clicks, 22050)
    assert tempo_or_none(np.zeros(22050 * 4, np.float32), 22050) is None


def test_tempo_on_rendered_music_and_tempo_errors(tmp_path):
    from pipelines.data import make_music_dataset
    from pipelines.evaluation.data import iter_audio

    dd = make_music_dataset(tmp_path / "music", hours=0.02, seed=3, progress=False)
    est, req = [], []
    for split in dd:
        for wav, sr, row in iter_audio(dd[split]):
            est.append(estimate_tempo(wav, sr))
            req.append(row["tempo"])
    errors = tempo_errors(est, req)
    print(f"rendered clips: tempo within 8%: {errors['within']:.2f}, octave-tolerant: {errors['within_octave']:.2f}, "
          f"estimated {np.round(est, 1).tolist()} for {req}")
    # held out (140 clips of 2 h): 94% within 8%, 99% octave-tolerant; a few clips here, so looser bounds
    assert errors["n"] >= 6 and errors["within_octave"] >= 0.8 and errors["within"] >= 0.5
    assert tempo_errors([60.0, 121.0, 300.0], [120.0, 120.0, 100.0]) == pytest.approx(
        {"n": 3, "tolerance": 0.08, "relative_error_mean": (0.5 + 1 / 120 + 2) / 3, "relative_error_median": 0.5,
         "within": 1 / 3, "within_octave": 1.0})
    # the per-item test `within` counts, as compare-reports pairs it: 8% either side, inclusive
    assert tempo_within([60.0, 121.0, 300.0, 110.4, 110.3], [120.0, 120.0, 100.0, 120.0, 120.0]).tolist() == [
        False, True, False, True, False]
    assert bool(tempo_within(129.6, 120.0)) and not tempo_within(129.7, 120.0)


def test_audio_features_windows_and_level():
    wav = 0.1 * torch.randn(48000, generator=torch.Generator().manual_seed(0))  # 3 s, no silent bins
    feats = audio_features(wav, 16000)
    assert feats.shape == (5, FEATURE_DIM)  # 1 s windows every 0.5 s over 3 s
    louder = audio_features(2 * wav, 16000)
    # the mel means move by the gain in dB; spreads and timbre dynamics do not
    assert np.allclose(louder[:, :FEATURE_N_MELS] - feats[:, :FEATURE_N_MELS], 20 * np.log10(2), atol=0.05)
    assert np.allclose(louder[:, FEATURE_N_MELS:], feats[:, FEATURE_N_MELS:], atol=1e-3)


# ---------------------------------------------------------------------------------------------------- codec eval
def test_opus_roundtrip_is_aligned_and_counts_real_bytes(speech_clip):
    wav, sr, _ = speech_clip
    result = opus_roundtrip(wav, sr, 12)
    assert result.audio.shape == wav.shape
    assert result.kbps == pytest.approx(result.num_bytes * 8 / (wav.shape[-1] / sr) / 1000)
    assert 10 < result.kbps < 16  # the target plus the Ogg container's overhead on a 2-3 s clip
    aligned = si_sdr(wav, result.audio)
    assert aligned > 5
    assert all(si_sdr(wav[:, :-s], result.audio[:, s:]) < aligned for s in (1, 3))
    assert all(si_sdr(wav[:, s:], result.audio[:, :-s]) < aligned for s in (1, 3))


def test_evaluate_codec_report_matches_the_metrics(speech_dir, tmp_path):
    from pipelines.evaluation.data import iter_audio, load_split
    from tokenizer.audio import resample

    codec = _codec()
    report = evaluate_codec(speech_dir, codec, max_clips=1, num_codebooks=[4, 1], opus_kbps=(6, 12),
                            output=tmp_path / "r.json", progress=False)
    assert [s["name"] for s in report["systems"]] == ["codec k=1", "codec k=4", "opus 6 kbps", "opus 12 kbps"]
    assert report["domain"] == "speech" and report["clips"] == 1 and report["sample_rate"] == 8000
    assert report["systems"][1]["kbps"] == codec.bitrate(4)

    wav, sr, _ = next(iter_audio(load_split(speech_dir, "test")))
    ref = resample(wav, sr, 8000)
    est = codec.decode(codec.encode(ref[None]))[0, :, : ref.shape[-1]]
    metrics = report["systems"][1]["metrics"]
    assert metrics["si_sdr"]["mean"] == pytest.approx(si_sdr(ref, est), abs=1e-4)
    assert metrics["mel_distance"]["mean"] == pytest.approx(mel_distance(ref, est, 8000), rel=1e-5)
    assert metrics["pesq_wb"]["mean"] == pytest.approx(pesq_wb(ref, est, 8000), rel=1e-5)
    assert metrics["si_sdr"]["values"] == [metrics["si_sdr"]["mean"]]  # per clip, for paired comparisons
    opus6, opus12 = report["systems"][2], report["systems"][3]
    assert 5 < opus6["kbps"] < 10 and 10 < opus12["kbps"] < 16  # measured, container included
    assert opus12["metrics"]["mel_distance"]["mean"] < opus6["metrics"]["mel_distance"]["mean"]
    assert opus12["metrics"]["pesq_wb"]["mean"] > opus6["metrics"]["pesq_wb"]["mean"]

    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["systems"] == report["systems"]
    table = (tmp_path / "r.md").read_text()
    assert table == report["markdown"] and "| opus 12 kbps |" in table and "pesq_wb" in table

    tones = report["steady_tones"]  # a held pitch through the codec, with every codebook
    assert len(tones["f0"]) == len(tones["fraction"]) == 24 and tones["num_codebooks"] == 4
    assert all(0.0 <= x <= 1.0 for x in tones["fraction"])
    assert tones["mean"] == pytest.approx(sum(tones["fraction"]) / 24)
    tone = harmonic_tone(tones["f0"][5], 8000)
    est = codec.decode(codec.encode(tone[None, None]))[0, 0, : tone.numel()]
    assert tones["fraction"][5] == pytest.approx(harmonic_energy_fraction(est, 8000, tones["f0"][5]))
    assert f"Steady tones through the codec (k=4): {tones['mean']:.3f}" in table


def test_evaluate_codec_phase_oracle_scores_both_mixes_of_the_largest_k(speech_dir):
    from pipelines.evaluation.data import iter_audio, load_split
    from tokenizer.audio import resample

    codec = _codec()
    report = evaluate_codec(speech_dir, codec, max_clips=1, num_codebooks=[2, 4], opus_kbps=(), phase_oracle=True,
                            progress=False)
    names = [s["name"] for s in report["systems"]]
    assert names == ["codec k=2", "codec k=4", "codec k=4 magnitudes, reference phase",
                     "reference magnitudes, codec k=4 phase"]
    oracle_mag, oracle_phase = report["systems"][2:]
    assert oracle_mag["kind"] == oracle_phase["kind"] == "oracle" and oracle_mag["kbps"] is None
    wav, sr, _ = next(iter_audio(load_split(speech_dir, "test")))
    ref = resample(wav, sr, 8000)
    est = codec.decode(codec.encode(ref[None]))[0, :, : ref.shape[-1]]
    assert oracle_mag["metrics"]["pesq_wb"]["mean"] == pytest.approx(pesq_wb(ref, phase_swap(est, ref), 8000),
                                                                     rel=1e-5)
    assert oracle_phase["metrics"]["si_sdr"]["mean"] == pytest.approx(si_sdr(ref, phase_swap(ref, est)), abs=1e-4)
    # the reference's phase puts the waveform back in place: an untrained codec's SI-SDR rises with it
    assert oracle_mag["metrics"]["si_sdr"]["mean"] > report["systems"][1]["metrics"]["si_sdr"]["mean"]
    assert "| reference magnitudes, codec k=4 phase | – |" in report["markdown"]
    assert "they are not codecs" in report["markdown"]


def test_evaluate_codec_by_column_averages_each_value_s_clips(speech_dir):
    from datasets import concatenate_datasets

    from pipelines.evaluation.data import load_split

    both = concatenate_datasets([load_split(speech_dir, "test"), load_split(speech_dir, "train")])
    clips = both.add_column("speaker", ["x", "y", "x"])
    report = evaluate_codec(clips, _codec(), num_codebooks=[1, 2], opus_kbps=(6,), by="speaker", progress=False)
    groups = report["groups"]
    assert groups["column"] == "speaker" and groups["labels"] == ["x", "y", "x"]
    for s in report["systems"]:
        for m, summary in s["metrics"].items():
            v = summary["values"]
            assert groups["means"]["x"][s["name"]][m] == pytest.approx((v[0] + v[2]) / 2)
            assert groups["means"]["y"][s["name"]][m] == pytest.approx(v[1])
    assert groups["means"]["x"]["opus 6 kbps"]["n"] == 2
    table = report["markdown"].split("By speaker:")[1]
    assert "| speaker | clips | codec k=2 pesq_wb ↑ | codec k=2 stoi ↑ | opus 6 kbps pesq_wb ↑ |" in table
    assert "codec k=1" not in table  # the codec at its largest k only
    x_pesq = groups["means"]["x"]["codec k=2"]["pesq_wb"]
    assert f"| x | 2 | {x_pesq:.3f} |" in table
    with pytest.raises(ValueError, match="'voices' is not a column.*speaker"):
        evaluate_codec(clips, _codec(), num_codebooks=[1], opus_kbps=(), by="voices", progress=False)


def test_evaluate_codec_asr_transcribes_the_reference_and_every_system(speech_dir):
    from pipelines.evaluation.data import iter_audio, load_split
    from tokenizer.audio import resample

    codec = _codec()
    report = evaluate_codec(speech_dir, codec, num_codebooks=[4], opus_kbps=(12,), asr=True, progress=False)
    refs = [(resample(wav, sr, 8000), row["text"]) for wav, sr, row in iter_audio(load_split(speech_dir, "test"))]
    texts = [text for _, text in refs]
    asr = report["asr"]
    assert asr["words"] == sum(len(t.split()) for t in texts) and "pocketsphinx" in asr["recogniser"]
    assert asr["texts"] == texts  # what compare-reports pairs sentence by sentence
    assert asr["reference"]["transcripts"] == [transcribe(ref, 8000) for ref, _ in refs]
    assert asr["reference"]["wer"] == pytest.approx(wer(texts, asr["reference"]["transcripts"]))
    assert asr["reference"]["words_found"] > 0.5  # clear flite speech, even band-limited to 4 kHz
    codec_row, opus_row = (s["asr"] for s in report["systems"])
    ref, _ = refs[0]
    est = codec.decode(codec.encode(ref[None]))[0, :, : ref.shape[-1]]
    assert codec_row["transcripts"][0] == transcribe(est, 8000)
    assert codec_row["words_found"] == pytest.approx(word_recall(texts, codec_row["transcripts"]))
    assert codec_row["words_found"] < asr["reference"]["words_found"]  # an untrained codec's output is noise
    assert opus_row["words_found"] > 0.5
    table = report["markdown"].split("Intelligibility to ")[1]
    assert f"| reference | {asr['reference']['wer']:.3f} | {asr['reference']['words_found']:.3f} |" in table
    assert f"| codec k=4 | {codec_row['wer']:.3f} |" in table and "| opus 12 kbps |" in table
    with pytest.raises(ValueError, match="asr=True needs speech with a 'text' column.*music"):
        evaluate_codec(speech_dir, codec, num_codebooks=[4], opus_kbps=(), domain="music", asr=True,
                       progress=False)


def test_eval_codec_command_end_to_end(speech_dir, tmp_path, capsys):
    codec_dir = _codec().save_pretrained(tmp_path / "codec")
    assert main(["eval-codec", "--data", str(speech_dir), "--codec", str(codec_dir), "--num-codebooks", "2", "4",
                 "--opus-kbps", "--asr", "--phase-oracle", "--max-clips", "1", "-o", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["codec k=2", "codec k=4", "codec k=4 magnitudes, reference phase",
                                                      "reference magnitudes, codec k=4 phase"]
    assert report["clips"] == 1 and report["codec"]["variant"] is None
    assert (tmp_path / "r.md").read_text() in out and "| reference |" in out.split("Intelligibility to ")[1]
    assert main(["eval-codec", "--data", str(speech_dir), "--codec", str(codec_dir), "--asr",
                 "--domain", "music"]) == 2
    assert "asr=True needs speech with a 'text' column" in capsys.readouterr().err


def _codec_with_speech_variant(tmp_path):
    """(a codec whose decoder weights are halved, the folder of the original codec with it as variant "speech")."""
    codec = _codec()
    codec_dir = codec.save_pretrained(tmp_path / "codec")
    with torch.no_grad():
        for p in codec.decoder.parameters():
            p.mul_(0.5)
    codec.save_decoder_variant(codec_dir, "speech")
    return codec, codec_dir


def test_eval_codec_scores_the_decoder_variant_it_is_given(speech_dir, tmp_path):
    codec, codec_dir = _codec_with_speech_variant(tmp_path)
    reports = [evaluate_codec(speech_dir, codec_dir, variant=variant, max_clips=1, num_codebooks=[4], opus_kbps=(),
                              progress=False) for variant in (None, "speech")]
    assert [r["codec"]["variant"] for r in reports] == [None, "speech"]
    mel = [r["systems"][0]["metrics"]["mel_distance"]["mean"] for r in reports]
    assert mel[0] != mel[1]
    assert reports[1] == evaluate_codec(speech_dir, codec, max_clips=1, num_codebooks=[4], opus_kbps=(), progress=False
                                        ) | {"codec": reports[1]["codec"], "data": reports[1]["data"]}


def test_evaluate_codec_music_domain_has_no_speech_metrics(speech_dir):
    report = evaluate_codec(speech_dir, _codec(), max_clips=1, num_codebooks=[2], opus_kbps=(), domain="music",
                            progress=False)
    assert set(report["systems"][0]["metrics"]) == {"mel_distance", "stft_distance", "si_sdr"}
    with pytest.raises(ValueError, match="1..4"):
        evaluate_codec(speech_dir, _codec(), num_codebooks=[5], progress=False)


# ---------------------------------------------------------------------------------------------------- music eval
@pytest.fixture(scope="module")
def toy_music_dir(tmp_path_factory):
    """Three "families" a classifier must tell apart at any level: low sawtooth notes, high sine notes, noise
    bursts, pulsing at a known tempo; train and test draw different pitches, tempi and levels."""
    sr = 16000

    def clip(family: str, rng: np.random.Generator, tempo: int) -> np.ndarray:
        t = np.arange(int(sr * 4.0)) / sr
        f0 = rng.uniform(100, 200) if family == "bass" else rng.uniform(1500, 3000)
        tone = {"bass": 2 * ((t * f0) % 1.0) - 1, "flute": np.sin(2 * np.pi * f0 * t),
                "drum": rng.standard_normal(len(t))}[family]
        envelope = np.exp(-((t % (60 / tempo)) / 0.08))  # one decaying note per beat
        return (rng.uniform(0.1, 0.6) * tone * envelope).astype(np.float32)

    def split(seed: int, n: int) -> Dataset:
        rng = np.random.default_rng(seed)
        rows = {"audio": [], "family": [], "tempo": [], "text": []}
        for i in range(n):
            family, tempo = ("bass", "flute", "drum")[i % 3], int(rng.integers(80, 150))
            rows["audio"].append({"array": clip(family, rng, tempo), "sampling_rate": sr})
            rows["family"].append(family)
            rows["tempo"].append(tempo)
            rows["text"].append(f"{family} at {tempo} bpm #{i}")
        return Dataset.from_dict(rows).cast_column("audio", Audio(sampling_rate=sr))

    root = tmp_path_factory.mktemp("music") / "ds"
    DatasetDict({"train": split(0, 12), "test": split(1, 6)}).save_to_disk(str(root))
    return root


@pytest.fixture(scope="module")
def classifier(toy_music_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    return train_family_classifier(toy_music_dir, output=out, hidden=32, epochs=60, soundfonts=(), progress=False), out


def test_family_classifier_learns_and_round_trips_through_safetensors(classifier, toy_music_dir):
    model, folder = classifier
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert model.config.heldout["accuracy"] == 1.0 and model.config.heldout["n"] == 6
    loaded = FamilyClassifier.from_pretrained(folder)
    assert loaded.families == ["bass", "drum", "flute"] and loaded.config.heldout == model.config.heldout
    feats = audio_features(torch.from_numpy(_clicks(100, 16000, 2.0)), 16000)
    assert torch.equal(loaded.clip_log_probs(feats), model.clip_log_probs(feats))
    again = train_family_classifier(toy_music_dir, hidden=32, epochs=60, test_split=None, soundfonts=(), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))  # same seed


@pytest.fixture(scope="module")
def rendered_music_dir(tmp_path_factory):
    """A few clips of the real music recipe: train rendered with FluidR3, test with TimGM6mb, MIDI kept."""
    from pipelines.data import make_music_dataset

    root = tmp_path_factory.mktemp("rendered") / "music"
    make_music_dataset(root, hours=0.01, seed=1, sample_rate=16000, progress=False)
    return root


def test_family_classifier_trains_on_other_soundfont_renders_of_the_train_midi(rendered_music_dir, toy_music_dir,
                                                                                  tmp_path):
    from pipelines.data.music import TEST_SOUNDFONT, TRAIN_SOUNDFONT
    from pipelines.evaluation.family_classifier import clip_features, soundfont_features

    stored, rows = clip_features(rendered_music_dir, "train", progress=False)
    again = soundfont_features(rendered_music_dir, "train", TRAIN_SOUNDFONT, seed=1, progress=False)
    assert len(again) == len(stored) and all(f.shape[1] == FEATURE_DIM for f in again)
    # the MIDI is what the clip played: re-rendered with its own SoundFont, it lasts as long (+-1 s window hop)
    assert all(abs(len(a) - len(b)) <= 2 for a, b in zip(again, stored))
    assert all(np.array_equal(a, b) for a, b in zip(again, soundfont_features(
        rendered_music_dir, "train", TRAIN_SOUNDFONT, seed=1, progress=False)))  # rendering is deterministic

    model = train_family_classifier(rendered_music_dir, output=tmp_path / "clf", hidden=16, epochs=20,
                                    soundfonts=[TRAIN_SOUNDFONT], progress=False)
    loaded = FamilyClassifier.from_pretrained(tmp_path / "clf")
    assert loaded.config.soundfonts == [TRAIN_SOUNDFONT.name] and loaded.config.heldout["n"] >= 1
    assert loaded.families == sorted({r["family"] for r in rows}) == model.families

    with pytest.raises(ValueError, match="leak the held-out timbres"):  # the test split's SoundFont
        train_family_classifier(rendered_music_dir, soundfonts=[TEST_SOUNDFONT], progress=False)
    with pytest.raises(FileNotFoundError, match="csound-soundfont"):
        train_family_classifier(rendered_music_dir, soundfonts=[tmp_path / "missing.sf2"], progress=False)
    with pytest.raises(ValueError, match="no `midi` column"):
        train_family_classifier(toy_music_dir, soundfonts=[TRAIN_SOUNDFONT], progress=False)


def test_evaluate_music_with_real_clips_and_with_noise(classifier, toy_music_dir):
    from pipelines.evaluation.data import iter_audio, load_split

    model, _ = classifier
    real = list(iter_audio(load_split(toy_music_dir, "test")))
    report = evaluate_music(real, toy_music_dir, model, progress=False)
    assert report["n"] == 6 and report["family"]["accuracy"] == 1.0
    assert report["frechet_distance"] == pytest.approx(0.0, abs=1e-6)  # the reference set itself
    assert report["tempo"]["within"] == 1.0
    rng = np.random.default_rng(0)
    noise = [(torch.from_numpy(rng.standard_normal(sr * 4).astype(np.float32) * 0.1), sr, meta)
             for _, sr, meta in real]
    worse = evaluate_music(noise, toy_music_dir, model, progress=False)
    assert worse["family"]["accuracy"] < 0.5 and worse["frechet_distance"] > 100


def test_evaluate_music_generation_calls_generate_in_batches(classifier, toy_music_dir):
    from pipelines.evaluation.data import iter_audio, load_split

    audio = {row["text"]: (wav, sr) for wav, sr, row in iter_audio(load_split(toy_music_dir, "test"))}
    calls = []

    def generate(captions: list[str]) -> list[tuple[torch.Tensor, int]]:
        calls.append(len(captions))
        return [audio[c] for c in captions]

    report = evaluate_music_generation(generate, toy_music_dir, classifier[1], batch_size=4, progress=False)
    assert calls == [4, 2] and report["family"]["accuracy"] == 1.0
    assert report["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    refs = evaluate_music_references(toy_music_dir, classifier[0], progress=False)
    assert refs["family"]["accuracy"] == 1.0 and refs["frechet_distance_halves"] > 0
    assert refs["frechet_distance_train"] > 0


class _LosslessCodec:
    """A codec whose round trip gives back its input exactly: its 'codes' are the samples."""

    sample_rate = 16000

    def encode(self, wav, sample_rate=None):
        assert wav.dim() == 3 and sample_rate == self.sample_rate
        return wav

    def decode(self, codes):
        return codes


class _SilencingCodec(_LosslessCodec):
    def decode(self, codes):
        return torch.zeros_like(codes)


def test_music_references_through_a_codec_measure_what_it_loses(classifier, toy_music_dir):
    # The toy renders are at the fake codec's rate (encode checks it), so the lossless round trip is exact.
    refs = evaluate_music_references(toy_music_dir, classifier[0], progress=False, codec=_LosslessCodec())
    through = refs["through_codec"]
    assert through["family"] == refs["family"] and through["tempo"] == refs["tempo"]
    assert through["frechet_distance"] == pytest.approx(0.0, abs=1e-6)  # against the renders themselves
    silenced = evaluate_music_references(toy_music_dir, classifier[0], progress=False,
                                         codec=_SilencingCodec())["through_codec"]
    assert silenced["tempo"]["unmeasured"] == silenced["n"] and silenced["frechet_distance"] > 0


def test_music_references_through_opus_lose_less_at_a_higher_bitrate(classifier, toy_music_dir):
    refs = evaluate_music_references(toy_music_dir, classifier[0], progress=False, opus_kbps=6)
    low = refs["through_opus"]
    assert low["n"] == refs["n"] and [i["text"] for i in low["items"]] == [i["text"] for i in refs["items"]]
    assert low["kbps"]["requested"] == 6 and 4 < low["kbps"]["measured"] < 12  # measured, container included
    high = evaluate_music_references(toy_music_dir, classifier[0], progress=False, opus_kbps=64)["through_opus"]
    assert 0 <= high["frechet_distance"] < low["frechet_distance"]  # against the renders themselves
    assert "| held-out renders through Opus 6 kbps (" in format_music_report(refs)
    for kbps in (0, 2, 600):  # outside libopus' range: refused before any work, as eval-codec refuses them
        with pytest.raises(ValueError, match=r"Opus bitrates must lie in 6-510 kbps \(libopus' range\), got "):
            evaluate_music_references(toy_music_dir, classifier[0], progress=False, opus_kbps=kbps)


def test_evaluate_music_counts_clips_too_short_or_silent_as_misses(classifier, toy_music_dir):
    from pipelines.evaluation.data import iter_audio, load_split

    real = list(iter_audio(load_split(toy_music_dir, "test")))
    (wav, sr, meta), (_, _, meta2) = real[0], real[1]
    clips = [(wav, sr, meta), (wav[..., : sr // 20], sr, meta2), (torch.zeros(sr * 2), sr, meta2)]
    report = evaluate_music(clips, toy_music_dir, classifier[0], progress=False)
    short, silent = report["items"][1], report["items"][2]
    assert report["unscorable"] == 1 and short["predicted_family"] is None and short["estimated_tempo"] is None
    assert silent["predicted_family"] is not None and silent["estimated_tempo"] is None
    assert report["tempo"]["unmeasured"] == 2 and report["tempo"]["within"] <= 1 / 3
    assert report["family"]["accuracy"] <= 2 / 3 and report["windows"]["generated"] == 7 + 3  # 4 s and 2 s clips
    assert report["frechet_distance"] > 0


def test_eval_music_command_end_to_end(classifier, toy_music_dir, lm_dir, tmp_path, capsys):
    from pipelines.evaluation.data import load_split

    out = tmp_path / "music.json"
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]), "--model",
                 str(lm_dir), "--max-clips", "4", "--duration", "1.0", "--seed", "1", "-o", str(out),
                 "--no-progress"]) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "| generated |" in printed and "| held-out renders |" in printed
    assert (tmp_path / "music.md").read_text() in printed
    assert report["sampling"] == {"temperature": 1.0, "top_k": 250, "top_p": 1.0, "guidance_scale": 3.0}
    gen, refs = report["generated"], report["references"]
    rows = load_split(toy_music_dir, "test").select(range(4))
    assert gen["n"] == 4 and [i["requested_family"] for i in gen["items"]] == list(rows["family"])
    assert [i["text"] for i in gen["items"]] == list(rows["text"])
    assert all(i["seconds"] <= 1.0 for i in gen["items"]) and 0.0 <= gen["ended_by_itself"] <= 1.0
    assert 0.0 <= gen["family"]["accuracy"] <= 1.0 and 0.0 <= gen["tempo"]["within_octave"] <= 1.0
    assert gen["frechet_distance"] is None or gen["frechet_distance"] >= 0
    through = refs.pop("through_codec")  # the renders after a round trip through the LM's codec
    assert refs == json.loads(json.dumps(evaluate_music_references(toy_music_dir, classifier[0], max_clips=4,
                                                                   progress=False)))
    assert refs["family"]["accuracy"] == 1.0  # the ceiling, for context
    assert through["n"] == 4 and [i["text"] for i in through["items"]] == list(rows["text"])
    assert "| held-out renders through the codec |" in printed

    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]),
                 "--references-only", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| held-out renders |" in printed and "through the codec" not in printed
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]),
                 "--references-only", "--codec", str(lm_dir / "codec"), "--max-clips", "4", "--no-progress",
                 "-o", str(tmp_path / "refs.json")]) == 0
    assert "| held-out renders through the codec |" in capsys.readouterr().out
    assert json.loads((tmp_path / "refs.json").read_text())["through_codec"] == through  # the LM's codec, as above
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]),
                 "--references-only", "--opus-kbps", "6", "--max-clips", "4", "--no-progress"]) == 0
    assert "| held-out renders through Opus 6 kbps (" in capsys.readouterr().out
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]), "--model",
                 str(lm_dir), "--opus-kbps", "6"]) == 2
    assert "--opus-kbps goes with --references-only" in capsys.readouterr().err
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]), "--model",
                 str(lm_dir), "--codec", str(lm_dir / "codec")]) == 2
    assert "--codec goes with --references-only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]), "--references-only",
              "--model", str(lm_dir)])
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]), "--model",
                 str(lm_dir), "--duration", "60"]) == 2
    assert "more than this LM can generate" in capsys.readouterr().err
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]),
                 "--references-only", "--top-k", "5"]) == 2
    assert "--references-only generates nothing; leave out ['top_k']" in capsys.readouterr().err
    assert main(["eval-music", "--data", str(toy_music_dir), "--classifier", str(classifier[1]), "--model",
                 str(lm_dir), "--top-p", "0"]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ TTS eval
def test_transcribe_recognises_clear_speech(speech_clip):
    from tokenizer.audio import resample

    wav, sr, text = speech_clip
    assert wer(text, transcribe(wav, sr)) < 0.5
    stereo_24k = resample(wav, sr, 24000).expand(2, -1)  # down-mixed and resampled to 16 kHz inside
    assert wer(text, transcribe(stereo_24k, 24000)) < 0.5


def test_duration_correlation_known_values():
    def items(pairs, ended=None):
        return [{"seconds_generated": g, "seconds_reference": r, "ended_in_time": True if ended is None else e}
                for (g, r), e in zip(pairs, ended or [True] * len(pairs))]

    assert duration_correlation(items([(1, 2), (2, 4), (3, 6)])) == pytest.approx(1.0)  # proportional lengths
    assert duration_correlation(items([(3, 2), (2, 4), (1, 6)])) == pytest.approx(-1.0)
    assert duration_correlation(items([(1, 1), (2, 2), (1, 3), (2, 4)])) == pytest.approx(0.4472136)  # 1/sqrt(5)
    # Only generations that ended in time count; too few of them, or constant lengths, leave it undefined.
    assert duration_correlation(items([(1, 2), (2, 4), (3, 6), (9, 1)], [True, True, True, False])) == \
        pytest.approx(1.0)
    assert duration_correlation(items([(1, 2), (2, 4)])) is None
    assert duration_correlation(items([(2, 2), (2, 4), (2, 6)])) is None


def test_evaluate_tts_with_reference_and_noise_stand_ins(speech_dir):
    from pipelines.evaluation.data import iter_audio, load_split

    audio = {row["text"]: (wav, sr) for wav, sr, row in iter_audio(load_split(speech_dir, "test"))}

    def reference(texts, max_seconds):
        return [(*audio[t], True) for t in texts]

    report = evaluate_tts(reference, speech_dir, progress=False)
    assert report["n"] == 2 and report["wer_generated"] == report["wer_reference"] < 0.5
    assert report["ended_by_itself"] == 1.0
    assert report["duration_correlation"] is None  # two sentences are too few
    assert report["word_recall_generated"] == report["word_recall_reference"] > 0.5
    texts = [i["text"] for i in report["items"]]
    assert report["word_recall_chance"] == pytest.approx(
        word_recall(texts[1:] + texts[:1], [i["hyp_generated"] for i in report["items"]]))

    gen = torch.Generator().manual_seed(0)

    def garbage(texts, max_seconds):  # 1 s of noise that ended; silence past 2x the reference (cut, so not in time)
        first = (0.1 * torch.randn(16000, generator=gen), 16000, True)
        wav, sr = audio[texts[1]]
        return [first, (torch.zeros(int(2.2 * wav.shape[-1])), sr, True)]

    worse = evaluate_tts(garbage, speech_dir, progress=False)
    assert worse["wer_generated"] > 0.8 and worse["ended_by_itself"] == 0.5
    assert worse["word_recall_generated"] < 0.2
    assert worse["wer_reference"] == report["wer_reference"]  # the yardstick does not depend on the generator
    cut = worse["items"][1]
    assert cut["seconds_generated"] == pytest.approx(cut["max_seconds"], abs=1e-4) and not cut["ended_in_time"]
    assert all(i["max_seconds"] == pytest.approx(2 * i["seconds_reference"]) for i in worse["items"])


def test_eval_tts_command_end_to_end(speech_dir, lm_dir, tmp_path, capsys):
    from pipelines.evaluation.data import iter_audio, load_split

    out = tmp_path / "tts.json"
    assert main(["eval-tts", "--data", str(speech_dir), "--model", str(lm_dir), "--seed", "3", "-o", str(out),
                 "--no-progress"]) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "| generated |" in printed and "| reference synthesis |" in printed
    assert (tmp_path / "tts.md").read_text() in printed
    assert report["n"] == 2 and report["split"] == "test" and report["seed"] == 3
    assert report["voice"] == "alice" and report["reference_voices"] == ["flite-rms"]  # the LM's default voice
    assert "'flite-rms'" in report["voice_note"] and "default" in report["voice_note"]
    assert np.isfinite(report["wer_generated"]) and report["wer_generated"] >= 0
    items = report["items"]
    assert report["ended_by_itself"] == pytest.approx(np.mean([i["ended_in_time"] for i in items]))
    assert 0.0 <= report["ended_by_itself"] <= 1.0
    for item in items:
        assert item["max_seconds"] == pytest.approx(2 * item["seconds_reference"])
        assert item["seconds_generated"] <= item["max_seconds"] + 1 / 50  # cut to whole frames
        assert item["ended_in_time"] == item["ended_by_itself"]  # the LM ran to each sentence's own limit
    # The reference column is the recogniser on the dataset's audio, whatever the LM did.
    refs = list(iter_audio(load_split(speech_dir, "test")))
    hyps = [transcribe(wav, sr) for wav, sr, _ in refs]
    assert [i["hyp_reference"] for i in items] == hyps
    assert report["wer_reference"] == pytest.approx(wer([row["text"] for _, _, row in refs], hyps))


def test_evaluate_tts_lm_scores_what_generate_makes(speech_dir, lm_dir):
    report = evaluate_tts_lm(speech_dir, model=lm_dir, voice="bob", max_clips=1, seed=5, progress=False)
    item = report["items"][0]
    assert report["voice"] == "bob" and "voice=" in report["voice_note"]
    # One sentence in a batch of one: exactly the clip `generate` makes for it, up to its limit.
    clip = generate(item["text"], task="speech", voice="bob", model=lm_dir, duration=item["max_seconds"], seed=5,
                    progress=False)
    assert item["seconds_generated"] == pytest.approx(clip.duration)
    assert item["ended_by_itself"] == clip.ended_by_itself
    assert item["hyp_generated"] == (transcribe(clip.waveform, clip.sample_rate) if clip.duration else "")
    again = evaluate_tts_lm(speech_dir, model=lm_dir, voice="bob", max_clips=1, seed=5, progress=False)
    assert again["items"] == report["items"]  # same seed, same report


def test_eval_tts_sampling_settings_reach_generate_and_the_report(speech_dir, lm_dir, tmp_path, capsys):
    out = tmp_path / "tts.json"
    assert main(["eval-tts", "--data", str(speech_dir), "--model", str(lm_dir), "--voice", "bob", "--max-clips", "1",
                 "--seed", "5", "--top-k", "1", "--guidance-scale", "1.5", "-o", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["sampling"] == {"temperature": 1.0, "top_k": 1, "top_p": 1.0, "guidance_scale": 1.5}
    assert "sampling temperature 1, top_k 1, top_p 1, guidance_scale 1.5" in capsys.readouterr().out
    item = report["items"][0]
    clip = generate(item["text"], task="speech", voice="bob", model=lm_dir, duration=item["max_seconds"], seed=5,
                    top_k=1, guidance_scale=1.5, progress=False)
    assert item["seconds_generated"] == pytest.approx(clip.duration)
    assert item["hyp_generated"] == (transcribe(clip.waveform, clip.sample_rate) if clip.duration else "")
    # Checked before anything is generated or scored.
    with pytest.raises(ValueError, match=r"unknown sampling settings \['top_n'\]"):
        evaluate_tts_lm(speech_dir, model=lm_dir, sampling={"top_n": 5})
    assert main(["eval-tts", "--data", str(speech_dir), "--model", str(lm_dir), "--temperature", "0"]) == 2
    assert "temperature must be > 0, got 0.0" in capsys.readouterr().err


def test_eval_tts_rejects_an_unknown_voice_and_lists_the_voices(speech_dir, lm_dir, capsys):
    assert main(["eval-tts", "--data", str(speech_dir), "--model", str(lm_dir), "--voice", "flite-rms"]) == 2
    err = capsys.readouterr().err
    assert "unknown voice 'flite-rms'" in err and "['alice', 'bob']" in err
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_tts_lm(speech_dir, model=lm_dir, batch_size=0)


# -------------------------------------------------------------------------------------------- paired comparisons
def _report(values: dict[str, list], seconds: float = 10.0, tones: list[float] | None = None, **extra) -> dict:
    """A minimal eval-codec report: one system, "codec k=8", with the given per-clip values of each metric."""
    n = len(next(iter(values.values())))
    report = {"data": "ds", "split": "test", "domain": "speech", "clips": n, "skipped": 0, "seconds": seconds,
              "systems": [{"name": "codec k=8", "kind": "codec", "metrics": {
                  m: {"values": v} for m, v in values.items()}}]}
    if tones is not None:
        report["steady_tones"] = {"f0": [100.0 + i for i in range(len(tones))], "fraction": tones}
    return report | extra


def _row(result: dict, metric: str, system: str = "codec k=8") -> dict:
    return next(r for r in result["rows"] if r["metric"] == metric and r["system"] == system)


def test_compare_reports_of_a_report_with_itself_and_with_a_constant_shift():
    rng = np.random.default_rng(0)
    pesq = list(rng.uniform(1.5, 2.5, 40))
    mel = list(rng.uniform(2.5, 3.5, 40))
    base = _report({"pesq_wb": pesq, "mel_distance": mel}, tones=[0.1, 0.5, 0.9])
    same = compare_codec_reports(base, base, resamples=500)
    for r in same["rows"]:
        assert (r["difference"], r["low"], r["high"], r["better"], r["worse"]) == (0, 0, 0, 0, 0)
    shifted = _report({"pesq_wb": [x + 0.25 for x in pesq], "mel_distance": [x + 0.25 for x in mel]},
                      tones=[0.2, 0.5, 0.8])
    result = compare_codec_reports(base, shifted, resamples=500)
    pesq_row, mel_row = _row(result, "pesq_wb"), _row(result, "mel_distance")
    assert pesq_row["difference"] == pytest.approx(0.25) and pesq_row["low"] == pytest.approx(0.25)
    assert pesq_row["high"] == pytest.approx(0.25) and pesq_row["base"] == pytest.approx(np.mean(pesq))
    assert (pesq_row["better"], pesq_row["worse"], pesq_row["n"]) == (40, 0, 40)  # higher PESQ is better
    assert (mel_row["better"], mel_row["worse"]) == (0, 40)  # a higher mel distance is worse
    tones = _row(result, "steady_tones", "steady tones")
    assert tones["difference"] == pytest.approx(0.0) and (tones["better"], tones["worse"], tones["n"]) == (1, 1, 3)
    assert "**+0.2500 [+0.2500, +0.2500]**" in result["markdown"]  # outside the noise: bold


def test_compare_reports_interval_matches_the_normal_approximation_and_its_seed():
    rng = np.random.default_rng(1)
    base = list(rng.normal(2.0, 0.3, 400))
    diffs = rng.normal(0.05, 0.2, 400)
    new = [b + d for b, d in zip(base, diffs)]
    result = compare_codec_reports(_report({"pesq_wb": base}), _report({"pesq_wb": new}), resamples=4000)
    row = _row(result, "pesq_wb")
    half = 1.96 * diffs.std() / np.sqrt(len(diffs))
    assert row["difference"] == pytest.approx(diffs.mean())
    assert row["low"] == pytest.approx(diffs.mean() - half, abs=0.15 * half)
    assert row["high"] == pytest.approx(diffs.mean() + half, abs=0.15 * half)
    again = compare_codec_reports(_report({"pesq_wb": base}), _report({"pesq_wb": new}), resamples=4000)
    assert again["rows"] == result["rows"]  # same seed, same intervals
    noise = compare_codec_reports(_report({"pesq_wb": base}), _report({"pesq_wb": [b + 0.1 * (-1) ** i for i, b in
                                                                                   enumerate(base)]}), resamples=2000)
    assert _row(noise, "pesq_wb")["low"] < 0 < _row(noise, "pesq_wb")["high"]  # +-0.1 alternating: no difference


def test_compare_reports_pairs_only_clips_both_scored_and_sentences_whole():
    base = _report({"pesq_wb": [2.0, None, 3.0, 1.0]})
    new = _report({"pesq_wb": [2.5, 4.0, None, 1.5]})
    row = _row(compare_codec_reports(base, new, resamples=200), "pesq_wb")
    assert (row["n"], row["base"], row["new"], row["difference"]) == (2, 1.5, 2.0, 0.5)
    texts = ["a b", "c d e f", "g h"]
    asr = {"texts": texts}
    base = _report({"stoi": [0.8, 0.8, 0.8]}, asr=asr)
    new = _report({"stoi": [0.9, 0.9, 0.9]}, asr=asr)
    base["systems"][0]["asr"] = {"transcripts": ["a b", "c", "g x"]}
    new["systems"][0]["asr"] = {"transcripts": ["a", "c d e f", "g h"]}
    words = _row(compare_codec_reports(base, new, resamples=2000), "words_found")
    assert words["base"] == pytest.approx(word_recall(texts, ["a b", "c", "g x"]))  # 4 of 8
    assert words["new"] == pytest.approx(word_recall(texts, ["a", "c d e f", "g h"]))  # 7 of 8
    assert words["difference"] == pytest.approx(3 / 8) and (words["better"], words["worse"]) == (2, 1)
    assert words["low"] <= 3 / 8 <= words["high"]
    del base["asr"]["texts"]  # a report from before eval-codec kept its texts
    older = compare_codec_reports(base, new, resamples=200)
    assert [r["metric"] for r in older["rows"]] == ["stoi"] and "words found not compared" in older["markdown"]


def test_compare_reports_refuses_reports_on_different_clips_and_unknown_systems(tmp_path):
    base = _report({"pesq_wb": [2.0, 2.1]})
    with pytest.raises(ValueError, match="not on the same clips: clips is 2 in base and 3 in new"):
        compare_codec_reports(base, _report({"pesq_wb": [2.0, 2.1, 2.2]}))
    with pytest.raises(ValueError, match="they last 10.0 s in base and 12.5 s in new"):
        compare_codec_reports(base, _report({"pesq_wb": [2.0, 2.1]}, seconds=12.5))
    with pytest.raises(ValueError, match=r"systems \['opus 6 kbps'\] are not in both reports"):
        compare_codec_reports(base, base, systems=["opus 6 kbps"])
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1, got 95"):
        compare_codec_reports(base, base, confidence=95)
    with pytest.raises(ValueError, match="not an eval-codec report"):
        compare_codec_reports(base, {"rows": []})
    with pytest.raises(FileNotFoundError, match="new report .*missing.json' does not exist"):
        compare_codec_reports(base, tmp_path / "missing.json")


def test_compare_reports_by_group_pairs_each_values_clips_alone():
    labels = ["b", "a", "b", "a", "c", "b"]
    base_pesq = [2.0, 1.0, 2.2, 1.2, 3.0, 2.4]
    shift = {"a": 0.5, "b": -0.25, "c": 0.0}  # a change that helps one voice and hurts another
    groups = {"column": "voice", "labels": labels}
    base = _report({"pesq_wb": base_pesq}, groups=groups)
    new = _report({"pesq_wb": [x + shift[g] for x, g in zip(base_pesq, labels)]}, groups=groups)
    result = compare_codec_reports(base, new, resamples=500, by_group=True)
    assert result["group_column"] == "voice" and [r["group"] for r in result["group_rows"]] == ["a", "b", "c"]
    for r in result["group_rows"]:
        assert r["difference"] == pytest.approx(shift[r["group"]]) and r["n"] == labels.count(r["group"])
        assert r["low"] == pytest.approx(shift[r["group"]]) and r["high"] == pytest.approx(shift[r["group"]])
    a = result["group_rows"][0]
    assert a["base"] == pytest.approx(1.1) and (a["better"], a["worse"]) == (2, 0)
    overall = _row(result, "pesq_wb")
    assert overall["difference"] == pytest.approx(np.mean([shift[g] for g in labels]))  # the same rows as without
    assert "By voice:" in result["markdown"]
    assert "| a | codec k=8 | pesq_wb ↑ | 1.1000 | 1.6000 |" in result["markdown"]
    plain = compare_codec_reports(base, new, resamples=500)
    assert "group_rows" not in plain and plain["rows"] == result["rows"]  # the overall rows are untouched
    with pytest.raises(ValueError, match="needs reports broken down by a column .*the new report has none"):
        compare_codec_reports(base, _report({"pesq_wb": base_pesq}), by_group=True)
    with pytest.raises(ValueError, match="different columns: 'voice' in base and 'engine' in new"):
        compare_codec_reports(base, _report({"pesq_wb": base_pesq}, groups={"column": "engine", "labels": labels}),
                              by_group=True)
    with pytest.raises(ValueError, match="'voice' labels differ clip by clip"):
        compare_codec_reports(base, _report({"pesq_wb": base_pesq}, groups={"column": "voice",
                                                                             "labels": labels[::-1]}), by_group=True)


def test_compare_reports_command_on_two_eval_codec_reports(speech_dir, tmp_path, capsys):
    first, second = _codec(), _codec()
    with torch.no_grad():
        for p in second.decoder.parameters():
            p.mul_(0.5)  # same codes, another decoder
    for name, codec in (("a", first), ("b", second)):
        evaluate_codec(speech_dir, codec, num_codebooks=[2, 4], opus_kbps=(), progress=False,
                       output=tmp_path / f"{name}.json")
    assert main(["compare-reports", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--system", "codec k=4",
                 "--resamples", "300", "-o", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "cmp.json").read_text())
    reports = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b")]
    for row in result["rows"][:-1]:
        assert row["system"] == "codec k=4" and row["n"] == 2
        means = [r["systems"][1]["metrics"][row["metric"]]["mean"] for r in reports]
        assert (row["base"], row["new"]) == pytest.approx(means)  # the reports' own means, paired
        assert row["difference"] == pytest.approx(means[1] - means[0])
    assert result["rows"][-1]["metric"] == "steady_tones" and (tmp_path / "cmp.md").read_text() in out
    assert main(["compare-reports", str(tmp_path / "a.json"), str(tmp_path / "nope.json")]) == 2
    assert "new report" in capsys.readouterr().err


def _tts_report(hyps: list[str], ended: list[bool]) -> dict:
    texts = ["a b", "c d e f", "g h"]
    return {"wer_generated": 0.0, "items": [{"text": t, "hyp_generated": h, "ended_in_time": e}
                                            for t, h, e in zip(texts, hyps, ended)]}


def _music_report(predicted: list[str], tempi: list[float | None], key: str = "generated") -> dict:
    items = [{"text": f"caption {i}", "requested_family": "piano", "predicted_family": p, "requested_tempo": 100.0,
              "estimated_tempo": t} for i, (p, t) in enumerate(zip(predicted, tempi))]
    items[-1]["requested_tempo"] = None  # a caption without a tempo: left out of the tempo row
    return {key: {"items": items, "tempo": {"tolerance": 0.08}}}


def test_compare_generation_reports_pool_seeds_and_pair_items():
    base = [_tts_report(["a b", "c", "g x"], [True, True, False]), _tts_report(["a", "c d", "g h"], [True] * 3)]
    new = [_tts_report(["a", "c d e f", "g h"], [True, True, True]), _tts_report(["a", "c d", "g h"], [True] * 3)]
    result = compare_reports([base[0], new[0], base[1], new[1]], resamples=500)
    words, ended = _row(result, "words_found", "generated"), _row(result, "ended_in_time", "generated")
    texts = ["a b", "c d e f", "g h"] * 2
    assert words["base"] == pytest.approx(word_recall(texts, ["a b", "c", "g x", "a", "c d", "g h"]))
    assert words["difference"] == pytest.approx(3 / 16) and (words["better"], words["worse"]) == (2, 1)
    assert (ended["n"], ended["base"], ended["new"], ended["better"]) == (6, 5 / 6, 1.0, 1)
    music = compare_reports([_music_report(["piano", "organ", "piano"], [100.0, 150.0, 90.0], "through_codec"),
                             _music_report(["organ", "organ", "piano"], [104.0, 108.5, None], "through_codec")],
                            resamples=500)
    family, tempo = _row(music, "family", "through codec"), _row(music, "tempo", "through codec")
    assert (family["base"], family["new"], family["worse"]) == (2 / 3, 1 / 3, 1)
    assert (tempo["n"], tempo["base"], tempo["new"]) == (2, 0.5, 0.5)  # 104 is within 8% of 100, 108.5 is not
    assert (tempo["better"], tempo["worse"]) == (0, 0)
    with pytest.raises(ValueError, match="mix kinds"):
        compare_reports([base[0], _music_report(["piano"] * 3, [100.0] * 3)])
    with pytest.raises(ValueError, match="pair 0: the reports are not on the same items"):
        compare_reports([base[0], _tts_report(["a"], [True]) | {"items": [{"text": "z", "hyp_generated": "",
                                                                             "ended_in_time": True}]}])
    with pytest.raises(ValueError, match="give reports in pairs, base then new.*got 3"):
        compare_reports([base[0], new[0], base[1]])
    for kwargs in ({"systems": ["codec k=8"]}, {"by_group": True}):
        with pytest.raises(ValueError, match="systems= and by_group= are for eval-codec reports"):
            compare_reports([base[0], new[0]], **kwargs)
    with pytest.raises(ValueError, match="not an eval-tts report"):
        compare_reports([{"rows": []}, {"rows": []}])


# ------------------------------------------------------------------------------------------------- tempo words
def test_clicks_at_each_tempo_words_bpm_measure_in_its_class():
    from lm.conditioners.beats import TEMPO_WORDS
    from pipelines.evaluation.tempo_words import tempo_class

    for bpm in sorted(set(TEMPO_WORDS.values())):  # 72, 104, 128, 144
        measured = estimate_tempo(_clicks(bpm), 22050)
        assert measured == pytest.approx(bpm, rel=0.04) and tempo_class(measured) == tempo_class(bpm)
    assert [tempo_class(b) for b in (30.0, 89.9, 90.0, 119.9, 120.0, 300.0)] == [
        "slow", "slow", "moderate", "moderate", "fast", "fast"]


def test_tempo_word_captions_are_those_with_a_word_and_no_number():
    from pipelines.evaluation.tempo_words import TEMPO_WORD_CAPTIONS, tempo_word_captions, tempo_word_class

    assert [tempo_word_class(c) for c in ("a slow piano ballad", "a steady groove", "a lively tune",
                                          "a slow ballad at 140 bpm", "breakfast jazz", "organ and bass")] == [
        "slow", "moderate", "fast", None, None, None]
    classes = [tempo_word_class(c) for c in TEMPO_WORD_CAPTIONS]
    assert {name: classes.count(name) for name in classes} == {"slow": 4, "moderate": 4, "fast": 4}
    held_out = ["a calm piece at 70 bpm", "a gentle harp tune", "organ and bass", "a fast drum groove"]
    assert tempo_word_captions(held_out) == [*TEMPO_WORD_CAPTIONS, "a gentle harp tune"]  # once each


def test_evaluate_tempo_words_reports_each_class_with_a_stand_in_generator(tmp_path):
    from pipelines.evaluation.tempo_words import evaluate_tempo_words, format_tempo_word_report

    sr = 22050
    played = {"a slow ballad": 72, "a calm tune": 140, "a steady groove": 104, "a fast groove": 144}
    captions = [*played, "an urgent line", "an energetic line"]
    calls = []

    def generate_fn(texts, seed):
        calls.append((list(texts), seed))
        clips = [(torch.from_numpy(_clicks(played[t], sr, 6.0)), sr) for t in texts[:4]]
        return clips + [(torch.zeros(sr * 2), sr), (torch.zeros(sr // 20), sr)]  # silent; too short

    report = evaluate_tempo_words(generate_fn, captions, seeds=(3, 4), output=tmp_path / "tempo_words.json")
    assert calls == [(captions, 3), (captions, 4)] and report["seeds"] == [3, 4]
    classes = report["classes"]
    assert list(classes) == ["slow", "moderate", "fast"]
    slow, moderate, fast = classes["slow"], classes["moderate"], classes["fast"]
    assert (slow["n"], slow["in_range"], slow["range"], slow["unmeasured"]) == (4, 0.5, [0.0, 90.0], 0)
    assert slow["median_bpm"] == pytest.approx((72 + 140) / 2, rel=0.04)
    assert (moderate["n"], moderate["in_range"], moderate["range"]) == (2, 1.0, [90.0, 120.0])
    assert moderate["median_bpm"] == pytest.approx(104, rel=0.04)
    assert (fast["n"], fast["range"], fast["unmeasured"]) == (6, [120.0, None], 4)
    assert fast["in_range"] == pytest.approx(1 / 3) and fast["median_bpm"] == pytest.approx(144, rel=0.04)  # measured
    # 140 bpm for "calm" (72) is out of the slow range but twice the word's tempo: octave-tolerant, it counts.
    assert (slow["word_bpm_octave"], moderate["word_bpm_octave"]) == (1.0, 1.0)
    assert fast["word_bpm_octave"] == pytest.approx(1 / 3)
    assert [(i["text"], i["seed"], i["asked"]) for i in report["items"][:2]] == [
        ("a slow ballad", 3, "slow"), ("a calm tune", 3, "slow")]
    assert json.loads((tmp_path / "tempo_words.json").read_text()) == json.loads(json.dumps(report))
    table = format_tempo_word_report(report)
    assert "| slow | < 90 | 4 | " in table and "| moderate | 90-120 | 2 | 104 | 1.00 | 1.00 |" in table
    assert "| fast | > 120 | 6 | " in table and "seeds 3, 4" in table
    for bad in (["a slow ballad at 60 bpm"], ["organ and bass"], []):
        with pytest.raises(ValueError, match="tempo word|at least one caption"):
            evaluate_tempo_words(generate_fn, bad)


def test_eval_music_reports_the_tempo_words_per_class(classifier, toy_music_dir, lm_dir, tmp_path):
    from pipelines.evaluation import evaluate_music_lm
    from pipelines.evaluation.tempo_words import TEMPO_WORD_CAPTIONS

    report = evaluate_music_lm(toy_music_dir, classifier[1], model=lm_dir, max_clips=4, duration=1.0, seed=2,
                               progress=False, output=tmp_path / "music.json")
    words = report["tempo_words"]
    assert words["seeds"] == [2] and [i["text"] for i in words["items"]] == list(TEMPO_WORD_CAPTIONS)
    assert all(i["seconds"] <= 1.0 for i in words["items"])
    for name in ("slow", "moderate", "fast"):
        r = words["classes"][name]
        assert r["n"] == 4 and 0.0 <= r["in_range"] <= 1.0 and set(r) == {
            "n", "median_bpm", "in_range", "range", "unmeasured", "word_bpm_octave"}
    assert "| asked | range (bpm) | n | median measured bpm | in range ↑ |" in report["markdown"]
    assert json.loads((tmp_path / "music.json").read_text())["tempo_words"] == json.loads(json.dumps(words))


def test_evaluate_music_reports_near_silence_per_clip_with_a_stand_in_generator(classifier, toy_music_dir):
    from pipelines.evaluation.data import iter_audio, load_split
    from pipelines.evaluation.music_eval import format_silence_report

    audio = {row["text"]: (wav, sr) for wav, sr, row in iter_audio(load_split(toy_music_dir, "test"))}
    texts = list(audio)

    def generate(captions: list[str]) -> list[tuple[torch.Tensor, int]]:
        out = []
        for c in captions:
            wav, sr = audio[c]
            if c == texts[1]:  # a clip of the stand-in in which the last 2 s of 4 s are silent
                wav = torch.cat([wav[..., : 2 * sr], torch.zeros_like(wav[..., 2 * sr:])], dim=-1)
            out.append((wav, sr))
        return out

    report = evaluate_music_generation(generate, toy_music_dir, classifier[1], batch_size=4, progress=False)
    items = report["items"]
    assert all(0.0 <= i["near_silence"] <= 1.0 and i["longest_silence"] >= 0.0 for i in items)
    gapped = items[1]
    assert gapped["near_silence"] >= 0.5 and gapped["longest_silence"] >= 2.0
    s = report["near_silence"]
    assert s["clips"] == 6 and s["over_limit_clips"] == sum(i["near_silence"] > 0.1 for i in items) >= 1
    assert s["worst"]["text"] == texts[1] and s["worst"]["share"] == gapped["near_silence"]
    assert s["worst"]["seed"] is None and s["sparse_captions"]["clips"] == 0  # no seeds; no caption asks for sparse
    table = format_silence_report(s)
    assert "| captions | clips | clips > 10% near-silent ↓ | median share ↓ | worst clip |" in table
    assert f'"{texts[1]}"' in table and "| asking for sparseness | 0 | 0 (0%) |" in table


def test_eval_music_names_the_seed_of_each_clip_and_tables_near_silence(classifier, toy_music_dir, lm_dir):
    from pipelines.evaluation import evaluate_music_lm

    report = evaluate_music_lm(toy_music_dir, classifier[1], model=lm_dir, max_clips=4, duration=1.0, seed=5,
                               batch_size=2, progress=False)
    gen = report["generated"]
    assert [i["seed"] for i in gen["items"]] == [5, 5, 6, 6]  # seed + batch index
    s = gen["near_silence"]
    assert s["clips"] + s["sparse_captions"]["clips"] == 4 and 0.0 <= s["median_share"] <= 1.0
    assert s["worst"]["seed"] in (5, 6) and s["worst"]["share"] == max(i["near_silence"] for i in gen["items"])
    assert "| captions | clips | clips > 10% near-silent ↓ |" in report["markdown"]
    assert "| generated |" in report["markdown"]  # the other tables stay


# ---- input level ------------------------------------------------------------------------------------------


def test_input_level_scales_to_the_rms_asked_and_clips_at_full_scale():
    from pipelines.evaluation import InputLevel

    torch.manual_seed(0)
    wav = 0.1 * torch.randn(1, 16000)
    for dbfs in (-30.0, -20.0):
        out, clipped = InputLevel(level_dbfs=dbfs).apply(wav)
        assert 20 * math.log10(float(out.pow(2).mean().sqrt())) == pytest.approx(dbfs, abs=0.01)
        assert clipped == 0.0  # full scale is 10 and more standard deviations away
    out, clipped = InputLevel(level_dbfs=-10.0).apply(wav)  # full scale at 3.2 standard deviations
    assert 0.0 < clipped < 0.005 and 20 * math.log10(float(out.pow(2).mean().sqrt())) == pytest.approx(-10, abs=0.05)
    out, clipped = InputLevel(level_dbfs=-20.0, clip_db=20.0).apply(wav)
    assert out.abs().max() == 1.0 and 0.2 < clipped < 0.4  # RMS at 0 dBFS: |x| > 1 for a third of the samples
    assert clipped == pytest.approx(float((out.abs() == 1.0).float().mean()), abs=1e-4)
    assert torch.equal(InputLevel().apply(wav)[0], wav)  # as recorded
    silent, share = InputLevel(level_dbfs=-20.0).apply(torch.zeros(1, 100))
    assert torch.equal(silent, torch.zeros(1, 100)) and share == 0.0
    assert InputLevel(level_dbfs=-20.0, clip_db=12.0).name == "-20 dBFS +12 dB clipped"


@pytest.mark.parametrize("fields, message", [
    (dict(level_dbfs=3.0), r"level_dbfs must be <= 0 dBFS .* got 3.0"),
    (dict(level_dbfs=float("nan")), r"level_dbfs must be a finite number of dB or None, got nan"),
    (dict(clip_db=0.0), r"clip_db must be > 0 dB of gain into clipping, got 0.0"),
    (dict(clip_db="6"), r"clip_db must be a finite number of dB or None, got '6'"),
])
def test_bad_input_levels(fields, message):
    from pipelines.evaluation import InputLevel

    with pytest.raises(ValueError, match=message):
        InputLevel(**fields)


def test_evaluate_codec_at_an_input_level_scores_every_system_on_that_version(speech_dir, tmp_path, capsys):
    from pipelines.evaluation import InputLevel
    from pipelines.evaluation.data import iter_audio, load_split
    from tokenizer.audio import resample

    codec = _codec()
    level = InputLevel(level_dbfs=-30.0)
    report = evaluate_codec(speech_dir, codec, max_clips=1, num_codebooks=[4], opus_kbps=(6,), level=level,
                            progress=False)
    wav, sr, _ = next(iter_audio(load_split(speech_dir, "test")))
    ref, _ = level.apply(resample(wav, sr, 8000))
    est = codec.decode(codec.encode(ref[None]))[0, :, : ref.shape[-1]]
    assert report["systems"][0]["metrics"]["si_sdr"]["mean"] == pytest.approx(si_sdr(ref, est), abs=1e-4)
    assert report["input_level"] == {"level_dbfs": -30.0, "clip_db": None, "name": "-30 dBFS",
                                     "clipped_samples": 0.0}
    assert "Input level: -30 dBFS (0.00% of samples clipped)" in report["markdown"]
    codec_dir = codec.save_pretrained(tmp_path / "codec")
    assert main(["eval-codec", "--data", str(speech_dir), "--codec", str(codec_dir), "--num-codebooks", "4",
                 "--opus-kbps", "--max-clips", "1", "--level-dbfs", "-20", "--clip-db", "12"]) == 0
    assert "Input level: -20 dBFS +12 dB clipped (" in capsys.readouterr().out
    assert main(["eval-codec", "--data", str(speech_dir), "--level-dbfs", "6"]) == 2
    assert "level_dbfs must be <= 0 dBFS" in capsys.readouterr().err


def test_evaluate_codec_at_the_codec_s_level_codes_the_clip_scaled_and_scores_it_scaled_back(speech_dir, capsys):
    from pipelines.evaluation.data import iter_audio, load_split
    from tokenizer.audio import resample
    from tokenizer.level import CodecLevel

    codec = _codec()
    level = CodecLevel(-18.0)
    report = evaluate_codec(speech_dir, codec, max_clips=1, num_codebooks=[4], opus_kbps=(), codec_level=level,
                            progress=False)
    wav, sr, _ = next(iter_audio(load_split(speech_dir, "test")))
    ref = resample(wav, sr, 8000)
    gain = level.gain_for(ref)
    est = codec.decode(codec.encode(ref[None] * gain))[0, :, : ref.shape[-1]] / gain
    assert report["systems"][0]["metrics"]["si_sdr"]["mean"] == pytest.approx(si_sdr(ref, est), abs=1e-4)
    assert report["codec_level"] == {"target_dbfs": -18.0, "max_gain_db": 30.0}
    assert "brought to -18 dBFS RMS" in report["markdown"]
    assert main(["eval-codec", "--data", str(speech_dir), "--codec-level", "3"]) == 2
    assert "target_dbfs must be <= 0" in capsys.readouterr().err


def test_evaluate_codec_auto_decodes_each_clip_with_the_folder_s_choice(speech_dir, tmp_path):
    from tokenizer.decoder_choice import FEATURE_CODEBOOKS, DecoderChoice

    _, codec_dir = _codec_with_speech_variant(tmp_path)
    with pytest.raises(ValueError, match="variant='auto' needs a codec folder with a decoder choice"):
        evaluate_codec(speech_dir, codec_dir, variant="auto", max_clips=1, num_codebooks=[4], opus_kbps=(),
                       progress=False)
    DecoderChoice(torch.zeros(FEATURE_CODEBOOKS * 32), 20.0, 32, "speech").save(codec_dir)  # always speech
    auto = evaluate_codec(speech_dir, codec_dir, variant="auto", max_clips=1, num_codebooks=[4], opus_kbps=(),
                          progress=False)
    speech = evaluate_codec(speech_dir, codec_dir, variant="speech", max_clips=1, num_codebooks=[4], opus_kbps=(),
                            progress=False)
    assert auto["systems"] == speech["systems"] and auto["decoders_chosen"] == {"speech": 1}
    assert "Decoder chosen per clip from its codes (the folder's decoder choice): speech 1 clips." in auto["markdown"]


def test_decoder_choice_fit_encodes_each_clip_at_the_next_level(speech_dir):
    from pipelines.decoder_choice import _windows
    from pipelines.evaluation.data import iter_audio, load_split
    from tokenizer.audio import resample, to_channels

    codec = _codec().eval()
    levels = (InputLevel(-30.0), InputLevel(-20.0, 12.0))
    _, clips = _windows(codec, speech_dir, "test", 3, 12.0, 100, levels)
    assert len(clips) == 2
    for i, (wav, sr, _) in enumerate(iter_audio(load_split(speech_dir, "test"), 3)):
        audio = resample(to_channels(wav, codec.channels), sr, codec.sample_rate)
        with torch.no_grad():
            expected = codec.encode(levels[i % 2].apply(audio)[0][None])[0]
        assert torch.equal(clips[i], expected)
    with pytest.raises(ValueError, match="at least one input level"):
        fit_decoder_choice(speech_dir, [speech_dir], [speech_dir], levels=(), save=False)


def test_fit_decoder_choice_command_measures_each_dataset_and_writes_the_choice(speech_dir, tmp_path, capsys):
    from tokenizer.decoder_choice import DecoderChoice

    t = np.arange(8000) / 8000
    tones = [0.3 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 1.5 * f * t) for f in (220, 330, 440)]
    music = tmp_path / "music"
    music.mkdir()
    for i, wav in enumerate(tones):
        sf.write(music / f"{i}.wav", wav, 8000)

    def split(idx):
        return Dataset.from_dict({"audio": [str(music / f"{i}.wav") for i in idx]}).cast_column("audio", Audio())

    DatasetDict({"train": split([0, 1]), "test": split([2])}).save_to_disk(str(tmp_path / "music_ds"))
    codec = _codec()
    codec_dir = codec.save_pretrained(tmp_path / "codec")
    args = ["fit-decoder-choice", "--codec", str(codec_dir), "--speech", str(speech_dir), "--music",
            str(tmp_path / "music_ds"), "--window-seconds", "0.25"]
    assert main(args) == 2 and "has no decoder variant 'speech' to choose" in capsys.readouterr().err
    codec.save_decoder_variant(codec_dir, "speech")
    assert main(args) == 0
    out = capsys.readouterr().out
    choice = DecoderChoice.load(codec_dir)
    assert choice.speech_variant == "speech" and choice.info["window_seconds"] == 0.25
    assert choice.info["levels"] == [level.name for level in FIT_LEVELS]
    test = choice.info["test"]
    assert [figures["label"] for figures in test.values()] == ["speech", "music"]
    assert test[str(speech_dir)]["clips"] == 2 and test[str(tmp_path / "music_ds")]["clips"] == 1
    assert all(0.0 <= figures["clip_accuracy"] <= 1.0 and figures["windows"] >= figures["clips"]
               for figures in test.values())
    assert f"{tmp_path / 'music_ds'} (music): right on" in out
