"""Data recipes: synthesize the speech and music corpora the default codec and LM are trained on, and build
corpora from the real recordings in Debian packages (`real_speech.py`, `real_music.py`).

They need the `data` extra (pip install "rvqaudio[data]") and Debian's synthesizers (`make setup`)."""

from tokenizer.extras import require_extra

require_extra("data", "the data recipes (rvqaudio data)")

from .music import MUSIC_APT_PACKAGES, make_music_dataset
from .real_music import REAL_MUSIC_APT_PACKAGES, make_real_music_dataset
from .real_speech import REAL_SPEECH_APT_PACKAGES, make_real_speech_dataset
from .speech import SPEECH_APT_PACKAGES, make_speech_dataset

__all__ = ["MUSIC_APT_PACKAGES", "REAL_MUSIC_APT_PACKAGES", "REAL_SPEECH_APT_PACKAGES", "SPEECH_APT_PACKAGES",
           "make_music_dataset", "make_real_music_dataset", "make_real_speech_dataset", "make_speech_dataset"]
