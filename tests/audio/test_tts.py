"""Voice engines: espeak-ng in English and Chinese, rate, provenance, bad input, Piper's clear error when absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aigc_studio.audio.provenance import verify_wav
from aigc_studio.audio.tts import PiperEngine, get_engine, synthesize_to_file
from aigc_studio.errors import AigcError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is missing; install it with `make audio-tools`")


@needs_espeak
@pytest.mark.parametrize("lang, text", [("en", "Fresh bread every morning at The Eagle."), ("zh", "每天早上都有新鲜面包。")])
def test_espeak_speaks_both_languages_and_rate_changes_length(lang: str, text: str) -> None:
    engine = get_engine("espeak")
    normal = engine.synthesize(text, lang=lang)
    fast = engine.synthesize(text, lang=lang, rate=2.0)
    assert normal.voice == {"en": "en-us", "zh": "cmn"}[lang]
    assert normal.seconds > 1.0 and 0.3 < fast.seconds / normal.seconds < 0.8
    assert abs(normal.samples).max() > 0.05


@needs_espeak
def test_voice_file_carries_its_provenance(tmp_path: Path) -> None:
    synthesize_to_file("Hello.", tmp_path / "hello.wav", voice="en-gb")
    check = verify_wav(tmp_path / "hello.wav")
    assert check.valid and check.record.kind == "voice" and check.record.engine == "espeak:en-gb"
    assert (tmp_path / "hello.wav.json").is_file()


@needs_espeak
@pytest.mark.parametrize("kwargs, message", [
    ({"text": "   "}, "the text to speak is empty"),
    ({"text": "x" * 5000}, "the text is 5000 characters; at most 4096"),
    ({"text": "hi", "voice": "klingon"}, "espeak-ng has no voice 'klingon'"),
    ({"text": "hi", "rate": 9.0}, "rate 9.0 is out of range"),
    ({"text": "hi", "lang": "fr"}, "unknown language 'fr'"),
])
def test_bad_speech_input_is_named(kwargs: dict, message: str) -> None:
    text = kwargs.pop("text")
    with pytest.raises(AigcError, match=message):
        get_engine("espeak").synthesize(text, **kwargs)


@pytest.mark.skipif(shutil.which("piper") is not None, reason="piper is installed; this checks the message when it is not")
def test_piper_without_the_program_says_how_to_get_it() -> None:
    with pytest.raises(AigcError, match="the piper program is not installed"):
        PiperEngine().synthesize("hello", voice="voice.onnx")
    with pytest.raises(AigcError, match="unknown voice engine 'festival'"):
        get_engine("festival")
