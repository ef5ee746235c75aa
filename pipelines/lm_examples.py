"""The examples an LM training run reads: its data sources opened and checked against the codec, the held-out
share set apart, texts that fit the model, the speech rate per voice, forced phoneme alignments kept in the run
folder, and the conditioning tracks of a collated batch. `pipelines.lm_training` runs the loop on them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from lm import AudioLM
from lm.conditioners import Track
from lm.conditioners.phonemizer import text_phoneme_ids
from tokenizer import RVQCodec
from tokenizer.json_config import write_text_atomic

from .alignment import Alignment, align_examples
from .lm_data import LMExamples, check_codec_metadata, eval_subset, open_lm_data, split_held_out
from .lm_training_config import LMTrainingConfig

logger = logging.getLogger(__name__)

ALIGNMENT_NAME = "phoneme_alignment.json"  # training.phoneme_alignment's alignments and durations


def load_examples(data, eval_data, codec, task: str | None, tc: LMTrainingConfig) -> tuple[LMExamples, LMExamples, str]:
    """Open the data (one source, or a list of them, e.g. speech and music), check that `codec` made its codes,
    read its examples and set the evaluation ones apart (a deterministic share of a source's training rows when it
    has no evaluation split); before any step runs."""
    sources = list(data) if isinstance(data, (list, tuple)) else [data]
    if not sources:
        raise ValueError("data is an empty list: pass at least one tokenized dataset")
    if eval_data is not None and len(sources) > 1:
        raise ValueError("eval_data replaces the held-out rows of a single data source; with several sources, "
                         "give each its own validation/test split")
    parts = [_source_examples(source, eval_data, codec, task, tc) for source in sources]
    train = LMExamples.concatenate([p[0] for p in parts])
    held = LMExamples.concatenate([p[1] for p in parts])
    held = held.subset(eval_subset(len(held), tc.max_eval_items, tc.seed))
    if len(train) == 0:
        raise ValueError("the training data has no usable rows (each needs a non-empty text and codes)")
    if len(sources) == 1:
        return train, held, parts[0][2]
    return train, held, "; ".join(f"{source_name(d)}: {p[2]}" for d, p in zip(sources, parts))


def _source_examples(data, eval_data, codec, task: str | None, tc: LMTrainingConfig,
                     ) -> tuple[LMExamples, LMExamples, str]:
    train_ds, held_ds, source = open_lm_data(data, eval_data)
    name = source_name(data)
    check_codec_metadata(train_ds, codec, f"the training data {name!r}")
    if held_ds is not None:
        check_codec_metadata(held_ds, codec, f"the evaluation data of {name!r} ({source})")
    train = LMExamples.from_dataset(train_ds, task)
    held = None if held_ds is None else LMExamples.from_dataset(held_ds, task)
    for kind, examples in (("training", train), ("evaluation", held)):
        if examples is not None and examples.dropped:
            logger.warning("left out %s rows of the %s data %r: %s", sum(examples.dropped.values()), kind, name,
                           ", ".join(f"{n} {why}" for why, n in examples.dropped.items()))
    if held is None:
        keep, held_positions = split_held_out(train, tc.eval_fraction, tc.max_eval_items, tc.seed)
        train, held = train.subset(keep), train.subset(held_positions)
    return train, held, source


def source_name(data) -> str:
    return str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__


def batch_tracks(lm: AudioLM, part) -> dict[str, Track]:
    """The tracks of a collated batch that the LM has: the aligned phoneme track of its transcripts, and the beat
    track (each music caption's tempo, from its crop's first frame)."""
    tracks = {}
    if lm.has_track("phoneme"):
        tracks["phoneme"] = lm.conditioner("phoneme").track(part.transcripts, part.total_frames, part.frame_offset,
                                                            part.phoneme_starts)
    if lm.has_track("beat"):
        tracks["beat"] = lm.conditioner("beat").track(part.texts, part.tasks, part.frame_offset)
    return tracks


def align_phonemes(accelerator: Accelerator, lm: AudioLM, codec: RVQCodec, train: LMExamples, held: LMExamples,
                    out: Path) -> tuple[LMExamples, LMExamples]:
    """`training.phoneme_alignment`: the examples with forced alignments of their phonemes, and the LM's config
    with each voice's durations. The main process aligns (minutes on a CPU) and keeps the result in the run
    folder, which a resumed run reads back when its data are the same; the others wait and read it."""
    if not lm.has_track("phoneme"):
        raise ValueError("training.phoneme_alignment needs an LM with a phoneme track: set training.phoneme_track")
    path = out / ALIGNMENT_NAME
    digest = f"{examples_digest(train)}-{examples_digest(held)}-{codec.fingerprint}"
    if accelerator.is_main_process:
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if saved.get("digest") != digest:
            aligned, held_aligned, table = align_examples(codec, train, held)
            encode = lambda rows: [None if a is None else [a.starts, a.end] for a in rows]  # noqa: E731
            saved = {"digest": digest, "durations": table, "train": encode(aligned), "held": encode(held_aligned)}
            write_text_atomic(path, json.dumps(saved, separators=(",", ":")) + "\n")
            logger.info("aligned the phonemes of %d training and %d held-out speech rows (%s)",
                        sum(a is not None for a in aligned), sum(a is not None for a in held_aligned), path)
    accelerator.wait_for_everyone()
    saved = json.loads(path.read_text())
    decode = lambda rows: [None if a is None else Alignment(a[0], a[1]) for a in rows]  # noqa: E731
    durations = {**(getattr(lm.config, "phoneme_durations", None) or {}), **saved["durations"]}
    lm.config.phoneme_durations = durations
    return (dataclasses.replace(train, alignment=decode(saved["train"])),
            dataclasses.replace(held, alignment=decode(saved["held"])))


def speech_rates(examples: LMExamples) -> dict[str, float]:
    """Frames per phoneme of the speech examples: the median of each voice's, and of all ("") for a voice the
    LM has not heard. Generation spreads a transcript's phonemes over that many frames per phoneme."""
    where = [i for i, task in enumerate(examples.tasks) if task == "speech"]
    if not where:
        return {}
    transcripts = [examples.transcript(i) for i in where]
    with ThreadPoolExecutor(max_workers=4) as pool:  # espeak-ng runs in its own process
        counts = list(pool.map(lambda t: len(text_phoneme_ids(t)), transcripts))
    rates: dict[str, list[float]] = {"": []}
    for i, count in zip(where, counts):
        if count:
            rate = float(examples.frames[i]) / count
            rates[""].append(rate)
            rates.setdefault(examples.voice_of[i] or "", []).append(rate)
    return {voice: round(float(np.median(values)), 4) for voice, values in sorted(rates.items()) if values}


def fitting_texts(lm: AudioLM, examples: LMExamples, name: str) -> LMExamples:
    """Leave out (with a warning) examples whose text does not fit the model's max_text_tokens."""
    limit = lm.config.max_text_tokens
    fits = [len(lm.text_tokenizer.encode(t, task)) <= limit for t, task in zip(examples.texts, examples.tasks)]
    if not all(fits):
        logger.warning("left out %d %s rows whose text is longer than max_text_tokens=%d tokens", fits.count(False),
                       name, limit)
        examples = examples.subset(np.flatnonzero(fits))
    return examples


def examples_digest(examples: LMExamples) -> str:
    h = hashlib.sha256(examples.frames.tobytes())
    h.update(examples.rows.tobytes())
    h.update("\n".join(f"{task}:{text}" for task, text in zip(examples.tasks, examples.texts)).encode())
    return h.hexdigest()[:16]
