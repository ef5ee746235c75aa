"""What the LM is conditioned on, as the pipelines build it: the text, for speech the voice that should say it
(`condition_text`, defined with the LM's text conditioner in `lm.conditioners.text`), and the voices an LM knows.

Training (`train-lm`, `finetune`) and generation build the conditioning text with the same function, so a voice
named at generation time means what it meant in training.
"""

from __future__ import annotations

from lm.conditioners.text import condition_text, text_without_voice

__all__ = ["condition_text", "known_voices", "text_without_voice"]


def known_voices(config) -> list[str]:
    """The voices an LM was trained with (its config's `voices`, written by train-lm), sorted."""
    return sorted(getattr(config, "voices", None) or [])
