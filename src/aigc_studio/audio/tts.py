"""Text to speech behind a small engine interface: espeak-ng by default, a Piper voice when the user has one.

An engine is anything with ``name`` and ``synthesize(text, *, lang, voice, rate) -> Speech``
(:class:`VoiceEngine`); :func:`get_engine` builds one by name, so the CLI, the ad mixer and the
``/v1/audio/speech`` endpoint never depend on a particular engine.

* :class:`EspeakEngine` runs the ``espeak-ng`` program (Debian package ``espeak-ng``, installed by
  ``make audio-tools``): formant synthesis, robotic but small, fast and in ~100 languages. ``lang`` ``en``
  uses the ``en-us`` voice and ``zh`` Mandarin (``cmn``); ``voice`` may name any espeak-ng voice, with a
  variant after ``+`` (``en-gb+f3``). ``rate`` 1.0 is espeak-ng's 175 words a minute.
* :class:`PiperEngine` runs the ``piper`` program with a neural voice file (``.onnx``) the user has on disk
  (``voice`` is its path); nothing is downloaded.

The text goes to the program on standard input, never on its command line, so no text can become an option.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from aigc_studio.errors import AigcError

MAX_TEXT_CHARS = 4096  # what OpenAI's speech endpoint accepts
LANGUAGES: dict[str, str] = {"en": "en-us", "zh": "cmn"}  # language -> espeak-ng default voice
ENGINES: tuple[str, ...] = ("espeak", "piper")
MIN_RATE, MAX_RATE = 0.5, 2.5


@dataclass
class Speech:
    """Synthesised speech: mono float samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    engine: str
    voice: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


class VoiceEngine(Protocol):
    """What every voice engine offers."""

    name: str

    def synthesize(self, text: str, *, lang: str = "en", voice: str | None = None, rate: float = 1.0) -> Speech:
        """Speak ``text``; raises AigcError for bad input or a missing program."""
        ...


def check_text(text: str) -> str:
    """The text, stripped. Raises AigcError when it is empty or longer than :data:`MAX_TEXT_CHARS`."""
    text = (text or "").strip()
    if not text:
        raise AigcError("the text to speak is empty; pass the words to say", param="input")
    if len(text) > MAX_TEXT_CHARS:
        raise AigcError(f"the text is {len(text)} characters; at most {MAX_TEXT_CHARS} can be spoken at once", param="input")
    return text


def check_rate(rate: float) -> float:
    """``rate`` checked to be in 0.5..2.5 (1.0 = the engine's normal speed)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AigcError(f"rate {rate} is out of range; use {MIN_RATE}-{MAX_RATE} (1.0 is normal speed)", param="speed")
    return rate


def check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise AigcError(f"unknown language {lang!r}; use one of: {', '.join(LANGUAGES)}", param="lang")
    return lang


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float64")
    return (samples.mean(axis=1) if samples.ndim == 2 else samples), rate


@lru_cache(maxsize=1)
def espeak_voices() -> frozenset[str]:
    """The voice and language names espeak-ng knows (``en-us``, ``cmn``, ``en-gb-scotland``, ...)."""
    result = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, timeout=30)
    names: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 4:
            names.update({columns[1], columns[3], Path(columns[4]).name if len(columns) > 4 else columns[1]})
    return frozenset(names)


class EspeakEngine:
    """espeak-ng (see the module docstring)."""

    name = "espeak"
    words_per_minute = 175

    def synthesize(self, text: str, *, lang: str = "en", voice: str | None = None, rate: float = 1.0) -> Speech:
        text, lang, rate = check_text(text), check_lang(lang), check_rate(rate)
        if shutil.which("espeak-ng") is None:
            raise AigcError("espeak-ng is not installed; run `make audio-tools` (Debian package espeak-ng)", param="voice")
        voice = voice or LANGUAGES[lang]
        if voice.split("+")[0] not in espeak_voices():
            raise AigcError(f"espeak-ng has no voice {voice!r}; try {LANGUAGES[lang]} (list them with `espeak-ng --voices`)",
                            param="voice")
        with tempfile.TemporaryDirectory(prefix="aigc-tts-") as scratch:
            wav = Path(scratch) / "speech.wav"
            command = ["espeak-ng", "-v", voice, "-s", str(round(self.words_per_minute * rate)), "-w", str(wav), "--stdin"]
            result = subprocess.run(command, input=text, capture_output=True, text=True, timeout=120)
            if result.returncode != 0 or not wav.is_file():
                raise AigcError(f"espeak-ng failed: {result.stderr.strip()[-300:]}")
            samples, sample_rate = _read_wav(wav.read_bytes())
        if not np.any(samples):
            raise AigcError("espeak-ng produced silence; the text may hold nothing it can pronounce", param="input")
        return Speech(samples=samples, sample_rate=sample_rate, engine=self.name, voice=voice)


class PiperEngine:
    """A Piper neural voice (``voice`` = the path of its ``.onnx`` file, its ``.onnx.json`` beside it)."""

    name = "piper"

    def synthesize(self, text: str, *, lang: str = "en", voice: str | None = None, rate: float = 1.0) -> Speech:
        text, rate = check_text(text), check_rate(rate)
        if shutil.which("piper") is None:
            raise AigcError("the piper program is not installed; install Piper (https://github.com/rhasspy/piper) "
                            "and pass its voice file with --voice, or use --engine espeak", param="engine")
        if not voice or not Path(voice).is_file():
            raise AigcError(f"piper needs a voice file: pass --voice PATH/TO/VOICE.onnx (got {voice!r})", param="voice")
        with tempfile.TemporaryDirectory(prefix="aigc-tts-") as scratch:
            wav = Path(scratch) / "speech.wav"
            # length_scale is the inverse of speed in Piper.
            command = ["piper", "--model", str(voice), "--output_file", str(wav), "--length_scale", f"{1 / rate:.3f}"]
            result = subprocess.run(command, input=text, capture_output=True, text=True, timeout=300)
            if result.returncode != 0 or not wav.is_file():
                raise AigcError(f"piper failed: {result.stderr.strip()[-300:]}")
            samples, sample_rate = _read_wav(wav.read_bytes())
        return Speech(samples=samples, sample_rate=sample_rate, engine=self.name, voice=Path(voice).name)


def get_engine(name: str = "espeak") -> VoiceEngine:
    """The engine called ``name`` (``espeak`` or ``piper``). Raises AigcError for another name."""
    if name == "espeak":
        return EspeakEngine()
    if name == "piper":
        return PiperEngine()
    raise AigcError(f"unknown voice engine {name!r}; use one of: {', '.join(ENGINES)}", param="engine")


def synthesize_to_file(text: str, out: str | Path, *, lang: str = "en", voice: str | None = None, rate: float = 1.0,
                       engine: str = "espeak") -> Speech:
    """Speak ``text`` into ``out`` (``.wav``, or ``.mp3``/``.ogg`` through ffmpeg) with its provenance record.

    Raises:
        AigcError: bad text, language, voice, rate, engine or output suffix.
    """
    from aigc_studio.audio.provenance import AudioProvenance, encode_compressed, write_wav

    out = Path(out)
    if out.suffix not in (".wav", ".mp3", ".ogg"):
        raise AigcError(f"--out {out.name} must end in .wav, .mp3 or .ogg", param="out")
    speech = get_engine(engine).synthesize(text, lang=lang, voice=voice, rate=rate)
    record = AudioProvenance(kind="voice", engine=f"{speech.engine}:{speech.voice}",
                             parameters={"lang": lang, "rate": rate, "characters": len(text.strip())})
    if out.suffix == ".wav":
        write_wav(out, speech.samples, speech.sample_rate, record)
    else:
        with tempfile.TemporaryDirectory(prefix="aigc-tts-") as scratch:
            wav = Path(scratch) / "speech.wav"
            encode_compressed(wav, out, write_wav(wav, speech.samples, speech.sample_rate, record))
    return speech
