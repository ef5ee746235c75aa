"""Text-to-speech evaluation: intelligibility by an offline recogniser, and whether generations stop by themselves.

The recogniser is pocketsphinx with the English model it ships (no download). Its word error rate on clean
synthetic speech is far from zero (0.06-0.3 on flite/festival voices, ~0.8 on espeak-ng's formant voices), so
a generation's WER is only meaningful next to the recogniser's WER on the reference synthesis of the same
sentences, which `evaluate_tts` reports beside it.

- `evaluate_tts`: for any `generate_fn(texts, max_seconds)`, e.g. a stand-in or another system.
- `evaluate_tts_lm`: for an LM folder (or the bundled LM), generating with `pipelines.generate.generate`;
  what `rvqaudio eval-tts` runs.
"""

from __future__ import annotations

import os
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from lm import AudioLM, GenerationConfig

from ..defaults import resolve_lm
from .asr import transcribe
from .data import check_count, describe, iter_audio, load_split, write_report
from .metrics import wer, word_recall

MAX_DURATION_RATIO = 2.0  # a generation "ends by itself" if it stops within this multiple of the reference's duration
# The sampling settings of `evaluate_tts_lm`: `generate`'s defaults, stated here so that the report can name them.
SAMPLING = {"temperature": 1.0, "top_k": 250, "top_p": 1.0, "guidance_scale": 3.0}  # top_k: the task's, see below
GenerateFn = Callable[[list[str], list[float]], Sequence[tuple[torch.Tensor, int, bool]]]


def resolve_sampling(sampling: Mapping[str, Any] | None, task: str) -> dict[str, Any]:
    """`SAMPLING`, with the task's top-k (`generate.task_top_k`), and the settings of `sampling` (any of its keys)
    put over it, checked before any work starts."""
    from ..generation_request import task_top_k

    chosen = dict(SAMPLING) | {"top_k": task_top_k(task)}
    if sampling is not None:
        unknown = sorted(set(sampling) - set(SAMPLING))
        if unknown:
            raise ValueError(f"unknown sampling settings {unknown}; the known ones are {sorted(SAMPLING)}")
        chosen.update(sampling)
    GenerationConfig(duration=1.0, **chosen)  # raises ValueError naming a bad value
    return chosen


def duration_correlation(items: Sequence[Mapping[str, Any]]) -> float | None:
    """Pearson correlation between generated and reference durations, over the generations that ended in time.

    A model that reads its text makes longer audio for longer sentences, so this rises towards 1 as the LM
    learns to align audio with text, usually well before its words become intelligible; near 0, the
    lengths ignore the text. None with fewer than 3 such generations or when either duration is constant.
    """
    ended = [(i["seconds_generated"], i["seconds_reference"]) for i in items if i["ended_in_time"]]
    if len(ended) < 3:
        return None
    generated, reference = np.asarray(ended, dtype=np.float64).T
    if generated.std() == 0 or reference.std() == 0:
        return None
    return float(np.corrcoef(generated, reference)[0, 1])


def format_sampling(sampling: Mapping[str, Any]) -> str:
    """`temperature 1, top_k 250, top_p 1, guidance_scale 3`: the settings of a report, for its table's title."""
    return ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in sampling.items())


def evaluate_tts(
    generate_fn: GenerateFn,
    data: str | os.PathLike | Dataset | DatasetDict,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 8,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Speak the held-out sentences of a speech dataset with `generate_fn` and measure what the recogniser hears.

    `generate_fn(texts, max_seconds)` gets up to `batch_size` texts at a time with, per text, the longest
    generation that counts (`MAX_DURATION_RATIO` times its reference's duration, in seconds), and returns per
    text, in order, `(wav FloatTensor[C, N] or [N], sample_rate Hz, ended_by_itself)`, where `ended_by_itself`
    is False when generation hit its length limit instead of producing an end. A generation longer than its
    limit is cut to it (and has not ended in time).

    Returns `wer_generated` and `wer_reference` (corpus WER of pocketsphinx on the generations and on the
    dataset's own audio of the same sentences, after `normalize_text`; 1.0 is every word missed, and it can
    exceed 1 with insertions), `ended_by_itself` (share of generations that ended by themselves within their
    limit), `duration_correlation` (see `duration_correlation`), `word_recall_generated` and
    `word_recall_reference` (share of the sentences' words the recogniser finds, blind to insertions, so it
    separates saying some right words from babble where WER is about 1 or more), `word_recall_chance` (the
    generations scored against the next sentence's words, cyclically: what babble of common words finds by
    chance; None for one sentence), `n`, `words`, `seconds_generated`, `seconds_reference`, `split` and `items`
    (per sentence: text, both transcripts, both durations, the limit, the ended flags). Written as JSON to `output` when given.
    """
    check_count("max_items", max_items, allow_none=True)
    check_count("batch_size", batch_size)
    ds = load_split(data, split)
    if "text" not in ds.column_names:
        raise ValueError(f"split {split!r} has no 'text' column (columns: {ds.column_names}); is it a speech dataset?")
    refs = list(iter_audio(ds, max_items))
    if not refs:
        raise ValueError(f"split {split!r} is empty")
    items: list[dict[str, Any]] = []
    bar = tqdm(total=len(refs), desc="evaluate tts", disable=not progress, unit="sentence")
    for start in range(0, len(refs), batch_size):
        batch = refs[start: start + batch_size]
        texts = [row["text"] for _, _, row in batch]
        limits = [MAX_DURATION_RATIO * wav.shape[-1] / sr for wav, sr, _ in batch]
        outs = list(generate_fn(texts, limits))
        if len(outs) != len(batch):
            raise ValueError(f"generate_fn returned {len(outs)} results for {len(batch)} texts")
        for (ref_wav, ref_sr, _), text, limit, out in zip(batch, texts, limits, outs):
            if len(out) != 3:
                raise ValueError("generate_fn must return (wav, sample_rate, ended_by_itself) per text")
            wav, sr, ended = out
            wav = torch.as_tensor(wav)
            too_long = wav.shape[-1] > round(limit * sr)
            wav = wav[..., :round(limit * sr)]
            gen_seconds = wav.shape[-1] / sr
            items.append({"text": text, "hyp_generated": transcribe(wav, sr) if wav.shape[-1] else "",
                          "hyp_reference": transcribe(ref_wav, ref_sr), "seconds_generated": gen_seconds,
                          "seconds_reference": ref_wav.shape[-1] / ref_sr, "max_seconds": limit,
                          "ended_by_itself": bool(ended), "ended_in_time": bool(ended) and not too_long})
            bar.update(1)
    bar.close()
    texts = [i["text"] for i in items]
    report = {
        "split": split, "n": len(items), "words": sum(len(t.split()) for t in texts),
        "wer_generated": wer(texts, [i["hyp_generated"] for i in items]),
        "wer_reference": wer(texts, [i["hyp_reference"] for i in items]),
        "ended_by_itself": float(np.mean([i["ended_in_time"] for i in items])),
        "duration_correlation": duration_correlation(items),
        "word_recall_generated": word_recall(texts, [i["hyp_generated"] for i in items]),
        "word_recall_reference": word_recall(texts, [i["hyp_reference"] for i in items]),
        "word_recall_chance": (word_recall(texts[1:] + texts[:1], [i["hyp_generated"] for i in items])
                               if len(items) > 1 else None),
        "seconds_generated": float(sum(i["seconds_generated"] for i in items)),
        "seconds_reference": float(sum(i["seconds_reference"] for i in items)),
        "items": items,
    }
    write_report(output, report)
    return report


def evaluate_tts_lm(
    data: str | os.PathLike | Dataset | DatasetDict,
    model: AudioLM | str | os.PathLike | None = None,
    voice: str | None = None,
    split: str = "test",
    max_clips: int | None = None,
    seed: int = 0,
    voices: str | Sequence[str] | None = None,
    references: str = "dataset",
    batch_size: int = 8,
    sampling: Mapping[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    weights: str | None = None,
) -> dict[str, Any]:
    """`evaluate_tts` of an LM: speak each held-out sentence with `pipelines.generate.generate(task="speech")`.

    Args:
        data: a speech dataset folder written by `rvqaudio data speech` (columns `audio`, `text`, `voice`).
        model: an `AudioLM` carrying its codec, a self-contained LM folder, or None for the bundled speech LM.
        voice: the voice every sentence is spoken with; None takes the LM's default voice. The held-out split's
            voices are usually ones the LM never heard, so they cannot be asked for; the report names the
            voice used and the split's voices (`voice`, `voice_note`, `reference_voices`).
        max_clips: evaluate only the first N sentences (with `voices`: the first N of each voice).
        seed: sentences are generated `batch_size` at a time (a batch runs as fast as one sentence on a GPU), with
            seed `seed + b` for batch b (with `voices`, b counts each voice's batches from 0, so a voice's audio
            does not depend on which other voices are evaluated); a sentence's audio depends on its batch, so the
            same seed, batch_size and max_clips give the same report.
        voices: evaluate per voice instead (`tts_voices.evaluate_tts_voices`): a group ("all", "flite",
            "festival", "espeak", "flite-festival") or comma-separated list of the LM's voices; each voice speaks
            the held-out sentences that it reads in `data`, next to its reference synthesis of them and that
            synthesis through the LM's codec. Not with `voice`.
        references: with `voices`, "dataset" (each voice's rows of the split) or "synthesize" (each voice reads
            the split's first `max_clips` sentences, synthesized now: `tts_voices.synthesize_references`; for an LM
            whose voices are not the held-out split's, as the speech recipe's are not).
        sampling: any of `temperature`, `top_k`, `top_p`, `guidance_scale`, replacing `SAMPLING` (generate's
            defaults); the report names the settings used.
        output: where to write the JSON report; a markdown table is written beside it (same name, `.md`).
        weights: how a folder or the bundled LM multiplies on a CPU ('int8' or 'float', `AudioLM.set_inference_weights`;
            None: generate's default); an `AudioLM` keeps its own. The report names it (`weights`).

    Each sentence may run for `MAX_DURATION_RATIO` (2) times its reference's duration, or the LM's
    `max_duration` if that is shorter; a batch is generated for its longest limit and each sentence is cut to
    its own, where it counts as not having ended.

    Returns the `evaluate_tts` report plus `model`, `voice`, `voice_note`, `reference_voices`, `seed`,
    `batch_size`, `sampling`, `capped` (sentences whose limit the LM's max_duration shortened) and `markdown`;
    with `voices`, the `evaluate_tts_voices` report (`per_voice`, `pooled`, `items`) plus the same fields but
    `voice`, `voice_note`.
    """
    from .tts_voices import (REFERENCES, evaluate_tts_voices, format_voices_report, select_voices,
                             synthesize_references)
    from ..generate import default_voice, generate
    from ..generate import voices as lm_voices

    check_count("batch_size", batch_size)
    check_count("seed", seed, low=0)
    settings = resolve_sampling(sampling, "speech")
    lm = resolve_lm(model, task="speech", weights=weights)  # loaded once
    known = lm_voices(lm)
    if voice is not None and voices is not None:
        raise ValueError(f"voice={voice!r} and voices={voices!r}: give one (voices= evaluates each voice on its own "
                         "held-out sentences)")
    if references != "dataset" and voices is None:
        raise ValueError(f"references={references!r} goes with voices=; without it, the references are the dataset's")
    if voice is not None and voice not in known:
        if not known:
            raise ValueError(f"voice={voice!r}, but this LM was trained without voices; leave the voice out")
        raise ValueError(f"unknown voice {voice!r}; this LM knows the voices {known} "
                         f"(leave it out for its default, {default_voice(lm)!r})")
    chosen = voice if voice is not None else default_voice(lm)
    ds = load_split(data, split)
    heldout_voices = sorted(set(ds["voice"])) if "voice" in ds.column_names else []
    max_duration = float(lm.config.max_duration)
    samples_per_frame = round(lm.codec.sample_rate / lm.codec.frame_rate)
    batch_seeds = {}  # per voice: a voice's batch b gets seed + b
    capped = [0]

    def speak(texts: list[str], max_seconds: list[float], voice: str | None = chosen
              ) -> list[tuple[torch.Tensor, int, bool]]:
        limits = [min(s, max_duration) for s in max_seconds]
        capped[0] += sum(s > max_duration for s in max_seconds)
        batch_seed = next(batch_seeds.setdefault(voice, itertools.count(seed)))
        clips = generate(texts, task="speech", voice=voice, model=lm, duration=max(limits), seed=batch_seed,
                         progress=False, **settings)
        outs = []
        for clip, limit in zip(clips, limits):
            # The batch ran to its longest limit; a sentence that had not ended by its own limit did not end in time.
            frames = max(1, round(limit * lm.config.frame_rate))
            ended = clip.codes.shape[1] < frames
            outs.append((clip.waveform[:, :frames * samples_per_frame], clip.sample_rate, ended))
        return outs

    common = {"data": describe(data), "model": describe(model, none="bundled speech LM"),
              "weights": lm.inference_weights, "seed": seed,
              "batch_size": batch_size, "sampling": settings}
    if voices is not None:
        if not known:
            raise ValueError("voices= names voices of the LM, but this LM was trained without voices; leave it out")
        chosen_voices = select_voices(voices, known)
        if references not in REFERENCES:
            raise ValueError(f"references must be one of {sorted(REFERENCES)}, got {references!r}")
        if references == "synthesize":
            ds = synthesize_references(ds, chosen_voices, split=split, max_clips=max_clips,
                                       sample_rate=lm.codec.sample_rate)
        report = evaluate_tts_voices(speak, ds, chosen_voices, lm.codec, split=split, max_clips=max_clips,
                                     batch_size=batch_size, progress=progress)
        report |= common | {"reference_voices": heldout_voices, "references": references, "capped": capped[0]}
        report["markdown"] = format_voices_report(report)
        write_report(output, report)
        return report
    report = evaluate_tts(speak, ds, split=split, max_items=max_clips, batch_size=batch_size, progress=progress)
    if chosen is None:
        note = "this LM was trained without voices: sentences are generated without one"
    else:
        how = "named with voice=" if voice is not None else "the LM's default voice"
        unseen = [v for v in heldout_voices if v not in known]
        note = f"every sentence is spoken by {chosen!r} ({how})"
        if unseen:
            note += f"; the held-out voices {unseen} are not among the LM's voices, so none of them is asked for"
    report |= common | {"voice": chosen, "voice_note": note, "reference_voices": heldout_voices,
                        "capped": capped[0]}
    report["markdown"] = format_tts_report(report)
    write_report(output, report)
    return report


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def format_tts_report(report: dict[str, Any]) -> str:
    """The markdown table of an `evaluate_tts_lm` report: WER of the generations next to the references'."""
    limit = f"{MAX_DURATION_RATIO:g}x"
    lines = [f"TTS evaluation on {report.get('data', '?')} [{report['split']}]: {report['n']} sentences, "
             f"{report['words']} words; model: {report.get('model', '?')}, seed {report.get('seed', '?')}"
             + (f"; sampling {format_sampling(report['sampling'])}" if report.get("sampling") else ""), "",
             f"| audio | WER ↓ | words found ↑ | ended by itself within {limit} ↑ | seconds |",
             "| --- | ---: | ---: | ---: | ---: |",
             f"| generated | {report['wer_generated']:.3f} | {_share(report.get('word_recall_generated'))} | "
             f"{report['ended_by_itself']:.2f} | {report['seconds_generated']:.1f} |",
             f"| reference synthesis | {report['wer_reference']:.3f} | {_share(report.get('word_recall_reference'))} | "
             f"– | {report['seconds_reference']:.1f} |", "",
             "WER and words found are pocketsphinx's on both rows: far from perfect even on clean synthesis, so read "
             "the generated row against the reference row."]
    if report.get("word_recall_chance") is not None:
        lines.append(f"Scored against the next sentence's words instead of their own, the generations find "
                     f"{report['word_recall_chance']:.3f} of them: the chance level of the words-found column.")
    if "duration_correlation" in report:
        r = report["duration_correlation"]
        lines.append("Correlation of generated with reference durations (generations that ended in time): "
                     + ("undefined (too few)" if r is None else f"{r:.2f}")
                     + "; it nears 1 as the LM aligns its audio with the text.")
    if report.get("voice_note"):
        lines.append(f"Voice: {report['voice_note']}.")
    if report.get("capped"):
        lines.append(f"{report['capped']} sentences could not run to {limit} their reference's duration within "
                     "the LM's max_duration; they were limited to it.")
    return "\n".join(lines) + "\n"
