"""Optional dependencies are extras: a command whose extra is missing fails at once, naming the pip command; a
stripped install without the bundled models says what to pass instead."""

from __future__ import annotations

import sys

import pytest

from pipelines import cli
from tokenizer.extras import EXTRAS, MissingExtraError, import_extra, require_extra


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_a_missing_extra_names_the_pip_command(monkeypatch, extra):
    module = next(iter(EXTRAS[extra]))
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=rf'pip install "rvqaudio\[{extra}\]"'):
        require_extra(extra, "this command")
    with pytest.raises(ImportError, match="this command needs"):
        import_extra(module, extra, "this command")


@pytest.mark.parametrize("argv, module", [
    (["eval-codec", "--data", "nowhere"], "pesq"),
    (["eval-tts", "--data", "nowhere"], "pocketsphinx"),
    (["eval-music", "--data", "nowhere", "--classifier", "nowhere"], "mido"),
])
def test_eval_commands_fail_before_any_work_without_their_extra(monkeypatch, capsys, tmp_path, argv, module):
    monkeypatch.setitem(sys.modules, module, None)
    assert cli.main(argv + ["-o", str(tmp_path / "report.json")]) == 2
    err = capsys.readouterr().err
    assert "pip install \"rvqaudio[" in err and err.count("\n") == 1, err
    assert not (tmp_path / "report.json").exists()


def test_the_pesq_loss_without_torch_pesq_names_the_extra(monkeypatch):
    from tokenizer.losses import PESQLoss

    monkeypatch.setitem(sys.modules, "torch_pesq", None)
    with pytest.raises(MissingExtraError, match=r'rvqaudio\[eval\]'):
        PESQLoss(16000)


def test_a_stripped_install_without_bundled_models_says_what_to_pass(monkeypatch, tmp_path):
    from pipelines import defaults

    monkeypatch.setattr(defaults, "DEFAULT_CODEC_DIR", tmp_path / "codec")
    monkeypatch.setattr(defaults, "DEFAULT_LM_DIR", tmp_path / "lm")
    defaults.default_codec.cache_clear()
    defaults.default_lm.cache_clear()
    try:
        with pytest.raises(ValueError, match="--codec DIR"):
            defaults.default_codec()
        with pytest.raises(ValueError, match="--model DIR"):
            defaults.default_lm("music")
    finally:
        defaults.default_codec.cache_clear()
        defaults.default_lm.cache_clear()
