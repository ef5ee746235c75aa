"""Where results go is checked before any work, and the command line reports file-system refusals, wrong LM
folders and truncated inputs in one line (exit code 2), with nothing written."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import pipelines.codec_files as codec_files
from lm import AudioLM, AudioLMConfig, TextTokenizer
from pipelines.cli import main
from pipelines.defaults import save_lm
from pipelines.outputs import OutputError, check_output_file, check_output_folder

from .conftest import fitted_codec as _codec

generate_module = importlib.import_module("pipelines.generate_cli")  # what `rvqaudio generate` calls
UNWRITABLE = Path("/sys/rvqaudio-test")  # sysfs: read-only even for root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A codec folder, a 0.1 s wav, its codes file, and a self-contained tiny LM folder on that codec."""
    root = tmp_path_factory.mktemp("outputs")
    codec = _codec()
    codec.save_pretrained(root / "codec")
    t = np.arange(800) / 8000
    sf.write(root / "in.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 8000)
    codec_files.encode_file(root / "in.wav", root / "in.npz", codec=codec)
    texts = ["a calm piano melody", "drums and bass", "hello world", "an upbeat electronic track"] * 4
    text_tokenizer = TextTokenizer.train(texts, vocab_size=300, seed=0)
    config = AudioLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           max_text_tokens=64, max_audio_frames=40, condition_dropout=0.0)
    torch.manual_seed(0)
    save_lm(AudioLM.from_config(config, text_tokenizer, codec), codec, root / "lm")
    return {"root": root, "codec": root / "codec", "wav": root / "in.wav", "codes": root / "in.npz",
            "lm": root / "lm"}


def _unwritable() -> Path:
    if not UNWRITABLE.parent.is_dir():
        pytest.skip(f"no {UNWRITABLE.parent} here")
    try:
        UNWRITABLE.mkdir()
    except OSError:
        return UNWRITABLE
    UNWRITABLE.rmdir()
    pytest.skip(f"{UNWRITABLE.parent} is writable here")


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the codec is loaded, a codes file read, or generation started."""
    def refuse(*args, **kwargs):
        raise AssertionError("work was started before the output path was checked")
    monkeypatch.setattr(codec_files, "resolve_codec", refuse)
    monkeypatch.setattr(codec_files, "read_codes", refuse)
    monkeypatch.setattr(generate_module, "generate", refuse)
    monkeypatch.setattr(generate_module, "generate_stream", refuse)


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"rvqaudio {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# ---- outputs checked before any work ---------------------------------------------------------------------------

def _commands(files, out: str) -> dict[str, list[str]]:
    return {"encode": ["encode", str(files["wav"]), "-o", out, "--codec", str(files["codec"])],
            "decode": ["decode", str(files["codes"]), "-o", out, "--codec", str(files["codec"])],
            "generate": ["generate", "hi", "-o", out, "--model", str(files["lm"]), "--duration", "0.02",
                         "--no-progress"]}


@pytest.mark.parametrize("command", ["encode", "decode", "generate"])
def test_an_output_that_is_a_folder_is_refused_before_any_work(files, tmp_path, capsys, no_work, command):
    out = tmp_path / "out"
    out.mkdir()
    # generate -o FOLDER writes FOLDER/0.wav (its documented use): there, a folder in the way of 0.wav is the case
    folder = out / "0.wav" if command == "generate" else out
    folder.mkdir(exist_ok=True)
    assert main(_commands(files, str(out))[command]) == 2
    err = _one_line_error(capsys, command)
    assert repr(str(folder)) in err and "is a folder" in err
    assert list(tmp_path.iterdir()) == [out] and [p for p in out.rglob("*") if p != folder] == []


@pytest.mark.parametrize("command", ["encode", "decode", "generate"])
def test_an_unwritable_output_is_refused_before_any_work(files, capsys, no_work, command):
    target = _unwritable() / ("out.npz" if command == "encode" else "out.wav")
    assert main(_commands(files, str(target))[command]) == 2
    err = _one_line_error(capsys, command)
    assert repr(str(target)) in err and "not writable" in err and repr(str(target.parents[1])) in err
    assert not target.parent.exists()


def test_check_output_file_and_folder(tmp_path):
    assert check_output_file(tmp_path / "new" / "deeper" / "x.wav") == tmp_path / "new" / "deeper" / "x.wav"
    assert not (tmp_path / "new").exists()  # only checked: nothing created
    (tmp_path / "a_file").write_text("")
    assert check_output_file(tmp_path / "a_file") == tmp_path / "a_file"  # overwriting a file is fine
    with pytest.raises(OutputError, match=r"'.*a_file' is a file, not a folder"):
        check_output_file(tmp_path / "a_file" / "x.wav")
    with pytest.raises(OutputError, match=r"the codes file '.*' is a folder; give a file name"):
        check_output_file(tmp_path, "codes file")
    assert check_output_folder(tmp_path / "run") == tmp_path / "run"
    assert check_output_folder(tmp_path) == tmp_path
    with pytest.raises(OutputError, match=r"the output folder '.*a_file' is a file; give a folder"):
        check_output_folder(tmp_path / "a_file")
    unwritable = _unwritable()
    with pytest.raises(OutputError, match=r"the folder '/sys' is not writable .*choose another location"):
        check_output_folder(unwritable / "run")
    with pytest.raises(OutputError, match="not writable"):
        check_output_file(unwritable / "x.wav")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rvqaudio-write-check")]  # the probe is removed


def test_os_errors_and_interrupts_are_one_line(files, tmp_path, capsys, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/x.npz")
    monkeypatch.setattr(codec_files, "encode_file", denied)
    assert main(_commands(files, str(tmp_path / "x.npz"))["encode"]) == 2
    expected = "rvqaudio encode: error: cannot access '/data/x.npz': Permission denied\n"
    assert _one_line_error(capsys, "encode") == expected

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(codec_files, "encode_file", interrupted)
    assert main(_commands(files, str(tmp_path / "x.npz"))["encode"]) == 130
    assert capsys.readouterr().err == "rvqaudio encode: interrupted\n"


# ---- a wrong LM folder through the command line -----------------------------------------------------------------

def _copy_lm(files, tmp_path) -> Path:
    folder = tmp_path / "lm"
    shutil.copytree(files["lm"], folder)
    return folder


def test_generate_with_an_lm_folder_that_does_not_match_its_config_exits_2(files, tmp_path, capsys):
    folder = _copy_lm(files, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    out = tmp_path / "out.wav"
    assert main(["generate", "hi", "-o", str(out), "--model", str(folder), "--duration", "0.02", "--no-progress"]) == 2
    err = _one_line_error(capsys, "generate")
    assert repr(str(folder)) in err and "missing tensors" in err and "layers.2." in err
    assert not out.exists()


def test_generate_with_only_a_pickled_lm_exits_2_without_loading_it(files, tmp_path, capsys, monkeypatch):
    folder = _copy_lm(files, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04anything")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    out = tmp_path / "out.wav"
    assert main(["generate", "hi", "-o", str(out), "--model", str(folder), "--duration", "0.02", "--no-progress"]) == 2
    err = _one_line_error(capsys, "generate")
    assert "pytorch_model.bin" in err and "never loads" in err and not out.exists()


def test_generate_with_a_correct_tiny_lm_folder_writes_the_file(files, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["generate", "hi", "-o", str(out), "--model", str(files["lm"]), "--duration", "0.02",
                 "--no-progress", "--seed", "0"]) == 0
    assert sf.info(out).samplerate == 8000 and f"wrote {out}" in capsys.readouterr().out


# ---- truncated input through the command line -------------------------------------------------------------------

def test_encode_strict_refuses_a_truncated_input_and_writes_nothing(files, tmp_path, capsys):
    assert shutil.which("ffmpeg"), "ffmpeg is missing: run `make setup`"
    mp3 = tmp_path / "tone.mp3"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1:sample_rate=44100", "-c:a", "libmp3lame", str(mp3)], check=True)
    data = mp3.read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    out = tmp_path / "c.npz"
    command = ["encode", str(tmp_path / "cut.mp3"), "-o", str(out), "--codec", str(files["codec"])]
    assert main(command + ["--strict"]) == 2
    err = _one_line_error(capsys, "encode")
    assert "cut.mp3' looks truncated" in err and "refusing it (strict)" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp3", "tone.mp3"]
    with pytest.warns(UserWarning, match="looks truncated"):  # without --strict: the readable part, with a warning
        assert main(command) == 0
    assert out.is_file()


# ---- no progress bar with --no-progress --------------------------------------------------------------------------

def test_no_progress_prints_no_loading_or_progress_bar(tmp_path, capfd):
    from pipelines.defaults import default_codec, default_lm

    default_codec.cache_clear(), default_lm.cache_clear()  # so that the bundled models are loaded in this call
    try:
        out = tmp_path / "music.wav"
        command = ["generate", "a calm piano melody", "-o", str(out), "--duration", "0.2", "--seed", "0"]
        assert main(command + ["--no-progress"]) == 0
        captured = capfd.readouterr()
        assert "Loading weights" not in captured.err and "Loading weights" not in captured.out
        assert "it/s" not in captured.err and "%|" not in captured.err and "\r" not in captured.err
        assert captured.out == f"wrote {out} (0.20 s, full length, seed 0)\n"
        default_codec.cache_clear(), default_lm.cache_clear()
        assert main(command) == 0  # the guard of this test: without the flag, the bar is there and captured
        captured = capfd.readouterr()
        assert "generating" in captured.err and "Loading weights" not in captured.err
    finally:
        default_codec.cache_clear(), default_lm.cache_clear()
