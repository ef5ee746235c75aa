"""Errors that speak to the user: what was wrong, with which value, and what to do instead."""


class CodecError(ValueError):
    """Base class of the codec's errors (a ValueError, so callers can catch either)."""


class ConfigError(CodecError):
    """A config value is invalid, or a config file is missing or malformed."""


class AudioInputError(CodecError):
    """A waveform or an audio file cannot be used: wrong shape, dtype, length, rate, channels or content."""


class CodesError(CodecError):
    """Codes cannot be decoded: wrong shape, dtype, too many codebooks, or values out of range."""


class CheckpointError(CodecError):
    """A checkpoint folder is missing, incomplete, or does not match its config."""
