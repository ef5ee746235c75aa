"""Music evaluation: does a clip play the requested instrument family at the requested tempo, and how far do
generated clips lie from real renders.

- the instrument-family classifier lives in `family_classifier`.
- `evaluate_music`: for generated clips with the caption metadata they were asked for (`family`, `tempo`):
  requested-family accuracy by the classifier, tempo accuracy of `estimate_tempo` (exact and octave-tolerant),
  and the Fréchet distance between the generated and the reference clips' feature windows, and how much of each
  clip is near-silent (`silence`).
- `evaluate_music_generation`: the same for a `generate_fn(captions) -> [(wav, sr)]` over held-out captions.
- `evaluate_music_references`: the figures of real held-out renders standing in for generations (the upper
  bound a generator can reach under these measures), and two reference Fréchet distances.
- `evaluate_music_lm` (`eval-music`): both for an LM, and the tempo-word check of `tempo_words` (captions that ask
  for slow, moderate or fast music in words).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from lm import AudioLM
from lm.codec_interface import AudioTokenizer

from .data import check_count, check_opus_kbps, describe, iter_audio, load_split, opus_roundtrip, write_report
from .family_classifier import FamilyClassifier, clip_features, family_scores, has_split
from .metrics import audio_features, frechet_distance, tempo_errors, tempo_or_none
from .silence import SPARSE_WORDS, near_silence, near_silence_summary
from .tempo_words import evaluate_tempo_words_lm, format_tempo_word_report, tempo_word_captions

Generated = tuple[torch.Tensor, int, Mapping[str, Any]]  # (wav [C, N] or [N], sample rate in Hz, caption metadata)


# ------------------------------------------------------------------------------------------- generated music
MIN_CLIP_SECONDS = 0.2  # a shorter clip (an LM that ended almost at once) has no features or tempo to measure


def evaluate_music(
    generated: Sequence[Generated],
    reference: str | os.PathLike | Dataset | DatasetDict | Sequence[np.ndarray],
    classifier: FamilyClassifier | str | os.PathLike,
    reference_split: str = "test",
    max_reference: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score generated clips against what their captions asked for, and against real reference clips.

    Args:
        generated: `(wav FloatTensor[C, N] or [N], sample_rate Hz, meta)` per clip; `meta` holds the requested
            `family` (GM family name, as the recipe's `family` column) and `tempo` (bpm), e.g. the dataset row
            whose caption was generated from.
        reference: the real clips for the Fréchet distance: a dataset (folder) and `reference_split`, or a list
            of `audio_features` arrays already computed.
        classifier: a `FamilyClassifier` or its folder.

    Returns `n`, `family` (accuracy of the classifier's prediction against the requested family, per family),
    `tempo` (`tempo_errors`: mean/median relative error, share within 8%, and octave-tolerant share, plus
    `unmeasured`), `frechet_distance` (generated vs reference feature windows, in audio_features units²; None
    with fewer than 2 generated windows), `windows` (counts behind it), `unscorable`, `near_silence`
    (`silence.near_silence_summary`) and `items` (per clip: seconds, requested/predicted family, requested/estimated
    tempo, `near_silence` share of near-silent frames and `longest_silence` in seconds).

    A clip shorter than `MIN_CLIP_SECONDS` is unscorable: it counts as a wrong family and a missed tempo and
    adds no windows to the Fréchet distance. A clip with no onsets (silence) has no tempo: its estimate is
    None, counted as 0 bpm (relative error 1, never within tolerance; `tempo.unmeasured` counts both cases).
    """
    if not generated:
        raise ValueError("evaluate_music needs at least one generated clip")
    if not isinstance(classifier, FamilyClassifier):
        classifier = FamilyClassifier.from_pretrained(classifier)
    if isinstance(reference, (str, os.PathLike, Dataset, DatasetDict)):
        ref_feats, _ = clip_features(reference, reference_split, max_reference, progress)
    else:
        ref_feats = list(reference)
    items, gen_feats = [], []
    for wav, sr, meta in tqdm(generated, desc="evaluate music", disable=not progress, unit="clip"):
        for key in ("family", "tempo"):
            if key not in meta:
                raise ValueError(f"each generated clip's metadata needs {key!r} (what was requested); got {sorted(meta)}")
        seconds = wav.shape[-1] / sr
        f = audio_features(wav, sr) if seconds >= MIN_CLIP_SECONDS else None
        if f is not None:
            gen_feats.append(f)
        items.append({"text": meta.get("text"), "seconds": seconds, "requested_family": meta["family"],
                      "predicted_family": None if f is None else
                      classifier.families[int(classifier.clip_log_probs(f).argmax())],
                      "requested_tempo": float(meta["tempo"]),
                      "estimated_tempo": None if f is None else tempo_or_none(wav, sr)}
                     | _silence_fields(wav, sr))
    ref_all = np.concatenate(ref_feats)
    gen_all = np.concatenate(gen_feats) if gen_feats else np.zeros((0, ref_all.shape[1]), np.float32)
    estimated = [0.0 if i["estimated_tempo"] is None else i["estimated_tempo"] for i in items]
    return {
        "n": len(items),
        "family": family_scores([i["predicted_family"] for i in items], [i["requested_family"] for i in items]),
        "tempo": tempo_errors(estimated, [i["requested_tempo"] for i in items])
        | {"unmeasured": sum(i["estimated_tempo"] is None for i in items)},
        "frechet_distance": frechet_distance(gen_all, ref_all) if len(gen_all) >= 2 else None,
        "windows": {"generated": len(gen_all), "reference": len(ref_all)},
        "unscorable": len(items) - len(gen_feats),
        "near_silence": near_silence_summary(items),
        "items": items,
    }


def _silence_fields(wav: torch.Tensor, sample_rate: int) -> dict[str, float]:
    silence = near_silence(wav, sample_rate)
    return {"near_silence": silence["share"], "longest_silence": silence["longest_gap"]}


def evaluate_music_generation(
    generate_fn: Callable[[list[str]], list[tuple[torch.Tensor, int]]],
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 8,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate music for the held-out captions of `data[split]` and score it with `evaluate_music`.

    `generate_fn(captions)` returns one `(wav FloatTensor[C, N], sample_rate Hz)` per caption, in order; it is
    called with up to `batch_size` captions at a time. Each generation is judged against the family and tempo
    its caption's row states, and the Fréchet distance is to the real renders of the same captions. Written
    as JSON to `output` when given.
    """
    ds = load_split(data, split)
    ds = ds.remove_columns([c for c in ("audio", "midi") if c in ds.column_names])
    n = len(ds) if max_items is None else min(len(ds), max_items)
    rows = [ds[i] for i in range(n)]
    if n == 0:
        raise ValueError(f"split {split!r} is empty")
    generated: list[Generated] = []
    with tqdm(total=n, desc="generate", disable=not progress, unit="clip") as bar:
        for start in range(0, n, batch_size):
            batch = rows[start: start + batch_size]
            outs = generate_fn([r["text"] for r in batch])
            if len(outs) != len(batch):
                raise ValueError(f"generate_fn returned {len(outs)} clips for {len(batch)} captions")
            generated += [(wav, sr, row) for (wav, sr), row in zip(outs, batch)]
            bar.update(len(batch))
    report = evaluate_music(generated, data, classifier, reference_split=split, max_reference=n, progress=progress)
    write_report(output, report)
    return report


def evaluate_music_references(
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    split: str = "test",
    max_clips: int | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    codec: AudioTokenizer | None = None,
    opus_kbps: float | None = None,
) -> dict[str, Any]:
    """The music measures on real held-out renders standing in for generations: the ceiling a generator can reach.

    Returns `evaluate_music` figures for the clips of `split` judged against their own metadata (classifier
    accuracy and tempo-estimator accuracy on real music), with two Fréchet distances in place of the trivial 0:
    `frechet_distance_halves` (even vs odd clips of `split`: the sampling floor at half the set size) and
    `frechet_distance_train` (`split` vs as many clips of "train", another SoundFont; absent without a train
    split). With a `codec`, `through_codec` holds the same measures for the renders after a round trip through it
    (encode, decode with every codebook), its Fréchet distance against the renders themselves: the ceiling of an LM
    that speaks that codec's codes, since whatever the codec loses no LM can put back. With `opus_kbps`,
    `through_opus` holds them for the renders after a round trip through Opus (ffmpeg's libopus) at that bitrate,
    with `kbps` (the requested and the measured one, container included): the classical codec to read the codec's
    row against. Written as JSON to `output` when given.
    """
    if opus_kbps is not None:
        (opus_kbps,) = check_opus_kbps([opus_kbps])
    if not isinstance(classifier, FamilyClassifier):
        classifier = FamilyClassifier.from_pretrained(classifier)
    ds = load_split(data, split)
    if "midi" in ds.column_names:
        ds = ds.remove_columns("midi")
    generated = [(wav, sr, row) for wav, sr, row in iter_audio(ds, max_clips)]
    if len(generated) < 4:
        raise ValueError(f"split {split!r} has {len(generated)} clips; the reference figures need at least 4")
    feats = [audio_features(wav, sr) for wav, sr, _ in generated]
    report = evaluate_music(generated, feats, classifier, progress=progress)
    report.pop("frechet_distance")
    report["frechet_distance_halves"] = frechet_distance(np.concatenate(feats[0::2]), np.concatenate(feats[1::2]))
    if split != "train" and has_split(data, "train"):
        train_feats, _ = clip_features(data, "train", len(feats), progress)
        report["frechet_distance_train"] = frechet_distance(np.concatenate(feats), np.concatenate(train_feats))
    if codec is not None:
        report["through_codec"] = evaluate_music(_round_trips(codec, generated, progress), feats, classifier,
                                                 progress=progress)
    if opus_kbps is not None:
        trips = [(opus_roundtrip(wav if wav.dim() == 2 else wav[None], sr, opus_kbps), sr, meta)
                 for wav, sr, meta in tqdm(generated, desc="opus round trip", disable=not progress, unit="clip")]
        through = evaluate_music([(t.audio, sr, meta) for t, sr, meta in trips], feats, classifier, progress=progress)
        measured = sum(t.num_bytes for t, _, _ in trips) * 8 / sum(t.seconds for t, _, _ in trips) / 1000
        report["through_opus"] = {**through, "kbps": {"requested": opus_kbps, "measured": measured}}
    report["split"] = split
    write_report(output, report)
    return report


def _round_trips(codec: AudioTokenizer, clips: Sequence[Generated], progress: bool) -> list[Generated]:
    out = []
    for wav, sr, meta in tqdm(clips, desc="codec round trip", disable=not progress, unit="clip"):
        audio = codec.decode(codec.encode(wav[None] if wav.dim() == 2 else wav[None, None], sample_rate=sr))
        out.append((audio[0], codec.sample_rate, meta))
    return out


def evaluate_music_lm(
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    model: AudioLM | str | os.PathLike | None = None,
    split: str = "test",
    max_clips: int | None = None,
    duration: float = 8.0,
    seed: int = 0,
    batch_size: int = 8,
    sampling: Mapping[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    weights: str | None = None,
) -> dict[str, Any]:
    """`evaluate_music_generation` of an LM, next to `evaluate_music_references` of the same held-out clips.

    Args:
        data: a music dataset folder written by `rvqaudio data music` (columns `audio`, `text`, `family`, `tempo`).
        classifier: a `FamilyClassifier` or its folder (`rvqaudio train-music-classifier`).
        model: an `AudioLM` carrying its codec, a self-contained LM folder, or None for the bundled music LM.
        max_clips: use only the first N clips of `split` (at least 4, for the references' split-half distance).
        duration: seconds generated per caption (music runs for all of it: `generate` holds back end of audio
            until `duration` for music; `ended_by_itself` reports any clip that still ended earlier).
        seed: captions are generated `batch_size` at a time with seed `seed + b` for batch b; a clip depends on
            its batch, so the same seed, batch_size and max_clips give the same report.
        sampling: any of `temperature`, `top_k`, `top_p`, `guidance_scale`, replacing `tts_eval.SAMPLING`
            (generate's defaults).
        output: where to write the JSON report; a markdown table is written beside it (same name, `.md`).
        weights: how a folder or the bundled LM multiplies on a CPU ('int8' or 'float', `AudioLM.set_inference_weights`;
            None: generate's default); an `AudioLM` keeps its own.

    Returns `generated` (the `evaluate_music` report of
    the generations, plus `ended_by_itself`, the share of clips that ended before `duration`, and
    `seconds_generated`), `references` (the `evaluate_music_references` report), `tempo_words`
    (`tempo_words.evaluate_tempo_words` of `TEMPO_WORD_CAPTIONS` and any held-out caption with a tempo word and no
    number, one batch with seed `seed`: per class slow / moderate / fast, the median measured bpm and the share in
    the class's range), `data`, `split`, `model`, `weights`, `duration`, `seed`, `batch_size`, `sampling` and `markdown`
    (the tables). Each generated item holds its batch's `seed`, and `generated.near_silence` names it for the
    clip with the most near-silence.
    """
    from ..defaults import resolve_lm
    from ..generate import generate
    from .tts_eval import resolve_sampling

    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    check_count("seed", seed, low=0)
    check_count("batch_size", batch_size)
    settings = resolve_sampling(sampling, "music")
    if not isinstance(classifier, FamilyClassifier):
        classifier = FamilyClassifier.from_pretrained(classifier)
    lm = resolve_lm(model, task="music", weights=weights)  # loaded once
    if duration > lm.config.max_duration:
        raise ValueError(f"duration={duration} s is more than this LM can generate ({lm.config.max_duration:g} s, "
                         f"max_audio_frames); pass --duration {lm.config.max_duration:g} or less")
    # The references first: they are quick, and they fail early on a split too small to score.
    references = evaluate_music_references(data, classifier, split=split, max_clips=max_clips, progress=progress,
                                           codec=lm.codec)
    batch_seeds = itertools.count(seed)
    ended: list[bool] = []

    def compose(captions: list[str]) -> list[tuple[torch.Tensor, int]]:
        clips = generate(captions, task="music", duration=float(duration), seed=next(batch_seeds), model=lm,
                         progress=False, **settings)
        ended.extend(clip.ended_by_itself for clip in clips)
        return [(clip.waveform, clip.sample_rate) for clip in clips]

    generated = evaluate_music_generation(compose, data, classifier, split=split, max_items=max_clips,
                                          batch_size=batch_size, progress=progress)
    generated["ended_by_itself"] = float(np.mean(ended))
    for i, item in enumerate(generated["items"]):  # the seed of its batch, to find the worst clip again
        item["seed"] = seed + i // batch_size
    generated["near_silence"] = near_silence_summary(generated["items"])
    generated["seconds_generated"] = float(sum(item["seconds"] for item in generated["items"]))
    tempo_words = evaluate_tempo_words_lm(lm, tempo_word_captions(i["text"] for i in generated["items"] if i["text"]),
                                          seeds=(seed,), duration=duration, sampling=settings)
    report = {"data": describe(data), "split": split, "model": describe(model, none="bundled music LM"),
              "weights": lm.inference_weights,
              "duration": float(duration), "seed": seed, "batch_size": batch_size, "sampling": settings,
              "generated": generated, "references": references,
              "tempo_words": {k: v for k, v in tempo_words.items() if k not in ("duration", "sampling")}}
    report["markdown"] = format_music_report(report)
    write_report(output, report)
    return report


def format_music_report(report: dict[str, Any]) -> str:
    """The markdown table of an `evaluate_music_lm` report (generations and references), or of an
    `evaluate_music_references` report alone."""
    from .tts_eval import format_sampling

    references = report.get("references", report)
    generated = report.get("generated")
    tolerance = references["tempo"]["tolerance"]
    lines = [f"Music evaluation on {report.get('data', 'the dataset')} [{references['split']}]"
             + (f": model {report['model']}, {report['duration']:g} s per caption, seed {report['seed']}"
                + (f"; sampling {format_sampling(report['sampling'])}" if report.get("sampling") else "")
                if generated is not None else ": held-out renders only"), "",
             f"| clips | n | family accuracy ↑ | balanced accuracy ↑ | tempo within {tolerance:.0%} ↑ "
             "| tempo, octave-tolerant ↑ | Fréchet distance ↓ |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(name: str, r: dict[str, Any], frechet: float | None) -> str:
        f = "–" if frechet is None else f"{frechet:.1f}"
        return (f"| {name} | {r['n']} | {r['family']['accuracy']:.2f} | {r['family']['balanced_accuracy']:.2f} | "
                f"{r['tempo']['within']:.2f} | {r['tempo']['within_octave']:.2f} | {f} |")

    if generated is not None:
        lines.append(row("generated", generated, generated["frechet_distance"]))
    lines.append(row("held-out renders", references, references["frechet_distance_halves"]))
    if "through_codec" in references:
        through = references["through_codec"]
        lines.append(row("held-out renders through the codec", through, through["frechet_distance"]))
    if "through_opus" in references:
        through = references["through_opus"]
        kbps = through["kbps"]
        lines.append(row(f"held-out renders through Opus {kbps['requested']:g} kbps ({kbps['measured']:.2f})",
                         through, through["frechet_distance"]))
    lines += ["", "Fréchet distance between audio_features windows (units², not comparable with FAD): generated "
              "vs the held-out renders of the same captions; held-out renders: even vs odd clips, the floor at "
              "half this set size" + ("; through the codec: vs the renders themselves. The codec's row is the "
                                      "ceiling of any LM on its codes." if "through_codec" in references else ".")]
    if "through_opus" in references:
        lines.append("Through Opus: ffmpeg's libopus, vs the renders themselves; its measured kbps (in brackets) "
                     "include the Ogg container.")
    if "frechet_distance_train" in references:
        lines.append(f"Held-out renders vs as many train renders (another SoundFont): "
                     f"{references['frechet_distance_train']:.1f}.")
    if generated is not None:
        lines.append(f"{generated['ended_by_itself']:.0%} of the generations ended by themselves before "
                     f"{report['duration']:g} s; {generated['unscorable']} were too short to score "
                     f"(< {MIN_CLIP_SECONDS} s).")
    if generated is not None and "near_silence" in generated:
        lines += ["", format_silence_report(generated["near_silence"]).rstrip("\n")]
    if "tempo_words" in report:
        lines += ["", format_tempo_word_report(report["tempo_words"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def format_silence_report(summary: dict[str, Any]) -> str:
    """The markdown table of a `near_silence_summary`: plain captions, and those asking for sparseness."""
    lines = [f"Near-silence (frames of {summary['frame_seconds'] * 1000:g} ms with RMS < {summary['threshold']:g}); "
             f"the goal is no clip over {summary['limit']:.0%} unless its caption asks for sparseness "
             f"({', '.join(sorted(SPARSE_WORDS))}):", "",
             f"| captions | clips | clips > {summary['limit']:.0%} near-silent ↓ | median share ↓ | worst clip |",
             "| --- | ---: | ---: | ---: | --- |"]
    for name, s in (("plain", summary), ("asking for sparseness", summary["sparse_captions"])):
        w = s["worst"]
        worst = "–" if w is None else (f"{w['share']:.0%}, gap {w['longest_gap']:.1f} s: \"{w['text']}\""
                                       + ("" if w.get("seed") is None else f" (seed {w['seed']})"))
        lines.append(f"| {name} | {s['clips']} | {s['over_limit_clips']} ({s['over_limit']:.0%}) | "
                     f"{s['median_share']:.2f} | {worst} |")
    return "\n".join(lines) + "\n"


def family_counts(data: str | os.PathLike | Dataset | DatasetDict, split: str) -> dict[str, int]:
    """How many clips of each family a split holds (for reading accuracies against chance)."""
    return dict(Counter(load_split(data, split)["family"]).most_common())
