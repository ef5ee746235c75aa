"""What the LM trains on: tokenized datasets -> conditioning texts, tasks and codes, and the batches of each step.

    train, held_out, source = open_lm_data("data/speech_codes")          # a tokenize output or a saved dataset
    examples = LMExamples.from_dataset(train, task=None)
    plan = BatchPlan(examples.frames, batch_size=16, max_frames=750, seed=0)
    batch = plan.batch(step=12)                                         # the same on every process, every run

Each row gives the LM:
    text   `condition_text(row["text"], row.get("voice"))`: the voice, when the dataset has a `voice` column,
           is written into the text, exactly as generation writes it
    task   the row's `task` column if the dataset has one, else the `task` argument ("speech" or "music"),
           else inferred: a dataset with a `voice` column is speech, any other is music
    codes  LongTensor[K, T] from the `codes` column (K x T ints)

Batches are a pure function of (seed, step): the rows come from an endless stream of epochs, each a permutation of
the rows drawn from (seed, epoch), and the crops and condition drops of a step from (seed, step). Every process
builds the same global batch and takes its slice, so a run gives the same batches on any number of processes and
after any resume.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, DatasetDict

from lm.codec_interface import same_code_space

from .conditioning import condition_text, text_without_voice
from .tokenize import TokenizeError, load_tokenized, read_codec_metadata
from .tokenize.storage import CONFIG_FILE

logger = logging.getLogger(__name__)

TASKS = ("speech", "music")
EVAL_SPLITS = ("validation", "test")  # the first one present holds the evaluation rows of a DatasetDict
_EPOCH, _STEP, _HOLDOUT, _SUBSET = 1, 2, 3, 4  # stream tags: each kind of draw has its own random numbers


# ----------------------------------------------------------------------------------------- opening data


def open_lm_data(data: Dataset | DatasetDict | str | os.PathLike, eval_data: Dataset | str | os.PathLike | None = None,
                 ) -> tuple[Dataset, Dataset | None, str]:
    """The training rows, the evaluation rows (None: hold out a fraction of the training rows) and where those came from.

    `data` is a `tokenize_dataset` output folder, a folder written by `save_to_disk` (a Dataset, or a DatasetDict
    whose "train" split is trained on and whose "validation" or else "test" split is evaluated on), or such an
    object. `eval_data`, when given, is the evaluation set instead (a Dataset, or a folder of either kind).
    """
    opened = _open(data, "data")
    held: Dataset | None = None
    where = "a held-out fraction of the training rows"
    if isinstance(opened, DatasetDict):
        if "train" not in opened:
            raise ValueError(f"the dataset has splits {sorted(opened)} and none is 'train'; name the split to train "
                             "on 'train' or pass that split alone")
        split = next((s for s in EVAL_SPLITS if s in opened), None)
        train = opened["train"]
        if split is not None:
            held, where = opened[split], f"the dataset's {split!r} split"
    else:
        train = opened
    if eval_data is not None:
        held = _open(eval_data, "eval_data")
        if isinstance(held, DatasetDict):
            split = next((s for s in EVAL_SPLITS if s in held), None)
            if split is None:
                raise ValueError(f"eval_data has splits {sorted(held)} and neither {' nor '.join(EVAL_SPLITS)}; "
                                 "pass the split to evaluate on")
            held = held[split]
        where = "eval_data"
    return train, held, where


def _open(data, what: str) -> Dataset | DatasetDict:
    if isinstance(data, (Dataset, DatasetDict)):
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(f"{what} must be a Dataset, a DatasetDict or a folder, got {type(data).__name__}")
    path = Path(data)
    if (path / CONFIG_FILE).is_file():
        return load_tokenized(path)
    if not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is not a folder: pass the output folder of `rvqaudio tokenize` or a "
                         "dataset written by save_to_disk")
    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise ValueError(f"{what} {str(path)!r} is neither a `rvqaudio tokenize` output ({CONFIG_FILE} is missing) "
                         f"nor a dataset written by save_to_disk ({e})") from e


def check_codec_metadata(dataset: Dataset, codec, what: str = "the dataset") -> dict:
    """ValueError unless `dataset`'s codes were made by `codec` with all its codebooks; returns the metadata."""
    try:
        meta = read_codec_metadata(dataset)
    except TokenizeError as e:
        raise ValueError(f"{what} has no codec metadata: {e}") from e
    if not same_code_space(meta.get("fingerprint"), codec, what):
        raise ValueError(
            f"codec mismatch: {what} holds codes of codec fingerprint {meta.get('fingerprint')!r} "
            f"({meta.get('name')!r}), the LM's codec has fingerprint {codec.fingerprint!r}; tokenize the data with "
            "this codec, or train with the codec that tokenized it")
    if meta.get("num_codebooks") != codec.num_codebooks:
        raise ValueError(f"{what} stores {meta.get('num_codebooks')} codebooks per frame, the codec has "
                         f"{codec.num_codebooks} and the LM models all of them; re-tokenize without --num-codebooks")
    return meta


# ----------------------------------------------------------------------------------------- rows


@dataclass
class LMExamples:
    """The usable rows of a dataset: what each gives the LM, except its codes, which are read per batch."""

    dataset: Dataset  # the `codes` column only, left in its Arrow table (memory-mapped when read from disk)
    rows: np.ndarray  # (N,) row index in `dataset` of each example
    texts: list[str]  # (N,) conditioning texts
    tasks: list[str]  # (N,)
    frames: np.ndarray  # (N,) frames T of each example's codes
    voice_of: list[str | None]  # (N,) the voice of each example (None without a `voice` column)
    dropped: dict[str, int]  # reason -> rows left out
    alignment: list | None = None  # (N,) per speech example an `alignment.Alignment` of its phonemes, or None

    @classmethod
    def from_dataset(cls, dataset: Dataset, task: str | None = None) -> LMExamples:
        """Read texts, voices, tasks and frame counts; rows without text or without frames are left out (counted)."""
        if not isinstance(dataset, Dataset):
            raise ValueError(f"expected a Dataset, got {type(dataset).__name__}")
        missing = [c for c in ("codes", "text") if c not in dataset.column_names]
        if missing:
            raise ValueError(f"the dataset has no {missing} column(s) (columns: {dataset.column_names}); "
                             "make it with `rvqaudio tokenize`")
        if task is not None and task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)} or None, got {task!r}")
        texts = list(dataset["text"])
        voices = list(dataset["voice"]) if "voice" in dataset.column_names else [None] * len(texts)
        if "task" in dataset.column_names:
            tasks = list(dataset["task"])
            bad = sorted({t for t in tasks if t not in TASKS}, key=str)
            if bad:
                raise ValueError(f"the dataset's task column holds {bad}; tasks must be one of {list(TASKS)}")
        else:
            tasks = [task or ("speech" if "voice" in dataset.column_names else "music")] * len(texts)
        frames = _frame_counts(dataset)
        keep, dropped = [], {"empty text": 0, "no frames": 0}
        for i, (text, n) in enumerate(zip(texts, frames)):
            if not isinstance(text, str) or not text.strip():
                dropped["empty text"] += 1
            elif n == 0:
                dropped["no frames"] += 1
            else:
                keep.append(i)
        rows = np.asarray(keep, dtype=np.int64)
        return cls(
            dataset=dataset.select_columns(["codes"]).with_format("numpy"),
            rows=rows,
            texts=[condition_text(texts[i], voices[i]) for i in keep],
            tasks=[tasks[i] for i in keep],
            frames=frames[rows],
            voice_of=[voices[i] or None for i in keep],
            dropped={k: v for k, v in dropped.items() if v},
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def voices(self) -> list[str]:
        """The distinct voices of these examples, sorted (empty without a `voice` column)."""
        return sorted({v for v in self.voice_of if v})

    @property
    def most_frequent_voice(self) -> str | None:
        """The voice with the most examples (the first in sorted order on a tie), None without voices."""
        counts: dict[str, int] = {}
        for voice in self.voice_of:
            if voice:
                counts[voice] = counts.get(voice, 0) + 1
        return min(counts, key=lambda v: (-counts[v], v)) if counts else None

    def subset(self, keep: np.ndarray) -> LMExamples:
        """The examples at positions `keep`, in that order."""
        keep = np.asarray(keep, dtype=np.int64)
        return LMExamples(self.dataset, self.rows[keep], [self.texts[i] for i in keep], [self.tasks[i] for i in keep],
                          self.frames[keep], [self.voice_of[i] for i in keep], dict(self.dropped),
                          None if self.alignment is None else [self.alignment[i] for i in keep])

    def with_mismatched_texts(self) -> LMExamples:
        """The same examples, each conditioned on the text of the next example of its task (cyclically), in its
        own voice: what the LM's loss is worth when the words do not match the audio. The loss gap between this
        and the real texts measures how much the LM uses its text (see `train_lm`'s eval_text_gain). A task with
        one example keeps its text. Alignments belong to the real texts, so the other texts' phonemes are spread
        evenly."""
        texts = list(self.texts)
        for task in set(self.tasks):
            where = [i for i, t in enumerate(self.tasks) if t == task]
            bodies = [text_without_voice(self.texts[i], self.voice_of[i]) for i in where]
            for n, i in enumerate(where):
                texts[i] = condition_text(bodies[(n + 1) % len(where)], self.voice_of[i])
        return dataclasses.replace(self, texts=texts, alignment=None)

    @classmethod
    def concatenate(cls, parts: list[LMExamples]) -> LMExamples:
        """The examples of several datasets (e.g. speech and music), one after the other."""
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [len(p.dataset) for p in parts[:-1]])
        dropped: dict[str, int] = {}
        for part in parts:
            for why, n in part.dropped.items():
                dropped[why] = dropped.get(why, 0) + n
        return cls(
            dataset=datasets.concatenate_datasets([p.dataset.with_format(None) for p in parts]).with_format("numpy"),
            rows=np.concatenate([p.rows + off for p, off in zip(parts, offsets)]),
            texts=[t for p in parts for t in p.texts],
            tasks=[t for p in parts for t in p.tasks],
            frames=np.concatenate([p.frames for p in parts]),
            voice_of=[v for p in parts for v in p.voice_of],
            dropped=dropped,
            alignment=(None if all(p.alignment is None for p in parts) else
                       [a for p in parts for a in (p.alignment or [None] * len(p))]),
        )

    def transcript(self, index: int) -> str | None:
        """What example `index` says, without its voice tag: its text for speech, None for music."""
        if self.tasks[index] != "speech":
            return None
        return text_without_voice(self.texts[index], self.voice_of[index])

    def codes(self, index: int) -> np.ndarray:
        """Codes of example `index`, (K, T) int64."""
        return np.asarray(self.dataset[int(self.rows[index])]["codes"], dtype=np.int64)


def _frame_counts(dataset: Dataset) -> np.ndarray:
    """T of every row, from the Arrow list offsets alone: no code is read or copied, so a memory-mapped dataset
    stays on disk."""
    counts = [np.zeros(0, dtype=np.int64)]
    for table in dataset.select_columns(["codes"]).with_format("arrow").iter(batch_size=10_000):
        counts.extend(_first_list_lengths(chunk) for chunk in table["codes"].chunks)
    return np.concatenate(counts)


def _first_list_lengths(rows: pa.Array) -> np.ndarray:
    """(n,) length of each row's first list (codebook 0: all K have T frames) of a list-of-lists array (variable
    or fixed-size lists at either level); 0 for a row that is null, has no lists, or whose first list is null."""
    n = len(rows)
    if pa.types.is_fixed_size_list(rows.type):  # K fixed: row i's lists start at (offset + i) * K in rows.values
        size = rows.type.list_size
        first = (np.arange(n, dtype=np.int64) + rows.offset) * size
        has = np.full(n, size > 0)
    else:
        starts = rows.offsets.to_numpy()  # (n + 1,) where each row's lists start in rows.values (the slice applied)
        first = starts[:-1].astype(np.int64)
        has = starts[1:] > first
    has &= rows.is_valid().to_numpy(zero_copy_only=False)
    inner = rows.values  # every row's lists, the slice not applied: indexed by `first`
    has[has] &= inner.is_valid().to_numpy(zero_copy_only=False)[first[has]]
    lengths = np.zeros(n, dtype=np.int64)
    if pa.types.is_fixed_size_list(inner.type):  # T fixed for every row
        lengths[has] = inner.type.list_size
    else:
        ends = inner.offsets.to_numpy()
        lengths[has] = ends[first[has] + 1] - ends[first[has]]
    return lengths


def split_held_out(examples: LMExamples, fraction: float, max_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (train, held out) of a deterministic held-out share: round(fraction * N) rows, at most `max_items`,
    at least one when fraction > 0 and N >= 2; drawn from `seed` alone, so every process and resume agrees."""
    n = len(examples)
    count = 0 if fraction <= 0 or n < 2 else min(max(1, round(fraction * n)), max_items, n - 1)
    order = np.random.default_rng([seed, _HOLDOUT]).permutation(n)
    held = np.sort(order[:count])
    return np.setdiff1d(np.arange(n), held), held


def eval_subset(n: int, max_items: int, seed: int) -> np.ndarray:
    """Positions of at most `max_items` of `n` evaluation examples (all of them when n <= max_items), sorted."""
    if n <= max_items:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, _SUBSET]).permutation(n)[:max_items])


# ----------------------------------------------------------------------------------------- batches


@dataclass
class BatchPlan:
    """Which examples, which crops and which dropped texts make the global batch of each step.

    `frames` (N,) are the examples' lengths. An example longer than `max_frames` is cropped to a random window
    of `max_frames` frames (its whole text kept), or to its first `max_frames` frames where `from_start` (N,) is
    True; a window that stops before the example's end has no end-of-audio target (`cut`), since the audio goes
    on. A caption describes the whole clip, so any window of music fits it; a transcript is spoken in order, so
    only a window from the start of speech begins where its text does (the text then runs past the audio).
    `condition_dropout` is the chance of training an example on the null condition (classifier-free guidance); the
    draw is made here, not in the model, so that it does not depend on how the batch is split across processes.
    """

    frames: np.ndarray
    batch_size: int
    max_frames: int
    seed: int
    condition_dropout: float = 0.0
    from_start: np.ndarray | None = None
    _orders: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.frames) == 0:
            raise ValueError("no examples to train on (every row was empty or left out)")
        if self.from_start is not None:
            self.from_start = np.asarray(self.from_start, dtype=bool)
            if self.from_start.shape != self.frames.shape:
                raise ValueError(f"from_start has shape {self.from_start.shape}; it needs one flag per example, "
                                 f"{self.frames.shape}")

    def epoch_order(self, epoch: int) -> np.ndarray:
        """A permutation of the examples, from (seed, epoch)."""
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            self._orders[epoch] = np.random.default_rng([self.seed, _EPOCH, epoch]).permutation(len(self.frames))
        return self._orders[epoch]

    def batch(self, step: int) -> GlobalBatch:
        n, size = len(self.frames), self.batch_size
        positions = np.arange(step * size, (step + 1) * size)
        index = np.array([self.epoch_order(p // n)[p % n] for p in positions], dtype=np.int64)
        rng = np.random.default_rng([self.seed, _STEP, step])
        where, drop_draw = rng.random(size), rng.random(size)
        total = self.frames[index]
        length = np.minimum(total, self.max_frames)
        start = np.floor(where * (total - length + 1)).astype(np.int64)
        if self.from_start is not None:
            start[self.from_start[index]] = 0  # the draws are made all the same: the other crops do not move
        return GlobalBatch(index=index, start=start, length=length, cut=start + length < total,
                           drop=drop_draw < self.condition_dropout, epoch=int(positions[-1] // n))


@dataclass
class GlobalBatch:
    """One step's examples (B,), their crop windows, end-of-audio targets kept or not, and dropped texts."""

    index: np.ndarray
    start: np.ndarray
    length: np.ndarray
    cut: np.ndarray
    drop: np.ndarray
    epoch: int

    def __len__(self) -> int:
        return len(self.index)

    def target_count(self) -> int:
        """Targets per codebook in the whole batch: every frame, plus end of audio where the example is not cut."""
        return int(self.length.sum() + (~self.cut).sum())

    def part(self, lo: int, hi: int) -> GlobalBatch:
        return GlobalBatch(self.index[lo:hi], self.start[lo:hi], self.length[lo:hi], self.cut[lo:hi],
                           self.drop[lo:hi], self.epoch)


@dataclass
class Batch:
    """Tensors of a (micro-)batch: codes LongTensor[B, K, T] (padded with 0), code_lengths LongTensor[B],
    cut BoolTensor[B] (no end-of-audio target), drop BoolTensor[B] (text replaced by the null condition),
    and the texts and tasks. For an aligned phoneme track: the transcripts (None for music), each example's
    whole length total_frames LongTensor[B] (the end of its last phoneme when it is aligned), the first frame of
    its crop, frame_offset LongTensor[B], and phoneme_starts (per item the start frame of each phoneme symbol, or
    None: spread evenly)."""

    texts: list[str]
    tasks: list[str]
    codes: torch.Tensor
    code_lengths: torch.Tensor
    cut: torch.Tensor
    drop: torch.Tensor
    transcripts: list[str | None]
    total_frames: torch.Tensor
    frame_offset: torch.Tensor
    phoneme_starts: list | None = None


def collate(examples: LMExamples, batch: GlobalBatch) -> Batch:
    """Read and crop the codes of `batch`'s examples and pad them to the longest."""
    longest = int(batch.length.max())
    items = [examples.codes(int(i)) for i in batch.index]
    K = items[0].shape[0]
    codes = torch.zeros(len(items), K, longest, dtype=torch.long)  # (B, K, T)
    for b, (item, start, length) in enumerate(zip(items, batch.start, batch.length)):
        codes[b, :, :length] = torch.from_numpy(item[:, start:start + length])
    total_frames = examples.frames[batch.index].copy()
    starts = None
    if examples.alignment is not None:
        aligned = [examples.alignment[int(i)] for i in batch.index]
        starts = [None if a is None else a.starts for a in aligned]
        total_frames = np.asarray([t if a is None else a.end for t, a in zip(total_frames, aligned)], dtype=np.int64)
    return Batch(texts=[examples.texts[int(i)] for i in batch.index], tasks=[examples.tasks[int(i)] for i in batch.index],
                 codes=codes, code_lengths=torch.from_numpy(batch.length.copy()),
                 cut=torch.from_numpy(batch.cut.copy()), drop=torch.from_numpy(batch.drop.copy()),
                 transcripts=[examples.transcript(int(i)) for i in batch.index],
                 total_frames=torch.from_numpy(total_frames),
                 frame_offset=torch.from_numpy(np.asarray(batch.start, dtype=np.int64).copy()),
                 phoneme_starts=starts)


def eval_batches(examples: LMExamples, batch_size: int, max_frames: int, rank: int = 0, num_processes: int = 1):
    """This process's share of the evaluation examples (every `num_processes`-th), in batches of `batch_size`,
    each cropped to its first `max_frames` frames (a crop has no end-of-audio target)."""
    mine = np.arange(rank, len(examples), num_processes)
    for lo in range(0, len(mine), batch_size):
        index = mine[lo:lo + batch_size]
        total = examples.frames[index]
        length = np.minimum(total, max_frames)
        yield collate(examples, GlobalBatch(index=index, start=np.zeros_like(index), length=length,
                                            cut=length < total, drop=np.zeros(len(index), dtype=bool), epoch=0))
