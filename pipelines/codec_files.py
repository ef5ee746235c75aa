"""Audio file <-> `.npz` codes file, with everything needed to decode the codes later."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from tokenizer import CodesError, RVQCodec
from tokenizer.audio import load_audio, save_audio

from .defaults import resolve_codec

CODES_FORMAT_VERSION = 1


def encode_file(src: str | os.PathLike, out: str | os.PathLike, codec: RVQCodec | str | os.PathLike | None = None,
                num_codebooks: int | None = None) -> Path:
    """Encode an audio file (wav/flac/ogg/mp3/opus, any rate) to `out` (.npz), atomically.

    The file holds `codes` (K, T) and the metadata needed to decode them: the codec's fingerprint,
    sample rate, frame rate, codebook size, and the original length in samples at the codec's rate.
    """
    codec = resolve_codec(codec)
    wav, _ = load_audio(src, sample_rate=codec.sample_rate, channels=codec.channels)  # (C, N)
    codes = codec.encode(wav[None], num_codebooks=num_codebooks)[0]  # (K, T)
    dtype = np.int16 if codec.codebook_size <= 2**15 else np.int32
    fields = {
        "codes": codes.cpu().numpy().astype(dtype),
        "format_version": np.array(CODES_FORMAT_VERSION),
        "fingerprint": np.array(codec.fingerprint),
        "sample_rate": np.array(codec.sample_rate),
        "frame_rate": np.array(codec.frame_rate),
        "codebook_size": np.array(codec.codebook_size),
        "channels": np.array(codec.channels),
        "num_samples": np.array(wav.shape[-1]),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **fields)
    return _write_atomic(Path(out), buffer.getvalue())


def read_codes(src: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read a codes file written by `encode_file`: (LongTensor (1, K, T), metadata dict)."""
    src = Path(src)
    if not src.is_file():
        raise CodesError(f"codes file {str(src)!r} does not exist")
    try:
        with np.load(src, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise CodesError(f"{str(src)!r} is not a codes file written by `rvqaudio encode`: {e}") from e
    missing = {"codes", "fingerprint", "sample_rate", "num_samples"} - set(fields)
    if missing:
        raise CodesError(f"codes file {str(src)!r} lacks {sorted(missing)}; re-encode it with `rvqaudio encode`")
    meta = {k: v.item() for k, v in fields.items() if k != "codes"}
    return torch.from_numpy(fields["codes"].astype(np.int64))[None], meta


def decode_file(src: str | os.PathLike, out: str | os.PathLike,
                codec: RVQCodec | str | os.PathLike | None = None, variant: str | None = None) -> Path:
    """Decode a codes file to a wav file of the original length, atomically.

    The codes must come from `codec` (same fingerprint); otherwise decoding would produce garbage. `variant` names
    a decoder variant of the codec folder to decode with (e.g. "speech"; any variant reads the same codes).
    """
    codec = resolve_codec(codec, variant)
    codes, meta = read_codes(src)
    if meta["fingerprint"] != codec.fingerprint:
        raise CodesError(
            f"{str(src)!r} was encoded by a codec with fingerprint {meta['fingerprint']}, but the codec given "
            f"has fingerprint {codec.fingerprint}; decode with the codec that encoded it")
    wav = codec.decode(codes)[0, :, : int(meta["num_samples"])]
    save_audio(out, wav, codec.sample_rate)
    return Path(out)


def _write_atomic(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
