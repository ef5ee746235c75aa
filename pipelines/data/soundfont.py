"""Render a MIDI file with a SoundFont, in-process, through libfluidsynth's C API (ctypes; Debian libfluidsynth3).

In-process rendering skips fluidsynth's start-up and writes float samples (no 16-bit clipping or dither). Each
render gets a new synthesizer, so its audio depends only on the MIDI and the SoundFont, not on what the worker
rendered before (fluidsynth's reverb and chorus keep state that a reset does not clear). Samples load lazily
(`synth.dynamic-sample-loading`), which makes a new synthesizer on the 148 MB FluidR3 SoundFont cost ~0.1 s
instead of ~0.4 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import mido
import numpy as np

_TAIL_MAX_S = 3.0  # the longest release/reverb tail kept after the last note-off
_TAIL_FLOOR_DB = -60.0  # the tail ends where 50 ms windows fall this far below the clip's peak
_GAIN = 0.5


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("fluidsynth")
    if name is None:
        raise RuntimeError("libfluidsynth is not installed; install it with: "
                           "sudo apt-get install --no-install-recommends libfluidsynth3")
    lib = ctypes.CDLL(name)
    p, c_int, c_str = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures = {
        "new_fluid_settings": (p, []),
        "delete_fluid_settings": (None, [p]),
        "fluid_settings_setnum": (c_int, [p, c_str, ctypes.c_double]),
        "fluid_settings_setint": (c_int, [p, c_str, c_int]),
        "new_fluid_synth": (p, [p]),
        "delete_fluid_synth": (None, [p]),
        "fluid_synth_sfload": (c_int, [p, c_str, c_int]),
        "fluid_synth_noteon": (c_int, [p, c_int, c_int, c_int]),
        "fluid_synth_noteoff": (c_int, [p, c_int, c_int]),
        "fluid_synth_cc": (c_int, [p, c_int, c_int, c_int]),
        "fluid_synth_program_change": (c_int, [p, c_int, c_int]),
        "fluid_synth_pitch_bend": (c_int, [p, c_int, c_int]),
        "fluid_synth_write_float": (c_int, [p, c_int, p, c_int, c_int, p, c_int, c_int]),
    }
    for fn, (restype, argtypes) in signatures.items():
        getattr(lib, fn).restype = restype
        getattr(lib, fn).argtypes = argtypes
    # fluidsynth logs warnings (e.g. "No preset found") to stderr from every worker; silence all levels.
    lib.fluid_set_log_function.restype = p
    lib.fluid_set_log_function.argtypes = [c_int, p, p]
    for level in range(5):
        lib.fluid_set_log_function(level, None, None)
    return lib


class _Synth:
    """A fluidsynth synthesizer with one SoundFont loaded, rendering stereo float32."""

    def __init__(self, soundfont: str, sample_rate: int):
        lib = self.lib = _lib()
        self.settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self.settings, b"synth.sample-rate", float(sample_rate))
        lib.fluid_settings_setnum(self.settings, b"synth.gain", _GAIN)
        lib.fluid_settings_setint(self.settings, b"synth.dynamic-sample-loading", 1)
        lib.fluid_settings_setint(self.settings, b"synth.cpu-cores", 1)  # the pool provides the parallelism
        self.synth = lib.new_fluid_synth(self.settings)
        if not self.synth:
            lib.delete_fluid_settings(self.settings)
            raise RuntimeError("libfluidsynth could not create a synthesizer")
        if lib.fluid_synth_sfload(self.synth, soundfont.encode(), 1) < 0:
            self.close()
            raise RuntimeError(f"libfluidsynth could not load the SoundFont {soundfont!r}")

    def render(self, frames: int) -> np.ndarray:
        left, right = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
        if frames and self.lib.fluid_synth_write_float(self.synth, frames, left.ctypes.data, 0, 1,
                                                       right.ctypes.data, 0, 1) != 0:
            raise RuntimeError("libfluidsynth failed to render")
        return np.stack([left, right])

    def send(self, msg: mido.Message) -> None:
        lib, s = self.lib, self.synth
        if msg.type == "note_on" and msg.velocity > 0:
            lib.fluid_synth_noteon(s, msg.channel, msg.note, msg.velocity)
        elif msg.type in ("note_on", "note_off"):
            lib.fluid_synth_noteoff(s, msg.channel, msg.note)
        elif msg.type == "control_change":
            lib.fluid_synth_cc(s, msg.channel, msg.control, msg.value)
        elif msg.type == "program_change":
            lib.fluid_synth_program_change(s, msg.channel, msg.program)
        elif msg.type == "pitchwheel":
            lib.fluid_synth_pitch_bend(s, msg.channel, msg.pitch + 8192)

    def close(self) -> None:
        if getattr(self, "synth", None):
            self.lib.delete_fluid_synth(self.synth)
            self.synth = None
        if getattr(self, "settings", None):
            self.lib.delete_fluid_settings(self.settings)
            self.settings = None


def render_midi(mid: mido.MidiFile, soundfont: str, sample_rate: int, max_seconds: float = 60.0) -> np.ndarray:
    """Render `mid` with `soundfont` to a float32 array [2, N] (stereo) at `sample_rate` Hz.

    The audio runs to the last event, then keeps the release and reverb tail until it falls 60 dB below the
    peak (at most 3 s), and stops at `max_seconds` in any case. Events are placed at the nearest sample
    (fluidsynth applies them at the start of its 64-sample blocks). Raises RuntimeError if libfluidsynth fails.
    """
    synth = _Synth(soundfont, sample_rate)
    try:
        chunks, done, now = [], 0, 0.0
        for msg in mid:  # mido yields messages in time order, `time` = seconds since the previous one
            now += msg.time
            target = round(now * sample_rate)
            if target > done:
                chunks.append(synth.render(target - done))
                done = target
            if not msg.is_meta:
                synth.send(msg)
        peak = max((float(np.abs(c).max()) for c in chunks if c.size), default=0.0)
        window = round(0.05 * sample_rate)
        floor = peak * 10.0 ** (_TAIL_FLOOR_DB / 20.0)
        for _ in range(round(_TAIL_MAX_S / 0.05)):
            if done + window > max_seconds * sample_rate:
                break
            tail = synth.render(window)
            chunks.append(tail)
            done += window
            if float(np.abs(tail).max()) < floor:
                break
        return np.concatenate(chunks, axis=1)[:, : round(max_seconds * sample_rate)]
    finally:
        synth.close()
