"""rvqaudio's audio tokenizer: a trainable RVQ neural codec, waveform (B, C, N) <-> codes (B, K, T)."""

from .config import CodecConfig, CodecTrainingConfig, QuantizerConfig, SpectralConfig
from .errors import AudioInputError, CheckpointError, CodecError, CodesError, ConfigError
from .model import CodecOutput, RVQCodec
from .streaming import StreamDecoder

__all__ = [
    "AudioInputError", "CheckpointError", "CodecConfig", "CodecError", "CodecOutput", "CodecTrainingConfig",
    "CodesError", "ConfigError", "QuantizerConfig", "RVQCodec", "SpectralConfig", "StreamDecoder",
]
