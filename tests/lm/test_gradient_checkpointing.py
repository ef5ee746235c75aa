"""Gradient checkpointing recomputes the blocks in backward: the same loss and the same gradients, dropout included."""

from __future__ import annotations

import copy

import pytest
import torch

from pipelines.lm_training_config import LMTrainingConfig


def _loss_and_grads(lm, texts, codes, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    lm.model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout masks
    loss = lm.loss(texts, codes).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in lm.model.named_parameters() if p.grad is not None}


def test_checkpointed_blocks_give_the_same_loss_and_gradients(make_lm):
    lm = make_lm(dropout=0.1)
    lm.model.train()
    twin = copy.deepcopy(lm)
    twin.model.activation_checkpointing_enable()
    assert twin.model.gradient_checkpointing and not lm.model.gradient_checkpointing
    texts = ["a calm tone", "a bright tone"]
    codes = torch.randint(0, lm.config.codebook_size, (2, lm.config.num_codebooks, 12),
                          generator=torch.Generator().manual_seed(0))
    loss, grads = _loss_and_grads(lm, texts, codes, seed=3)
    loss_ckpt, grads_ckpt = _loss_and_grads(twin, texts, codes, seed=3)
    assert torch.equal(loss, loss_ckpt)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)
    # a different dropout seed changes the gradients: the comparison above is not vacuous
    _, other = _loss_and_grads(twin, texts, codes, seed=4)
    assert any(not torch.allclose(other[n], grads[n]) for n in grads)


def test_generation_ignores_the_setting(make_lm):
    lm = make_lm()
    codes = lm.loss(["a tone"], torch.zeros(1, lm.config.num_codebooks, 5, dtype=torch.long)).logits
    lm.model.activation_checkpointing_enable()
    assert torch.equal(lm.loss(["a tone"], torch.zeros(1, lm.config.num_codebooks, 5, dtype=torch.long)).logits,
                       codes)


def test_the_training_setting_is_validated():
    assert LMTrainingConfig(gradient_checkpointing=True).gradient_checkpointing
    with pytest.raises(ValueError, match="gradient_checkpointing must be true or false"):
        LMTrainingConfig(gradient_checkpointing="yes")
