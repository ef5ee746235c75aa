"""Per-call generation settings (`GenerationConfig`) and the sampler that draws a step's codes from its logits.

Settings are passed to every `AudioLM.generate` / `AudioLM.stream` call, never stored on the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GenerationConfig:
    """Settings of one `AudioLM.generate` / `AudioLM.stream` call (never stored on the model).

    duration: seconds of new audio to generate at most (the continuation, not counting an audio prompt);
        generation stops earlier for an item whose codebook 0 samples end of audio.
    temperature: > 0; divides the logits.
    top_k: keep the k most likely codes (None: all). top_k=1 is greedy decoding (argmax, no randomness).
    top_p: nucleus sampling, in (0, 1]; 1.0 keeps everything.
    guidance_scale: classifier-free guidance; 1.0 is plain conditional sampling (and skips the unconditional
        rows), 0.0 is unconditional, 3.0 is MusicGen's default.
    seed: seeds the torch.Generator that draws every sample, so the same seed, texts, prompt and settings give
        the same codes. None draws a fresh seed.
    task: the task tag put before the text ("speech" or "music" with the default text tokenizer; None: no tag).
    num_codebooks: return only the first k codebooks (None: all K). All K are still generated, because each
        step's input is the sum of all K codebooks' embeddings; k only trims the result.
    min_duration: seconds of new audio before end of audio may be sampled (0: any time; >= duration: always the
        whole duration, as MusicGen does).
    num_threads: CPU threads while a step computes (None: chosen for the step's size, `lm.threads`; one thread for
        the bundled LMs, which keeps generation fast beside other busy processes).
    """

    duration: float = 10.0
    temperature: float = 1.0
    top_k: int | None = 250
    top_p: float = 1.0
    guidance_scale: float = 3.0
    seed: int | None = None
    task: str | None = None
    num_codebooks: int | None = None
    min_duration: float = 0.0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            return float(value)

        if number("duration") <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration!r}")
        if number("temperature") <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}; for greedy decoding use top_k=1")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 (1 = greedy) or None, got {self.top_k!r}")
        if not 0.0 < number("top_p") <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}; 1.0 turns nucleus sampling off")
        if number("guidance_scale") < 0:
            raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {self.guidance_scale!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be an integer >= 0 or None, got {self.seed!r}")
        if self.task is not None and not isinstance(self.task, str):
            raise ValueError(f"task must be a str or None, got {self.task!r}")
        if self.num_codebooks is not None and (isinstance(self.num_codebooks, bool)
                                               or not isinstance(self.num_codebooks, int) or self.num_codebooks < 1):
            raise ValueError(f"num_codebooks must be an integer >= 1 or None, got {self.num_codebooks!r}")
        if number("min_duration") < 0:
            raise ValueError(f"min_duration must be >= 0 seconds, got {self.min_duration!r}")
        if self.num_threads is not None and (isinstance(self.num_threads, bool)
                                             or not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"num_threads must be an integer >= 1 or None (automatic), got {self.num_threads!r}")

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale != 1.0


def sample_logits(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator) -> torch.Tensor:
    """Draw one index per row of logits FloatTensor[N, V] (temperature, then top-k, then top-p) -> LongTensor[N].

    Entries at -inf are never drawn. top_k=1 is the argmax and draws nothing from the generator. Otherwise the
    draw happens among the k most likely entries, sorted: one uniform number per row picks an entry through their
    cumulative probabilities (inverse transform), which costs a few microseconds where drawing over all V entries
    cost more than the model's heads.
    """
    if config.top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / config.temperature
    k = logits.shape[-1] if config.top_k is None else min(config.top_k, logits.shape[-1])
    values, indices = torch.topk(logits, k, dim=-1)  # (N, k), most likely first
    probs = values.softmax(dim=-1)
    if config.top_p < 1.0:
        before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely entries
        probs = probs.masked_fill(before >= config.top_p, 0.0)  # keeps the smallest prefix reaching top_p
    cumulative = probs.cumsum(dim=-1)  # (N, k)
    uniform = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device, dtype=cumulative.dtype)
    choice = torch.searchsorted(cumulative, uniform * cumulative[:, -1:], right=True)  # (N, 1)
    # u * total can round up to the total itself: the last entry with any probability, never a masked one.
    choice = torch.minimum(choice, (probs > 0).sum(dim=-1, keepdim=True) - 1)
    return indices.gather(1, choice).squeeze(1)
