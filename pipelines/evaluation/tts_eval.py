"""Text-to-speech evaluation: intelligibility by an offline recogniser, and whether generations stop by themselves.

The recogniser is pocketsphinx with the English model it ships (no download). Its word error rate on clean
synthetic speech is far from zero (0.06-0.3 on flite/festival voices, ~0.8 on espeak-ng's formant voices), so
a generation's WER is only meaningful next to the recogniser's WER on the reference synthesis of the same
sentences, which `evaluate_tts` reports beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from tokenizer.audio import resample

from .data import iter_audio, load_split
from .metrics import wer

RECOGNISER_SAMPLE_RATE = 16000
MAX_DURATION_RATIO = 2.0  # a generation "ends by itself" if it stops within this multiple of the reference's duration


def _decoder():
    from pocketsphinx import Decoder

    # A new decoder per utterance (~0.35 s to load the model): a reused one carries adaptation state from one
    # utterance to the next, so a clip's transcript would depend on what was transcribed before it.
    return Decoder(samprate=RECOGNISER_SAMPLE_RATE, loglevel="FATAL")


def transcribe(wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
    """Recognise English speech in FloatTensor[C, N] or [N] at `sample_rate` Hz with pocketsphinx; lowercase words.

    The audio is down-mixed to mono, resampled to 16 kHz and converted to 16-bit PCM (clipped to [-1, 1]).
    Returns "" when nothing is recognised. Runs at roughly 5x real time on one core, plus ~0.35 s to load the
    model: each call uses a fresh decoder, so the transcript of a clip does not depend on earlier calls.
    """
    x = torch.as_tensor(np.asarray(wav) if isinstance(wav, np.ndarray) else wav).detach().cpu()
    if not x.is_floating_point() or x.dim() not in (1, 2):
        raise ValueError(f"transcribe needs a float waveform [N] or [C, N], got dtype {x.dtype} and shape "
                         f"{tuple(x.shape)}")
    x = x.float().mean(0) if x.dim() == 2 else x.float()
    x = resample(x, int(sample_rate), RECOGNISER_SAMPLE_RATE)
    pcm = (x.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy().tobytes()
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.strip().lower() if hyp is not None else ""


def evaluate_tts(
    generate_fn: Callable[[list[str]], list[tuple[torch.Tensor, int, bool]]],
    data: str | os.PathLike | Dataset | DatasetDict,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 8,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Speak the held-out sentences of a speech dataset with `generate_fn` and measure what the recogniser hears.

    `generate_fn(texts)` returns, per text and in order, `(wav FloatTensor[C, N] or [N], sample_rate Hz,
    ended_by_itself)`, where `ended_by_itself` is False when generation hit its length limit instead of
    producing an end; it is called with up to `batch_size` texts at a time.

    Returns `wer_generated` and `wer_reference` (corpus WER of pocketsphinx on the generations and on the
    dataset's own audio of the same sentences, after `normalize_text`), `ended_by_itself` (share of generations
    that ended by themselves within `MAX_DURATION_RATIO` times the reference's duration), `n`, `words`,
    `seconds_generated`, `seconds_reference` and `items` (per sentence: text, both transcripts, both durations,
    the ended flag). Written as JSON to `output` when given.
    """
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
        outs = generate_fn(texts)
        if len(outs) != len(batch):
            raise ValueError(f"generate_fn returned {len(outs)} results for {len(batch)} texts")
        for (ref_wav, ref_sr, _), text, out in zip(batch, texts, outs):
            if len(out) != 3:
                raise ValueError("generate_fn must return (wav, sample_rate, ended_by_itself) per text")
            wav, sr, ended = out
            gen_seconds = torch.as_tensor(wav).shape[-1] / sr
            ref_seconds = ref_wav.shape[-1] / ref_sr
            items.append({"text": text, "hyp_generated": transcribe(wav, sr),
                          "hyp_reference": transcribe(ref_wav, ref_sr), "seconds_generated": gen_seconds,
                          "seconds_reference": ref_seconds, "ended_by_itself": bool(ended),
                          "ended_in_time": bool(ended) and gen_seconds <= MAX_DURATION_RATIO * ref_seconds})
            bar.update(1)
    bar.close()
    texts = [i["text"] for i in items]
    report = {
        "split": split, "n": len(items), "words": sum(len(t.split()) for t in texts),
        "wer_generated": wer(texts, [i["hyp_generated"] for i in items]),
        "wer_reference": wer(texts, [i["hyp_reference"] for i in items]),
        "ended_by_itself": float(np.mean([i["ended_in_time"] for i in items])),
        "seconds_generated": float(sum(i["seconds_generated"] for i in items)),
        "seconds_reference": float(sum(i["seconds_reference"] for i in items)),
        "items": items,
    }
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return report
