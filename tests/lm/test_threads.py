"""Thread choice: a small LM decodes on one thread and gives the caller's setting back; explicit settings win."""

from __future__ import annotations

import pytest
import torch

from lm import GenerationConfig
from lm.threads import SINGLE_THREAD_FLOPS, step_threads
from tokenizer.threads import torch_threads


def _threads_seen_by(lm, config: GenerationConfig, caller_threads: int) -> tuple[set[int], int]:
    seen: set[int] = set()
    hook = lm.model.norm.register_forward_pre_hook(lambda *_: seen.add(torch.get_num_threads()))  # every step
    try:
        with torch_threads(caller_threads):
            for _ in lm.stream(["a calm piano melody"], config):
                seen.add(-torch.get_num_threads())  # what the caller sees between chunks, negated
            after = torch.get_num_threads()
    finally:
        hook.remove()
    return seen, after


def test_a_small_lm_decodes_on_one_thread_and_restores_the_callers_setting(make_lm):
    lm = make_lm()
    seen, after = _threads_seen_by(lm, GenerationConfig(duration=0.2, task="music", seed=0), caller_threads=2)
    assert {n for n in seen if n > 0} == {1} and {-n for n in seen if n < 0} == {2} and after == 2


def test_num_threads_overrides_the_choice(make_lm):
    lm = make_lm()
    seen, _ = _threads_seen_by(lm, GenerationConfig(duration=0.2, task="music", seed=0, num_threads=2), 1)
    assert {n for n in seen if n > 0} == {2}
    with pytest.raises(ValueError, match="num_threads"):
        GenerationConfig(num_threads=0)


def test_threads_follow_the_work_size():
    torch_now = torch.get_num_threads()
    assert step_threads(SINGLE_THREAD_FLOPS / 10) == 1
    assert step_threads(SINGLE_THREAD_FLOPS * 10) == torch_now
    assert step_threads(SINGLE_THREAD_FLOPS / 10, requested=3) == 3
