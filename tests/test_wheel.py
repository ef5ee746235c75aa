"""The installed package is complete: a wheel built from the checkout, installed into a fresh virtual environment,
generates music and speech and round-trips a file through the codec, run from outside the checkout."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a wheel is built from: the packages and the project files, without build outputs or virtual environments.
SOURCES = ("pyproject.toml", "README.md", "tokenizer", "lm", "pipelines")


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
          str(source)], cwd=source)
    (found,) = out.glob("rvqaudio-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_holds_every_bundled_model_file_and_no_reports(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pipelines" / "assets").rglob("*")
               if p.is_file() and "eval" not in p.relative_to(ROOT / "pipelines" / "assets").parts}
    assert bundled and bundled <= names, sorted(bundled - names)
    assert not [n for n in names if "/assets/eval/" in n]
    for module in ("lm/checkpoint.py", "tokenizer/state_files.py", "pipelines/cli.py"):
        assert module in names


@pytest.mark.slow
def test_the_installed_wheel_generates_and_round_trips_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    target = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=tmp_path).strip())
    # The dependencies come from the environment running the tests (torch etc. are installed once), as a plain
    # path: its .pth files (the checkout's editable install among them) are not read from there.
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (target / "rvqaudio_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
         cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([str(python), "-c", "import pipelines, lm, tokenizer; print(pipelines.__file__, lm.__file__, "
                  "tokenizer.__file__)"], cwd=tmp_path, env=env)
    assert str(ROOT) not in where and str(target) in where, where

    rvqaudio = str(venv / "bin" / "rvqaudio")
    _run([rvqaudio, "generate", "a calm piano melody", "--duration", "1", "--seed", "0", "-o", "music.wav",
          "--no-progress"], cwd=tmp_path, env=env)
    _run([rvqaudio, "generate", "Hello there.", "--task", "speech", "--duration", "2", "--seed", "0",
          "-o", "speech.wav", "--no-progress"], cwd=tmp_path, env=env)
    _run([rvqaudio, "encode", "music.wav", "-o", "music.npz"], cwd=tmp_path, env=env)
    _run([rvqaudio, "decode", "music.npz", "-o", "decoded.wav"], cwd=tmp_path, env=env)
    import soundfile as sf

    for name, seconds in (("music.wav", 1.0), ("speech.wav", None), ("decoded.wav", 1.0)):
        info = sf.info(str(tmp_path / name))
        assert info.frames > 0, name
        if seconds is not None:
            assert abs(info.frames / info.samplerate - seconds) < 0.05, (name, info.frames / info.samplerate)
