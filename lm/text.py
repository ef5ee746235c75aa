"""The text tokenizer of the LM: a sentencepiece unigram model with byte fallback.

Ids are fixed so that the LM's embedding table and prompts never depend on the corpus:

    pad=0, unk=1, bos=2, eos=3, "<speech>"=4, "<music>"=5, bytes <0x00>..<0xFF>=6..261, learnt pieces after.

`encode` gives ``[task tag] + pieces + [eos]`` (no bos: the task tag opens the sequence when there is one).

Normalisation is decided here, not left to sentencepiece's NFKC rule: text is Unicode NFC-composed, runs of
whitespace collapse to one space, ends are stripped, and case is kept. Case and compatibility characters
("m²", "½", full-width digits) change what a TTS model should say, so NFKC folding and lower-casing would
throw away information the speech depends on; NFC only merges encodings of the same character. Hence
``decode(encode(t)) == " ".join(unicodedata.normalize("NFC", t).split())`` for every text, seen or not:
characters outside the learnt pieces fall back to their UTF-8 bytes, so nothing maps to unk.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm
import torch

MODEL_FILENAME = "text_tokenizer.model"

_PAD, _UNK, _BOS, _EOS = 0, 1, 2, 3
_NUM_BYTE_PIECES = 256


def normalize_text(text: str) -> str:
    """NFC-compose, collapse whitespace runs to one space, strip the ends; case is kept."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class TextTokenizer:
    """Sentencepiece unigram tokenizer with fixed special ids, one tag per task, and byte fallback.

    Build one with `train` or `from_pretrained`; call it on a batch of texts to get padded ids and a mask.
    """

    TASKS = ("speech", "music")

    def __init__(self, model_proto: bytes) -> None:
        """Wrap a serialized sentencepiece model; use `train` or `from_pretrained` rather than this."""
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError/TypeError depending on the damage
            raise ValueError(f"not a sentencepiece model ({exc}); train one with TextTokenizer.train") from exc
        self._sp = processor
        self._proto = bytes(model_proto)
        self._check_layout()
        self._task_ids = {task: processor.piece_to_id(_tag(task)) for task in self.TASKS}
        self._num_special = 4 + len(self.TASKS)

    def _check_layout(self) -> None:
        """Refuse models whose special ids differ from the fixed layout the LM is built on."""
        sp = self._sp
        expected = {_PAD: "pad", _UNK: "unk", _BOS: "bos", _EOS: "eos"}
        actual = {sp.pad_id(): "pad", sp.unk_id(): "unk", sp.bos_id(): "bos", sp.eos_id(): "eos"}
        tags = [sp.id_to_piece(4 + i) if sp.get_piece_size() > 4 + i else None for i in range(len(self.TASKS))]
        if actual != expected or tags != [_tag(t) for t in self.TASKS]:
            raise ValueError(
                f"sentencepiece model has special ids pad={sp.pad_id()} unk={sp.unk_id()} bos={sp.bos_id()} "
                f"eos={sp.eos_id()} and pieces 4.. {tags}; TextTokenizer needs pad=0 unk=1 bos=2 eos=3 and "
                f"{[_tag(t) for t in self.TASKS]} at 4..; train it with TextTokenizer.train"
            )

    # ----------------------------------------------------------------------------------------- building

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024, seed: int = 0) -> TextTokenizer:
        """Train a unigram model in memory on `texts` (each text one sentence; normalised as in the module doc).

        `vocab_size` is an upper bound, pieces included the 6 specials and 256 byte pieces. A small corpus
        cannot fill a large vocabulary: sentencepiece then gives fewer pieces (its soft limit,
        ``hard_vocab_limit=False``) instead of failing, and `vocab_size` of the result says how many.
        Too small a `vocab_size` (below specials + bytes + the corpus' distinct characters) raises ValueError
        naming the minimum. Training is single-threaded and seeded, so the same texts, `vocab_size` and
        `seed` give the same model bytes on any machine. `seed` sets sentencepiece's process-wide generator.
        """
        if vocab_size < 4 + len(cls.TASKS) + _NUM_BYTE_PIECES + 1:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: 6 special ids and 256 byte pieces come first; "
                f"use at least {4 + len(cls.TASKS) + _NUM_BYTE_PIECES + 1} (1024 or more for real use)"
            )
        counter = _CountingIterator(texts)
        writer = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            with open(os.devnull, "w") as devnull:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=counter,
                    model_writer=writer,
                    logstream=devnull,
                    model_type="unigram",
                    vocab_size=vocab_size,
                    hard_vocab_limit=False,
                    byte_fallback=True,
                    pad_id=_PAD, unk_id=_UNK, bos_id=_BOS, eos_id=_EOS,
                    user_defined_symbols=[_tag(t) for t in cls.TASKS],
                    # our own normalize_text runs first; sentencepiece must not fold case or NFKC on top.
                    normalization_rule_name="identity",
                    num_threads=1,  # a fixed thread count keeps the EM sums, hence the bytes, reproducible
                )
        except RuntimeError as exc:
            if counter.count == 0:
                raise ValueError("cannot train a text tokenizer on no text: `texts` had no non-empty text") from exc
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(exc))
            if needed:
                raise ValueError(
                    f"vocab_size={vocab_size} is too small for this corpus: its characters, the 256 byte pieces "
                    f"and 6 specials need at least {needed.group(1)}; raise vocab_size"
                ) from exc
            raise ValueError(f"sentencepiece training failed on {counter.count} texts: {exc}") from exc
        if counter.count == 0:
            raise ValueError("cannot train a text tokenizer on no text: `texts` had no non-empty text")
        return cls(writer.getvalue())

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``directory/text_tokenizer.model`` atomically (a temporary file, then `os.replace`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{MODEL_FILENAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._proto)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a saved checkpoint should be readable like any file
            os.replace(tmp, directory / MODEL_FILENAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> TextTokenizer:
        """Load ``directory/text_tokenizer.model``; FileNotFoundError if absent, ValueError if not a valid model."""
        path = Path(directory) / MODEL_FILENAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no text tokenizer at {path}; save one with TextTokenizer.save_pretrained({str(directory)!r})"
            )
        try:
            return cls(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path} is corrupt or not a text tokenizer: {exc}") from exc

    # ------------------------------------------------------------------------------------------ ids

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials and byte pieces included; ids lie in [0, vocab_size)."""
        return self._sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return _PAD

    @property
    def unk_id(self) -> int:
        return _UNK

    @property
    def bos_id(self) -> int:
        return _BOS

    @property
    def eos_id(self) -> int:
        return _EOS

    def task_id(self, task: str) -> int:
        """Id of the tag that opens a text of `task` ("speech" -> 4, "music" -> 5)."""
        try:
            return self._task_ids[task]
        except (KeyError, TypeError):
            raise ValueError(f"unknown task {task!r}; known tasks are {list(self.TASKS)}") from None

    def model_bytes(self) -> bytes:
        """The serialized sentencepiece model (what `save_pretrained` writes)."""
        return self._proto

    # ------------------------------------------------------------------------------------- encoding

    def encode(self, text: str, task: str | None = None) -> list[int]:
        """``[task tag] + pieces + [eos]`` for one text (no tag when `task` is None).

        Never produces unk: unseen characters become their UTF-8 byte pieces. ValueError on empty or
        whitespace-only text, which would leave the LM nothing to condition on.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        normalized = normalize_text(text)
        if not normalized:
            raise ValueError(f"text is empty or whitespace only ({text!r}); give at least one visible character")
        prefix = [] if task is None else [self.task_id(task)]
        return prefix + self._sp.encode(normalized, out_type=int) + [_EOS]

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of `ids`, skipping pad, unk, bos, eos and task tags (so padded rows decode cleanly)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside [0, {self.vocab_size}) for this tokenizer")
        return self._sp.decode([i for i in ids if i >= self._num_special])

    def __call__(
        self,
        texts: list[str],
        task: str | list[str] | None = None,
        padding_side: str = "right",
        max_length: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch: ids LongTensor[B, L] padded with pad_id, attention_mask BoolTensor[B, L] (True = token).

        `task` is one task for all texts or one per text. L is the longest encoded text (tag and eos included).
        A text longer than `max_length` raises ValueError naming its index and length: it is never truncated,
        because a cut prompt silently drops words from the speech.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str; wrap a single text as [text]")
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty; give at least one text")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
        if task is None or isinstance(task, str):
            tasks = [task] * len(texts)
        else:
            tasks = list(task)
            if len(tasks) != len(texts):
                raise ValueError(f"got {len(tasks)} tasks for {len(texts)} texts; give one task or one per text")
        encoded = []
        for index, (text, text_task) in enumerate(zip(texts, tasks)):
            try:
                ids = self.encode(text, text_task)
            except ValueError as exc:
                raise ValueError(f"text {index}: {exc}") from exc
            if max_length is not None and len(ids) > max_length:
                raise ValueError(
                    f"text {index} is {len(ids)} tokens long (task tag and eos included), over "
                    f"max_length={max_length}; shorten or split it, or raise max_length"
                )
            encoded.append(ids)
        length = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), length), _PAD, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(encoded), length), dtype=torch.bool)  # (B, L)
        for row, ids in enumerate(encoded):
            span = slice(0, len(ids)) if padding_side == "right" else slice(length - len(ids), length)
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            mask[row, span] = True
        return input_ids, mask

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, tasks={self.TASKS})"


def _tag(task: str) -> str:
    return f"<{task}>"


class _CountingIterator(Iterator[str]):
    """Yields normalised, non-empty texts to sentencepiece and counts them (to report an empty corpus)."""

    def __init__(self, texts: Iterable[str]) -> None:
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str, not a single str")
        self._texts = iter(texts)
        self.count = 0

    def __next__(self) -> str:
        while True:
            text = next(self._texts)
            if not isinstance(text, str):
                raise TypeError(f"texts must hold str, got {type(text).__name__} at position {self.count}")
            normalized = normalize_text(text)
            if normalized:
                self.count += 1
                return normalized
