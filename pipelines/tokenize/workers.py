"""Decoding and encoding, the part of a run that runs in the worker processes.

`Encoder` turns raw audio cells ({"bytes", "path"}) into codes (K, T), batched, and reports the cells it cannot
encode instead of raising; `init_worker` and `work` run it in a multiprocessing pool, `Ready` stands in for a
pool's result when there is no pool.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tokenizer import RVQCodec
from tokenizer.audio import load_audio, resample, to_channels


class _Skip(Exception):
    """This example cannot be encoded; the message says why."""


class Encoder:
    """Raw audio cells ({"bytes", "path"}) -> (codes ndarray (K, T) | None, seconds, reason | None), batched."""

    def __init__(self, codec: RVQCodec, num_codebooks: int, batch_size: int):
        self.codec, self.k, self.batch_size = codec, num_codebooks, batch_size
        self.rate, self.channels, self.hop = codec.sample_rate, codec.channels, codec.hop_length
        # Longer items are encoded alone: the codec chunks them internally, so memory stays bounded.
        self.alone_samples = int(codec.config.chunk_seconds * self.rate)
        # Right zero-padding leaves a causal codec's codes unchanged; a non-causal one only batches equal lengths.
        self.causal = bool(codec.config.causal)
        self.dtype = np.int16 if codec.codebook_size <= 2**15 else np.int32

    def __call__(self, cells: list) -> list[tuple[np.ndarray | None, float, str | None]]:
        out: list = [None] * len(cells)
        waiting = []
        for i, cell in enumerate(cells):
            try:
                wav = self.load(cell)
            except _Skip as e:
                out[i] = (None, 0.0, str(e))
                continue
            if wav.shape[-1] > self.alone_samples:
                out[i] = self.encode([wav])[0]
            else:
                waiting.append((i, wav))
        waiting.sort(key=lambda item: item[1].shape[-1])  # similar lengths together: less padding
        batch: list = []
        for item in waiting + [None]:
            if batch and (item is None or len(batch) == self.batch_size
                          or (not self.causal and item[1].shape[-1] != batch[0][1].shape[-1])):
                for (i, _), result in zip(batch, self.encode([w for _, w in batch])):
                    out[i] = result
                batch = []
            if item is not None:
                batch.append(item)
        return out

    def load(self, cell) -> torch.Tensor:
        """Decode, resample to the codec's rate, convert channels -> FloatTensor (C, N). Raises _Skip."""
        try:
            data, path = (cell.get("bytes"), cell.get("path")) if isinstance(cell, dict) else (None, None)
            if data:
                wav, sr = _decode_bytes(data, path)
            elif path:
                wav, sr = load_audio(path)
            else:
                raise _Skip(f"the audio cell holds neither bytes nor a path: {cell!r:.100}")
            if wav.shape[-1] == 0:
                raise _Skip("the file holds no audio samples")
            # Exactly as load_audio (resample, then channels), so the codes equal `rvqaudio encode`'s: a cached
            # torchaudio.transforms.Resample differs by ~1e-7, enough to flip a code near a tie.
            wav = to_channels(resample(wav, sr, self.rate), self.channels)
        except _Skip:
            raise
        except Exception as e:  # a broken file must not stop the run: it is reported instead
            raise _Skip(str(e) or type(e).__name__) from e
        n = wav.shape[-1]
        if n < self.hop:
            raise _Skip(f"too short: {n} samples at {self.rate} Hz; the codec needs at least one frame, {self.hop} "
                        f"samples ({1000 * self.hop / self.rate:.1f} ms)")
        if not bool(torch.isfinite(wav).all()):
            raise _Skip("the audio contains NaN or infinite samples")
        return wav

    def encode(self, wavs: list[torch.Tensor]) -> list[tuple[np.ndarray, float, None]]:
        lengths = [w.shape[-1] for w in wavs]
        longest = max(lengths)
        x = torch.stack([torch.nn.functional.pad(w, (0, longest - w.shape[-1])) for w in wavs])  # (B, C, N)
        codes = self.codec.encode(x, num_codebooks=self.k).cpu()  # (B, K, T); batch-invariant (see RVQCodec)
        return [(codes[b, :, : -(-n // self.hop)].numpy().astype(self.dtype), n / self.rate, None)
                for b, n in enumerate(lengths)]


def _decode_bytes(data: bytes, path: str | None) -> tuple[torch.Tensor, int]:
    suffix = Path(path).suffix.lower() if path else ""
    said = ""
    if suffix in (".wav", ".flac", ".ogg", ""):
        try:
            samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (N, C)
            return torch.from_numpy(np.ascontiguousarray(samples.T)), int(sr)
        except Exception as e:  # libsndfile lacks this codec: let ffmpeg try
            said = f"soundfile said: {e}; "
    try:
        from torchcodec.decoders import AudioDecoder

        decoded = AudioDecoder(data).get_all_samples()
        return decoded.data.to(torch.float32), int(decoded.sample_rate)
    except Exception as e:
        raise _Skip(f"cannot decode {path or 'the audio bytes'}: {said}torchcodec said: {e}") from e


_WORKER: Encoder | None = None


def init_worker(encoder: Encoder, threads: int) -> None:
    """A pool worker's initializer: the encoder it runs, on `threads` torch threads."""
    global _WORKER
    _WORKER = encoder
    torch.set_num_threads(threads)


def work(cells: list) -> list:
    """A pool worker's job: the initialised encoder on `cells`."""
    assert _WORKER is not None
    return _WORKER(cells)


class Ready:
    """An already computed result with the `get()` of a multiprocessing AsyncResult."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value
