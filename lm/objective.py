"""The LM's training objective, defined once: teacher forcing, targets and masks, dropped conditions, and
`LMObjective`, the loss terms as one module that the training loop wraps (DDP wraps a single forward).
`AudioLMModel.forward` computes its loss from the same functions, so the two cannot drift apart.

    steps          each item's codes and an end-of-audio frame, laid out by the pattern  (B, K, S)
    inputs         the start step, then steps[:, :, :-1]: position s predicts step s      (B, K, S)
    targets        every filled slot (a code or end of audio), not empty slots or padding
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config import AudioLMConfig
from .patterns import CodebookPattern

from .conditioners.base import Track, Tracks

if TYPE_CHECKING:  # the model imports this module
    from .model import AudioLMModel


def codes_to_steps(codes: torch.Tensor, code_lengths: torch.Tensor | None, config: AudioLMConfig,
                   pattern: CodebookPattern) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [B, K, T] (+ lengths [B]) -> steps LongTensor[B, K, S] and step_mask BoolTensor[B, S].

    Item b is its first lengths[b] frames plus one end-of-audio frame, laid out by the pattern (empty slots =
    `config.empty_id`); steps past its layout are `config.pad_id` and masked out.
    """
    B, K, T = codes.shape
    if K != config.num_codebooks:
        raise ValueError(f"codes have {K} codebooks, the LM was built for num_codebooks={config.num_codebooks}")
    lengths = torch.full((B,), T, dtype=torch.long) if code_lengths is None else code_lengths.long().cpu()
    if lengths.shape != (B,) or bool((lengths < 0).any()) or bool((lengths > T).any()):
        raise ValueError(f"code_lengths must be [B={B}] values in [0, T={T}], got {lengths.tolist()}")
    longest = int(lengths.max()) if B else 0
    if longest > config.max_audio_frames:
        raise ValueError(f"codes are {longest} frames long, more than max_audio_frames={config.max_audio_frames}; "
                         "cut them into shorter segments")
    real = torch.arange(T, device=codes.device) < lengths.to(codes.device).unsqueeze(1)  # (B, T)
    real_codes = codes.masked_select(real.unsqueeze(1))
    if real_codes.numel() and (int(real_codes.min()) < 0 or int(real_codes.max()) >= config.codebook_size):
        raise ValueError(f"codes must lie in [0, codebook_size={config.codebook_size}), got values in "
                         f"[{int(real_codes.min())}, {int(real_codes.max())}]")
    S = pattern.num_steps(longest + 1)
    steps = torch.full((B, K, S), config.pad_id, dtype=torch.long, device=codes.device)
    step_mask = torch.zeros(B, S, dtype=torch.bool, device=codes.device)
    eos = torch.full((1, K, 1), config.eos_id, dtype=torch.long, device=codes.device)
    for b in range(B):  # items differ in length, so in layout; B is small next to the transformer's work
        n = int(lengths[b])
        item = torch.cat([codes[b:b + 1, :, :n], eos], dim=2)  # (1, K, n + 1)
        laid = pattern.apply(item, empty=config.empty_id)  # (1, K, S_b)
        steps[b, :, :laid.shape[2]] = laid[0]
        step_mask[b, :laid.shape[2]] = True
    return steps, step_mask


def teacher_forcing(model: AudioLMModel, codes: torch.Tensor, code_lengths: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(steps [B, K, S], step_mask [B, S], inputs [B, K, S]) for codes [B, K, T] (+ real lengths [B])."""
    steps, step_mask = codes_to_steps(codes, code_lengths, model.config, model.pattern)
    inputs = torch.cat([model.start_step(codes.shape[0]), steps[:, :, :-1]], dim=2)
    return steps, step_mask, inputs


def drop_conditions(model: AudioLMModel, text_ids: torch.Tensor, text_mask: torch.Tensor, drop: torch.Tensor,
                    tracks: Tracks | None, track_drop: Mapping[str, torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, dict[str, Track] | None]:
    """The null condition where drop BoolTensor[B] is True (classifier-free guidance): the text masked down to its
    task tag and end of text, every track emptied (`Track.without`). `track_drop` (name -> BoolTensor[B]) also
    empties a track alone in more rows, their text kept."""
    text_mask = torch.where(drop.unsqueeze(1), model.null_condition(text_ids, text_mask), text_mask)
    if tracks is None:
        return text_mask, None
    dropped = {}
    for name, track in tracks.items():
        if track is not None:
            extra = (track_drop or {}).get(name)
            dropped[name] = track.without(drop if extra is None else drop.cpu() | extra.cpu())
    return text_mask, dropped


def target_terms(logits: torch.Tensor, steps: torch.Tensor, config: AudioLMConfig, cut: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(nll, target_mask, targets), each [B, K, S], of logits [B, K, S, V] against target steps [B, K, S]: every
    filled slot is a target, except the end of audio of an item whose crop stops before its end (cut [B])."""
    is_code, is_eos = steps < config.codebook_size, steps == config.eos_id
    target_mask = is_code | (is_eos if cut is None else is_eos & ~cut.view(-1, 1, 1))
    targets = torch.where(is_eos, config.num_logits - 1, torch.where(is_code, steps, 0))  # logit indices
    nll = F.cross_entropy(logits.float().flatten(0, 2), targets.flatten(), reduction="none").view_as(targets)
    return nll, target_mask, targets


class LMObjective(nn.Module):
    """The LM's loss terms as one module, so that DDP wraps a single forward.

    forward(text_ids [B, L], text_mask [B, L], drop [B], codes [B, K, T], code_lengths [B], cut [B]) ->
    (nll [K] summed over the batch's targets, targets [K] counted). The targets are those of `AudioLM.loss`
    (each frame's codes and the end-of-audio frame, laid out by the pattern), except that an item whose crop
    stops before its end (`cut`) has no end-of-audio target. `drop` replaces an item's text by the null
    condition (classifier-free guidance); the draw is the caller's. Dividing by the global target count is
    the caller's too, so the loss of a batch split over processes sums to the loss of the whole batch.

    `phoneme_input_dropout`: in training mode, each audio step fed to an item that has a phoneme track (the track
    named "phoneme", whose `present()` says which rows have one) is replaced by an empty step with this probability
    (drawn from torch's generator, which the loop seeds per step and process). Speech at 75 frames/s is mostly
    predictable from its own last frames, so a model can lower its loss while ignoring the phonemes; hiding some of
    those frames makes the track worth reading (Tacotron's always-on pre-net dropout does this for its attention).
    Targets do not change.

    `track_dropout`: name -> probability; in training mode, each item's track of that name is left out with that
    probability (same generator), its text kept, e.g. so that the LM also learns captions that name no tempo.
    """

    def __init__(self, model: AudioLMModel, phoneme_input_dropout: float = 0.0,
                 track_dropout: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.phoneme_input_dropout = phoneme_input_dropout
        self.track_dropout = dict(track_dropout or {})

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor, drop: torch.Tensor, codes: torch.Tensor,
                code_lengths: torch.Tensor, cut: torch.Tensor, tracks: Tracks | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        model, cfg = self.model, self.model.config
        track_drop = {}
        if tracks is not None and self.training:
            for name, track in tracks.items():
                if track is not None and self.track_dropout.get(name, 0.0) > 0:
                    track_drop[name] = torch.rand(drop.shape[0]) < self.track_dropout[name]
        text_mask, tracks = drop_conditions(model, text_ids, text_mask, drop, tracks, track_drop)
        steps, step_mask, inputs = teacher_forcing(model, codes, code_lengths)  # (B, K, S), (B, S), (B, K, S)
        phonemes = (tracks or {}).get("phoneme")
        if self.training and self.phoneme_input_dropout > 0 and phonemes is not None:
            tracked = phonemes.present().to(inputs.device)  # (B,)
            hide = torch.rand(inputs.shape[0], 1, inputs.shape[2]) < self.phoneme_input_dropout  # (B, 1, S)
            hide = hide.to(inputs.device) & tracked.view(-1, 1, 1) & (inputs != cfg.pad_id)
            inputs = torch.where(hide, cfg.empty_id, inputs)
        logits = model.logits(text_ids, text_mask, inputs, step_mask, tracks)  # (B, K, S, V)
        nll, mask, _ = target_terms(logits, steps, cfg, cut)
        return (nll * mask).sum(dim=(0, 2)), mask.sum(dim=(0, 2))
