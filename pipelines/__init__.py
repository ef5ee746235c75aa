"""What users run: encode/decode files, tokenize datasets, generate audio, fine-tune."""

from .codec_files import decode_file, encode_file, read_codes
from .defaults import default_codec, resolve_codec
from .tokenize import TokenizeError, load_tokenized, read_codec_metadata, tokenize_dataset

__all__ = ["TokenizeError", "decode_file", "default_codec", "encode_file", "load_tokenized", "read_codec_metadata",
           "read_codes", "resolve_codec", "tokenize_dataset"]
