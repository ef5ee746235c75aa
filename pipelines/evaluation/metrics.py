"""Plain evaluation metrics on waveforms, transcripts and feature sets, each with its units stated.

Waveforms may be torch tensors or numpy arrays shaped `[N]` or `[C, N]` (channels, samples); where a metric is
defined on mono audio, channels are averaged first. Every function returns a Python float (or, for the
feature extractor, a numpy array; `phase_swap` builds an oracle waveform) and never keeps state between calls
beyond cached filter banks.

The Fréchet distance here is computed in a hand-crafted feature space (`audio_features`: log-mel and MFCC
statistics over 1 s windows), not in the embedding space of a pretrained network as FAD is: none is available
offline. It measures how far two sets of clips lie apart in spectral envelope and its short-term dynamics,
and its values are not comparable with published FAD figures.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torchaudio

from tokenizer.audio import resample
from tokenizer.extras import import_extra
from tokenizer.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss

ArrayLike = torch.Tensor | np.ndarray

PESQ_SAMPLE_RATE = 16000  # wideband PESQ (ITU-T P.862.2) is defined at 16 kHz
# audio_features: every clip is analysed at 16 kHz with 64 ms frames every 16 ms, in 1 s windows every 0.5 s.
FEATURE_SAMPLE_RATE = 16000
FEATURE_N_FFT = 1024
FEATURE_HOP = 256
FEATURE_N_MELS = 64
FEATURE_N_MFCC = 20
FEATURE_WINDOW_S = 1.0
FEATURE_WINDOW_HOP_S = 0.5
FEATURE_DIM = 2 * FEATURE_N_MELS + FEATURE_N_MFCC
# Tempo: candidates between these bpm, weighted by a log-normal prior (librosa's default: 120 bpm, 1 octave).
TEMPO_RANGE = (30.0, 300.0)
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0


# ---------------------------------------------------------------------------------------------------- helpers
def _as_tensor(x: ArrayLike, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a float waveform in [-1, 1], got dtype {x.dtype}; convert int16 PCM "
                         "with x / 32768 first")
    if x.dim() not in (1, 2):
        raise ValueError(f"{what} must be shaped [N] or [C, N], got shape {tuple(x.shape)}")
    return x.detach().to("cpu")


def _mono(x: ArrayLike, what: str) -> torch.Tensor:
    x = _as_tensor(x, what)
    return x.mean(dim=0) if x.dim() == 2 else x  # (N,)


def _pair(ref: ArrayLike, est: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    ref, est = _as_tensor(ref, "ref"), _as_tensor(est, "est")
    if ref.shape != est.shape:
        raise ValueError(f"ref and est must have the same shape, got {tuple(ref.shape)} and {tuple(est.shape)}; "
                         "cut or pad the estimate to the reference's length first")
    return ref, est


def _batched(x: torch.Tensor) -> torch.Tensor:
    return (x[None, None] if x.dim() == 1 else x[None]).float()  # (1, C, N)


# ---------------------------------------------------------------------------------------------- signal metrics
def si_sdr(ref: ArrayLike, est: ArrayLike) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019), higher is better.

    Both signals are made zero-mean; the target is the projection of `est` on `ref`, `t = a * ref` with
    `a = <est, ref> / ||ref||^2`, the distortion `e = est - t`; SI-SDR = `10 log10(||t||^2 / ||e||^2)`, computed in
    float64 and clipped to [-120, 120] dB (a signal against any scaled copy of itself gives 120). `[C, N]`
    inputs are treated as one signal (channels concatenated). NaN when `ref` is silent (undefined).
    """
    ref, est = _pair(ref, est)
    r = ref.double().flatten()
    e = est.double().flatten()
    r, e = r - r.mean(), e - e.mean()
    r_energy = torch.dot(r, r)
    if r_energy == 0:
        return float("nan")
    target = (torch.dot(e, r) / r_energy) * r
    t_energy = target.pow(2).sum()
    # the relative floor keeps round-off (~1e-16 per sample) from ranking perfect copies by their scale
    e_energy = (e - target).pow(2).sum() + 1e-12 * t_energy
    if t_energy == 0:
        return -120.0
    return float(torch.clamp(10.0 * torch.log10(t_energy / e_energy), -120.0, 120.0))


@lru_cache(maxsize=8)
def _mel_loss(sample_rate: int) -> MultiScaleMelLoss:
    with warnings.catch_warnings():  # the narrowest windows leave some mel filters empty at low rates: harmless
        warnings.simplefilter("ignore", UserWarning)
        return MultiScaleMelLoss(sample_rate).eval()


@lru_cache(maxsize=1)
def _stft_loss() -> MultiResolutionSTFTLoss:
    return MultiResolutionSTFTLoss().eval()


def mel_distance(ref: ArrayLike, est: ArrayLike, sample_rate: int) -> float:
    """Multi-scale log-mel L1 distance (DAC's "mel distance"), lower is better; 0 for identical signals.

    Settings (`tokenizer.losses.MultiScaleMelLoss`): windows of 32...2048 samples (hop = window / 4) with
    5...320 Slaney mel bands, magnitude spectra, `log10(max(mel, 1e-5) ** 2)`, mean absolute difference per
    scale, summed over the 7 scales. Units: log10 power, summed over scales. Level-sensitive. Needs more than
    1024 samples; `[C, N]` channels are compared channel by channel. Compare figures only at the same rate.
    """
    ref, est = _pair(ref, est)
    with torch.inference_mode():
        return float(_mel_loss(int(sample_rate))(_batched(est), _batched(ref)))


def stft_distance(ref: ArrayLike, est: ArrayLike) -> float:
    """Multi-resolution STFT distance (Parallel WaveGAN), lower is better; 0 for identical signals.

    Settings (`tokenizer.losses.MultiResolutionSTFTLoss`): FFT sizes 2048, 1024, 512 (Hann, hop = size / 4);
    per size, spectral convergence `||S_ref - S_est||_F / ||S_ref||_F` plus mean |log S_ref - log S_est|
    (natural log of magnitudes floored at ~ -70 dBFS), averaged over sizes. Dimensionless. Needs more than
    1024 samples.
    """
    ref, est = _pair(ref, est)
    with torch.inference_mode():
        return float(_stft_loss()(_batched(est), _batched(ref)))


ORACLE_N_FFT = 1024  # phase_swap's STFT: Hann, 1024 samples (43 ms at 24 kHz), hop 256
ORACLE_HOP = 256


def phase_swap(magnitude_from: ArrayLike, phase_from: ArrayLike) -> torch.Tensor:
    """The waveform whose STFT has `magnitude_from`'s magnitudes and `phase_from`'s phases (an oracle).

    Decoded audio given the reference's phase, or the reference given the decoded audio's phase, tells whether a
    codec loses more in its magnitudes or in its phases. Hann STFT of ORACLE_N_FFT samples, hop ORACLE_HOP, and its
    least-squares inverse: an STFT's magnitudes and phases are not independent, so the result is the signal whose
    STFT lies nearest the mix, not exactly the mix. `phase_swap(x, x)` returns x. Both inputs `[N]` or `[C, N]` of
    the same shape (channels handled one by one); returns a float32 tensor of that shape.
    """
    mag, phase = (_as_tensor(x, name).float() for x, name in ((magnitude_from, "magnitude_from"),
                                                                (phase_from, "phase_from")))
    if mag.shape != phase.shape:
        raise ValueError(f"phase_swap needs two waveforms of the same shape, got {tuple(mag.shape)} and "
                         f"{tuple(phase.shape)}")
    n = mag.shape[-1]
    if n <= ORACLE_N_FFT // 2:
        raise ValueError(f"phase_swap needs more than {ORACLE_N_FFT // 2} samples, got {n}")
    window = torch.hann_window(ORACLE_N_FFT)
    with torch.no_grad():  # not inference mode: the caller may use the waveform anywhere
        mag_spec, phase_spec = (torch.stft(x, ORACLE_N_FFT, ORACLE_HOP, window=window, return_complex=True)
                                for x in (mag, phase))
        spec = torch.polar(mag_spec.abs(), phase_spec.angle())
        return torch.istft(spec, ORACLE_N_FFT, ORACLE_HOP, window=window, length=n)


def harmonic_tone(f0: float, sample_rate: int, seconds: float = 2.0, harmonics: int = 19) -> torch.Tensor:
    """A steady harmonic tone FloatTensor[N]: partials k * f0 (k = 1..harmonics, those below Nyquist) of amplitude
    0.2 / k, zero phase. The probe of `harmonic_energy_fraction`."""
    t = torch.arange(round(seconds * sample_rate), dtype=torch.float64) / sample_rate
    ks = [k for k in range(1, harmonics + 1) if k * f0 < sample_rate / 2]
    return sum((0.2 / k) * torch.sin(2 * math.pi * k * f0 * t) for k in ks).float()


def harmonic_energy_fraction(wav: ArrayLike, sample_rate: int, f0: float, max_hz: float = 2000.0,
                             tolerance_hz: float = 3.0) -> float:
    """How much of a steady tone's energy lies on the harmonics of `f0`: 1.0 for the tone itself, near 0 when its
    pitch has moved. Of a mono signal of at least 1.5 s, the 1 s starting at 0.5 s (Hann window, 1 Hz bins) is
    analysed, and the energy below `max_hz` within `tolerance_hz` of some k * f0 is divided by all energy below
    `max_hz`. Dimensionless, 0-1.
    """
    x = _mono(wav, "wav").double()
    if x.numel() < round(1.5 * sample_rate):
        raise ValueError(f"harmonic_energy_fraction needs at least 1.5 s of audio, got {x.numel()} samples at "
                         f"{sample_rate} Hz")
    if not 0 < f0 < max_hz:
        raise ValueError(f"f0 must lie in (0, max_hz={max_hz}) Hz, got {f0!r}")
    start, n = sample_rate // 2, sample_rate
    power = torch.fft.rfft(x[start:start + n] * torch.hann_window(n, dtype=torch.float64)).abs().pow(2)
    freqs = torch.arange(power.numel(), dtype=torch.float64) * sample_rate / n
    below = freqs < max_hz
    nearest = (freqs / f0).round().clamp(min=1) * f0
    on = below & ((freqs - nearest).abs() <= tolerance_hz)
    total = power[below].sum()
    return float(power[on].sum() / total) if total > 0 else 0.0


def _to_16k_numpy(x: ArrayLike, sample_rate: int, what: str) -> np.ndarray:
    x = _mono(x, what).float()
    return resample(x, int(sample_rate), PESQ_SAMPLE_RATE).double().numpy()


def pesq_wb(ref: ArrayLike, est: ArrayLike, sample_rate: int) -> float:
    """Wideband PESQ (ITU-T P.862.2, MOS-LQO from about 1.04 to 4.64), higher is better.

    Both signals are down-mixed to mono and resampled to 16 kHz first (sinc resampler). Returns NaN when PESQ
    finds no speech in the reference (silence, or a clip too short for its level alignment): average with
    `np.nanmean` and report how many clips were scored.
    """
    pesq_module = import_extra("pesq", "eval", "PESQ")
    NoUtterancesError, pesq = pesq_module.NoUtterancesError, pesq_module.pesq

    ref, est = _pair(ref, est)
    r = _to_16k_numpy(ref, sample_rate, "ref")
    e = _to_16k_numpy(est, sample_rate, "est")
    try:
        return float(pesq(PESQ_SAMPLE_RATE, r, e, "wb"))
    except NoUtterancesError:
        return float("nan")


def stoi(ref: ArrayLike, est: ArrayLike, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (Taal et al., 2011) in [0, 1] (~0.4-1 in practice), higher is better.

    Mono (channels averaged); `pystoi` resamples to its own 10 kHz internally. `extended=True` gives ESTOI.
    Silent frames of the reference (40 dB below its loudest) are dropped first, as the standard does.
    """
    _stoi = import_extra("pystoi", "eval", "STOI").stoi

    ref, est = _pair(ref, est)
    r = _mono(ref, "ref").double().numpy()
    e = _mono(est, "est").double().numpy()
    return float(_stoi(r, e, int(sample_rate), extended=extended))


# ---------------------------------------------------------------------------------------------------------- WER
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")  # anything but letters, digits, apostrophes and spaces
_EDGE_APOSTROPHES = re.compile(r"(?<![a-z0-9])'|'(?![a-z0-9])")  # quotes, not the ' inside "don't"


def normalize_text(text: str) -> str:
    """The text normalisation of `wer`: lowercase, punctuation (hyphens too) to spaces, numbers left as written.

    Apostrophes inside words are kept ("don't", "o'clock"), quote marks around words are dropped, whitespace
    is collapsed. "Well-known, isn't it?" -> "well known isn't it".
    """
    text = text.lower().translate(_APOSTROPHES)
    text = _NOT_WORD.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return " ".join(text.split())


def wer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """Corpus word error rate: (substitutions + deletions + insertions) / reference words, after `normalize_text`.

    `refs` and `hyps` are one string each or equal-length lists (one pair per utterance); errors are summed
    over all utterances before dividing, so long sentences weigh more. 0 is perfect; an empty hypothesis gives
    1; insertions can push it above 1. Raises ValueError if a reference is empty after normalisation.
    """
    return float(_align_words(refs, hyps, "wer").wer)


def word_recall(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """Share of the reference words that the hypotheses get right: hits / reference words, summed over utterances.

    The same alignment as `wer` (after `normalize_text`), but blind to insertions: where WER reaches or passes 1
    (babble, or silence), it still tells a model that says some of the right words from one that says none.
    1 is every word found; an empty hypothesis gives 0. Raises ValueError as `wer` does.
    """
    out = _align_words(refs, hyps, "word_recall")
    return float(out.hits / (out.hits + out.substitutions + out.deletions))


def word_hits(refs: Sequence[str], hyps: Sequence[str]) -> list[tuple[int, int]]:
    """Per utterance, `(words found, reference words)`, aligned as `word_recall` aligns them.

    Summed over utterances, hits over words is `word_recall(refs, hyps)`; kept apart, they let a comparison resample
    whole sentences. Raises ValueError as `wer` does.
    """
    out = _align_words(refs, hyps, "word_hits")  # one alignment; its chunks are per utterance
    return [(sum(c.ref_end_idx - c.ref_start_idx for c in chunks if c.type == "equal"), len(ref))
            for ref, chunks in zip(out.references, out.alignments)]


def _align_words(refs: str | Sequence[str], hyps: str | Sequence[str], metric: str):
    """jiwer's word alignment of normalised references and hypotheses, after checking they pair up."""
    jiwer = import_extra("jiwer", "eval", "word error rates")

    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"{metric} needs as many hypotheses as references (at least one), got {len(refs)} and "
                         f"{len(hyps)}")
    refs = [normalize_text(r) for r in refs]
    hyps = [normalize_text(h) for h in hyps]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise ValueError(f"references {empty[:5]} have no words after normalisation; {metric} is undefined for them")
    return jiwer.process_words(refs, hyps)


# --------------------------------------------------------------------------------------------- Fréchet distance
def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets `[N_a, D]` and `[N_b, D]`, in feature units².

    `||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))` with unbiased covariances, in float64. The matrix
    square root's trace is taken as `Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))`, both symmetric positive semi-definite,
    through eigendecompositions with negative round-off eigenvalues clipped to 0: stable where scipy's `sqrtm`
    of the non-symmetric product returns complex values for rank-deficient covariances (fewer rows than D).
    Like FAD, the estimate is biased upwards for small sets: compare figures made with the same set sizes.
    """
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got shapes {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each feature set needs at least 2 rows to estimate a covariance, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature sets contain NaN or infinite values")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sqrt_a = _sqrtm_psd(cov_a)
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(value, 0.0)  # round-off can leave ~-1e-12 for identical sets


def _sqrtm_psd(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


# ------------------------------------------------------------------------------------------------- feature set
@lru_cache(maxsize=1)
def _feature_transforms() -> tuple[torchaudio.transforms.MelSpectrogram, torch.Tensor]:
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=FEATURE_SAMPLE_RATE, n_fft=FEATURE_N_FFT, hop_length=FEATURE_HOP, n_mels=FEATURE_N_MELS,
        f_min=20.0, f_max=FEATURE_SAMPLE_RATE / 2, power=2.0, norm="slaney", mel_scale="slaney")
    dct = torchaudio.functional.create_dct(FEATURE_N_MFCC, FEATURE_N_MELS, norm="ortho")  # (n_mels, n_mfcc)
    return mel, dct


def log_mel_frames(wav: ArrayLike, sample_rate: int) -> torch.Tensor:
    """Log-mel spectrogram of `audio_features`: FloatTensor[frames, 64] in dB (10 log10 power, floored at -100).

    Mono (channels averaged), resampled to 16 kHz, 1024-sample Hann frames every 256 samples (16 ms), 64 Slaney
    mel bands from 20 Hz to 8 kHz. Absolute level is kept (no per-clip normalisation).
    """
    x = _mono(wav, "wav").float()
    x = resample(x, int(sample_rate), FEATURE_SAMPLE_RATE)
    mel, _ = _feature_transforms()
    with torch.inference_mode():
        spec = mel(x)  # (n_mels, frames)
    return (10.0 * torch.log10(spec.clamp(min=1e-10))).T.contiguous()  # (frames, n_mels)


def audio_features(wav: ArrayLike, sample_rate: int) -> np.ndarray:
    """The fixed, hand-crafted feature set of the music metrics: float32 array `[W, 148]`, one row per window.

    Windows of 1 s every 0.5 s (a clip shorter than 1 s gives one window of all of it). Per window, from the
    `log_mel_frames` (dB) it covers: the mean (64) and standard deviation (64) over frames of each mel band,
    and the standard deviation over frames of the first differences of 20 MFCCs (DCT-II of the log-mel
    frames; 20): spectral envelope, its spread, and how fast the timbre changes. Not learned; no pretrained
    network is involved. Raises ValueError for clips shorter than 0.1 s.
    """
    frames = log_mel_frames(wav, sample_rate)  # (F, n_mels)
    if frames.shape[0] < 8:
        raise ValueError(f"audio_features needs at least 0.1 s of audio, got {frames.shape[0]} frames of 16 ms")
    _, dct = _feature_transforms()
    win = round(FEATURE_WINDOW_S * FEATURE_SAMPLE_RATE / FEATURE_HOP)
    hop = round(FEATURE_WINDOW_HOP_S * FEATURE_SAMPLE_RATE / FEATURE_HOP)
    starts = range(0, max(1, frames.shape[0] - win + 1), hop)
    rows = []
    for s in starts:
        w = frames[s: s + win]  # (frames, n_mels)
        delta_mfcc = (w @ dct).diff(dim=0)  # (frames - 1, n_mfcc)
        rows.append(torch.cat([w.mean(0), w.std(0), delta_mfcc.std(0)]))
    return torch.stack(rows).numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------------- tempo
def onset_strength(wav: ArrayLike, sample_rate: int, hop_s: float = 0.005) -> tuple[np.ndarray, float]:
    """Onset-strength envelope by spectral flux: (envelope[frames], frames per second).

    Mono; Hann frames of the smallest power of two of samples that spans 46 ms (1024 at 16-22.05 kHz, 2048 at
    24-44.1 kHz) every `hop_s` seconds; 64-band log-mel (30 Hz - 8 kHz) (dB, floored 80 dB below the clip's
    loudest bin); the flux of a frame is the mean over bands of the positive change from the previous frame.
    """
    x = _mono(wav, "wav").float()
    sr = int(sample_rate)
    n_fft = 1 << max(8, math.ceil(math.log2(0.046 * sr)))
    hop = max(1, round(hop_s * sr))
    mel = _tempo_mel(sr, n_fft, hop)
    with torch.inference_mode():
        db = 10.0 * torch.log10(mel(x).clamp(min=1e-10))  # (n_mels, frames)
    db = db.clamp(min=float(db.max()) - 80.0)
    flux = db.diff(dim=1).clamp(min=0.0).mean(dim=0)
    return torch.cat([flux.new_zeros(1), flux]).double().numpy(), sr / hop


@lru_cache(maxsize=8)
def _tempo_mel(sample_rate: int, n_fft: int, hop: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=64, f_min=30.0, f_max=min(8000.0, sample_rate / 2),
        power=2.0)


def tempogram_scores(wav: ArrayLike, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The global autocorrelation tempogram behind `estimate_tempo`: (bpm grid, prior-weighted score per bpm).

    The onset envelope (mean removed) is autocorrelated over the whole clip, normalised to 1 at lag 0, and read
    at the lag of each candidate tempo (30-300 bpm in steps of 0.25%) by linear interpolation. Each candidate's
    score adds half the autocorrelation at twice its period, so that a beat whose bars also repeat beats its
    own subdivisions, and is weighted by a log-normal prior (120 bpm, one octave).
    """
    env, fps = onset_strength(wav, sample_rate)
    env = env - env.mean()
    n = len(env)
    if n < 4 or not np.any(env):
        raise ValueError("estimate_tempo needs a non-silent clip of at least a few tenths of a second")
    spec = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac = ac / ac[0]
    bpm = TEMPO_RANGE[0] * np.power(1.0025, np.arange(int(np.log(TEMPO_RANGE[1] / TEMPO_RANGE[0]) / np.log(1.0025)) + 1))
    lag = 60.0 * fps / bpm
    at = np.interp(lag, np.arange(n), ac, right=0.0)
    at2 = np.interp(2 * lag, np.arange(n), ac, right=0.0)
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    return bpm, (np.clip(at, 0, None) + 0.5 * np.clip(at2, 0, None)) * prior


def estimate_tempo(wav: ArrayLike, sample_rate: int) -> float:
    """Global tempo of a clip in beats per minute (30-300), from a spectral-flux onset envelope.

    See `tempogram_scores`. The peak is refined by a parabola through its neighbours. Like every tempo
    estimator it can be off by a factor of 2 or 3 (counting eighth notes, or bars); `tempo_errors` reports
    exact and octave-tolerant accuracy separately. Raises ValueError for silence.
    """
    bpm, score = tempogram_scores(wav, sample_rate)
    i = int(np.argmax(score))
    if 0 < i < len(score) - 1:
        a, b, c = score[i - 1], score[i], score[i + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float(bpm[i] * 1.0025 ** shift)
    return float(bpm[i])



def tempo_or_none(wav: ArrayLike, sample_rate: int) -> float | None:
    """`estimate_tempo`, or None where a clip has no onsets (silence, a constant signal): no tempo to measure."""
    try:
        return estimate_tempo(wav, sample_rate)
    except ValueError:
        return None

# Factors of the octave-tolerant tempo accuracy ("Accuracy 2" of Gouyon et al., 2006).
TEMPO_FACTORS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


def tempo_errors(estimated: Sequence[float], requested: Sequence[float], tolerance: float = 0.08) -> dict:
    """Tempo accuracy of estimates against requested/true tempi (bpm), as fractions of clips.

    Returns `relative_error_mean` and `_median` (|est - req| / req), `within` (share with relative error <=
    `tolerance`), and `within_octave` (the same, allowing the estimate to be 2, 1/2, 3 or 1/3 times the
    request: "Accuracy 2"), plus `tolerance` and `n`.
    """
    est = np.asarray(estimated, dtype=np.float64)
    req = np.asarray(requested, dtype=np.float64)
    if est.shape != req.shape or est.ndim != 1 or len(est) == 0:
        raise ValueError(f"need equal-length, non-empty lists of tempi, got {est.shape} and {req.shape}")
    if np.any(req <= 0):
        raise ValueError("requested tempi must be positive bpm")
    rel = np.abs(est - req) / req
    rel_any = np.min([np.abs(est - f * req) / (f * req) for f in TEMPO_FACTORS], axis=0)
    return {"n": int(len(est)), "tolerance": tolerance, "relative_error_mean": float(rel.mean()),
            "relative_error_median": float(np.median(rel)), "within": float(tempo_within(est, req, tolerance).mean()),
            "within_octave": float((rel_any <= tolerance).mean())}


def tempo_within(estimated: float | Sequence[float] | np.ndarray, requested: float | Sequence[float] | np.ndarray,
                 tolerance: float = 0.08) -> np.ndarray:
    """Per item, whether the estimated tempo lies within `tolerance` (relative) of the requested one: what
    `tempo_errors` counts as `within`."""
    est, req = np.asarray(estimated, dtype=np.float64), np.asarray(requested, dtype=np.float64)
    return np.abs(est - req) / req <= tolerance
