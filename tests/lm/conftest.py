"""Tiny fixtures for the LM tests: a fake codec that honours AudioTokenizer, a small text tokenizer, tiny LMs,
and a reference generator written with plain loops and no cache (what the fast path must agree with)."""

from __future__ import annotations

import math

import pytest
import torch

from lm import AudioLM, AudioLMConfig, GenerationConfig, PhonemeTrack, TextTokenizer, sample_logits
from lm.codec_interface import AudioTokenizer

CORPUS = [
    "hello world",
    "a calm piano melody",
    "the quick brown fox jumps over the lazy dog",
    "drums and bass",
    "she sells sea shells by the sea shore",
    "an upbeat electronic track",
] * 4


class FakeCodec:
    """K=4 codebooks of 16 codes at 10 frames/s; decode gives silence of the right length."""

    def __init__(self, num_codebooks: int = 4, codebook_size: int = 16, fingerprint: str = "fake-k4-c16") -> None:
        self._k, self._size, self._fingerprint = num_codebooks, codebook_size, fingerprint

    sample_rate = 16_000
    channels = 1
    frame_rate = 10.0

    @property
    def num_codebooks(self) -> int:
        return self._k

    @property
    def codebook_size(self) -> int:
        return self._size

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, wav: torch.Tensor, sample_rate: int | None = None, num_codebooks: int | None = None) -> torch.Tensor:
        frames = wav.shape[-1] // 1600
        return torch.zeros(1, num_codebooks or self._k, frames, dtype=torch.long)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(codes.shape[0], 1, codes.shape[2] * 1600)


def tiny_config(**overrides) -> AudioLMConfig:
    fields = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_text_tokens=64, max_audio_frames=40, condition_dropout=0.0)
    fields.update(overrides)
    return AudioLMConfig(**fields)


@pytest.fixture(scope="session")
def fake_codec_class() -> type[FakeCodec]:
    return FakeCodec


@pytest.fixture(scope="session")
def config_factory():
    """config_factory(**overrides) -> an unbound tiny AudioLMConfig."""
    return tiny_config


@pytest.fixture(scope="session")
def reference():
    """The loop-by-loop, cache-free generator (see `reference_generate`)."""
    return reference_generate


def cached_logits(model, text_ids: torch.Tensor, text_mask: torch.Tensor, steps: torch.Tensor,
                  features: torch.Tensor | None, prefill: int = 3) -> torch.Tensor:
    """The logits of steps[:, :, prefill - 1:] as generation computes them: `prefill` step inputs into a fresh KV
    cache, then one step at a time, each with its track features (or none). FloatTensor[B, K, S - prefill + 1, V]."""
    from lm.model import KVCache

    S = steps.shape[2]
    cache = KVCache(model.config, steps.shape[0], text_ids.shape[1] + S)
    with torch.no_grad():
        got = [model.prefill(text_ids, text_mask, steps[:, :, :prefill], cache,
                             None if features is None else features[:, :prefill])]
        for s in range(prefill, S):
            got.append(model.decode_step(steps[:, :, s], cache, None if features is None else features[:, s:s + 1]))
    return torch.stack(got, dim=2)


@pytest.fixture(scope="session")
def cached():
    """`cached_logits`: a model's logits through its KV cache, step by step."""
    return cached_logits


@pytest.fixture(scope="session")
def codec() -> FakeCodec:
    assert isinstance(FakeCodec(), AudioTokenizer)
    return FakeCodec()


@pytest.fixture(scope="session")
def text_tokenizer() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, vocab_size=300, seed=0)


@pytest.fixture()
def make_lm(codec, text_tokenizer):
    """make_lm(seed=0, **config_overrides) -> a freshly initialised tiny AudioLM in eval mode."""

    def make(seed: int = 0, **overrides) -> AudioLM:
        torch.manual_seed(seed)
        lm = AudioLM.from_config(tiny_config(**overrides), text_tokenizer, codec)
        lm.model.eval()
        _sharpen(lm)
        return lm

    return make


def _sharpen(lm: AudioLM) -> None:
    """Scale up the heads of a random model so its next-code distributions are peaked, not near-uniform:
    greedy decoding then has clear winners, and end of audio gets sampled now and then."""
    with torch.no_grad():
        for head in lm.model.heads:
            head.weight.mul_(40.0)


def reference_generate(lm: AudioLM, texts: list[str], config: GenerationConfig,
                       audio_prompt: torch.Tensor | None = None, phonemes: PhonemeTrack | None = None,
                       tracks: dict[str, list] | None = None) -> list[torch.Tensor]:
    """Generation with plain loops, one item at a time, recomputing the whole sequence every step (no cache).

    Returns one LongTensor[K, T_b] per item (the continuation only). Same sampler and generator draws as the
    fast path only when each item is generated alone (greedy decoding draws nothing). An item's phoneme track
    is its row of `phonemes` without the batch's padding, given to the conditional logits only; `tracks` gives
    further tracks, name -> one single-row track per item, also to the conditional logits only.
    """
    model, cfg = lm.model, lm.config
    pattern = model.pattern
    K = cfg.num_codebooks
    results = []
    for index, text in enumerate(texts):
        generator = torch.Generator().manual_seed(config.seed)
        ids = torch.tensor([lm.text_tokenizer.encode(text, config.task)])
        mask = torch.ones_like(ids, dtype=torch.bool)
        null_mask = model.null_condition(ids, mask)
        item_tracks = {name: rows[index] for name, rows in (tracks or {}).items()}
        if phonemes is not None:
            row = phonemes.ids[index]
            offset = None if phonemes.frame_offset is None else phonemes.frame_offset[index:index + 1]
            item_tracks["phoneme"] = PhonemeTrack(row[row > 0].unsqueeze(0), phonemes.total_frames[index:index + 1],
                                                  offset)
        prompt = None if audio_prompt is None else audio_prompt[index]
        prompt_frames = 0 if prompt is None else prompt.shape[1]
        length = prompt_frames + round(config.duration * cfg.frame_rate) + 1  # frames + end frame
        ended = False
        steps: list[list[int]] = []  # steps[s][k]
        codes = {}  # (k, t) -> code
        s = 0
        while True:
            layout = pattern.layout(length)

            def slot(k: int, s: int = s, layout: torch.Tensor = layout) -> int:
                return int(layout[k, s]) if s < layout.shape[1] else -1

            # Done once every frame before the end frame is filled.
            if all((k, t) in codes for t in range(prompt_frames, length - 1) for k in range(K)):
                break
            inputs = [[cfg.empty_id] * K] + steps  # start step, then every step so far
            step_inputs = torch.tensor(inputs).T.unsqueeze(0)  # (1, K, s + 1)
            with torch.no_grad():
                cond = model.logits(ids, mask, step_inputs, tracks=item_tracks)[0, :, -1]  # (K, V)
                if config.guidance_scale != 1.0:
                    uncond = model.logits(ids, null_mask, step_inputs)[0, :, -1]
                    logits = uncond + config.guidance_scale * (cond - uncond)
                else:
                    logits = cond.clone()
            logits[1:, -1] = -math.inf
            sampled = sample_logits(logits.float(), config, generator)  # (K,)
            values = []
            for k in range(K):
                t = slot(k)
                v = int(sampled[k])
                v = cfg.eos_id if v == cfg.num_logits - 1 else v
                if t < 0:
                    v = cfg.empty_id
                elif t < prompt_frames:
                    v = int(prompt[k, t])
                elif t == length - 1:
                    v = cfg.eos_id
                values.append(v)
            t0 = slot(0)
            if not ended and t0 >= prompt_frames and values[0] == cfg.eos_id:
                ended = True
                length = t0 + 1
                layout = pattern.layout(length)
                for k in range(K):
                    t = int(layout[k, s]) if s < layout.shape[1] else -1
                    if t < 0:
                        values[k] = cfg.empty_id
                    elif t == length - 1:
                        values[k] = cfg.eos_id
            for k in range(K):
                t = int(layout[k, s]) if s < layout.shape[1] else -1
                if prompt_frames <= t < length - 1:
                    codes[(k, t)] = values[k]
            steps.append(values)
            s += 1
        out = torch.tensor([[codes[(k, t)] for t in range(prompt_frames, length - 1)] for k in range(K)],
                           dtype=torch.long).view(K, length - 1 - prompt_frames)
        results.append(out)
    return results
