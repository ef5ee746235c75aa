"""Which decoder of a codec folder should decode given codes: a choice the codec makes from the codes themselves.

A codec folder may hold decoder variants beside its own decoder (`tokenizer.variants`): the bundled codec has one
tuned for speech. Codes say what they encode well enough to choose: speech and music use the codebooks differently.
`DecoderChoice` is a logistic regression over the share of each code in the first two codebooks of the codes (a bag
of codes, so any length and any place in a clip works), fitted on codes of labelled speech and music; it predicts
P(speech) per item and names the decoder: the speech variant above the threshold, the codec's own decoder below.

It is saved beside the codec as `decoder_choice.json` (what it chooses between, how it was fitted and measured) and
`decoder_choice.safetensors` (its weights, float32), read with every tensor checked; nothing unpickles.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_tensors, save_tensors
from .errors import CheckpointError
from .json_config import write_text_atomic

CHOICE_CONFIG = "decoder_choice.json"
CHOICE_WEIGHTS = "decoder_choice.safetensors"
FEATURE_CODEBOOKS = 2  # the first codebooks carry most of what separates speech from music; more add noise


def code_shares(codes: torch.Tensor, codebook_size: int, codebooks: int = FEATURE_CODEBOOKS) -> torch.Tensor:
    """codes LongTensor[B, K, T] -> FloatTensor[B, codebooks * codebook_size]: per item, the share of its frames
    holding each code, codebook by codebook (each codebook's shares sum to 1). Padding (codes < 0) is not counted."""
    if codes.dim() != 3 or codes.shape[1] < codebooks:
        raise ValueError(f"codes must be [B, K >= {codebooks}, T], got shape {list(codes.shape)}")
    B = codes.shape[0]
    features = torch.zeros(B, codebooks, codebook_size)
    for k in range(codebooks):
        values = codes[:, k].cpu()
        valid = values >= 0
        features[:, k].scatter_add_(1, values.clamp(min=0), valid.float())
    counts = features.sum(dim=2, keepdim=True).clamp(min=1)
    return (features / counts).reshape(B, -1)


class DecoderChoice:
    """P(speech) from codes, and the decoder that follows from it (see the module docstring).

    speech_variant: the variant that decodes speech (e.g. "speech"); below `threshold` the codec's own decoder
    (None) decodes. weight FloatTensor[FEATURE_CODEBOOKS * codebook_size], bias: the logistic regression.
    """

    def __init__(self, weight: torch.Tensor, bias: float, codebook_size: int, speech_variant: str,
                 threshold: float = 0.5, info: dict[str, Any] | None = None) -> None:
        if weight.shape != (FEATURE_CODEBOOKS * codebook_size,):
            raise ValueError(f"weight must have shape [{FEATURE_CODEBOOKS * codebook_size}] for codebook_size "
                             f"{codebook_size}, got {list(weight.shape)}")
        if not bool(torch.isfinite(weight).all()) or not math.isfinite(bias):
            raise ValueError("the decoder choice's weights must be finite")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.weight, self.bias = weight.float(), float(bias)
        self.codebook_size, self.speech_variant, self.threshold = codebook_size, speech_variant, threshold
        self.info = dict(info or {})

    # -- use -------------------------------------------------------------------------------------------------

    def speech_probability(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor[B, K, T] -> FloatTensor[B]: P(speech) per item."""
        return torch.sigmoid(code_shares(codes, self.codebook_size) @ self.weight + self.bias)

    def choose(self, codes: torch.Tensor) -> list[str | None]:
        """The decoder per item of codes [B, K, T]: `speech_variant`, or None for the codec's own decoder."""
        return [self.speech_variant if p >= self.threshold else None for p in self.speech_probability(codes).tolist()]

    # -- fitting ---------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, speech: Sequence[torch.Tensor], music: Sequence[torch.Tensor], codebook_size: int,
            speech_variant: str, l2: float = 1e-3, steps: int = 300, info: dict[str, Any] | None = None
            ) -> DecoderChoice:
        """Fit on windows of codes, each LongTensor[K, T] (speech ones labelled 1, music 0), classes weighted
        equally whatever their counts; L2 penalty `l2` on the weights; full-batch L-BFGS for `steps` iterations."""
        if not speech or not music:
            raise ValueError(f"fitting needs codes of both speech and music, got {len(speech)} and {len(music)} windows")
        features = torch.cat([code_shares(w.unsqueeze(0), codebook_size) for w in (*speech, *music)])
        labels = torch.cat([torch.ones(len(speech)), torch.zeros(len(music))])
        weights = torch.where(labels > 0, 0.5 / len(speech), 0.5 / len(music))
        scale = features.std(dim=0).clamp(min=1e-4)  # fitted on standardised shares, folded back into the weight
        mean = features.mean(dim=0)
        x = (features - mean) / scale
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, labels, reduction="none")
                    * weights).sum() + l2 * w.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        weight = (w / scale).detach()
        bias = float(b.detach() - (mean * weight).sum())
        return cls(weight, bias, codebook_size, speech_variant, info=info)

    # -- files -----------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Write decoder_choice.json and decoder_choice.safetensors into the codec folder `directory`."""
        directory = Path(directory)
        save_tensors(directory / CHOICE_WEIGHTS, {"weight": self.weight.contiguous()})
        config = {"kind": "code_shares_logistic", "feature_codebooks": FEATURE_CODEBOOKS,
                  "codebook_size": self.codebook_size, "bias": self.bias, "speech_variant": self.speech_variant,
                  "threshold": self.threshold, **self.info}
        write_text_atomic(directory / CHOICE_CONFIG, json.dumps(config, indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DecoderChoice | None:
        """The decoder choice saved in the codec folder `directory`, or None when it has none. CheckpointError
        names the file when it is unreadable or does not fit together."""
        directory = Path(directory)
        config_path, weights_path = directory / CHOICE_CONFIG, directory / CHOICE_WEIGHTS
        if not config_path.is_file():
            return None
        try:
            config = json.loads(config_path.read_text())
            if config.get("kind") != "code_shares_logistic" or config.get("feature_codebooks") != FEATURE_CODEBOOKS:
                raise ValueError(f"kind {config.get('kind')!r} with {config.get('feature_codebooks')!r} codebooks "
                                 f"is not one this version reads")
            tensors, _ = load_tensors(weights_path)
            if set(tensors) != {"weight"}:
                raise ValueError(f"{weights_path.name} must hold exactly 'weight', it holds {sorted(tensors)}")
            known = {"kind", "feature_codebooks", "codebook_size", "bias", "speech_variant", "threshold"}
            return cls(tensors["weight"], float(config["bias"]), int(config["codebook_size"]),
                       str(config["speech_variant"]), float(config["threshold"]),
                       info={k: v for k, v in config.items() if k not in known})
        except (OSError, KeyError, TypeError, ValueError, CheckpointError) as e:
            raise CheckpointError(f"the decoder choice in {str(directory)!r} cannot be read: {e}") from e
