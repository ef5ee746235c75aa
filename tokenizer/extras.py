"""Optional dependencies, installed as extras: a command that needs one fails at once, naming the pip command.

    pip install "rvqaudio[eval]"   PESQ, STOI, the offline recogniser and WER (evaluation; PESQ as a training loss)
    pip install "rvqaudio[data]"   MIDI composition for the synthetic music recipe
    pip install "rvqaudio[lora]"   LoRA fine-tuning (peft)
    pip install "rvqaudio[demo]"   the local web page, `rvqaudio serve` (gradio)
    pip install "rvqaudio[export]" the codec as ONNX graphs, `rvqaudio export` (onnx, onnxscript, onnxruntime)
"""

from __future__ import annotations

import importlib
from types import ModuleType

# extra -> {module imported: package on PyPI}
EXTRAS: dict[str, dict[str, str]] = {
    "eval": {"pesq": "pesq", "pystoi": "pystoi", "pocketsphinx": "pocketsphinx", "jiwer": "jiwer",
             "torch_pesq": "torch-pesq"},
    "data": {"mido": "mido"},
    "lora": {"peft": "peft"},
    "demo": {"gradio": "gradio"},
    "export": {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime"},
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, which `extra` installs; MissingExtraError saying what needs it and what to run."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = EXTRAS.get(extra, {}).get(module, module)
        raise MissingExtraError(f"{purpose} needs the {package!r} package, which is not installed: "
                                f'pip install "rvqaudio[{extra}]"') from e


def require_extra(extra: str, purpose: str) -> None:
    """Import every module of `extra` now, so that a command fails before its work, not after it."""
    for module in EXTRAS[extra]:
        import_extra(module, extra, purpose)
