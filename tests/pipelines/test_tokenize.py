"""`tokenize_dataset`: every source kind gives the codes of encoding each file alone; shards, resume, skips, metadata."""

from __future__ import annotations

import json
import shutil

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, Dataset, Features, Value

from pipelines.tokenize import TokenizeError, load_tokenized, read_codec_metadata, tokenize_dataset
from tokenizer import CodecConfig, RVQCodec
from tokenizer.audio import load_audio

LENGTHS_16K = [3000, 8000, 4400, 12000, 1600, 6300, 9100]  # samples at 16 kHz: 0.1 to 0.75 s


def _codec(**overrides) -> RVQCodec:
    torch.manual_seed(0)
    config = CodecConfig(sample_rate=8000, n_filters=4, strides=(2, 4), dimension=16,
                         quantizer={"num_codebooks": 4, "codebook_size": 32}, **overrides)
    codec = RVQCodec(config)
    codec.train()(torch.randn(2, 1, 800) * 0.1)  # k-means init: codes spread over the codebooks
    return codec.eval()


@pytest.fixture(scope="module")
def codec() -> RVQCodec:
    return _codec()


def _write(path, samples: int, sample_rate: int = 16000, channels: int = 2, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t)[:, None] + 0.05 * rng.standard_normal((samples, channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, sample_rate)


@pytest.fixture
def folder(tmp_path):
    """Seven 16 kHz stereo wav files of different lengths, some in a sub-folder (the codec is 8 kHz mono)."""
    root = tmp_path / "audio"
    for i, n in enumerate(LENGTHS_16K):
        _write(root / ("sub" if i % 3 == 0 else "") / f"clip{i}.wav", n, seed=i)
    return root


def _alone(codec: RVQCodec, path) -> torch.Tensor:
    """Codes of one file loaded as `rvqaudio encode` does and encoded by itself, (K, T); with ATen's convolution,
    as tokenize_dataset uses (oneDNN's results change with the batch size)."""
    wav, _ = load_audio(path, sample_rate=codec.sample_rate, channels=codec.channels)
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        return codec.encode(wav[None])[0]
    finally:
        torch.backends.mkldnn.enabled = onednn


def _codes(row) -> torch.Tensor:
    return torch.tensor(row["codes"], dtype=torch.long)


def test_plain_folder_gives_the_codes_of_each_file_encoded_alone(tmp_path, folder, codec):
    ds = tokenize_dataset(folder, codec, output=tmp_path / "out", batch_size=3, progress=False)
    assert len(ds) == len(LENGTHS_16K)
    assert sorted(ds["file_name"]) == ds["file_name"] and "sub/clip0.wav" in ds["file_name"]
    assert ds.features["codes"].feature.feature.dtype == "int16"
    for row in ds:
        expected = _alone(codec, folder / row["file_name"])
        assert torch.equal(_codes(row), expected), row["file_name"]  # batch padding changed nothing
        samples = sf.info(folder / row["file_name"]).frames
        assert row["duration"] == pytest.approx(samples / 16000, abs=1e-3) and row["text"] == ""
        assert expected.shape[-1] == -(-round(samples / 2) // codec.hop_length)  # T = ceil(N / hop) at 8 kHz


def test_in_memory_dataset_with_bytes_and_paths_keeps_other_columns(tmp_path, folder, codec):
    files = sorted(folder.rglob("*.wav"))[:4]
    cells = [{"bytes": f.read_bytes(), "path": f.name} if i % 2 else str(f) for i, f in enumerate(files)]
    source = Dataset.from_dict(
        {"audio": cells, "transcript": [f"line {i}" for i in range(4)], "voice": ["a", "b", "c", "d"]},
        features=Features({"audio": Audio(sampling_rate=16000), "transcript": Value("string"),
                           "voice": Value("string")}))
    ds = tokenize_dataset(source, codec, batch_size=4, num_codebooks=2, progress=False)  # in memory
    assert ds.column_names == ["codes", "text", "duration", "voice"]
    assert ds["text"] == [f"line {i}" for i in range(4)] and ds["voice"] == ["a", "b", "c", "d"]
    for row, f in zip(ds, files):
        assert torch.equal(_codes(row), _alone(codec, f)[:2])
    assert read_codec_metadata(ds)["num_codebooks"] == 2


def test_saved_dataset_in_two_shards_concatenates_to_one_process(tmp_path, folder, codec):
    files = sorted(folder.rglob("*.wav"))
    Dataset.from_dict({"audio": [str(f) for f in files], "caption": [f.stem for f in files]},
                      features=Features({"audio": Audio(), "caption": Value("string")})).save_to_disk(tmp_path / "saved")
    whole = tokenize_dataset(tmp_path / "saved", codec, output=tmp_path / "one", part_size=2, progress=False)
    for index in (1, 0):
        tokenize_dataset(tmp_path / "saved", codec, output=tmp_path / "two", part_size=2, num_shards=2,
                         shard_index=index, progress=False)
    both = load_tokenized(tmp_path / "two")
    assert both["text"] == whole["text"] == [f.stem for f in files]
    assert both["codes"] == whole["codes"] and both["duration"] == whole["duration"]
    assert (tmp_path / "two" / "shard-00001-of-00002" / "part-00001").is_dir()  # 3 + 4 rows, 2 per part


def test_launched_processes_take_their_share_by_default(tmp_path, folder, codec, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets them for the second of two processes
    monkeypatch.setenv("RANK", "1")
    ds = tokenize_dataset(folder, codec, output=tmp_path / "out", progress=False)
    assert [p.name for p in (tmp_path / "out").glob("shard-*")] == ["shard-00001-of-00002"]
    assert ds["file_name"] == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.wav"))[3:]


def test_iterable_dataset_in_two_shards_equals_map_style(tmp_path, folder, codec):
    files = sorted(folder.rglob("*.wav"))
    source = Dataset.from_dict({"audio": [str(f) for f in files]}, features=Features({"audio": Audio()}))
    whole = tokenize_dataset(source, codec, progress=False, output=tmp_path / "map")
    stream = source.to_iterable_dataset(num_shards=3)
    for index in range(2):
        tokenize_dataset(stream, codec, output=tmp_path / "it", num_shards=2, shard_index=index, part_size=2,
                         progress=False)
    assert load_tokenized(tmp_path / "it")["codes"] == whole["codes"]
    shard = tmp_path / "it" / "shard-00000-of-00002"  # a stream resumes after its finished parts too
    parts = sorted(shard.glob("part-*"))
    assert len(parts) == 3  # two source shards of the three: 5 rows
    (shard / "done.json").unlink()
    shutil.rmtree(parts[-1])
    tokenize_dataset(stream, codec, output=tmp_path / "it", num_shards=2, shard_index=0, part_size=2, progress=False)
    assert load_tokenized(tmp_path / "it")["codes"] == whole["codes"]
    with pytest.raises(TokenizeError, match="3 source shards"):
        tokenize_dataset(stream, codec, output=tmp_path / "it4", num_shards=4, shard_index=0, progress=False)


def test_audiofolder_with_metadata_csv(tmp_path, folder, codec, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    (folder / "metadata.csv").write_text(
        "file_name,text,voice\nclip1.wav,hello there,v1\nsub/clip3.wav,general kenobi,v2\nclip2.wav,,v3\n")
    with pytest.warns(UserWarning, match="4 audio files .* no row in its metadata"):
        ds = tokenize_dataset(folder, codec, output=tmp_path / "out", progress=False)
    rows = {row["file_name"]: row for row in ds}
    assert set(rows) == {"clip1.wav", "sub/clip3.wav", "clip2.wav"}
    assert rows["sub/clip3.wav"]["text"] == "general kenobi" and rows["sub/clip3.wav"]["voice"] == "v2"
    assert rows["clip2.wav"]["text"] == ""
    assert torch.equal(_codes(rows["sub/clip3.wav"]), _alone(codec, folder / "sub" / "clip3.wav"))


def test_killed_run_resumes_without_re_encoding_finished_parts(tmp_path, folder, codec, monkeypatch):
    reference = tokenize_dataset(folder, codec, output=tmp_path / "ref", batch_size=2, part_size=3, progress=False)
    calls = []
    real_encode = codec.encode

    def dying_encode(wav, *args, **kwargs):
        calls.append(wav.shape[0])
        if sum(calls) > 3:  # the first part (3 files) is done, then the process "dies"
            raise KeyboardInterrupt
        return real_encode(wav, *args, **kwargs)

    monkeypatch.setattr(codec, "encode", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        tokenize_dataset(folder, codec, output=tmp_path / "out", batch_size=2, part_size=3, progress=False)
    shard = tmp_path / "out" / "shard-00000-of-00001"
    assert [p.name for p in shard.iterdir()] == ["part-00000"]  # no temporary folder, no done.json
    with pytest.raises(TokenizeError, match="shard-00000-of-00001 .1 parts written"):
        load_tokenized(tmp_path / "out")
    first_part = (shard / "part-00000" / "data-00000-of-00001.arrow").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(codec, "encode", lambda wav, *a, **k: calls.append(wav.shape[0]) or real_encode(wav, *a, **k))
    resumed = tokenize_dataset(folder, codec, output=tmp_path / "out", batch_size=2, part_size=3, progress=False)
    assert sum(calls) == len(LENGTHS_16K) - 3  # only the unfinished files were encoded
    assert (shard / "part-00000" / "data-00000-of-00001.arrow").stat().st_mtime_ns == first_part
    assert resumed["codes"] == reference["codes"] and resumed["file_name"] == reference["file_name"]
    calls.clear()
    tokenize_dataset(folder, codec, output=tmp_path / "out", batch_size=2, part_size=3, progress=False)
    assert calls == []  # a finished output is not touched again
    with pytest.raises(TokenizeError, match="part_size differ"):
        tokenize_dataset(folder, codec, output=tmp_path / "out", part_size=4, progress=False)


def test_corrupt_empty_and_short_files_are_skipped_and_reported(tmp_path, folder, codec):
    (folder / "broken.wav").write_bytes(b"RIFF" + bytes(100))
    (folder / "notes.mp3").write_bytes(b"this is not audio")
    sf.write(folder / "empty.wav", np.zeros((0, 1)), 16000)
    sf.write(folder / "tiny.wav", np.zeros((10, 1)), 16000)  # 5 samples at 8 kHz, less than one frame (8)
    with pytest.warns(UserWarning, match="skipped 4 of 11 examples"):
        ds = tokenize_dataset(folder, codec, output=tmp_path / "out", part_size=4, progress=False)
    assert len(ds) == len(LENGTHS_16K) and "broken.wav" not in ds["file_name"]
    report = json.loads((tmp_path / "out" / "tokenize_report.json").read_text())
    assert report["total"] == 11 and report["encoded"] == 7 and report["num_skipped"] == 4 and report["complete"]
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"broken.wav", "notes.mp3", "empty.wav", "tiny.wav"}
    assert "cannot decode" in reasons["broken.wav"] and "too short: 5 samples" in reasons["tiny.wav"]
    assert "no audio samples" in reasons["empty.wav"]
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert all(names[s["index"]] == s["path"].split("audio/", 1)[1] for s in report["skipped"])
    assert report["audio_hours"] == pytest.approx(sum(ds["duration"]) / 3600)


def test_codec_metadata_survives_save_and_load(tmp_path, folder, codec):
    ds = tokenize_dataset(folder, codec, output=tmp_path / "out", num_codebooks=3, progress=False)
    ds.save_to_disk(tmp_path / "copy")
    for loaded in (datasets.load_from_disk(tmp_path / "copy"), load_tokenized(tmp_path / "out")):
        meta = read_codec_metadata(loaded)
        assert meta["fingerprint"] == codec.fingerprint and meta["num_codebooks"] == 3
        assert meta["sample_rate"] == 8000 and meta["frame_rate"] == 1000.0 and meta["codebook_size"] == 32
        assert meta["codec_num_codebooks"] == 4 and meta["name"] == codec.config.name
        assert np.array(loaded[0]["codes"]).shape[0] == 3
    with pytest.raises(TokenizeError, match="no rvqaudio codec metadata"):
        read_codec_metadata(Dataset.from_dict({"a": [1]}))


def test_two_workers_give_the_same_result(tmp_path, folder, codec):
    one = tokenize_dataset(folder, codec, batch_size=2, part_size=3, progress=False)
    two = tokenize_dataset(folder, codec, output=tmp_path / "out", batch_size=2, part_size=3, num_proc=2,
                           progress=False)
    assert two["codes"] == one["codes"] and two["file_name"] == one["file_name"]


def test_long_files_are_encoded_alone_and_in_chunks(tmp_path, folder, monkeypatch):
    codec = _codec(chunk_seconds=0.2)  # clips longer than 0.2 s are chunked inside encode
    batches = []
    real_encode = codec.encode
    monkeypatch.setattr(codec, "encode", lambda wav, *a, **k: batches.append(wav.shape) or real_encode(wav, *a, **k))
    ds = tokenize_dataset(folder, codec, batch_size=8, progress=False)
    long_files = sum(n / 2 > 0.2 * 8000 for n in LENGTHS_16K)
    assert len(batches) == long_files + 1 and all(shape[0] == 1 for shape in batches[:long_files])
    for row in ds:
        assert torch.equal(_codes(row), _alone(codec, folder / row["file_name"]))


def test_non_causal_codec_batches_only_equal_lengths(tmp_path, folder):
    codec = _codec(causal=False)  # right padding would change the last frames of a non-causal codec
    _write(folder / "twin.wav", LENGTHS_16K[1], seed=99)
    ds = tokenize_dataset(folder, codec, batch_size=8, progress=False)
    for row in ds:
        assert torch.equal(_codes(row), _alone(codec, folder / row["file_name"])), row["file_name"]


def test_bad_arguments_speak_to_the_user(tmp_path, folder, codec):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizeError, match="no audio files"):
        tokenize_dataset(tmp_path / "empty", codec)
    with pytest.raises(TokenizeError, match="needs shard_index"):
        tokenize_dataset(folder, codec, output=tmp_path / "o", num_shards=2)
    with pytest.raises(TokenizeError, match="num_codebooks must be an integer in \\[1, 4\\]"):
        tokenize_dataset(folder, codec, num_codebooks=5)
    source = Dataset.from_dict({"audio": [str(next(folder.glob("*.wav")))], "codes": [1]},
                               features=Features({"audio": Audio(), "codes": Value("int64")}))
    with pytest.raises(TokenizeError, match="already has a 'codes' column"):
        tokenize_dataset(source, codec)
    with pytest.raises(TokenizeError, match="not a tokenize_dataset output"):
        load_tokenized(tmp_path)
