"""Text-to-speech evaluation per voice: each voice's generations next to that voice's own reference synthesis.

The recogniser's WER differs widely between voices (0.06-0.3 on flite/festival voices, ~0.8 on espeak-ng's formant
voices), so a WER pooled over voices says more about the mix of voices than about the LM. Per voice, the report
puts three WERs side by side on the same held-out sentences: the LM speaking them in that voice ("generated"), the
voice's reference synthesis ("reference") and that synthesis through the LM's codec at its full bitrate
("reference → codec": the best the LM can do through its codec). Their ratio, generated / (reference → codec), is
1 for an LM as intelligible as its codec allows; the pooled figure is the mean of the per-voice ratios.

- `evaluate_tts_voices`: for any `generate_fn(texts, max_seconds, voice)` and codec.
- `evaluate_tts_lm(..., voices=...)` (in `tts_eval`) runs it for an LM; `rvqaudio eval-tts --voices`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from tokenizer.audio import resample, to_channels

from .asr import transcribe
from .data import check_count, iter_audio, load_split
from .metrics import wer, word_recall

VoiceGenerateFn = Callable[[list[str], list[float], str], Sequence[tuple[torch.Tensor, int, bool]]]
# Named groups of `--voices`: a voice's engine is the start of its name ("flite-rms" -> "flite"), as the speech
# recipe names them.
VOICE_GROUPS = {"all": None, "flite": ("flite",), "festival": ("festival",), "espeak": ("espeak",),
                "flite-festival": ("flite", "festival")}
REFERENCES = {"dataset": "the dataset's synthesis of the same sentences by the same voice",
              "synthesize": "the same voice reading the same sentences, synthesized for this evaluation at its "
                            "default rate and pitch"}
POOLED = "mean over voices of the per-voice ratio WER(generated) / WER(reference → codec)"


def voice_engine(voice: str) -> str:
    """The engine a voice of the speech recipe belongs to: "flite-rms" -> "flite", "espeak-en-us+f3" -> "espeak"."""
    return voice.split("-", 1)[0]


def select_voices(spec: str | Sequence[str], known: Sequence[str]) -> list[str]:
    """The voices `spec` names among `known` (the LM's voices), in `known`'s order.

    `spec` is a group of `VOICE_GROUPS` ("all", "flite", "festival", "espeak", "flite-festival"), a comma-separated
    list of voices, or a list of voices. ValueError for an unknown voice or group, or an empty selection.
    """
    if isinstance(spec, str) and spec in VOICE_GROUPS:
        engines = VOICE_GROUPS[spec]
        chosen = [v for v in known if engines is None or voice_engine(v) in engines]
        if not chosen:
            raise ValueError(f"the voice group {spec!r} holds none of the LM's voices {list(known)}")
        return chosen
    names = [v.strip() for v in (spec.split(",") if isinstance(spec, str) else spec) if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        raise ValueError(f"unknown voices {unknown} in {spec!r}; name voices of the LM {list(known)}, comma-separated, "
                         f"or a group: {sorted(VOICE_GROUPS)}")
    return list(dict.fromkeys(names))


def synthesize_references(data: str | os.PathLike | Dataset | DatasetDict, voices: Sequence[str],
                          split: str = "test", max_clips: int | None = None, sample_rate: int = 24000) -> Dataset:
    """A held-out split read by `voices`: each reads the first `max_clips` distinct sentences of `split`.

    Synthesized as the speech recipe synthesizes (`rvqaudio data speech`), at each voice's default rate and pitch,
    peak at -3 dBFS, mono at `sample_rate` Hz; columns `audio` (FLAC bytes), `text`, `voice`, `engine`. For the
    voices of an LM trained on that recipe: its held-out split is read by other voices, which the LM cannot be asked
    for. Raises ValueError for a voice the recipe has no synthesizer for, RuntimeError when a synthesis fails.
    """
    import tempfile

    from datasets import Audio

    from ..data.speech import EXTRA2_VOICES, EXTRA_VOICES, VOICES, SpeechJob, synthesize_speech_batch

    check_count("max_clips", max_clips, allow_none=True)
    recipe = {v.name: v for v in (*VOICES, *EXTRA_VOICES, *EXTRA2_VOICES)}
    unknown = [v for v in voices if v not in recipe]
    if unknown:
        raise ValueError(f"voices {unknown} are not voices of the speech recipe, so their references cannot be "
                         "synthesized; evaluate them on a dataset they read (references='dataset')")
    texts = list(dict.fromkeys(load_split(data, split)["text"]))[:max_clips]
    jobs = [SpeechJob(i, split, recipe[voice], text, "", 1.0, 0.0, 50, -3.0, sample_rate)
            for i, (voice, text) in enumerate((v, t) for v in voices for t in texts)]
    with tempfile.TemporaryDirectory(prefix="rvqaudio-tts-refs-") as tmp:
        results = synthesize_speech_batch(jobs, tmp)
        failed = [r.error for r in results if r.error]
        if failed:
            raise RuntimeError(f"{len(failed)} reference syntheses failed, e.g. {failed[0]}")
        rows = {"audio": [{"bytes": Path(r.path).read_bytes(), "path": None} for r in results],
                "text": [j.text for j in jobs], "voice": [j.voice.name for j in jobs],
                "engine": [j.voice.engine for j in jobs]}
    return Dataset.from_dict(rows).cast_column("audio", Audio(sampling_rate=sample_rate))


def _ratio(generated: float, ceiling: float) -> float | None:
    return generated / ceiling if ceiling > 0 else None


def _codec_roundtrip(codec: Any, wav: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
    """`wav` FloatTensor[C, N] at `sample_rate` Hz through the codec with all its codebooks, at the codec's rate."""
    x = resample(to_channels(wav, codec.channels), sample_rate, codec.sample_rate)  # (C, N) at the codec's rate
    codes = codec.encode(x[None])  # (1, K, T)
    return codec.decode(codes)[0, :, : x.shape[-1]].float().cpu(), codec.sample_rate


def evaluate_voice(generate_fn: VoiceGenerateFn, ds: Dataset, voice: str, codec: Any, max_clips: int | None = None,
                   batch_size: int = 8, progress: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One voice's row and items: `evaluate_tts` of `generate_fn(texts, max_seconds, voice)` on the rows of `ds`
    read by `voice` (the first `max_clips` of them), plus their references through `codec`.

    Returns `({"voice", "engine", "n": 0, "absent": True}, [])` when `ds` holds no row of `voice`.
    """
    from .tts_eval import evaluate_tts

    rows = [i for i, v in enumerate(ds["voice"]) if v == voice][:max_clips]
    row = {"voice": voice, "engine": voice_engine(voice)}
    if not rows:
        return row | {"n": 0, "absent": True}, []
    subset = ds.select(rows)
    report = evaluate_tts(lambda texts, limits: generate_fn(texts, limits, voice), subset, batch_size=batch_size,
                          progress=progress)
    items = report["items"]
    for item, (wav, sr, _) in zip(items, iter_audio(subset)):
        item["voice"] = voice
        item["hyp_reference_codec"] = transcribe(*_codec_roundtrip(codec, wav, sr))
    texts = [i["text"] for i in items]
    wer_codec = wer(texts, [i["hyp_reference_codec"] for i in items])
    row |= {"n": report["n"], "words": report["words"], "wer_generated": report["wer_generated"],
            "wer_reference": report["wer_reference"], "wer_reference_codec": wer_codec,
            "ratio": _ratio(report["wer_generated"], wer_codec),
            "word_recall_generated": report["word_recall_generated"],
            "word_recall_reference": report["word_recall_reference"],
            "word_recall_reference_codec": word_recall(texts, [i["hyp_reference_codec"] for i in items]),
            "ended_by_itself": report["ended_by_itself"], "duration_correlation": report["duration_correlation"],
            "seconds_generated": report["seconds_generated"], "seconds_reference": report["seconds_reference"]}
    return row, items


def pooled_ratio(per_voice: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pooled figure: the mean over voices of `ratio` (voices absent, or whose ceiling WER is 0, left out)."""
    counted = [r for r in per_voice if r.get("ratio") is not None]
    return {"ratio": float(np.mean([r["ratio"] for r in counted])) if counted else None,
            "voices": [r["voice"] for r in counted], "definition": POOLED}


def evaluate_tts_voices(
    generate_fn: VoiceGenerateFn,
    data: str | os.PathLike | Dataset | DatasetDict,
    voices: Sequence[str],
    codec: Any,
    split: str = "test",
    max_clips: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Per voice, the held-out sentences that voice reads in `data`, spoken by `generate_fn` in that voice.

    Args:
        generate_fn: `generate_fn(texts, max_seconds, voice)` returns per text `(wav FloatTensor[C, N] or [N],
            sample_rate Hz, ended_by_itself)`, as `evaluate_tts`'s does; it is called voice by voice.
        data: a speech dataset with columns `audio`, `text` and `voice` (the voice that read the row).
        voices: the voices to report, in order.
        codec: the codec the references go through (`encode`/`decode`, `sample_rate`, `channels`), with all its
            codebooks; for an LM, the LM's own codec (for the bundled speech LM, its speech decoder variant).
        max_clips: the first N held-out sentences of each voice (per voice, not in total).

    Returns `per_voice` (per voice in order: `voice`, `engine`, `n`, `words`, `wer_generated`, `wer_reference`,
    `wer_reference_codec`, `ratio` = wer_generated / wer_reference_codec (None when the latter is 0),
    `word_recall_*` for the three, `ended_by_itself`, `duration_correlation`, seconds; a voice the split holds no
    row of is `{"voice", "engine", "n": 0, "absent": True}`, never zeros), `pooled` (`pooled_ratio`), `split`,
    `n`, `words`, `voices`, and `items` (every voice's items, each with `voice` and `hyp_reference_codec`).
    `wer_generated` and `wer_reference` are None: WER is not pooled over voices (the keys stay for readers of
    `evaluate_tts` reports, such as `compare_reports`, which pairs `items`).
    """
    check_count("max_clips", max_clips, allow_none=True)
    if not voices:
        raise ValueError("evaluate_tts_voices needs at least one voice")
    ds = load_split(data, split)
    if "voice" not in ds.column_names or "text" not in ds.column_names:
        raise ValueError(f"split {split!r} needs 'text' and 'voice' columns for a per-voice evaluation (columns: "
                         f"{ds.column_names}); is it a speech dataset from `rvqaudio data speech`?")
    per_voice, items = [], []
    for voice in voices:
        row, voice_items = evaluate_voice(generate_fn, ds, voice, codec, max_clips, batch_size, progress)
        per_voice.append(row)
        items += voice_items
    return {"split": split, "n": len(items), "words": sum(len(i["text"].split()) for i in items),
            "voices": list(voices), "wer_generated": None, "wer_reference": None,
            "per_voice": per_voice, "pooled": pooled_ratio(per_voice), "items": items}


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_voices_report(report: dict[str, Any]) -> str:
    """The markdown table of a per-voice report: one row per voice, then the pooled ratio."""
    head = (f"TTS evaluation per voice on {report.get('data', '?')} [{report['split']}]: {report['n']} sentences; "
            f"model: {report.get('model', '?')}, seed {report.get('seed', '?')}")
    if report.get("sampling"):
        from .tts_eval import format_sampling

        head += f"; sampling {format_sampling(report['sampling'])}"
    lines = [head, "",
             "| voice | n | WER generated ↓ | WER reference | WER reference → codec | ratio ↓ | words found: "
             "generated / reference / → codec ↑ | ended by itself ↑ |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["per_voice"]:
        if r.get("absent"):
            lines.append(f"| {r['voice']} | 0 | absent: no held-out sentence of this voice | | | | | |")
            continue
        lines.append(f"| {r['voice']} | {r['n']} | {r['wer_generated']:.3f} | {r['wer_reference']:.3f} | "
                     f"{r['wer_reference_codec']:.3f} | {_num(r['ratio'], 2)} | {r['word_recall_generated']:.3f} / "
                     f"{r['word_recall_reference']:.3f} / {r['word_recall_reference_codec']:.3f} | "
                     f"{r['ended_by_itself']:.2f} |")
    pooled = report["pooled"]
    lines += ["", f"Pooled ratio: {_num(pooled['ratio'], 2)}, the {pooled['definition']} ({len(pooled['voices'])} "
              "voices); WER is not pooled over voices, whose recogniser WERs differ widely.",
              "ratio = WER generated / WER reference → codec: 1 is as intelligible as the codec allows. The "
              f"reference is {REFERENCES[report.get('references', 'dataset')]}; → codec is that synthesis encoded "
              "and decoded by the LM's codec with all its codebooks. WERs and words found are pocketsphinx's."]
    absent = [r["voice"] for r in report["per_voice"] if r.get("absent")]
    if absent:
        lines.append(f"Absent: {absent} read none of the split's sentences (its voices: "
                     f"{report.get('reference_voices', '?')}); with `--references synthesize` each voice reads them.")
    if report.get("capped"):
        lines.append(f"{report['capped']} sentences were limited to the LM's max_duration.")
    return "\n".join(lines) + "\n"
