"""Music evaluation: does a clip play the requested instrument family at the requested tempo, and how far do
generated clips lie from real renders.

- `FamilyClassifier`: a small MLP over the fixed `audio_features` (1 s windows, averaged over a clip's windows),
  trained by `train_family_classifier` on the recipe's rendered *train* clips only (FluidR3 SoundFont), never on
  generations, and scored on the test split (TimGM6mb: other timbres). Saved as config.json + model.safetensors.
- `evaluate_music`: for generated clips with the caption metadata they were asked for (`family`, `tempo`):
  requested-family accuracy by the classifier, tempo accuracy of `estimate_tempo` (exact and octave-tolerant),
  and the Fréchet distance between the generated and the reference clips' feature windows.
- `evaluate_music_generation`: the same for a `generate_fn(captions) -> [(wav, sr)]` over held-out captions.
- `evaluate_music_references`: the figures of real held-out renders standing in for generations (the upper
  bound a generator can reach under these measures), and two reference Fréchet distances.
"""

from __future__ import annotations

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

from .data import iter_audio, load_split
from .metrics import FEATURE_DIM, FEATURE_N_MELS, audio_features, estimate_tempo, frechet_distance, tempo_errors

FEATURES_VERSION = "logmel64-mean-std+dmfcc20-std/1s@16k"  # bump when audio_features changes
Generated = tuple[torch.Tensor, int, Mapping[str, Any]]  # (wav [C, N] or [N], sample rate in Hz, caption metadata)


@dataclass
class FamilyClassifierConfig:
    families: list[str]  # class names, in logit order
    hidden: int = 256  # 0: logistic regression
    dropout: float = 0.2
    feature_dim: int = FEATURE_DIM
    features: str = FEATURES_VERSION
    heldout: dict[str, Any] = field(default_factory=dict)  # accuracy on the test split when trained

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
    seed: int = 0,
    max_clips: int | None = None,
    progress: bool = True,
) -> FamilyClassifier:
    """Train a `FamilyClassifier` on the rendered clips of `split` (the `family` column is the label).

    Full-batch AdamW on every 1 s feature window of every clip, cross-entropy weighted by inverse class
    frequency (so that rare families count), with a random gain of up to +-`gain_db` dB per window (added to
    the log-mel means: the level of a generation is not its family). When `test_split` exists, the held-out
    clip accuracy is measured and stored in `config.heldout` (see `evaluate_family_classifier`). Saved to
    `output` when given. Same `seed`, same classifier.
    """
    feats, rows = clip_features(data, split, max_clips, progress)
    families = sorted({r["family"] for r in rows})
    if len(families) < 2:
        raise ValueError(f"split {split!r} has clips of {len(families)} family ({families}); need at least 2")
    index = {f: i for i, f in enumerate(families)}
    x = torch.from_numpy(np.concatenate(feats))  # (windows, D)
    y = torch.tensor([index[r["family"]] for r, f in zip(rows, feats) for _ in range(len(f))])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FamilyClassifier(FamilyClassifierConfig(families=families, hidden=hidden))
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
    if test_split is not None and _has_split(data, test_split):
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
    `tempo` (`tempo_errors`: mean/median relative error, share within 8%, and octave-tolerant share),
    `frechet_distance` (generated vs reference feature windows, in audio_features units²), `windows`
    (counts behind it) and `items` (per clip: requested/predicted family, requested/estimated tempo).
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
        f = audio_features(wav, sr)
        gen_feats.append(f)
        items.append({"text": meta.get("text"), "requested_family": meta["family"],
                      "predicted_family": classifier.families[int(classifier.clip_log_probs(f).argmax())],
                      "requested_tempo": float(meta["tempo"]), "estimated_tempo": estimate_tempo(wav, sr)})
    gen_all, ref_all = np.concatenate(gen_feats), np.concatenate(ref_feats)
    return {
        "n": len(items),
        "family": _family_scores([i["predicted_family"] for i in items], [i["requested_family"] for i in items]),
        "tempo": tempo_errors([i["estimated_tempo"] for i in items], [i["requested_tempo"] for i in items]),
        "frechet_distance": frechet_distance(gen_all, ref_all),
        "windows": {"generated": len(gen_all), "reference": len(ref_all)},
        "items": items,
    }


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
    generated: list[Generated] = []
    for start in tqdm(range(0, n, batch_size), desc="generate", disable=not progress, unit="batch"):
        batch = rows[start: start + batch_size]
        outs = generate_fn([r["text"] for r in batch])
        if len(outs) != len(batch):
            raise ValueError(f"generate_fn returned {len(outs)} clips for {len(batch)} captions")
        generated += [(wav, sr, row) for (wav, sr), row in zip(outs, batch)]
    report = evaluate_music(generated, data, classifier, reference_split=split, max_reference=n, progress=progress)
    _write(output, report)
    return report


def evaluate_music_references(
    data: str | os.PathLike | Dataset | DatasetDict,
    classifier: FamilyClassifier | str | os.PathLike,
    split: str = "test",
    max_clips: int | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The music measures on real held-out renders standing in for generations: the ceiling a generator can reach.

    Returns `evaluate_music` figures for the clips of `split` judged against their own metadata (classifier
    accuracy and tempo-estimator accuracy on real music), with two Fréchet distances in place of the trivial 0:
    `frechet_distance_halves` (even vs odd clips of `split`: the sampling floor at half the set size) and
    `frechet_distance_train` (`split` vs as many clips of "train", another SoundFont; absent without a train
    split). Written as JSON to `output` when given.
    """
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
    report["split"] = split
    _write(output, report)
    return report


def _write(output: str | os.PathLike | None, report: dict[str, Any]) -> None:
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2) + "\n")


def family_counts(data: str | os.PathLike | Dataset | DatasetDict, split: str) -> dict[str, int]:
    """How many clips of each family a split holds (for reading accuracies against chance)."""
    return dict(Counter(load_split(data, split)["family"]).most_common())
