# Everything a fresh Debian machine needs, installed by the project itself.
# `make setup` is quick when nothing changed: it skips apt when the packages are present and pip when
# pyproject.toml and this Makefile are older than the stamp.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# ffmpeg: torchcodec's libraries. The rest: the speech and music data recipes (pipelines/data; festival's Czech,
# Italian, Finnish and Catalan voices for `--voice-set extra`); csound-soundfont: a third SoundFont the music
# evaluation's instrument classifier also trains on (pipelines/evaluation).
APT_PACKAGES := ffmpeg sox espeak-ng espeak-ng-data flite festival festlex-cmu festvox-kallpc16k \
	festvox-kdlpc16k festvox-us-slt-hts fortunes bible-kjv libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont \
	csound-soundfont festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph festvox-italp16k \
	festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts \
	festvox-ru chromium chromium-driver
# Real recordings for `rvqaudio data real-speech` / `real-music` (pipelines/data/real_*.py): Asterisk's voice
# prompts with their transcripts, the music of Debian game packages, Hydrogen's drum kits (~610 MB download).
REAL_AUDIO_PACKAGES := asterisk-core-sounds-en asterisk-core-sounds-en-g722 asterisk-core-sounds-es \
	asterisk-core-sounds-es-g722 asterisk-core-sounds-fr asterisk-core-sounds-fr-g722 asterisk-core-sounds-it \
	asterisk-core-sounds-it-g722 asterisk-core-sounds-ru asterisk-core-sounds-ru-g722 fretsonfire-songs-muldjord \
	fb-music-high drascula-music asc-music colobot-common-sounds freedroidrpg-data lincity-ng-data hydrogen-drumkits
APT_PACKAGES += $(REAL_AUDIO_PACKAGES)
STAMP := $(VENV)/.setup-stamp
TEST_ARGS ?=

# Big conv codecs on CPU run ~2x faster without glibc returning memory to the kernel (ENVIRONMENT.md).
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile  # a new dependency or Debian package in either reruns setup
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the machine's local 2.14.1 wheel, never a second multi-GB download.
	$(PY) -m pip install -q "torch==2.14.1" "torchaudio==2.11.0"
	$(PY) -m pip install -q -e ".[test,eval,data,lora,demo,export]"
	@touch $(STAMP)

demo: setup
	$(PY) -m pipelines.demo

# Two pytest workers with one torch thread each use both cores better than one worker with two threads.
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 $(TEST_ARGS)

bench: setup
	$(PY) benchmarks/codec_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
