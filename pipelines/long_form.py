"""Inputs longer than one generation of the LM: music past its position range, speech of several sentences.

Music longer than one window (the LM's `max_audio_frames`, 20 s for the bundled LMs) is continued in
overlapping windows, as MusicGen's `extend_stride` does: the first window is generated as usual, then each next
one continues the last `window - extend_stride` seconds of codes (the LM's own audio-prompt path) and adds up
to `extend_stride` seconds of new codes, until the duration is reached. Only codes are joined; the whole code
sequence is decoded once, so decoding adds no seam either.

    codes = windowed(run_window, prompt=None, new_frames=3375, window=1500, stride=900)   # 45 s at 75 Hz

A speech text of several sentences (or one longer than the LM's text limit) is split at sentence ends
(`speech_parts`), each part spoken in the same voice with a seed derived from the request's (`part_seed`), and
the parts joined with `SENTENCE_PAUSE` seconds of silence after their trailing near-silence is trimmed
(`joined_speech`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator

import torch

# MusicGen continues its 30 s window every 18 s (`extend_stride=18`): 60% of the window is new audio, 40% (12 s)
# is context that keeps the style, tempo and harmony going. The same share of the bundled LMs' 20 s window gives
# 12 s of new audio over 8 s of context: a longer context would carry more of the music over, but every window
# would add fewer new seconds while its steps attend over as many positions.
STRIDE_SHARE = 0.6

SENTENCE_PAUSE = 0.3  # seconds of silence between spoken sentences: a speaker's usual pause at a full stop
SILENCE_RMS = 0.01  # a frame quieter than this (RMS of samples in [-1, 1], about -40 dBFS) is near-silence
SILENCE_FRAME = 0.01  # seconds per frame when trimming a sentence's trailing near-silence

# Words whose period does not end a sentence (lower case, without the period).
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf", "vol", "fig",
    "approx", "dept", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "a.m", "p.m", "u.s", "u.k",
})
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")


# ----------------------------------------------------------------------------------------- music: windows


def window_seconds(lm) -> float:
    """Seconds the LM generates in one window: its position range `max_audio_frames` at its frame rate."""
    return lm.config.max_audio_frames / lm.config.frame_rate


def stride_frames(lm, extend_stride: float | None) -> int:
    """`extend_stride` (seconds of new audio per window after the first; None: `STRIDE_SHARE` of the window) as
    frames at the LM's frame rate. ValueError unless 0 < extend_stride < the window, both at least a frame."""
    window, rate = lm.config.max_audio_frames, lm.config.frame_rate
    if extend_stride is None:
        return max(1, min(window - 1, round(STRIDE_SHARE * window)))
    if isinstance(extend_stride, bool) or not isinstance(extend_stride, (int, float)):
        raise ValueError(f"extend_stride must be a number of seconds, got {extend_stride!r}")
    frames = round(extend_stride * rate)
    if not 1 <= frames <= window - 1:
        raise ValueError(f"extend_stride={extend_stride!r} s must be more than 0 and less than the LM's window of "
                         f"{window_seconds(lm):g} s (max_audio_frames={window} at {rate:g} Hz), with at least one "
                         f"frame ({1 / rate:.3g} s) on each side; e.g. {STRIDE_SHARE * window / rate:g} s")
    return frames


def needs_windows(lm, prompt_frames: int, new_frames: int) -> bool:
    """Whether the prompt and the new frames together pass the LM's position range."""
    return prompt_frames + new_frames > lm.config.max_audio_frames


RunWindow = Callable[[torch.Tensor | None, int, int, int], Iterable[torch.Tensor]]


def windowed(run_window: RunWindow, prompt: torch.Tensor | None, new_frames: int, window: int, stride: int
             ) -> Iterator[torch.Tensor]:
    """Generate `new_frames` frames in overlapping windows; yield codes LongTensor[1, K, t] as they come.

    run_window(context, offset, frames, index) runs the LM once: it continues `context` LongTensor[1, K, T_c]
    (None: nothing) whose first frame is frame `offset` of the whole sequence (the audio prompt's first frame is
    frame 0), yields at most `frames` new frames in chunks [1, K, t], fewer if the audio ends by itself, and
    seeds window `index` on its own. The first window continues `prompt` (LongTensor[1, K, T_p] or None) and fills
    the window; each next one continues the last `window - stride` frames and adds `stride` (the last, what is
    left). A window that ends by itself ends the sequence.
    """
    overlap = window - stride
    context, offset, made, index = prompt, 0, 0, 0
    while made < new_frames:
        held = 0 if context is None else context.shape[2]
        frames = min(window - held, new_frames - made)
        new = []
        for chunk in run_window(context, offset, frames, index):
            new.append(chunk)
            yield chunk
        new = torch.cat(new, dim=2) if new else None
        made += 0 if new is None else new.shape[2]
        if new is None or new.shape[2] < frames:
            return  # ended by itself
        codes = new if context is None else torch.cat([context, new], dim=2)  # (1, K, held + frames)
        offset += codes.shape[2] - overlap
        context = codes[:, :, -overlap:]
        index += 1


def part_seed(seed: int, index: int) -> int:
    """The seed of window or sentence `index` of a request seeded `seed`: `seed` itself for the first, so that a
    long input starts as the short one does; a hash of both for the others (a 63-bit integer)."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# ----------------------------------------------------------------------------------------- speech: sentences


def split_sentences(text: str) -> list[str]:
    """Split `text` after each `.`, `!` or `?` (runs of them, and closing quotes or brackets, included) that is
    followed by white space or the end; a period after a known abbreviation ("Mr.", "e.g.") or a single letter
    (an initial) does not end a sentence, nor does one inside a number ("3.5"). Text after the last end is a
    sentence of its own. Each sentence is stripped; an empty text gives []."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.group().startswith(".") and len(match.group().rstrip("\"')]")) == 1:
            word = text[start:match.start()].split()[-1:] or [""]
            if _abbreviation(word[0]):
                continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _abbreviation(word: str) -> bool:
    word = word.lstrip("\"'([").lower()
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def speech_parts(text: str, fits: Callable[[str], bool]) -> list[str]:
    """The parts a transcript is spoken in: its sentences (`split_sentences`), each one that does not `fit` the
    LM's text limit cut further at word boundaries into the longest runs of words that do. ValueError for a
    single word that does not fit."""
    parts = []
    for sentence in split_sentences(text):
        if fits(sentence):
            parts.append(sentence)
            continue
        run: list[str] = []
        for word in sentence.split():
            if not fits(word):
                raise ValueError(f"the word {word[:40]!r} alone is longer than the LM's text limit "
                                 "(max_text_tokens); split or shorten it")
            if run and not fits(" ".join(run + [word])):
                parts.append(" ".join(run))
                run = []
            run.append(word)
        parts.append(" ".join(run))
    return parts


def trim_trailing_silence(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """FloatTensor[C, N] -> [C, n]: without its trailing frames of `SILENCE_FRAME` seconds whose RMS (over all
    channels) is below `SILENCE_RMS`; a clip that is near-silence throughout is kept whole."""
    hop = max(1, round(SILENCE_FRAME * sample_rate))
    n = waveform.shape[-1]
    frames = -(-n // hop)
    padded = torch.nn.functional.pad(waveform, (0, frames * hop - n))
    rms = padded.reshape(waveform.shape[0], frames, hop).pow(2).mean(dim=(0, 2)).sqrt()  # (frames,)
    loud = (rms >= SILENCE_RMS).nonzero()
    if not len(loud):
        return waveform
    return waveform[:, :min(n, (int(loud[-1]) + 1) * hop)]


def joined_speech(clips: Iterable[torch.Tensor], sample_rate: int) -> Iterator[torch.Tensor]:
    """Yield the spoken parts FloatTensor[C, n] as they come, each with its trailing near-silence trimmed, with
    `SENTENCE_PAUSE` seconds of silence before every part but the first. Concatenated, the joined speech."""
    pause = round(SENTENCE_PAUSE * sample_rate)
    for index, clip in enumerate(clips):
        clip = trim_trailing_silence(clip, sample_rate)
        yield clip if index == 0 else torch.cat([clip.new_zeros(clip.shape[0], pause), clip], dim=-1)
