"""The mean of decoders that share their codes: what is averaged, what is kept, and what is refused."""

from __future__ import annotations

import pytest
import torch

from pipelines.cli import main
from tokenizer import CheckpointError, RVQCodec
from tokenizer.averaging import average_decoders

from .conftest import move_decoder, tiny_config, tone


def _fine_tunes(trained_codec: RVQCodec, tmp_path, n: int = 3) -> list:
    """`n` folders of `trained_codec` with the decoder moved differently in each: decoder fine-tunes' results."""
    folders = []
    for i in range(n):
        codec = RVQCodec(trained_codec.config)
        codec.load_state_dict(trained_codec.state_dict())
        move_decoder(codec, seed=i)
        folders.append(codec.save_pretrained(tmp_path / f"run{i}"))
    return folders


def test_the_decoder_is_the_mean_and_the_codes_are_kept(trained_codec, tmp_path):
    folders = _fine_tunes(trained_codec, tmp_path)
    states = [RVQCodec.from_pretrained(f).state_dict() for f in folders]
    mean = average_decoders(folders)
    for key, value in mean.state_dict().items():
        if key.startswith("decoder.") and value.is_floating_point():
            torch.testing.assert_close(value, sum(s[key] for s in states) / len(states))
        else:
            assert torch.equal(value, states[0][key]), key
    wav = tone(0.5)[None]
    assert torch.equal(mean.encode(wav), trained_codec.encode(wav))  # the same codes [B, K, T]


def test_the_mean_of_a_decoder_with_itself_decodes_as_it_does(trained_codec, tmp_path):
    folder = trained_codec.save_pretrained(tmp_path / "one")
    mean = average_decoders([folder, folder])
    codes = trained_codec.encode(tone(0.5)[None])
    torch.testing.assert_close(mean.decode(codes), trained_codec.decode(codes))


def test_decoders_of_other_codes_or_another_config_are_refused(trained_codec, tmp_path):
    base, other = _fine_tunes(trained_codec, tmp_path, n=2)
    moved = RVQCodec.from_pretrained(other)
    with torch.no_grad():
        next(moved.encoder.parameters()).add_(0.01)
    with pytest.raises(CheckpointError, match="other codes.*encoder"):
        average_decoders([base, moved.save_pretrained(tmp_path / "moved_encoder")])
    torch.manual_seed(1)
    wider = RVQCodec(tiny_config(dimension=8)).save_pretrained(tmp_path / "wider")
    with pytest.raises(CheckpointError, match="config differs in \\['dimension'\\]"):
        average_decoders([base, wider])
    with pytest.raises(ValueError, match="at least two"):
        average_decoders([base])


def test_the_command_writes_a_codec_folder_that_loads(trained_codec, tmp_path, capsys):
    folders = _fine_tunes(trained_codec, tmp_path, n=2)
    out = tmp_path / "soup"
    assert main(["average-decoders", *map(str, folders), "-o", str(out), "--fp16"]) == 0
    assert "mean of 2 decoders" in capsys.readouterr().out
    loaded = RVQCodec.from_pretrained(out)
    torch.testing.assert_close(loaded.state_dict(), average_decoders(folders).state_dict(), atol=1e-3, rtol=1e-3)
    assert main(["average-decoders", str(folders[0]), "-o", str(tmp_path / "alone")]) == 2
    assert "at least two" in capsys.readouterr().err
