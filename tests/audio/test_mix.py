"""The mixer on synthetic signals: -16 LUFS within 0.5 LU, the music ducked under the voice, fades, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from aigc_studio.audio.mix import MixSettings, fade, loudness, mix_voice_over, normalise_loudness
from aigc_studio.errors import AigcError

RATE = 44100


def _sine(frequency: float, seconds: float, amplitude: float, rate: int = RATE) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)


@pytest.mark.parametrize("amplitude", [0.01, 0.3, 0.99])
def test_normalise_reaches_the_target_within_half_a_lu(amplitude: float) -> None:
    out = normalise_loudness(_sine(440, 3, amplitude), RATE, -16.0)
    assert abs(loudness(out, RATE) + 16.0) < 0.5 and np.abs(out).max() <= 1.0


def test_voice_over_ducks_the_music_and_lands_at_minus_16_lufs() -> None:
    voice_rate = 22050
    voice = _sine(300, 4.0, 0.5, voice_rate)  # 4 s of "speech" from 2 s to 6 s of the ad
    music = _sine(880, 3.0, 0.2)  # shorter than the ad: it loops
    settings = MixSettings(intro=2.0, outro=2.5, duck_db=12.0, fade_in=0.5, fade_out=1.5, min_seconds=0.0)
    mixed, rate = mix_voice_over(voice, voice_rate, music, RATE, settings)
    assert rate == RATE and abs(len(mixed) / rate - 8.5) < 0.01
    assert abs(loudness(mixed, rate) + 16.0) < 0.5
    # Music alone before the voice, versus the music band while the voice speaks: 880 Hz energy by FFT.
    def band_level(segment: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
        frequencies = np.fft.rfftfreq(len(segment), 1 / rate)
        return float(spectrum[(frequencies > 860) & (frequencies < 900)].max())
    before = band_level(mixed[int(0.8 * rate):int(1.8 * rate)])
    during = band_level(mixed[int(3.0 * rate):int(4.0 * rate)])
    assert 20 * np.log10(before / during) == pytest.approx(12.0, abs=1.5)
    assert abs(mixed[0]) < 1e-3 and abs(mixed[-1]) < 1e-3  # faded in and out
    spot, _ = mix_voice_over(voice, voice_rate, music, RATE, MixSettings())  # a short voice still makes a 15 s spot
    assert abs(len(spot) / RATE - 15.0) < 0.01


def test_fade_and_bad_input() -> None:
    faded = fade(np.ones(100), 100, 0.5, 0.5)
    assert faded[0] == 0 and faded[-1] == 0 and faded[50] == 1
    with pytest.raises(AigcError, match="silent"):
        normalise_loudness(np.zeros(RATE), RATE)
    with pytest.raises(AigcError, match="too short to measure"):
        loudness(np.ones(100), RATE)
    with pytest.raises(AigcError, match="duck_db must be in 0..40"):
        mix_voice_over(_sine(300, 1, 0.5), RATE, _sine(600, 1, 0.5), RATE, MixSettings(duck_db=90))
