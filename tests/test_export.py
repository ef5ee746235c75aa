"""The codec exported to ONNX (`tokenizer.export`, `rvqaudio export`) computes in onnxruntime what it computes in
PyTorch: the encoder the very same codes, the decoder the same samples within DECODER_ATOL (on signals where no
frame's f0 lies within float32 rounding of a step of a pitch-phase decoder's 1/16 Hz grid)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from pipelines import cli
from tokenizer import CodecConfig, RVQCodec
from tokenizer.export import (DECODER_FILE, DESCRIPTION_FILE, ENCODER_FILE, ExportError, check_signal, export_onnx,
                              onnx_runner)

# Largest |onnxruntime - PyTorch| of a decoded sample (full scale 1). Measured on 1.5 s of check_signal: 3.5e-6 for
# the bundled codec's decoder, 4.0e-6 for its speech decoder; 8e-5 for the tiny pitch-phase codec below (float32
# sums taken in another order, and a harmonic source whose phase carries them along).
DECODER_ATOL = 3e-4
# The bundled speech decoder's learned residual over the source's phase in voiced frames carries that rounding
# further: in a few frames of a signal its samples differ by up to ~2e-3 (measured: 1.1e-3 on the 1.5 s below, in 5
# of 111 frames, 2.1e-5 on average; 2.0e-3 on 3 s; 1e-6 to 1e-5 on 1, 1.25 and 2 s), as the others' elsewhere.
SPEECH_DECODER_ATOL = 3e-3
SPEECH_DECODER_MEAN_ATOL = 1e-4


def _tiny(spectral: bool) -> RVQCodec:
    """A tiny codec whose codebooks are initialised from a tone (k-means), so that its codes are not all alike:
    SEANet, or the spectral pair with a pitch-phase decoder (harmonic source, its phase at voicing edges too)."""
    config = dict(sample_rate=8000, n_filters=4, strides=[2, 5, 8] if spectral else [2, 4], dimension=16,
                  quantizer=dict(num_codebooks=4, codebook_size=32, kmeans_iters=5))
    if spectral:
        config["causal"] = False
        config["spectral"] = dict(dim=32, hidden_dim=64, num_layers=2, n_fft=320, pitch_phase=True, edge_phase=True,
                                  edge_offsets=False)
    torch.manual_seed(0)
    codec = RVQCodec(CodecConfig.from_dict(config))
    with torch.no_grad():
        codec.train()(check_signal(8000, 1, seconds=1.0))
    return codec.eval()


def _compare(codec: RVQCodec, folder, wav: torch.Tensor) -> float:
    """Codes of `wav` (B, C, N) from encoder.onnx equal to `encode`'s, and the largest difference of decoder.onnx's
    samples from `decode`'s for those codes."""
    return float(_differences(codec, folder, wav).max())


def _differences(codec: RVQCodec, folder, wav: torch.Tensor) -> torch.Tensor:
    """|decoder.onnx's samples - `decode`'s| (B, C, N) for the codes of `wav`, which encoder.onnx gives as `encode`
    does."""
    encoder, decoder = onnx_runner(folder / ENCODER_FILE), onnx_runner(folder / DECODER_FILE)
    codes = codec.encode(wav)
    onnx_codes = torch.from_numpy(encoder.run(None, {"waveform": wav.numpy()})[0])
    frames = math.ceil(wav.shape[-1] / codec.hop_length)
    assert onnx_codes.shape == codes.shape == (wav.shape[0], codec.num_codebooks, frames)
    assert torch.equal(onnx_codes, codes)
    audio = torch.from_numpy(decoder.run(None, {"codes": codes.numpy()})[0])
    expected = codec.decode(codes)
    assert audio.shape == expected.shape
    return (audio - expected).abs()


def _compare_on_signals(codec: RVQCodec, folder) -> None:
    """Batch and length are dynamic: two items of a length that is not a whole number of frames, and a short one."""
    signal = check_signal(codec.sample_rate, 1, seconds=1.5)
    for wav in (torch.cat([signal, 0.5 * signal.flip(-1)])[..., :-37], signal[..., :5 * codec.hop_length]):
        assert _compare(codec, folder, wav) <= DECODER_ATOL


def test_a_tiny_seanet_codec_runs_in_onnxruntime_as_in_pytorch(tmp_path):
    codec = _tiny(spectral=False)
    folder = export_onnx(codec, tmp_path / "onnx", check=False)
    _compare_on_signals(codec, folder)
    description = json.loads((folder / DESCRIPTION_FILE).read_text())
    assert description["sample_rate"] == codec.sample_rate and description["hop_length"] == codec.hop_length
    assert description["encoder"]["outputs"][0]["shape"] == ["batch", codec.num_codebooks, "frames"]
    assert description["check"] is None


def test_the_command_writes_a_pitch_phase_codec_that_runs_in_onnxruntime_as_in_pytorch(tmp_path):
    codec = _tiny(spectral=True)
    codec.save_pretrained(tmp_path / "codec")
    assert cli.main(["export", "--codec", str(tmp_path / "codec"), "-o", str(tmp_path / "onnx")]) == 0
    folder = tmp_path / "onnx"
    assert sorted(p.name for p in folder.iterdir()) == sorted([DECODER_FILE, ENCODER_FILE, DESCRIPTION_FILE])
    check = json.loads((folder / DESCRIPTION_FILE).read_text())["check"]
    assert check["codes_equal"] == 1.0 and check["decoder_max_abs"] <= DECODER_ATOL
    _compare_on_signals(RVQCodec.from_pretrained(tmp_path / "codec"), folder)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [None, "speech"])
def test_the_bundled_codec_runs_in_onnxruntime_as_in_pytorch(tmp_path, variant):
    from pipelines.defaults import default_codec

    codec = default_codec(variant)
    folder = export_onnx(codec, tmp_path / "onnx")
    check = json.loads((folder / DESCRIPTION_FILE).read_text())["check"]
    # The export's own check (2 s of check_signal): codes equal; samples within "a few 1e-2" (tokenizer.export's
    # docstring: the speech decoder's f0 steps to a neighbouring 1/16 Hz grid point there, 1.2e-2 from frame 40 on)
    assert check["codes_equal"] == 1.0 and check["decoder_max_abs"] <= 5e-2
    # another length, and no frame here whose f0 float32 rounding puts on another step of the source's 1/16 Hz
    # grid: after such a frame the source's phase differs by ~0.02 rad
    differences = _differences(codec, folder, check_signal(codec.sample_rate, 1, seconds=1.5)[..., :-500])
    if variant is None:
        assert differences.max() <= DECODER_ATOL
    else:
        assert differences.max() <= SPEECH_DECODER_ATOL and differences.mean() <= SPEECH_DECODER_MEAN_ATOL


def test_export_onnx_takes_a_codec(tmp_path):
    with pytest.raises(ExportError, match="takes an RVQCodec"):
        export_onnx(str(tmp_path), tmp_path / "onnx")


def test_the_command_refuses_an_output_it_cannot_write_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["export", "-o", str(blocker / "onnx")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_the_command_names_the_variants_there_are(tmp_path, capsys):
    assert cli.main(["export", "--variant", "nonesuch", "-o", str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err
    assert "'nonesuch'" in err and "speech" in err
    assert not (tmp_path / "onnx").exists()


def test_the_command_without_the_export_extra_names_the_pip_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert cli.main(["export", "-o", str(tmp_path / "onnx")]) == 2
    assert 'pip install "rvqaudio[export]"' in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()
