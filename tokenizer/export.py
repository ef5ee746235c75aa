"""The codec as two ONNX graphs, for runtimes without PyTorch (`pip install "rvqaudio[export]"`).

    folder/encoder.onnx   waveform float32 [B, C, N]  -> codes int64 [B, K, T], T = ceil(N / hop_length)
    folder/decoder.onnx   codes int64 [B, K, T]        -> waveform float32 [B, C, T * hop_length]
    folder/onnx.json      inputs, outputs, sample rate, hop, opset, and the check against PyTorch

Batch and length are dynamic; C (channels) and K (all the codec's codebooks) are fixed. Each graph runs in one pass
over the whole input (the PyTorch codec encodes and decodes long inputs in chunks of `chunk_seconds`), so memory
grows with the length.

The model's code is exported as it is, with two kinds of help: while tracing, a few functions that export badly
are traced as others that give the same values (`_ExportableOps`: max_pool1d, whose length the exporter would fix;
float32 DFTs and float64 linear interpolation, which onnxruntime computes less precisely); and after it,
onnxruntime's missing float64 `Atan` (the phase of a pitch-phase decoder's float64 harmonic source) becomes a
float32 `Atan` refined by one Newton step in float64, as exact as float64's own.

How close: the encoder gives the same codes (a code could differ only where two codes are within float32 rounding
of a tie). The decoder's samples are within ~1e-5 of PyTorch's, except after a frame where float32 rounding, summed
in another order, moves a pitch-phase decoder's f0 across a step of its 1/16 Hz grid: the harmonic source's phase
is then ~0.02 rad off from there on and samples up to a few 1e-2 (measured on `check_signal`: the bundled decoder
1e-5 on 1 to 3 s, 3.6e-2 on 10 s; its speech decoder 1e-6 to 1e-5 on 1, 1.25 and 2 s (the length `export_onnx`
checks) and 7e-4 to 2e-3 on 1.5, 1.75 and 3 s, in a few frames where its voiced residual carries the sums' rounding).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .checkpoint import atomic_folder
from .errors import CodecError
from .extras import import_extra
from .model import RVQCodec

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
DESCRIPTION_FILE = "onnx.json"
MAX_BATCH = 1024  # the exporter needs bounds for a dynamic axis; these are far beyond any real use
MAX_FRAMES = 1_000_000  # 3.7 hours at the bundled codec's 75 Hz
CHECK_SECONDS = 2.0  # the test signal the exported graphs are compared with PyTorch on


class ExportError(CodecError):
    """The codec cannot be exported to ONNX, or onnxruntime cannot run an exported graph."""


@dataclass
class ExportCheck:
    """Exported graphs against PyTorch on a test signal (`CHECK_SECONDS` of a harmonic chirp): the share of codes
    that agree and the largest difference of decoded samples (full scale 1)."""

    seconds: float
    codes_equal: float  # share of the codes (B, K, T) equal to `RVQCodec.encode`'s
    decoder_max_abs: float  # max |onnx - RVQCodec.decode| over the samples decoded from the same codes


class _Encoder(nn.Module):
    """waveform (B, C, N) -> codes (B, K, T): `RVQCodec.encode` without its checks, resampling and chunking."""

    def __init__(self, codec: RVQCodec):
        super().__init__()
        self.encoder, self.quantizer, self.hop = codec.encoder, codec.quantizer, codec.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        n = waveform.shape[-1]
        waveform = F.pad(waveform, (0, (self.hop - n % self.hop) % self.hop))  # to whole frames, as encode pads
        return self.quantizer.encode(self.encoder(waveform))


class _Decoder(nn.Module):
    """codes (B, K, T) -> waveform (B, C, T * hop): `RVQCodec.decode` without its checks and chunking."""

    def __init__(self, codec: RVQCodec):
        super().__init__()
        self.quantizer, self.decoder = codec.quantizer, codec.decoder

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.decode(codes))


class _ExportableOps(TorchFunctionMode):
    """While tracing, functions that export badly are traced as others that give the same values (`_REPLACEMENTS`;
    each returns None for arguments it does not cover, which are then traced as they are)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        replacement = _REPLACEMENTS.get(func)
        out = None if replacement is None else replacement(*args, **kwargs)
        return func(*args, **kwargs) if out is None else out


def _max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
                **others):
    """As max_pool2d over a unit axis (the same maxima): the exporter fixes the length of max_pool1d's input to the
    example's, which would fix the decoder's length."""
    if _single(dilation) != 1 or ceil_mode or return_indices or any(others.values()):
        return None
    kernel = _single(kernel_size)
    stride, padding = _single(stride or kernel), _single(padding)
    return F.max_pool2d(input[..., None, :], (1, kernel), (1, stride), (0, padding))[..., 0, :]


def _stft(input, n_fft, hop_length=None, win_length=None, window=None, center=True, pad_mode="reflect",
          normalized=False, onesided=None, return_complex=None, **others):
    """A float32 STFT (the encoder's) as a strided convolution with the windowed DFT basis computed in float64:
    onnxruntime's float32 DFT of a length that is not a power of two (1280) is ~100x less precise (measured: 2e-3
    off in magnitudes up to 80), and the encoder's log-magnitudes of faint bins magnify that into other codes."""
    plain = (input.dtype == torch.float32 and input.dim() == 2 and window is not None and center is False
             and not normalized and onesided is not False and return_complex and win_length in (None, n_fft)
             and not any(others.values()))
    return _stft_as_convolution(input, n_fft, hop_length or n_fft // 4, window) if plain else None


def _irfft(input, n=None, dim=-1, norm=None, **others):
    """A float32 inverse real DFT (the decoder's) as a product with its basis computed in float64, for the same
    reason as `_stft`."""
    plain = (input.dtype == torch.complex64 and isinstance(n, int) and n % 2 == 0 and norm in (None, "backward")
             and not any(others.values()))
    return _irfft_as_product(input, n, dim) if plain else None


def _interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, antialias=False, **others):
    """float64 linear interpolation (a pitch-phase decoder's f0 to the sample rate) with the source positions in
    float64: onnxruntime's Resize computes them in float32, which put the harmonic source's phase ~1e-3 off after
    a few seconds (measured: a tiny pitch-phase codec's samples 5e-3 off; 8e-5 with this)."""
    plain = (input.dtype == torch.float64 and input.dim() == 3 and mode == "linear" and not align_corners
             and isinstance(size, (int, torch.SymInt)) and not antialias and not any(others.values()))
    return _linear_interpolation(input, size) if plain else None


_REPLACEMENTS = {F.max_pool1d: _max_pool1d, torch.max_pool1d: _max_pool1d, torch.stft: _stft,
                 torch.fft.irfft: _irfft, F.interpolate: _interpolate}


def _single(value: Any) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def _linear_interpolation(x: torch.Tensor, size: int) -> torch.Tensor:
    """`F.interpolate(x, size, mode="linear", align_corners=False)` of float64 x (M, C, L) -> (M, C, size)."""
    length = x.shape[-1]
    # the scale as a float64 tensor: a Python division of the symbolic lengths would be exported in float32
    scale = torch.full((), length, dtype=torch.float64, device=x.device) / torch.full((), size, dtype=torch.float64,
                                                                                      device=x.device)
    position = ((torch.arange(size, dtype=torch.float64, device=x.device) + 0.5) * scale - 0.5).clamp(min=0)
    lo = position.floor().long().clamp(max=length - 1)
    hi = (lo + 1).clamp(max=length - 1)
    weight = position - lo.to(torch.float64)
    return x[..., lo] * (1 - weight) + x[..., hi] * weight


def _irfft_as_product(spec: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """`torch.fft.irfft(spec, n, dim)` for even n: the real inverse DFT along `dim` as a product with its basis,
    each bin between the edges counted twice for its conjugate, the imaginary parts of the edge bins ignored."""
    bins = n // 2 + 1
    k, t = torch.arange(bins, dtype=torch.float64)[None], torch.arange(n, dtype=torch.float64)[:, None]
    angle = (k * t % n) * (2 * math.pi / n)
    weight = torch.full((bins,), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0
    cos, sin = (angle.cos() * weight / n).float(), (-angle.sin() * weight / n).float()  # (n, bins)
    spec = spec.movedim(dim, -1)  # (..., bins): the product runs over the last axis
    out = torch.real(spec) @ cos.t() + torch.imag(spec) @ sin.t()  # (..., n)
    return out.movedim(-1, dim)


def _stft_as_convolution(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """`torch.stft(x, n_fft, hop, window=window, center=False, return_complex=True)`: (M, N) -> complex
    (M, n_fft // 2 + 1, frames), as one convolution with the real and imaginary windowed DFT basis."""
    bins = n_fft // 2 + 1
    k, n = torch.arange(bins, dtype=torch.float64)[:, None], torch.arange(n_fft, dtype=torch.float64)[None]
    angle = (k * n % n_fft) * (2 * math.pi / n_fft)  # k n reduced exactly before the angle is formed
    w = window.detach().double()
    basis = torch.cat([angle.cos() * w, -angle.sin() * w]).to(x.dtype)[:, None]  # (2 * bins, 1, n_fft)
    out = F.conv1d(x[:, None], basis, stride=hop)  # (M, 2 * bins, frames)
    return torch.complex(out[:, :bins], out[:, bins:])


def export_onnx(codec: RVQCodec, folder: str | os.PathLike, opset: int | None = None,
                check: bool = True) -> Path:
    """Write `codec`'s encoder and decoder to `folder` as ONNX graphs (`encoder.onnx`, `decoder.onnx`) with
    `onnx.json` describing them, atomically: a failure leaves an existing `folder` as it was.

    Args:
        codec: the codec to export (moved to the CPU in float32 for tracing; the codec itself is not changed).
        folder: where to write; created, or replaced when it exists.
        opset: the ONNX opset (default: the exporter's own).
        check: run both graphs in onnxruntime on `CHECK_SECONDS` of a test signal and record in onnx.json how
            close they come to PyTorch (`ExportCheck`); ExportError when onnxruntime cannot run one.

    Returns the folder. Needs the `export` extra (onnx, onnxscript, onnxruntime).
    """
    onnx = import_extra("onnx", "export", "exporting the codec to ONNX")
    import_extra("onnxscript", "export", "exporting the codec to ONNX")
    if check:
        import_extra("onnxruntime", "export", "checking the exported ONNX graphs")
    if not isinstance(codec, RVQCodec):
        raise ExportError(f"export_onnx takes an RVQCodec, got {type(codec).__name__}; load a codec folder with "
                          "RVQCodec.from_pretrained")
    model = RVQCodec.from_state_dict(codec.config.to_dict(), codec.state_dict(), "the codec to export").eval()
    hop, k = model.hop_length, model.num_codebooks
    frames = 8 + model.decoder_context  # an example longer than the receptive field, so nothing is traced at an edge
    waveform = torch.zeros(2, model.channels, frames * hop)
    codes = torch.zeros(2, k, frames, dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    length = torch.export.Dim("frames", min=2, max=MAX_FRAMES)
    graphs = {
        ENCODER_FILE: _export(_Encoder(model), waveform, "waveform", "codes",
                              {0: batch, 2: torch.export.Dim("samples", min=2, max=MAX_FRAMES * hop)}, opset),
        DECODER_FILE: _export(_Decoder(model), codes, "codes", "waveform", {0: batch, 2: length}, opset),
    }
    graphs = {name: _float64_atan_in_float32(graph) for name, graph in graphs.items()}
    result = _check(model, graphs) if check else None
    description = _describe(model, graphs, result)
    with atomic_folder(folder) as tmp:
        for name, graph in graphs.items():
            onnx.save_model(graph, str(tmp / name))
        (tmp / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return Path(folder)


def _export(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str,
            dynamic: dict[int, Any], opset: int | None):
    """One adapter traced with the dynamo exporter -> onnx.ModelProto with dynamic `dynamic` axes."""
    try:
        with torch.no_grad(), _ExportableOps(), _quiet_exporter():
            program = torch.onnx.export(module.eval(), (example,), dynamo=True, dynamic_shapes=(dynamic,),
                                        input_names=[input_name], output_names=[output_name], opset_version=opset,
                                        verbose=False, optimize=True)
    except Exception as e:  # the exporter raises many types; say which graph failed and why
        lines = str(e).splitlines()
        # the exporter's message states the cause on a line of its own after pages of advice
        cause = next((line for line in lines if line.startswith("<class ")), lines[0] if lines else type(e).__name__)
        raise ExportError(f"torch.onnx.export could not export the codec's {type(module).__name__[1:].lower()}: "
                          f"{cause}") from e
    return program.model_proto


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns, every time, of each torchvision operator it cannot register when torchvision is not
    installed; the codec uses none of them."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _float64_atan_in_float32(model):
    """`model` with every float64 Atan (which onnxruntime lacks) computed as a float32 Atan refined by one Newton
    step in float64: with t0 = atan(float32(z)) and c, s its cosine and sine, atan(z) = t0 + atan(r), where
    r = (z c - s) / (c + z s) = tan(atan(z) - t0) is below 1e-6, so atan(r) = r to float64 precision. For |z| > 1
    numerator and denominator are divided by z, so that z = inf gives pi / 2 too."""
    onnx = import_extra("onnx", "export", "exporting the codec to ONNX")
    from onnx import TensorProto, helper, numpy_helper

    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    nodes, count = [], 0
    for node in model.graph.node:
        if not (node.op_type == "Atan" and node.domain in ("", "ai.onnx")
                and types.get(node.input[0]) == TensorProto.DOUBLE):
            nodes.append(node)
            continue
        z, out, p = node.input[0], node.output[0], f"_atan64_{count}_"
        count += 1

        def op(kind: str, inputs: list[str], output: str, **attrs: Any):
            return helper.make_node(kind, [i if i == z else p + i for i in inputs], [p + output], **attrs)

        one = numpy_helper.from_array(np.array(1.0, dtype=np.float64))
        nodes += [
            op("Cast", [z], "z32", to=TensorProto.FLOAT), op("Atan", ["z32"], "t32"),
            op("Cast", ["t32"], "t0", to=TensorProto.DOUBLE), op("Cos", ["t0"], "c"), op("Sin", ["t0"], "s"),
            op("Constant", [], "one", value=one), op("Abs", [z], "abs"), op("LessOrEqual", ["abs", "one"], "small"),
            op("Div", ["one", z], "w"),
            op("Mul", [z, "c"], "zc"), op("Sub", ["zc", "s"], "num_small"),  # |z| <= 1: (z c - s) / (c + z s)
            op("Mul", [z, "s"], "zs"), op("Add", ["c", "zs"], "den_small"),
            op("Mul", ["w", "s"], "ws"), op("Sub", ["c", "ws"], "num_large"),  # |z| > 1: (c - s / z) / (c / z + s)
            op("Mul", ["w", "c"], "wc"), op("Add", ["wc", "s"], "den_large"),
            op("Where", ["small", "num_small", "num_large"], "num"),
            op("Where", ["small", "den_small", "den_large"], "den"),
            op("Div", ["num", "den"], "r"),
            helper.make_node("Add", [p + "t0", p + "r"], [out], name=node.name or p + "out"),
        ]
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    for function in model.functions:  # the exporter inlines its functions; one left here would keep a float64 Atan
        if any(n.op_type == "Atan" for n in function.node):
            raise ExportError(f"the exported graph keeps an Atan inside the ONNX function {function.name!r}, whose "
                              "type cannot be told here; onnxruntime has no float64 Atan")
    return model


def check_signal(sample_rate: int, channels: int, seconds: float = CHECK_SECONDS) -> torch.Tensor:
    """(1, channels, N) float32: a harmonic chirp (120 to 240 Hz, 12 partials) that pauses twice, with a little
    noise; voiced, unvoiced and silent frames, so that a pitch-phase decoder takes each of its paths."""
    n = int(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 120 * 2 ** (t / seconds)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    voiced = sum(torch.sin(h * phase) / h for h in range(1, 13) if h * 240 < sample_rate / 2)
    gate = (torch.sin(2 * math.pi * t * 1.5 / seconds) > -0.5).double()
    noise = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    wav = 0.25 * voiced * gate + 0.01 * noise
    return wav.float().expand(1, channels, n).clone()


def _check(codec: RVQCodec, graphs: dict) -> ExportCheck:
    """Run both graphs in onnxruntime (one thread) on `check_signal` and compare them with PyTorch."""
    encoder, decoder = (onnx_runner(graphs[name].SerializeToString()) for name in (ENCODER_FILE, DECODER_FILE))
    wav = check_signal(codec.sample_rate, codec.channels)
    codes = codec.encode(wav)
    onnx_codes = torch.from_numpy(encoder.run(None, {"waveform": wav.numpy()})[0])
    audio = torch.from_numpy(decoder.run(None, {"codes": codes.numpy()})[0])
    return ExportCheck(seconds=CHECK_SECONDS, codes_equal=float((onnx_codes == codes).float().mean()),
                       decoder_max_abs=float((audio - codec.decode(codes)).abs().max()))


def onnx_runner(model: bytes | str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU InferenceSession of an exported graph (its bytes or its file) with `threads` intra-op threads;
    ExportError when onnxruntime cannot run it (e.g. an operator without a kernel for its type)."""
    ort = import_extra("onnxruntime", "export", "running the exported ONNX graphs")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types
        raise ExportError(f"onnxruntime {ort.__version__} cannot run the exported graph: {e}") from e


def _describe(codec: RVQCodec, graphs: dict, result: ExportCheck | None) -> dict:
    """What onnx.json says: the codec's figures, both graphs' inputs and outputs, the opset and the check."""
    opset = max(o.version for o in graphs[ENCODER_FILE].opset_import if o.domain in ("", "ai.onnx"))
    c, k = codec.channels, codec.num_codebooks
    waveform = {"name": "waveform", "dtype": "float32", "shape": ["batch", c, "samples"],
                "unit": "samples in [-1, 1] at sample_rate"}
    return {
        "codec": codec.config.name, "fingerprint": codec.fingerprint,
        "sample_rate": codec.sample_rate, "channels": c, "hop_length": codec.hop_length,
        "frame_rate": codec.frame_rate, "num_codebooks": k, "codebook_size": codec.codebook_size,
        "opset": opset, "torch": torch.__version__,
        "encoder": {"file": ENCODER_FILE, "inputs": [waveform],
                    "outputs": [{"name": "codes", "dtype": "int64", "shape": ["batch", k, "frames"]}],
                    "frames": "ceil(samples / hop_length): the input is zero-padded to whole frames"},
        "decoder": {"file": DECODER_FILE,
                    "inputs": [{"name": "codes", "dtype": "int64", "shape": ["batch", k, "frames"],
                                "unit": f"indices in [0, {codec.codebook_size - 1}], all {k} codebooks"}],
                    "outputs": [{**waveform, "shape": ["batch", c, "frames * hop_length"]}]},
        "check": None if result is None else asdict(result),
        "precision": "codes equal to PyTorch's; samples within ~1e-5, except after a frame where float32 rounding "
                     "moves a pitch-phase decoder's f0 across a step of its 1/16 Hz grid (then up to a few 1e-2)",
    }
