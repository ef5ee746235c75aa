"""Generation: the cached loop against a cache-free reference, seeds, batching, prompts, end of audio,
streaming, and every bad input's error."""

from __future__ import annotations

import time

import pytest
import torch

from lm import PAD_FRAME, AudioLM, GenerationConfig, sample_logits, split_items

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "drums and bass"]


def greedy(**overrides) -> GenerationConfig:
    fields = dict(duration=2.0, top_k=1, guidance_scale=1.0, task="music", seed=0)
    fields.update(overrides)
    return GenerationConfig(**fields)


def assert_matches_items(codes: torch.Tensor, items: list[torch.Tensor]) -> None:
    """codes [B, K, T] equal the items [K, T_b], each padded with PAD_FRAME to T = max T_b."""
    assert codes.shape[2] == max(item.shape[1] for item in items)
    for b, item in enumerate(items):
        assert torch.equal(codes[b, :, :item.shape[1]], item), f"item {b} differs"
        assert (codes[b, :, item.shape[1]:] == PAD_FRAME).all()


# ----------------------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("pattern", ["delay", "parallel", "flatten", "coarse_first"])
@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_cached_greedy_equals_uncached_recomputation(make_lm, reference, pattern, guidance_scale):
    lm = make_lm(pattern=pattern)
    config = greedy(guidance_scale=guidance_scale)
    # Batched (left-padded texts of different lengths, CFG as 2B rows) vs one item at a time with no cache.
    assert_matches_items(lm.generate(TEXTS, config), reference(lm, TEXTS, config))


@pytest.mark.parametrize("guidance_scale", [1.0, 0.0, 3.0])
def test_sampling_equals_reference_draw_for_draw(make_lm, reference, guidance_scale):
    # guidance_scale=1 must be plain conditional sampling: the reference then never computes the
    # unconditional logits. With top-k, top-p and temperature, each draw must come from the same distribution.
    lm = make_lm(seed=1, pattern="parallel")
    config = GenerationConfig(duration=3.0, temperature=0.8, top_k=8, top_p=0.9, guidance_scale=guidance_scale,
                              task="speech", seed=11)
    lengths = []
    for text in TEXTS:
        codes = lm.generate([text], config)
        assert_matches_items(codes, reference(lm, [text], config))
        lengths.append(codes.shape[2])
    if guidance_scale == 1.0:
        assert min(lengths) < 30, "no item sampled end of audio: the test does not cover early stops"


def test_same_seed_same_codes_other_seed_other_codes(make_lm):
    lm = make_lm()
    config = GenerationConfig(duration=2.0, top_k=None, guidance_scale=3.0, task="music", seed=5)
    first = lm.generate(TEXTS, config)
    assert torch.equal(first, lm.generate(TEXTS, config))
    other = lm.generate(TEXTS, GenerationConfig(duration=2.0, top_k=None, guidance_scale=3.0, task="music", seed=6))
    assert not torch.equal(first, other)


def test_guidance_changes_the_result(make_lm):
    lm = make_lm()
    plain = lm.generate(TEXTS, greedy(guidance_scale=1.0))
    guided = lm.generate(TEXTS, greedy(guidance_scale=3.0))
    assert not torch.equal(plain, guided)


def test_num_codebooks_trims_the_full_generation(make_lm):
    lm = make_lm()
    full = lm.generate(TEXTS, greedy())
    two = lm.generate(TEXTS, greedy(num_codebooks=2))
    assert two.shape[1] == 2 and torch.equal(two, full[:, :2])


def test_duration_caps_the_length(make_lm):
    lm = make_lm()
    codes = lm.generate(TEXTS[:1], greedy(duration=1.3))
    assert codes.shape == (1, 4, 13)  # no end of audio sampled: exactly round(1.3 s * 10 Hz) frames
    assert codes.min() >= 0 and codes.max() < 16


# ----------------------------------------------------------------------------------------- a trained model


PAIRS = {"hello world": 6, "drums and bass": 12, "a calm piano melody": 9}


@pytest.fixture(scope="module")
def trained(codec, text_tokenizer, config_factory):
    """A tiny LM trained until it reproduces three text -> codes pairs of different lengths."""
    torch.manual_seed(0)
    lm = AudioLM.from_config(config_factory(hidden_size=64, condition_dropout=0.0), text_tokenizer, codec)
    texts = list(PAIRS)
    lengths = torch.tensor(list(PAIRS.values()))
    codes = torch.randint(0, 16, (3, 4, 12), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(lm.model.parameters(), lr=1e-2, weight_decay=0.0)
    lm.model.train()
    start = time.process_time()  # CPU seconds: the machine may be shared
    for _ in range(300):
        loss = lm.loss(texts, codes, lengths, task="music").loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    lm.model.eval()
    return lm, [codes[b, :, :n] for b, n in enumerate(lengths.tolist())], time.process_time() - start


def test_tiny_model_overfits_and_greedy_reproduces_with_end_of_audio(trained):
    lm, targets, seconds = trained
    assert seconds < 30
    codes = lm.generate(list(PAIRS), greedy(duration=3.0))
    assert_matches_items(codes, targets)  # each stops at its own end of audio; shorter ones padded with -1
    assert [item.shape[2] for item in split_items(codes)] == list(PAIRS.values())


def test_batched_equals_one_by_one(trained, make_lm):
    lm, targets, _ = trained
    texts = list(PAIRS)
    batched = lm.generate(texts, greedy(duration=3.0))
    for b, text in enumerate(texts):
        alone = lm.generate([text], greedy(duration=3.0))
        assert torch.equal(alone[0], batched[b, :, :alone.shape[2]])
    random_lm = make_lm()  # and with an untrained model, whose codes are far from any training data
    batched = random_lm.generate(TEXTS, greedy(guidance_scale=2.0))
    assert_matches_items(batched, [random_lm.generate([text], greedy(guidance_scale=2.0))[0] for text in TEXTS])


def test_continuation_from_an_audio_prompt_returns_only_new_frames(trained, reference):
    lm, targets, _ = trained
    texts = ["drums and bass", "a calm piano melody"]
    prompt = torch.stack([targets[1][:, :4], targets[2][:, :4]])  # (2, K, 4)
    codes = lm.generate(texts, greedy(duration=3.0), audio_prompt=prompt, prompt_fingerprint="fake-k4-c16")
    assert_matches_items(codes, [targets[1][:, 4:], targets[2][:, 4:]])
    # An untrained model continuing a prompt agrees with the cache-free reference.
    assert_matches_items(codes, reference(lm, texts, greedy(duration=3.0), prompt))


@pytest.mark.parametrize("pattern", ["delay", "coarse_first"])
def test_prompt_continuation_equals_reference_on_random_model(make_lm, reference, pattern):
    lm = make_lm(pattern=pattern)
    prompt = torch.randint(0, 16, (3, 4, 5), generator=torch.Generator().manual_seed(2))
    config = greedy(guidance_scale=3.0)
    assert_matches_items(lm.generate(TEXTS, config, audio_prompt=prompt), reference(lm, TEXTS, config, prompt))


# ----------------------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("pattern", ["delay", "coarse_first"])
def test_stream_concatenates_to_generate_and_starts_early(make_lm, trained, pattern):
    lm = make_lm(pattern=pattern)
    config = GenerationConfig(duration=2.0, top_k=4, guidance_scale=3.0, task="music", seed=2)
    calls = []
    decode_step = lm.model.decode_step
    lm.model.decode_step = lambda *args: calls.append(1) or decode_step(*args)
    chunks, calls_at_chunk = [], []
    for chunk in lm.stream(TEXTS, config):
        chunks.append(chunk)
        calls_at_chunk.append(len(calls))
    del lm.model.decode_step
    whole = lm.generate(TEXTS, config)
    assert torch.equal(torch.cat(chunks, dim=2), whole)
    assert len(chunks) > 1 and all(chunk.shape[2] > 0 for chunk in chunks)
    # The first frame comes out as soon as the pattern completes it, not at the end. With the delay pattern
    # that is after K = 4 steps (3 decode steps after the prefill); coarse-first must finish codebook 0 first.
    if pattern == "delay":
        assert calls_at_chunk[0] == 3
    assert calls_at_chunk[0] < len(calls)
    # With early ends (the trained model) and a prompt, too.
    trained_lm, targets, _ = trained
    prompt = torch.stack([t[:, :2] for t in targets])
    chunks = list(trained_lm.stream(list(PAIRS), greedy(duration=3.0), audio_prompt=prompt))
    assert torch.equal(torch.cat(chunks, dim=2), trained_lm.generate(list(PAIRS), greedy(duration=3.0), audio_prompt=prompt))


# ----------------------------------------------------------------------------------------- the sampler


def test_sampler_respects_top_k_top_p_and_masked_entries():
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -float("inf")]]).repeat(4000, 1)
    draws = sample_logits(logits, GenerationConfig(top_k=3), generator)
    assert set(draws.tolist()) == {0, 1, 2}
    probs = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0]).softmax(0)  # 0.64, 0.24, 0.09, ...
    draws = sample_logits(logits, GenerationConfig(top_k=None, top_p=0.8), generator)
    assert set(draws.tolist()) == {0, 1} and probs[0] < 0.8 <= probs[:2].sum()
    draws = sample_logits(logits, GenerationConfig(top_k=None, top_p=1.0), generator)
    assert 5 not in draws.tolist() and set(draws.tolist()) == {0, 1, 2, 3, 4}
    assert (sample_logits(logits, GenerationConfig(top_k=1), generator) == 0).all()
    share = (sample_logits(logits, GenerationConfig(top_k=None, temperature=0.5), generator) == 0).float().mean()
    assert abs(share - (torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0]) / 0.5).softmax(0)[0]) < 0.03


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fields, message", [
    (dict(temperature=0.0), r"temperature must be > 0, got 0.0"),
    (dict(temperature=-1.0), r"temperature must be > 0, got -1.0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\], got 1.5"),
    (dict(top_k=0), r"top_k must be an integer >= 1 \(1 = greedy\) or None, got 0"),
    (dict(duration=0.0), r"duration must be > 0 seconds, got 0.0"),
    (dict(duration=float("nan")), r"duration must be a finite number"),
    (dict(guidance_scale=-1.0), r"guidance_scale must be >= 0"),
    (dict(seed=-3), r"seed must be an integer >= 0 or None, got -3"),
    (dict(num_codebooks=0), r"num_codebooks must be an integer >= 1 or None, got 0"),
])
def test_bad_generation_settings(fields, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**fields)


def test_bad_generation_inputs(make_lm):
    lm = make_lm()
    ok = greedy()
    with pytest.raises(ValueError, match=r"text 1 is empty \('  '\)"):
        lm.generate(["hello world", "  "], ok)
    with pytest.raises(ValueError, match="texts is empty"):
        lm.generate([], ok)
    with pytest.raises(ValueError, match=r"text 0 is \d+ tokens long .* more than the model's context of "
                                         r"max_text_tokens=64"):
        lm.generate(["hello world " * 20], ok)
    with pytest.raises(ValueError, match=r"duration=4.5 s is 45 frames at 10.0 Hz.*max_audio_frames=40 frames; "
                                         r"ask for at most 4 s"):
        lm.generate(["hello world"], greedy(duration=4.5))
    with pytest.raises(ValueError, match=r"duration=3.8 s is 38 frames.*with the 5-frame prompt.*at most 3.5 s"):
        lm.generate(["hello world"], greedy(duration=3.8), audio_prompt=torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"duration=0.01 s is less than one frame at 10.0 Hz"):
        lm.generate(["hello world"], greedy(duration=0.01))
    with pytest.raises(ValueError, match=r"unknown task 'sfx'; known tasks are \['speech', 'music'\]"):
        lm.generate(["hello world"], greedy(task="sfx"))
    with pytest.raises(ValueError, match=r"num_codebooks=5 is more than the model's 4 codebooks"):
        lm.generate(["hello world"], greedy(num_codebooks=5))
    with pytest.raises(ValueError, match=r"from codec fingerprint 'other'.*codec_fingerprint='fake-k4-c16'"):
        lm.generate(["hello world"], ok, audio_prompt=torch.zeros(1, 4, 3, dtype=torch.long), prompt_fingerprint="other")
    with pytest.raises(ValueError, match=r"audio_prompt must be \[B=1, K=4, T\].*got shape \[1, 3, 5\]"):
        lm.generate(["hello world"], ok, audio_prompt=torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"audio_prompt must be \[B=1, K=4, T\].*got shape \[2, 4, 5\]"):
        lm.generate(["hello world"], ok, audio_prompt=torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, codebook_size=16\), got values in \[0, 16\]"):
        lm.generate(["hello world"], ok, audio_prompt=torch.tensor([[[0, 16]] * 4]))
    with pytest.raises(ValueError, match=r"integer tensor of codes"):
        lm.generate(["hello world"], ok, audio_prompt=torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="texts must be a list of str"):
        lm.generate("hello world", ok)


def test_min_duration_holds_back_end_of_audio_and_leaves_longer_items_alone(trained):
    lm, targets, _ = trained
    shortest, longest = min(PAIRS.values()), max(PAIRS.values())
    floor = (shortest + longest) // 2  # frames; 10 Hz
    codes = lm.generate(list(PAIRS), greedy(duration=3.0, min_duration=floor / 10))
    for item, natural in zip(split_items(codes), PAIRS.values()):
        assert item.shape[2] >= floor
        if natural >= floor:
            assert item.shape[2] == natural  # ending after the floor is the model's own choice, as before
    # A floor per item (min_frames) holds each item back as the same min_duration holds it alone.
    floors = [floor, 0, floor]
    per_item = split_items(lm.generate(list(PAIRS), greedy(duration=3.0), min_frames=floors))
    for text, item, frames in zip(PAIRS, per_item, floors):
        assert torch.equal(item, lm.generate([text], greedy(duration=3.0, min_duration=frames / 10)))
    assert any(item.shape[2] != natural for item, natural in zip(per_item, PAIRS.values()))  # some were held back
    with pytest.raises(ValueError, match=r"min_frames must hold one integer >= 0 per text \(2\), got \[3\]"):
        lm.generate(["a", "b"], greedy(), min_frames=[3])
    full = lm.generate(list(PAIRS), greedy(duration=1.5, min_duration=5.0))  # floor beyond duration: full length
    assert [item.shape[2] for item in split_items(full)] == [15] * len(PAIRS)
    with pytest.raises(ValueError, match="min_duration"):
        GenerationConfig(min_duration=-1.0)
