"""What the LM is conditioned on, built outside its core: the text prefix (`TextConditioner`) and frame-aligned
tracks (`TrackConditioner`s: the phoneme track of speech, the beat track of music, and any registered with
`register`). The model sees only their tensors: text ids, and the features each track's conditioner adds.
"""

from .base import Track, TrackConditioner, Tracks, build_tracks, register, registered, rename_state, unregister
from .beats import BeatConditioner, BeatTrack, tempo_from_text
from .phonemes import PhonemeConditioner, PhonemeTrack
from .text import TextConditioner, condition_text, text_without_voice

# The built-in tracks; a model sums its tracks' features in the order of registration.
register(PhonemeConditioner)
register(BeatConditioner)

__all__ = [
    "BeatConditioner",
    "BeatTrack",
    "PhonemeConditioner",
    "PhonemeTrack",
    "TextConditioner",
    "Track",
    "TrackConditioner",
    "Tracks",
    "build_tracks",
    "condition_text",
    "register",
    "registered",
    "rename_state",
    "tempo_from_text",
    "text_without_voice",
    "unregister",
]
