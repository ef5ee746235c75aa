"""The transformer of the audio LM: a decoder-only model over [text prefix | audio steps].

    sequence   [t_0 .. t_{L-1}] [start, step_0, step_1, ..., step_{S-2}]
    predicts                     step_0, step_1, ..., step_{S-1}

Text tokens have their own embedding table. An audio step is K slots, one per codebook (the layout comes from
`lm.patterns`); its input embedding is the sum of K per-codebook embeddings, whose vocabularies hold the
codec's codes plus three specials (empty slot, end of audio, pad, see `lm.config`). K linear heads predict
the next step's slots, each over the codes plus end of audio.

With `config.phoneme_vocab_size` set, speech also gets an aligned phoneme track (`PhonemeTrack`): the
utterance's phonemes are laid along its frames (where a forced alignment or a duration table puts them, or spread
evenly), a convolution over the phonemes gives each one its neighbours, and each audio position adds the features
of its frame's phoneme (through a zero-initialised projection, so a track added to a trained LM starts from that
LM's behaviour). The text prefix alone leaves the model to discover where in the text each frame is, which a small
model on a CPU budget does not; the track tells it, and the window tells it what is around. Frames outside the
utterance's phonemes get an end-of-phonemes feature.

With `config.beat_track`, music also gets a beat track (`BeatTrack`): each audio position adds, through another
zero-initialised projection, the cosine and sine of the requested tempo's beat phase at its frame at four rates
(a bar of 4 beats, 2 beats, the beat, half a beat) and the tempo's octave relative to 120 bpm. A tempo in the
caption's digits is a few text tokens the model must learn to turn into a period; the track hands it the period.

Pre-norm blocks (RMSNorm), rotary positions, attention through `scaled_dot_product_attention`, and a key/value
cache preallocated for the whole generation. Positions count only real tokens, so a left-padded text (or a
null condition whose dropped tokens are masked) gives the same numbers as the unpadded sequence.

`AudioLMModel` is a `transformers.PreTrainedModel`: `save_pretrained`/`from_pretrained` write and read
config.json + model.safetensors, and accelerate and peft see ordinary `nn.Linear`/`nn.Embedding` modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .config import AudioLMConfig
from .objective import drop_conditions, target_terms, teacher_forcing
from .phonemes import END_ID, PAD_ID
from .text import MAX_BPM, MIN_BPM


# ----------------------------------------------------------------------------------------- rotary positions


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions LongTensor[B, S] -> cos, sin FloatTensor[B, 1, S, head_dim / 2] (broadcast over heads)."""
    # Computed per call rather than kept as a buffer: it is tiny, and never stale after meta-device loading.
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.unsqueeze(-1).float() * inv_freq  # (B, S, Dh/2)
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + Dh/2]) of x [B, H, S, Dh] by the angles in cos/sin [B, 1, S, Dh/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


# ----------------------------------------------------------------------------------------- key/value cache


class KVCache:
    """Keys and values of every layer, preallocated for `max_length` positions.

    Also remembers which positions are real tokens (`valid`, so later queries skip padding) and how many real
    tokens each row has seen (the next rotary position).
    """

    def __init__(self, config: AudioLMConfig, batch_size: int, max_length: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (batch_size, config.num_attention_heads, max_length, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.valid = torch.zeros(batch_size, max_length, dtype=torch.bool, device=device)  # (B, max_length)
        self.num_valid = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.length = 0
        self.max_length = max_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, H, S, Dh] at positions length..length+S-1; return all keys/values so far [B, H, length+S, Dh]."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


# ----------------------------------------------------------------------------------------- transformer block


class Attention(nn.Module):
    def __init__(self, config: AudioLMConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, H, S, Dh)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S_past + S, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, S, Dh)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class MLP(nn.Module):
    def __init__(self, config: AudioLMConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: AudioLMConfig) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.attention = Attention(config)
        self.mlp_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), cos, sin, mask, is_causal, cache, layer))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


def attention_mask(key_valid: torch.Tensor, query_start: int, num_queries: int) -> torch.Tensor:
    """BoolTensor[B, 1, Sq, Sk] (True = attend) for queries at positions query_start.. over keys 0..Sk-1.

    Causal, skipping invalid keys (padding, dropped text), except that every query sees itself: a padding
    query then attends to one key instead of none, which keeps its (unused) output finite on every SDPA
    backend (some give NaN for a row with no key), and a NaN would leak into real rows through 0 * NaN in the
    next layer's attention.
    """
    num_keys = key_valid.shape[1]
    query_index = torch.arange(query_start, query_start + num_queries, device=key_valid.device).unsqueeze(1)
    key_index = torch.arange(num_keys, device=key_valid.device).unsqueeze(0)
    causal = key_index <= query_index  # (Sq, Sk)
    own = key_index == query_index  # (Sq, Sk)
    return (causal & (key_valid.unsqueeze(1) | own)).unsqueeze(1)  # (B, 1, Sq, Sk)


# ----------------------------------------------------------------------------------------- the model


@dataclass
class PhonemeTrack:
    """Phonemes laid along the audio frames of each item (see the module docstring).

    ids: LongTensor[B, P], `lm.phonemes` ids right-padded with 0; a row of zeros has no track (music, a dropped
        condition). total_frames: LongTensor[B], the frame after the last phoneme: frames t >= total are past the
        end. frame_offset: LongTensor[B] or None (0), the frame of the first audio position: the start of a
        training crop, or minus the length of an audio prompt (frames before 0 get no track).
    starts: LongTensor[B, P] or None. None spreads the phonemes evenly: phoneme floor((t + 0.5) * n / total) sits
        at frame t. Given, each symbol starts at its frame (non-decreasing along a row; `lm.phonemes.lay_out` or a
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

    def without(self, drop: torch.Tensor) -> PhonemeTrack:
        """The same track with the rows where drop BoolTensor[B] is True emptied (the null condition)."""
        return PhonemeTrack(self.ids.masked_fill(drop.to(self.ids.device).unsqueeze(1), PAD_ID), self.total_frames,
                            self.frame_offset, self.starts)


BEAT_RATES = (0.25, 0.5, 1.0, 2.0)  # cycles per beat of the beat track's sinusoids: a 4-beat bar .. half a beat
BEAT_FEATURES = 2 * len(BEAT_RATES) + 1  # cos and sin per rate, and log2(bpm / 120)


@dataclass
class BeatTrack:
    """The requested tempo of each item, laid along its frames as beat phase (see the module docstring).

    bpm: FloatTensor[B], beats per minute; 0 for a row without a tempo (speech, a caption that names none, a
        dropped condition). The first beat falls on frame 0. frame_offset: LongTensor[B] or None (0), the frame of
        the first audio position (the start of a training crop).
    """

    bpm: torch.Tensor
    frame_offset: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.bpm.dim() != 1:
            raise ValueError(f"a BeatTrack needs bpm [B], got shape {list(self.bpm.shape)}")
        if self.frame_offset is not None and self.frame_offset.shape != self.bpm.shape:
            raise ValueError(f"frame_offset must have bpm's shape {list(self.bpm.shape)}, got "
                             f"{list(self.frame_offset.shape)}")
        real = self.bpm[self.bpm != 0]
        if not bool(torch.isfinite(self.bpm).all()) or bool(((real < MIN_BPM) | (real > MAX_BPM)).any()):
            raise ValueError(f"bpm must be 0 (no tempo) or in [{MIN_BPM:g}, {MAX_BPM:g}], got {self.bpm.tolist()}")

    def without(self, drop: torch.Tensor) -> BeatTrack:
        """The same track with the rows where drop BoolTensor[B] is True emptied (no tempo)."""
        return BeatTrack(self.bpm.masked_fill(drop.to(self.bpm.device), 0.0), self.frame_offset)


@dataclass
class AudioLMOutput(ModelOutput):
    """loss: mean over codebooks of each codebook's cross-entropy (None when no targets).
    logits: FloatTensor[B, K, S, codebook_size + 1], the last index being end of audio.
    codebook_losses: FloatTensor[K]. targets: LongTensor[B, K, S] (logit indices). target_mask: BoolTensor[B, K, S].
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    codebook_losses: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None


class AudioLMModel(PreTrainedModel):
    """Text-conditioned transformer over codec codes [B, K, T] (see the module docstring)."""

    config_class = AudioLMConfig
    base_model_prefix = "audio_lm"
    main_input_name = "text_ids"
    _no_split_modules = ["Block"]
    supports_gradient_checkpointing = False

    def __init__(self, config: AudioLMConfig) -> None:
        config.require_bound()
        super().__init__(config)
        K, D = config.num_codebooks, config.hidden_size
        self.pattern = config.build_pattern()
        self.text_embedding = nn.Embedding(config.text_vocab_size, D)
        self.code_embeddings = nn.ModuleList(nn.Embedding(config.input_vocab_size, D) for _ in range(K))
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(D, eps=config.norm_eps)
        self.heads = nn.ModuleList(nn.Linear(D, config.num_logits, bias=False) for _ in range(K))
        if config.phoneme_vocab_size:
            self.phoneme_embedding = nn.Embedding(config.phoneme_vocab_size, D, padding_idx=PAD_ID)
            self.phoneme_conv = nn.Conv1d(D, D, config.phoneme_kernel, padding=config.phoneme_kernel // 2)
            self.phoneme_projection = nn.Linear(D, D, bias=False)
        if config.beat_track:
            self.beat_projection = nn.Linear(BEAT_FEATURES, D, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is getattr(self, "phoneme_projection", None) or module is getattr(self, "beat_projection", None):
            nn.init.zeros_(module.weight)  # a new track changes nothing until it has learnt something

    # -- pieces ---------------------------------------------------------------------------------------------

    def embed_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """steps LongTensor[B, K, S] (codes or special ids) -> FloatTensor[B, S, D], the sum of K embeddings."""
        return sum(embedding(steps[:, k]) for k, embedding in enumerate(self.code_embeddings))

    def start_step(self, batch_size: int) -> torch.Tensor:
        """LongTensor[B, K, 1]: the step fed before the first audio step (every slot empty)."""
        return torch.full((batch_size, self.config.num_codebooks, 1), self.config.empty_id,
                          dtype=torch.long, device=self.device)

    def null_condition(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The text mask [B, L] of the null condition: only the task tag and end of text stay visible.

        Training drops a text this way and generation builds its unconditional branch the same way. Positions
        count visible tokens, so this equals feeding the short sequence [tag, eos] on its own.
        """
        keep = torch.isin(text_ids, torch.tensor(self.config.null_condition_ids, device=text_ids.device))
        return text_mask & keep

    def step_features(self, num_positions: int, phonemes: PhonemeTrack | None = None,
                      beats: BeatTrack | None = None) -> torch.Tensor | None:
        """What the tracks given add at audio positions 0..num_positions-1: FloatTensor[B, num_positions, D], or
        None without tracks."""
        features = None if phonemes is None else self.phoneme_features(phonemes, num_positions)
        if beats is not None:
            beat = self.beat_features(beats, num_positions)
            features = beat if features is None else features + beat
        return features

    def beat_features(self, track: BeatTrack, num_positions: int) -> torch.Tensor:
        """FloatTensor[B, num_positions, D]: what the beat track adds at audio positions 0.. (position s predicts
        frame frame_offset + s); zeros for rows without a tempo."""
        if not self.config.beat_track:
            raise ValueError("this LM has no beat track (config.beat_track=false); pass beats=None")
        bpm = track.bpm.to(self.device, torch.float64)
        offset = torch.zeros_like(bpm, dtype=torch.long) if track.frame_offset is None else \
            track.frame_offset.to(self.device)
        frame = offset.unsqueeze(1) + torch.arange(num_positions, device=self.device)  # (B, S)
        beats = frame.double() / self.config.frame_rate * bpm.unsqueeze(1) / 60.0  # (B, S) beats since frame 0
        angle = 2 * torch.pi * beats.unsqueeze(2) * torch.tensor(BEAT_RATES, device=self.device, dtype=torch.float64)
        octave = torch.log2(bpm.clamp(min=MIN_BPM) / 120.0)[:, None, None].expand(-1, num_positions, 1)
        features = torch.cat([angle.cos(), angle.sin(), octave], dim=2)  # (B, S, BEAT_FEATURES)
        keep = (bpm > 0).unsqueeze(1) & (frame >= 0)  # (B, S)
        features = (features * keep.unsqueeze(2)).to(self.beat_projection.weight.dtype)
        return self.beat_projection(features)

    def phoneme_features(self, track: PhonemeTrack, num_positions: int) -> torch.Tensor:
        """FloatTensor[B, num_positions, D]: what the track adds at audio positions 0.. (position s predicts frame
        frame_offset + s); zeros for rows without phonemes."""
        if not self.config.phoneme_vocab_size:
            raise ValueError("this LM has no phoneme track (config.phoneme_vocab_size=0); pass phonemes=None")
        ids = track.ids.to(self.device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.phoneme_vocab_size):
            raise ValueError(f"phoneme ids must lie in [0, phoneme_vocab_size={self.config.phoneme_vocab_size}), "
                             f"got values in [{int(ids.min())}, {int(ids.max())}]")
        B, D = ids.shape[0], self.config.hidden_size
        count = (ids != PAD_ID).sum(1)  # (B,) phonemes per row (the padding is on the right)
        total = track.total_frames.to(self.device)
        offset = torch.zeros_like(total) if track.frame_offset is None else track.frame_offset.to(self.device)
        starts = None if track.starts is None else track.starts.to(self.device)
        if ids.shape[1] == 0:  # no row has phonemes; still run the track, so every process uses its weights
            ids = ids.new_zeros(B, 1)
            starts = None if starts is None else ids.clone()
        embedded = self.phoneme_embedding(ids)  # (B, P, D), zeros at padding
        context = self.phoneme_conv(embedded.transpose(1, 2)).transpose(1, 2)  # (B, P, D)
        frame = offset.unsqueeze(1) + torch.arange(num_positions, device=self.device)  # (B, S)
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
        end = self.phoneme_embedding.weight[END_ID].to(features.dtype)
        features = torch.where(silent.unsqueeze(2), end, features)
        keep = (count > 0).unsqueeze(1) & (frame >= 0)  # (B, S): rows with phonemes, frames of the utterance on
        features = features * keep.unsqueeze(2).to(features.dtype)
        return self.phoneme_projection(features)

    def _run(self, hidden: torch.Tensor, valid: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """hidden [B, S, D] with valid [B, S] (False = padding) through all blocks; returns normed [B, S, D]."""
        S = hidden.shape[1]
        start = 0 if cache is None else cache.length
        seen = torch.zeros_like(valid[:, 0], dtype=torch.long) if cache is None else cache.num_valid
        positions = (seen.unsqueeze(1) + valid.long().cumsum(1) - 1).clamp(min=0)  # (B, S)
        cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        if cache is not None:
            if start + S > cache.max_length:
                raise ValueError(f"KV cache holds {cache.max_length} positions, asked for {start + S}")
            cache.valid[:, start:start + S] = valid
            key_valid = cache.valid[:, :start + S]
        else:
            key_valid = valid
        # Fast paths: SDPA's own causal mask, or no mask for one query over a padding-free past.
        mask, is_causal = None, False
        if not bool(key_valid.all()):
            mask = attention_mask(key_valid, start, S)
        elif S > 1:
            if start == 0:
                is_causal = True
            else:
                mask = attention_mask(key_valid, start, S)
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, mask, is_causal, cache, index)
        if cache is not None:
            cache.length += S
            cache.num_valid += valid.sum(1)
        return self.norm(hidden)

    def _heads(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, S, D] -> logits [B, K, S, codebook_size + 1]."""
        return torch.stack([head(hidden) for head in self.heads], dim=1)

    # -- uncached: whole sequences -------------------------------------------------------------------------

    def logits(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None, step_inputs: torch.Tensor,
               step_mask: torch.Tensor | None = None, phonemes: PhonemeTrack | None = None,
               beats: BeatTrack | None = None) -> torch.Tensor:
        """Logits of every audio step, recomputed from scratch (no cache).

        text_ids LongTensor[B, L], text_mask BoolTensor[B, L] (None: all real), step_inputs LongTensor[B, K, S]
        with step_inputs[:, :, 0] the start step and step_inputs[:, :, s] = step s - 1, step_mask BoolTensor[B, S]
        (None: all real), phonemes: the aligned phoneme track, beats: the beat track (None: none). Returns FloatTensor[B, K, S,
        codebook_size + 1]: position s predicts step s.
        """
        B, L = text_ids.shape
        text_mask = torch.ones_like(text_ids, dtype=torch.bool) if text_mask is None else text_mask.bool()
        if step_mask is None:
            step_mask = torch.ones(B, step_inputs.shape[2], dtype=torch.bool, device=step_inputs.device)
        steps = self.embed_steps(step_inputs)  # (B, S, D)
        features = self.step_features(step_inputs.shape[2], phonemes, beats)
        if features is not None:
            steps = steps + features
        hidden = torch.cat([self.text_embedding(text_ids), steps], dim=1)  # (B, L + S, D)
        hidden = self._run(hidden, torch.cat([text_mask, step_mask], dim=1), cache=None)
        return self._heads(hidden[:, L:])

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None, codes: torch.Tensor,
                code_lengths: torch.Tensor | None = None, phonemes: PhonemeTrack | None = None,
                beats: BeatTrack | None = None) -> AudioLMOutput:
        """Teacher-forced logits and the training loss for text -> codes pairs.

        text_ids LongTensor[B, L] and text_mask BoolTensor[B, L] (padding either side); codes LongTensor[B, K, T]
        with code_lengths LongTensor[B] real frames per item (None: all T). Each item's codes get an
        end-of-audio frame, are laid out by the pattern, and the loss is the cross-entropy of every filled slot
        (codes and end of audio; not empty slots, not padding), averaged per codebook, then over codebooks.
        In training mode each item's text is replaced by the null condition with probability
        `config.condition_dropout` (its phonemes and tempo too).
        """
        text_mask = torch.ones_like(text_ids, dtype=torch.bool) if text_mask is None else text_mask.bool()
        if self.training and self.config.condition_dropout > 0:
            drop = torch.rand(text_ids.shape[0], device=text_ids.device) < self.config.condition_dropout  # (B,)
            text_mask, phonemes, beats = drop_conditions(self, text_ids, text_mask, drop, phonemes, beats)
        steps, step_mask, step_inputs = teacher_forcing(self, codes, code_lengths)  # (B, K, S), (B, S), (B, K, S)
        logits = self.logits(text_ids, text_mask, step_inputs, step_mask, phonemes, beats)  # (B, K, S, V)
        nll, target_mask, targets = target_terms(logits, steps, self.config)  # (B, K, S) each
        counts = target_mask.sum(dim=(0, 2))  # (K,)
        codebook_losses = (nll * target_mask).sum(dim=(0, 2)) / counts.clamp(min=1)  # (K,)
        return AudioLMOutput(loss=codebook_losses[counts > 0].mean(), logits=logits, codebook_losses=codebook_losses,
                             targets=targets, target_mask=target_mask)

    # -- cached: generation ----------------------------------------------------------------------------------

    def prefill(self, text_ids: torch.Tensor, text_mask: torch.Tensor, step_inputs: torch.Tensor,
                cache: KVCache, step_features: torch.Tensor | None = None) -> torch.Tensor:
        """Run the text and the first step inputs [B, K, S0] into an empty cache; logits of the next step [B, K, V].

        step_features FloatTensor[B, S0, D] (the tracks', `step_features`) are added to the steps."""
        steps = self.embed_steps(step_inputs)  # (B, S0, D)
        if step_features is not None:
            steps = steps + step_features
        hidden = torch.cat([self.text_embedding(text_ids), steps], dim=1)  # (B, L + S0, D)
        valid = torch.cat([text_mask.bool(), torch.ones_like(step_inputs[:, 0], dtype=torch.bool)], dim=1)
        hidden = self._run(hidden, valid, cache)
        return self._heads(hidden[:, -1:])[:, :, 0]

    def decode_step(self, step: torch.Tensor, cache: KVCache, step_features: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Feed one step LongTensor[B, K] after what the cache holds (plus its track features [B, 1, D], if any);
        logits of the following step [B, K, V]."""
        hidden = self.embed_steps(step.unsqueeze(2))  # (B, 1, D)
        if step_features is not None:
            hidden = hidden + step_features
        valid = torch.ones(step.shape[0], 1, dtype=torch.bool, device=step.device)
        hidden = self._run(hidden, valid, cache)
        return self._heads(hidden)[:, :, 0]


# ----------------------------------------------------------------------------------------- targets and loss
