"""What the web page accepts, checked on the server: prompt length, duration, sampling values, uploads.

Every check raises `LimitError` (a ValueError) whose text is shown on the page as it is, so it says what was
wrong, with which value, and what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tokenizer.audio import audio_duration, load_audio
from tokenizer.errors import AudioInputError

MAX_PROMPT_CHARS = 300
MAX_DURATION = 30.0  # seconds of generated audio per request
MAX_UPLOAD_MB = 20  # also given to gradio, which refuses a larger upload before it is stored
MAX_UPLOAD_SECONDS = 60.0  # of an uploaded clip (codec round trip, audio prompt)


class LimitError(ValueError):
    """A request the page refuses; the message is shown to the user."""


def check_prompt(prompt: str | None) -> str:
    """The prompt stripped; LimitError when empty or longer than MAX_PROMPT_CHARS characters."""
    text = (prompt or "").strip()
    if not text:
        raise LimitError("The prompt is empty: describe the music, or type the words to speak.")
    if len(text) > MAX_PROMPT_CHARS:
        raise LimitError(f"The prompt is {len(text)} characters long; this page takes at most {MAX_PROMPT_CHARS}. "
                         "Shorten it.")
    return text


def check_duration(duration: float | None) -> float:
    """Seconds to generate, in (0, MAX_DURATION]."""
    if duration is None or not 0 < float(duration) <= MAX_DURATION:
        raise LimitError(f"Duration must be more than 0 and at most {MAX_DURATION:g} s here, got {duration!r}.")
    return float(duration)


def check_seed(seed: float | None) -> int | None:
    """The seed as an int; None (draw one) for an empty box or a negative number."""
    if seed is None or seed < 0:
        return None
    if seed != int(seed) or seed >= 2**63:
        raise LimitError(f"The seed must be a whole number below 2^63, got {seed!r}; leave -1 for a random one.")
    return int(seed)


def check_top_k(top_k: float | None) -> int | None:
    """top_k as an int; 0 or empty turns it off (None)."""
    if top_k is None or top_k == 0:
        return None
    if top_k < 0 or top_k != int(top_k):
        raise LimitError(f"top-k must be a whole number >= 0 (0: off), got {top_k!r}.")
    return int(top_k)


def load_upload(path: str | os.PathLike | None, sample_rate: int, channels: int,
                what: str = "the uploaded audio") -> torch.Tensor:
    """Read an uploaded or recorded audio file as FloatTensor[C, N] at `sample_rate` Hz with `channels` channels
    (resampled, down-mixed); LimitError when it is missing, too large, too long, or not audio ffmpeg can read."""
    if path is None:
        raise LimitError(f"No audio given: upload or record {what} first.")
    path = Path(path)
    size_mb = path.stat().st_size / 2**20
    if size_mb > MAX_UPLOAD_MB:
        raise LimitError(f"{what.capitalize()} is {size_mb:.1f} MB; this page takes files up to {MAX_UPLOAD_MB} MB.")
    name = path.name
    try:
        seconds = audio_duration(path)
        if seconds > MAX_UPLOAD_SECONDS:
            raise LimitError(f"{what.capitalize()} {name!r} lasts {seconds:.1f} s; this page takes at most "
                             f"{MAX_UPLOAD_SECONDS:g} s. Cut it first (e.g. ffmpeg -t {MAX_UPLOAD_SECONDS:g}).")
        wav, _ = load_audio(path, sample_rate=sample_rate, channels=channels)
    except AudioInputError as exc:
        raise LimitError(f"Could not read {what} {name!r} as audio (wav, flac, ogg, mp3, opus, m4a, ...): the file "
                         f"is damaged or not audio. ({_short(exc)})") from exc
    if wav.shape[-1] == 0:
        raise LimitError(f"{what.capitalize()} {name!r} holds no samples.")
    if wav.shape[-1] > MAX_UPLOAD_SECONDS * sample_rate:
        raise LimitError(f"{what.capitalize()} {name!r} lasts {wav.shape[-1] / sample_rate:.1f} s; this page takes "
                         f"at most {MAX_UPLOAD_SECONDS:g} s.")
    if not bool(torch.isfinite(wav).all()):
        raise LimitError(f"{what.capitalize()} {name!r} holds NaN or infinite samples.")
    return wav.clamp(-1.0, 1.0)


def _short(exc: Exception, limit: int = 200) -> str:
    """The first line of an error, cut to `limit` characters, for a message on the page."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"
