"""What users run: encode/decode files, tokenize datasets, generate audio, fine-tune."""

from .codec_files import decode_file, encode_file, read_codes
from .defaults import default_codec, default_lm, load_lm, resolve_codec, resolve_lm, save_lm
from .generate import AudioStream, GeneratedAudio, default_voice, generate, generate_stream, voices
from .tokenize import TokenizeError, load_tokenized, read_codec_metadata, tokenize_dataset

__all__ = [
    "AudioStream", "GeneratedAudio", "TokenizeError", "decode_file", "default_codec", "default_lm", "default_voice",
    "encode_file", "generate", "generate_stream", "load_lm", "load_tokenized", "read_codec_metadata", "read_codes",
    "resolve_codec", "resolve_lm", "save_lm", "tokenize_dataset", "voices",
]
