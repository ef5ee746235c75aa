"""The models behind the page: an LM per task and a codec, loaded once, each with a lock so that one request at
a time runs on it; and the About text (the models in use, the bundled models' card)."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from lm import AudioLM
from tokenizer import CheckpointError, RVQCodec

from ..defaults import ASSETS, default_codec, default_lm, load_lm, resolve_codec
from ..generate import default_voice, voices

TASKS = ("music", "speech")
# The model card's sections shown on the About tab: what the models are, their figures, their limits.
CARD_SECTIONS = ("Model details", "Evaluation", "Limitations and biases")


@dataclass
class Models:
    """lms: {task: AudioLM carrying its codec} for the tasks available; codec: the codec of the Codec tab;
    sources: {"music" | "speech" | "codec": folder, or "bundled"}; locks: one per model."""

    lms: dict[str, AudioLM]
    codec: RVQCodec
    sources: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)  # task -> why it is not available
    locks: dict[str, threading.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.locks = {name: threading.Lock() for name in (*self.lms, "codec")}

    def voices(self) -> tuple[list[str], str | None]:
        """The speech LM's voices and its default ([], None without a speech LM or voices)."""
        lm = self.lms.get("speech")
        if lm is None:
            return [], None
        return voices(lm), default_voice(lm)


def load_models(model_music: str | os.PathLike | None = None, model_speech: str | os.PathLike | None = None,
                codec: str | os.PathLike | None = None) -> Models:
    """Load the LMs (a self-contained LM folder, or the bundled LM of the task) and the codec (a codec folder, or
    the bundled codec). A folder that fails to load is an error; a missing bundled model leaves its tab out."""
    lms, sources, missing = {}, {}, {}
    for task, folder in zip(TASKS, (model_music, model_speech)):
        if folder is not None:
            lms[task], sources[task] = load_lm(folder), str(folder)
            continue
        try:
            lms[task], sources[task] = default_lm(task), "bundled"
        except CheckpointError as exc:
            missing[task] = str(exc)
    if not lms:
        raise ValueError(f"no LM to generate with: {'; '.join(missing.values())}")
    codec_model = resolve_codec(codec) if codec is not None else default_codec()
    sources["codec"] = str(codec) if codec is not None else "bundled"
    return Models(lms=lms, codec=codec_model, sources=sources, missing=missing)


def about_markdown(models: Models) -> str:
    """The About tab: a table of the models in use, then the bundled models' card (its main sections)."""
    rows = ["| model | from | rates | parameters |", "| --- | --- | --- | ---: |"]
    codec = models.codec
    rows.append(f"| codec | {models.sources['codec']} | {codec.sample_rate} Hz, {codec.num_codebooks} × "
                f"{codec.codebook_size} codes at {codec.frame_rate:g} Hz = {codec.bitrate():g} kbps | "
                f"{_millions(codec)} |")
    for task, lm in models.lms.items():
        extra = f", {len(voices(lm))} voices" if task == "speech" else ""
        rows.append(f"| {task} LM | {models.sources[task]} | codes of a {lm.codec.sample_rate} Hz codec{extra} | "
                    f"{_millions(lm.model)} |")
    for task, why in models.missing.items():
        rows.append(f"| {task} LM | not available: {why} | | |")
    return "## Models in use\n\n" + "\n".join(rows) + "\n\n" + bundled_card()


def bundled_card() -> str:
    """The main sections of the bundled models' card (pipelines/assets/README.md), headings one level down."""
    path = ASSETS / "README.md"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^## ", text)
    intro = parts[0].split("\n", 1)[1].strip() if "\n" in parts[0] else ""
    kept = ["### " + re.sub(r"(?m)^### ", "#### ", part.strip()) for part in parts[1:]
            if part.split("\n", 1)[0].strip() in CARD_SECTIONS]
    return "## The bundled models (model card)\n\n" + intro + "\n\n" + "\n\n".join(kept)


def _millions(module) -> str:
    count = sum(p.numel() for p in module.parameters())
    return f"{count / 1e6:.1f} M" if count >= 1e5 else f"{count:,}"
