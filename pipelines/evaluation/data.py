"""Reading the held-out split of a recipe dataset, and the Opus baseline: what every evaluation shares."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from datasets import Audio, Dataset, DatasetDict

from tokenizer.json_config import write_text_atomic


def load_split(data: str | os.PathLike | Dataset | DatasetDict, split: str = "test") -> Dataset:
    """The `split` of a dataset folder written by `save_to_disk` (e.g. by `rvqaudio data`), or of a DatasetDict.

    A `Dataset` is returned as is. Raises FileNotFoundError for a missing folder, ValueError for a missing split.
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        import datasets

        if not Path(data).is_dir():
            raise FileNotFoundError(f"dataset folder {str(data)!r} does not exist; make one with `rvqaudio data`")
        data = datasets.load_from_disk(str(data))
        if isinstance(data, Dataset):
            return data
    if not isinstance(data, DatasetDict):
        raise ValueError(f"data must be a dataset folder, a Dataset or a DatasetDict, got {type(data).__name__}")
    if split not in data:
        raise ValueError(f"the dataset has splits {sorted(data)}, not {split!r}; pass split= one of them")
    return data[split]


def audio_column(ds: Dataset) -> str:
    """The name of the first `Audio` column of `ds` (ValueError if it has none)."""
    for name, feature in ds.features.items():
        if isinstance(feature, Audio):
            return name
    raise ValueError(f"the dataset has no Audio column (columns: {ds.column_names})")


def iter_audio(ds: Dataset, max_items: int | None = None) -> Iterator[tuple[torch.Tensor, int, dict[str, Any]]]:
    """Yield `(wav FloatTensor[C, N], sample_rate in Hz, the row's other columns)` for the first `max_items` rows.

    The audio bytes are decoded with soundfile (FLAC/WAV, as the recipes store them), or torchcodec for other
    codecs; files referenced by path are read the same way.
    """
    column = audio_column(ds)
    ds = ds.cast_column(column, Audio(decode=False))
    n = len(ds) if max_items is None else min(len(ds), max_items)
    for i in range(n):
        row = ds[i]
        cell = row.pop(column)
        wav, sr = _decode(cell.get("bytes"), cell.get("path"))
        yield wav, sr, row


def _decode(data: bytes | None, path: str | None) -> tuple[torch.Tensor, int]:
    if data is None and path is None:
        raise ValueError("an audio cell has neither bytes nor a path")
    try:
        samples, sr = sf.read(io.BytesIO(data) if data is not None else path, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(samples.T)), int(sr)  # (C, N)
    except Exception:  # libsndfile lacks this codec: let ffmpeg try
        from torchcodec.decoders import AudioDecoder

        decoded = AudioDecoder(data if data is not None else path).get_all_samples()
        return decoded.data.to(torch.float32), int(decoded.sample_rate)


# ------------------------------------------------------------------------------------------------- Opus baseline
@dataclass
class OpusResult:
    audio: torch.Tensor  # (C, N) decoded, exactly as long as the input
    num_bytes: int  # size of the .opus file (Ogg container included)
    seconds: float  # duration of the input

    @property
    def kbps(self) -> float:
        """The real bitrate: file bytes * 8 / duration, container overhead included."""
        return self.num_bytes * 8 / self.seconds / 1000


def check_opus_kbps(kbps: Iterable[float]) -> list[float]:
    """The Opus target bitrates as floats; ValueError unless each lies in libopus' range, 6-510 kbps."""
    kbps = [float(b) for b in kbps]
    if any(not 6 <= b <= 510 for b in kbps):
        raise ValueError(f"Opus bitrates must lie in 6-510 kbps (libopus' range), got {kbps}")
    return kbps


def opus_roundtrip(wav: torch.Tensor, sample_rate: int, kbps: float) -> OpusResult:
    """Encode FloatTensor[C, N] at `sample_rate` Hz with ffmpeg's libopus at `kbps` (VBR, application "audio"),
    decode it back to the same rate and channels, and cut or zero-pad to exactly N samples.

    ffmpeg trims Opus' pre-skip on decoding, so the output is sample-aligned with the input. Raises
    FileNotFoundError if ffmpeg is missing, RuntimeError with ffmpeg's message if it fails.
    """
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("the Opus baseline needs ffmpeg with libopus: sudo apt-get install ffmpeg")
    if wav.dim() != 2:
        raise ValueError(f"opus_roundtrip takes a waveform [C, N], got shape {tuple(wav.shape)}")
    channels, n = wav.shape
    with tempfile.TemporaryDirectory(prefix="rvqaudio-opus-") as tmp:
        src, enc = Path(tmp) / "in.wav", Path(tmp) / "out.opus"
        # float wav: no extra 16-bit quantisation noise before the codec under test
        sf.write(src, wav.detach().cpu().float().T.numpy(), int(sample_rate), subtype="FLOAT")
        _ffmpeg(["-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps:g}k", str(enc)])
        raw = _ffmpeg(["-i", str(enc), "-ar", str(int(sample_rate)), "-ac", str(channels), "-f", "f32le", "-"])
        num_bytes = enc.stat().st_size
    decoded = torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy()).reshape(-1, channels).T  # (C, N')
    decoded = decoded[:, :n]
    if decoded.shape[1] < n:
        decoded = torch.nn.functional.pad(decoded, (0, n - decoded.shape[1]))
    return OpusResult(decoded.contiguous(), num_bytes, n / sample_rate)


def _ffmpeg(args: list[str]) -> bytes:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def write_report(output: str | os.PathLike | None, report: dict[str, Any]) -> None:
    """Write an evaluation `report` as JSON to `output` (nothing when None), and its `markdown` entry, if any,
    beside it as a .md file; each file is written atomically (a temporary sibling, then renamed)."""
    if output is None:
        return
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files = {output: json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2) + "\n"}
    if "markdown" in report:
        files[output.with_suffix(".md")] = report["markdown"]
    for path, text in files.items():
        write_text_atomic(path, text)


def check_count(name: str, value: Any, low: int = 1, allow_none: bool = False) -> None:
    """ValueError unless `value` is an integer >= `low` (1: a positive integer, 0: a non-negative one), or None
    when `allow_none`."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "positive" if low == 1 else "non-negative" if low == 0 else f">= {low}"
        raise ValueError(f"{name} must be a {kind} integer{' or None' if allow_none else ''}, got {value!r}")


def describe(source: Any, none: str = "bundled LM") -> str:
    """How a report names what it evaluated: a folder's path, `none` for None (the bundled model), or the type."""
    if source is None:
        return none
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
