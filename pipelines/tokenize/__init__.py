"""Tokenize an audio dataset with the codec: each example's audio becomes `codes` (K lists of T frames) for the LM.

Output rows: `codes` (K x T, int16 when the codebook size allows, else int32), `text` (from `text`, `transcript`,
`caption` or `sentence`; "" when absent), `duration` (seconds of audio encoded), and every other column of the
source except the audio column (a source column named `duration` is replaced). Folder sources gain `file_name`.

Codec metadata lives in `dataset.info.description` as JSON, `{"rvqaudio_codes": {...}}`; it survives
`save_to_disk`/`load_from_disk` and `concatenate_datasets`. Read it with `read_codec_metadata(dataset)`.

Layout of `output`, written so that a killed run loses at most one part and several processes can share the work:

    output/tokenize_config.json           settings all processes share; a resumed run must match them
    output/shard-00000-of-00002/          process 0's contiguous share of the source rows
        part-00000/                       `part_size` source rows: a save_to_disk dataset + tokenize_part.json,
                                          written to a temporary folder and renamed into place when complete
        done.json                         written once the whole share is encoded
    output/tokenize_report.json           total, encoded, skipped (index, path, reason), audio hours

`load_tokenized(output)` concatenates the shards in order: the same rows as one process would have written.
The codes do not depend on batch_size, num_proc or the sharding: each item's codes are those of encoding it
alone (see `workers.Encoder.encode` for the convolution backend this takes).

The package's modules; each imports only from those above it:

    sources.py    what a run reads and accepts: opening the source, its columns, this process's share, the
                  settings' checks, and `TokenizeError`
    identity.py   what identifies a source row, so that a resumed run re-encodes the parts whose rows changed
    workers.py    decoding and encoding: raw audio cells -> codes (runs in the worker processes)
    storage.py    where parts go and what they carry: the codec metadata, the output folder's layout, the sinks,
                  the report, `load_tokenized` and `read_codec_metadata`
    run.py        `tokenize_dataset`, and the run that feeds rows to the workers and their codes to a sink
"""

# The public API, and the format's constants that `pipelines.tokenize` has always offered.
from .run import tokenize_dataset
from .sources import AUDIO_SUFFIXES, TEXT_COLUMNS, TokenizeError
from .storage import (CONFIG_FILE, DONE_FILE, FORMAT_VERSION, METADATA_KEY, PART_FILE, REPORT_FILE, load_tokenized,
                      read_codec_metadata)

__all__ = ["TokenizeError", "load_tokenized", "read_codec_metadata", "tokenize_dataset"]
