"""The transformer of the audio LM: a decoder-only model over [text prefix | audio steps].

    sequence   [t_0 .. t_{L-1}] [start, step_0, step_1, ..., step_{S-2}]
    predicts                     step_0, step_1, ..., step_{S-1}

Text tokens have their own embedding table. An audio step is K slots, one per codebook (the layout comes from
`lm.patterns`); its input embedding is the sum of K per-codebook embeddings, whose vocabularies hold the
codec's codes plus three specials (empty slot, end of audio, pad, see `lm.config`). K linear heads predict
the next step's slots, each over the codes plus end of audio.

Conditioning beyond the text comes as tracks (`lm.conditioners`): each track's conditioner is a module of the
model, in `tracks` keyed by its name, that turns its track into features added to the audio steps. The model sums
the features of the tracks it is given and knows nothing else of them.

Pre-norm blocks (RMSNorm), rotary positions, attention through `scaled_dot_product_attention`, and a key/value
cache preallocated for the whole generation. Positions count only real tokens, so a left-padded text (or a
null condition whose dropped tokens are masked) gives the same numbers as the unpadded sequence.

`AudioLMModel` is a `transformers.PreTrainedModel`: `save_pretrained`/`from_pretrained` write and read
config.json + model.safetensors, and accelerate and peft see ordinary `nn.Linear`/`nn.Embedding` modules (the linear
layers are `lm.layers.Linear`, an `nn.Linear` with a faster product for the few rows of a decoding step on a CPU,
and, with `set_inference_weights("int8")`, weight-only int8 products at inference on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .conditioners.base import Tracks, build_tracks
from .config import AudioLMConfig
from .layers import DerivedWeights, Linear, StackedHeads, hooked, products_for
from .objective import drop_conditions, target_terms, teacher_forcing


# ----------------------------------------------------------------------------------------- rotary positions


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions LongTensor[B, S] -> cos, sin FloatTensor[B, 1, S, head_dim / 2] (broadcast over heads)."""
    # Computed per call rather than kept as a buffer: it is tiny, and never stale after meta-device loading.
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.unsqueeze(-1).float() * inv_freq  # (B, S, Dh/2)
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + Dh/2]) of x [..., B, H, S, Dh] by the angles in cos/sin [B, 1, S, Dh/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    if cos.dtype != x.dtype:
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
        # Uninitialised: attention reads only the positions written so far (`update` returns [:length + S]).
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.valid = torch.zeros(batch_size, max_length, dtype=torch.bool, device=device)  # (B, max_length)
        self.num_valid = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.padded = False  # whether any position so far is not a real token (then attention needs a mask)
        self.length = 0
        self.max_length = max_length
        self._rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin of every position, on first use

    def rotary(self, positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """`rotary_cos_sin(positions, ...)` looked up in a table of positions 0..max_length-1, made once per cache
        (a decoding step then indexes two rows instead of computing them)."""
        if self._rotary is None:
            table = torch.arange(self.max_length, device=positions.device).unsqueeze(0)  # (1, max_length)
            self._rotary = tuple(t[0, 0] for t in rotary_cos_sin(table, head_dim, theta))  # 2 x (max_length, Dh/2)
        cos, sin = self._rotary
        return cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)  # 2 x (B, 1, S, Dh/2)

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
        self.qkv = Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out = Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, S, D = x.shape
        qkv = self.qkv(x).view(B, S, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, S, Dh)
        q, k = apply_rotary(qkv[:2], cos, sin).unbind(0)  # queries and keys rotated in one go: 2 x (B, H, S, Dh)
        v = qkv[2]
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S_past + S, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, S, Dh)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class MLP(nn.Module):
    def __init__(self, config: AudioLMConfig) -> None:
        super().__init__()
        self.fc = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.proj = Linear(config.intermediate_size, config.hidden_size, bias=False)

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
        attended = self.attention(self.attention_norm(x), cos, sin, mask, is_causal, cache, layer)
        if not self.training:  # no dropout module calls per step while decoding
            x = x + attended
            return x + self.mlp(self.mlp_norm(x))
        x = x + self.dropout(attended)
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
    supports_gradient_checkpointing = True  # activation_checkpointing_enable(): blocks recomputed in backward

    def __init__(self, config: AudioLMConfig) -> None:
        config.require_bound()
        super().__init__(config)
        K, D = config.num_codebooks, config.hidden_size
        self.pattern = config.build_pattern()
        self.text_embedding = nn.Embedding(config.text_vocab_size, D)
        self.code_embeddings = nn.ModuleList(nn.Embedding(config.input_vocab_size, D) for _ in range(K))
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(D, eps=config.norm_eps)
        self.heads = nn.ModuleList(Linear(D, config.num_logits, bias=False) for _ in range(K))
        self.stacked_heads = StackedHeads()  # the K heads as one product while decoding on a CPU
        self.code_tables = DerivedWeights(lambda tables: tables)  # the K code embeddings as one table at inference
        self.tracks = build_tracks(config)  # name -> TrackConditioner
        self.gradient_checkpointing = False  # set by transformers' activation_checkpointing_enable()
        self.inference_weights = "float"  # how linear layers multiply at inference on a CPU (set_inference_weights)
        self.post_init()

    def set_inference_weights(self, kind: str) -> None:
        """How the linear layers and heads multiply at inference on a CPU (`lm.layers`): 'float' (the stored
        weights) or 'int8' (weight-only int8 copies, made on first use and remade when a weight changes).
        Training, autograd and other devices always use the stored weights; nothing saved changes."""
        self.stacked_heads.products = products_for(kind)  # ValueError naming the kinds
        for module in self.modules():
            if isinstance(module, Linear):
                module.products = products_for(kind)
        self.inference_weights = kind

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if any(module is getattr(track, "projection", None) for track in self.tracks.values()):
            nn.init.zeros_(module.weight)  # a new track changes nothing until it has learnt something

    # -- pieces ---------------------------------------------------------------------------------------------

    def embed_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """steps LongTensor[B, K, S] (codes or special ids) -> FloatTensor[B, S, D], the sum of K embeddings.

        At inference the K tables are read as one (a concatenated copy, `lm.layers.DerivedWeights`): one lookup
        per decoding step instead of K module calls, the same sum in the same order."""
        tables = [embedding.weight for embedding in self.code_embeddings]
        if (torch.is_grad_enabled() or tables[0].is_inference()
                or not all(type(e) is nn.Embedding and not hooked(e) for e in self.code_embeddings)):
            parts = [embedding(steps[:, k]) for k, embedding in enumerate(self.code_embeddings)]  # K x (B, S, D)
        else:
            vocab = self.config.input_vocab_size
            offsets = torch.arange(0, vocab * len(tables), vocab, device=steps.device).view(1, -1, 1)  # (1, K, 1)
            parts = F.embedding(steps + offsets, self.code_tables.get(tables)).unbind(1)  # K x (B, S, D)
        hidden = parts[0]
        for part in parts[1:]:
            hidden = hidden + part
        return hidden

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

    def step_features(self, num_positions: int, tracks: Tracks | None = None) -> torch.Tensor | None:
        """What the tracks given (name -> track, as `lm.conditioners` builds them) add at audio positions
        0..num_positions-1: FloatTensor[B, num_positions, D], or None without tracks. Position s predicts frame
        frame_offset + s of each track."""
        given = {name: track for name, track in (tracks or {}).items() if track is not None}
        unknown = sorted(set(given) - set(self.tracks))
        if unknown:
            raise ValueError(f"this LM has no {' or '.join(unknown)} track (its tracks: {sorted(self.tracks)}); "
                             "leave it out, or add it with AudioLM.with_track")
        features = None
        for name, conditioner in self.tracks.items():  # a fixed order: the sum does not depend on the caller's
            if name in given:
                feature = conditioner(given[name], num_positions)  # (B, S, D)
                features = feature if features is None else features + feature
        return features

    def _run(self, hidden: torch.Tensor, valid: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        """hidden [B, S, D] with valid [B, S] (False = padding; None: every position real) through all blocks;
        returns normed [B, S, D]."""
        B, S = hidden.shape[:2]
        start = 0 if cache is None else cache.length
        seen = torch.zeros(B, dtype=torch.long, device=hidden.device) if cache is None else cache.num_valid
        if valid is None:  # a decoding step: no padding to skip in the positions
            positions = seen.unsqueeze(1) + torch.arange(S, device=hidden.device)  # (B, S)
            padded = False
        else:
            positions = (seen.unsqueeze(1) + valid.long().cumsum(1) - 1).clamp(min=0)  # (B, S)
            padded = not bool(valid.all())
        key_valid = valid
        if cache is None:
            cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        else:
            if start + S > cache.max_length:  # checked before the positions index the cache's rotary table
                raise ValueError(f"KV cache holds {cache.max_length} positions, asked for {start + S}")
            cos, sin = cache.rotary(positions, self.config.head_dim, self.config.rope_theta)
            cache.valid[:, start:start + S] = True if valid is None else valid
            cache.padded = cache.padded or padded
            padded = cache.padded
            key_valid = cache.valid[:, :start + S]
        # Fast paths: SDPA's own causal mask, or no mask for one query over a padding-free past.
        mask, is_causal = None, False
        if padded and S == 1 and valid is None:
            mask = key_valid[:, None, None, :]  # one real query after the cache: it sees every real key, itself too
        elif padded:
            mask = attention_mask(key_valid, start, S)
        elif S > 1:
            if start == 0:
                is_causal = True
            else:
                mask = attention_mask(key_valid, start, S)
        # Training with gradient checkpointing keeps only each block's input and recomputes the block in backward
        # (same RNG state, so the same dropout masks): activation memory of one block instead of all of them.
        recompute = self.gradient_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for index, layer in enumerate(self.layers):
            if recompute:
                hidden = self._gradient_checkpointing_func(layer.__call__, hidden, cos, sin, mask, is_causal, None,
                                                           index)
            else:
                hidden = layer(hidden, cos, sin, mask, is_causal, cache, index)
        if cache is not None:
            cache.length += S
            cache.num_valid += S if valid is None else valid.sum(1)
        return self.norm(hidden)

    def _heads(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, S, D] -> logits [B, K, S, codebook_size + 1]."""
        return self.stacked_heads(self.heads, hidden)

    # -- uncached: whole sequences -------------------------------------------------------------------------

    def logits(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None, step_inputs: torch.Tensor,
               step_mask: torch.Tensor | None = None, tracks: Tracks | None = None) -> torch.Tensor:
        """Logits of every audio step, recomputed from scratch (no cache).

        text_ids LongTensor[B, L], text_mask BoolTensor[B, L] (None: all real), step_inputs LongTensor[B, K, S]
        with step_inputs[:, :, 0] the start step and step_inputs[:, :, s] = step s - 1, step_mask BoolTensor[B, S]
        (None: all real), tracks: name -> track (`step_features`; None: none). Returns FloatTensor[B, K, S,
        codebook_size + 1]: position s predicts step s.
        """
        B, L = text_ids.shape
        text_mask = torch.ones_like(text_ids, dtype=torch.bool) if text_mask is None else text_mask.bool()
        if step_mask is None:
            step_mask = torch.ones(B, step_inputs.shape[2], dtype=torch.bool, device=step_inputs.device)
        steps = self.embed_steps(step_inputs)  # (B, S, D)
        features = self.step_features(step_inputs.shape[2], tracks)
        if features is not None:
            steps = steps + features
        hidden = torch.cat([self.text_embedding(text_ids), steps], dim=1)  # (B, L + S, D)
        hidden = self._run(hidden, torch.cat([text_mask, step_mask], dim=1), cache=None)
        return self._heads(hidden[:, L:])

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None, codes: torch.Tensor,
                code_lengths: torch.Tensor | None = None, tracks: Tracks | None = None) -> AudioLMOutput:
        """Teacher-forced logits and the training loss for text -> codes pairs.

        text_ids LongTensor[B, L] and text_mask BoolTensor[B, L] (padding either side); codes LongTensor[B, K, T]
        with code_lengths LongTensor[B] real frames per item (None: all T). Each item's codes get an
        end-of-audio frame, are laid out by the pattern, and the loss is the cross-entropy of every filled slot
        (codes and end of audio; not empty slots, not padding), averaged per codebook, then over codebooks.
        In training mode each item's text is replaced by the null condition with probability
        `config.condition_dropout`, and its tracks emptied (`Track.without`).
        """
        text_mask = torch.ones_like(text_ids, dtype=torch.bool) if text_mask is None else text_mask.bool()
        if self.training and self.config.condition_dropout > 0:
            drop = torch.rand(text_ids.shape[0], device=text_ids.device) < self.config.condition_dropout  # (B,)
            text_mask, tracks = drop_conditions(self, text_ids, text_mask, drop, tracks)
        steps, step_mask, step_inputs = teacher_forcing(self, codes, code_lengths)  # (B, K, S), (B, S), (B, K, S)
        logits = self.logits(text_ids, text_mask, step_inputs, step_mask, tracks)  # (B, K, S, V)
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
        hidden = self._run(hidden, None, cache)
        return self._heads(hidden)[:, :, 0]


# ----------------------------------------------------------------------------------------- targets and loss
