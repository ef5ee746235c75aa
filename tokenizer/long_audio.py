"""Encoding an audio file of any length in bounded memory: read, resample and encode it block by block.

`encode_audio_file(codec, path)` gives the codes that `codec.encode(load_audio(path, codec.sample_rate,
codec.channels))` gives, without ever holding the whole file: the file is decoded in blocks (soundfile's blocks, or
torchcodec's time ranges, which concatenate to the whole decode), each block is resampled with enough input on
each side that its samples are those of resampling the whole signal (`BlockResampler`), and the waveform is encoded
in spans with the encoder's context on each side, as `RVQCodec.encode` chunks a long input (`SpanEncoder`). Memory
then depends on the block length, not the file's: a 1-hour file needs what a minute does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import soundfile as sf
import torch

from .audio import (SOUNDFILE_FORMATS, check_complete, check_exists, check_file_rate, resample,
                    soundfile_stated_seconds, to_channels)
from .errors import AudioInputError

# torchaudio's sinc resampler (lowpass_filter_width 6, rolloff 0.99) reads this many input periods of the reduced
# rates on each side of an output sample; the margin kept around a block is larger, whatever the rates.
_FILTER_WIDTH, _ROLLOFF = 6, 0.99


def encode_audio_file(codec, path: str | os.PathLike, num_codebooks: int | None = None, block_seconds: float = 60.0,
                      strict: bool = False, span_frames: int | None = None, gain: float = 1.0
                      ) -> tuple[torch.Tensor, int]:
    """Codes LongTensor (1, K, T) of the audio file at `path` and its length in samples at the codec's rate.

    Equal (to float rounding) to `codec.encode(gain * load_audio(path, codec.sample_rate, codec.channels)[0][None])`,
    in memory that depends on `block_seconds`, not on the file's length. A truncated file warns or, `strict`, fails
    as `load_audio` does; AudioInputError names the file when it cannot be read. `span_frames`: frames encoded per
    call (default: a codec chunk less its context). `gain`: a factor on every sample (`tokenizer.level.CodecLevel`).
    """
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be a finite number > 0, got {gain!r}")
    path = Path(path)
    check_exists(path)
    rate, blocks, stated = _open_blocks(path, block_seconds)
    check_file_rate(path, rate)
    resampler = BlockResampler(rate, codec.sample_rate)
    encoder = SpanEncoder(codec, num_codebooks, span_frames)
    read = 0
    for block in blocks:
        read += block.shape[-1]
        encoder.push(_scaled(to_channels(resampler.push(block), codec.channels), gain))
    if read == 0:
        raise AudioInputError(f"{str(path)!r} holds no audio samples")
    check_complete(path, read / rate, stated, strict)
    encoder.push(_scaled(to_channels(resampler.finish(), codec.channels), gain))
    return encoder.finish(), resampler.produced


def _scaled(wav: torch.Tensor, gain: float) -> torch.Tensor:
    return wav if gain == 1 else wav * gain


def audio_file_rms(path: str | os.PathLike, channels: int, block_seconds: float = 60.0) -> float:
    """The RMS (full scale 1) of the audio file at `path` as `channels` channels (`to_channels`), at its own rate, read
    block by block. AudioInputError names the file when it cannot be read or holds no samples."""
    path = Path(path)
    check_exists(path)
    _, blocks, _ = _open_blocks(path, block_seconds)
    total, count = 0.0, 0
    for block in blocks:
        block = to_channels(block, channels).double()
        total += float(block.pow(2).sum())
        count += block.numel()
    if count == 0:
        raise AudioInputError(f"{str(path)!r} holds no audio samples")
    return math.sqrt(total / count)


def _open_blocks(path: Path, block_seconds: float) -> tuple[int, Iterator[torch.Tensor], float | None]:
    """(rate, blocks (C, n) float32 at the file's rate, duration the header states) for an audio file."""
    if path.suffix.lower() in SOUNDFILE_FORMATS:
        try:
            info = sf.info(str(path))
            stated = soundfile_stated_seconds(path, info.frames, info.samplerate)
            size = max(1, int(block_seconds * info.samplerate))

            def soundfile_blocks() -> Iterator[torch.Tensor]:
                for block in sf.blocks(str(path), blocksize=size, dtype="float32", always_2d=True):
                    yield torch.from_numpy(block.T.copy())

            return info.samplerate, _named_errors(soundfile_blocks(), path), stated
        except (sf.LibsndfileError, RuntimeError, ValueError):
            pass  # libsndfile lacks some codecs in these containers: let ffmpeg try
    try:
        from torchcodec.decoders import AudioDecoder

        decoder = AudioDecoder(str(path))
        meta = decoder.metadata
        rate = int(meta.sample_rate)
        stated = meta.duration_seconds_from_header
    except Exception as exc:
        raise AudioInputError(f"cannot decode {str(path)!r} with torchcodec (ffmpeg): {exc}") from exc
    duration = meta.duration_seconds or stated or 0.0

    def ranges() -> Iterator[torch.Tensor]:
        start = 0.0
        while True:
            try:  # time ranges decode to exactly the samples of the whole decode, in order
                samples = decoder.get_samples_played_in_range(start, start + block_seconds)
            except RuntimeError:
                if start < duration:
                    raise
                return  # past the end: ffmpeg finds no frames there
            if samples.data.shape[-1] == 0:
                return
            yield samples.data.to(torch.float32)
            start += block_seconds

    return rate, _named_errors(ranges(), path), stated


def _named_errors(blocks: Iterator[torch.Tensor], path: Path) -> Iterator[torch.Tensor]:
    try:
        yield from blocks
    except AudioInputError:
        raise
    except Exception as exc:
        raise AudioInputError(f"cannot decode {str(path)!r}: {exc}") from exc


class BlockResampler:
    """Resample a signal given in blocks to exactly what `tokenizer.audio.resample` gives for the whole signal.

    Each output sample of the sinc resampler depends on input samples within a few periods of the reduced rates;
    a block is resampled with `margin` input samples of real signal on each side (zeros only at the signal's true
    ends, as for the whole signal), starting at a multiple of the reduced input period so that the output grid
    lines up, and only the output samples whose inputs are all present are emitted.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        g = math.gcd(orig_sr, new_sr)
        self.orig_sr, self.new_sr = orig_sr, new_sr
        self.period_in, self.period_out = orig_sr // g, new_sr // g
        width = math.ceil(_FILTER_WIDTH * self.period_in / (_ROLLOFF * min(self.period_in, self.period_out)))
        self.margin = math.ceil((2 * width + 2 * self.period_in) / self.period_in) * self.period_in
        self.buffer: torch.Tensor | None = None  # (C, n) input from `start` on
        self.start = 0  # index in the input of buffer[..., 0] (a multiple of period_in)
        self.total_in = 0
        self.produced = 0  # output samples emitted
        self.channels = 1

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """The output samples that `block` (C, n) completes, (C, m)."""
        self.channels = block.shape[0]
        self.buffer = block if self.buffer is None else torch.cat([self.buffer, block], dim=-1)
        self.total_in += block.shape[-1]
        if self.orig_sr == self.new_sr:
            out, self.buffer, self.start = self.buffer, None, self.total_in
            self.produced += out.shape[-1]
            return out
        # output j reads the inputs around j * period_in / period_out: emit those with `margin` inputs to the right
        end = (self.total_in - self.margin) * self.period_out // self.period_in
        return self._emit(max(end, self.produced))

    def finish(self) -> torch.Tensor:
        """The remaining output samples: the whole output is ceil(new_sr * n / orig_sr) long, as for one call."""
        if self.buffer is None:  # everything was emitted (equal rates)
            return torch.zeros(self.channels, 0)
        total = math.ceil(self.period_out * self.total_in / self.period_in)
        return self._emit(total, final=True)

    def _emit(self, end: int, final: bool = False) -> torch.Tensor:
        assert self.buffer is not None
        if end <= self.produced:
            return self.buffer.new_zeros(self.buffer.shape[0], 0)
        # the buffer's input starts at a multiple of period_in: its output grid starts at an output sample
        first = self.start * self.period_out // self.period_in
        out = resample(self.buffer, self.orig_sr, self.new_sr)[..., self.produced - first:end - first]
        self.produced = end
        if not final:  # keep `margin` inputs left of the next output sample's position
            keep = max(0, (self.produced * self.period_in // self.period_out - self.margin)
                       // self.period_in * self.period_in)
            self.buffer = self.buffer[..., keep - self.start:].clone()  # a copy: the consumed input is freed now
            self.start = keep
        return out


class SpanEncoder:
    """Encode a waveform given in pieces in spans of `span_frames` frames with the encoder's context on each side:
    every frame's codes are those of encoding the whole waveform at once (as `RVQCodec.encode` chunks)."""

    def __init__(self, codec, num_codebooks: int | None = None, span_frames: int | None = None) -> None:
        self.codec, self.k = codec, num_codebooks
        self.hop, self.context = codec.hop_length, codec.encoder_context
        # a span and its context in one of the codec's own chunks: each span is encoded in one pass
        chunk = max(1, int(codec.config.chunk_seconds * codec.frame_rate))
        self.span = span_frames or max(1, chunk - 2 * self.context)
        self.buffer: torch.Tensor | None = None  # (C, n) from frame `start` on
        self.start = 0
        self.next = 0  # the first frame not encoded yet
        self.pieces: list[torch.Tensor] = []

    def push(self, wav: torch.Tensor) -> None:
        if wav.shape[-1] == 0:
            return
        self.buffer = wav if self.buffer is None else torch.cat([self.buffer, wav], dim=-1)
        while (self.start * self.hop + self.buffer.shape[-1]) // self.hop >= self.next + self.span + self.context:
            self._encode(self.next + self.span, (self.next + self.span + self.context) * self.hop)

    def finish(self) -> torch.Tensor:
        """The codes of everything pushed, (1, K, ceil(samples / hop_length))."""
        if self.buffer is not None:
            total = self.start * self.hop + self.buffer.shape[-1]
            frames = math.ceil(total / self.hop)
            if frames > self.next:
                self._encode(frames, total)
        return torch.cat(self.pieces, dim=-1)

    def _encode(self, end: int, until: int) -> None:
        assert self.buffer is not None
        lo = max(0, self.next - self.context)
        x = self.buffer[..., (lo - self.start) * self.hop:until - self.start * self.hop]
        codes = self.codec.encode(x[None], num_codebooks=self.k)
        self.pieces.append(codes[..., self.next - lo:end - lo])
        self.next = end
        keep = max(0, self.next - self.context)
        self.buffer = self.buffer[..., (keep - self.start) * self.hop:].clone()  # frees what was encoded
        self.start = keep
