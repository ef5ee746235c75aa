"""The text prefix of the LM: a conditioning text (a transcript or a caption, spoken by a voice when one is named)
as ids behind its task tag, and the null condition that guidance and condition dropout put in its place.

Voices are plain text (`[flite-rms] Hello`): the sentencepiece tokenizer learns them as pieces, and the model needs
no extra embedding table. Training and generation build the conditioning text with the same `condition_text`, so a
voice named at generation time means what it meant in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..text import TextTokenizer


def condition_text(text: str, voice: str | None = None) -> str:
    """The conditioning text for `text` (a transcript or a caption), spoken by `voice` when given."""
    return text if not voice else f"[{voice}] {text}"


def text_without_voice(conditioning: str, voice: str | None = None) -> str:
    """The text that `condition_text(text, voice)` was made from."""
    prefix = f"[{voice}] " if voice else ""
    if not conditioning.startswith(prefix):
        raise ValueError(f"{conditioning!r} is not a conditioning text of voice {voice!r}")
    return conditioning[len(prefix):]


class TextConditioner:
    """Texts -> the LM's text prefix: `[task tag] + pieces + [eos]` per text, left-padded into one batch."""

    def __init__(self, tokenizer: TextTokenizer, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @property
    def null_condition_ids(self) -> list[int]:
        """The ids the null condition keeps visible: end of text and every task tag."""
        return [self.tokenizer.eos_id] + [self.tokenizer.task_id(task) for task in self.tokenizer.TASKS]

    def encode(self, texts: Sequence[str], task: str | Sequence[str | None] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ids LongTensor[B, L] and mask BoolTensor[B, L], left-padded so that the audio starts together.

        ValueError for an empty text, an unknown task, or a text longer than `max_tokens` (task tag and eos
        included).
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise ValueError(f"texts must be a list of str, got {type(texts).__name__}; wrap one text as [text]")
        if not texts:
            raise ValueError("texts is empty; give at least one text")
        tasks = list(task) if isinstance(task, (list, tuple)) else [task] * len(texts)
        if len(tasks) != len(texts):
            raise ValueError(f"got {len(tasks)} tasks for {len(texts)} texts; give one task or one per text")
        encoded = []
        for index, (text, text_task) in enumerate(zip(texts, tasks)):
            if not isinstance(text, str):
                raise ValueError(f"text {index} must be a str, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"text {index} is empty ({text!r}); give at least one visible character")
            ids = self.tokenizer.encode(text, text_task)
            if len(ids) > self.max_tokens:
                raise ValueError(f"text {index} is {len(ids)} tokens long (task tag and eos included), more than the "
                                 f"model's context of max_text_tokens={self.max_tokens}; shorten or split it")
            encoded.append(ids)
        width = max(len(ids) for ids in encoded)
        text_ids = torch.full((len(encoded), width), self.tokenizer.pad_id, dtype=torch.long)  # (B, L)
        text_mask = torch.zeros(len(encoded), width, dtype=torch.bool)  # (B, L)
        for row, ids in enumerate(encoded):
            text_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            text_mask[row, width - len(ids):] = True
        return text_ids, text_mask
