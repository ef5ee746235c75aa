"""Tiny models and data shared by the pipelines tests."""

from __future__ import annotations

import datasets
import numpy as np
import torch
from datasets import Dataset, Features, List, Value

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
