"""Data recipes: synthesize the speech and music corpora the default codec and LM are trained on."""

from .music import MUSIC_APT_PACKAGES, make_music_dataset
from .speech import SPEECH_APT_PACKAGES, make_speech_dataset

__all__ = ["MUSIC_APT_PACKAGES", "SPEECH_APT_PACKAGES", "make_music_dataset", "make_speech_dataset"]
