"""Tiny models and data shared by the pipelines tests."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets import Dataset, DatasetDict, Features, List, Value

from pipelines.lm_training import train_lm
from pipelines.lm_training_config import LMTrainingConfig
from pipelines.tokenize.storage import codec_metadata, metadata_description
from tokenizer import CodecConfig, RVQCodec


def fitted_codec(strides: tuple[int, ...] = (2, 4), init_samples: int = 800, **quantizer) -> RVQCodec:
    """A tiny 8 kHz codec (4 x 32 codes by default) whose codebooks were k-means initialised on noise, in eval
    mode: its codes spread over the codebooks. The same for the same arguments."""
    torch.manual_seed(0)
    config = CodecConfig(sample_rate=8000, n_filters=4, strides=strides, dimension=16,
                         quantizer={"num_codebooks": 4, "codebook_size": 32, **quantizer})
    codec = RVQCodec(config)
    codec.train()(torch.randn(2, 1, init_samples) * 0.1)  # k-means init
    return codec.eval()


def tokenized_rows(codec: RVQCodec, n: int) -> Dataset:
    """`n` rows as `rvqaudio tokenize` writes them (random codes K x T, text, duration) with `codec`'s metadata."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 20, n)
    features = Features({"codes": List(List(Value("int16"))), "text": Value("string"), "duration": Value("float64")})
    info = datasets.DatasetInfo(description=metadata_description(codec_metadata(codec, codec.num_codebooks)),
                                features=features)
    return Dataset.from_dict(
        {"codes": [rng.integers(0, codec.codebook_size, (codec.num_codebooks, int(t))).tolist() for t in lengths],
         "text": [f"a calm piano melody {i}" for i in range(n)], "duration": [t / codec.frame_rate for t in lengths]},
        features=features, info=info)


def train_tiny_lm(root: Path, codec: RVQCodec, run: str) -> LMTrainingConfig:
    """A 2-step `train_lm` run into `root / run` (checkpoint and final/ at step 2) of a tiny LM on 12 random rows
    of `codec`'s codes; its inputs stay in `root` (codec/, data/, lm.json). Returns the training config."""
    codec.save_pretrained(root / "codec")
    DatasetDict({"train": tokenized_rows(codec, 12)}).save_to_disk(str(root / "data"))
    (root / "lm.json").write_text(json.dumps(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=64, max_text_tokens=64, max_audio_frames=40,
                                                  condition_dropout=0.0, dropout=0.0)))
    training = LMTrainingConfig(batch_size=4, max_steps=2, warmup_steps=1, lr=3e-3, eval_every=2, save_every=2,
                                log_every=1, text_vocab_size=300, max_frames=20, seed=0)
    train_lm(root / "lm.json", root / "data", root / run, codec=root / "codec", training=training)
    return training
