"""Audio files in and out of the codec: load, save, resample, change channel count, read a duration.

Waveforms are float32 ``[C, N]`` (channels, samples) here; batches ``[B, C, N]`` pass through `resample` and
`to_channels` unchanged in layout. wav, flac and ogg go through soundfile (libsndfile); mp3, opus, m4a and
anything else ffmpeg reads go through torchcodec. Every failure is an `AudioInputError` naming the file.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import AudioInputError

# The highest sample rate a real file has (DXD, 768 kHz audio interfaces); a header stating more is damaged.
MAX_SAMPLE_RATE = 768_000
# torchaudio's resampler builds a (new / gcd) x (orig / gcd) sinc kernel: past this many entries (64 MB of float32)
# the rates are not a pair any real conversion uses (44101 -> 8000 Hz would take 1.4 GB).
MAX_RESAMPLE_KERNEL = 2**24

# Suffixes read and written with soundfile; the format name soundfile uses to write each.
SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


class TruncatedAudioWarning(UserWarning):
    """An audio file decoded to less than its header states (a cut download or copy); its readable part is used."""


def load_audio(
    path: str | os.PathLike, sample_rate: int | None = None, channels: int | None = None, strict: bool = False
) -> tuple[torch.Tensor, int]:
    """Decode an audio file to FloatTensor[C, N] and its sample rate in Hz.

    PCM and compressed files decode to [-1, 1]; float files are returned as stored (not clipped, so their
    level is not silently changed). `sample_rate` resamples (torchaudio's sinc resampler) when it differs from
    the file's; `channels` converts as `to_channels` does (1: mean down-mix; 2 from mono: duplicate).
    wav/flac/ogg are read with soundfile, falling back to torchcodec for codecs libsndfile lacks; other
    suffixes (mp3, opus, m4a, ...) are read with torchcodec.
    A file that decodes to less than its header states (truncated) gives a `TruncatedAudioWarning` with both
    durations, or, with `strict=True`, an AudioInputError.
    Raises AudioInputError if the file is missing or cannot be decoded (with the decoder's message).
    """
    path = Path(path)
    check_exists(path)
    if sample_rate is not None:
        _check_rate(sample_rate, "sample_rate")
    if channels is not None and channels not in (1, 2):
        raise AudioInputError(f"channels must be 1 (mono) or 2 (stereo), got {channels}")

    if path.suffix.lower() in SOUNDFILE_FORMATS:
        try:
            wav, sr, stated = _read_soundfile(path)
        except Exception as sf_exc:  # libsndfile lacks some codecs in these containers: let ffmpeg try
            try:
                wav, sr, stated = _read_torchcodec(path)
            except Exception as tc_exc:
                raise AudioInputError(
                    f"cannot decode {str(path)!r}: soundfile said: {sf_exc}; torchcodec said: {tc_exc}"
                ) from sf_exc
    else:
        try:
            wav, sr, stated = _read_torchcodec(path)
        except Exception as exc:
            raise AudioInputError(f"cannot decode {str(path)!r} with torchcodec (ffmpeg): {exc}") from exc
    check_file_rate(path, sr)
    check_complete(path, wav.shape[-1] / sr, stated, strict)
    if sample_rate is not None and sample_rate != sr:
        try:
            wav, sr = resample(wav, sr, sample_rate), sample_rate
        except AudioInputError as e:
            raise AudioInputError(f"{str(path)!r}: {e}") from e
    if channels is not None:
        wav = to_channels(wav, channels)
    return wav.contiguous(), sr


def save_audio(
    path: str | os.PathLike, wav: torch.Tensor, sample_rate: int, subtype: str = "PCM_16"
) -> None:
    """Write FloatTensor[C, N] (or [N], mono) at `sample_rate` Hz to a wav, flac or ogg file.

    The format follows the suffix. Samples are clipped to [-1, 1] first. `subtype` is soundfile's
    ("PCM_16", "PCM_24", "FLOAT", ...); ogg is always lossy, so a PCM subtype there means Vorbis.
    The file is written to a temporary file in the same folder and moved into place with `os.replace`,
    so a failed save leaves no partial file and an existing file untouched. A missing parent folder is created.
    Raises AudioInputError for a bad suffix, shape, dtype, NaN/inf samples, rate or subtype.
    """
    path = Path(path)
    fmt = SOUNDFILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioInputError(
            f"cannot save {str(path)!r}: save_audio writes {sorted(SOUNDFILE_FORMATS)}; "
            f"write a .wav and convert it with ffmpeg for other formats"
        )
    _check_rate(sample_rate, "sample_rate")
    if not isinstance(wav, torch.Tensor):
        raise AudioInputError(f"wav must be a torch.Tensor, got {type(wav).__name__}")
    if not wav.is_floating_point():
        raise AudioInputError(f"wav must be a float tensor in [-1, 1], got dtype {wav.dtype}; convert it first")
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    if wav.dim() != 2:
        raise AudioInputError(f"wav must be [C, N] or [N], got shape {tuple(wav.shape)}")
    if not torch.isfinite(wav).all():
        raise AudioInputError(f"wav has NaN or infinite samples; refusing to write {str(path)!r}")
    if fmt == "OGG" and subtype.upper().startswith("PCM"):
        subtype = "VORBIS"
    if not sf.check_format(fmt, subtype):
        raise AudioInputError(
            f"subtype {subtype!r} is not valid for {fmt}; valid ones are {sorted(sf.available_subtypes(fmt))}"
        )

    # soundfile wants [N, C]: samples first.
    data = wav.detach().to("cpu", torch.float32).clamp(-1.0, 1.0).T.contiguous().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, data, sample_rate, subtype=subtype, format=fmt)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a saved audio file should be readable like any other
        os.replace(tmp, path)
    except sf.LibsndfileError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise AudioInputError(f"cannot write {str(path)!r} as {fmt}/{subtype} at {sample_rate} Hz: {exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample FloatTensor[..., N] from `orig_sr` to `new_sr` Hz -> [..., ceil(N * new_sr / orig_sr)].

    A thin wrapper over `torchaudio.functional.resample` (windowed sinc); returns `wav` itself when the
    rates are equal.
    """
    _check_rate(orig_sr, "orig_sr")
    _check_rate(new_sr, "new_sr")
    if orig_sr == new_sr:
        return wav
    if not wav.is_floating_point():
        raise AudioInputError(f"resample needs a float waveform, got dtype {wav.dtype}")
    if wav.shape[-1] == 0:  # torchaudio cannot reshape an empty signal
        return wav.new_zeros(*wav.shape[:-1], 0)
    g = math.gcd(orig_sr, new_sr)
    if (orig_sr // g) * (new_sr // g) > MAX_RESAMPLE_KERNEL:  # the sinc kernel's size grows with this product
        raise AudioInputError(
            f"cannot resample {orig_sr} Hz to {new_sr} Hz: the two rates share no common factor large enough "
            f"(a {orig_sr // g} x {new_sr // g} kernel); convert the audio to a common rate first (e.g. with ffmpeg "
            "-ar 48000)")
    return AF.resample(wav, orig_sr, new_sr)


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert FloatTensor[..., C, N] to [..., channels, N].

    1: the mean of all channels (a down-mix that keeps the level of correlated channels);
    2 from mono: the channel duplicated; same count: `wav` itself. Anything else raises AudioInputError,
    since no up- or down-mix between other counts is obviously right.
    """
    if wav.dim() < 2:
        raise AudioInputError(f"to_channels needs [..., C, N], got shape {tuple(wav.shape)}")
    current = wav.shape[-2]
    if channels == current:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)
    if channels == 2 and current == 1:
        return wav.expand(*wav.shape[:-2], 2, wav.shape[-1]).clone()
    raise AudioInputError(
        f"cannot convert {current} channels to {channels}; supported: any count to 1 (mean), 1 to 2 (duplicate)"
    )


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header where the format has one.

    wav/flac/ogg use soundfile's frame count; other formats use ffmpeg's stream metadata (for mp3 an estimate
    from the header), and decode the file only when the container states no duration.
    """
    path = Path(path)
    check_exists(path)
    if path.suffix.lower() in SOUNDFILE_FORMATS:
        try:
            info = sf.info(str(path))
            if info.samplerate > 0:
                return info.frames / info.samplerate
        except Exception:
            pass  # fall through to ffmpeg, which reads more codecs in these containers
    try:
        from torchcodec.decoders import AudioDecoder

        decoder = AudioDecoder(str(path))
        meta = decoder.metadata
        for seconds in (meta.duration_seconds_from_header, meta.duration_seconds):
            if seconds is not None and math.isfinite(seconds) and seconds >= 0:
                return float(seconds)
        samples = decoder.get_all_samples()
        return samples.data.shape[-1] / samples.sample_rate
    except Exception as exc:
        raise AudioInputError(f"cannot read the duration of {str(path)!r}: {exc}") from exc


def check_file_rate(path: Path, rate: int) -> None:
    """AudioInputError unless the sample rate a file states is one a real file has."""
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        raise AudioInputError(f"{str(path)!r} states a sample rate of {rate} Hz, outside [1, {MAX_SAMPLE_RATE}]: "
                              "its header is damaged")


def soundfile_stated_seconds(path: Path, frames: int, sample_rate: int) -> float | None:
    """The duration the header of a file libsndfile reads states (`frames` at `sample_rate`: its count), None when
    unknown; for a wav, the data chunk's size, since libsndfile shortens a cut file's count to what is there."""
    if path.suffix.lower() == ".wav":
        return _wav_header_seconds(path)
    return frames / sample_rate if sample_rate > 0 else None


def _read_soundfile(path: Path) -> tuple[torch.Tensor, int, float | None]:
    """(wav (C, N), rate, the duration the header states in seconds, None when unknown)."""
    with sf.SoundFile(str(path)) as f:
        stated = soundfile_stated_seconds(path, f.frames, f.samplerate)
        data = f.read(dtype="float32", always_2d=True)  # (N, C)
        sr = f.samplerate
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr), stated  # (C, N)


def _read_torchcodec(path: Path) -> tuple[torch.Tensor, int, float | None]:
    # Imported here: torchcodec loads FFmpeg's shared libraries, which wav/flac-only users never need.
    from torchcodec.decoders import AudioDecoder

    decoder = AudioDecoder(str(path))
    stated = decoder.metadata.duration_seconds_from_header
    samples = decoder.get_all_samples()
    return samples.data.to(torch.float32), int(samples.sample_rate), stated  # (C, N)


def _wav_header_seconds(path: Path) -> float | None:
    """The duration a PCM wav's header states (its data chunk's size), None where it cannot tell."""
    try:
        with open(path, "rb") as f:
            if f.read(4) not in (b"RIFF", b"RF64") or not f.seek(8) or f.read(4) != b"WAVE":
                return None
            block_align = rate = None
            while len(header := f.read(8)) == 8:
                size = int.from_bytes(header[4:], "little")
                if header[:4] == b"fmt ":
                    fmt = f.read(size + size % 2)
                    rate, block_align = int.from_bytes(fmt[4:8], "little"), int.from_bytes(fmt[12:14], "little")
                elif header[:4] == b"data":
                    if not rate or not block_align or size in (0, 0xFFFFFFFF):  # streaming writers leave it open
                        return None
                    return size // block_align / rate
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None
    return None


def check_complete(path: Path, seconds: float, stated: float | None, strict: bool) -> None:
    """Warn (or, strict, refuse) when a file decoded to clearly less than its header states."""
    # Lossy headers count the encoder's delay and padding, which gapless decoding drops (an mp3 at 8-16 kHz:
    # up to ~0.15 s); a cut file misses far more.
    if stated is None or not math.isfinite(stated) or seconds >= stated - max(0.25, 0.02 * stated):
        return
    message = (f"{str(path)!r} looks truncated: it decoded to {seconds:.2f} s, its header states {stated:.2f} s")
    if strict:
        raise AudioInputError(message + "; refusing it (strict)")
    warnings.warn(message + "; using the readable part (strict=True / --strict refuses such files)",
                  TruncatedAudioWarning, stacklevel=3)


def check_exists(path: Path) -> None:
    """AudioInputError unless `path` is an existing file."""
    if not path.exists():
        raise AudioInputError(f"audio file {str(path)!r} does not exist")
    if not path.is_file():
        raise AudioInputError(f"{str(path)!r} is not a file")


def _check_rate(rate: int, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioInputError(f"{name} must be a positive integer number of Hz, got {rate!r}")
