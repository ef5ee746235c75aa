"""The instrument-family classifier of the music evaluation: a small MLP over the fixed `audio_features` (1 s
windows, averaged over a clip's windows), trained by `train_family_classifier` on the recipe's *train* clips only
(FluidR3 SoundFont), never on generations, and scored on the test split (TimGM6mb: other timbres). A second timbre
set for training, from re-rendering the train MIDI with another SoundFont (`CLASSIFIER_SOUNDFONTS`, never the test
one), is what lets it recognise a family in timbres it was not trained on. Saved as config.json + model.safetensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from tokenizer.extras import import_extra

from .data import iter_audio, load_split
from .metrics import FEATURE_DIM, FEATURE_N_MELS, FEATURE_SAMPLE_RATE, audio_features

FEATURES_VERSION = "logmel64-mean-std+dmfcc20-std/1s@16k"  # bump when audio_features changes
# Extra SoundFonts to re-render the train MIDI with (Debian csound-soundfont, 4 MB). One timbre set alone teaches the
# classifier FluidR3's samples rather than the families: with this one added, held-out (TimGM6mb) accuracy rose
# from 0.507 to 0.727 on the 4 h recipe (150 test clips).
CLASSIFIER_SOUNDFONTS = (Path("/usr/share/sounds/sf2/sf_GMbank.sf2"),)
_RENDER_MAX_SECONDS = 15.0  # as the music recipe: notes end by 13 s, the tail is cut at 15 s


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
    has_test = test_split is not None and has_split(data, test_split)
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
    return family_scores(predicted, [r["family"] for r in rows]) | {"split": split}


def family_scores(predicted: Sequence[str], requested: Sequence[str]) -> dict[str, Any]:
    per: dict[str, list[int]] = {}
    for p, r in zip(predicted, requested):
        per.setdefault(r, [0, 0])
        per[r][0] += int(p == r)
        per[r][1] += 1
    n = len(requested)
    return {"n": n, "accuracy": sum(c for c, _ in per.values()) / n if n else float("nan"),
            "balanced_accuracy": float(np.mean([c / t for c, t in per.values()])) if n else float("nan"),
            "per_family": dict(sorted(per.items()))}


def has_split(data, split: str) -> bool:
    if isinstance(data, DatasetDict):
        return split in data
    if isinstance(data, (str, os.PathLike)):
        return (Path(data) / split).is_dir()
    return False
