"""Held-out evaluation during LM training: the loss per codebook over all processes' shares, and how much the LM
uses its text (the loss with other examples' texts minus the loss with its own)."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator

from lm import AudioLM
from lm.objective import LMObjective

from .lm_data import LMExamples, eval_batches
from .lm_examples import batch_tracks


@torch.no_grad()
def _evaluation_totals(accelerator: Accelerator, objective: LMObjective, lm: AudioLM, held: LMExamples,
                       batch_size: int, max_frames: int) -> torch.Tensor:
    """Float64 [2, K]: the held-out examples' nll sums and target counts per codebook (no condition dropout), over
    all processes' shares."""
    K, device = lm.config.num_codebooks, accelerator.device
    totals = torch.zeros(2, K, dtype=torch.float64, device=device)  # nll sums, target counts
    objective.eval()
    for part in eval_batches(held, batch_size, max_frames, accelerator.process_index, accelerator.num_processes):
        text_ids, text_mask = lm.encode_texts(part.texts, part.tasks)
        with accelerator.autocast():
            nll, counted = objective(text_ids.to(device), text_mask.to(device), part.drop.to(device),
                                     part.codes.to(device), part.code_lengths.to(device), part.cut.to(device),
                                     batch_tracks(lm, part))
        totals += torch.stack([nll.double(), counted.double()])
    totals = accelerator.reduce(totals, reduction="sum").cpu()
    objective.train()
    return totals


def evaluation_record(accelerator: Accelerator, objective: LMObjective, lm: AudioLM, held: LMExamples,
                       batch_size: int, max_frames: int) -> dict:
    """What an evaluation logs: `eval_loss` and `eval_codebook_losses` [K] of the held-out examples, and per task
    with at least 2 of them `eval_text_gain` and `eval_text_gain_codebooks` [K]: the loss with each example's text
    swapped for another's of its task (`LMExamples.with_mismatched_texts`) minus the loss with its own, in nats per
    code. Near 0, the LM ignores its text; it grows as the LM learns what the words or captions say about the audio.
    Each task's examples run once with their own texts (their sums make the overall loss) and once with others'."""
    def loss(totals: torch.Tensor) -> torch.Tensor:
        return totals[0] / totals[1].clamp(min=1)

    overall = torch.zeros(2, lm.config.num_codebooks, dtype=torch.float64)
    gains = {}
    for task in sorted(set(held.tasks)):
        own = held.subset(np.flatnonzero([t == task for t in held.tasks]))
        totals = _evaluation_totals(accelerator, objective, lm, own, batch_size, max_frames)
        overall += totals
        if len(own) >= 2:
            swapped = _evaluation_totals(accelerator, objective, lm, own.with_mismatched_texts(), batch_size,
                                         max_frames)
            gains[task] = loss(swapped) - loss(totals)
    losses = loss(overall)
    return {"eval_loss": float(losses.mean()), "eval_codebook_losses": [round(float(x), 5) for x in losses],
            "eval_text_gain": {t: round(float(g.mean()), 5) for t, g in gains.items()},
            "eval_text_gain_codebooks": {t: [round(float(x), 5) for x in g] for t, g in gains.items()}}
