"""`evaluate_codec`: reconstruction quality of a codec at each of its bitrates, next to Opus, on held-out audio.

Every clip of the split is brought to the codec's rate and channel count; that version is the reference for
every system, so resampling is nobody's loss. The codec encodes it once with all codebooks and decodes each
prefix of k codebooks (an RVQ's first k codes are its k-codebook encoding). Opus (ffmpeg's libopus) codes the
same reference at each requested bitrate; its bitrate in the report is the real one, file bytes (Ogg container
included) * 8 over the audio's duration, while the codec's is its nominal `bitrate(k)` (no entropy coding).
With `asr=True` (speech with transcripts) every system's output and the reference also go through the offline
recogniser of `asr`: the words it still finds are an intelligibility measure that PESQ and STOI do not replace.
With `phase_oracle=True` two oracles join them, built from the codec's output at its largest k and the reference
(`metrics.phase_swap`): the decoded magnitudes with the reference's phase, and the reference's magnitudes with the
decoded phase. They say whether the codec loses more in its magnitudes or in its phases.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from tokenizer import RVQCodec
from tokenizer.audio import resample, to_channels
from tokenizer.level import CodecLevel

from ..defaults import resolve_codec, resolve_decoder_choice
from .asr import RECOGNISER, transcribe
from .data import check_opus_kbps, describe, iter_audio, load_split, opus_roundtrip, write_report
from .input_level import InputLevel
from .metrics import (harmonic_energy_fraction, harmonic_tone, mel_distance, pesq_wb, phase_swap, si_sdr,
                      stft_distance, stoi, wer, word_recall)

# name -> (units, True if higher is better), in table order
METRICS = {
    "mel_distance": ("multi-scale log-mel L1 (log10 power, summed over 7 scales)", False),
    "stft_distance": ("multi-resolution STFT: spectral convergence + log-magnitude L1", False),
    "si_sdr": ("dB", True),
    "pesq_wb": ("MOS-LQO, wideband PESQ at 16 kHz (1.04-4.64)", True),
    "stoi": ("0-1", True),
}
SPEECH_METRICS = ("pesq_wb", "stoi")
# Pitches of the steady-tone probe: 24 log-spaced from 90 to 350 Hz (voices' and low notes' fundamentals).
STEADY_TONE_F0S = tuple(round(90 * (350 / 90) ** (i / 23), 1) for i in range(24))
AUTO = "auto"  # evaluate_codec's variant for the decoder the folder's choice picks per clip
_MIN_SAMPLES = 1025  # the 2048-sample windows of the spectral distances need more than 1024 samples


def evaluate_codec(
    data: str | os.PathLike | Dataset | DatasetDict,
    codec: RVQCodec | str | os.PathLike | None = None,
    variant: str | None = None,
    split: str = "test",
    max_clips: int | None = None,
    num_codebooks: Sequence[int] | None = None,
    opus_kbps: Sequence[float] = (6, 12),
    output: str | os.PathLike | None = None,
    domain: str | None = None,
    by: str | None = None,
    asr: bool = False,
    phase_oracle: bool = False,
    level: InputLevel | None = None,
    codec_level: CodecLevel | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean reconstruction metrics of `codec` at each bitrate and of Opus, on the held-out `split` of `data`.

    Args:
        data: a dataset folder written by `save_to_disk` (e.g. `rvqaudio data`), a DatasetDict or a Dataset.
        codec: an RVQCodec, a codec folder, or None for the bundled default.
        variant: a decoder variant of that folder (or of the bundled codec) to decode with, e.g. "speech"; AUTO
            ("auto"): per clip, the decoder that the folder's decoder choice picks from the clip's codes, as
            `rvqaudio decode` does by default (the report counts each decoder's clips in `decoders_chosen`).
        split: which split to evaluate (the held-out "test" by default).
        max_clips: evaluate only the first N clips.
        num_codebooks: the codebook counts k to evaluate (default every k in 1..K).
        opus_kbps: target bitrates of the Opus baseline (kbps); empty for none.
        output: where to write the JSON report; a markdown table is written beside it (same name, `.md`).
        domain: "speech" adds wideband PESQ and STOI; "music" does not; None: "speech" if the dataset has a
            `voice` column, else "music".
        by: a column of the split (e.g. "voice", "engine" or "family") to break the figures down by: the report
            gains `groups`, each value's mean of every metric per system, and the markdown a table per value of
            the headline metrics (PESQ and STOI for speech, mel and STFT distances for music) of the codec at
            its largest k and of Opus.
        asr: also transcribe the reference and every system's output of each clip with `asr.transcribe`
            (speech with a `text` column only; about 5x real time per system on one core). The report gains
            `asr = {recogniser, words, texts, reference: {wer, words_found, transcripts}}` and each system `asr = {wer,
            words_found, transcripts}`: corpus WER and the share of the transcripts' words found (`metrics.wer`,
            `metrics.word_recall`), and a table of them in the markdown.
        phase_oracle: also score two oracles of the codec at the largest k evaluated (kind "oracle", kbps None):
            its output's STFT magnitudes with the reference's phases, and the reference's magnitudes with its
            output's phases (`metrics.phase_swap`). Not codecs: they use the reference.
        level: bring every clip to this input level (`InputLevel`: an RMS in dBFS, optionally driven into
            clipping) before any system codes it; that version is the reference. The report gains `input_level`
            (its settings and the mean share of clipped samples). None: the clips as stored.
        codec_level: the codec codes each clip brought to this level (`tokenizer.level.CodecLevel`), its output
            divided by the gain, as `rvqaudio encode` and `decode` do (the report gains `codec_level`); other
            systems code the clip as it is. None: the codec codes the clip at its own level, as `RVQCodec.encode`.
        progress: show a progress bar over clips.

    Returns the report: `systems`, a list of `{name, kind, kbps, num_codebooks | target_kbps, metrics}` where
    `metrics[m] = {mean, std, n, values}` for `m` in METRICS (PESQ and STOI for speech only; `values` holds each
    scored clip's figure in dataset order, None where undefined, for paired comparisons between reports), plus
    `clips`, `seconds`, `sample_rate`, `domain`, `skipped` (clips too short to score), `units` and `markdown` (the
    table), and `steady_tones` (`steady_tone_fidelity`: does a held pitch survive the codec). With `by`: `groups =
    {column, labels (each scored clip's value, in the order of values), means ({value: {system: {metric: mean |
    None, n}}})}`.
    """
    if level is not None and not isinstance(level, InputLevel):
        raise ValueError(f"level must be an InputLevel or None, got {type(level).__name__}")
    if codec_level is not None and not isinstance(codec_level, CodecLevel):
        raise ValueError(f"codec_level must be a CodecLevel or None, got {type(codec_level).__name__}")
    decoders, choice = None, None  # with AUTO: variant -> codec, and the folder's choice between them
    if variant == AUTO:
        choice = resolve_decoder_choice(codec)
        if choice is None:
            raise ValueError("variant='auto' needs a codec folder with a decoder choice (decoder_choice.json; "
                             "`rvqaudio fit-decoder-choice`)")
        decoders = {None: resolve_codec(codec, None), choice.speech_variant: resolve_codec(codec, choice.speech_variant)}
        codec = decoders[None]
    else:
        codec = resolve_codec(codec, variant)
    chosen: Counter[str] = Counter()  # with AUTO: clips per decoder ("own" for the codec's own)
    ds = load_split(data, split)
    if domain is None:
        domain = "speech" if "voice" in ds.column_names else "music"
    if domain not in ("speech", "music"):
        raise ValueError(f"domain must be 'speech', 'music' or None (detect), got {domain!r}")
    ks = _check_num_codebooks(num_codebooks, codec.num_codebooks)
    opus_kbps = check_opus_kbps(opus_kbps)
    if max_clips is not None and (not isinstance(max_clips, int) or max_clips < 1):
        raise ValueError(f"max_clips must be a positive integer or None, got {max_clips!r}")
    metric_names = [m for m in METRICS if domain == "speech" or m not in SPEECH_METRICS]
    if by is not None and by not in ds.column_names:
        raise ValueError(f"by={by!r} is not a column of split {split!r}; it has {ds.column_names}")
    if asr and (domain != "speech" or "text" not in ds.column_names):
        raise ValueError(f"asr=True needs speech with a 'text' column (the transcripts); split {split!r} is "
                         f"{domain} with columns {ds.column_names}")

    systems = [{"name": f"codec k={k}", "kind": "codec", "num_codebooks": k, "kbps": codec.bitrate(k)} for k in ks]
    systems += [{"name": f"opus {b:g} kbps", "kind": "opus", "target_kbps": b} for b in opus_kbps]
    oracles = {}  # with phase_oracle: system name -> (magnitudes from, phases from), each "codec" or "reference"
    if phase_oracle:
        k = ks[-1]
        oracles = {f"codec k={k} magnitudes, reference phase": ("codec", "reference"),
                   f"reference magnitudes, codec k={k} phase": ("reference", "codec")}
        systems += [{"name": name, "kind": "oracle", "num_codebooks": k, "kbps": None} for name in oracles]
    scores = {s["name"]: {m: [] for m in metric_names} for s in systems}
    opus_bytes = {b: 0 for b in opus_kbps}
    texts: list[str] = []  # with asr: each scored clip's transcript, and what the recogniser hears in each system
    heard: dict[str, list[str]] = {"reference": [], **{s["name"]: [] for s in systems}}
    sr = codec.sample_rate
    clips, seconds, skipped = 0, 0.0, 0
    labels: list[str] = []  # the `by` value of each scored clip
    clipped: list[float] = []  # with level: each scored clip's share of samples cut off at full scale
    total = len(ds) if max_clips is None else min(len(ds), max_clips)
    for wav, clip_sr, row in tqdm(iter_audio(ds, max_clips), total=total, desc=f"eval-codec {split}",
                                disable=not progress, unit="clip"):
        ref = resample(to_channels(wav, codec.channels), clip_sr, sr)  # (C, N) at the codec's rate
        n = ref.shape[-1]
        if n < max(_MIN_SAMPLES, codec.hop_length):
            skipped += 1
            continue
        if level is not None:
            ref, share = level.apply(ref)
            clipped.append(share)
        clips += 1
        seconds += n / sr
        if by is not None:
            labels.append(str(row[by]))
        outputs = {}  # system name -> its (C, N) output
        gain = 1.0 if codec_level is None else codec_level.gain_for(ref)
        codes = codec.encode(ref[None] * gain)  # (1, K, T)
        decoder = codec
        if choice is not None:
            name = choice.choose(codes)[0]
            chosen[name or "own"] += 1
            decoder = decoders[name]
        for k in ks:
            outputs[f"codec k={k}"] = decoder.decode(codes[:, :k])[0, :, :n].float() / gain
        for b in opus_kbps:
            result = opus_roundtrip(ref, sr, b)
            opus_bytes[b] += result.num_bytes
            outputs[f"opus {b:g} kbps"] = result.audio
        sides = {"codec": outputs[f"codec k={ks[-1]}"], "reference": ref}
        for name, (magnitude, phase) in oracles.items():
            outputs[name] = phase_swap(sides[magnitude], sides[phase])
        for name, est in outputs.items():
            _score(scores[name], ref, est, sr)
        if asr:
            texts.append(row["text"])
            heard["reference"].append(transcribe(ref, sr))
            for name, est in outputs.items():
                heard[name].append(transcribe(est, sr))
    if clips == 0:
        raise ValueError(f"no clip of split {split!r} could be scored (empty split, or all shorter than "
                         f"{_MIN_SAMPLES} samples at {sr} Hz)")

    for s in systems:
        if s["kind"] == "opus":
            s["kbps"] = opus_bytes[s["target_kbps"]] * 8 / seconds / 1000
        s["metrics"] = {m: _summary(v) for m, v in scores[s["name"]].items()}
        if asr:
            s["asr"] = _asr_summary(texts, heard[s["name"]])
    report = {
        "data": describe(data), "split": split,
        "domain": domain, "clips": clips, "seconds": seconds, "skipped": skipped, "sample_rate": sr,
        "codec": {"fingerprint": codec.fingerprint, "variant": variant, "num_codebooks": codec.num_codebooks,
                  "codebook_size": codec.codebook_size, "frame_rate": codec.frame_rate},
        "systems": systems,
        "units": {m: METRICS[m][0] for m in metric_names} | {
            "kbps": "codec: nominal frame_rate * k * log2(codebook_size); opus: measured file bytes * 8 / seconds; "
                    "oracles: none (null)"},
    }
    if choice is not None:
        report["decoders_chosen"] = dict(chosen)
    if level is not None:
        report["input_level"] = level.to_json() | {"clipped_samples": float(np.mean(clipped))}
    if codec_level is not None:
        report["codec_level"] = dataclasses.asdict(codec_level)
    if by is not None:
        report["groups"] = {"column": by, "labels": labels, "means": _group_means(systems, labels)}
    if asr:
        report["asr"] = {"recogniser": RECOGNISER, "words": sum(len(t.split()) for t in texts), "texts": texts,
                         "reference": _asr_summary(texts, heard["reference"])}
    report["steady_tones"] = steady_tone_fidelity(codec)
    report["markdown"] = format_codec_report(report)
    write_report(output, report)
    return report


def format_codec_report(report: dict[str, Any]) -> str:
    """The markdown table of an `evaluate_codec` report: one row per system, mean (n) of each metric."""
    names = [m for m in METRICS if m in report["units"]]
    arrows = {m: "↑" if METRICS[m][1] else "↓" for m in names}
    lines = [f"Codec evaluation on {report['data']} [{report['split']}]: {report['clips']} {report['domain']} clips, "
             f"{report['seconds']:.1f} s at {report['sample_rate']} Hz", "",
             *([f"Input level: {report['input_level']['name']} ({report['input_level']['clipped_samples']:.2%} of "
                "samples clipped); every system codes, and is scored against, that version.", ""]
               if "input_level" in report else []),
             *([f"The codec codes each clip brought to {report['codec_level']['target_dbfs']:g} dBFS RMS and its "
                "output is brought back, as `rvqaudio encode` and `decode` do.", ""]
               if "codec_level" in report else []),
             *(["Decoder chosen per clip from its codes (the folder's decoder choice): " + ", ".join(
                 f"{name} {n}" for name, n in sorted(report["decoders_chosen"].items())) + " clips.", ""]
               if "decoders_chosen" in report else []),
             "| system | kbps | " + " | ".join(f"{m} {arrows[m]}" for m in names) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in names) + " |"]
    for s in report["systems"]:
        cells = []
        for m in names:
            v = s["metrics"][m]
            cells.append("–" if v["mean"] is None else f"{v['mean']:.3f}" if m != "si_sdr" else f"{v['mean']:.2f}")
        kbps = "–" if s["kbps"] is None else f"{s['kbps']:.2f}"
        lines.append(f"| {s['name']} | {kbps} | " + " | ".join(cells) + " |")
    lines += ["", "Opus kbps are measured from file sizes (Ogg container included); codec kbps are nominal."]
    if any(s["kind"] == "oracle" for s in report["systems"]):
        lines += ["Oracle rows mix the codec's output with the reference (STFT magnitudes of one, phases of the "
                  "other): they say where the codec loses, they are not codecs."]
    if "asr" in report:
        rows = [("reference", report["asr"]["reference"])] + [(s["name"], s["asr"]) for s in report["systems"]]
        lines += ["", f"Intelligibility to {report['asr']['recogniser']} ({report['asr']['words']} words; read each "
                  "system against the reference's row):", "",
                  "| audio | WER ↓ | words found ↑ |", "| --- | ---: | ---: |"]
        lines += [f"| {name} | {a['wer']:.3f} | {a['words_found']:.3f} |" for name, a in rows]
    if "groups" in report:
        lines += ["", *_format_groups(report)]
    if "steady_tones" in report:
        tones = report["steady_tones"]
        lines += ["", f"Steady tones through the codec (k={tones['num_codebooks']}): {tones['mean']:.3f} of a held "
                  f"harmonic tone's energy stays on its harmonics (mean over {len(tones['f0'])} pitches, "
                  f"{min(tones['f0']):g}-{max(tones['f0']):g} Hz; 1 = pitch kept)."]
    return "\n".join(lines) + "\n"


def steady_tone_fidelity(codec: RVQCodec, f0s: Sequence[float] = STEADY_TONE_F0S) -> dict[str, Any]:
    """Does a held pitch survive the codec? Each 2 s harmonic tone (`metrics.harmonic_tone`) goes through a round
    trip with every codebook; `metrics.harmonic_energy_fraction` of the result says how much of its energy stayed on
    the tone's harmonics (1.0 for the tone itself). A frame-wise decoder that repeats itself over a steady input pulls
    pitches onto multiples of its frame rate, which mel and STFT distances barely see.

    Returns `{f0, fraction (per f0), mean, num_codebooks}`. Single tones are sensitive to where the codes fall; read
    the mean.
    """
    sr, fractions = codec.sample_rate, []
    for f0 in f0s:
        tone = harmonic_tone(f0, sr)
        est = codec.decode(codec.encode(to_channels(tone[None], codec.channels)[None]))[0, :, : tone.numel()]
        fractions.append(harmonic_energy_fraction(est.float().mean(0), sr, f0))
    return {"f0": [float(f) for f in f0s], "fraction": fractions, "mean": float(np.mean(fractions)),
            "num_codebooks": codec.num_codebooks}


def _group_means(systems: list[dict[str, Any]], labels: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{label: {system: {metric: mean of its clips (None if none defined), "n": clips}}} over `labels`' values."""
    means: dict[str, dict[str, dict[str, Any]]] = {}
    for label in sorted(set(labels)):
        rows = [i for i, x in enumerate(labels) if x == label]
        means[label] = {}
        for s in systems:
            cell: dict[str, Any] = {"n": len(rows)}
            for m, summary in s["metrics"].items():
                v = [summary["values"][i] for i in rows if summary["values"][i] is not None]
                cell[m] = float(np.mean(v)) if v else None
            means[label][s["name"]] = cell
    return means


def _format_groups(report: dict[str, Any]) -> list[str]:
    """Markdown lines: per value of the `by` column, the headline metrics of the largest-k codec and of Opus."""
    groups = report["groups"]
    headline = [m for m in (SPEECH_METRICS if report["domain"] == "speech" else ("mel_distance", "stft_distance"))
                if m in report["units"]]
    codecs = [s for s in report["systems"] if s["kind"] == "codec"]
    shown = ([max(codecs, key=lambda s: s["num_codebooks"])] if codecs else []) + [
        s for s in report["systems"] if s["kind"] == "opus"]
    arrows = {m: "↑" if METRICS[m][1] else "↓" for m in headline}
    columns = [(s["name"], m) for s in shown for m in headline]
    lines = [f"By {groups['column']}:", "",
             f"| {groups['column']} | clips | " + " | ".join(f"{name} {m} {arrows[m]}" for name, m in columns) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"]
    for label, cells in groups["means"].items():
        values = [cells[name][m] for name, m in columns]
        n = next(iter(cells.values()))["n"] if cells else 0
        lines.append(f"| {label} | {n} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |")
    return lines


def _score(into: dict[str, list[float]], ref: torch.Tensor, est: torch.Tensor, sample_rate: int) -> None:
    into["mel_distance"].append(mel_distance(ref, est, sample_rate))
    into["stft_distance"].append(stft_distance(ref, est))
    into["si_sdr"].append(si_sdr(ref, est))
    if "pesq_wb" in into:
        into["pesq_wb"].append(pesq_wb(ref, est, sample_rate))
        into["stoi"].append(stoi(ref, est, sample_rate))


def _asr_summary(texts: list[str], transcripts: list[str]) -> dict[str, Any]:
    return {"wer": wer(texts, transcripts), "words_found": word_recall(texts, transcripts), "transcripts": transcripts}


def _summary(values: list[float]) -> dict[str, Any]:
    per_clip = [float(x) if math.isfinite(x) else None for x in values]  # PESQ is NaN on silence
    v = np.asarray([x for x in per_clip if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "std": None, "n": 0, "values": per_clip}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(len(v)), "values": per_clip}


def _check_num_codebooks(num_codebooks: Sequence[int] | None, k_max: int) -> list[int]:
    if num_codebooks is None:
        return list(range(1, k_max + 1))
    ks = sorted({int(k) for k in num_codebooks})
    bad = [k for k in ks if not 1 <= k <= k_max]
    if bad or not ks:
        raise ValueError(f"num_codebooks must list codebook counts in 1..{k_max} (this codec's K), got "
                         f"{list(num_codebooks)}")
    return ks
