"""Typed, validated, JSON round-trippable configuration of the RVQ codec and of its training."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from .errors import ConfigError
from .json_config import COMMENT_KEY, JsonConfig

def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass
class QuantizerConfig(JsonConfig):
    """Residual vector quantizer.

    kind="ema": EnCodec/AudioCraft codebooks learned by exponential moving averages, k-means initialised
    from the first batch, dead codes replaced by random vectors of the current batch.
    kind="factorized": DAC codebooks, learned by gradient in a low-dimensional (`codebook_dim`),
    L2-normalised space behind linear projections.
    """

    kind: str = "ema"
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int | None = None  # factorized: projection size (DAC uses 8); ema: must be None
    decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_threshold: float = 2.0  # EMA usage (vectors per batch) below which a code counts as dead
    quantizer_dropout: float = 1.0  # fraction of training items that use a random number of codebooks

    def __post_init__(self) -> None:
        _check(self.kind in ("ema", "factorized"), f"quantizer.kind must be 'ema' or 'factorized', got {self.kind!r}")
        _check(isinstance(self.num_codebooks, int) and self.num_codebooks >= 1,
               f"quantizer.num_codebooks must be an integer >= 1, got {self.num_codebooks!r}")
        _check(isinstance(self.codebook_size, int) and self.codebook_size >= 2,
               f"quantizer.codebook_size must be an integer >= 2, got {self.codebook_size!r}")
        if self.kind == "ema":
            _check(self.codebook_dim is None, "quantizer.codebook_dim is only used by kind='factorized'; set it to null")
        else:
            _check(self.codebook_dim is None or self.codebook_dim >= 1,
                   f"quantizer.codebook_dim must be >= 1 or null, got {self.codebook_dim!r}")
        _check(0.0 < self.decay < 1.0, f"quantizer.decay must be in (0, 1), got {self.decay!r}")
        _check(self.kmeans_iters >= 0, f"quantizer.kmeans_iters must be >= 0, got {self.kmeans_iters!r}")
        _check(self.dead_code_threshold >= 0, f"quantizer.dead_code_threshold must be >= 0, got {self.dead_code_threshold!r}")
        _check(0.0 <= self.quantizer_dropout <= 1.0,
               f"quantizer.quantizer_dropout must be in [0, 1], got {self.quantizer_dropout!r}")

    @property
    def bits_per_codebook(self) -> float:
        return math.log2(self.codebook_size)


@dataclass
class CodecTrainingConfig(JsonConfig):
    """How `train_codec` trains a codec. Stored with the checkpoint; not part of its fingerprint."""

    batch_size: int = 8
    segment_seconds: float = 1.0
    max_steps: int = 10_000
    learning_rate: float = 3e-4
    discriminator_learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    lr_decay: float = 0.999996  # exponential LR decay per step, as DAC
    warmup_steps: int = 0
    # The last `cooldown_steps` before the run's final step scale the rate down linearly to 0 (a warm-up, stable,
    # decay schedule): the loss drops when the rate anneals. 0 keeps the schedule independent of max_steps.
    cooldown_steps: int = 0
    grad_clip: float = 1000.0
    # Loss weights (fixed, EnCodec/DAC-like magnitudes).
    mel_weight: float = 15.0
    stft_weight: float = 1.0
    complex_weight: float = 0.0  # phase-aware compressed complex STFT loss (off by default)
    phase_weight: float = 0.0  # phase-derivative loss: instantaneous frequency and group delay (off by default)
    perceptual_weight: float = 0.0  # PESQ's loudness disturbance (`losses.PESQLoss`, torch-pesq; off by default)
    # Harmonic-source decoders (`spectral.phase` of kind "harmonic_source"): weight of the f0 and voicing losses
    # against YIN targets, and the first steps in which the harmonic source follows those targets instead of the
    # decoder's own prediction.
    pitch_weight: float = 1.0
    pitch_teacher_steps: int = 0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0  # factorized quantizer: codebook loss
    adversarial_weight: float = 1.0
    feature_weight: float = 2.0
    # The adversarial stage starts after a reconstruction-only warm-up; -1 never starts it.
    adversarial_start_step: int = -1
    # Decoder fine-tuning: the encoder and quantizer of the codec a run starts from (`init_from`) stay fixed, so
    # the codes of every dataset tokenized and every LM trained with it stay valid; only the decoder learns.
    freeze_codes: bool = False
    disc_filters: int = 32
    disc_n_ffts: tuple[int, ...] = (1024, 512, 256)
    # HiFi-GAN's multi-period discriminator beside the MS-STFT one: one sub-discriminator per period (HiFi-GAN
    # and Vocos use 2, 3, 5, 7, 11), its widths grow from `period_disc_filters`. Empty: MS-STFT only.
    disc_periods: tuple[int, ...] = ()
    period_disc_filters: int = 32
    mixed_precision: str = "no"
    seed: int = 0
    log_every: int = 50
    save_every: int = 500

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, f"training.batch_size must be >= 1, got {self.batch_size!r}")
        _check(self.segment_seconds > 0, f"training.segment_seconds must be > 0, got {self.segment_seconds!r}")
        _check(self.max_steps >= 1, f"training.max_steps must be >= 1, got {self.max_steps!r}")
        _check(self.learning_rate > 0, f"training.learning_rate must be > 0, got {self.learning_rate!r}")
        _check(isinstance(self.cooldown_steps, int) and self.cooldown_steps >= 0,
               f"training.cooldown_steps must be an integer >= 0, got {self.cooldown_steps!r}")
        _check(len(self.betas) == 2, f"training.betas must have two values, got {self.betas!r}")
        for name in ("complex_weight", "phase_weight", "perceptual_weight", "pitch_weight"):
            _check(getattr(self, name) >= 0, f"training.{name} must be >= 0, got {getattr(self, name)!r}")
        _check(isinstance(self.pitch_teacher_steps, int) and self.pitch_teacher_steps >= 0,
               f"training.pitch_teacher_steps must be an integer >= 0, got {self.pitch_teacher_steps!r}")
        _check(self.adversarial_start_step >= -1,
               f"training.adversarial_start_step must be >= 0, or -1 for never, got {self.adversarial_start_step!r}")
        _check(isinstance(self.freeze_codes, bool), f"training.freeze_codes must be true or false, got {self.freeze_codes!r}")
        _check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
               f"training.seed must be an integer >= 0, got {self.seed!r}")
        _check(self.mixed_precision in ("no", "fp16", "bf16"),
               f"training.mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        _check(len(self.disc_n_ffts) >= 1 and all(n >= 16 for n in self.disc_n_ffts),
               f"training.disc_n_ffts must list FFT sizes >= 16, got {self.disc_n_ffts!r}")
        _check(all(isinstance(p, int) and p >= 1 for p in self.disc_periods)
               and len(set(self.disc_periods)) == len(self.disc_periods),
               f"training.disc_periods must list distinct integer periods >= 1, got {list(self.disc_periods)!r}")
        _check(isinstance(self.period_disc_filters, int) and self.period_disc_filters >= 1,
               f"training.period_disc_filters must be an integer >= 1, got {self.period_disc_filters!r}")
        self.betas = tuple(self.betas)
        self.disc_n_ffts = tuple(self.disc_n_ffts)
        self.disc_periods = tuple(self.disc_periods)


# The `spectral` field that says how the decoder states phase: outside the code space (the fingerprint), and what a
# decoder variant may set differently from its codec folder (`RVQCodec.save_decoder_variant`).
DECODER_PHASE_SETTINGS = ("phase",)
# The older form of that field, six flags of `spectral`, which config files written before `spectral.phase` hold;
# `SpectralConfig.from_dict` reads them into `phase`.
LEGACY_PHASE_FLAGS = ("frequency_invariant_phase", "pitch_phase", "edge_phase", "edge_offsets", "voiced_offsets",
                      "voiced_offset_hidden")


def _is_bool(value) -> bool:
    return isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class FramePhaseConfig(JsonConfig):
    """The head's phases as they are, relative to each frame's start (Vocos)."""

    kind: str = "frame"

    def __post_init__(self) -> None:
        _check(self.kind == "frame", f"spectral.phase.kind of a FramePhaseConfig is 'frame', got {self.kind!r}")


@dataclass
class FrequencyInvariantPhaseConfig(JsonConfig):
    """The head's phases taken relative to the signal's origin instead of each frame's start (the
    frequency-invariant STFT convention). A steady tone at a bin's centre then has the same phase in every frame, so
    the frame-wise decoder can hold a pitch by repeating itself; with per-frame phases, repeated frames overlap-add
    into a signal periodic at the frame rate (a 130 Hz tone comes out on multiples of 75 Hz)."""

    kind: str = "frequency_invariant"

    def __post_init__(self) -> None:
        _check(self.kind == "frequency_invariant",
               f"spectral.phase.kind of a FrequencyInvariantPhaseConfig is 'frequency_invariant', got {self.kind!r}")


@dataclass
class EdgePhaseConfig(JsonConfig):
    """Harmonic-source phase at voicing edges: in the frame on each side of a voiced run the band's phases are the
    source's running phase plus an offset, so the unvoiced frames that meet a voiced run know the phase they have to
    join. The offsets are learned (a layer initialised at zero) or, with `offsets` false, held at zero."""

    offsets: bool = True

    def __post_init__(self) -> None:
        _check(_is_bool(self.offsets), f"spectral.phase.edge.offsets must be true or false, got {self.offsets!r}")


@dataclass
class VoicedPhaseConfig(JsonConfig):
    """Harmonic-source phase plus a residual in voiced frames: the band's phases are the source's running phase plus
    a residual predicted per bin by a linear layer initialised at zero (a decoder gaining it starts as it was), and,
    with `hidden` > 0, a second branch with a hidden layer of that width (GELU), its output layer also at zero."""

    hidden: int = 0

    def __post_init__(self) -> None:
        _check(_is_count(self.hidden), f"spectral.phase.voiced.hidden must be an integer >= 0, got {self.hidden!r}")


@dataclass
class HarmonicSourcePhaseConfig(JsonConfig):
    """The decoder also predicts f0 and voicing per frame; in voiced frames the phase of every bin below
    `tokenizer.modules.phase.PITCH_PHASE_MAX_HZ` is that of a harmonic source driven by the predicted f0, whose phase
    accumulates from frame to frame (NSF-style), so held pitches stay where they are. `edge` and `voiced` (null for
    none) say how the source's phase is also used at voicing edges and offset in voiced frames."""

    kind: str = "harmonic_source"
    edge: EdgePhaseConfig | None = None
    voiced: VoicedPhaseConfig | None = None

    def __post_init__(self) -> None:
        _check(self.kind == "harmonic_source",
               f"spectral.phase.kind of a HarmonicSourcePhaseConfig is 'harmonic_source', got {self.kind!r}")
        for name, config in (("edge", EdgePhaseConfig), ("voiced", VoicedPhaseConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, config.from_dict(value))
            _check(getattr(self, name) is None or isinstance(getattr(self, name), config),
                   f"spectral.phase.{name} must be an object of {config.__name__}'s fields or null, got {value!r}")


PhaseConfig = FramePhaseConfig | FrequencyInvariantPhaseConfig | HarmonicSourcePhaseConfig
PHASE_KINDS: dict[str, type] = {"frame": FramePhaseConfig, "frequency_invariant": FrequencyInvariantPhaseConfig,
                                "harmonic_source": HarmonicSourcePhaseConfig}


def phase_config_from_dict(data: dict) -> PhaseConfig:
    """A phase model's config from its JSON object, the class chosen by its `kind`."""
    _check(isinstance(data, dict), f"spectral.phase must be an object with a 'kind', got {data!r}")
    kind = data.get("kind")
    _check(kind in PHASE_KINDS, f"spectral.phase.kind must be one of {sorted(PHASE_KINDS)}, got {kind!r}")
    config = PHASE_KINDS[kind]
    known = {f.name for f in dataclasses.fields(config)} | {COMMENT_KEY}
    extra = sorted(set(data) - known)
    _check(not extra, f"spectral.phase of kind {kind!r} takes only {sorted(known - {COMMENT_KEY})}, got {extra} too "
                      "(edge and voiced phases belong to kind 'harmonic_source')")
    return config.from_dict(data)


def phase_from_flags(flags: dict) -> PhaseConfig:
    """The phase model that the six `spectral` flags of the older config form (`LEGACY_PHASE_FLAGS`) describe, with
    the messages that form gave for contradictory flags."""
    value = {"frequency_invariant_phase": False, "pitch_phase": False, "edge_phase": False, "edge_offsets": True,
             "voiced_offsets": False, "voiced_offset_hidden": 0, **flags}
    for name in LEGACY_PHASE_FLAGS[:-1]:
        _check(_is_bool(value[name]), f"spectral.{name} must be true or false, got {value[name]!r}")
    _check(value["pitch_phase"] or not value["edge_phase"],
           "spectral.edge_phase offsets the harmonic source's phase: it needs spectral.pitch_phase true")
    _check(value["edge_phase"] or value["edge_offsets"],
           "spectral.edge_offsets false holds the offsets of spectral.edge_phase at zero: it needs edge_phase true")
    _check(value["pitch_phase"] or not value["voiced_offsets"],
           "spectral.voiced_offsets offsets the harmonic source's phase: it needs spectral.pitch_phase true")
    hidden = value["voiced_offset_hidden"]
    _check(_is_count(hidden), f"spectral.voiced_offset_hidden must be an integer >= 0, got {hidden!r}")
    _check(value["voiced_offsets"] or not hidden,
           "spectral.voiced_offset_hidden widens the residual of spectral.voiced_offsets: it needs voiced_offsets true")
    _check(not (value["pitch_phase"] and value["frequency_invariant_phase"]),
           "spectral.frequency_invariant_phase and spectral.pitch_phase are two phase models; set one of them "
           "(spectral.phase {'kind': 'frequency_invariant'} or {'kind': 'harmonic_source'})")
    if value["pitch_phase"]:
        return HarmonicSourcePhaseConfig(edge=EdgePhaseConfig(value["edge_offsets"]) if value["edge_phase"] else None,
                                         voiced=VoicedPhaseConfig(hidden) if value["voiced_offsets"] else None)
    return FrequencyInvariantPhaseConfig() if value["frequency_invariant_phase"] else FramePhaseConfig()


def phase_flags(phase: PhaseConfig) -> dict:
    """`phase` as the six flags of the older config form: the inverse of `phase_from_flags`."""
    source = isinstance(phase, HarmonicSourcePhaseConfig)
    edge, voiced = (phase.edge, phase.voiced) if source else (None, None)
    return {"frequency_invariant_phase": isinstance(phase, FrequencyInvariantPhaseConfig), "pitch_phase": source,
            "edge_phase": edge is not None, "edge_offsets": edge.offsets if edge is not None else True,
            "voiced_offsets": voiced is not None, "voiced_offset_hidden": voiced.hidden if voiced is not None else 0}


@dataclass
class SpectralConfig(JsonConfig):
    """Frame-rate encoder and decoder (Vocos's ConvNeXt backbone and inverse-STFT head), in place of SEANet.

    The encoder reads an STFT of `n_fft` samples per frame at the codec's hop; the decoder predicts a spectrum
    per frame and overlap-adds its inverse. Each side is `num_layers` ConvNeXt blocks of width `dim`.

    `phase` is the decoder's phase model (`tokenizer.modules.phase`), one of `PHASE_KINDS`, e.g.
    `{"kind": "harmonic_source", "edge": {"offsets": false}, "voiced": null}`. It does not change what codes mean
    (not part of the fingerprint). `from_dict` also reads the older form, six flags in place of `phase`
    (`LEGACY_PHASE_FLAGS`); given beside `phase`, those flags are applied over it.
    """

    dim: int = 512
    hidden_dim: int = 1536
    num_layers: int = 8
    kernel_size: int = 7
    n_fft: int = 1280
    phase: PhaseConfig = field(default_factory=FramePhaseConfig)

    @classmethod
    def from_dict(cls, data: dict) -> SpectralConfig:
        if isinstance(data, dict) and any(name in data for name in LEGACY_PHASE_FLAGS):
            data = dict(data)
            flags = {name: data.pop(name) for name in LEGACY_PHASE_FLAGS if name in data}
            if "phase" in data:
                flags = {**phase_flags(_as_phase(data["phase"])), **flags}
            data["phase"] = phase_from_flags(flags)
        return super().from_dict(data)

    def __post_init__(self) -> None:
        self.phase = _as_phase(self.phase)
        for name in ("dim", "hidden_dim", "num_layers"):
            _check(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                   f"spectral.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        _check(isinstance(self.kernel_size, int) and self.kernel_size >= 1 and self.kernel_size % 2 == 1,
               f"spectral.kernel_size must be an odd integer >= 1, got {self.kernel_size!r}")
        _check(isinstance(self.n_fft, int) and self.n_fft >= 2,
               f"spectral.n_fft must be an integer >= 2, got {self.n_fft!r}")


def _as_phase(value) -> PhaseConfig:
    if isinstance(value, dict):
        return phase_config_from_dict(value)
    _check(isinstance(value, tuple(PHASE_KINDS.values())),
           f"spectral.phase must be an object with a 'kind' of {sorted(PHASE_KINDS)}, got {value!r}")
    return value


@dataclass
class CodecConfig(JsonConfig):
    """The RVQ codec: an encoder, a residual vector quantizer and a mirrored decoder.

    With `spectral` unset (null) the encoder and decoder are EnCodec's SEANet: `strides` are the encoder's
    downsampling factors in order, and the decoder upsamples in reverse. With `spectral` set they are the
    frame-rate ConvNeXt/iSTFT pair of `tokenizer.modules.spectral` (non-causal), and the SEANet fields other than
    `strides` are unused. Either way one frame of codes covers `hop_length = prod(strides)` samples.
    """

    name: str = "rvqaudio-codec"
    sample_rate: int = 24_000
    channels: int = 1
    n_filters: int = 32
    strides: tuple[int, ...] = (2, 4, 5, 8)
    dimension: int = 128
    n_residual_layers: int = 1
    residual_kernel_size: int = 3
    dilation_base: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    compress: int = 2
    lstm_layers: int = 0
    causal: bool = True
    norm: str = "weight_norm"
    activation: str = "elu"
    chunk_seconds: float = 30.0  # inputs longer than this are encoded/decoded chunk by chunk
    spectral: SpectralConfig | None = None
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    training: CodecTrainingConfig = field(default_factory=CodecTrainingConfig)

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig.from_dict(self.quantizer)
        if isinstance(self.training, dict):
            self.training = CodecTrainingConfig.from_dict(self.training)
        if isinstance(self.spectral, dict):
            self.spectral = SpectralConfig.from_dict(self.spectral)
        self.strides = tuple(self.strides)
        _check(isinstance(self.sample_rate, int) and self.sample_rate >= 1000,
               f"sample_rate must be an integer >= 1000 Hz, got {self.sample_rate!r}")
        _check(self.channels in (1, 2), f"channels must be 1 (mono) or 2 (stereo), got {self.channels!r}")
        _check(self.n_filters >= 1, f"n_filters must be >= 1, got {self.n_filters!r}")
        _check(len(self.strides) >= 1 and all(isinstance(s, int) and s >= 1 for s in self.strides),
               f"strides must be a non-empty list of integers >= 1, got {list(self.strides)!r}")
        _check(self.dimension >= 1, f"dimension must be >= 1, got {self.dimension!r}")
        _check(self.n_residual_layers >= 0, f"n_residual_layers must be >= 0, got {self.n_residual_layers!r}")
        for name in ("residual_kernel_size", "kernel_size", "last_kernel_size"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)!r}")
        _check(self.dilation_base >= 1, f"dilation_base must be >= 1, got {self.dilation_base!r}")
        _check(self.compress >= 1, f"compress must be >= 1, got {self.compress!r}")
        _check(self.lstm_layers >= 0, f"lstm_layers must be >= 0, got {self.lstm_layers!r}")
        _check(self.norm in ("weight_norm", "none"), f"norm must be 'weight_norm' or 'none', got {self.norm!r}")
        _check(self.activation in ("elu", "snake"), f"activation must be 'elu' or 'snake', got {self.activation!r}")
        _check(self.chunk_seconds > 0, f"chunk_seconds must be > 0, got {self.chunk_seconds!r}")
        if self.spectral is not None:
            _check(not self.causal, "a spectral codec is non-causal (its inverse STFT overlaps later frames); set causal to false")
            _check(self.spectral.n_fft >= self.hop_length and (self.spectral.n_fft - self.hop_length) % 2 == 0,
                   f"spectral.n_fft must be >= hop_length ({self.hop_length}) and differ from it by an even number, "
                   f"got {self.spectral.n_fft}")
        if self.quantizer.kind == "factorized" and self.quantizer.codebook_dim is None:
            self.quantizer.codebook_dim = 8

    # Derived values.
    @property
    def hop_length(self) -> int:
        """Samples per frame of codes."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Frames of codes per second (Hz)."""
        return self.sample_rate / self.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Bitrate in kbps when `num_codebooks` codebooks (default: all) are transmitted."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        return k * self.quantizer.bits_per_codebook * self.frame_rate / 1000.0

    @property
    def fingerprint(self) -> str:
        """Identifies the code space: every field that changes what codes mean, nothing about training."""
        digest = hashlib.sha256(json.dumps(self._code_space(), sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def code_space_differences(self, other: CodecConfig) -> list[str]:
        """The fields, sorted, by which `other`'s code space differs from this one's (empty when the fingerprints agree)."""
        mine, theirs = self._code_space(), other._code_space()
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))

    def _code_space(self) -> dict:
        """The fields that change what codes mean, as the fingerprint hashes them."""
        data = self.to_dict()
        for key in ("training", "chunk_seconds", "name"):
            data.pop(key)
        if data["spectral"] is None:  # SEANet codecs keep the fingerprints they had before `spectral` existed
            data.pop("spectral")
        else:  # how the decoder states phase is not what the codes mean
            for key in DECODER_PHASE_SETTINGS:
                data["spectral"].pop(key)
        return data
