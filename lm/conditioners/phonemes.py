"""The aligned phoneme track (speech): each transcript's espeak-ng phonemes laid along its frames.

The utterance's phonemes sit where a forced alignment or a duration table puts them (`phonemizer.lay_out`), or
spread evenly; a convolution over the phonemes gives each one its neighbours, and each audio position adds the
features of its frame's phoneme through a zero-initialised projection. The text prefix alone leaves the model to
discover where in the text each frame is, which a small model on a CPU budget does not; the track tells it, and the
window tells it what is around. Frames outside the utterance's phonemes get an end-of-phonemes feature.

An LM has this track when its config sets `phoneme_vocab_size` (`phonemizer.VOCAB_SIZE`), with a convolution
`phoneme_kernel` phonemes wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .base import TrackConditioner
from .phonemizer import END_ID, PAD_ID, VOCAB_SIZE, text_phoneme_ids


@dataclass
class PhonemeTrack:
    """Phonemes laid along the audio frames of each item.

    ids: LongTensor[B, P], `phonemizer` ids right-padded with 0; a row of zeros has no track (music, a dropped
        condition). total_frames: LongTensor[B], the frame after the last phoneme: frames t >= total are past the
        end. frame_offset: LongTensor[B] or None (0), the frame of the first audio position: the start of a
        training crop, or minus the length of an audio prompt (frames before 0 get no track).
    starts: LongTensor[B, P] or None. None spreads the phonemes evenly: phoneme floor((t + 0.5) * n / total) sits
        at frame t. Given, each symbol starts at its frame (non-decreasing along a row; `phonemizer.lay_out` or a
        forced alignment makes them): frame t has the last symbol that starts at or before it, so a symbol that
        starts where the next does takes no frames, and frames before the first start are, like those past the
        end, silence (the end feature).
    """

    ids: torch.Tensor
    total_frames: torch.Tensor
    frame_offset: torch.Tensor | None = None
    starts: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.ids.dim() != 2 or self.total_frames.shape != self.ids.shape[:1]:
            raise ValueError(f"a PhonemeTrack needs ids [B, P] and total_frames [B], got {list(self.ids.shape)} and "
                             f"{list(self.total_frames.shape)}")
        if bool((self.total_frames < 1).any()):
            raise ValueError(f"total_frames must be >= 1, got {self.total_frames.tolist()}")
        if self.starts is not None:
            if self.starts.shape != self.ids.shape:
                raise ValueError(f"starts must have the shape of ids {list(self.ids.shape)}, got "
                                 f"{list(self.starts.shape)}")
            real = self.ids != PAD_ID
            if bool(((self.starts[:, 1:] < self.starts[:, :-1]) & real[:, 1:]).any()):
                raise ValueError("starts must not decrease along a row (each symbol starts at or after the one "
                                 "before it)")

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    def present(self) -> torch.Tensor:
        """BoolTensor[B]: the rows that have phonemes."""
        return (self.ids != PAD_ID).any(dim=1)

    def without(self, drop: torch.Tensor) -> PhonemeTrack:
        """The same track with the rows where drop BoolTensor[B] is True emptied (the null condition)."""
        return PhonemeTrack(self.ids.masked_fill(drop.to(self.ids.device).unsqueeze(1), PAD_ID), self.total_frames,
                            self.frame_offset, self.starts)


class PhonemeConditioner(TrackConditioner):
    """Builds `PhonemeTrack`s from transcripts (`track`) and embeds them: a phoneme table, a convolution over each
    row's phonemes, and a projection that starts at zero."""

    name = "phoneme"
    flat_names = {"phoneme_embedding": "embedding", "phoneme_conv": "conv", "phoneme_projection": "projection"}

    def __init__(self, config) -> None:
        super().__init__(config)
        D, kernel = config.hidden_size, config.phoneme_kernel
        self.embedding = nn.Embedding(config.phoneme_vocab_size, D, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(D, D, kernel, padding=kernel // 2)
        self.projection = nn.Linear(D, D, bias=False)

    @classmethod
    def enabled(cls, config) -> bool:
        return bool(config.phoneme_vocab_size)

    @classmethod
    def config_changes(cls, config, kernel: int | None = None) -> dict:
        default = type(config).phoneme_kernel  # the preset default, not a value left in a config without the track
        return {"phoneme_vocab_size": VOCAB_SIZE, "phoneme_kernel": default if kernel is None else kernel}

    def track(self, transcripts: Sequence[str | None], total_frames, frame_offset=None,
              starts: Sequence | None = None) -> PhonemeTrack:
        """The track of a batch: each transcript (None: no track for that row, e.g. music) phonemized by espeak-ng
        and laid over its item's frames up to `total_frames` (ints [B]): spread evenly, or from `starts` (per row
        None or the start frame of each `phoneme_ids` symbol, see `PhonemeTrack`; rows without starts are spread
        evenly). `frame_offset` (ints [B], None: 0) is the frame of each item's first audio position."""
        ids = [text_phoneme_ids(t) if t is not None else [] for t in transcripts]
        padded = torch.zeros(len(ids), max((len(i) for i in ids), default=0), dtype=torch.long)  # (B, P)
        for row, item in enumerate(ids):
            padded[row, :len(item)] = torch.tensor(item, dtype=torch.long)
        total = torch.as_tensor(total_frames, dtype=torch.long).reshape(-1)
        offset = None if frame_offset is None else torch.as_tensor(frame_offset, dtype=torch.long).reshape(-1)
        laid = None
        if starts is not None and any(row is not None for row in starts):
            if len(starts) != len(ids):
                raise ValueError(f"got starts for {len(starts)} rows, the batch has {len(ids)}")
            laid = torch.zeros_like(padded)
            for row, (item, given) in enumerate(zip(ids, starts)):
                if given is None:  # the even spread, written as starts
                    n = len(item)
                    given = [-((n - 2 * j * int(total[row])) // (2 * n)) for j in range(n)]  # ceil(j T / n - 1/2)
                if len(given) != len(item):
                    raise ValueError(f"row {row} has {len(item)} phoneme symbols and {len(given)} starts")
                laid[row, :len(item)] = torch.as_tensor(given, dtype=torch.long)
        return PhonemeTrack(padded, total, offset, laid)

    def forward(self, track: PhonemeTrack, num_positions: int) -> torch.Tensor:
        """FloatTensor[B, num_positions, D]: what the track adds at audio positions 0.. (position s predicts frame
        frame_offset + s); zeros for rows without phonemes."""
        device, vocab = self.embedding.weight.device, self.embedding.num_embeddings
        ids = track.ids.to(device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(f"phoneme ids must lie in [0, phoneme_vocab_size={vocab}), got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        B, D = ids.shape[0], self.embedding.embedding_dim
        count = (ids != PAD_ID).sum(1)  # (B,) phonemes per row (the padding is on the right)
        total = track.total_frames.to(device)
        offset = torch.zeros_like(total) if track.frame_offset is None else track.frame_offset.to(device)
        starts = None if track.starts is None else track.starts.to(device)
        if ids.shape[1] == 0:  # no row has phonemes; still run the track, so every process uses its weights
            ids = ids.new_zeros(B, 1)
            starts = None if starts is None else ids.clone()
        embedded = self.embedding(ids)  # (B, P, D), zeros at padding
        context = self.conv(embedded.transpose(1, 2)).transpose(1, 2)  # (B, P, D)
        frame = offset.unsqueeze(1) + torch.arange(num_positions, device=device)  # (B, S)
        silent = frame >= total.unsqueeze(1)  # (B, S): past the last phoneme
        if starts is None:  # spread evenly
            where = ((frame.double() + 0.5) * count.unsqueeze(1) / total.unsqueeze(1)).floor().long()
        else:  # the last symbol starting at or before the frame; padding starts never
            never = torch.iinfo(torch.long).max
            where = torch.searchsorted(starts.masked_fill(ids == PAD_ID, never).contiguous(), frame.contiguous(),
                                       right=True) - 1
            silent = silent | (where < 0)  # before the first phoneme
        where = torch.minimum(where, (count - 1).clamp(min=0).unsqueeze(1)).clamp(min=0)  # (B, S)
        features = context.gather(1, where.unsqueeze(2).expand(-1, -1, D))  # (B, S, D)
        end = self.embedding.weight[END_ID].to(features.dtype)
        features = torch.where(silent.unsqueeze(2), end, features)
        keep = (count > 0).unsqueeze(1) & (frame >= 0)  # (B, S): rows with phonemes, frames of the utterance on
        features = features * keep.unsqueeze(2).to(features.dtype)
        return self.projection(features)
