"""aigc voice and aigc audio-ad on the command line: files with provenance, -16 LUFS, one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from aigc_studio.audio.mix import loudness
from aigc_studio.audio.provenance import verify_wav
from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is missing; `make audio-tools`")


def test_voice_and_ad_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["voice", "Fresh bread every morning.", "--lang", "en", "--rate", "1.2", "--out", str(tmp_path / "v.wav")])
    assert result.exit_code == 0, result.output
    assert verify_wav(tmp_path / "v.wav").valid
    rate = 22050
    chords = 0.2 * np.sin(2 * np.pi * 262 * np.arange(3 * rate) / rate)  # a 3 s "jingle" file; the ad loops it
    sf.write(tmp_path / "jingle.wav", chords, rate)
    result = runner.invoke(app, ["audio-ad", "--copy", "The Eagle: French food by the river.", "--jingle",
                                 str(tmp_path / "jingle.wav"), "--out", str(tmp_path / "ad.wav")])
    assert result.exit_code == 0, result.output
    samples, out_rate = sf.read(tmp_path / "ad.wav")
    assert abs(loudness(samples, out_rate) + 16.0) < 0.5 and abs(len(samples) / out_rate - 15.0) < 0.01  # the shortest spot
    check = verify_wav(tmp_path / "ad.wav")
    assert check.valid and check.record.kind == "audio-ad" and len(check.record.sources) == 2


@pytest.mark.parametrize("args, message", [
    (["audio-ad", "--copy", "   ", "--jingle", "x.wav", "--out", "ad.wav"], "the text to speak is empty"),
    (["audio-ad", "--copy", "hi", "--jingle", "missing.wav", "--out", "ad.wav"], "jingle file missing.wav not found"),
    (["audio-ad", "--copy", "hi", "--jingle", "x.wav", "--out", "ad.flac"], "must end in .wav, .mp3 or .ogg"),
    (["voice", "", "--out", "v.wav"], "the text to speak is empty"),
])
def test_bad_input_is_one_clear_error(args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, AigcError) and message in str(result.exception)
