"""The offline recogniser of the evaluations: pocketsphinx with the English model it ships (no download).

`rvqaudio eval-tts` measures generated speech with it and `rvqaudio eval-codec --asr` speech after a codec's round
trip. Its word error rate on clean synthetic speech is far from zero, so read a system's figure next to the
recogniser's on the reference audio, which both reports give.
"""

from __future__ import annotations

import numpy as np
import torch

from tokenizer.audio import resample
from tokenizer.extras import import_extra

RECOGNISER_SAMPLE_RATE = 16000
RECOGNISER = "pocketsphinx (its bundled en-us model)"


def _decoder():
    Decoder = import_extra("pocketsphinx", "eval", "the offline recogniser").Decoder

    # A new decoder per utterance (~0.35 s to load the model): a reused one carries adaptation state from one
    # utterance to the next, so a clip's transcript would depend on what was transcribed before it.
    return Decoder(samprate=RECOGNISER_SAMPLE_RATE, loglevel="FATAL")


def transcribe(wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
    """Recognise English speech in FloatTensor[C, N] or [N] at `sample_rate` Hz with pocketsphinx; lowercase words.

    The audio is down-mixed to mono, resampled to 16 kHz and converted to 16-bit PCM (clipped to [-1, 1]).
    Returns "" when nothing is recognised. Runs at roughly 5x real time on one core, plus ~0.35 s to load the
    model: each call uses a fresh decoder, so the transcript of a clip does not depend on earlier calls.
    """
    x = torch.as_tensor(np.asarray(wav) if isinstance(wav, np.ndarray) else wav).detach().cpu()
    if not x.is_floating_point() or x.dim() not in (1, 2):
        raise ValueError(f"transcribe needs a float waveform [N] or [C, N], got dtype {x.dtype} and shape "
                         f"{tuple(x.shape)}")
    x = x.float().mean(0) if x.dim() == 2 else x.float()
    x = resample(x, int(sample_rate), RECOGNISER_SAMPLE_RATE)
    pcm = (x.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy().tobytes()
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.strip().lower() if hyp is not None else ""
