"""Streaming equals offline: `codec.stream_decoder()` pieces concatenate to `decode` of all the codes, and
`codec.stream_encoder()` pieces to `encode` of the whole waveform, for every kind of decoder, chunk size and
left context."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lm import codec_interface
from lm.codec_interface import DecodeOnFlush, StreamingAudioTokenizer, stream_decoder
from tokenizer import CodecConfig, CodecError, CodesError, RVQCodec, StreamDecoder

from .conftest import tiny_config, tone

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5  # what chunked decoding reaches (tests/tokenizer/test_codec.py); codes must be equal
FRAMES = 40  # several decoder contexts (8 to 10 frames) long


def spectral(**settings) -> dict:
    return {"dim": 16, "hidden_dim": 32, "num_layers": 2, "kernel_size": 3, "n_fft": 32, **settings}


PITCH = dict(causal=False, sample_rate=24000, strides=(4, 80),
             spectral=spectral(n_fft=1280, pitch_phase=True, edge_phase=True, voiced_offsets=True))
KINDS = {
    "causal": {},
    "causal-lstm": {"lstm_layers": 1},
    "non-causal": {"causal": False},
    "non-causal-lstm": {"causal": False, "lstm_layers": 1},
    "spectral": {"causal": False, "spectral": spectral()},
    "spectral-fi": {"causal": False, "spectral": spectral(frequency_invariant_phase=True)},  # period 4
    "spectral-pitch-edge-voiced": PITCH,
}


def build(kind: str) -> RVQCodec:
    """A tiny codec of `kind`; a pitch-phase one with both voiced and unvoiced frames and offsets that matter."""
    torch.manual_seed(0)
    codec = RVQCodec(tiny_config(**KINDS[kind]))
    codec.train()(torch.randn(2, 1, FRAMES * codec.hop_length) * 0.1)  # k-means init: codebooks that differ
    codec.eval()
    if codec.pitch_phase:  # found by name: where the phase model keeps them is the decoder's business
        params = dict(codec.decoder.named_parameters())
        with torch.no_grad():
            params[[n for n in params if "pitch_head" in n and n.endswith("bias")][-1]][-1] = 0.0  # voicing logit
            for name, p in params.items():
                if ("edge_offset" in name or "voiced_offset" in name) and name.endswith("weight"):
                    torch.nn.init.normal_(p)  # offsets that matter (they start at zero)
    return codec


@pytest.fixture(scope="module", params=list(KINDS))
def kind_codec(request) -> tuple[str, RVQCodec]:
    return request.param, build(request.param)


def stream(decoder, codes: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    """Push `codes` `chunk` frames at a time, then flush: every piece, in order."""
    pieces = [decoder.push(codes[..., i:i + chunk]) for i in range(0, codes.shape[-1], chunk)]
    return pieces + [decoder.flush()]


# ---- decoding ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("context_frames", [0, 11])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streamed_decoding_equals_decoding_everything(kind_codec, chunk, context_frames):
    kind, codec = kind_codec
    assert codec.pitch_phase == kind.startswith("spectral-pitch")
    assert codec.decoder_period == (4 if kind == "spectral-fi" else 1)
    hop = codec.hop_length
    codes = torch.randint(0, codec.codebook_size, (2, codec.num_codebooks, FRAMES), generator=torch.Generator()
                          .manual_seed(chunk))
    whole = codec.decode(codes)
    context = codes[..., :context_frames] if context_frames else None
    decoder = codec.stream_decoder(context=context)
    assert isinstance(decoder, StreamDecoder)
    pieces = stream(decoder, codes[..., context_frames:], chunk)
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == (2, 1, (FRAMES - context_frames) * hop)
    assert torch.allclose(streamed, whole[..., context_frames * hop:], atol=ATOL, rtol=0)
    # Each push returns every sample that is final: those of all the frames pushed for a causal codec, of all but
    # the look-ahead for a non-causal one; the flush the rest.
    lookahead = 0 if codec.config.causal else codec.decoder_context
    out = 0
    for i, piece in enumerate(pieces[:-1]):
        out += piece.shape[-1]
        assert out == max(0, min(FRAMES - context_frames, (i + 1) * chunk) - lookahead) * hop


def test_a_pitch_phase_stream_needs_its_carried_phase():
    """What the carried source phase is for: spans decoded without it drift from the whole decode."""
    codec = build("spectral-pitch-edge-voiced")
    wav = torch.randn(1, 1, FRAMES * codec.hop_length) * 0.1
    codes = codec.encode(wav)
    voiced = codec(wav).pitch[:, -1] > 0  # (1, T): the voicing logit
    assert 0.05 < float(voiced.float().mean()) < 0.95  # both voiced and unvoiced frames
    whole, hop, start = codec.decode(codes), codec.hop_length, 20 - codec.decoder_context
    unanchored = codec.decode(codes[..., start:])[..., (20 - start) * hop:]
    assert not torch.allclose(unanchored, whole[..., 20 * hop:], atol=1e-2)
    streamed = torch.cat(stream(codec.stream_decoder(context=codes[..., :20]), codes[..., 20:], 3), dim=-1)
    assert torch.allclose(streamed, whole[..., 20 * hop:], atol=ATOL, rtol=0)


def test_codes_with_fewer_codebooks_than_the_context_decode_with_as_many():
    codec = build("causal")
    codes = torch.randint(0, codec.codebook_size, (1, codec.num_codebooks, 20))
    decoder = codec.stream_decoder(context=codes[..., :5])
    streamed = torch.cat(stream(decoder, codes[:, :2, 5:], 3), dim=-1)
    assert torch.allclose(streamed, codec.decode(codes[:, :2])[..., 5 * codec.hop_length:], atol=ATOL, rtol=0)


def test_stream_decoder_refuses_what_it_cannot_decode():
    codec = build("causal")
    codes = torch.randint(0, codec.codebook_size, (2, 2, 6))
    decoder = codec.stream_decoder(context=codes)
    with pytest.raises(CodesError, match="batch size 1, but this stream decodes 2"):
        decoder.push(codes[:1])
    with pytest.raises(CodesError, match="K=4 codebooks, more than the 2"):
        decoder.push(torch.zeros(2, 4, 1, dtype=torch.long))
    with pytest.raises(CodesError, match=r"LongTensor\[B, K, t\], got \[2, 6\]; add a batch axis"):
        decoder.push(codes[0])
    assert decoder.push(codes[..., :0]).shape == (2, 1, 0)
    assert decoder.flush().shape == (2, 1, 0)  # the context's samples are not returned
    with pytest.raises(CodecError, match="flushed"):
        decoder.push(codes)
    assert codec.stream_decoder().flush().shape == (1, 1, 0)


# ---- encoding ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["causal", "causal-lstm"])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streamed_encoding_equals_encoding_everything(kind, chunk):
    codec = build(kind)
    hop = codec.hop_length
    wav = torch.stack([tone(0.1), tone(0.1).flip(-1)])[..., :FRAMES * hop - 3]  # (2, 1, N): a partial last frame
    whole = codec.encode(wav)
    # Pieces of `chunk` frames' samples, and of a few samples more, so that frames end mid-piece too.
    for size in (chunk * hop, chunk * hop + 3):
        encoder = codec.stream_encoder()
        pieces = [encoder.push(wav[..., i:i + size]) for i in range(0, wav.shape[-1], size)]
        pieces.append(encoder.flush())
        assert torch.equal(torch.cat(pieces, dim=-1), whole)
        # Each push returns the codes of every frame whose samples are all in.
        out = 0
        for i, piece in enumerate(pieces[:-1]):
            out += piece.shape[-1]
            assert out == min(wav.shape[-1], (i + 1) * size) // hop
    encoder = codec.stream_encoder(num_codebooks=2)
    assert torch.equal(torch.cat([encoder.push(wav), encoder.flush()], dim=-1), whole[:, :2])


def test_stream_encoder_refuses_a_non_causal_codec_and_bad_audio():
    with pytest.raises(CodecError, match=r"'rvqaudio-codec-spectral-small' has causal: false"):
        RVQCodec(CodecConfig.from_json_file(REPO / "configs" / "codec_spectral_small.json")).stream_encoder()
    codec = build("causal")
    with pytest.raises(CodecError, match=r"num_codebooks must be an integer in \[1, 4\], got 5"):
        codec.stream_encoder(num_codebooks=5)
    encoder = codec.stream_encoder()
    with pytest.raises(Exception, match=r"FloatTensor\[B, C, n\], got \[5\]"):
        encoder.push(torch.zeros(5))
    assert encoder.push(torch.zeros(1, 1, 5)).shape == (1, 4, 0)  # less than a frame: nothing yet
    with pytest.raises(Exception, match=r"\[B, C\] = \[2, 1\], but this stream's is \[1, 1\]"):
        encoder.push(torch.zeros(2, 1, 5))
    with pytest.raises(Exception, match="needs at least one frame"):
        encoder.flush()  # 5 samples in all: what encode refuses too


# ---- the LM's view: lm.codec_interface ------------------------------------------------------------------------


class _Plain:
    """A codec with only the narrow interface: no stream decoder of its own."""

    def __init__(self, codec: RVQCodec) -> None:
        self.codec = codec
        self.sample_rate, self.channels, self.frame_rate = codec.sample_rate, codec.channels, codec.frame_rate

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(codes)


def test_the_interface_streams_with_the_codecs_own_decoder_or_decodes_at_the_end():
    codec = build("non-causal")
    codes = torch.randint(0, codec.codebook_size, (1, codec.num_codebooks, 30))
    whole = codec.decode(codes)[..., 8 * codec.hop_length:]
    assert isinstance(codec, StreamingAudioTokenizer) and not isinstance(_Plain(codec), StreamingAudioTokenizer)
    own = stream_decoder(codec, context=codes[..., :8])
    assert isinstance(own, StreamDecoder) and isinstance(own, codec_interface.StreamDecoder)
    assert torch.allclose(torch.cat(stream(own, codes[..., 8:], 5), dim=-1), whole, atol=ATOL, rtol=0)
    fallback = stream_decoder(_Plain(codec), context=codes[..., :8])
    assert isinstance(fallback, DecodeOnFlush) and isinstance(fallback, codec_interface.StreamDecoder)
    pieces = stream(fallback, codes[..., 8:], 5)
    assert all(p.shape == (1, 1, 0) for p in pieces[:-1])
    assert torch.equal(pieces[-1], whole)


# ---- the bundled codec ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [None, "speech"])
def test_the_bundled_codec_streams_as_it_decodes(task):
    from pipelines.defaults import default_codec

    codec = default_codec(task)
    assert codec.pitch_phase and not codec.config.causal
    codes = codec.encode(torch.cat([tone(0.6, 24000), tone(0.4, 24000).flip(-1)], dim=-1)[None])
    whole, hop = codec.decode(codes), codec.hop_length
    streamed = torch.cat(stream(codec.stream_decoder(context=codes[..., :10]), codes[..., 10:], 4), dim=-1)
    assert torch.allclose(streamed, whole[..., 10 * hop:], atol=ATOL, rtol=0)
