"""Properties of the codec: shapes, round trips, quantizer invariants, chunking and checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tokenizer import CodecConfig, CodesError, ConfigError, RVQCodec
from tokenizer.quantization import ResidualVectorQuantizer

from .conftest import move_decoder, tiny_config, tone

REPO = Path(__file__).resolve().parents[2]


# ---- config --------------------------------------------------------------------------------------

def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(causal=False, activation="snake", quantizer={"kind": "factorized", "codebook_dim": 4})
    path = tmp_path / "codec.json"
    config.to_json_file(path)
    assert CodecConfig.from_json_file(path) == config
    assert config.hop_length == 8 and config.frame_rate == 1000.0
    assert config.bitrate(2) == pytest.approx(2 * 5 * 1000 / 1000)  # 2 codebooks x log2(32) bits x 1000 Hz


def test_fingerprint_ignores_training_settings_but_not_the_code_space():
    a = tiny_config()
    b = tiny_config()
    b.training.learning_rate = 1.0
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != tiny_config(quantizer={"codebook_size": 64}).fingerprint


# ---- shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_samples", [8, 9, 100, 4000, 4003])
def test_frame_counts_and_output_lengths(codec, num_samples):
    wav = torch.randn(2, 1, num_samples) * 0.1
    codes = codec.encode(wav)
    frames = math.ceil(num_samples / codec.hop_length)
    assert codes.shape == (2, codec.num_codebooks, frames) and codes.dtype == torch.long
    assert codec.decode(codes).shape == (2, 1, frames * codec.hop_length)
    assert codec(wav).audio.shape == wav.shape


def test_encode_accepts_1d_2d_and_3d_input(codec):
    wav = torch.randn(400) * 0.1
    expected = codec.encode(wav[None, None])
    assert torch.equal(codec.encode(wav), expected)
    assert torch.equal(codec.encode(wav[None]), expected)


def test_encode_resamples_to_the_codec_rate(codec):
    wav = torch.randn(1, 1, 16000) * 0.1  # one second at 16 kHz
    codes = codec.encode(wav, sample_rate=16000)
    assert codes.shape[-1] == math.ceil(8000 / codec.hop_length)


def test_stereo_codec_takes_stereo_and_upmixes_mono():
    torch.manual_seed(0)
    codec = RVQCodec(tiny_config(channels=2)).eval()
    stereo = torch.randn(1, 2, 800) * 0.1
    assert codec.decode(codec.encode(stereo)).shape == (1, 2, 800)
    mono = stereo[:, :1]
    assert torch.equal(codec.encode(mono), codec.encode(mono.expand(-1, 2, -1)))


@pytest.mark.parametrize("num_codebooks", [1, 2, 4])
def test_encode_with_fewer_codebooks_is_a_prefix(codec, num_codebooks):
    codec.train()
    codec(torch.randn(2, 1, 800) * 0.1)  # k-means init of the codebooks
    codec.eval()
    wav = torch.randn(1, 1, 800) * 0.1
    full = codec.encode(wav)
    assert torch.equal(codec.encode(wav, num_codebooks=num_codebooks), full[:, :num_codebooks])


# ---- quantizer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ema", "factorized"])
def test_straight_through_gradient_reaches_the_input(kind):
    torch.manual_seed(0)
    config = tiny_config(quantizer={"kind": kind, "quantizer_dropout": 0.0}).quantizer
    rvq = ResidualVectorQuantizer(16, config).train()
    x = torch.randn(2, 16, 10, requires_grad=True)
    rvq(x).quantized.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    if kind == "ema":
        # The whole RVQ is the identity for the backward pass: d(sum quantized)/dx = 1.
        assert torch.allclose(x.grad, torch.ones_like(x))
    else:
        assert x.grad.abs().sum() > 0
        assert rvq.levels[0].in_proj.parametrizations.weight.original1.grad is not None


@pytest.mark.parametrize("kind", ["ema", "factorized"])
def test_eval_quantized_latent_equals_lookup_of_its_codes(kind):
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(16, tiny_config(quantizer={"kind": kind}).quantizer)
    rvq.train()(torch.randn(4, 16, 20))  # initialise the codebooks
    rvq.eval()
    x = torch.randn(3, 16, 7)
    result = rvq(x)
    assert torch.equal(result.quantized, rvq.decode(result.codes))
    assert torch.equal(result.codes, rvq.encode(x))


def test_kmeans_init_places_codes_on_the_data():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(16, tiny_config(quantizer={"num_codebooks": 1, "codebook_size": 8}).quantizer)
    # Data drawn from 8 tight clusters: after k-means init the first level's error is tiny.
    centers = torch.randn(8, 16) * 3
    x = (centers[torch.randint(0, 8, (200,))] + 0.01 * torch.randn(200, 16)).T[None]  # (1, 16, 200)
    rvq.train()(x)
    rvq.eval()
    error = (rvq(x).quantized - x).pow(2).mean() / x.pow(2).mean()
    assert error < 0.05


def test_dead_codes_are_replaced_and_reported():
    torch.manual_seed(0)
    config = tiny_config(quantizer={"num_codebooks": 1, "codebook_size": 16, "kmeans_init": False,
                                    "dead_code_threshold": 1.0}).quantizer
    rvq = ResidualVectorQuantizer(4, config).train()
    level = rvq.levels[0]
    # Random codes far from the data: most never win a vector and must be replaced by data vectors.
    level.embed.mul_(100)
    x = torch.randn(2, 4, 50)
    rvq(x)
    data = x.transpose(1, 2).reshape(-1, 4)
    dists = torch.cdist(level.embed, data).min(dim=1).values
    assert (dists < 1e-5).sum() >= 8
    stats = rvq.stats()
    assert len(stats) == 1 and set(stats[0]) == {"usage", "perplexity", "dead_fraction"}
    assert stats[0]["dead_fraction"] >= 0.5  # the far-away codes were found dead at this step
    assert 1.0 <= stats[0]["perplexity"] <= 16


def test_quantizer_dropout_uses_fewer_codebooks_for_some_items():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(16, tiny_config(quantizer={"quantizer_dropout": 1.0}).quantizer).train()
    counts = rvq(torch.randn(64, 16, 5)).num_codebooks
    assert counts.min() == 1 and counts.max() == 4
    rvq.eval()
    assert bool((rvq(torch.randn(8, 16, 5)).num_codebooks == 4).all())


# ---- a trained tiny codec ----------------------------------------------------------------------------

def test_round_trip_reconstructs_the_trained_clip(trained_codec):
    clip = tone(0.5)[None]
    recon = trained_codec.decode(trained_codec.encode(clip))[..., : clip.shape[-1]]
    snr = 10 * torch.log10(clip.pow(2).sum() / (recon - clip).pow(2).sum())
    assert snr > 5.0, f"round-trip SNR {snr:.1f} dB"


def test_error_does_not_grow_with_more_codebooks(trained_codec):
    clip = tone(0.5)[None]
    codes = trained_codec.encode(clip)
    errors = []
    for k in range(1, trained_codec.num_codebooks + 1):
        recon = trained_codec.decode(codes[:, :k])[..., : clip.shape[-1]]
        assert recon.shape == clip.shape and bool(torch.isfinite(recon).all())
        errors.append(float((recon - clip).pow(2).mean()))
    assert all(b <= a * 1.05 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0]


def test_chunked_encode_and_decode_equal_one_pass_for_a_causal_codec(trained_codec):
    assert trained_codec.config.causal and trained_codec.config.lstm_layers == 0
    long = torch.cat([tone(0.5), tone(0.5).flip(-1), tone(0.7)], dim=-1)[None]  # (1, 1, 13600)
    whole = trained_codec.encode(long)
    whole_audio = trained_codec.decode(whole)
    old = trained_codec.config.chunk_seconds
    try:
        trained_codec.config.chunk_seconds = 0.123  # 123 frames per chunk, chunk edges mid-clip
        assert torch.equal(trained_codec.encode(long), whole)
        assert torch.allclose(trained_codec.decode(whole), whole_audio, atol=1e-5)
    finally:
        trained_codec.config.chunk_seconds = old


def test_chunked_encode_equals_one_pass_for_a_non_causal_codec():
    torch.manual_seed(0)
    codec = RVQCodec(tiny_config(causal=False))
    codec.train()(tone(0.5)[None])
    codec.eval()
    long = tone(1.7)[None]
    whole = codec.encode(long)
    codec.config.chunk_seconds = 0.2
    assert torch.equal(codec.encode(long), whole)


# ---- checkpoints ---------------------------------------------------------------------------------

def assert_saved_equals_loaded(codec: RVQCodec, folder) -> None:
    codec.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = RVQCodec.from_pretrained(folder)
    clip = tone(0.3)[None]
    codes = codec.encode(clip)
    assert torch.equal(loaded.encode(clip), codes)
    assert torch.equal(loaded.decode(codes), codec.decode(codes))
    assert loaded.fingerprint == codec.fingerprint


def test_save_then_load_gives_bit_identical_codes_and_audio(trained_codec, tmp_path):
    assert_saved_equals_loaded(trained_codec, tmp_path / "codec")


def test_fp16_checkpoint_is_smaller_and_loads_as_float32(trained_codec, tmp_path):
    trained_codec.save_pretrained(tmp_path / "fp32")
    trained_codec.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("fp16") < 0.6 * size("fp32")
    loaded = RVQCodec.from_pretrained(tmp_path / "fp16")
    assert next(loaded.parameters()).dtype == torch.float32
    clip = tone(0.3)[None]
    assert (loaded.encode(clip) == trained_codec.encode(clip)).float().mean() > 0.9


def test_saving_over_an_existing_checkpoint_replaces_it(trained_codec, codec, tmp_path):
    codec.save_pretrained(tmp_path / "c")
    trained_codec.save_pretrained(tmp_path / "c")
    loaded = RVQCodec.from_pretrained(tmp_path / "c")
    clip = tone(0.2)[None]
    assert torch.equal(loaded.encode(clip), trained_codec.encode(clip))
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary folders left behind


def test_failed_save_leaves_no_partial_checkpoint(codec, tmp_path, monkeypatch):
    import tokenizer.checkpoint as checkpoint

    def broken_save_file(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        codec.save_pretrained(tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def _other_decoder(folder: Path, seed: int = 1) -> RVQCodec:
    """The codec saved in `folder` with its decoder's weights moved: what a decoder fine-tune on other audio gives."""
    return move_decoder(RVQCodec.from_pretrained(folder), seed)


def test_a_decoder_variant_decodes_the_same_codes_with_its_own_decoder(trained_codec, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "codec"
    trained_codec.save_pretrained(folder, dtype=torch.float16)
    base = RVQCodec.from_pretrained(folder)
    other = _other_decoder(folder)
    assert RVQCodec.decoder_variants(folder) == []
    path = other.save_decoder_variant(folder, "speech", dtype=torch.float16)
    assert path == folder / "decoder.speech.safetensors" and RVQCodec.decoder_variants(folder) == ["speech"]
    stored = load_file(str(path))
    assert set(stored) == {k for k in other.state_dict() if k.startswith("decoder.")}  # the decoder only
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert path.stat().st_size < (folder / "model.safetensors").stat().st_size

    speech = RVQCodec.from_pretrained(folder, variant="speech")
    state, own = speech.state_dict(), base.state_dict()
    for k, v in state.items():  # the variant's decoder (as stored), the folder's encoder and codebooks
        assert torch.equal(v, stored[k].to(v.dtype) if k.startswith("decoder.") else own[k]), k
    clip = tone(0.4)[None]
    codes = base.encode(clip)
    assert torch.equal(speech.encode(clip), codes)  # the same codes whichever decoder reads them
    decoded = speech.decode(codes)
    assert torch.allclose(decoded, other.decode(codes), atol=1e-2)  # float16 storage only
    assert not torch.allclose(decoded, base.decode(codes), atol=1e-2)
    assert torch.equal(RVQCodec.from_pretrained(folder).decode(codes), base.decode(codes))  # the folder's own decoder
    assert speech.fingerprint == base.fingerprint


def test_a_failed_variant_save_leaves_the_folder_as_it_was(trained_codec, tmp_path, monkeypatch):
    import tokenizer.checkpoint as checkpoint

    folder = tmp_path / "codec"
    trained_codec.save_pretrained(folder)
    before = sorted(p.name for p in folder.iterdir())

    def broken_save_file(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        _other_decoder(folder).save_decoder_variant(folder, "speech")
    assert sorted(p.name for p in folder.iterdir()) == before and RVQCodec.decoder_variants(folder) == []


def test_a_decoder_variant_must_keep_the_folders_codes_and_config(trained_codec, tmp_path):
    from safetensors.torch import save_file

    from tokenizer import CheckpointError

    folder = tmp_path / "codec"
    trained_codec.save_pretrained(folder)
    other = _other_decoder(folder)
    with pytest.raises(CheckpointError, match=r"no decoder variant 'speech' \(decoder.speech.safetensors\); it has no"):
        RVQCodec.from_pretrained(folder, variant="speech")
    other.save_decoder_variant(folder, "speech")
    with pytest.raises(CheckpointError, match=r"no decoder variant 'music'.*it has \['speech'\]"):
        RVQCodec.from_pretrained(folder, variant="music")
    with pytest.raises(CheckpointError, match=r"letters, digits.*got '../x'"):
        other.save_decoder_variant(folder, "../x")
    moved = RVQCodec.from_pretrained(folder)
    with torch.no_grad():
        next(moved.encoder.parameters()).add_(0.01)
    with pytest.raises(CheckpointError, match=r"encoder or codebooks differ .*\['encoder\..*codes would differ"):
        moved.save_decoder_variant(folder, "moved")
    rechunked = RVQCodec(CodecConfig.from_dict({**trained_codec.config.to_dict(), "chunk_seconds": 3.0}))
    rechunked.load_state_dict(trained_codec.state_dict())
    with pytest.raises(CheckpointError, match=r"config differs from this codec's in \['chunk_seconds'\]"):
        rechunked.save_decoder_variant(folder, "rechunked")
    assert RVQCodec.decoder_variants(folder) == ["speech"]  # nothing written by the refusals
    # A variant file that reaches beyond the decoder, or does not fit it, is refused when read.
    save_file({"encoder.model.0.conv.bias": torch.zeros(4)}, str(folder / "decoder.bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"does not fit .*not this codec's decoder \['encoder.model.0.conv.bias"):
        RVQCodec.from_pretrained(folder, variant="bad")
    key = next(k for k in other.state_dict() if k.startswith("decoder."))
    save_file({key: torch.zeros(3, 1, 1)}, str(folder / "decoder.bad.safetensors"))
    with pytest.raises(CheckpointError, match=rf"other shapes for \['{key}'\]"):
        RVQCodec.from_pretrained(folder, variant="bad")
    trained_codec.save_pretrained(folder)  # re-saving the folder's codec replaces the folder, variants too
    assert RVQCodec.decoder_variants(folder) == []


def test_a_decoder_variant_carries_its_own_phase_settings(tmp_path):
    """A decoder fine-tuned with other phase settings (here learned edge offsets, where the folder's decoder holds
    them at zero) is a variant of the same codes: it decodes with its own settings, the folder's with its own."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tokenizer import CheckpointError

    torch.manual_seed(0)
    def config(offsets: bool = False, **spectral) -> CodecConfig:
        return spectral_config(sample_rate=24000, strides=(4, 80), spectral={
            "n_fft": 1280, "phase": {"kind": "harmonic_source", "edge": {"offsets": offsets}}, **spectral})

    base = RVQCodec(config())
    base.train()(torch.randn(2, 1, 24000) * 0.1)
    with torch.no_grad():  # voicing logit centred: voiced and unvoiced frames, hence edges
        base.decoder.phase.pitch_head[-1].bias[-1] = 0.0
    folder = tmp_path / "codec"
    base.save_pretrained(folder)
    tuned = RVQCodec(config(offsets=True))
    missing, unexpected = tuned.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("decoder.phase.edge_offset.") for k in missing)
    with torch.no_grad():
        torch.nn.init.normal_(tuned.decoder.phase.edge_offset.weight)
    tuned.eval()
    path = tuned.save_decoder_variant(folder, "speech")
    with safe_open(str(path), framework="pt") as f:
        assert any(k.startswith("decoder.phase.edge_offset.") for k in f.keys())
    described = json.loads((folder / "decoder.speech.json").read_text())
    assert described["code_space"] == base.fingerprint
    assert described["config"]["spectral"]["phase"] == {"kind": "harmonic_source", "edge": {"offsets": True},
                                                        "voiced": None}

    speech, own = RVQCodec.from_pretrained(folder, variant="speech"), RVQCodec.from_pretrained(folder)
    assert speech.config.spectral.phase.edge.offsets and not own.config.spectral.phase.edge.offsets
    assert speech.fingerprint == own.fingerprint == base.fingerprint
    clip = torch.randn(1, 1, 2 * 24000) * 0.1
    codes = own.encode(clip)
    assert torch.equal(speech.encode(clip), codes)
    assert torch.equal(speech.decode(codes), tuned.decode(codes))
    assert not torch.allclose(speech.decode(codes), own.decode(codes), atol=1e-3)  # the offsets matter
    assert torch.equal(own.decode(codes), base.eval().decode(codes))
    # A setting outside the phase ones changes the decoder's shape or the codes: refused, naming it.
    wider = RVQCodec(config(hidden_dim=48))
    with pytest.raises(CheckpointError, match=r"differs from this codec's in \['spectral.hidden_dim'\]"):
        wider.save_decoder_variant(folder, "wider")
    # A variant file whose settings are not phase settings is refused when read.
    tensors = {k: v for k, v in tuned.state_dict().items() if k.startswith("decoder.")}
    save_file(tensors, str(folder / "decoder.bad.safetensors"),
              metadata={"decoder_settings": '{"spectral": {"n_fft": 64}}'})
    with pytest.raises(CheckpointError, match=r"decoder.bad.safetensors.*'decoder_settings' metadata is not decoder "
                                              r"phase settings"):
        RVQCodec.from_pretrained(folder, variant="bad")


def test_a_decoder_variant_with_a_wider_voiced_residual_loads_beside_a_folder_without_one(tmp_path):
    """`voiced_offsets` with a hidden branch (`voiced_offset_hidden`) are phase settings too: a variant carrying
    them (and the branch's layers) reads back as saved, over a folder whose decoder has neither."""
    from safetensors import safe_open

    torch.manual_seed(0)
    def config(**phase) -> CodecConfig:
        return spectral_config(sample_rate=24000, strides=(4, 80), spectral={
            "n_fft": 1280, "phase": {"kind": "harmonic_source", **phase}})

    base = RVQCodec(config()).eval()
    folder = base.save_pretrained(tmp_path / "codec")
    wide = RVQCodec(config(voiced={"hidden": 8}))
    wide.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        wide.decoder.phase.pitch_head[-1].bias[-1] = 0.0  # the voicing logit centred: some frames voiced
        torch.nn.init.normal_(wide.decoder.phase.voiced_offset_mlp[-1].weight)
    path = wide.eval().save_decoder_variant(folder, "speech")
    with safe_open(str(path), framework="pt") as f:
        assert any(k.startswith("decoder.phase.voiced_offset_mlp.") for k in f.keys())
    described = json.loads((folder / "decoder.speech.json").read_text())
    assert described["config"]["spectral"]["phase"] == {"kind": "harmonic_source", "edge": None,
                                                        "voiced": {"hidden": 8}}
    speech = RVQCodec.from_pretrained(folder, variant="speech")
    assert speech.config.spectral.phase.voiced.hidden == 8 and speech.fingerprint == base.fingerprint
    codes = speech.encode(torch.randn(1, 1, 24000) * 0.1)
    assert torch.equal(speech.decode(codes), wide.decode(codes))


# ---- the frame-rate (spectral) encoder and decoder -------------------------------------------------

def spectral_config(**overrides) -> CodecConfig:
    spectral = {"dim": 16, "hidden_dim": 32, "num_layers": 2, "kernel_size": 3, "n_fft": 32}
    spectral.update(overrides.pop("spectral", {}))
    return tiny_config(causal=False, spectral=spectral, **overrides)


def test_spectral_config_round_trips_and_keeps_seanet_fingerprints(tmp_path):
    config = spectral_config()
    config.to_json_file(tmp_path / "codec.json")
    assert CodecConfig.from_json_file(tmp_path / "codec.json") == config
    assert config.fingerprint != tiny_config(causal=False).fingerprint
    # SEANet fingerprints stayed what they were before `spectral` existed: LMs trained on those codecs record them.
    assert CodecConfig.from_json_file(REPO / "configs" / "codec_small.json").fingerprint == "570e7a1ccbeffea3"
    with pytest.raises(ConfigError, match="non-causal"):
        tiny_config(spectral={"n_fft": 32})
    with pytest.raises(ConfigError, match="n_fft"):
        tiny_config(causal=False, spectral={"n_fft": 13})


def test_spectral_inverse_stft_inverts_the_encoders_stft():
    codec = RVQCodec(spectral_config())
    wav = torch.randn(2, 40 * codec.hop_length)
    spec = codec.encoder.stft(wav)
    assert spec.shape[-1] == 40  # one frame per hop: "same" framing
    assert torch.allclose(codec.decoder.inverse_stft(spec), wav, atol=1e-5)


@pytest.mark.parametrize("num_samples", [8, 100, 4003])
def test_spectral_codec_frame_counts_and_finite_gradients(num_samples):
    torch.manual_seed(0)
    codec = RVQCodec(spectral_config())
    wav = torch.randn(2, 1, num_samples) * 0.1
    out = codec.train()(wav)
    assert out.audio.shape == wav.shape and out.codes.shape == (2, 4, math.ceil(num_samples / 8))
    out.audio.abs().mean().backward()  # the overlap-add envelope is 0 at the untrimmed edges: no 0/0 may leak
    assert all(bool(torch.isfinite(p.grad).all()) for p in codec.parameters() if p.grad is not None)
    codec.eval()
    codes = codec.encode(wav)
    assert codes.shape == (2, 4, math.ceil(num_samples / 8))
    assert codec.decode(codes).shape == (2, 1, codes.shape[-1] * 8)


@pytest.mark.parametrize("frequency_invariant_phase", [False, True])
def test_spectral_codec_chunked_equals_one_pass(frequency_invariant_phase):
    torch.manual_seed(0)
    kind = "frequency_invariant" if frequency_invariant_phase else "frame"
    codec = RVQCodec(spectral_config(spectral={"phase": {"kind": kind}}))
    assert codec.decoder_period == (4 if frequency_invariant_phase else 1)  # n_fft 32 / hop 8
    assert not codec.pitch_phase
    codec.train()(tone(0.5)[None])
    codec.eval()
    long = torch.cat([tone(0.5), tone(0.5).flip(-1), tone(0.7)], dim=-1)[None]
    whole = codec.encode(long)
    whole_audio = codec.decode(whole)
    codec.config.chunk_seconds = 0.123  # chunk edges mid-clip, context on both sides
    assert torch.equal(codec.encode(long), whole)
    assert torch.allclose(codec.decode(whole), whole_audio, atol=1e-5)
    # What the alignment is for: a span that starts off the period decodes differently.
    middle = slice(40 * codec.hop_length, 60 * codec.hop_length)
    shifted = codec.decode(whole[..., 1:])[..., middle]
    assert torch.allclose(shifted, whole_audio[..., codec.hop_length:][..., middle], atol=1e-5) == (
        not frequency_invariant_phase)


@pytest.mark.parametrize("edge", [{}, {"edge": {"offsets": True}}, {"edge": {"offsets": False}},
                                  {"edge": {"offsets": True}, "voiced": {"hidden": 0}},
                                  {"edge": {"offsets": True}, "voiced": {"hidden": 8}}],
                         ids=["pitch", "edge-learned", "edge-source", "edge-voiced", "edge-voiced-hidden"])
def test_pitch_phase_decoding_carries_the_source_phase_across_chunks_and_calls(edge):
    """The harmonic source's phase runs over the whole sequence: chunked decoding carries it from span to span,
    and a later part decoded on its own continues from the phase an earlier call returned. With edge phases, a
    frame's phases also depend on its neighbours' voicing, one frame more of context."""
    torch.manual_seed(0)
    config = spectral_config(sample_rate=24000, strides=(4, 80),
                             spectral={"n_fft": 1280, "phase": {"kind": "harmonic_source", **edge}})
    codec = RVQCodec(config)
    codec.train()(torch.randn(2, 1, 24000) * 0.1)
    codec.eval()
    assert codec.pitch_phase and codec.decoder_period == 1 and codec.hop_length == 320
    with torch.no_grad():  # the untrained pitch head, its voicing logit centred: some frames voiced, some not
        codec.decoder.phase.pitch_head[-1].bias[-1] = 0.0
        mlp = codec.decoder.phase.voiced_offset_mlp
        for layer in (codec.decoder.phase.edge_offset, codec.decoder.phase.voiced_offset, mlp and mlp[-1]):
            if layer is not None:  # offsets that matter (they start at zero)
                torch.nn.init.normal_(layer.weight)
    codes = codec.encode(torch.randn(1, 1, 3 * 24000) * 0.1)
    whole, phases = codec.decode(codes, return_source_phase=True)
    assert phases.shape == (1, 1, codes.shape[-1] + 1) and phases.dtype == torch.float64
    pitch = codec.decoder.run(codec.quantizer.decode(codes)).pitch
    assert 0.05 < float((pitch[:, -1] > 0).float().mean()) < 0.95  # both voiced and unvoiced frames
    codec.config.chunk_seconds = 0.5  # chunk edges mid-clip, context on both sides
    chunked, chunked_phases = codec.decode(codes, return_source_phase=True)
    assert torch.allclose(chunked, whole, atol=1e-5) and torch.allclose(chunked_phases, phases)
    codec.config.chunk_seconds = 30.0
    # The codes from frame 100 on, with 40 frames of context, anchored at frame 100's phase: the whole decode.
    later = codec.decode(codes[..., 60:], source_phase=(40, phases[..., 100]))
    assert torch.allclose(later[..., 40 * 320:], whole[..., 100 * 320:], atol=1e-5)
    unanchored = codec.decode(codes[..., 60:])
    assert not torch.allclose(unanchored[..., 40 * 320:], whole[..., 100 * 320:], atol=1e-2)
    assert codec.decode(codes, return_source_phase=True)[1] is not None
    assert RVQCodec(spectral_config()).eval().decode(codes[..., :4] % 32, return_source_phase=True)[1] is None
    with pytest.raises(CodesError, match="source_phase"):
        codec.decode(codes, source_phase=(codes.shape[-1] + 1, phases[..., 0]))


def test_frequency_invariant_phase_holds_a_steady_tone_in_repeated_frames():
    """With signal-origin phases a bin-centred tone is the same decoder frame over and over, so a frame-wise
    decoder can hold any pitch; with frame-origin phases repeated frames make a signal periodic at the hop."""
    fi = RVQCodec(spectral_config(spectral={"phase": {"kind": "frequency_invariant"}}))
    # the code space's config is the same (the codec's own fingerprint also hashes its random weights)
    assert fi.config.fingerprint == spectral_config().fingerprint
    dec, frames = fi.decoder, 40
    t = torch.arange(frames * fi.hop_length)
    wav = torch.cos(2 * math.pi * 3 * t / dec.n_fft + 0.4)  # bin 3's centre: 3 cycles per n_fft samples
    spec = fi.encoder.stft(wav[None])[0]  # frame-origin phases (bins, frames)
    offsets = dec.phase.frame_offsets(frames, spec.device)  # (bins, frames): frame-origin minus signal-origin
    signal_origin = spec * torch.polar(torch.ones(()), -offsets)
    inner = signal_origin[3, 4:-4]
    assert torch.allclose(inner, inner[0].expand_as(inner), atol=1e-4)  # the same in every frame
    assert not torch.allclose(spec[3, 4:-4], spec[3, 4].expand_as(spec[3, 4:-4]), atol=1e-2)
    # One frame holding bin 3 alone, repeated: the tone itself with signal-origin phases; with frame-origin
    # phases, a signal that repeats every hop (a "pitch" on multiples of the frame rate).
    frame = torch.zeros(dec.bins, frames, dtype=torch.complex64)
    frame[3] = torch.polar(torch.tensor(1.0), torch.tensor(0.4))
    tone_fi = dec.inverse_stft((frame * torch.polar(torch.ones(()), offsets))[None])[0]
    tone_ti = dec.inverse_stft(frame[None])[0]
    inner = slice(dec.n_fft, -dec.n_fft)
    arg = 2 * math.pi * 3 * t[inner] / dec.n_fft
    basis = torch.stack([torch.cos(arg), torch.sin(arg)], dim=1)  # a bin-3 sinusoid of any phase
    fit = basis @ torch.linalg.lstsq(basis, tone_fi[inner, None]).solution
    assert (fit[:, 0] - tone_fi[inner]).norm() < 1e-4 * tone_fi[inner].norm()
    hop = fi.hop_length
    assert torch.allclose(tone_ti[dec.n_fft:-dec.n_fft - hop], tone_ti[dec.n_fft + hop:-dec.n_fft], atol=1e-5)


def test_spectral_codec_saves_and_loads_bit_identically(tmp_path):
    torch.manual_seed(0)
    codec = RVQCodec(spectral_config())
    codec.train()(tone(0.5)[None])
    assert_saved_equals_loaded(codec.eval(), tmp_path / "codec")


def test_a_random_ema_codebook_moves_towards_the_data_not_away():
    """Without k-means init the EMA statistics start consistent with the random codebook: the first updates move
    each used code part of the way to the mean of its latents (a convex mix), never scale it up."""
    from tokenizer.quantization import EMAVectorQuantizer

    torch.manual_seed(0)
    level = EMAVectorQuantizer(8, 16, decay=0.99, kmeans_init=False, dead_code_threshold=0.0).train()
    start = level.embed.clone()
    latents = 0.5 * torch.randn(4, 8, 100)
    for _ in range(3):
        level(latents)
    assert level.embed.abs().max() <= max(start.abs().max(), latents.abs().max()) + 1e-5
    assert (level.embed - start).norm() > 0
