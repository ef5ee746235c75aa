"""Pictures for the web page, drawn with numpy and PIL only: waveform, mel spectrogram, codes, codebook usage.

Every function returns a `PIL.Image.Image` (RGB) sized for the page; none needs a plotting library.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 720, 200
BACKGROUND = (255, 255, 255)
INK = (37, 99, 235)
# A dark-to-bright colour ramp (black, purple, orange, yellow-white), as the usual spectrogram maps look.
_RAMP = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
                 dtype=np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """Map an array of values in [0, 1] (any shape) to uint8 RGB (shape + (3,)) along the ramp."""
    x = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(x).astype(int).clip(0, len(_RAMP) - 2)
    frac = (x - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def waveform_image(wav: torch.Tensor, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """The waveform FloatTensor[C, N] (channels averaged) as min/max envelopes per pixel column."""
    mono = wav.detach().float().mean(dim=0).clamp(-1, 1).numpy() if wav.numel() else np.zeros(1, np.float32)
    columns = np.array_split(mono, min(width, len(mono)))
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    middle = height / 2
    draw.line([(0, middle), (width, middle)], fill=(210, 210, 210))
    step = width / len(columns)
    for i, column in enumerate(columns):
        x = int(i * step)
        top, bottom = middle - float(column.max()) * (middle - 2), middle - float(column.min()) * (middle - 2)
        draw.line([(x, top), (x, max(bottom, top + 1))], fill=INK, width=max(1, int(step)))
    return image


def mel_image(wav: torch.Tensor, sample_rate: int, n_mels: int = 80, height: int = HEIGHT) -> Image.Image:
    """A log-mel spectrogram of FloatTensor[C, N] (channels averaged; 80 bands up to sample_rate / 2), low
    frequencies at the bottom, 80 dB of range, one column per 10 ms stretched to the page width."""
    mono = wav.detach().float().mean(dim=0)
    n_fft = 1 << int(np.ceil(np.log2(sample_rate * 0.04)))  # ~40 ms windows
    hop = max(1, sample_rate // 100)
    if mono.numel() < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - mono.numel()))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop,
                                               n_mels=n_mels, power=2.0)(mono)  # (n_mels, frames)
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    db = ((db - (db.max() - 80)) / 80).numpy()
    rgb = colorize(db[::-1])  # low frequencies at the bottom
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return image.resize((WIDTH, height), Image.NEAREST if rgb.shape[1] >= WIDTH else Image.BILINEAR)


def codes_image(codes: torch.Tensor, codebook_size: int, row_height: int = 18) -> Image.Image:
    """Codes LongTensor[K, T] as a picture of K rows (codebook 1 at the top) by T frames, each code's colour its
    index along the ramp, stretched to the page width."""
    k, t = codes.shape
    values = codes.detach().cpu().numpy().astype(np.float32) / max(codebook_size - 1, 1)
    rgb = colorize(values) if t else np.zeros((k, 1, 3), np.uint8)
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return image.resize((WIDTH, max(1, k) * row_height), Image.NEAREST)


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> list[tuple[int, int, float]]:
    """Per level of codes LongTensor[K, T]: (level from 1, distinct codes used, perplexity of their counts).

    Perplexity is exp(entropy) of the level's code histogram: how many codes it effectively uses (at most T)."""
    rows = []
    for level, row in enumerate(codes.detach().cpu(), start=1):
        counts = torch.bincount(row.clamp(0, codebook_size - 1), minlength=codebook_size).double()
        p = counts[counts > 0] / counts.sum().clamp_min(1)
        perplexity = float(torch.exp(-(p * p.log()).sum())) if len(p) else 0.0
        rows.append((level, int((counts > 0).sum()), perplexity))
    return rows
