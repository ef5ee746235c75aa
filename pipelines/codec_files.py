"""Audio file <-> `.npz` codes file, with everything needed to decode the codes later."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from tokenizer import CodesError, RVQCodec
from tokenizer.audio import save_audio
from tokenizer.level import CodecLevel
from tokenizer.long_audio import audio_file_rms, encode_audio_file

from lm.codec_interface import same_code_space

from .defaults import resolve_codec, resolve_decoder_choice
from .outputs import check_output_file

CODES_FORMAT_VERSION = 1
OWN_DECODER = "own"  # decode_file's variant for the codec folder's own decoder, whatever its decoder choice says


def encode_file(src: str | os.PathLike, out: str | os.PathLike, codec: RVQCodec | str | os.PathLike | None = None,
                num_codebooks: int | None = None, strict: bool = False,
                level: CodecLevel | None = CodecLevel()) -> Path:
    """Encode an audio file (wav/flac/ogg/mp3/opus, any rate) to `out` (.npz), atomically.

    The file holds `codes` (K, T) and the metadata needed to decode them: the codec's fingerprint,
    sample rate, frame rate, codebook size, the original length in samples at the codec's rate, and `gain`: the
    file is encoded brought to `level`'s RMS level (-18 dBFS by default), and `decode_file` divides by that gain
    (`level=None`: encoded at its own level, gain 1). A truncated input (shorter than its header states) is
    encoded with a warning, or refused with `strict`.
    """
    out = check_output_file(out, "codes file")
    if level is not None and not isinstance(level, CodecLevel):
        raise ValueError(f"level must be a CodecLevel or None, got {type(level).__name__}")
    codec = resolve_codec(codec)
    gain = 1.0 if level is None else level.gain(audio_file_rms(src, codec.channels))  # a first pass over the file
    # read, resampled and encoded block by block: a 1-hour file takes the memory of a minute
    codes, num_samples = encode_audio_file(codec, src, num_codebooks=num_codebooks, strict=strict, gain=gain)
    codes = codes[0]  # (K, T)
    dtype = np.int16 if codec.codebook_size <= 2**15 else np.int32
    fields = {
        "codes": codes.cpu().numpy().astype(dtype),
        "format_version": np.array(CODES_FORMAT_VERSION),
        "fingerprint": np.array(codec.fingerprint),
        "sample_rate": np.array(codec.sample_rate),
        "frame_rate": np.array(codec.frame_rate),
        "codebook_size": np.array(codec.codebook_size),
        "channels": np.array(codec.channels),
        "num_samples": np.array(num_samples),
        "gain": np.array(gain, dtype=np.float64),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **fields)
    return _write_atomic(Path(out), buffer.getvalue())


# The fields of a codes file: name -> (numpy dtype kinds accepted, what it holds).
_FIELDS = {
    "codes": ("iu", "integer codes (K, T)"),
    "format_version": ("iu", "an integer"),
    "fingerprint": ("U", "a string"),
    "sample_rate": ("iu", "a positive integer (Hz)"),
    "frame_rate": ("iuf", "a positive number (Hz)"),
    "codebook_size": ("iu", "a positive integer"),
    "channels": ("iu", "a positive integer"),
    "num_samples": ("iu", "a non-negative integer"),
    "gain": ("iuf", "a positive number (the factor the audio was encoded at; decoding divides by it)"),
}
_REQUIRED = ("codes", "fingerprint", "sample_rate", "num_samples")


def read_codes(src: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read a codes file written by `encode_file`: (LongTensor (1, K, T), metadata dict).

    Every field is checked (dtype, shape, range); CodesError names the file and the field otherwise. Nothing is
    unpickled (`allow_pickle=False`).
    """
    src = Path(src)
    if not src.is_file():
        raise CodesError(f"codes file {str(src)!r} does not exist")
    try:
        data = np.load(src, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array (.npy), not the fields of a codes file")
        with data:
            fields = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error,
            NotImplementedError) as e:  # RuntimeError: zipfile's "is encrypted"
        raise CodesError(f"{str(src)!r} is not a readable codes file written by `rvqaudio encode` "
                         f"({type(e).__name__}: {e})") from e
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise CodesError(f"codes file {str(src)!r} lacks {missing}; re-encode it with `rvqaudio encode`")
    for name, value in fields.items():
        if name not in _FIELDS:
            continue  # unknown fields of a newer writer are kept in the metadata but not read
        kinds, expected = _FIELDS[name]
        shape_ok = value.ndim == 2 if name == "codes" else value.ndim == 0
        if value.dtype.kind not in kinds or not shape_ok:
            raise CodesError(f"codes file {str(src)!r}: field {name!r} must be {expected}, got "
                             f"{value.dtype} with shape {value.shape}")
    codes = fields["codes"]
    meta = {k: v.item() if v.ndim == 0 else v.tolist() for k, v in fields.items() if k != "codes"}
    for name in ("sample_rate", "frame_rate", "codebook_size", "channels", "gain"):
        if name in meta and not (np.isfinite(meta[name]) and meta[name] > 0):
            raise CodesError(f"codes file {str(src)!r}: field {name!r} must be positive, got {meta[name]!r}")
    if meta["num_samples"] < 0:
        raise CodesError(f"codes file {str(src)!r}: field 'num_samples' must be >= 0, got {meta['num_samples']}")
    if codes.shape[0] == 0 or codes.shape[1] == 0:
        raise CodesError(f"codes file {str(src)!r}: field 'codes' is empty (shape {codes.shape}); re-encode it")
    low, high = int(codes.min()), int(codes.max())
    size = meta.get("codebook_size")
    if low < 0 or (size is not None and high >= size):
        raise CodesError(f"codes file {str(src)!r}: field 'codes' holds values in [{low}, {high}], outside "
                         f"[0, {size if size is not None else 'codebook_size'})")
    return torch.from_numpy(codes.astype(np.int64))[None], meta


def decode_file(src: str | os.PathLike, out: str | os.PathLike,
                codec: RVQCodec | str | os.PathLike | None = None, variant: str | None = None) -> Path:
    """Decode a codes file to a wav file of the original length, atomically.

    The codes must come from `codec` (same fingerprint); otherwise decoding would produce garbage. `variant` names
    a decoder variant of the codec folder to decode with (e.g. "speech"; any variant reads the same codes), or
    OWN_DECODER ("own") for the folder's own decoder. None: the folder's decoder choice picks one from the codes
    (`tokenizer.decoder_choice`; the bundled codec's picks its speech decoder for speech), else its own decoder.
    The file's metadata must agree with the codec (rate, codebook size, length): CodesError names the field. The
    audio is divided by the file's `gain` (the level `encode_file` brought it to), so it comes back at its level.
    """
    out = check_output_file(out, "output audio file")
    codes, meta = read_codes(src)
    codec = resolve_codec(codec, chosen_decoder(codes, codec, variant))
    if not same_code_space(meta["fingerprint"], codec, repr(str(src))):
        raise CodesError(
            f"{str(src)!r} was encoded by a codec with fingerprint {meta['fingerprint']}, but the codec given "
            f"has fingerprint {codec.fingerprint}; decode with the codec that encoded it")
    for name, mine in (("sample_rate", codec.sample_rate), ("codebook_size", codec.codebook_size),
                       ("channels", codec.channels)):
        if name in meta and meta[name] != mine:
            raise CodesError(f"codes file {str(src)!r}: field {name!r} is {meta[name]}, the codec's is {mine}")
    if codes.shape[1] > codec.num_codebooks:
        raise CodesError(f"codes file {str(src)!r} holds {codes.shape[1]} codebooks, the codec has "
                         f"{codec.num_codebooks}")
    most = codes.shape[-1] * codec.hop_length
    if meta["num_samples"] > most:
        raise CodesError(f"codes file {str(src)!r}: field 'num_samples' is {meta['num_samples']}, more than its "
                         f"{codes.shape[-1]} frames can hold ({most} samples)")
    wav = codec.decode(codes)[0, :, : int(meta["num_samples"])] / float(meta.get("gain", 1.0))
    save_audio(out, wav, codec.sample_rate)
    return Path(out)


def chosen_decoder(codes: torch.Tensor, codec: RVQCodec | str | os.PathLike | None, variant: str | None) -> str | None:
    """The decoder variant that decodes `codes` [B, K, T] (None: the codec's own): `variant` when given (OWN_DECODER
    for the own decoder), else what the codec folder's decoder choice picks for the first item, else None. A loaded
    RVQCodec has no folder to hold a choice: its own decoder decodes."""
    if variant == OWN_DECODER:
        return None
    if variant is not None:
        return variant
    choice = resolve_decoder_choice(codec)
    return None if choice is None else choice.choose(codes[:1])[0]


def _write_atomic(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
