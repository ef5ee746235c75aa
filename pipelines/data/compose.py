"""Procedural composition: a short General MIDI arrangement (melody, chords, bass, drums) from a `MusicSpec`.

The spec fixes what a caption can say (genre, mood, key, mode, tempo, meter, instruments, dynamics); `compose`
fills in the notes from a chord progression with a seeded generator: a melody that lands on chord tones on strong
beats and moves by step between them, reusing a two-bar rhythm; a chord part (block, pulse, arpeggio, power
chords or jazz comping); a bass line (roots, root-fifth, eighth pulse or walking); a drum pattern per genre.
Timing and velocity are humanized slightly. The result is a type-1 `mido.MidiFile`, one track per part.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import mido
import numpy as np

TICKS_PER_BEAT = 480
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # pitch class = index
MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
_ENHARMONIC = {"C#": "Db", "G#": "Ab"}
# Scale-degree progressions (0 = tonic), one chord per bar, looped; the last bar is always the tonic.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 0, 4), (5, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4)),
}
CHANNELS = {"melody": 0, "chords": 1, "bass": 2, "drums": 9}
_VOLUME = {"melody": 110, "chords": 78, "bass": 96, "drums": 92}  # CC7 mix: the melody on top
# General MIDI percussion keys.
KICK, SIDE_STICK, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, LOW_TOM, MID_TOM, HIGH_TOM = (
    36, 37, 38, 39, 42, 44, 46, 49, 51, 45, 47, 50)


@dataclass(frozen=True)
class MusicSpec:
    """Everything a clip's caption is built from, plus the seed of the note-level choices."""

    genre: str
    mood: str
    tempo: int  # beats per minute
    key: str  # tonic as spelled by `key_name`
    mode: str  # one of SCALES
    beats_per_bar: int  # 4 (4/4) or 3 (3/4)
    bars: int
    melody_program: int  # General MIDI program, 0-127
    melody_range: tuple[int, int]  # MIDI notes the melody stays within
    chords_program: int
    chords_style: str  # "block" | "pulse" | "arpeggio" | "power" | "comp"
    bass_program: int | None
    bass_style: str  # "roots" | "root_fifth" | "pulse" | "walking"
    drums: str | None  # drum pattern: "rock" | "pop" | "electronic" | "jazz" | "folk"; None: no drums
    velocity: int  # base MIDI velocity, sets the dynamics
    dynamics_shape: str  # "steady" | "crescendo" | "decrescendo"
    swing: bool
    density: float  # 0-1: how busy the melody is
    reverb: int  # CC91 send, 0-127
    seed: int

    @property
    def seconds_per_bar(self) -> float:
        return self.beats_per_bar * 60.0 / self.tempo

    @property
    def duration(self) -> float:
        """Length of the music in seconds, without the release tail."""
        return self.bars * self.seconds_per_bar


@dataclass(frozen=True)
class _Note:
    part: str
    start: float  # beats from the start
    length: float  # beats
    pitch: int
    velocity: int


def _chord(tonic_pc: int, scale: tuple[int, ...], degree: int, sevenths: bool) -> list[int]:
    """Pitch classes (may exceed 11, in order root-third-fifth[-seventh]) of the diatonic chord on `degree`."""
    steps = (0, 2, 4, 6) if sevenths else (0, 2, 4)
    return [tonic_pc + scale[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in steps]


def _nearest(pitch_classes: list[int], target: float, lo: int, hi: int) -> int:
    candidates = [pc % 12 + 12 * o for pc in pitch_classes for o in range(11) if lo <= pc % 12 + 12 * o <= hi]
    return min(candidates, key=lambda p: (abs(p - target), p))


def _rhythm(rng: np.random.Generator, beats: int, density: float) -> list[tuple[float, float]]:
    """(onset, length) pairs in beats filling one bar: half notes, quarters or pairs of eighths.

    The denser the melody (`density` in [0, 1]), the more eighths and the fewer half notes.
    """
    out, beat = [], 0
    while beat < beats:
        r = rng.random()
        if beats - beat >= 2 and r < 0.3 * (1.0 - density):
            out.append((float(beat), 2.0))
            beat += 2
            continue
        if r > 1.0 - 0.6 * density:
            out += [(float(beat), 0.5), (beat + 0.5, 0.5)]
        else:
            out.append((float(beat), 1.0))
        beat += 1
    return out


def _melody(spec: MusicSpec, rng: np.random.Generator, chords: list[list[int]], scale_pcs: list[int]) -> list[_Note]:
    lo, hi = spec.melody_range
    pitch = float(_nearest(chords[0], (lo + hi) / 2, lo, hi))
    notes, motif = [], None
    scale_notes = sorted(p for p in range(lo, hi + 1) if p % 12 in scale_pcs)
    for bar, chord in enumerate(chords):
        last = bar == spec.bars - 1
        if last:
            rhythm = [(0.0, float(spec.beats_per_bar))]
        elif bar % 2 == 0 or motif is None:
            rhythm = _rhythm(rng, spec.beats_per_bar, spec.density)
            if bar % 2 == 0 and rng.random() < 0.6:
                motif = rhythm  # reused by later bars: phrases that repeat sound composed, not random
        else:
            rhythm = motif if rng.random() < 0.7 else _rhythm(rng, spec.beats_per_bar, spec.density)
        for onset, length in rhythm:
            strong = onset == 0 or (spec.beats_per_bar == 4 and onset == 2)
            if strong or last:
                pitch = float(_nearest(chord[:3] if last else chord, pitch + rng.normal(0, 2), lo, hi))
            else:
                i = int(np.searchsorted(scale_notes, pitch))
                step = int(rng.choice([-2, -1, -1, 1, 1, 2, 0]))
                pitch = float(scale_notes[int(np.clip(i + step, 0, len(scale_notes) - 1))])
            if not last and rng.random() < 0.08:  # an occasional rest
                continue
            vel = spec.velocity + (8 if strong else 0)
            notes.append(_Note("melody", bar * spec.beats_per_bar + onset, length * 0.95, int(pitch), vel))
    return notes


def _chord_part(spec: MusicSpec, rng: np.random.Generator, chords: list[list[int]]) -> list[_Note]:
    notes, b = [], spec.beats_per_bar
    for bar, chord in enumerate(chords):
        t0 = bar * b
        root = _nearest(chord[:1], 52, 45, 57)
        voicing = [root]  # close position upwards from the root
        for pc in chord[1:]:
            voicing.append(voicing[-1] + (pc - voicing[-1]) % 12)
        vel = spec.velocity - 12
        if bar == spec.bars - 1 or spec.chords_style == "block":
            notes += [_Note("chords", t0, b * 0.98, p, vel) for p in voicing]
        elif spec.chords_style == "pulse":
            for beat in range(b):
                notes += [_Note("chords", t0 + beat, 0.9, p, vel + (6 if beat == 0 else 0)) for p in voicing]
        elif spec.chords_style == "arpeggio":
            pattern = voicing + [voicing[0] + 12] + voicing[1:][::-1]
            for i in range(2 * b):
                notes.append(_Note("chords", t0 + i / 2, 0.5, pattern[i % len(pattern)], vel))
        elif spec.chords_style == "power":
            power = [root, root + 7, root + 12]
            for i in range(2 * b):
                notes += [_Note("chords", t0 + i / 2, 0.45, p, vel + (8 if i % 2 == 0 else 0)) for p in power]
        elif spec.chords_style == "comp":
            # syncopated comping: the downbeat, then the "and" of 2 or of 3 (of 2 in 3/4)
            hits = [0.0, 2.5] if b == 4 and rng.random() < 0.5 else [0.0, 1.5]
            for h in hits:
                notes += [_Note("chords", t0 + h, 0.8, p, vel) for p in voicing]
        else:
            raise ValueError(f"unknown chords style {spec.chords_style!r}")
    return notes


def _bass(spec: MusicSpec, rng: np.random.Generator, chords: list[list[int]]) -> list[_Note]:
    notes, b = [], spec.beats_per_bar
    vel = spec.velocity - 4
    for bar, chord in enumerate(chords):
        t0 = bar * b
        root = _nearest(chord[:1], 38, 28, 47)
        fifth = _nearest(chord[2:3], root + 7, root, root + 12)
        if bar == spec.bars - 1 or spec.bass_style == "roots":
            notes.append(_Note("bass", t0, b * 0.95, root, vel))
        elif spec.bass_style == "root_fifth":
            notes += [_Note("bass", t0 + beat, 0.9, root if beat % 2 == 0 else fifth, vel) for beat in range(b)]
        elif spec.bass_style == "pulse":
            notes += [_Note("bass", t0 + i / 2, 0.45, root, vel + (6 if i % 2 == 0 else 0)) for i in range(2 * b)]
        elif spec.bass_style == "walking":
            nxt = _nearest(chords[min(bar + 1, len(chords) - 1)][:1], root, 28, 47)
            line = [root, _nearest(chord[1:2], root + 4, root, root + 12), fifth, nxt + int(rng.choice([-1, 1]))]
            notes += [_Note("bass", t0 + beat, 0.9, line[beat % 4], vel) for beat in range(b)]
        else:
            raise ValueError(f"unknown bass style {spec.bass_style!r}")
    return notes


# 16th-note grids for one 4/4 bar: {drum key: steps}. 3/4 bars use the first 12 steps.
_DRUM_PATTERNS = {
    "rock": {KICK: (0, 8, 10), SNARE: (4, 12), CLOSED_HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
    "pop": {KICK: (0, 6, 8), SNARE: (4, 12), CLOSED_HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
    "electronic": {KICK: (0, 4, 8, 12), CLAP: (4, 12), OPEN_HAT: (2, 6, 10, 14), CLOSED_HAT: (0, 4, 8, 12)},
    "jazz": {RIDE: (0, 4, 6, 8, 12, 14), PEDAL_HAT: (4, 12), KICK: (0,)},
    "folk": {KICK: (0, 8), SIDE_STICK: (4, 12), CLOSED_HAT: (0, 4, 8, 12)},
}
_WALTZ_PATTERNS = {  # 3/4: the downbeat, then two lighter beats
    "rock": {KICK: (0,), SNARE: (4, 8), CLOSED_HAT: (0, 2, 4, 6, 8, 10)},
    "jazz": {RIDE: (0, 4, 6, 8), PEDAL_HAT: (4, 8), KICK: (0,)},
}


def _drums(spec: MusicSpec, rng: np.random.Generator) -> list[_Note]:
    if spec.drums is None:
        return []
    b = spec.beats_per_bar
    pattern = _DRUM_PATTERNS[spec.drums] if b == 4 else _WALTZ_PATTERNS.get(spec.drums, _WALTZ_PATTERNS["rock"])
    notes = []
    for bar in range(spec.bars):
        t0 = bar * b
        if bar == spec.bars - 1:  # end on one hit
            notes += [_Note("drums", t0, 1.0, KICK, spec.velocity), _Note("drums", t0, 1.0, CRASH, spec.velocity)]
            continue
        fill = spec.density > 0.5 and bar % 4 == 3 and bar < spec.bars - 1
        for key, steps in pattern.items():
            for s in steps:
                if s >= 4 * b or (fill and s >= 4 * (b - 1)):
                    continue
                accent = 10 if s % 4 == 0 else 0
                notes.append(_Note("drums", t0 + s / 4, 0.25, key, spec.velocity - 10 + accent))
        if fill:
            for i, tom in enumerate((HIGH_TOM, HIGH_TOM, MID_TOM, LOW_TOM)):
                notes.append(_Note("drums", t0 + b - 1 + i / 4, 0.25, tom, spec.velocity))
        if bar == 0:
            notes.append(_Note("drums", t0, 1.0, CRASH, spec.velocity))
    return notes


def compose(spec: MusicSpec) -> mido.MidiFile:
    """The clip as a type-1 MIDI file: a conductor track (tempo, meter, key) and one track per part.

    Pure function of `spec` (its `seed` drives every note-level choice).
    """
    rng = np.random.default_rng(spec.seed)
    scale = SCALES[spec.mode]
    tonic = KEYS.index(spec.key) if spec.key in KEYS else KEYS.index(_ENHARMONIC[spec.key])
    progs = PROGRESSIONS["minor" if scale[2] == 3 else "major"]
    prog = progs[rng.integers(len(progs))]
    sevenths = spec.chords_style == "comp"
    degrees = [prog[bar % len(prog)] for bar in range(spec.bars - 1)] + [0]
    chords = [_chord(tonic, scale, d, sevenths) for d in degrees]
    scale_pcs = [(tonic + s) % 12 for s in scale]
    notes = (_melody(spec, rng, chords, scale_pcs) + _chord_part(spec, rng, chords) + _drums(spec, rng)
             + (_bass(spec, rng, chords) if spec.bass_program is not None else []))
    return _to_midi(spec, rng, notes)


def _to_midi(spec: MusicSpec, rng: np.random.Generator, notes: list[_Note]) -> mido.MidiFile:
    total_beats = spec.bars * spec.beats_per_bar
    ticks_per_ms = TICKS_PER_BEAT * spec.tempo / 60000.0
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(spec.tempo), time=0),
        mido.MetaMessage("time_signature", numerator=spec.beats_per_bar, denominator=4, time=0),
        mido.MetaMessage("key_signature", key=key_signature(spec.key, spec.mode), time=0),
    ])
    mid.tracks.append(conductor)
    programs = {"melody": spec.melody_program, "chords": spec.chords_program, "bass": spec.bass_program}
    for part, channel in CHANNELS.items():
        part_notes = [n for n in notes if n.part == part]
        if not part_notes:
            continue
        events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message); note-offs sort first
        head = [mido.Message("control_change", channel=channel, control=7, value=_VOLUME[part]),
                mido.Message("control_change", channel=channel, control=91, value=spec.reverb),
                mido.Message("control_change", channel=channel, control=10,
                             value=int(np.clip(64 + rng.normal(0, 18), 16, 112)) if part == "chords" else 64)]
        if part != "drums":
            head.append(mido.Message("program_change", channel=channel, program=programs[part]))
        events += [(0, 0, m) for m in head]
        timed = []
        for n in part_notes:
            start = n.start
            if spec.swing and abs(start % 1 - 0.5) < 1e-6:
                start += 1 / 6  # swung eighths: the off-beat falls on the third triplet
            jitter = rng.normal(0, 6 if part == "drums" else 10) * ticks_per_ms
            on = max(0, round(start * TICKS_PER_BEAT + jitter))
            off = max(on + 1, round((start + n.length) * TICKS_PER_BEAT + jitter))
            progress = start / total_beats
            shape = {"steady": 1.0, "crescendo": 0.75 + 0.4 * progress,
                     "decrescendo": 1.15 - 0.4 * progress}[spec.dynamics_shape]
            vel = int(np.clip(round(n.velocity * shape + rng.normal(0, 5)), 1, 127))
            timed.append((on, off, n.pitch, vel))
        for on, off, pitch, vel in _no_overlaps(timed):
            events.append((on, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
            events.append((off, 1, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1]))  # at equal ticks: controllers, then note-offs, then note-ons
        track, now = mido.MidiTrack(), 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    return mid


def _no_overlaps(timed: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """(on, off, pitch, velocity) notes; end a note early where it would outlast the next onset of its pitch.

    Humanized timing can make a note-off land after the next note-on of the same key, which would silence the
    repeated note (MIDI matches offs to keys, not to notes).
    """
    out = []
    by_pitch: dict[int, list[tuple[int, int, int, int]]] = {}
    for note in timed:
        by_pitch.setdefault(note[2], []).append(note)
    for same in by_pitch.values():
        same.sort()
        for (on, off, pitch, vel), nxt in zip(same, same[1:] + [None]):
            if nxt is not None:
                off = max(on + 1, min(off, nxt[0]))
            out.append((on, off, pitch, vel))
    return sorted(out)


def key_signature(key: str, mode: str) -> str:
    """The MIDI key signature (mido's name) of `key` in `mode`; modal scales use their parent major key."""
    tonic = KEYS.index(key) if key in KEYS else KEYS.index(_ENHARMONIC[key])
    if mode == "major":
        return KEYS[tonic]
    if mode == "minor":
        return MINOR_KEY_NAMES[tonic] + "m"
    return KEYS[(tonic - 2) % 12] if mode == "dorian" else KEYS[(tonic + 5) % 12]


def key_name(pitch_class: int, mode: str) -> str:
    """Conventional spelling of a tonic: C# minor rather than Db minor."""
    return MINOR_KEY_NAMES[pitch_class] if mode in ("minor", "dorian") else KEYS[pitch_class]


def midi_bytes(mid: mido.MidiFile) -> bytes:
    """The Standard MIDI File bytes of `mid`."""
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
