"""What the LM is conditioned on: the text, and for speech the voice that should say it.

Training (`train-lm`, `finetune`) and generation build the conditioning text with the same function, so a
voice named at generation time means what it meant in training. Voices are plain text (`[flite-rms] Hello`):
the sentencepiece tokenizer learns them as pieces, and the model needs no extra embedding table.
"""

from __future__ import annotations


def condition_text(text: str, voice: str | None = None) -> str:
    """The conditioning text for `text` (a transcript or a caption), spoken by `voice` when given."""
    return text if not voice else f"[{voice}] {text}"


def text_without_voice(conditioning: str, voice: str | None = None) -> str:
    """The text that `condition_text(text, voice)` was made from."""
    prefix = f"[{voice}] " if voice else ""
    if not conditioning.startswith(prefix):
        raise ValueError(f"{conditioning!r} is not a conditioning text of voice {voice!r}")
    return conditioning[len(prefix):]


def known_voices(config) -> list[str]:
    """The voices an LM was trained with (its config's `voices`, written by train-lm), sorted."""
    return sorted(getattr(config, "voices", None) or [])
