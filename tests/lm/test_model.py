"""The transformer: causality, padding invariance, the null condition, the loss, the cache, persistence, configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lm import AudioLM, AudioLMConfig, AudioLMModel
from lm.model import KVCache
from lm.objective import codes_to_steps

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def random_steps(model: AudioLMModel, B: int, S: int, seed: int = 0) -> torch.Tensor:
    cfg = model.config
    steps = torch.randint(0, cfg.codebook_size, (B, cfg.num_codebooks, S), generator=torch.Generator().manual_seed(seed))
    steps[:, :, 0] = cfg.empty_id  # the start step
    return steps


def text_batch(lm: AudioLM, texts: list[str], task: str = "speech") -> tuple[torch.Tensor, torch.Tensor]:
    return lm.encode_texts(texts, task)


def test_changing_a_step_changes_only_later_logits(make_lm):
    lm = make_lm()
    ids, mask = text_batch(lm, ["hello world", "drums and bass"])
    steps = random_steps(lm.model, 2, 12)
    with torch.no_grad():
        base = lm.model.logits(ids, mask, steps)  # (B, K, S, V)
        for j in (1, 5, 11):
            changed = steps.clone()
            changed[:, :, j] = (changed[:, :, j] + 3) % lm.config.codebook_size
            logits = lm.model.logits(ids, mask, changed)
            assert torch.equal(logits[:, :, :j], base[:, :, :j]), f"step {j} leaked into earlier logits"
            assert not torch.allclose(logits[:, :, j], base[:, :, j]), "the changed step was ignored"
        other_text = lm.model.logits(*text_batch(lm, ["she sells sea shells", "drums and bass"]), steps)
    assert not torch.allclose(other_text[0], base[0]) and torch.allclose(other_text[1], base[1], atol=1e-5)


def test_left_padding_and_null_condition_equal_the_short_sequences(make_lm):
    lm = make_lm()
    texts = ["hello world", "the quick brown fox jumps over the lazy dog"]
    ids, mask = text_batch(lm, texts)
    assert not mask[0].all() and mask[1].all()  # the first text is left-padded
    steps = random_steps(lm.model, 2, 9)
    with torch.no_grad():
        batched = lm.model.logits(ids, mask, steps)
        alone = lm.model.logits(*text_batch(lm, texts[:1]), steps[:1])
        assert torch.allclose(batched[:1], alone, atol=1e-5)
        # The null condition (text masked out) is the bare [task tag, eos] sequence.
        null = lm.model.logits(ids, lm.model.null_condition(ids, mask), steps)
        tag_eos = torch.tensor([[lm.text_tokenizer.task_id("speech"), lm.text_tokenizer.eos_id]])
        for b in range(2):
            bare = lm.model.logits(tag_eos, None, steps[b:b + 1])
            assert torch.allclose(null[b:b + 1], bare, atol=1e-5)


def test_cache_prefill_and_steps_equal_full_recomputation(make_lm):
    lm = make_lm()
    ids, mask = text_batch(lm, ["hello world", "the quick brown fox jumps over the lazy dog"])
    steps = random_steps(lm.model, 2, 10)
    with torch.no_grad():
        full = lm.model.logits(ids, mask, steps)  # (B, K, S, V)
        cache = KVCache(lm.config, 2, ids.shape[1] + 10)
        got = [lm.model.prefill(ids, mask, steps[:, :, :3], cache)]
        for s in range(3, 10):
            got.append(lm.model.decode_step(steps[:, :, s], cache))
    assert torch.allclose(torch.stack(got, dim=2), full[:, :, 2:], atol=1e-5)




def test_a_full_cache_refuses_more_positions_by_name(make_lm):
    lm = make_lm()
    ids, mask = text_batch(lm, ["hello world"])
    steps = random_steps(lm.model, 1, 3)
    with torch.no_grad():
        cache = KVCache(lm.config, 1, ids.shape[1] + 2)
        lm.model.prefill(ids, mask, steps[:, :, :2], cache)
        with pytest.raises(ValueError, match="KV cache holds"):
            lm.model.decode_step(steps[:, :, 2], cache)

def test_int8_inference_weights_stay_near_float_keep_the_cache_exact_and_save_nothing(make_lm):
    lm = make_lm()
    ids, mask = text_batch(lm, ["hello world", "the quick brown fox jumps over the lazy dog"])
    steps = random_steps(lm.model, 2, 10)
    state = {name: value.clone() for name, value in lm.model.state_dict().items()}
    with torch.no_grad():
        exact = lm.model.logits(ids, mask, steps)
        lm.set_inference_weights("int8")
        full = lm.model.logits(ids, mask, steps)
        cache = KVCache(lm.config, 2, ids.shape[1] + 10)
        got = [lm.model.prefill(ids, mask, steps[:, :, :3], cache)]
        for s in range(3, 10):
            got.append(lm.model.decode_step(steps[:, :, s], cache))
    assert lm.inference_weights == "int8" and lm.model.stacked_heads.products.quantized._value is not None
    scale = float(exact.abs().max())
    assert float((full - exact).abs().max()) <= 0.03 * scale  # int8 weights, bfloat16 activations
    assert float((torch.stack(got, dim=2) - full[:, :, 2:]).abs().max()) <= 1e-3 * scale  # cache = no cache
    assert all(torch.equal(value, state[name]) for name, value in lm.model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(lm.set_inference_weights("float").model.logits(ids, mask, steps), exact)
    with pytest.raises(ValueError, match="int8"):
        lm.set_inference_weights("int4")

def test_loss_is_cross_entropy_of_filled_slots_only(make_lm):
    lm = make_lm()
    cfg = lm.config
    codes = torch.randint(0, cfg.codebook_size, (2, 4, 6), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([6, 3])
    out = lm.loss(["hello world", "drums and bass"], codes, lengths, task="music")
    # Naive: each item's frames plus an end frame, laid out slot by slot; every filled slot is a target.
    total = torch.zeros(4)
    count = torch.zeros(4)
    for b in range(2):
        n = int(lengths[b])
        layout = lm.model.pattern.layout(n + 1)
        for k in range(4):
            for s in range(layout.shape[1]):
                t = int(layout[k, s])
                if t < 0:
                    continue
                target = int(codes[b, k, t]) if t < n else cfg.num_logits - 1  # end of audio
                total[k] += F.cross_entropy(out.logits[b, k, s], torch.tensor(target))
                count[k] += 1
    assert torch.allclose(out.codebook_losses, total / count, atol=1e-5)
    assert torch.allclose(out.loss, (total / count).mean(), atol=1e-5)
    # Codes past an item's length are padding: changing them changes nothing.
    changed = codes.clone()
    changed[1, :, 3:] = (changed[1, :, 3:] + 1) % cfg.codebook_size
    again = lm.loss(["hello world", "drums and bass"], changed, lengths, task="music")
    assert torch.equal(again.loss, out.loss)


def test_training_drops_text_to_the_null_condition(make_lm):
    lm = make_lm(condition_dropout=0.5)
    ids, mask = text_batch(lm, ["hello world", "drums and bass", "she sells sea shells", "an upbeat electronic track"])
    codes = torch.randint(0, 16, (4, 4, 5), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    drop = torch.rand(4) < 0.5
    assert 0 < int(drop.sum()) < 4  # both kinds in the batch
    torch.manual_seed(1)
    lm.model.train()  # dropout=0 in the tiny config, so only the condition dropout differs from eval
    trained = lm.model(ids, mask, codes).logits
    lm.model.eval()
    expected_mask = torch.where(drop.unsqueeze(1), lm.model.null_condition(ids, mask), mask)
    expected = lm.model(ids, expected_mask, codes).logits
    plain = lm.model(ids, mask, codes).logits
    assert torch.allclose(trained, expected, atol=1e-6)
    for b in range(4):
        assert torch.allclose(trained[b], plain[b], atol=1e-6) != bool(drop[b])


def test_bad_codes_are_refused(make_lm):
    lm = make_lm()
    with pytest.raises(ValueError, match=r"codes must lie in \[0, codebook_size=16\), got values in \[16, 16\]"):
        lm.loss(["hello world"], torch.full((1, 4, 3), 16))
    with pytest.raises(ValueError, match="codes have 3 codebooks, the LM was built for num_codebooks=4"):
        lm.loss(["hello world"], torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="more than max_audio_frames=40"):
        lm.loss(["hello world"], torch.zeros(1, 4, 41, dtype=torch.long))


def test_save_load_gives_identical_logits_and_checks_the_codec(make_lm, tmp_path, text_tokenizer, fake_codec_class):
    FakeCodec = fake_codec_class
    lm = make_lm()
    lm.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "text_tokenizer.model"}
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in tmp_path.iterdir())  # readable by whoever loads it
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["codec_fingerprint"] == "fake-k4-c16" and saved["num_codebooks"] == 4 and saved["frame_rate"] == 10.0
    loaded = AudioLM.from_pretrained(tmp_path, codec=FakeCodec())
    ids, mask = text_batch(lm, ["hello world", "drums and bass"])
    steps = random_steps(lm.model, 2, 7)
    with torch.no_grad():
        assert torch.equal(loaded.model.logits(ids, mask, steps), lm.model.logits(ids, mask, steps))
    with pytest.raises(ValueError, match=r"codec_fingerprint='fake-k4-c16', the codec has codec_fingerprint='other'"):
        AudioLM.from_pretrained(tmp_path, codec=FakeCodec(fingerprint="other"))
    with pytest.raises(ValueError, match=r"num_codebooks=4, the codec has num_codebooks=8"):
        AudioLM(loaded.model, text_tokenizer, codec=FakeCodec(num_codebooks=8))


def test_half_precision_weights_halve_the_file_and_load_back_as_float32(make_lm, tmp_path, fake_codec_class):
    lm = make_lm()
    lm.save_pretrained(tmp_path / "full")
    lm.save_pretrained(tmp_path / "half", dtype=torch.float16)
    size = lambda name: (tmp_path / name / "model.safetensors").stat().st_size  # noqa: E731
    assert size("half") < 0.6 * size("full")
    loaded = AudioLM.from_pretrained(tmp_path / "half", codec=fake_codec_class())
    weights = dict(lm.model.named_parameters())
    for name, value in loaded.model.named_parameters():
        assert value.dtype == torch.float32
        assert torch.equal(value, weights[name].detach().half().float()), name  # exactly the rounded weights
    with pytest.raises(ValueError, match="floating-point dtype .* got torch.int8"):
        lm.save_pretrained(tmp_path / "bad", dtype=torch.int8)


def test_config_validates_and_presets_bind_to_the_codec(text_tokenizer, config_factory, fake_codec_class):
    tiny_config, FakeCodec = config_factory, fake_codec_class
    with pytest.raises(ValueError, match="hidden_size=30 is not divisible by num_attention_heads=4"):
        tiny_config(hidden_size=30)
    with pytest.raises(ValueError, match="unknown codebook pattern 'spiral'"):
        tiny_config(pattern="spiral")
    with pytest.raises(ValueError, match=r"condition_dropout must be in \[0, 1\), got 1.5"):
        tiny_config(condition_dropout=1.5)
    with pytest.raises(ValueError, match="bind it to a codec"):
        AudioLMModel(tiny_config())
    project_codec = FakeCodec(num_codebooks=8, codebook_size=1024, fingerprint="project")
    project_codec.frame_rate, project_codec.sample_rate = 75.0, 24_000
    for name in ("lm_tiny", "lm_small", "lm_musicgen_small"):
        preset = AudioLMConfig.from_preset(CONFIGS / f"{name}.json")
        assert preset.max_text_tokens >= 64 and preset.max_audio_frames >= 300
    tiny = AudioLM.from_config(CONFIGS / "lm_tiny.json", text_tokenizer, project_codec)
    assert tiny.config.num_codebooks == 8 and tiny.config.frame_rate == 75.0
    assert sum(p.numel() for p in tiny.model.parameters()) < 2_000_000
    small = AudioLMConfig.from_preset(CONFIGS / "lm_small.json").bound_to(project_codec, 1024, [3, 4, 5])
    D, L, F_, V = small.hidden_size, small.num_hidden_layers, small.intermediate_size, small.codebook_size
    params = L * (4 * D * D + 2 * D * F_ + 2 * D) + 8 * D * (V + 3) + 8 * D * (V + 1) + 1024 * D + D
    assert 20e6 <= params <= 40e6, params
    # The MusicGen-small preset states its codec (4 x 2048): another codec is refused, naming both values.
    with pytest.raises(ValueError, match="num_codebooks=4, the codec has num_codebooks=8"):
        AudioLM.from_config(CONFIGS / "lm_musicgen_small.json", text_tokenizer, project_codec)


def test_preset_with_unknown_key_is_refused(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"hidden_size": 64, "num_layers": 2}))
    with pytest.raises(ValueError, match=r"unknown keys \['num_layers'\]"):
        AudioLMConfig.from_preset(tmp_path / "bad.json")


def test_accelerate_prepares_and_trains_it(make_lm):
    from accelerate import Accelerator

    lm = make_lm()
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(lm.model, torch.optim.AdamW(lm.model.parameters(), lr=1e-3))
    model.train()
    ids, mask = text_batch(lm, ["hello world"])
    codes = torch.randint(0, 16, (1, 4, 5), generator=torch.Generator().manual_seed(0))
    before = model(ids, mask, codes).loss.item()
    for _ in range(5):
        loss = model(ids, mask, codes).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    assert model(ids, mask, codes).loss.item() < before
    assert math.isfinite(before)


def test_codes_to_steps_pads_past_each_items_layout(make_lm):
    lm = make_lm()
    cfg = lm.config
    codes = torch.randint(0, 16, (2, 4, 5), generator=torch.Generator().manual_seed(0))
    steps, step_mask = codes_to_steps(codes, torch.tensor([5, 2]), cfg, lm.model.pattern)
    assert steps.shape == (2, 4, 5 + 1 + 3)  # 5 frames + end frame, delays 0..3
    assert step_mask[0].all() and step_mask[1].tolist() == [True] * 6 + [False] * 3
    assert (steps[1, :, 6:] == cfg.pad_id).all()
    assert [int(steps[1, k, 2 + k]) for k in range(4)] == [cfg.eos_id] * 4  # end frame of item 1 (frame 2)
