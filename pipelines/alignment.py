"""Forced alignment of transcripts to their codes, for the LM's phoneme track.

    aligner = SoundAligner.fit(items)               # items: SpeechItem(features, labels, voice) of training rows
    paths = aligner.align(items)                    # per item, the sound index of every frame
    alignment = Alignment.from_path(path, phonemes) # where each `phoneme_ids` symbol starts, and the speech's end

The track spreads a transcript's phonemes evenly over its frames unless told where each starts, and on the default
speech data an even spread gives only 15% of the frames the symbol this alignment gives them (2.2 symbols off on
average), so the LM is left to work out where it is in the sentence. This gives it the place instead, the way HTK-style aligners (and the
Montreal Forced Aligner after them) do it from nothing but transcripts: a flat start (the sounds spread evenly
between a silence at each end), then rounds of segmental k-means. Each round takes each voice's mean log-mel frame
of every sound (shrunk towards the mean over all voices when a voice says it rarely) and finds, by Viterbi, the
left-to-right path through the item's sounds that is nearest those means, each sound lasting at least one frame;
pauses ("|", "_") and the end silences may be skipped. Frames are the codes decoded by the codec and taken through a
log-mel filterbank at the codec's frame rate, normalised per voice. On the default speech data the frames that
move fall from 74% in the first round to 0.8% in the eighth, and the sounds come out with the lengths phonetics
expects (vowels and fricatives 8-9 frames, plosives about 3).

`duration_table` turns the alignments into each voice's mean frames per sound and silence at each end;
generation lays out a sentence with it (`lm.conditioners.phonemizer.lay_out`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio
from tqdm.auto import tqdm

from lm.conditioners.phonemizer import LEAD, TRAIL, phoneme_ids, phoneme_units, starts_of_symbols

logger = logging.getLogger(__name__)

SILENCE = "<sil>"
PAUSES = ("|", "_")  # a clause break and espeak-ng's pause: may take no frames
N_MELS = 40
SHRINK_FRAMES = 20.0  # a voice's mean of a sound is shrunk towards all voices' as if from this many more frames


@dataclass
class SpeechItem:
    """What the aligner needs of an utterance: its frames (T, F), its sounds' labels and its voice."""

    features: np.ndarray
    labels: list[str]
    voice: str


@dataclass
class Alignment:
    """Where each `phoneme_ids` symbol of an utterance starts (frames) and the frame after its last sound."""

    starts: list[int]
    end: int

    @classmethod
    def from_path(cls, path: np.ndarray, phonemes: str) -> Alignment:
        """From a Viterbi path over [silence, sounds..., silence] (state per frame) and the phoneme string."""
        units = phoneme_units(phonemes)
        firsts: dict[int, int] = {}
        for t, state in enumerate(path.tolist()):
            firsts.setdefault(state, t)
        end = firsts.get(len(units) + 1, len(path))
        unit_starts, following = [0] * len(units), end
        for u in range(len(units) - 1, -1, -1):  # a skipped sound starts where the next one does
            following = firsts.get(u + 1, following)
            unit_starts[u] = following
        starts = starts_of_symbols(len(phoneme_ids(phonemes)), [first for _, first in units], unit_starts, end)
        return cls(starts, max(end, 1))


def item_labels(phonemes: str) -> list[str]:
    """The states an utterance is aligned through: a silence, its sounds, a silence."""
    return [SILENCE] + [label for label, _ in phoneme_units(phonemes)] + [SILENCE]


def _skippable(label: str) -> bool:
    return label == SILENCE or label.startswith(PAUSES)


def viterbi(cost: np.ndarray, skippable: np.ndarray) -> np.ndarray:
    """The cheapest left-to-right path through N states over T frames (cost (T, N)): it starts in state 0 or, if
    that is skippable, 1, moves on by one state a frame or jumps over a skippable state, and ends in the last state
    or, if that is skippable, the one before. Returns the state of each frame, int64 (T,)."""
    T, N = cost.shape
    if T < 1 or N < 1:
        raise ValueError(f"viterbi needs at least one frame and one state, got cost of shape {cost.shape}")
    best = np.full(N, np.inf)
    best[0] = cost[0, 0]
    if N > 1 and skippable[0]:
        best[1] = cost[0, 1]
    back = np.zeros((T, N), dtype=np.int8)  # 0 stay, 1 from the previous state, 2 over a skippable one
    jump = np.concatenate([[False, False], skippable[1:-1]]) if N > 2 else np.zeros(N, dtype=bool)
    columns = np.arange(N)
    for t in range(1, T):
        moves = np.full((3, N), np.inf)
        moves[0] = best
        moves[1, 1:] = best[:-1]
        moves[2, 2:] = np.where(jump[2:], best[:-2], np.inf)
        choice = moves.argmin(axis=0)
        back[t] = choice
        best = moves[choice, columns] + cost[t]
    state = N - 1
    if N > 1 and skippable[-1] and best[N - 2] < best[N - 1]:
        state = N - 2
    if not np.isfinite(best[state]):
        raise ValueError(f"{N} states do not fit in {T} frames: each sound needs a frame")
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    return path


def flat_start(frames: int, states: int) -> np.ndarray:
    """The first guess: the middle states spread evenly between a silence of up to 13 frames at each end."""
    edge = min(13, frames // 6)
    path = np.full(frames, states - 1, dtype=np.int64)
    path[:edge] = 0
    middle = np.arange(edge, frames - edge)
    inner = states - 2
    path[middle] = 1 + ((middle - edge + 0.5) * inner / max(len(middle), 1)).astype(np.int64)
    return path


class SoundAligner:
    """Each voice's mean frame of each sound (with all voices' as a prior) and each voice's frame normalisation."""

    def __init__(self, means: dict[str, np.ndarray], voice_sums: dict[tuple[str, str], tuple[np.ndarray, float]],
                 norms: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.means = means  # label -> mean frame over all voices
        self.voice_sums = voice_sums  # (voice, label) -> (sum of frames, count)
        self.norms = norms  # voice -> (mean, std) of its frames

    @classmethod
    def fit(cls, items: list[SpeechItem], iterations: int = 8, progress: bool = True
            ) -> tuple[SoundAligner, list[np.ndarray]]:
        """Fit on `items` from a flat start; returns the aligner and the items' final paths."""
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        norms = _voice_norms(items)
        feats = [_normalise(item, norms) for item in items]
        paths = [flat_start(len(f), len(item.labels)) for f, item in zip(feats, items)]
        aligner = cls({}, {}, norms)
        for round_ in tqdm(range(iterations), desc="aligning phonemes", disable=not progress):
            aligner = cls._estimate(feats, items, paths, norms)
            new = [aligner._path(f, item) for f, item in zip(feats, items)]
            moved = sum(int((a != b).sum()) for a, b in zip(new, paths)) / max(sum(len(p) for p in paths), 1)
            logger.info("alignment round %d: %.1f%% of the frames moved", round_ + 1, 100 * moved)
            paths = new
        return aligner, paths

    def align(self, items: list[SpeechItem]) -> list[np.ndarray]:
        """Paths of other items (e.g. held-out rows) under the fitted means; a voice not seen in fitting is
        normalised by its own frames and aligned with all voices' means."""
        norms = {**_voice_norms([item for item in items if item.voice not in self.norms]), **self.norms}
        return [self._path(_normalise(item, norms), item) for item in items]

    @classmethod
    def _estimate(cls, feats, items, paths, norms) -> SoundAligner:
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, float] = defaultdict(float)
        voice_sums: dict[tuple[str, str], np.ndarray] = {}
        voice_counts: dict[tuple[str, str], float] = defaultdict(float)
        for f, item, path in zip(feats, items, paths):
            for state, label in enumerate(item.labels):
                chosen = f[path == state]
                if not len(chosen):
                    continue
                total, key = chosen.sum(axis=0), (item.voice, label)
                sums[label] = sums.get(label, 0) + total
                counts[label] += len(chosen)
                voice_sums[key] = voice_sums.get(key, 0) + total
                voice_counts[key] += len(chosen)
        means = {label: sums[label] / counts[label] for label in sums}
        return cls(means, {key: (voice_sums[key], voice_counts[key]) for key in voice_sums}, norms)

    def _mean(self, voice: str, label: str, width: int) -> np.ndarray:
        prior = self.means.get(label)
        if prior is None:
            prior = np.zeros(width, dtype=np.float32)  # a sound never seen: the voice's average frame
        total, count = self.voice_sums.get((voice, label), (0.0, 0.0))
        return (total + SHRINK_FRAMES * prior) / (count + SHRINK_FRAMES)

    def _path(self, f: np.ndarray, item: SpeechItem) -> np.ndarray:
        means = np.stack([self._mean(item.voice, label, f.shape[1]) for label in item.labels])  # (N, F)
        cost = ((f[:, None, :] - means[None]) ** 2).sum(axis=-1)  # (T, N)
        return viterbi(cost, np.array([_skippable(label) for label in item.labels]))


def _voice_norms(items: list[SpeechItem]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    by_voice: dict[str, list[np.ndarray]] = defaultdict(list)
    for item in items:
        by_voice[item.voice].append(item.features)
    norms = {}
    for voice, frames in by_voice.items():
        stacked = np.concatenate(frames)
        norms[voice] = (stacked.mean(axis=0), stacked.std(axis=0) + 1e-4)
    return norms


def _normalise(item: SpeechItem, norms) -> np.ndarray:
    mean, std = norms[item.voice]
    return ((item.features - mean) / std).astype(np.float32)


# ----------------------------------------------------------------------------------------- frames of codes


class CodeFrames:
    """Log-mel frames of codes (K, T) -> (T, N_MELS): decoded by the codec, one frame per code frame."""

    def __init__(self, codec):
        self.codec = codec
        hop = round(codec.sample_rate / codec.frame_rate)
        self.mel = torchaudio.transforms.MelSpectrogram(codec.sample_rate, n_fft=max(4 * hop, 512), hop_length=hop,
                                                        n_mels=N_MELS, pad_mode="constant")

    @torch.inference_mode()
    def __call__(self, codes: np.ndarray) -> np.ndarray:
        frames = codes.shape[1]
        waveform = self.codec.decode(torch.as_tensor(codes, dtype=torch.long).unsqueeze(0))[0].mean(0)  # (samples,)
        mel = (self.mel(waveform) + 1e-5).log()[:, :frames]  # (N_MELS, T')
        if mel.shape[1] < frames:
            mel = torch.nn.functional.pad(mel, (0, frames - mel.shape[1]), mode="replicate")
        return mel.T.numpy().astype(np.float32)


def duration_table(alignments: list[Alignment], phonemes: list[str], voices: list[str],
                   frames: list[int]) -> dict[str, dict[str, float]]:
    """Each voice's mean frames per sound and its mean silence before the first sound (LEAD) and after the last
    (TRAIL); "" is all voices together (for a voice the LM has not heard, and a sound a voice never said)."""
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for alignment, text, voice, total in zip(alignments, phonemes, voices, frames):
        units = phoneme_units(text)
        bounds = [alignment.starts[first] for _, first in units] + [alignment.end]
        for voice_key in (voice, ""):
            table = sums[voice_key]
            if units:
                table[LEAD].append(bounds[0])
            table[TRAIL].append(total - alignment.end)
            for (label, _), start, stop in zip(units, bounds[:-1], bounds[1:]):
                if stop > start:  # a skipped pause says nothing about a pause's length
                    table[label].append(stop - start)
    return {voice: {label: round(float(np.mean(values)), 3) for label, values in sorted(table.items())}
            for voice, table in sorted(sums.items())}


# ----------------------------------------------------------------------------------------- LM examples


def align_examples(codec, train, held=None, iterations: int = 8, progress: bool = True):
    """Forced alignments of the speech rows of `train` (fitted on them) and `held` (`lm_data.LMExamples`, aligned
    with what `train` fitted). Returns (train alignments, held alignments, `duration_table` of train): lists with
    an `Alignment` per speech row and None for music, or for a row whose sounds outnumber its frames."""
    frames_of = CodeFrames(codec)
    fit = _speech_items(train, frames_of, progress)
    aligner, paths = SoundAligner.fit([item for _, _, item in fit], iterations, progress)
    aligned = _alignments(len(train), fit, paths)
    held_aligned = None
    if held is not None:
        other = _speech_items(held, frames_of, progress)
        held_aligned = _alignments(len(held), other, aligner.align([item for _, _, item in other]))
    table = duration_table([aligned[row] for row, _, _ in fit], [text for _, text, _ in fit],
                           [item.voice for _, _, item in fit], [int(train.frames[row]) for row, _, _ in fit])
    return aligned, held_aligned, table


def _speech_items(examples, frames_of: CodeFrames, progress: bool) -> list[tuple[int, str, SpeechItem]]:
    """(row, phonemes, item) of each speech example with at least one sound and no more sounds than frames."""
    from concurrent.futures import ThreadPoolExecutor

    from lm.conditioners.phonemizer import phonemize

    rows = [i for i, task in enumerate(examples.tasks) if task == "speech"]
    with ThreadPoolExecutor(max_workers=4) as pool:  # espeak-ng runs in its own process
        texts = list(pool.map(phonemize, [examples.transcript(i) for i in rows]))
    fits = [(row, text) for row, text in zip(rows, texts) if 0 < len(phoneme_units(text)) <= examples.frames[row]]
    return [(row, text, SpeechItem(frames_of(examples.codes(row)), item_labels(text), examples.voice_of[row] or ""))
            for row, text in tqdm(fits, desc="log-mel frames", disable=not progress)]


def _alignments(count: int, items: list[tuple[int, str, SpeechItem]], paths: list[np.ndarray]) -> list:
    aligned: list[Alignment | None] = [None] * count
    for (row, text, _), path in zip(items, paths):
        aligned[row] = Alignment.from_path(path, text)
    return aligned
