"""What users run: encode/decode files, tokenize datasets, generate audio, fine-tune."""

from .codec_files import decode_file, encode_file, read_codes
from .defaults import default_codec, resolve_codec

__all__ = ["decode_file", "default_codec", "encode_file", "read_codes", "resolve_codec"]
