"""`RVQCodec`: waveform (B, C, N) <-> codes (B, K, T), the audio tokenizer of rvqaudio."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torchaudio.functional as AF
from huggingface_hub import ModelHubMixin
from torch import nn

from .checkpoint import check_state_dict, list_variants, load_checkpoint, save_checkpoint
from .config import CodecConfig
from .errors import AudioInputError, CheckpointError, CodecError, CodesError
from .hub import CARD_NAME, LIBRARY_NAME, TAGS, model_card, resolve_folder
from .modules import SEANetDecoder, SEANetEncoder, SpectralDecoder, SpectralEncoder
from .modules.phase import rename_phase_tensors
from .quantization import ResidualVectorQuantizer
from .threads import cpu_threads
from .variants import (DECODER_PREFIX, check_code_space, override_config, save_variant, split_decoder,
                       with_variant)

if TYPE_CHECKING:  # the streaming module imports this one
    from .streaming import StreamDecoder, StreamEncoder

__all__ = ["DECODER_PREFIX", "CodecOutput", "RVQCodec", "split_decoder"]


@contextlib.contextmanager
def _invariant_convolutions() -> Iterator[None]:
    """Inference runs ATen's own CPU convolutions instead of oneDNN's: oneDNN rounds differently (~1e-7) for
    different batch sizes and lengths, enough to flip a code near a tie, so codes would depend on batching,
    chunking or sharding. Measured: faster at batch 1, ~10% slower at batch 8 (benchmarks/tokenize_speed.py)."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


@dataclass
class CodecOutput:
    audio: torch.Tensor  # (B, C, N) reconstruction, same length as the input
    codes: torch.Tensor  # (B, K, T)
    commit_loss: torch.Tensor  # scalar
    codebook_loss: torch.Tensor  # scalar
    num_codebooks: torch.Tensor  # (B,) codebooks each item was reconstructed from
    pitch: torch.Tensor | None = None  # pitch-phase decoder: (B * C, PITCH_BINS + 1, T) f0 class and voicing logits


class RVQCodec(nn.Module, ModelHubMixin, library_name=LIBRARY_NAME, tags=TAGS):
    """Encoder → residual vector quantizer → decoder: SEANet (EnCodec) by default, the frame-rate ConvNeXt/iSTFT
    pair (Vocos) when `config.spectral` is set.

    Public interface (what the LM and pipelines rely on): `encode`, `decode`, `sample_rate`, `channels`,
    `frame_rate`, `num_codebooks`, `codebook_size`, `fingerprint`, `stream_decoder`.

    A checkpoint is a folder (`save_pretrained` / `from_pretrained`) or a Hugging Face Hub repo of the same files
    (`push_to_hub`, `from_pretrained("org/name")`; `tokenizer.hub`).
    """

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        # Built in this order (encoder, quantizer, decoder) so that seeded initial weights and the optimizer's
        # parameter order stay what they were: runs resume from their checkpoints and reproduce exactly.
        spectral = config.spectral is not None
        self.encoder = SpectralEncoder(config) if spectral else SEANetEncoder(config)
        self.quantizer = ResidualVectorQuantizer(config.dimension, config.quantizer)
        self.decoder = SpectralDecoder(config) if spectral else SEANetDecoder(config)
        # Context (in frames) each chunk of a chunked encode/decode needs so that it equals one pass.
        self._encoder_context = self.encoder.context_frames + 1
        self._decoder_context = self.decoder.context_frames + 1
        # A span of codes decodes as part of a longer sequence only if it starts at a multiple of this.
        self._decoder_period = getattr(self.decoder, "period", 1)
        self._pitch_phase = getattr(self.decoder, "pitch_phase", False)
        self._fingerprint: tuple[tuple, str] | None = None  # (the code-side tensors' identity, their hash)

    # ---- the narrow interface -------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def fingerprint(self) -> str:
        """Identifies the code space: the config's code-space fields and the encoder's and quantizer's tensors
        (floating ones rounded to float16, so a codec stored in half precision keeps its fingerprint). Two codecs
        trained from one config differ; decoder variants, which only replace the decoder, share it."""
        codes_side = split_decoder(self.state_dict())[0]
        # a tensor's version counter moves with every in-place update (optimizer steps, EMA codebooks)
        identity = tuple((name, t.data_ptr(), t._version) for name, t in codes_side.items())
        if self._fingerprint is None or self._fingerprint[0] != identity:
            digest = hashlib.sha256(self.config.fingerprint.encode())
            for name in sorted(codes_side):
                tensor = codes_side[name].detach()
                tensor = tensor.to(torch.float16) if tensor.is_floating_point() else tensor
                digest.update(name.encode())
                digest.update(tensor.cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
            self._fingerprint = (identity, digest.hexdigest()[:16])
        return self._fingerprint[1]

    @property
    def legacy_fingerprint(self) -> str:
        """The fingerprint rvqaudio 0.1.0 stored: the config's code-space fields alone. Files and LMs that carry it
        are accepted with a warning (`lm.codec_interface.same_code_space`), since it cannot tell two codecs of one
        config apart."""
        return self.config.fingerprint

    @property
    def encoder_context(self) -> int:
        """Frames of audio around a frame that its codes depend on: encoding a span with this much audio on each
        side reproduces a whole-signal encode there (`tokenizer.long_audio`)."""
        return self._encoder_context

    @property
    def decoder_context(self) -> int:
        """Frames of codes around a frame (before it only, for a causal codec) that its decoded samples depend
        on; decoding new frames with this much left context reproduces a whole-sequence decode (streaming)."""
        return self._decoder_context

    @property
    def pitch_phase(self) -> bool:
        """Whether the decoder drives a harmonic source whose phase carries over from span to span: decoding
        part of a sequence then needs `decode(..., source_phase=...)` to continue where the previous part ended."""
        return self._pitch_phase

    @property
    def decoder_period(self) -> int:
        """Decoding a span of codes that starts at a multiple of this many frames reproduces what a decode of
        the whole sequence gives there (1 for most decoders; a frequency-invariant phase repeats every few)."""
        return self._decoder_period

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """kbps when transmitting the first `num_codebooks` codebooks (default: all)."""
        return self.config.bitrate(num_codebooks)

    # ---- training forward -----------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, pitch: torch.Tensor | None = None) -> CodecOutput:
        """Reconstruct wav (B, C, N). In train() mode, quantizer dropout picks each item's codebook count.

        `pitch` (B * C, 2, T): f0 (Hz) and voicing (0 or 1) per frame that drive a pitch-phase decoder's source in
        place of its own prediction (teacher forcing); its prediction is returned in `CodecOutput.pitch`.
        """
        n = wav.shape[-1]
        x = self._pad_to_hop(wav)
        latent = self.encoder(x)  # (B, D, T)
        q = self.quantizer(latent)
        if self._pitch_phase:
            out = self.decoder.run(q.quantized, pitch=pitch)
            audio, predicted = out.audio, out.pitch
        else:
            audio, predicted = self.decoder(q.quantized), None
        return CodecOutput(audio[..., :n], q.codes, q.commit_loss, q.codebook_loss, q.num_codebooks, predicted)

    # ---- inference ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None,
               num_codebooks: int | None = None) -> torch.Tensor:
        """Waveform -> codes LongTensor (B, K, T) with T = ceil(N / hop_length) at the codec's rate.

        Args:
            wav: float waveform in [-1, 1], shaped (N,), (C, N) or (B, C, N). Mono input is duplicated
                for a stereo codec.
            sample_rate: rate of `wav` in Hz; it is resampled when it differs from `self.sample_rate`.
            num_codebooks: K, how many codebooks to return (default all; bitrate = `bitrate(K)` kbps).

        Inputs longer than `config.chunk_seconds` are encoded chunk by chunk in bounded memory; for a
        causal codec without LSTM the codes equal those of one pass.
        """
        k = self._check_num_codebooks(num_codebooks)
        wav = self._prepare_waveform(wav, sample_rate)
        x = self._pad_to_hop(wav)
        frames = x.shape[-1] // self.hop_length

        def encode_span(span: torch.Tensor, *_) -> torch.Tensor:
            return self.quantizer.encode(self.encoder(span), k)

        with _invariant_convolutions(), cpu_threads(x.device):
            return self._chunked(encode_span, x, frames, self._encoder_context, self.hop_length, 1)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, source_phase: tuple[int, torch.Tensor] | None = None,
               return_source_phase: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Codes (B, K', T) with 1 <= K' <= num_codebooks -> waveform FloatTensor (B, C, T * hop_length).

        A pitch-phase decoder (`pitch_phase`) accumulates its harmonic source's phase over the whole sequence; to
        decode a later part of a sequence as a whole decode would, pass `source_phase=(frame, phase)`: the phase
        (B, C) at the start of `frame` of these codes, as an earlier call returned it. With
        `return_source_phase` the result is (waveform, phases (B, C, T + 1) float64 at every frame start), the
        phases None for other decoders.
        """
        codes = self._check_codes(codes)
        frames = codes.shape[-1]
        carried = None if source_phase is None else (int(source_phase[0]), source_phase[1])
        phases = []

        def decode_span(span: torch.Tensor, lo: int, start: int, end: int) -> torch.Tensor:
            nonlocal carried
            latent = self.quantizer.decode(span)
            if not self._pitch_phase:
                return self.decoder(latent)
            anchor = None if carried is None else (carried[0] - lo, carried[1])
            out = self.decoder.run(latent, source_phase=anchor)
            phases.append(out.source_phase[..., start - lo:end - lo + (end == frames)])
            carried = (end, out.source_phase[..., end - lo])
            return out.audio

        if source_phase is not None and self._pitch_phase and not 0 <= carried[0] <= frames:
            raise CodesError(f"source_phase's frame must be in [0, {frames}] for {frames} frames of codes, "
                             f"got {carried[0]}")
        with _invariant_convolutions(), cpu_threads(codes.device):
            wav = self._chunked(decode_span, codes, frames, self._decoder_context, 1, self.hop_length,
                                align=self._decoder_period)
        if not return_source_phase:
            return wav
        return wav, (torch.cat(phases, dim=-1) if phases else None)

    def _chunked(self, fn: Callable[[torch.Tensor, int, int, int], torch.Tensor], x: torch.Tensor, frames: int,
                 context: int, in_per_frame: int, out_per_frame: int, align: int = 1) -> torch.Tensor:
        """Apply `fn` to spans of `x` of at most `chunk_seconds` frames plus `context` frames on each side
        (only the left for a causal model; each span starts at a multiple of `align` frames), keeping each span's
        middle. Every output frame then sees its whole receptive field, so the result equals `fn(x)` while memory
        stays bounded. `fn(span, lo, start, end)` also gets the span's first frame and the frames it keeps, in
        order from the first span to the last."""
        chunk = max(1, int(self.config.chunk_seconds * self.frame_rate))
        if frames <= chunk:
            return fn(x, 0, 0, frames)
        right_context = 0 if self.config.causal else context
        pieces = []
        for start in range(0, frames, chunk):
            end = min(start + chunk, frames)
            lo, hi = max(0, start - context) // align * align, min(frames, end + right_context)
            y = fn(x[..., lo * in_per_frame: hi * in_per_frame], lo, start, end)
            pieces.append(y[..., (start - lo) * out_per_frame: (end - lo) * out_per_frame])
        return torch.cat(pieces, dim=-1)

    # ---- validation at the boundary -------------------------------------------------------------
    def _pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        pad = (-wav.shape[-1]) % self.hop_length
        return torch.nn.functional.pad(wav, (0, pad)) if pad else wav

    def _check_num_codebooks(self, num_codebooks: int | None) -> int:
        if num_codebooks is None:
            return self.num_codebooks
        if not isinstance(num_codebooks, int) or not 1 <= num_codebooks <= self.num_codebooks:
            raise CodecError(f"num_codebooks must be an integer in [1, {self.num_codebooks}], got {num_codebooks!r}")
        return num_codebooks

    def _prepare_waveform(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        if not isinstance(wav, torch.Tensor):
            raise AudioInputError(f"expected a torch.Tensor waveform, got {type(wav).__name__}")
        if not wav.is_floating_point():
            raise AudioInputError(
                f"expected a floating-point waveform in [-1, 1], got dtype {wav.dtype}; "
                "convert integer PCM first (e.g. int16 / 32768)")
        if wav.dim() == 1:
            wav = wav[None, None]
        elif wav.dim() == 2:
            wav = wav[None]
        elif wav.dim() != 3:
            raise AudioInputError(f"expected a waveform shaped (N,), (C, N) or (B, C, N), got shape {tuple(wav.shape)}")
        if wav.shape[0] == 0:
            raise AudioInputError(f"got an empty batch, shape {tuple(wav.shape)}")
        channels = wav.shape[1]
        if channels != self.channels:
            if channels == 1:
                wav = wav.expand(-1, self.channels, -1)
            else:
                raise AudioInputError(
                    f"waveform has {channels} channels but this codec takes {self.channels}; "
                    "down-mix it first (e.g. wav.mean(dim=-2, keepdim=True))")
        if sample_rate is not None and sample_rate != self.sample_rate:
            if not isinstance(sample_rate, int) or sample_rate <= 0:
                raise AudioInputError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
            wav = AF.resample(wav.float(), sample_rate, self.sample_rate)
        if wav.shape[-1] < self.hop_length:
            raise AudioInputError(
                f"audio has {wav.shape[-1]} samples at {self.sample_rate} Hz; the codec needs at least one frame, "
                f"{self.hop_length} samples ({1000 * self.hop_length / self.sample_rate:.1f} ms)")
        if not bool(torch.isfinite(wav).all()):
            raise AudioInputError("waveform contains NaN or infinite samples")
        param = next(self.parameters())
        return wav.to(device=param.device, dtype=param.dtype)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if not isinstance(codes, torch.Tensor):
            raise CodesError(f"expected codes as a LongTensor (B, K, T), got {type(codes).__name__}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise CodesError(f"expected integer codes (B, K, T), got dtype {codes.dtype}")
        if codes.dim() != 3:
            raise CodesError(f"expected codes shaped (B, K, T), got shape {tuple(codes.shape)}"
                             + ("; add a batch axis with codes[None]" if codes.dim() == 2 else ""))
        b, k, t = codes.shape
        if b == 0 or t == 0:
            raise CodesError(f"codes are empty, shape {tuple(codes.shape)}")
        if not 1 <= k <= self.num_codebooks:
            raise CodesError(f"codes have K={k} codebooks; this codec has {self.num_codebooks} (K must be in [1, {self.num_codebooks}])")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise CodesError(f"codes must lie in [0, {self.codebook_size - 1}], got values in [{lo}, {hi}]")
        return codes.to(device=next(self.parameters()).device, dtype=torch.long)

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None, *,
                        model_card_kwargs: dict | None = None, push_to_hub: bool = False, repo_id: str | None = None,
                        **push_to_hub_kwargs: Any) -> Path:
        """Write `directory/config.json` and `directory/model.safetensors` atomically.

        `dtype=torch.float16` halves the file; `from_pretrained` loads it back as float32. With `model_card_kwargs`
        (a dict, `{}` for the defaults) the folder also gets a hub model card, README.md (`push_to_hub` asks for
        one). `push_to_hub=True` then uploads the folder to hub repo `repo_id` (default: the folder's name).
        """
        if push_to_hub_kwargs.pop("config", None) is not None:
            raise CheckpointError("a codec saves its own config; save_pretrained takes no config=")
        if push_to_hub_kwargs and not push_to_hub:
            raise TypeError(f"save_pretrained got unexpected arguments {sorted(push_to_hub_kwargs)}")
        card = {} if model_card_kwargs is None else {CARD_NAME: model_card(self)}
        path = save_checkpoint(directory, self.config.to_json_string(), self.state_dict(), dtype=dtype,
                               extra_files=card)
        if push_to_hub:
            self.push_to_hub(repo_id or path.name, **push_to_hub_kwargs)
        return path

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload this codec (config.json, model.safetensors and a model card) to hub repo `repo_id`; arguments as
        `huggingface_hub.ModelHubMixin.push_to_hub`. Needs a token (`huggingface-cli login`)."""
        kwargs["model_card_kwargs"] = kwargs.get("model_card_kwargs") or {}
        return super().push_to_hub(repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu",
                        variant: str | None = None, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                        local_files_only: bool = False, token: str | bool | None = None,
                        **overrides: Any) -> "RVQCodec":
        """Load a folder written by `save_pretrained`, or a Hugging Face Hub repo ("org/name") of the same files, in
        eval mode.

        A repo id that is not a local folder is downloaded into the hub cache (or found there: `local_files_only`,
        or offline with HF_HUB_OFFLINE=1) at `revision`, with `cache_dir`, `force_download` and `token` as in
        `huggingface_hub.snapshot_download` (`tokenizer.hub.resolve_folder`); its files are then checked as a
        local folder's are.

        `variant` names a decoder variant saved in the folder by `save_decoder_variant` (`decoder.<variant>.json`
        and `.safetensors`, e.g. "speech"; `tokenizer.variants`): its decoder replaces that of `model.safetensors`,
        its phase model (`spectral.phase`) that of config.json. The encoder and codebooks, and so the codes, are the
        folder's own whichever variant is read; a variant made for other codes (another fingerprint) raises
        CheckpointError. `RVQCodec.decoder_variants` lists them; an unknown one raises CheckpointError naming those
        there are.

        `overrides` replace fields of its config.json before the model is built, as transformers' `from_pretrained`
        takes config attributes; a dict merges into a nested config, e.g. `spectral={"phase": {"edge": {"offsets":
        False}}}` decodes the same harmonic-source weights with the source's own phase at voicing edges (the phase
        flags of the older config form, e.g. `spectral={"edge_phase": True, "edge_offsets": False}`, also apply).
        Only settings that keep the code space (the fingerprint) are allowed: the phase model, `chunk_seconds`,
        `name`, `training`. A setting that needs weights the folder lacks, or leaves some unused, raises
        CheckpointError naming them.
        """
        directory = resolve_folder(directory, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=local_files_only, token=token)
        config_dict, state = load_checkpoint(directory)
        code_space = None
        if variant is not None:
            config_dict, state, code_space = with_variant(config_dict, state, directory, variant)
        source = directory if variant is None else f"{directory} (decoder variant {variant!r})"
        if not overrides:
            model = cls.from_state_dict(config_dict, state, source)
        else:
            try:
                model = cls.from_state_dict(override_config(config_dict, overrides, directory), state, source)
            except CheckpointError as e:
                raise CheckpointError(f"with overrides {overrides}: {e}") from e
        if variant is not None:
            check_code_space(model, code_space, directory, variant)
        return model.to(device).eval()

    def save_decoder_variant(self, directory: str | os.PathLike, variant: str,
                             dtype: torch.dtype | None = None) -> Path:
        """Write this codec's decoder into the codec folder `directory` as decoder variant `variant`:
        `decoder.<variant>.safetensors` (its tensors, cast to `dtype` when given) and `decoder.<variant>.json` (the
        config it is built from and the fingerprint of its codes), each written atomically, to be read by
        `from_pretrained(directory, variant=variant)` or on its own by `tokenizer.variants.load_decoder_variant`.

        The folder's codec must be this one with another decoder: the same config apart from `name`, `training` and
        the phase model (`spectral.phase`), and the same encoder and codebook weights (as stored there, e.g. in
        float16), so that its codes are this codec's codes. Otherwise CheckpointError names what differs. Re-saving
        the folder's own codec (`save_pretrained`) replaces the folder, variants too.
        """
        return save_variant(self, directory, variant, dtype)

    def _save_pretrained(self, save_directory: Path) -> None:  # ModelHubMixin's hook
        self.save_pretrained(save_directory)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, **kwargs: Any) -> "RVQCodec":  # ModelHubMixin's hook
        return cls.from_pretrained(model_id, **kwargs)

    @staticmethod
    def decoder_variants(directory: str | os.PathLike) -> list[str]:
        """The names of the decoder variants saved in a codec folder (sorted; empty when it has none)."""
        return list_variants(directory)

    @classmethod
    def from_state_dict(cls, config_dict: dict, state: dict[str, torch.Tensor],
                        source: str | os.PathLike) -> "RVQCodec":
        """Build a codec from a config dict and its weights read from `source` (named in errors); tensors stored in
        another floating dtype (e.g. float16) are cast to the model's. Raises CheckpointError when they do not match."""
        try:
            config = CodecConfig.from_dict(config_dict)
        except CodecError as e:
            raise CheckpointError(f"config.json in {str(source)!r} is not a valid codec config: {e}") from e
        model = cls(config)
        expected = model.state_dict()
        state = rename_phase_tensors(state)  # the names older files give the phase model's tensors
        check_state_dict(expected, state, repr(str(source)))
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
        return model

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- streaming ------------------------------------------------------------------------------
    def stream_decoder(self, context: torch.Tensor | None = None) -> "StreamDecoder":
        """A `tokenizer.streaming.StreamDecoder`: `push(codes LongTensor[B, K, t])` returns the samples
        FloatTensor[B, C, n] now final, `flush()` the rest; together they equal `decode` of all the codes.
        `context`: LongTensor[B, K, t0] of codes before them (e.g. an audio prompt's), whose samples are not
        returned."""
        from .streaming import StreamDecoder

        return StreamDecoder(self, context)

    def stream_encoder(self, num_codebooks: int | None = None) -> "StreamEncoder":
        """A `tokenizer.streaming.StreamEncoder` (causal codecs only; CodecError otherwise): `push(wav
        FloatTensor[B, C, n])` returns the codes LongTensor[B, K, t] of the frames now complete, `flush()` the
        rest; together they equal `encode` of the whole waveform."""
        from .streaming import StreamEncoder

        return StreamEncoder(self, num_codebooks)
