"""Decoding codes and encoding audio as they arrive, equal to decoding or encoding them all at once.

    decoder = codec.stream_decoder()
    for codes in frames_as_they_come:        # LongTensor[B, K, t]
        play(decoder.push(codes))            # FloatTensor[B, C, n], n may be 0
    play(decoder.flush())

`StreamDecoder` (`RVQCodec.stream_decoder`) gives, concatenated, the samples of `RVQCodec.decode` of all the codes;
`StreamEncoder` (`RVQCodec.stream_encoder`, causal codecs only) gives the codes of `RVQCodec.encode` of all the
audio.

Both rest on the codec's bounded receptive field. A frame's samples depend on `decoder_context` frames of codes
around it (before it only, for a causal codec), so each new span is decoded with that much left context and, for a
non-causal decoder, that much look-ahead, held back until it arrives or `flush` ends the codes. A span starts at a
multiple of `decoder_period` frames, where the decoder's phase pattern repeats. A pitch-phase decoder's harmonic
source runs over the whole sequence: each span continues from the source phase at which the samples already out
end (`decode(..., source_phase=...)`). An LSTM carries state from the first frame on: with one, every span is
decoded (encoded) from the first frame, which is exact but costs time that grows with the length.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .errors import AudioInputError, CodecError, CodesError

if TYPE_CHECKING:
    from .model import RVQCodec


class StreamDecoder:
    """Codes LongTensor[B, K, t] pushed piece by piece -> the samples FloatTensor[B, C, n] that `codec.decode` gives
    for all of them, each sample returned as soon as no later code can change it.

    `context`: LongTensor[B, K, t0], codes that come before the pushed ones (e.g. an audio prompt's): they are
    decoded as left context, their own samples are not returned. Pushed codes may have fewer codebooks than the
    context (then its extra codebooks are left out), never more. Samples come back on the codec's device.
    """

    def __init__(self, codec: RVQCodec, context: torch.Tensor | None = None) -> None:
        self.codec = codec
        self.hop = codec.hop_length
        # None: every span from the first frame (an LSTM's state runs over the whole sequence).
        self.lookback: int | None = None if codec.config.lstm_layers else codec.decoder_context
        self.lookahead = 0 if codec.config.causal else codec.decoder_context
        self.period = codec.decoder_period
        self.phase: torch.Tensor | None = None  # pitch-phase decoders: the source phase (B, C) at frame `done`
        self.codes: torch.Tensor | None = None  # (B, K, T - first): the codes from frame `first` on, on the CPU
        self.first = 0
        self.done = 0  # frames whose samples are out (or are the context's)
        self.batch: int | None = None
        self.flushed = False
        if context is not None:
            self.codes = self._check(context, "context")
            self.done = context.shape[2]

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Add codes LongTensor[B, K, t] (t may be 0); return FloatTensor[B, C, n]: the samples of every frame not
        yet returned whose look-ahead has arrived (all of them for a causal codec), n = frames * hop_length."""
        if self.flushed:
            raise CodecError("this stream decoder was flushed, which ends its codes; start another with "
                             "codec.stream_decoder(context=...) to decode more")
        codes = self._check(codes, "codes")
        if self.codes is None:
            self.codes = codes
        else:
            self.codes = torch.cat([self.codes[:, :codes.shape[1]], codes], dim=2)
        return self._decode(self.first + self.codes.shape[2] - self.lookahead)

    def flush(self) -> torch.Tensor:
        """End the codes; return FloatTensor[B, C, n], the samples of every frame not yet returned."""
        self.flushed = True
        if self.codes is None:
            return self._empty()
        return self._decode(self.first + self.codes.shape[2])

    def _decode(self, end: int) -> torch.Tensor:
        """The samples of frames [done, end), decoded with their left context and look-ahead."""
        if end <= self.done:
            return self._empty()
        total = self.first + self.codes.shape[2]
        start = 0 if self.lookback is None else max(0, self.done - self.lookback) // self.period * self.period
        stop = min(total, end + self.lookahead)
        if self.codec.pitch_phase:
            # The first span runs from frame 0, where the source phase starts; later ones continue from it.
            start = 0 if self.phase is None else start
            anchor = None if self.phase is None else (self.done - start, self.phase)
            span = self.codes[:, :, start - self.first:stop - self.first]
            wav, phases = self.codec.decode(span, source_phase=anchor, return_source_phase=True)
            self.phase = phases[..., end - start]
        else:
            wav = self.codec.decode(self.codes[:, :, start - self.first:stop - self.first])  # (B, C, (stop-start)*hop)
        piece = wav[..., (self.done - start) * self.hop:(end - start) * self.hop]
        self.done = end
        if self.lookback is not None:  # the next span starts no earlier than this: drop the codes before it
            keep = max(0, end - self.lookback) // self.period * self.period
            self.codes, self.first = self.codes[:, :, keep - self.first:], keep
        return piece

    def _check(self, codes: torch.Tensor, what: str) -> torch.Tensor:
        """`codes` as LongTensor[B, K, t] on the CPU, checked against what came before (values: by decode)."""
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex() or codes.dim() != 3:
            shape = list(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise CodesError(f"{what} must be integer codes LongTensor[B, K, t], got {shape}"
                             + ("; add a batch axis with codes[None]" if getattr(codes, "ndim", 0) == 2 else ""))
        if self.batch is not None and codes.shape[0] != self.batch:
            raise CodesError(f"{what} have batch size {codes.shape[0]}, but this stream decodes {self.batch} at once")
        if self.codes is not None and codes.shape[1] > self.codes.shape[1]:
            raise CodesError(f"{what} have K={codes.shape[1]} codebooks, more than the {self.codes.shape[1]} "
                             "before them; push codes with as many codebooks as the context, or fewer")
        self.batch = codes.shape[0]
        return codes.cpu().long()

    def _empty(self) -> torch.Tensor:
        param = next(self.codec.parameters())
        return param.new_zeros(self.batch or 1, self.codec.channels, 0)


class StreamEncoder:
    """Waveform FloatTensor[B, C, n] at the codec's sample rate, pushed piece by piece -> the codes LongTensor[B, K, t]
    that `codec.encode` gives for all of it, each frame's codes returned once its samples are all in.

    Only a causal codec can stream: its codes depend on audio up to the end of their frame, never after it.
    `num_codebooks`: K, as for `encode` (default all). A mono waveform is duplicated for a stereo codec.
    """

    def __init__(self, codec: RVQCodec, num_codebooks: int | None = None) -> None:
        if not codec.config.causal:
            raise CodecError(f"codec {codec.config.name!r} has causal: false (its encoder looks ahead across the "
                             "audio), so its codes cannot be made as the audio arrives; encode the whole waveform "
                             "with codec.encode, or use a causal preset (e.g. configs/codec_small.json)")
        if num_codebooks is not None and (isinstance(num_codebooks, bool) or not isinstance(num_codebooks, int)
                                          or not 1 <= num_codebooks <= codec.num_codebooks):
            raise CodecError(f"num_codebooks must be an integer in [1, {codec.num_codebooks}], got {num_codebooks!r}")
        self.codec, self.num_codebooks = codec, num_codebooks or codec.num_codebooks
        self.hop = codec.hop_length
        self.lookback: int | None = None if codec.config.lstm_layers else codec.encoder_context
        self.wav: torch.Tensor | None = None  # (B, C, samples from frame `first` on)
        self.first = 0
        self.done = 0  # frames whose codes are out
        self.flushed = False

    def push(self, wav: torch.Tensor) -> torch.Tensor:
        """Add samples FloatTensor[B, C, n] (n may be 0); return LongTensor[B, K, t], the codes of every frame not yet
        returned whose hop_length samples are all in."""
        if self.flushed:
            raise CodecError("this stream encoder was flushed, which ends its audio; start another with "
                             "codec.stream_encoder() to encode more")
        self._add(wav)
        return self._encode(self.first + self.wav.shape[-1] // self.hop)

    def flush(self) -> torch.Tensor:
        """End the audio; return LongTensor[B, K, t], the codes of every frame not yet returned, the last one's
        samples padded with zeros to a whole frame as `encode` pads them."""
        self.flushed = True
        if self.wav is None:
            return torch.zeros(1, self.num_codebooks, 0, dtype=torch.long)
        return self._encode(self.first + math.ceil(self.wav.shape[-1] / self.hop))

    def _encode(self, end: int) -> torch.Tensor:
        """The codes of frames [done, end), encoded with their left context."""
        if end <= self.done:
            return torch.zeros(self.wav.shape[0], self.num_codebooks, 0, dtype=torch.long)
        start = self.first if self.lookback is None else max(0, self.done - self.lookback)
        span = self.wav[..., (start - self.first) * self.hop:(end - self.first) * self.hop]
        codes = self.codec.encode(span, num_codebooks=self.num_codebooks)[..., self.done - start:]
        self.done = end
        if self.lookback is not None:  # the next span starts no earlier than this: drop the samples before it
            keep = max(0, end - self.lookback)
            self.wav, self.first = self.wav[..., (keep - self.first) * self.hop:], keep
        return codes

    def _add(self, wav: torch.Tensor) -> None:
        if not isinstance(wav, torch.Tensor) or not wav.is_floating_point() or wav.dim() != 3:
            shape = list(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise AudioInputError(f"push takes a float waveform FloatTensor[B, C, n], got {shape}"
                                  + (f" of {wav.dtype}" if isinstance(wav, torch.Tensor) else ""))
        if self.wav is None:
            self.wav = wav
            return
        if wav.shape[:2] != self.wav.shape[:2]:
            raise AudioInputError(f"pushed audio is shaped [B, C] = {list(wav.shape[:2])}, but this stream's is "
                                  f"{list(self.wav.shape[:2])}; every piece must have the same batch and channels")
        self.wav = torch.cat([self.wav, wav.to(self.wav)], dim=-1)
