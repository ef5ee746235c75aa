"""Codebook patterns: apply/revert against naive loops, exact inverses, and the properties generation relies on."""

from __future__ import annotations

import itertools

import pytest
import torch

from lm.patterns import (
    CoarseFirstPattern,
    DelayPattern,
    FlattenPattern,
    ParallelPattern,
    build_pattern,
)

EMPTY = -7


def naive_apply(name: str, codes: torch.Tensor, delays: list[int] | None = None) -> torch.Tensor:
    """The layouts written out slot by slot, straight from their definitions."""
    B, K, T = codes.shape
    if name == "parallel":
        return codes.clone()
    if name == "delay":
        delays = list(range(K)) if delays is None else delays
        S = T + max(delays) if T else 0
        out = torch.full((B, K, S), EMPTY)
        for b, k, s in itertools.product(range(B), range(K), range(S)):
            t = s - delays[k]
            if 0 <= t < T:
                out[b, k, s] = codes[b, k, t]
        return out
    if name == "flatten":
        out = torch.full((B, K, T * K), EMPTY)
        for b, t, k in itertools.product(range(B), range(T), range(K)):
            out[b, k, t * K + k] = codes[b, k, t]
        return out
    if name == "coarse_first":
        if K == 1:
            return codes.clone()
        out = torch.full((B, K, 2 * T), EMPTY)
        for b, t in itertools.product(range(B), range(T)):
            out[b, 0, t] = codes[b, 0, t]
            for k in range(1, K):
                out[b, k, T + t] = codes[b, k, t]
        return out
    raise AssertionError(name)


SHAPES = [(b, k, t) for b in (1, 3) for k in (1, 2, 4) for t in (0, 1, 2, 5, 9)]
NAMES = ["delay", "parallel", "flatten", "coarse_first"]


@pytest.mark.parametrize("name", NAMES)
def test_apply_matches_naive_loops_and_revert_inverts(name):
    gen = torch.Generator().manual_seed(0)
    for B, K, T in SHAPES:
        pattern = build_pattern(name, K)
        codes = torch.randint(0, 50, (B, K, T), generator=gen)
        steps = pattern.apply(codes, empty=EMPTY)
        assert steps.shape == (B, K, pattern.num_steps(T))
        assert torch.equal(steps, naive_apply(name, codes)), (name, B, K, T)
        assert torch.equal(pattern.revert(steps, T), codes), (name, B, K, T)


@pytest.mark.parametrize("delays", [[0, 2, 2, 5], [0, 0, 1], [0]])
def test_custom_delays_match_naive_loops(delays):
    pattern = DelayPattern(len(delays), delays)
    codes = torch.randint(0, 50, (2, len(delays), 7), generator=torch.Generator().manual_seed(1))
    steps = pattern.apply(codes, empty=EMPTY)
    assert torch.equal(steps, naive_apply("delay", codes, delays))
    assert torch.equal(pattern.revert(steps, 7), codes)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("K", [1, 3, 4])
def test_every_code_has_exactly_one_slot_and_codebook0_leads(name, K):
    pattern = build_pattern(name, K)
    for T in range(0, 8):
        layout = pattern.layout(T)  # (K, S)
        slots = {}
        for k, s in itertools.product(range(K), range(layout.shape[1])):
            t = int(layout[k, s])
            if t >= 0:
                assert (k, t) not in slots, f"{name}: ({k}, {t}) laid out twice"
                slots[(k, t)] = s
        assert set(slots) == {(k, t) for k in range(K) for t in range(T)}
        # The end of audio (codebook 0) is known before any other slot of its frame is filled.
        for t in range(T):
            assert all(slots[(0, t)] <= slots[(k, t)] for k in range(K))


@pytest.mark.parametrize("name", NAMES)
def test_shorter_layout_is_a_prefix_until_codebook0_of_its_last_frame(name):
    K = 4
    pattern = build_pattern(name, K)
    for n in range(1, 7):
        short, long = pattern.layout(n), pattern.layout(12)
        last = int((short[0] == n - 1).nonzero()[0])  # step of codebook 0 of frame n - 1
        assert torch.equal(short[:, :last + 1], long[:, :last + 1])


@pytest.mark.parametrize("name", NAMES)
def test_frames_complete_matches_naive_count(name):
    for K, T in [(1, 5), (3, 6), (4, 4)]:
        pattern = build_pattern(name, K)
        layout = pattern.layout(T)
        S = layout.shape[1]
        for steps in range(S + 2):
            seen = {(k, int(layout[k, s])) for k in range(K) for s in range(min(steps, S)) if layout[k, s] >= 0}
            naive = 0
            while naive < T and all((k, naive) in seen for k in range(K)):
                naive += 1
            assert pattern.frames_complete(steps, T) == naive, (name, K, T, steps)
        assert pattern.frames_complete(S, T) == T


def test_delay_streams_first_frame_after_K_steps():
    pattern = DelayPattern(4)
    assert [pattern.frames_complete(s, 10) for s in range(6)] == [0, 0, 0, 0, 1, 2]


def test_step_counts():
    assert ParallelPattern(4).num_steps(10) == 10
    assert DelayPattern(4).num_steps(10) == 13
    assert FlattenPattern(4).num_steps(10) == 40
    assert CoarseFirstPattern(4).num_steps(10) == 20
    assert CoarseFirstPattern(1).num_steps(10) == 10


def test_bad_patterns_are_refused():
    with pytest.raises(ValueError, match=r"unknown codebook pattern 'zigzag'.*'delay'"):
        build_pattern("zigzag", 4)
    with pytest.raises(ValueError, match=r"delays\[0\] == 0"):
        DelayPattern(3, [1, 0, 2])
    with pytest.raises(ValueError, match="one delay per codebook"):
        DelayPattern(3, [0, 1])
    with pytest.raises(ValueError, match="num_codebooks"):
        ParallelPattern(0)
    with pytest.raises(ValueError, match=r"codes must be \[B, 4, T\]"):
        DelayPattern(4).apply(torch.zeros(1, 3, 5, dtype=torch.long), empty=0)
    with pytest.raises(ValueError, match="take 8 steps"):
        DelayPattern(4).revert(torch.zeros(1, 4, 5, dtype=torch.long), 5)
