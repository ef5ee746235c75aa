"""The codec fingerprint names the code space, weights included: two codecs of one config differ, a half-precision
copy and decoder variants do not; LMs and codes made for another codec are refused, those carrying the fingerprint
of rvqaudio 0.1.0 (the config's alone) are accepted with a warning."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from lm import AudioLMConfig, TextTokenizer
from pipelines.defaults import DEFAULT_CODEC_DIR, LM_TASKS, default_lm_dir
from pipelines.lm_data import check_codec_metadata
from tokenizer import CodecConfig, RVQCodec

TEXTS = ["a calm piano melody", "drums and bass", "hello world", "an upbeat electronic track"] * 4


def _config() -> CodecConfig:
    return CodecConfig(sample_rate=8000, n_filters=4, strides=(2, 4), dimension=16,
                       quantizer={"num_codebooks": 4, "codebook_size": 32})


def _codec(seed: int) -> RVQCodec:
    torch.manual_seed(seed)
    codec = RVQCodec(_config())
    codec.train()(torch.randn(2, 1, 800, generator=torch.Generator().manual_seed(seed)) * 0.1)  # k-means init
    return codec.eval()


def test_codecs_of_one_config_with_other_weights_have_other_fingerprints():
    a, b = _codec(0), _codec(1)
    assert a.fingerprint != b.fingerprint
    assert a.legacy_fingerprint == b.legacy_fingerprint == a.config.fingerprint
    assert a.fingerprint == _codec(0).fingerprint  # a function of the config and the weights alone
    assert len(a.fingerprint) == 16 and a.fingerprint != a.legacy_fingerprint


def test_a_half_precision_copy_keeps_the_fingerprint(tmp_path):
    codec = _codec(0)
    codec.save_pretrained(tmp_path / "half", dtype=torch.float16)
    codec.save_pretrained(tmp_path / "full")
    half, full = RVQCodec.from_pretrained(tmp_path / "half"), RVQCodec.from_pretrained(tmp_path / "full")
    assert next(half.parameters()).dtype == torch.float32
    assert not all(torch.equal(x, y) for x, y in zip(half.state_dict().values(), codec.state_dict().values()))
    assert half.fingerprint == full.fingerprint == codec.fingerprint


def test_training_the_encoder_changes_the_fingerprint_and_the_decoder_does_not():
    codec = _codec(0)
    before = codec.fingerprint
    with torch.no_grad():  # a decoder fine-tune (a decoder variant): the same codes
        for p in codec.decoder.parameters():
            p.add_(0.05)
    assert codec.fingerprint == before
    optimizer = torch.optim.AdamW(codec.encoder.parameters(), lr=1e-2)
    out = codec.train()(torch.randn(2, 1, 800, generator=torch.Generator().manual_seed(5)) * 0.1)
    (out.audio.pow(2).mean() + out.commit_loss).backward()
    optimizer.step()
    codec.eval()
    stepped = codec.fingerprint
    assert stepped != before
    assert stepped == copy.deepcopy(codec).fingerprint  # the cached value is the one computed afresh
    codec.load_state_dict(_codec(1).state_dict())  # weights copied in place
    assert codec.fingerprint == _codec(1).fingerprint


def _lm_config(codec) -> AudioLMConfig:
    tokenizer = TextTokenizer.train(TEXTS, vocab_size=300, seed=0)
    config = AudioLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           max_text_tokens=64, max_audio_frames=40)
    return config.bound_to(codec, tokenizer.vocab_size, [tokenizer.eos_id])


def test_an_lm_of_another_codec_of_the_same_config_is_refused():
    a, b = _codec(0), _codec(1)
    config = _lm_config(a)
    assert config.codec_fingerprint == a.fingerprint
    config.check_codec(a)
    with pytest.raises(ValueError, match=rf"codec mismatch: the LM was built for codec_fingerprint="
                                         rf"'{a.fingerprint}', the codec has codec_fingerprint='{b.fingerprint}'"):
        config.check_codec(b)


def test_an_lm_or_dataset_carrying_the_legacy_fingerprint_is_accepted_with_a_warning():
    codec = _codec(0)
    config = _lm_config(codec)
    config.codec_fingerprint = codec.legacy_fingerprint  # as rvqaudio 0.1.0 stored it
    with pytest.warns(UserWarning, match=rf"this LM's config carries the codec fingerprint '{codec.legacy_fingerprint}'"
                                         r" of an older rvqaudio.*re-encode \(or re-save\)"):
        config.check_codec(codec)
    config.codec_fingerprint = _codec(1).fingerprint
    with pytest.raises(ValueError, match="codec mismatch"):
        config.check_codec(codec)

    from datasets import Dataset, DatasetInfo

    from pipelines.tokenize.storage import codec_metadata, metadata_description

    meta = {**codec_metadata(codec, 4), "fingerprint": codec.legacy_fingerprint}
    old = Dataset.from_dict({"x": [1]}, info=DatasetInfo(description=metadata_description(meta)))
    with pytest.warns(UserWarning, match="the old data carries the codec fingerprint"):
        check_codec_metadata(old, codec, "the old data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_codec_metadata(Dataset.from_dict({"x": [1]}, info=DatasetInfo(description=metadata_description(
            codec_metadata(codec, 4)))), codec)
    meta["fingerprint"] = _codec(1).fingerprint
    with pytest.raises(ValueError, match="codec mismatch: the other data holds codes of codec fingerprint"):
        check_codec_metadata(Dataset.from_dict({"x": [1]}, info=DatasetInfo(description=metadata_description(meta))), codec,
                             "the other data")


def test_the_bundled_lms_store_the_bundled_codecs_fingerprint():
    codec = RVQCodec.from_pretrained(DEFAULT_CODEC_DIR)
    speech = RVQCodec.from_pretrained(DEFAULT_CODEC_DIR, variant="speech")
    assert speech.fingerprint == codec.fingerprint  # a decoder variant reads the same codes
    for task in LM_TASKS:
        stored = json.loads((default_lm_dir(task) / "config.json").read_text())["codec_fingerprint"]
        assert stored == codec.fingerprint != codec.legacy_fingerprint, task
