"""Music evaluation: does a clip play the requested instrument family at the requested tempo, and how far do
generated clips lie from real renders.

- `FamilyClassifier`: a small MLP over the fixed `audio_features` (1 s windows, averaged over a clip's windows),
  trained by `train_family_classifier` on the recipe's *train* clips only (FluidR3 SoundFont), never on
  generations, and scored on the test split (TimGM6mb: other timbres). A second timbre set for training, from
  re-rendering the train MIDI with another SoundFont (`CLASSIFIER_SOUNDFONTS`, never the test one), is what lets
  it recognise a family in timbres it was not trained on. Saved as config.json + model.safetensors.
- `evaluate_music`: for generated clips with the caption metadata they were asked for (`family`, `tempo`):
  requested-family accuracy by the classifier, tempo accuracy of `estimate_tempo` (exact and octave-tolerant),
  and the Fréchet distance between the generated and the reference clips' feature windows.
- `evaluate_music_generation`: the same for a `generate_fn(captions) -> [(wav, sr)]` over held-out captions.
- `evaluate_music_references`: the figures of real held-out renders standing in for generations (the upper
  bound a generator can reach under these measures), and two reference Fréchet distances.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from lm import AudioLM
from lm.codec_interface import AudioTokenizer
from tokenizer.extras import import_extra

from .data import check_count, check_opus_kbps, describe, iter_audio, load_split, opus_roundtrip, write_report
from .metrics import (FEATURE_DIM, FEATURE_N_MELS, FEATURE_SAMPLE_RATE, audio_features,
                      estimate_tempo, frechet_distance, tempo_errors)

FEATURES_VERSION = "logmel64-mean-std+dmfcc20-std/1s@16k"  # bump when audio_features changes
# Extra SoundFonts to re-render the train MIDI with (Debian csound-soundfont, 4 MB). One timbre set alone teaches the
# classifier FluidR3's samples rather than the families: with this one added, held-out (TimGM6mb) accuracy rose
# from 0.507 to 0.727 on the 4 h recipe (150 test clips).
CLASSIFIER_SOUNDFONTS = (Path("/usr/share/sounds/sf2/sf_GMbank.sf2"),)
_RENDER_MAX_SECONDS = 15.0  # as the music recipe: notes end by 13 s, the tail is cut at 15 s
Generated = tuple[torch.Tensor, int, Mapping[str, Any]]  # (wav [C, N] or [N], sample rate in Hz, caption metadata)


@dataclass
class FamilyClassifierConfig:
    families: list[str]  # class names, in logit order
    hidden: int = 256  # 0: logistic regression
    dropout: float = 0.2
    feature_dim: int = FEATURE_DIM
    features: str = FEATURES_VERSION
    heldout: dict[str, Any] = field(default_factory=dict)  # accuracy on the test split when trained
    soundfonts: list[str] = field(default_factory=list)  # file names of the extra SoundFonts it was trained on

    def __post_init__(self) -> None:
        if len(self.families) < 2 or len(set(self.families)) != len(self.families):
            raise ValueError(f"a classifier needs at least 2 distinct families, got {self.families}")
        if self.hidden < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hidden must be >= 0 and dropout in [0, 1), got {self.hidden} and {self.dropout}")


class FamilyClassifier(nn.Module):
    """Standardised `audio_features` windows [W, D] -> family logits [W, F]; a clip's prediction averages the
    log-probabilities of its windows."""

    def __init__(self, config: FamilyClassifierConfig):
        super().__init__()
        self.config = config
        d, f = config.feature_dim, len(config.families)
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        if config.hidden:
            self.net = nn.Sequential(nn.Dropout(config.dropout / 2), nn.Linear(d, config.hidden), nn.GELU(),
                                     nn.Dropout(config.dropout), nn.Linear(config.hidden, f))
        else:
            self.net = nn.Sequential(nn.Linear(d, f))

    @property
    def families(self) -> list[str]:
        return list(self.config.families)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """FloatTensor[W, D] of `audio_features` -> logits [W, F]."""
        return self.net((feats - self.feature_mean) / self.feature_std)

    @torch.inference_mode()
    def clip_log_probs(self, feats: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Log-probabilities [F] of one clip from its feature windows [W, D] (mean of window log-probs, renormalised)."""
        self.eval()
        logp = self(torch.as_tensor(np.asarray(feats), dtype=torch.float32)).log_softmax(-1).mean(0)
        return logp.log_softmax(-1)

    def predict(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        """The family of a clip, FloatTensor[C, N] or [N] at `sample_rate` Hz."""
        return self.families[int(self.clip_log_probs(audio_features(wav, sample_rate)).argmax())]

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` and `model.safetensors` into `directory` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "FamilyClassifier":
        """Load a folder written by `save_pretrained`, in eval mode."""
        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(f"{str(directory)!r} holds no family classifier (config.json + model.safetensors); "
                                    "train one with train_family_classifier / `rvqaudio train-music-classifier`")
        try:
            config = FamilyClassifierConfig(**json.loads((directory / "config.json").read_text()))
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"config.json in {str(directory)!r} is not a family classifier config: {e}") from e
        if config.features != FEATURES_VERSION:
            raise ValueError(f"the classifier in {str(directory)!r} was trained on features {config.features!r}, "
                             f"this version computes {FEATURES_VERSION!r}: retrain it")
        model = cls(config)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        return model.eval()


def clip_features(data: str | os.PathLike | Dataset | DatasetDict, split: str, max_clips: int | None = None,
                  progress: bool = True) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """`audio_features` of each clip of a split ([W, D] each) and its other columns (the `midi` column dropped)."""
    ds = load_split(data, split)
    if "midi" in ds.column_names:
        ds = ds.remove_columns("midi")
    feats, rows = [], []
    total = len(ds) if max_clips is None else min(len(ds), max_clips)
    for wav, sr, row in tqdm(iter_audio(ds, max_clips), total=total, desc=f"features {split}", disable=not progress,
                             unit="clip"):
        feats.append(audio_features(wav, sr))
        rows.append(row)
    return feats, rows


def soundfont_features(data: str | os.PathLike | Dataset | DatasetDict, split: str,
                       soundfont: str | os.PathLike, max_clips: int | None = None, seed: int = 0,
                       progress: bool = True) -> list[np.ndarray]:
    """`audio_features` ([W, D] each) of a split's clips re-rendered from their `midi` column with `soundfont`.

    The same music in other timbres: mono at 16 kHz, peak-normalised to a random -6..-1 dB as the recipe does
    (seeded by `seed`). Needs libfluidsynth; raises FileNotFoundError for a missing SoundFont and ValueError for a
    split without a `midi` column.
    """
    import io

    mido = import_extra("mido", "data", "rendering held-out MIDI")

    from ..data.soundfont import render_midi

    _require_soundfont(soundfont)
    midis = _midi_column(load_split(data, split), split)
    n = len(midis) if max_clips is None else min(len(midis), max_clips)
    rng = np.random.default_rng(seed)
    feats = []
    for i in tqdm(range(n), desc=f"render {split} with {Path(soundfont).name}", disable=not progress, unit="clip"):
        wav = render_midi(mido.MidiFile(file=io.BytesIO(midis[i]["midi"])), str(soundfont), FEATURE_SAMPLE_RATE,
                          max_seconds=_RENDER_MAX_SECONDS).mean(axis=0)  # (N,) mono
        wav *= 10.0 ** (rng.uniform(-6.0, -1.0) / 20.0) / max(float(np.abs(wav).max()), 1e-9)
        feats.append(audio_features(wav, FEATURE_SAMPLE_RATE))
    return feats


def _midi_column(ds: Dataset, split: str) -> Dataset:
    if "midi" not in ds.column_names:
        raise ValueError(f"split {split!r} has no `midi` column to re-render with other SoundFonts (columns: "
                         f"{ds.column_names}); a music recipe dataset has one, otherwise pass soundfonts=()")
    return ds.select_columns(["midi"])


def _require_soundfont(soundfont: str | os.PathLike) -> None:
    if not Path(soundfont).is_file():
        raise FileNotFoundError(f"SoundFont {str(soundfont)!r} does not exist; install it (sf_GMbank.sf2: sudo apt-get "
                                "install --no-install-recommends csound-soundfont), or pass other soundfonts, or none")


def train_family_classifier(
    data: str | os.PathLike | Dataset | DatasetDict,
    output: str | os.PathLike | None = None,
    split: str = "train",
    test_split: str | None = "test",
    hidden: int = 256,
    epochs: int = 300,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    gain_db: float = 6.0,
    soundfonts: Sequence[str | os.PathLike] = CLASSIFIER_SOUNDFONTS,
    seed: int = 0,
    max_clips: int | None = None,
    progress: bool = True,
) -> FamilyClassifier:
    """Train a `FamilyClassifier` on the rendered clips of `split` (the `family` column is the label).

    The clips as stored, and the same clips re-rendered from their MIDI with each of `soundfonts`
    (`soundfont_features`; `()` for the stored clips only): with one timbre set, the classifier learns that
    SoundFont's samples, not the families. A SoundFont that renders `test_split` is refused (its timbres are
    what the held-out accuracy tests). Full-batch AdamW on every 1 s feature window of every clip,
    cross-entropy weighted by inverse class frequency (so that rare families count), with a random gain of up
    to +-`gain_db` dB per window (added to the log-mel means: the level of a generation is not its family).
    When `test_split` exists, the held-out clip accuracy is measured on its stored clips and kept in
    `config.heldout` (see `evaluate_family_classifier`). Saved to `output` when given. Same `seed`, same
    classifier.
    """
    for sf in soundfonts:
        _require_soundfont(sf)
    if soundfonts:
        _midi_column(load_split(data, split), split)
    has_test = test_split is not None and _has_split(data, test_split)
    if soundfonts and has_test:
        test = load_split(data, test_split)
        held = set(test.unique("soundfont")) if "soundfont" in test.column_names else set()
        leaks = [str(sf) for sf in soundfonts if Path(sf).resolve().name in held or Path(sf).name in held]
        if leaks:
            raise ValueError(f"SoundFont(s) {leaks} render the {test_split!r} split: training on them would leak the "
                             "held-out timbres; pass other soundfonts")
    feats, rows = clip_features(data, split, max_clips, progress)
    families = sorted({r["family"] for r in rows})
    if len(families) < 2:
        raise ValueError(f"split {split!r} has clips of {len(families)} family ({families}); need at least 2")
    for k, sf in enumerate(soundfonts):
        feats += soundfont_features(data, split, sf, max_clips, seed=seed + k, progress=progress)
    rows = rows * (1 + len(soundfonts))  # the re-rendered clips keep their rows' labels, in the same order
    index = {f: i for i, f in enumerate(families)}
    x = torch.from_numpy(np.concatenate(feats))  # (windows, D)
    y = torch.tensor([index[r["family"]] for r, f in zip(rows, feats) for _ in range(len(f))])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FamilyClassifier(FamilyClassifierConfig(families=families, hidden=hidden,
                                                    soundfonts=[Path(sf).name for sf in soundfonts]))
    model.feature_mean.copy_(x.mean(0))
    model.feature_std.copy_(x.std(0).clamp(min=1e-3))
    counts = torch.bincount(y, minlength=len(families)).float()
    weight = counts.sum() / (len(families) * counts.clamp(min=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    model.train()
    for _ in tqdm(range(epochs), desc="family classifier", disable=not progress, unit="epoch"):
        gain = (torch.rand(len(x), 1, generator=generator) * 2 - 1) * gain_db
        xb = x.clone()
        xb[:, :FEATURE_N_MELS] += gain  # the log-mel means are the first block of audio_features
        loss = nn.functional.cross_entropy(model(xb), y, weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    if has_test:
        model.config.heldout = evaluate_family_classifier(model, data, test_split, progress=progress)
    if output is not None:
        model.save_pretrained(output)
    return model


def evaluate_family_classifier(classifier: FamilyClassifier, data: str | os.PathLike | Dataset | DatasetDict,
                               split: str = "test", max_clips: int | None = None, progress: bool = True) -> dict:
    """Clip accuracy of `classifier` on the real clips of `split`: `accuracy`, `balanced_accuracy` (mean of
    per-family recalls, over families present), `per_family` {family: [correct, clips]}, `n`, `split`.
    Clips of families the classifier does not know count as errors."""
    feats, rows = clip_features(data, split, max_clips, progress)
    predicted = [classifier.families[int(classifier.clip_log_probs(f).argmax())] for f in feats]
    return _family_scores(predicted, [r["family"] for r in rows]) | {"split": split}


def _family_scores(predicted: Sequence[str], requested: Sequence[str]) -> dict[str, Any]:
    per: dict[str, list[int]] = {}
    for p, r in zip(predicted, requested):
        per.setdefault(r, [0, 0])
        per[r][0] += int(p == r)
        per[r][1] += 1
    n = len(requested)
    return {"n": n, "accuracy": sum(c for c, _ in per.values()) / n if n else float("nan"),
            "balanced_accuracy": float(np.mean([c / t for c, t in per.values()])) if n else float("nan"),
            "per_family": dict(sorted(per.items()))}


def _has_split(data, split: str) -> bool:
    if isinstance(data, DatasetDict):
        return split in data
    if isinstance(data, (str, os.PathLike)):
        return (Path(data) / split).is_dir()
    return False


# ------------------------------------------------------------------------------------------- generated music
MIN_CLIP_SECONDS = 0.2  # a shorter clip (an LM that ended almost at once) has no features or tempo to measure


def evaluate_music(
    generated: Sequence[Generated],
    reference: str | os.PathLike | Dataset | DatasetDict | Sequence[np.ndarray],
    classifier: FamilyClassifier | str | os.PathLike,
    reference_split: str = "test",
    max_reference: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score generated clips against what their captions asked for, and against real reference clips.

    Args:
        generated: `(wav FloatTensor[C, N] or [N], sample_rate Hz, meta)` per clip; `meta` holds the requested
            `family` (GM family name, as the recipe's `family` column) and `tempo` (bpm), e.g. the dataset row
            whose caption was generated from.
        reference: the real clips for the Fréchet distance: a dataset (folder) and `reference_split`, or a list
            of `audio_features` arrays already computed.
        classifier: a `FamilyClassifier` or its folder.

    Returns `n`, `family` (accuracy of the classifier's prediction against the requested family, per family),
    `tempo` (`tempo_errors`: mean/median relative error, share within 8%, and octave-tolerant share, plus
    `unmeasured`), `frechet_distance` (generated vs reference feature windows, in audio_features units²; None
    with fewer than 2 generated windows), `windows` (counts behind it), `unscorable` and `items` (per clip:
    seconds, requested/predicted family, requested/estimated tempo).

    A clip shorter than `MIN_CLIP_SECONDS` is unscorable: it counts as a wrong family and a missed tempo and
    adds no windows to the Fréchet distance. A clip with no onsets (silence) has no tempo: its estimate is
    None, counted as 0 bpm (relative error 1, never within tolerance; `tempo.unmeasured` counts both cases).
    """
    if not generated:
        raise ValueError("evaluate_music needs at least one generated clip")
    if not isinstance(classifier, FamilyClassifier):
        classifier = FamilyClassifier.from_pretrained(classifier)
    if isinstance(reference, (str, os.PathLike, Dataset, DatasetDict)):
        ref_feats, _ = clip_features(reference, reference_split, max_reference, progress)
    else:
        ref_feats = list(reference)
    items, gen_feats = [], []
    for wav, sr, meta in tqdm(generated, desc="evaluate music", disable=not progress, unit="clip"):
        for key in ("family", "tempo"):
            if key not in meta:
                raise ValueError(f"each generated clip's metadata needs {key!r} (what was requested); got {sorted(meta)}")
        seconds = wav.shape[-1] / sr
        f = audio_features(wav, sr) if seconds >= MIN_CLIP_SECONDS else None
        if f is not None:
            gen_feats.append(f)
        items.append({"text": meta.get("text"), "seconds": seconds, "requested_family": meta["family"],
                      "predicted_family": None if f is None else
                      classifier.families[int(classifier.clip_log_probs(f).argmax())],
                      "requested_tempo": float(meta["tempo"]),
                      "estimated_tempo": None if f is None else _tempo_or_none(wav, sr)})
    ref_all = np.concatenate(ref_feats)
    gen_all = np.concatenate(gen_feats) if gen_feats else np.zeros((0, ref_all.shape[1]), np.float32)
    estimated = [0.0 if i["estimated_tempo"] is None else i["estimated_tempo"] for i in items]
    return {
        "n": len(items),
        "family": _family_scores([i["predicted_family"] for i in items], [i["requested_family"] for i in items]),
        "tempo": tempo_errors(estimated, [i["requested_tempo"] for i in items])
        | {"unmeasured": sum(i["estimated_tempo"] is None for i in items)},
        "frechet_distance": frechet_distance(gen_all, ref_all) if len(gen_all) >= 2 else None,
        "windows": {"generated": len(gen_all), "reference": len(ref_all)},
        "unscorable": len(items) - len(gen_feats),
        "items": items,
    }


def _tempo_or_none(wav: torch.Tensor | np.ndarray, sample_rate: int) -> float | None:
    try:
        return estimate_tempo(wav, sample_rate)
    except ValueError:  # no onsets (silence, or a constant signal): there is no tempo to measure
        return None


def evaluate_music_generation(
    generate_fn: Callable[[list[str]], list[tuple[torch.Tensor, int]]],
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 8,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate music for the held-out captions of `data[split]` and score it with `evaluate_music`.

    `generate_fn(captions)` returns one `(wav FloatTensor[C, N], sample_rate Hz)` per caption, in order; it is
    called with up to `batch_size` captions at a time. Each generation is judged against the family and tempo
    its caption's row states, and the Fréchet distance is to the real renders of the same captions. Written
    as JSON to `output` when given.
    """
    ds = load_split(data, split)
    ds = ds.remove_columns([c for c in ("audio", "midi") if c in ds.column_names])
    n = len(ds) if max_items is None else min(len(ds), max_items)
    rows = [ds[i] for i in range(n)]
    if n == 0:
        raise ValueError(f"split {split!r} is empty")
    generated: list[Generated] = []
    with tqdm(total=n, desc="generate", disable=not progress, unit="clip") as bar:
        for start in range(0, n, batch_size):
            batch = rows[start: start + batch_size]
            outs = generate_fn([r["text"] for r in batch])
            if len(outs) != len(batch):
                raise ValueError(f"generate_fn returned {len(outs)} clips for {len(batch)} captions")
            generated += [(wav, sr, row) for (wav, sr), row in zip(outs, batch)]
            bar.update(len(batch))
    report = evaluate_music(generated, data, classifier, reference_split=split, max_reference=n, progress=progress)
    write_report(output, report)
    return report


def evaluate_music_references(
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    split: str = "test",
    max_clips: int | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    codec: AudioTokenizer | None = None,
    opus_kbps: float | None = None,
) -> dict[str, Any]:
    """The music measures on real held-out renders standing in for generations: the ceiling a generator can reach.

    Returns `evaluate_music` figures for the clips of `split` judged against their own metadata (classifier
    accuracy and tempo-estimator accuracy on real music), with two Fréchet distances in place of the trivial 0:
    `frechet_distance_halves` (even vs odd clips of `split`: the sampling floor at half the set size) and
    `frechet_distance_train` (`split` vs as many clips of "train", another SoundFont; absent without a train
    split). With a `codec`, `through_codec` holds the same measures for the renders after a round trip through it
    (encode, decode with every codebook), its Fréchet distance against the renders themselves: the ceiling of an LM
    that speaks that codec's codes, since whatever the codec loses no LM can put back. With `opus_kbps`,
    `through_opus` holds them for the renders after a round trip through Opus (ffmpeg's libopus) at that bitrate,
    with `kbps` (the requested and the measured one, container included): the classical codec to read the codec's
    row against. Written as JSON to `output` when given.
    """
    if opus_kbps is not None:
        (opus_kbps,) = check_opus_kbps([opus_kbps])
    if not isinstance(classifier, FamilyClassifier):
        classifier = FamilyClassifier.from_pretrained(classifier)
    ds = load_split(data, split)
    if "midi" in ds.column_names:
        ds = ds.remove_columns("midi")
    generated = [(wav, sr, row) for wav, sr, row in iter_audio(ds, max_clips)]
    if len(generated) < 4:
        raise ValueError(f"split {split!r} has {len(generated)} clips; the reference figures need at least 4")
    feats = [audio_features(wav, sr) for wav, sr, _ in generated]
    report = evaluate_music(generated, feats, classifier, progress=progress)
    report.pop("frechet_distance")
    report["frechet_distance_halves"] = frechet_distance(np.concatenate(feats[0::2]), np.concatenate(feats[1::2]))
    if split != "train" and _has_split(data, "train"):
        train_feats, _ = clip_features(data, "train", len(feats), progress)
        report["frechet_distance_train"] = frechet_distance(np.concatenate(feats), np.concatenate(train_feats))
    if codec is not None:
        report["through_codec"] = evaluate_music(_round_trips(codec, generated, progress), feats, classifier,
                                                 progress=progress)
    if opus_kbps is not None:
        trips = [(opus_roundtrip(wav if wav.dim() == 2 else wav[None], sr, opus_kbps), sr, meta)
                 for wav, sr, meta in tqdm(generated, desc="opus round trip", disable=not progress, unit="clip")]
        through = evaluate_music([(t.audio, sr, meta) for t, sr, meta in trips], feats, classifier, progress=progress)
        measured = sum(t.num_bytes for t, _, _ in trips) * 8 / sum(t.seconds for t, _, _ in trips) / 1000
        report["through_opus"] = {**through, "kbps": {"requested": opus_kbps, "measured": measured}}
    report["split"] = split
    write_report(output, report)
    return report


def _round_trips(codec: AudioTokenizer, clips: Sequence[Generated], progress: bool) -> list[Generated]:
    out = []
    for wav, sr, meta in tqdm(clips, desc="codec round trip", disable=not progress, unit="clip"):
        audio = codec.decode(codec.encode(wav[None] if wav.dim() == 2 else wav[None, None], sample_rate=sr))
        out.append((audio[0], codec.sample_rate, meta))
    return out


def evaluate_music_lm(
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    model: AudioLM | str | os.PathLike | None = None,
    split: str = "test",
    max_clips: int | None = None,
    duration: float = 8.0,
    seed: int = 0,
    batch_size: int = 8,
    sampling: Mapping[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """`evaluate_music_generation` of an LM, next to `evaluate_music_references` of the same held-out clips.

    Args:
        data: a music dataset folder written by `rvqaudio data music` (columns `audio`, `text`, `family`, `tempo`).
        classifier: a `FamilyClassifier` or its folder (`rvqaudio train-music-classifier`).
        model: an `AudioLM` carrying its codec, a self-contained LM folder, or None for the bundled music LM.
        max_clips: use only the first N clips of `split` (at least 4, for the references' split-half distance).
        duration: seconds generated per caption (music runs for all of it: `generate` holds back end of audio
            until `duration` for music; `ended_by_itself` reports any clip that still ended earlier).
        seed: captions are generated `batch_size` at a time with seed `seed + b` for batch b; a clip depends on
            its batch, so the same seed, batch_size and max_clips give the same report.
        sampling: any of `temperature`, `top_k`, `top_p`, `guidance_scale`, replacing `tts_eval.SAMPLING`
            (generate's defaults).
        output: where to write the JSON report; a markdown table is written beside it (same name, `.md`).

    Returns `generated` (the `evaluate_music` report of
    the generations, plus `ended_by_itself`, the share of clips that ended before `duration`, and
    `seconds_generated`), `references` (the `evaluate_music_references` report), `data`, `split`, `model`,
    `duration`, `seed`, `batch_size`, `sampling` and `markdown` (the table).
    """
    from ..defaults import resolve_lm
    from ..generate import generate
    from .tts_eval import resolve_sampling

    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    check_count("seed", seed, low=0)
    check_count("batch_size", batch_size)
    settings = resolve_sampling(sampling)
    if not isinstance(classifier, FamilyClassifier):
        classifier = FamilyClassifier.from_pretrained(classifier)
    lm = resolve_lm(model, task="music")  # loaded once, not once per batch
    if duration > lm.config.max_duration:
        raise ValueError(f"duration={duration} s is more than this LM can generate ({lm.config.max_duration:g} s, "
                         f"max_audio_frames); pass --duration {lm.config.max_duration:g} or less")
    # The references first: they are quick, and they fail early on a split too small to score.
    references = evaluate_music_references(data, classifier, split=split, max_clips=max_clips, progress=progress,
                                           codec=lm.codec)
    batch_seeds = itertools.count(seed)
    ended: list[bool] = []

    def compose(captions: list[str]) -> list[tuple[torch.Tensor, int]]:
        clips = generate(captions, task="music", duration=float(duration), seed=next(batch_seeds), model=lm,
                         progress=False, **settings)
        ended.extend(clip.ended_by_itself for clip in clips)
        return [(clip.waveform, clip.sample_rate) for clip in clips]

    generated = evaluate_music_generation(compose, data, classifier, split=split, max_items=max_clips,
                                          batch_size=batch_size, progress=progress)
    generated["ended_by_itself"] = float(np.mean(ended))
    generated["seconds_generated"] = float(sum(item["seconds"] for item in generated["items"]))
    report = {"data": describe(data), "split": split, "model": describe(model, none="bundled music LM"),
              "duration": float(duration), "seed": seed, "batch_size": batch_size, "sampling": settings,
              "generated": generated, "references": references}
    report["markdown"] = format_music_report(report)
    write_report(output, report)
    return report


def format_music_report(report: dict[str, Any]) -> str:
    """The markdown table of an `evaluate_music_lm` report (generations and references), or of an
    `evaluate_music_references` report alone."""
    from .tts_eval import format_sampling

    references = report.get("references", report)
    generated = report.get("generated")
    tolerance = references["tempo"]["tolerance"]
    lines = [f"Music evaluation on {report.get('data', 'the dataset')} [{references['split']}]"
             + (f": model {report['model']}, {report['duration']:g} s per caption, seed {report['seed']}"
                + (f"; sampling {format_sampling(report['sampling'])}" if report.get("sampling") else "")
                if generated is not None else ": held-out renders only"), "",
             f"| clips | n | family accuracy ↑ | balanced accuracy ↑ | tempo within {tolerance:.0%} ↑ "
             "| tempo, octave-tolerant ↑ | Fréchet distance ↓ |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(name: str, r: dict[str, Any], frechet: float | None) -> str:
        f = "–" if frechet is None else f"{frechet:.1f}"
        return (f"| {name} | {r['n']} | {r['family']['accuracy']:.2f} | {r['family']['balanced_accuracy']:.2f} | "
                f"{r['tempo']['within']:.2f} | {r['tempo']['within_octave']:.2f} | {f} |")

    if generated is not None:
        lines.append(row("generated", generated, generated["frechet_distance"]))
    lines.append(row("held-out renders", references, references["frechet_distance_halves"]))
    if "through_codec" in references:
        through = references["through_codec"]
        lines.append(row("held-out renders through the codec", through, through["frechet_distance"]))
    if "through_opus" in references:
        through = references["through_opus"]
        kbps = through["kbps"]
        lines.append(row(f"held-out renders through Opus {kbps['requested']:g} kbps ({kbps['measured']:.2f})",
                         through, through["frechet_distance"]))
    lines += ["", "Fréchet distance between audio_features windows (units², not comparable with FAD): generated "
              "vs the held-out renders of the same captions; held-out renders: even vs odd clips, the floor at "
              "half this set size" + ("; through the codec: vs the renders themselves. The codec's row is the "
                                      "ceiling of any LM on its codes." if "through_codec" in references else ".")]
    if "through_opus" in references:
        lines.append("Through Opus: ffmpeg's libopus, vs the renders themselves; its measured kbps (in brackets) "
                     "include the Ogg container.")
    if "frechet_distance_train" in references:
        lines.append(f"Held-out renders vs as many train renders (another SoundFont): "
                     f"{references['frechet_distance_train']:.1f}.")
    if generated is not None:
        lines.append(f"{generated['ended_by_itself']:.0%} of the generations ended by themselves before "
                     f"{report['duration']:g} s; {generated['unscorable']} were too short to score "
                     f"(< {MIN_CLIP_SECONDS} s).")
    return "\n".join(lines) + "\n"


def family_counts(data: str | os.PathLike | Dataset | DatasetDict, split: str) -> dict[str, int]:
    """How many clips of each family a split holds (for reading accuracies against chance)."""
    return dict(Counter(load_split(data, split)["family"]).most_common())
