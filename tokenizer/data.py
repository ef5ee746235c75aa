"""Training data of the codec: fixed-length random crops of a folder of audio files or of a saved HF dataset.

The crops of a training step are one sequence drawn from `(seed, step)`, and process `rank` with a batch of b
takes items `[rank * b, (rank + 1) * b)` of it: P processes with b crops each train on exactly the batch of one
process with b x P crops (the global batch). Which clips and which offsets are drawn does not depend on what came
before, so a resumed run sees exactly the batches an uninterrupted one would, with no sampler state to save.
wav/flac/ogg are read with soundfile, which seeks, so only the crop is decoded; mp3 and opus go through torchcodec
(ffmpeg), which decodes from the nearest seek point. The crop is then converted to
the codec's channels and resampled to its rate. A file that cannot be read is skipped (another clip is drawn in
its place, from a stream of that item's own, so the other items and the other processes' shares stay as they were)
and listed in `AudioCrops.skipped`.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .audio import to_channels
from .config import CodecConfig
from .errors import AudioInputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")
_SOUNDFILE_SUFFIXES = (".wav", ".flac", ".ogg")
_HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


class AudioCrops:
    """Random crops of `segment_seconds` from an audio corpus, at `sample_rate` Hz with `channels` channels.

    `source` is a folder searched recursively for .wav/.flac/.ogg/.mp3/.opus files, a single audio file, a
    folder written by `datasets.Dataset.save_to_disk` (its first `Audio` column is used; of a `DatasetDict`, the
    "train" split), or a list of these, whose clips are pooled in that order (e.g. a speech and a music dataset).
    Every clip is equally likely to be drawn, whatever its length; the crop offset is uniform over the clip. Clips
    shorter than a segment are zero-padded at the end.

    Raises AudioInputError if a source does not exist, holds no audio, or (later, in `batch`) if every clip
    turns out to be unreadable.
    """

    def __init__(self, source: str | os.PathLike | list[str | os.PathLike], sample_rate: int, channels: int,
                 segment_seconds: float, seed: int = 0):
        paths = list(source) if isinstance(source, (list, tuple)) else [source]
        if not paths:
            raise AudioInputError("no training data given: pass at least one folder, audio file or saved dataset")
        self.sources = [_Source(Path(p)) for p in paths]
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment_seconds = float(segment_seconds)
        self.segment_samples = round(segment_seconds * sample_rate)
        self.seed = seed
        self.skipped: dict[str, str] = {}  # clip name -> why it could not be read, in order of discovery
        self._bad: set[int] = set()
        self._resamplers: dict[int, torchaudio.transforms.Resample] = {}
        self._starts = np.cumsum([0] + [len(s) for s in self.sources])

    @classmethod
    def from_config(cls, config: CodecConfig, source: str | os.PathLike | list[str | os.PathLike]) -> AudioCrops:
        """Crops at the codec's rate and channels, of `config.training.segment_seconds`, seeded by its seed."""
        return cls(source, config.sample_rate, config.channels, config.training.segment_seconds,
                   config.training.seed)

    def __len__(self) -> int:
        """Number of clips (files or dataset rows) crops are drawn from, over all sources."""
        return int(self._starts[-1])

    def name(self, index: int) -> str:
        """A readable name for clip `index`: the file's path relative to its source, or `dataset[row]`."""
        source, local = self._locate(index)
        return source.name(local)

    def _locate(self, index: int) -> tuple[_Source, int]:
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.sources[part], index - int(self._starts[part])

    def batch(self, step: int, batch_size: int, rank: int = 0) -> torch.Tensor:
        """The batch of training step `step` on process `rank`: FloatTensor[batch_size, channels, segment_samples].

        Items `[rank * batch_size, (rank + 1) * batch_size)` of the step's crops, a sequence drawn from (seed, step):
        the batches of ranks 0..P-1, concatenated in rank order, are the batch of one process with
        `batch_size * P`, whatever P is. The same (seed, step, rank, batch_size) always gives the same batch.
        """
        if rank < 0 or batch_size < 1:
            raise ValueError(f"need rank >= 0 and batch_size >= 1, got rank={rank}, batch_size={batch_size}")
        first = rank * batch_size
        first_draws = np.random.default_rng([self.seed, step, 0])  # item i: the i-th (clip, position) drawn here
        for _ in range(first):  # the earlier ranks' items: drawn only to move on, never read
            self._pick(first_draws)
        return torch.stack([self._draw(step, item, *self._pick(first_draws))
                            for item in range(first, first + batch_size)])

    def crop(self, index: int, position: float) -> torch.Tensor:
        """Clip `index` cropped at `position` in [0, 1) of its free range -> FloatTensor[channels, segment_samples].

        Raises AudioInputError if the clip cannot be read.
        """
        src, suffix = self._open(index)
        wav = sr = None
        sf_exc: Exception | None = None
        # mp3/opus go to ffmpeg: libsndfile's mp3 seek starts mid bit-reservoir (a glitch and stderr noise).
        if suffix in _SOUNDFILE_SUFFIXES or not suffix:
            try:
                wav, sr = _read_soundfile_crop(src, position, self.segment_seconds)
            except Exception as exc:  # libsndfile lacks this codec: let ffmpeg try
                sf_exc = exc
                if isinstance(src, io.BytesIO):
                    src.seek(0)
        if wav is None:
            try:
                wav, sr = _read_torchcodec_crop(src, position, self.segment_seconds)
            except Exception as tc_exc:
                said = f"soundfile said: {sf_exc}; " if sf_exc is not None else ""
                raise AudioInputError(f"cannot read {self.name(index)}: {said}torchcodec said: {tc_exc}") from tc_exc
        if wav.shape[-1] == 0:
            raise AudioInputError(f"{self.name(index)} holds no samples")
        wav = to_channels(wav, self.channels)
        if sr != self.sample_rate:
            if sr not in self._resamplers:  # the sinc kernel costs more than resampling a crop: build it once
                self._resamplers[sr] = torchaudio.transforms.Resample(sr, self.sample_rate)
            wav = self._resamplers[sr](wav)
        n = self.segment_samples
        return wav[:, :n] if wav.shape[-1] >= n else torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))

    def _pick(self, rng: np.random.Generator) -> tuple[int, float]:
        """A clip index and a crop position in [0, 1): always the same two draws, whatever is read afterwards."""
        return int(rng.integers(len(self))), float(rng.random())

    def _draw(self, step: int, item: int, index: int, position: float) -> torch.Tensor:
        """Item `item` of step `step`: clip `index` at `position`, or, while the clip drawn is unreadable, the next
        draw of the item's own stream (seed, step, 1, item). Every process meets the same unreadable clips in the
        same items, so a redraw moves no other item, and known-bad clips are redrawn exactly as newly found ones:
        the crops depend only on the seeds and on which clips are readable, not on which failures were seen."""
        redraws = None
        for _ in range(10 * len(self) + 100):
            if index not in self._bad:
                try:
                    return self.crop(index, position)
                except Exception as exc:  # one broken clip must not stop a long training run
                    self._bad.add(index)
                    self.skipped[self.name(index)] = str(exc)
            if len(self._bad) == len(self):
                break
            if redraws is None:
                redraws = np.random.default_rng([self.seed, step, 1, item])
            index, position = self._pick(redraws)
        examples = "; ".join(f"{k}: {v}" for k, v in list(self.skipped.items())[:3])
        where = ", ".join(repr(str(source.path)) for source in self.sources)
        raise AudioInputError(f"{len(self._bad)} of {len(self)} clips in {where} could not be read "
                              f"and no readable one was drawn; for example {examples}")

    def _open(self, index: int) -> tuple[str | io.BytesIO, str]:
        """The clip as a path or an in-memory file, and its suffix ("" when unknown)."""
        source, local = self._locate(index)
        return source.open(local)


class _Source:
    """One training source: a folder of audio files, one audio file, or a saved HF dataset."""

    def __init__(self, path: Path):
        self.path = path
        self.files: list[Path] = []
        self.dataset = None
        if not path.exists():
            raise AudioInputError(f"training data {str(path)!r} does not exist; pass a folder of audio "
                                  "files or a folder written by datasets' save_to_disk")
        if path.is_file():
            self.files = [path]
        elif any((path / marker).is_file() for marker in _HF_MARKERS):
            self.dataset, self.column = _open_hf_dataset(path)
        else:
            self.files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not self.files:
                raise AudioInputError(
                    f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found under {str(path)!r}; "
                    "point the training data at a folder of audio files or a saved Hugging Face dataset")

    def __len__(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.files)

    def name(self, index: int) -> str:
        if self.dataset is not None:
            return f"{self.path.name}[{index}]"
        path = self.files[index]
        return str(path.relative_to(self.path)) if path != self.path else path.name

    def open(self, index: int) -> tuple[str | io.BytesIO, str]:
        if self.dataset is None:
            return str(self.files[index]), self.files[index].suffix.lower()
        item = self.dataset[index][self.column]
        suffix = Path(item["path"]).suffix.lower() if item.get("path") else ""
        if item.get("bytes"):
            return io.BytesIO(item["bytes"]), suffix
        if item.get("path"):
            return item["path"], suffix
        raise AudioInputError(f"{self.name(index)} has neither bytes nor a path in column {self.column!r}")


def _open_hf_dataset(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise AudioInputError(f"cannot load the Hugging Face dataset saved in {str(path)!r}: {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise AudioInputError(f"the dataset in {str(path)!r} has splits {sorted(ds)} and none is 'train'; "
                                  "save the split to train on by itself")
    column = next((name for name, feature in ds.features.items() if isinstance(feature, datasets.Audio)), None)
    if column is None:
        raise AudioInputError(f"the dataset in {str(path)!r} has no Audio column (features: {dict(ds.features)}); "
                              "cast the audio column with datasets.Audio()")
    if len(ds) == 0:
        raise AudioInputError(f"the dataset in {str(path)!r} has no rows")
    # Undecoded rows are {"bytes", "path"}: we decode only the crop ourselves, without a whole-clip decode.
    ds = ds.select_columns([column]).cast_column(column, datasets.Audio(decode=False))
    return ds, column


def _read_soundfile_crop(src: str | io.BytesIO, position: float, seconds: float) -> tuple[torch.Tensor, int]:
    with sf.SoundFile(src) as f:
        sr, frames = f.samplerate, f.frames
        length = math.ceil(seconds * sr)
        start = int(position * max(0, frames - length + 1))
        if start:
            f.seek(start)
        data = f.read(length, dtype="float32", always_2d=True)  # (n, C)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)  # (C, n)


def _read_torchcodec_crop(src: str | io.BytesIO, position: float, seconds: float) -> tuple[torch.Tensor, int]:
    from torchcodec.decoders import AudioDecoder

    decoder = AudioDecoder(src.getvalue() if isinstance(src, io.BytesIO) else src)
    meta = decoder.metadata
    duration = next((d for d in (meta.duration_seconds_from_header, meta.duration_seconds)
                     if d is not None and math.isfinite(d) and d > 0), None)
    if duration is None:  # no duration in the container: decode it all, then crop
        samples = decoder.get_all_samples()
        sr = int(samples.sample_rate)
        data = samples.data
        length = math.ceil(seconds * sr)
        start = int(position * max(0, data.shape[-1] - length + 1))
        return data[:, start:start + length].float(), sr
    start = position * max(0.0, duration - seconds)
    samples = decoder.get_samples_played_in_range(start, min(duration, start + seconds))
    return samples.data[:, :math.ceil(seconds * samples.sample_rate)].float(), int(samples.sample_rate)
