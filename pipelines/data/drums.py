"""Drum tracks rendered from the real drum hits of Debian's `hydrogen-drumkits`.

Each Hydrogen kit is a folder of recorded hits (kick, snare, hi-hats, toms, cymbals, hand percussion; often
several velocity layers per piece) described by `drumkit.xml`. A drum track sequences one kit's hits in a
simple 16-step pattern (`STYLES`) with accents, a little timing jitter, an opening crash, an open hi-hat now
and then and a tom fill, mixed with numpy. Kits without a kick and snare (hand percussion, djembes) play the
same patterns on their low, high and shaker-like pieces.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import decode_audio

DRUMKITS_DIR = Path("/usr/share/hydrogen/data/drumkits")

# role -> name patterns tried in order: the first that matches any piece of the kit picks the role's pieces.
# The later patterns cast hand percussion (cajon, bongos, djembes, bells, shakers) in the drum-kit roles.
_ROLES = {
    "kick": (r"kick|bass ?drum", r"bass\b|thump"),
    "snare": (r"snare(?!.*(roll|rim))", r"clap|slap", r"tone|\bhi\b|high"),
    "hat": (r"^(?!.*\b(?:op\b|open|semi|swish|choke|free)).*(hat|\bhh\b)", r"maraca|shaker|tambourine",
            r"bell"),
    "open_hat": (r"(hat|\bhh\b).*\b(op|open|opened|semi-?open)\b|\bopen hh\b",),
    "crash": (r"crash|china|splash",),
    "tom": (r"\btom",),
    "perc": (r"cowbell|conga|bongo|agogo|clave|woodblock|tambourine",),
}
# 16 steps per 4/4 bar: "x" plays, "." rests.
STYLES = {
    "rock": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "four-on-the-floor": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "..x...x...x...x."},
    "half-time": {"kick": "x.....x...x.....", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
    "breakbeat": {"kick": "x.........x..x..", "snare": "....x..x.x..x...", "hat": "xxxxxxxxxxxxxxxx"},
}
_TEMPO_RANGE = (80, 150)
_JITTER_S = 0.004


@dataclass(frozen=True)
class KitPiece:
    """One instrument of a kit: its name, volume, and velocity layers (file, lowest, highest velocity, gain)."""

    name: str
    volume: float
    layers: tuple[tuple[str, float, float, float], ...]


def _float(node: ET.Element, tag: str, default: float) -> float:
    try:
        return float(node.findtext(tag, default))
    except ValueError:
        return default


def read_drumkit(kit_dir: Path) -> tuple[KitPiece, ...]:
    """The pieces of a Hydrogen kit that have at least one sample file on disk."""
    root = ET.parse(kit_dir / "drumkit.xml").getroot()
    for node in root.iter():  # the newer kits declare a namespace, the older ones none
        node.tag = node.tag.rsplit("}", 1)[-1]
    pieces = []
    for inst in root.iter("instrument"):
        layers = [(n.findtext("filename"), _float(n, "min", 0.0), _float(n, "max", 1.0), _float(n, "gain", 1.0))
                  for n in inst.findall("layer")]
        if not layers and inst.findtext("filename"):  # the oldest format: one file, no layers
            layers = [(inst.findtext("filename"), 0.0, 1.0, 1.0)]
        layers = [layer for layer in layers if layer[0] and (kit_dir / layer[0]).is_file()]
        if layers:
            pieces.append(KitPiece((inst.findtext("name") or "").strip(), _float(inst, "volume", 1.0),
                                   tuple(layers)))
    return tuple(pieces)


def kit_roles(pieces: tuple[KitPiece, ...]) -> tuple[dict[str, tuple[KitPiece, ...]], str]:
    """Cast a kit's pieces in the roles the patterns use; and "drum kit", or "percussion kit" when it has no kick."""
    roles = {}
    for role, patterns in _ROLES.items():
        for pattern in patterns:
            found = tuple(p for p in pieces if re.search(pattern, p.name, re.I))
            if found:
                roles[role] = found
                break
    kick = any(re.search(_ROLES["kick"][0], p.name, re.I) for p in pieces)
    return roles, "drum kit" if kick else "percussion kit"


def drum_kits() -> tuple[str, ...]:
    """The installed kits (folder names) that can play the patterns: a kick, a snare and a hi-hat or stand-ins."""
    if not DRUMKITS_DIR.is_dir():
        return ()
    kits = []
    for kit_dir in sorted(DRUMKITS_DIR.iterdir()):
        if (kit_dir / "drumkit.xml").is_file():
            roles, _ = kit_roles(read_drumkit(kit_dir))
            if {"kick", "snare", "hat"} <= set(roles):
                kits.append(kit_dir.name)
    return tuple(kits)


@functools.lru_cache(maxsize=1024)
def _hit(path: str, sample_rate: int) -> np.ndarray:
    return decode_audio(path, sample_rate)


def render_drum_track(kit: str, seed: int, seconds: float, sample_rate: int) -> tuple[np.ndarray, dict]:
    """`seconds` of a drum track on `kit` (a folder of DRUMKITS_DIR): mono float [N] at `sample_rate` Hz (not
    normalized), and its metadata: `style`, `tempo` (bpm), `kind` ("drum kit" or "percussion kit"), `text` (caption).
    The same `seed` gives the same track. Raises RuntimeError if a hit fails to decode or the kit lacks a role.
    """
    kit_dir = DRUMKITS_DIR / kit
    roles, kind = kit_roles(read_drumkit(kit_dir))
    missing = {"kick", "snare", "hat"} - set(roles)
    if missing:
        raise RuntimeError(f"drum kit {kit!r} has no piece for {sorted(missing)}")
    rng = np.random.default_rng(seed)
    style = sorted(STYLES)[int(rng.integers(len(STYLES)))]
    tempo = int(rng.integers(_TEMPO_RANGE[0], _TEMPO_RANGE[1] + 1))
    chosen = {role: pieces[int(rng.integers(len(pieces)))] for role, pieces in roles.items()}
    step_s = 60.0 / tempo / 4
    bars = int(np.ceil(seconds / (16 * step_s)))
    perc = "".join("x" if rng.random() < 0.2 else "." for _ in range(16))
    hits: list[tuple[str, int, float]] = []  # (role, step from the start, velocity 0-1)
    for bar in range(bars):
        fill = "tom" in chosen and bar % 4 == 3 and rng.random() < 0.5
        for step in range(16):
            at = bar * 16 + step
            accent = step % 4 == 0
            if fill and step >= 12:
                hits.append(("tom", at, float(rng.uniform(0.6, 1.0))))
                continue
            for role in ("kick", "snare", "hat"):
                if STYLES[style][role][step] == "x":
                    open_hat = role == "hat" and step == 14 and "open_hat" in chosen and rng.random() < 0.3
                    velocity = rng.uniform(0.85, 1.0) if accent else rng.uniform(0.5, 0.8)
                    hits.append(("open_hat" if open_hat else role, at, float(velocity)))
            if "perc" in chosen and perc[step] == "x":
                hits.append(("perc", at, float(rng.uniform(0.4, 0.8))))
        if "crash" in chosen and bar % 4 == 0:
            hits.append(("crash", bar * 16, float(rng.uniform(0.7, 1.0))))
    n = round(seconds * sample_rate)
    out = np.zeros(n + 4 * sample_rate, dtype=np.float64)  # room for the last hits' tails, cut below
    for role, at, velocity in hits:
        piece = chosen[role]
        layers = [lay for lay in piece.layers if lay[1] <= velocity <= lay[2]] or list(piece.layers)
        file, _, _, gain = layers[int(rng.integers(len(layers)))]
        start = max(0, round((at * step_s + rng.uniform(-_JITTER_S, _JITTER_S)) * sample_rate))
        if start >= n:
            continue
        hit = _hit(str(kit_dir / file), sample_rate)[: len(out) - start]
        out[start:start + len(hit)] += hit * (velocity * gain * piece.volume)
    what = "drum beat" if kind == "drum kit" else "percussion groove"
    text = f"A {style} {what} at {tempo} bpm, played with the real samples of the Hydrogen {kind} \"{kit}\""
    return out[:n], {"style": style, "tempo": tempo, "kind": kind, "text": text}
