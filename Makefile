# AIGC Studio: the two quick-start commands are `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean browser audio-tools

# torch goes in first, pinned, so pip takes the CPU wheel on this disk instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: ad copy, train a small ad-copy model for a couple of minutes, a support chat, sketches, then serve the studio
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

## test: the whole test suite (two workers, one per core)
test: install
	$(VENV)/bin/pytest -n 2 -q

## browser: the Debian chromium package the studio's browser tests drive (tests/browser skip without it)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo "sudo -n")
browser:
	test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

## audio-tools: the Debian packages that render and speak audio (tests/music and tests/audio skip what they lack):
## FluidSynth with the General MIDI sound font (jingles), espeak-ng (voice-overs), ffmpeg (MP3/Ogg)
AUDIO_PACKAGES := fluidsynth fluid-soundfont-gm espeak-ng ffmpeg
audio-tools:
	command -v fluidsynth >/dev/null && test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 && command -v espeak-ng >/dev/null \
		&& command -v ffmpeg >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(AUDIO_PACKAGES); }

## bench: benchmark scripts under bench/; each writes its figures into docs/benchmarks.md
bench: install
	$(PY) -m pip install -q -e '.[test,bench]'
	for script in bench/*.py; do [ $$script = bench/common.py ] || $(PY) $$script || exit 1; done

clean:
	rm -rf var/demo .pytest_cache
