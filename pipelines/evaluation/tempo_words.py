"""Tempo words: does music captioned "slow", "steady" or "fast" (no number) play at a tempo in the word's range.

A caption with a tempo word and no tempo in digits (`lm.conditioners.beats.tempo_word`, `tempo_from_digits`)
asks for a tempo class: slow (< 90 bpm), moderate (90-120 bpm) or fast (> 120 bpm; "lively" words too).
`evaluate_tempo_words` generates such captions (`TEMPO_WORD_CAPTIONS`, 4 per class, and any given), estimates each
clip's tempo with `metrics.estimate_tempo`, and reports per class the count, the median measured bpm and the
share of clips whose tempo lies in the class's range. `eval-music` adds this report to its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lm import AudioLM
from lm.conditioners.beats import tempo_from_digits, tempo_word

from .data import check_count, write_report
from .metrics import tempo_errors, tempo_or_none

# Measured-tempo ranges (bpm) of the classes, lower bound inclusive, upper exclusive.
TEMPO_CLASSES: dict[str, tuple[float, float]] = {"slow": (0.0, 90.0), "moderate": (90.0, 120.0),
                                                 "fast": (120.0, float("inf"))}

# Held-out captions with a tempo word and no number: the music recipes' captions always name a tempo in digits.
TEMPO_WORD_CAPTIONS: tuple[str, ...] = (
    "a slow piano ballad",
    "a calm guitar piece",
    "a gentle flute melody over strings",
    "a relaxed jazz tune on electric piano",
    "a steady rock groove with bass and drums",
    "a moderate folk song on acoustic guitar",
    "a walking bass line under a vibraphone melody",
    "a mid-tempo pop track with synth pads",
    "a fast drum groove",
    "an energetic synth line",
    "an urgent string ostinato",
    "a lively brass tune",
)


def tempo_class(bpm: float) -> str:
    """The class (`TEMPO_CLASSES`) a tempo in bpm falls in."""
    return next(name for name, (low, high) in TEMPO_CLASSES.items() if low <= bpm < high)


def tempo_word_class(caption: str) -> str | None:
    """The tempo class a caption asks for with a tempo word, or None when it names a tempo in digits (the number
    is what it asks for) or has no tempo word."""
    word = tempo_word(caption)
    return None if word is None or tempo_from_digits(caption) is not None else tempo_class(word[1])


def tempo_word_captions(captions: Iterable[str] = ()) -> list[str]:
    """`TEMPO_WORD_CAPTIONS`, then those of `captions` with a tempo word and no number (each once, in order)."""
    found = [c for c in captions if tempo_word_class(c) is not None]
    return list(dict.fromkeys([*TEMPO_WORD_CAPTIONS, *found]))


def score_tempo_words(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per class, how the measured tempi of tempo-word captions fall.

    items: per clip, `text` (a caption with a tempo word and no number) and `measured_bpm` (None: no tempo could be
    measured: too short, or silent; counted out of range). Returns, per class of `TEMPO_CLASSES` that has
    items, `n`, `median_bpm` (of the measured clips; None with none), `in_range` (share of the class's clips whose
    measured tempo lies in its range), `range` ([low, high] bpm, high None for no bound), `unmeasured`, and
    `word_bpm_octave` (share within 8% of the word's own bpm or of 2, 1/2, 3 or 1/3 times it, as `tempo_errors`'
    `within_octave`: a clip that misses its range by playing, or being measured at, a multiple of the word's tempo
    counts here).
    """
    by_class: dict[str, list[tuple[float | None, float]]] = {}
    for item in items:
        asked = tempo_word_class(item["text"])
        if asked is None:
            raise ValueError(f"caption {item['text']!r} has no tempo word, or names a tempo in digits")
        by_class.setdefault(asked, []).append((item["measured_bpm"], tempo_word(item["text"])[1]))
    report = {}
    for name, (low, high) in TEMPO_CLASSES.items():
        if name not in by_class:
            continue
        bpms = [b for b, _ in by_class[name]]
        measured = [b for b in bpms if b is not None]
        octave = tempo_errors([0.0 if b is None else b for b in bpms], [w for _, w in by_class[name]])
        report[name] = {"n": len(bpms), "median_bpm": float(np.median(measured)) if measured else None,
                        "in_range": float(np.mean([b is not None and low <= b < high for b in bpms])),
                        "range": [low, None if high == float("inf") else high],
                        "unmeasured": len(bpms) - len(measured), "word_bpm_octave": octave["within_octave"]}
    return report


def _measured_bpm(wav: torch.Tensor, sample_rate: int) -> float | None:
    from .music_eval import MIN_CLIP_SECONDS

    return None if wav.shape[-1] / sample_rate < MIN_CLIP_SECONDS else tempo_or_none(wav, sample_rate)


def evaluate_tempo_words(
    generate_fn: Callable[[list[str], int], list[tuple[torch.Tensor, int]]],
    captions: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    output: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Generate each tempo-word caption once per seed and score the measured tempi per class.

    Args:
        generate_fn: `(captions, seed) -> [(wav FloatTensor[C, N], sample_rate Hz)]`, one clip per caption, in
            order; called once per seed with all the captions.
        captions: captions with a tempo word and no number; None: `TEMPO_WORD_CAPTIONS`.
        seeds: the seeds, one batch each.
        output: where to write the JSON report.

    Returns `classes` (`score_tempo_words`), `seeds`, and `items` (per clip: `text`, `seed`, `asked` (its class),
    `seconds`, `measured_bpm`).
    """
    captions = list(TEMPO_WORD_CAPTIONS if captions is None else captions)
    if not captions:
        raise ValueError("evaluate_tempo_words needs at least one caption")
    bad = [c for c in captions if tempo_word_class(c) is None]
    if bad:
        raise ValueError(f"these captions have no tempo word, or name a tempo in digits: {bad}")
    if not seeds:
        raise ValueError("evaluate_tempo_words needs at least one seed")
    for seed in seeds:
        check_count("seed", seed, low=0)
    items = []
    for seed in seeds:
        clips = generate_fn(captions, seed)
        if len(clips) != len(captions):
            raise ValueError(f"generate_fn returned {len(clips)} clips for {len(captions)} captions")
        items += [{"text": text, "seed": seed, "asked": tempo_word_class(text), "seconds": wav.shape[-1] / sr,
                   "measured_bpm": _measured_bpm(wav, sr)} for text, (wav, sr) in zip(captions, clips)]
    report = {"classes": score_tempo_words(items), "seeds": list(seeds), "items": items}
    write_report(output, report)
    return report


def evaluate_tempo_words_lm(
    model: AudioLM | str | os.PathLike | None = None,
    captions: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    duration: float = 8.0,
    sampling: Mapping[str, Any] | None = None,
    output: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """`evaluate_tempo_words` of an LM: all captions in one batch per seed, `duration` seconds each.

    model: an `AudioLM` carrying its codec, a self-contained LM folder, or None for the bundled music LM.
    sampling: any of `temperature`, `top_k`, `top_p`, `guidance_scale` (generate's defaults otherwise).
    Returns the report with `duration` and `sampling` added.
    """
    from ..defaults import resolve_lm
    from ..generate import generate
    from .tts_eval import resolve_sampling

    settings = resolve_sampling(sampling, "music")
    lm = resolve_lm(model, task="music")

    def compose(texts: list[str], seed: int) -> list[tuple[torch.Tensor, int]]:
        clips = generate(texts, task="music", duration=float(duration), seed=seed, model=lm, progress=False,
                         **settings)
        return [(clip.waveform, clip.sample_rate) for clip in clips]

    report = evaluate_tempo_words(compose, captions, seeds)
    report = {"duration": float(duration), "sampling": settings, **report}
    write_report(output, report)
    return report


def format_tempo_word_report(report: Mapping[str, Any]) -> str:
    """The markdown table of an `evaluate_tempo_words` report: one row per class."""
    lines = [f"Tempo words (captions without a number; seeds {', '.join(map(str, report['seeds']))}):", "",
             "| asked | range (bpm) | n | median measured bpm | in range ↑ | at the word's bpm, octave-tolerant ↑ |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, r in report["classes"].items():
        low, high = r["range"]
        span = f"< {high:g}" if low == 0 else f"> {low:g}" if high is None else f"{low:g}-{high:g}"
        median = "–" if r["median_bpm"] is None else f"{r['median_bpm']:.0f}"
        lines.append(f"| {name} | {span} | {r['n']} | {median} | {r['in_range']:.2f} | {r['word_bpm_octave']:.2f} |")
    lines += ["", "The words' tempi: slow 72, moderate 104, lively 128 and fast 144 bpm (`TEMPO_WORDS`); "
              "octave-tolerant: within 8% of the word's bpm or of 2, 1/2, 3 or 1/3 times it."]
    return "\n".join(lines) + "\n"
