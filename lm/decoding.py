"""The decoding loop of the audio LM (`Decoding`): one generation, step by step, from its settings.

The loop runs the model one step at a time with a key/value cache. Each step it samples every slot the
pattern lays out for that step, then overwrites the slots whose value is already known ("forcing"):

    empty slot                          -> empty id
    a frame of the audio prompt         -> the prompt's code
    the end frame (one past the last)   -> end of audio

The audio ends when codebook 0 samples end of audio for frame t: the item is then t frames long, and the
layout of a (t + 1)-frame sequence (t frames plus the end frame, as in training) drives the rest of it. At the
requested duration, end of audio is forced. An item stops needing steps once all of its frames are complete.

With classifier-free guidance the conditional and the unconditional (null-condition) rows run as one batch of
2B, and the next step is sampled from uncond + guidance_scale * (cond - uncond). The tracks given
(`lm.conditioners`) are part of the condition: the unconditional rows run without them.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator

import torch

from tokenizer.threads import free_threads, torch_threads

from .conditioners import Tracks
from .model import AudioLMModel, KVCache
from .sampling import GenerationConfig, sample_logits
from .threads import step_threads

PAD_FRAME = -1  # value of the frames after an item's end in a batch of generated codes


class Decoding:
    """The state of one generation: the cache, each item's layout and end, and the frames found so far.

    `run()` advances one step at a time and yields, after each, how many leading output frames are final for
    every item; `frames` holds them (prompt frames first, then the continuation; PAD_FRAME past an item's end).
    """

    def __init__(self, model: AudioLMModel, text_ids: torch.Tensor, text_mask: torch.Tensor,
                 prompt: torch.Tensor | None, new_frames: int, config: GenerationConfig,
                 tracks: Tracks | None = None, min_frames: list[int] | None = None) -> None:
        cfg = model.config
        self.model, self.config, self.pattern = model, config, model.pattern
        device = model.device
        B, K = text_ids.shape[0], cfg.num_codebooks
        self.batch_size, self.num_codebooks = B, K
        self.prompt_frames = 0 if prompt is None else prompt.shape[2]
        self.max_frames = self.prompt_frames + new_frames + 1  # + the end frame
        # End of audio may be sampled from the first step whose codebook-0 slot holds frame prompt + floor on (the
        # floor: config.min_duration, or the item's min_frames if more): derived once from the full-length layout,
        # which is every unfinished item's (an ended item samples nothing).
        floor = round(config.min_duration * cfg.frame_rate)
        floors = [min(new_frames, max(floor, extra)) for extra in (min_frames or [0] * B)]
        frame_of_step = self.pattern.layout(self.max_frames)[0]  # (num_steps,) codebook 0's frame, -1 where empty

        def first_end_step(floor: int) -> int:
            allowed = (frame_of_step >= self.prompt_frames + floor).nonzero()[:, 0]
            return 0 if not floor else int(allowed[0]) if len(allowed) else len(frame_of_step)

        self.first_end_steps = torch.tensor([first_end_step(f) for f in floors], device=device)  # (B,)
        self.text_ids, self.text_mask = text_ids.to(device), text_mask.to(device)
        self.prompt = None if prompt is None else prompt.to(device)
        self.tracks = tracks
        # Provisional length of each item (max_frames) until codebook 0 says where it ends.
        self.lengths = [self.max_frames] * B  # frames + the end frame
        self.frames = torch.full((B, K, self.max_frames - 1), PAD_FRAME, dtype=torch.long, device=device)
        if prompt is not None:
            self.frames[:, :, :self.prompt_frames] = self.prompt
        self.num_steps = self.pattern.num_steps(self.max_frames)
        self.steps = torch.full((B, K, self.num_steps), cfg.empty_id, dtype=torch.long, device=device)
        seed = secrets.randbits(63) if config.seed is None else config.seed
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self._layouts_of: list[int] | None = None  # the lengths that `_layouts` / `_end_frames` were made for
        self.ended = [False] * B  # codebook 0 has placed end of audio
        self.done = [False] * B  # every frame is complete

    # -- layout of each item -------------------------------------------------------------------------------

    def _slot_frames(self, step: int) -> torch.Tensor:
        """LongTensor[B, K]: the frame each slot of `step` holds for each item, -1 where empty."""
        if self._layouts_of != self.lengths:  # an item's length changed: lay out the batch again
            layouts = torch.full((self.batch_size, self.num_codebooks, self.num_steps), -1, dtype=torch.long)
            for b, length in enumerate(self.lengths):
                layout = self.pattern.layout(length)  # (K, num_steps(length)), never longer than the full length's
                layouts[b, :, :layout.shape[1]] = layout
            self._layouts = layouts.to(self.frames.device)  # (B, K, num_steps)
            self._end_frames = torch.tensor(self.lengths, device=self.frames.device).unsqueeze(1) - 1  # (B, 1)
            self._layouts_of = list(self.lengths)
        return self._layouts[:, :, step]

    def _force(self, step: int, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Overwrite the known slots of `values` [B, K] at `step`; returns (values, slot frames [B, K])."""
        cfg = self.model.config
        slot_frames = self._slot_frames(step)  # (B, K)
        values = torch.where(slot_frames < 0, cfg.empty_id, values)
        if self.prompt is not None:
            in_prompt = (slot_frames >= 0) & (slot_frames < self.prompt_frames)
            prompt_values = self.prompt.gather(2, slot_frames.clamp(0, self.prompt_frames - 1).unsqueeze(2))[:, :, 0]
            values = torch.where(in_prompt, prompt_values, values)
        values = torch.where(slot_frames == self._end_frames, cfg.eos_id, values)
        return values, slot_frames

    def _take_step(self, step: int, sampled: torch.Tensor) -> torch.Tensor:
        """Force the known slots of the sampled step [B, K], settle ends, store codes; returns the step to feed."""
        cfg = self.model.config
        values, slot_frames = self._force(step, sampled)
        # Codebook 0 saying end of audio (sampled, or forced at the duration) fixes the item's length; the
        # layout of that length then decides the slots of this step and of the next ones.
        ended = (values[:, 0] == cfg.eos_id) & (slot_frames[:, 0] >= self.prompt_frames)
        if bool(ended.any()):
            for b in ended.nonzero()[:, 0].tolist():
                if not self.ended[b]:
                    self.ended[b] = True
                    self.lengths[b] = int(slot_frames[b, 0]) + 1
            values, slot_frames = self._force(step, sampled)
        new = (slot_frames >= self.prompt_frames) & (slot_frames < self._end_frames)  # (B, K)
        if bool(new.any()):
            b, k = new.nonzero(as_tuple=True)
            self.frames[b, k, slot_frames[b, k]] = values[b, k]
        self.steps[:, :, step] = values
        return values

    def _ready(self, num_steps: int) -> int:
        """Leading frames (prompt included) final for every item after `num_steps` steps; updates `done`."""
        ready = []
        for b, length in enumerate(self.lengths):
            complete = self.pattern.frames_complete(num_steps, length)
            self.done[b] = complete >= length - 1
            if not self.done[b]:
                ready.append(complete)
        if ready:
            return min(ready)
        return max(self.lengths) - 1  # all items are done: the batch is as long as its longest item

    # -- the loop ------------------------------------------------------------------------------------------

    def _guided(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Logits of the cache rows [R, K, V] at `step` -> logits to sample from [B, K, V]."""
        B = self.batch_size
        if self.config.uses_guidance:
            cond, uncond = logits[:B], logits[B:]
            logits = uncond + self.config.guidance_scale * (cond - uncond)
        logits = logits.float().clone()
        # End of audio is decided by codebook 0 only; the other codebooks are forced to it.
        logits[:, 1:, -1] = -math.inf
        early = step < self.first_end_steps  # (B,): min_duration / min_frames not reached yet
        logits[:, 0, -1] = logits[:, 0, -1].masked_fill(early, -math.inf)
        return logits

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Guided logits [B, K, V] -> step values [B, K] (codes, or end of audio as its id)."""
        cfg = self.model.config
        B, K, V = logits.shape
        index = sample_logits(logits.reshape(B * K, V), self.config, self.generator).view(B, K)
        return torch.where(index == cfg.num_logits - 1, cfg.eos_id, index)

    @torch.inference_mode()
    def run(self) -> Iterator[int]:
        """Generate step by step; after each step yield the number of frames (prompt included) final for all items.

        The model is in eval mode while this runs (its previous mode is restored at the end).
        """
        was_training = self.model.training
        if was_training:
            self.model.eval()
        # The prefill's threads are read before the steps' setting is in force.
        steps, threads = self._run(self._prefill_threads()), self._threads()
        try:
            while True:
                with torch_threads(threads):  # only while this computes: not while the caller works
                    ready = next(steps, None)
                if ready is None:
                    return
                yield ready
        finally:
            steps.close()
            if was_training:
                self.model.train()

    def _prefill_threads(self) -> int:
        """CPU threads for the prefill (the tracks' features and the text through the model, once): the cores free
        now (`tokenizer.threads.free_threads`: torch's setting, fewer beside other busy processes); on an idle
        2-core machine two threads bring the bundled speech LM's first frame from about 30 to 27 ms."""
        if self.model.device.type != "cpu":
            return torch.get_num_threads()
        return self.config.num_threads or free_threads()

    def _threads(self) -> int:
        """CPU threads for a step (`lm.threads`): ~2 FLOPs per weight per row of the batch (guidance doubles it)."""
        if self.model.device.type != "cpu":
            return torch.get_num_threads()
        rows = self.batch_size * (2 if self.config.uses_guidance else 1)
        weights = sum(p.numel() for name, p in self.model.named_parameters() if "embedding" not in name)
        return step_threads(2.0 * rows * weights, self.config.num_threads)

    def _run(self, prefill_threads: int) -> Iterator[int]:
        model = self.model
        with torch_threads(prefill_threads):
            cache, logits, features, first = self._prefill()
        rows = cache.keys[0].shape[0]
        for step in range(first, self.num_steps):
            values = self._take_step(step, self._sample(self._guided(logits, step)))
            yield self._ready(step + 1)
            if all(self.done):
                return
            logits = model.decode_step(values.repeat(rows // self.batch_size, 1), cache,
                                       None if features is None else features[:, step + 1:step + 2])

    def _prefill(self) -> tuple[KVCache, torch.Tensor, torch.Tensor | None, int]:
        """The tracks' features and one pass of the text and the steps before the first to sample into a new cache:
        (cache, logits of that step [R, K, V], features [R, num_steps + 1, D] or None, that step's index)."""
        model, cfg = self.model, self.model.config
        B = self.batch_size
        text_ids, text_mask = self.text_ids, self.text_mask
        if self.config.uses_guidance:
            text_ids = torch.cat([text_ids, text_ids])
            text_mask = torch.cat([text_mask, model.null_condition(self.text_ids, self.text_mask)])
        rows = text_ids.shape[0]
        # The tracks' additions at every audio position, (rows, num_steps + 1, D); the unconditional rows get none.
        features = model.step_features(self.num_steps + 1, self.tracks)
        if features is not None:
            if self.config.uses_guidance:
                features = torch.cat([features, torch.zeros_like(features)])
        # Steps before the first one with a frame to sample hold only prompt frames: one prefill pass.
        layout = self.pattern.layout(self.max_frames)
        first = int((layout >= self.prompt_frames).any(dim=0).nonzero()[0])
        for step in range(first):
            self._take_step(step, torch.full((B, self.num_codebooks), cfg.empty_id, device=self.frames.device))
        cache = KVCache(cfg, rows, text_ids.shape[1] + self.num_steps, device=model.device, dtype=model.dtype)
        inputs = torch.cat([model.start_step(B), self.steps[:, :, :first]], dim=2)  # (B, K, first + 1)
        logits = model.prefill(text_ids, text_mask, inputs.repeat(rows // B, 1, 1), cache,
                               None if features is None else features[:, :first + 1])  # (R, K, V)
        return cache, logits, features, first


def split_items(codes: torch.Tensor) -> list[torch.Tensor]:
    """Generated codes [B, k, T] -> one LongTensor[1, k, T_b] per item, without the PAD_FRAME tail."""
    lengths = (codes[:, 0] != PAD_FRAME).sum(dim=1)
    return [codes[b:b + 1, :, :int(lengths[b])] for b in range(codes.shape[0])]
