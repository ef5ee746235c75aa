"""Synthetic captioned music: procedurally composed General MIDI clips rendered with SoundFonts.

Each clip draws a genre, a mood, a tempo, a key and mode, a meter, a lead instrument and its accompaniment,
composes 5-13 s of music (`compose.py`), renders it in-process with libfluidsynth (`soundfont.py`), keeps the
release tail until it falls 60 dB below the peak, and gets a caption from one of `CAPTION_TEMPLATES`, e.g.
"An upbeat rock groove at 128 bpm featuring distorted electric guitar and electric bass and drums".
Every caption names the lead instrument and the tempo it was built from.

The test split is held out three ways: it is rendered with another SoundFont (`TEST_SOUNDFONT`, new timbres),
captioned only with `TEST_CAPTION_TEMPLATES` (new wording), and a quarter of its clips pair a lead instrument
with a mood that train never pairs (`TEST_INSTRUMENT_MOODS`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (ClipResult, check_common_args, check_tools, finish_clip, split_seconds, synthesize_splits,
                     write_dataset)
from .compose import MusicSpec, compose, key_name, midi_bytes

MUSIC_APT_PACKAGES = ("libfluidsynth3", "fluid-soundfont-gm", "timgm6mb-soundfont")
TRAIN_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # fluid-soundfont-gm
TEST_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")  # timgm6mb-soundfont
_SPLIT_ID = {"train": 0, "test": 1}
_MAX_MUSIC_SECONDS = 13.0  # notes end by then; the release tail may run on to _MAX_SECONDS
_MAX_SECONDS = 15.0

GM_FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
               "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")


@dataclass(frozen=True)
class Instrument:
    name: str  # as captions say it
    program: int  # General MIDI program, 0-127
    low: int  # the lowest and highest MIDI notes a melody on it uses
    high: int

    @property
    def family(self) -> str:
        return GM_FAMILIES[self.program // 8]


def _i(name: str, program: int, low: int = 60, high: int = 81) -> Instrument:
    return Instrument(name, program, low, high)


# Per genre: lead instruments, chord instruments (with their playing style), bass instruments, drum pattern.
GENRES = {
    "pop": dict(
        lead=(_i("piano", 0), _i("electric piano", 4), _i("clean electric guitar", 27, 55, 79),
              _i("square synth lead", 80), _i("flute", 73, 67, 88), _i("marimba", 12)),
        chords=((_i("piano", 0), "pulse"), (_i("electric piano", 4), "block"), (_i("acoustic guitar", 25), "pulse"),
                (_i("warm synth pad", 89), "block"), (_i("string ensemble", 48), "block")),
        bass=(_i("electric bass", 33), _i("synth bass", 38)), drums=("pop", 1.0)),
    "rock": dict(
        lead=(_i("overdriven guitar", 29, 52, 79), _i("distorted electric guitar", 30, 52, 79),
              _i("organ", 16), _i("clean electric guitar", 27, 55, 79)),
        chords=((_i("distorted electric guitar", 30), "power"), (_i("overdriven guitar", 29), "power"),
                (_i("organ", 16), "pulse")),
        bass=(_i("electric bass", 34),), drums=("rock", 1.0)),
    "jazz": dict(
        lead=(_i("alto saxophone", 65, 61, 84), _i("tenor saxophone", 66, 54, 77), _i("trumpet", 56, 58, 82),
              _i("vibraphone", 11), _i("piano", 0), _i("clarinet", 71, 55, 82), _i("jazz guitar", 26, 55, 79),
              _i("trombone", 57, 45, 70)),
        chords=((_i("piano", 0), "comp"), (_i("electric piano", 4), "comp"), (_i("jazz guitar", 26), "comp")),
        bass=(_i("upright bass", 32),), drums=("jazz", 0.8)),
    "classical": dict(
        lead=(_i("violin", 40, 62, 88), _i("cello", 42, 48, 72), _i("flute", 73, 67, 88), _i("oboe", 68, 60, 84),
              _i("clarinet", 71, 55, 82), _i("french horn", 60, 50, 74), _i("harp", 46), _i("piano", 0),
              _i("bassoon", 70, 43, 67), _i("trumpet", 56, 58, 82), _i("harpsichord", 6)),
        chords=((_i("string ensemble", 48), "block"), (_i("piano", 0), "arpeggio"), (_i("harp", 46), "arpeggio"),
                (_i("slow strings", 49), "block")),
        bass=(_i("contrabass", 43), _i("cello", 42)), drums=(None, 0.0)),
    "folk": dict(
        lead=(_i("fiddle", 110, 62, 88), _i("banjo", 105, 55, 79), _i("harmonica", 22), _i("accordion", 21),
              _i("recorder", 74, 67, 88), _i("pan flute", 75, 64, 86), _i("whistle", 78, 67, 91),
              _i("nylon-string guitar", 24, 52, 76)),
        chords=((_i("nylon-string guitar", 24), "arpeggio"), (_i("acoustic guitar", 25), "pulse"),
                (_i("accordion", 21), "pulse")),
        bass=(_i("upright bass", 32),), drums=("folk", 0.5)),
    "electronic": dict(
        lead=(_i("square synth lead", 80), _i("sawtooth synth lead", 81), _i("synth brass", 62),
              _i("calliope synth lead", 82), _i("fifths synth lead", 86, 55, 79)),
        chords=((_i("polysynth pad", 90), "pulse"), (_i("warm synth pad", 89), "block"),
                (_i("synth strings", 50), "block")),
        bass=(_i("synth bass", 38), _i("analog synth bass", 39)), drums=("electronic", 1.0)),
    "ambient": dict(
        lead=(_i("celesta", 8, 67, 91), _i("glockenspiel", 9, 72, 96), _i("music box", 10, 67, 91),
              _i("vibraphone", 11), _i("kalimba", 108, 60, 84), _i("choir", 52, 57, 79), _i("flute", 73, 67, 88),
              _i("harp", 46)),
        chords=((_i("new age pad", 88), "block"), (_i("warm synth pad", 89), "block"), (_i("halo pad", 94), "block"),
                (_i("slow strings", 49), "block"), (_i("choir", 52), "block")),
        bass=(_i("contrabass", 43),), drums=(None, 0.0)),
}
_BASS_STYLES = {"pop": ("root_fifth", "pulse"), "rock": ("pulse",), "jazz": ("walking",),
                "classical": ("roots", "root_fifth"), "folk": ("root_fifth",), "electronic": ("pulse",),
                "ambient": ("roots",)}
_SWING = {"jazz": 0.9, "folk": 0.2}

# tempo range (bpm), mode weights, base velocity range, melody density, genres, words captions use for it
MOODS = {
    "calm": dict(tempo=(60, 84), modes={"major": 0.6, "minor": 0.2, "mixolydian": 0.1, "dorian": 0.1},
                 velocity=(50, 68), density=0.2, genres=("classical", "ambient", "folk", "jazz", "pop"),
                 words=("calm", "gentle", "peaceful", "relaxed")),
    "melancholic": dict(tempo=(60, 88), modes={"minor": 0.7, "dorian": 0.3}, velocity=(50, 72), density=0.3,
                        genres=("classical", "folk", "pop", "ambient", "jazz"),
                        words=("melancholic", "sad", "wistful", "mournful")),
    "dreamy": dict(tempo=(66, 96), modes={"major": 0.5, "mixolydian": 0.2, "dorian": 0.3}, velocity=(48, 70),
                   density=0.3, genres=("ambient", "electronic", "pop"), words=("dreamy", "floating", "ethereal")),
    "happy": dict(tempo=(96, 126), modes={"major": 0.8, "mixolydian": 0.2}, velocity=(75, 95), density=0.5,
                  genres=("pop", "folk", "classical", "jazz"), words=("happy", "cheerful", "joyful", "bright")),
    "upbeat": dict(tempo=(112, 140), modes={"major": 0.7, "mixolydian": 0.3}, velocity=(85, 105), density=0.6,
                   genres=("pop", "rock", "electronic", "folk", "jazz"), words=("upbeat", "lively", "bouncy")),
    "energetic": dict(tempo=(126, 168), modes={"minor": 0.5, "major": 0.3, "dorian": 0.2}, velocity=(95, 118),
                      density=0.7, genres=("rock", "electronic", "pop"), words=("energetic", "driving", "intense")),
    "tense": dict(tempo=(88, 140), modes={"minor": 1.0}, velocity=(75, 105), density=0.5,
                  genres=("electronic", "classical", "rock"), words=("tense", "dark", "suspenseful", "ominous")),
    "triumphant": dict(tempo=(92, 124), modes={"major": 1.0}, velocity=(90, 115), density=0.4,
                       genres=("classical", "rock"), words=("triumphant", "heroic", "majestic")),
}
# Lead instrument x mood pairs that only the test split plays (each possible in some genre of the mood).
TEST_INSTRUMENT_MOODS = frozenset({
    ("cello", "melancholic"), ("trumpet", "triumphant"), ("nylon-string guitar", "calm"),
    ("distorted electric guitar", "energetic"), ("vibraphone", "dreamy"), ("flute", "happy"),
})
_TEST_COMBO_SHARE = 0.25

# Captions. Fields: {a_mood} "an upbeat", {mood}, {genre}, {instrument}, {a_instrument}, {accompaniment},
# {tempo}, {key}, {mode}, {meter} "4/4", {meter_words} "waltz time"/"common time", {dynamics} "softly"...
CAPTION_TEMPLATES = (
    "{a_mood} {genre} piece led by {instrument}, with {accompaniment}, in {key} {mode} at {tempo} bpm",
    "{a_mood} {instrument} melody over {accompaniment} in {key} {mode}, {tempo} BPM",
    "{genre} track, {mood} and {dynamics_adj}: {instrument} with {accompaniment}, {tempo} beats per minute, "
    "key of {key} {mode}",
    "{a_instrument} plays {a_mood} {genre} tune in {key} {mode} at {tempo} bpm, backed by {accompaniment}",
    "{a_mood} {genre} track at {tempo} bpm featuring {instrument} with {accompaniment}",
    "{tempo} bpm {mood} {genre} in {key} {mode} with {a_instrument} lead",
    "instrumental {genre}, {mood}, {instrument} lead, {accompaniment}, {key} {mode}, {meter}, {tempo} bpm",
    "{a_mood} piece for {instrument} and {accompaniment} in {meter_words}, {tempo} bpm, {key} {mode}, "
    "played {dynamics}",
)
TEST_CAPTION_TEMPLATES = (
    "at {tempo} beats per minute, {a_instrument} carries {a_mood} {genre} melody in {key} {mode}, "
    "accompanied by {accompaniment}",
    "{genre}, {mood} mood: {instrument} over {accompaniment}; tempo {tempo}, {key} {mode}, {meter}",
    "listen to {a_instrument} playing {a_mood} tune at {tempo} bpm in {key} {mode}, with {accompaniment} "
    "underneath, {dynamics}",
)
_DYNAMICS = {  # (shape, level) -> (adverb, adjective) for captions
    "steady": {"soft": ("softly", "soft"), "moderate": ("at a moderate volume", "moderately loud"),
               "loud": ("loudly", "loud")},
    "crescendo": {lvl: ("building up in a crescendo", "building") for lvl in ("soft", "moderate", "loud")},
    "decrescendo": {lvl: ("fading down gently", "fading") for lvl in ("soft", "moderate", "loud")},
}


@dataclass(frozen=True)
class MusicJob:
    index: int
    split: str
    spec: MusicSpec
    meta: dict  # the dataset columns other than audio and duration
    soundfont: str
    peak_db: float
    sample_rate: int


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _leads_for(mood: str, genre: str, split: str) -> tuple[Instrument, ...]:
    leads = GENRES[genre]["lead"]
    if split == "train":
        leads = tuple(i for i in leads if (i.name, mood) not in TEST_INSTRUMENT_MOODS)
    return leads


def plan_music_job(seed: int, split: str, index: int, sample_rate: int) -> MusicJob:
    """The `index`-th clip of `split`: its composition spec, caption and metadata."""
    rng = np.random.default_rng([seed, _SPLIT_ID[split], 0, index])
    if split == "test" and rng.random() < _TEST_COMBO_SHARE:
        lead_name, mood = sorted(TEST_INSTRUMENT_MOODS)[int(rng.integers(len(TEST_INSTRUMENT_MOODS)))]
        genres = [g for g in MOODS[mood]["genres"] if any(i.name == lead_name for i in GENRES[g]["lead"])]
        genre = _choice(rng, genres)
        lead = next(i for i in GENRES[genre]["lead"] if i.name == lead_name)
    else:
        mood = _choice(rng, sorted(MOODS))
        genre = _choice(rng, MOODS[mood]["genres"])
        lead = _choice(rng, _leads_for(mood, genre, split))
    m, g = MOODS[mood], GENRES[genre]
    tempo = int(rng.integers(m["tempo"][0], m["tempo"][1] + 1))
    modes = sorted(m["modes"])
    mode = modes[int(rng.choice(len(modes), p=np.array([m["modes"][k] for k in modes])))]
    key = key_name(int(rng.integers(12)), mode)
    beats = 3 if genre in ("classical", "folk", "jazz") and rng.random() < 0.25 else 4
    chords_inst, chords_style = _choice(rng, [c for c in g["chords"] if c[0].program != lead.program])
    bass = _choice(rng, [b for b in g["bass"] if b.program != lead.program])
    pattern, p_drums = g["drums"]
    drums = pattern if pattern is not None and rng.random() < p_drums else None
    velocity = int(rng.integers(m["velocity"][0], m["velocity"][1] + 1))
    shape = str(rng.choice(["steady", "steady", "crescendo", "decrescendo"]))
    seconds_per_bar = beats * 60.0 / tempo
    target = rng.uniform(5.0, _MAX_MUSIC_SECONDS)  # music before the tail
    bars = max(2, min(round(target / seconds_per_bar), int(_MAX_MUSIC_SECONDS // seconds_per_bar)))
    spec = MusicSpec(
        genre=genre, mood=mood, tempo=tempo, key=key, mode=mode, beats_per_bar=beats, bars=bars,
        melody_program=lead.program, melody_range=(lead.low, lead.high), chords_program=chords_inst.program,
        chords_style=chords_style, bass_program=bass.program, bass_style=_choice(rng, _BASS_STYLES[genre]),
        drums=drums, velocity=velocity, dynamics_shape=shape, swing=bool(rng.random() < _SWING.get(genre, 0.0)),
        density=m["density"], reverb=int(rng.integers(70, 111) if genre == "ambient" else rng.integers(20, 81)),
        seed=int(rng.integers(2**31)),
    )
    accompaniment = [chords_inst.name, bass.name] + (["drums"] if drums else [])
    level = "soft" if velocity < 70 else "moderate" if velocity < 95 else "loud"
    templates = TEST_CAPTION_TEMPLATES if split == "test" else CAPTION_TEMPLATES
    t = int(rng.integers(len(templates)))
    mood_word = _choice(rng, m["words"])
    dyn_adv, dyn_adj = _DYNAMICS[shape][level]
    caption = templates[t].format(
        a_mood=_article(mood_word), mood=mood_word, genre=genre, instrument=lead.name,
        a_instrument=_article(lead.name), accompaniment=_join(accompaniment), tempo=tempo, key=key, mode=mode,
        meter=f"{beats}/4", meter_words="waltz time" if beats == 3 else "common time", dynamics=dyn_adv,
        dynamics_adj=dyn_adj,
    )
    caption = caption[0].upper() + caption[1:]
    soundfont = TEST_SOUNDFONT if split == "test" else TRAIN_SOUNDFONT
    meta = {
        "text": caption, "instrument": lead.name, "family": lead.family, "program": lead.program,
        "accompaniment": _join(accompaniment), "genre": genre, "mood": mood, "tempo": tempo, "key": key,
        "mode": mode, "meter": f"{beats}/4", "dynamics": f"{level} {shape}" if shape != "steady" else level,
        "soundfont": soundfont.name, "caption_template": f"{split}-{t}",
    }
    return MusicJob(index, split, spec, meta, str(soundfont), float(rng.uniform(-6.0, -1.0)), sample_rate)


def render_music_batch(jobs: list[MusicJob], clips_dir: str) -> list[ClipResult]:
    """Worker: compose and render `jobs` into FLAC files in `clips_dir`; one ClipResult per job, in order."""
    from .soundfont import render_midi

    results = []
    for job in jobs:
        try:
            mid = compose(job.spec)
            wav = render_midi(mid, job.soundfont, job.sample_rate, max_seconds=_MAX_SECONDS)  # [2, N] float32
            out = Path(clips_dir) / f"music-{job.split}-{job.index:08d}.flac"
            duration = finish_clip(wav.mean(axis=0), job.sample_rate, out, job.peak_db, min_seconds=2.0,
                                   trim_db=-60.0, margin_s=0.05)
        except (RuntimeError, ValueError, OSError) as exc:
            results.append(ClipResult(job.index, error=str(exc)))
            continue
        results.append(ClipResult(job.index, str(out), duration, meta={**job.meta, "midi": midi_bytes(mid)}))
    return results


def _features(sample_rate: int):
    from datasets import Audio, Features, Value

    return Features({
        "audio": Audio(sampling_rate=sample_rate), "text": Value("string"), "instrument": Value("string"),
        "family": Value("string"), "program": Value("int32"), "accompaniment": Value("string"),
        "genre": Value("string"), "mood": Value("string"), "tempo": Value("int32"), "key": Value("string"),
        "mode": Value("string"), "meter": Value("string"), "dynamics": Value("string"),
        "soundfont": Value("string"), "caption_template": Value("string"), "midi": Value("binary"),
        "duration": Value("float32"),
    })


def make_music_dataset(
    output: str | os.PathLike,
    hours: float,
    seed: int = 0,
    sample_rate: int = 24000,
    num_proc: int = 1,
    progress: bool = True,
    test_fraction: float = 0.1,
    overwrite: bool = False,
):
    """Compose and render `hours` of captioned music into a Hugging Face DatasetDict saved at `output`.

    Splits "train" and "test" (`test_fraction` of the hours). Columns: `audio` (datasets `Audio`, mono at
    `sample_rate` Hz, 16-bit FLAC, 5-15 s), `text` (the caption), `instrument` (the lead, as the caption names
    it), `family` (its General MIDI family), `program` (its GM program), `accompaniment`, `genre`, `mood`,
    `tempo` (bpm), `key`, `mode`, `meter`, `dynamics`, `soundfont` (file name), `caption_template`
    ("train-3", "test-1"), `midi` (the Standard MIDI File that was rendered), `duration` (seconds).
    Test clips use another SoundFont, other caption templates, and some instrument x mood pairs train lacks.

    The same `seed` gives the same clips (metadata and MIDI exactly; audio as rendered by the same
    libfluidsynth), whatever `num_proc`. A clip that fails to render is skipped and counted (warning, and
    `recipe.json` in the output folder). Written to a temporary folder and moved into place when complete;
    an existing `output` is replaced only with `overwrite=True`. Returns the dataset loaded from `output`.

    Raises FileNotFoundError (naming the apt command) if libfluidsynth or a SoundFont is missing, ValueError for
    bad arguments, FileExistsError if `output` exists.
    """
    targets = split_seconds(hours, test_fraction)
    check_common_args(sample_rate, num_proc)
    check_tools("music", MUSIC_APT_PACKAGES, libraries=("fluidsynth",), files=(TRAIN_SOUNDFONT, TEST_SOUNDFONT))

    def recipe(clips_dir: Path):
        return synthesize_splits(functools.partial(_plan, seed, sample_rate), render_music_batch, targets,
                                 clips_dir, num_proc, progress, desc="music",
                                 expected_clip_seconds=9.0, batch_size=4)

    info = {"recipe": "music", "hours": hours, "seed": seed, "sample_rate": sample_rate,
            "test_fraction": test_fraction, "train_soundfont": TRAIN_SOUNDFONT.name,
            "test_soundfont": TEST_SOUNDFONT.name, "caption_templates": list(CAPTION_TEMPLATES),
            "test_caption_templates": list(TEST_CAPTION_TEMPLATES),
            "test_instrument_moods": sorted(map(list, TEST_INSTRUMENT_MOODS))}
    return write_dataset(output, recipe, functools.partial(_features, sample_rate), info, overwrite,
                         progress)


def _plan(seed: int, sample_rate: int, split: str, index: int) -> MusicJob:
    return plan_music_job(seed, split, index, sample_rate)

