"""bf16 autocast on the CPU, as `training.mixed_precision: "bf16"` runs it: the codec's nearest-code search and EMA
codebooks stay float32, a fixed batch's losses are within a stated tolerance of float32's, both trainers run with
finite losses and float32 weights, and a trained tiny LM decodes the same greedy codes.

accelerate autocasts a prepared model's forward pass with `torch.autocast("cpu", dtype=torch.bfloat16)`; the tests
on fixed weights use that context directly, the training runs go through accelerate.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from accelerate.state import AcceleratorState
from datasets import Dataset, DatasetDict, Features, List, Value
from safetensors.torch import load_file

from lm import AudioLM, AudioLMConfig, GenerationConfig, TextTokenizer
from lm.objective import LMObjective
from pipelines.lm_data import BatchPlan, LMExamples, collate
from pipelines.lm_training import train_lm
from pipelines.lm_training_config import LMTrainingConfig
from pipelines.tokenize.storage import codec_metadata, metadata_description
from tokenizer import CodecConfig, RVQCodec
from tokenizer.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss
from tokenizer.quantization.vq import EMAVectorQuantizer
from tokenizer.training import train_codec

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["hello world", "a calm piano melody", "drums and bass", "she sells sea shells"]


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.fixture
def fresh_accelerate():
    """accelerate keeps one process-wide state whose mixed precision cannot change once set: start and leave clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def tone(seconds: float, sample_rate: int, f0: float = 220.0) -> torch.Tensor:
    """A two-partial tone with an envelope, (1, N)."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    wav = 0.4 * torch.sin(2 * math.pi * f0 * t) + 0.2 * torch.sin(2 * math.pi * 3 * f0 * t + 1.0)
    return (wav * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t)))[None]


def tiny_codec_config(**quantizer) -> CodecConfig:
    return CodecConfig(sample_rate=8000, n_filters=4, strides=(2, 4), dimension=16, n_residual_layers=1,
                       quantizer={"num_codebooks": 4, "codebook_size": 32, "kmeans_iters": 5, **quantizer})


# ---- the quantizer ---------------------------------------------------------------------------------------

def test_ema_codes_and_codebook_updates_are_float32_and_unchanged_under_bf16_autocast():
    torch.manual_seed(0)
    level = EMAVectorQuantizer(16, 64, kmeans_init=False, dead_code_threshold=0.0)
    latents = torch.randn(2, 16, 200)  # (B, D, T)
    with torch.no_grad():
        plain = level.encode(latents)
        with bf16():
            assert torch.equal(level.encode(latents), plain)
            # A bf16 latent, as the encoder gives under autocast, is searched in float32 too.
            assert torch.equal(level.encode(latents.bfloat16()), level.encode(latents.bfloat16().float()))
    level.train()
    start = {k: v.clone() for k, v in level.state_dict().items()}
    level(latents)
    expected = {k: v.clone() for k, v in level.state_dict().items()}
    level.load_state_dict(start)
    with bf16():
        result = level(latents)
    assert torch.equal(result.codes, plain)
    for name in ("embed", "embed_sum", "cluster_size"):
        assert getattr(level, name).dtype == torch.float32
        assert torch.equal(getattr(level, name), expected[name]), name  # the same EMA step, bit for bit


# ---- the codec on a fixed batch ----------------------------------------------------------------------------

# Relative difference of the codec's reconstruction loss (mel + STFT + commitment) in bf16 from float32, same weights
# and batch. Measured on this 60-step fit, seeds 0-2: 0.3-0.6% (the tone), 0.9-2.2% with a 1% noise floor added.
# bf16 keeps 8 bits of mantissa: the decoded audio carries rounding noise about 48 dB down, which the log-spectral
# losses see in quiet bins, and a latent near the boundary of two codes can land in the other one.
CODEC_LOSS_TOLERANCE = 0.03


def test_codec_losses_in_bf16_are_within_the_stated_tolerance_of_float32():
    torch.manual_seed(0)
    codec = RVQCodec(tiny_codec_config()).train()
    clip = tone(0.5, 8000)[None]  # (1, 1, N)
    batch = torch.cat([clip, clip.roll(1000, -1)])
    optimizer = torch.optim.Adam(codec.parameters(), lr=3e-3)
    for _ in range(60):  # fitted a little: an untrained decoder's output is noise, whose loss means nothing
        out = codec(batch)
        loss = (out.audio - batch).abs().mean() + out.commit_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mel, stft = MultiScaleMelLoss(8000), MultiResolutionSTFTLoss()
    weights = {k: v.clone() for k, v in codec.state_dict().items()}
    losses = {}
    for precision in ("fp32", "bf16"):
        codec.load_state_dict(weights)
        torch.manual_seed(1)  # the same quantizer dropout
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = codec(batch)
        audio = out.audio.float()
        losses[precision] = float(mel(audio, batch) + stft(audio, batch) + out.commit_loss.float())
        assert {v.dtype for k, v in codec.state_dict().items() if "quantizer" in k and v.is_floating_point()} \
            == {torch.float32}
    assert math.isfinite(losses["bf16"])
    assert abs(losses["bf16"] - losses["fp32"]) / losses["fp32"] < CODEC_LOSS_TOLERANCE, losses


# ---- the trainers through accelerate ----------------------------------------------------------------------

def test_train_codec_in_bf16_on_a_cpu_has_finite_losses_and_float32_weights(tmp_path, fresh_accelerate):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, f0 in (("a.wav", 110.0), ("b.wav", 190.0)):
        sf.write(corpus / name, tone(1.0, 16000, f0)[0].numpy(), 16000)
    config = CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json")
    config.training = dataclasses.replace(config.training, max_steps=3, adversarial_start_step=1, log_every=1,
                                          save_every=3, mixed_precision="bf16")
    final = train_codec(config, corpus, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:  # the reconstruction terms, and from step 2 the adversarial ones
        terms = [record[k] for k in ("loss", "mel", "stft", "commit", "grad_norm")]
        terms += [record[k] for k in ("disc", "adv", "feat") if record["step"] > 1]
        assert all(math.isfinite(v) for v in terms), record
    weights = load_file(final / "model.safetensors")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    codebooks = [v for k, v in weights.items() if k.endswith(".embed")]
    assert len(codebooks) == 4 and all(bool(c.abs().sum() > 0) for c in codebooks)  # k-means initialised


def _lm_files(root: Path) -> dict[str, Path]:
    """A tiny codec folder, 12 rows of random codes as `rvqaudio tokenize` writes them, and an LM preset."""
    torch.manual_seed(0)
    codec = RVQCodec(tiny_codec_config()).eval()  # untrained: only its fingerprint and shape matter
    codec.save_pretrained(root / "codec")
    rng = np.random.default_rng(0)
    features = Features({"codes": List(List(Value("int16"))), "text": Value("string")})
    info = datasets.DatasetInfo(description=metadata_description(codec_metadata(codec, codec.num_codebooks)),
                                features=features)
    rows = {"codes": [rng.integers(0, 32, (4, int(t))).tolist() for t in rng.integers(5, 20, 12)],
            "text": [TEXTS[i % len(TEXTS)] for i in range(12)]}
    DatasetDict({"train": Dataset.from_dict(rows, features=features, info=info)}).save_to_disk(str(root / "data"))
    (root / "lm.json").write_text(json.dumps(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=64, max_text_tokens=64, max_audio_frames=40,
                                                  condition_dropout=0.0, dropout=0.0)))
    return {"codec": root / "codec", "data": root / "data", "lm": root / "lm.json"}


# The first step's logged loss is the initial weights' loss on the first batch: the same in both runs. Measured
# relative difference 1e-5 and below (a tiny LM's loss sits near log(codebook size): its logits are small).
LM_LOSS_TOLERANCE = 1e-3


def test_train_lm_in_bf16_on_a_cpu_gives_the_float32_first_loss_and_float32_weights(tmp_path):
    files = _lm_files(tmp_path)
    logs, finals = {}, {}
    for precision in ("no", "bf16"):
        AcceleratorState._reset_state(reset_partial_state=True)
        training = LMTrainingConfig(batch_size=4, max_steps=3, warmup_steps=1, lr=3e-3, eval_every=3, save_every=3,
                                    log_every=1, text_vocab_size=300, max_frames=20, seed=0,
                                    mixed_precision=precision)
        run = tmp_path / precision
        finals[precision] = train_lm(files["lm"], files["data"], run, codec=files["codec"], training=training)
        logs[precision] = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    AcceleratorState._reset_state(reset_partial_state=True)
    steps = [r for r in logs["bf16"] if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    evaluations = [r for r in logs["bf16"] if "eval_loss" in r]
    assert evaluations and all(math.isfinite(r["eval_loss"]) for r in evaluations)
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in steps)
    first = {p: next(r["loss"] for r in logs[p] if "loss" in r) for p in logs}
    assert abs(first["bf16"] - first["no"]) / first["no"] < LM_LOSS_TOLERANCE, first
    weights = load_file(finals["bf16"] / "model.safetensors")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}


# ---- inference -------------------------------------------------------------------------------------------

def test_a_trained_tiny_lms_greedy_codes_are_the_same_in_bf16():
    """A fitted LM's greedy codes in bf16 autocast equal float32's. (An untrained tiny LM's next-code distributions
    are near-uniform: its top two logits often differ by less than bf16's rounding, and a differing code changes all
    that follows. Measured on 10 random tiny LMs over 20 frames: 6 identical, the others 60-98% equal.)"""
    torch.manual_seed(0)
    codec = RVQCodec(tiny_codec_config()).eval()
    rng = np.random.default_rng(6)
    examples = LMExamples.from_dataset(Dataset.from_dict(
        {"codes": [rng.integers(0, 32, (4, 16)).tolist() for _ in TEXTS[:3]], "text": TEXTS[:3]}), task="music")
    tokenizer = TextTokenizer.train(examples.texts * 8, vocab_size=300, seed=0)
    lm = AudioLM.from_config(AudioLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=64, max_audio_frames=40, condition_dropout=0.0,
                                           dropout=0.0), tokenizer, codec)
    objective = LMObjective(lm.model)
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-2)
    batch = collate(examples, BatchPlan(examples.frames, 3, 40, seed=0).batch(0))
    ids, mask = lm.encode_texts(batch.texts, batch.tasks)
    for _ in range(80):  # memorise the three items: clear winners at every step
        nll, counted = objective(ids, mask, batch.drop, batch.codes, batch.code_lengths, batch.cut)
        optimizer.zero_grad()
        (nll.sum() / counted.sum()).backward()
        optimizer.step()
    lm.model.eval()
    config = GenerationConfig(duration=0.03, top_k=1, guidance_scale=1.0, task="music", seed=0)  # 30 frames at most
    plain = lm.generate(batch.texts, config)
    with bf16():
        half = lm.generate(batch.texts, config)
    assert torch.equal(plain, batch.codes)  # fitted: it says back the items, then ends them
    assert torch.equal(half, plain)
