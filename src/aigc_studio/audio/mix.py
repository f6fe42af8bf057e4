"""Mixing a voice-over over a jingle: loudness (ITU-R BS.1770), ducking, fades.

Loudness is integrated loudness in LUFS, measured with ``pyloudnorm`` (ITU-R BS.1770-4: K-weighting, 400 ms
blocks with 75 % overlap, the -70 LUFS absolute and -10 LU relative gates). :func:`normalise_loudness`
applies the one gain that brings a signal to a target (-16 LUFS by default, the usual target for spoken
content on streaming and social platforms) and then limits true peaks with a soft knee only if the gain would
clip, re-measuring so the result stays within 0.5 LU of the target.

:func:`mix_voice_over` builds an ad:

1. resample both to 44.1 kHz mono; the voice is brought to -16 LUFS and the music to ``music_lufs`` (-24);
2. the music plays alone for ``intro`` seconds, the voice follows, the music runs ``outro`` seconds after it
   (longer when needed to make the spot ``min_seconds`` long: radio and social spots are 15-30 s);
3. **ducking**: while the voice speaks (its short-term envelope above a gate) the music drops by
   ``duck_db``; the gain moves with attack/release smoothing so there are no clicks;
4. fades in and out on the music, the sum normalised to -16 LUFS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyloudnorm

from aigc_studio.errors import AigcError

TARGET_LUFS = -16.0
SAMPLE_RATE = 44100


def loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4). Silence (or anything gated away) is ``-inf``.

    Raises:
        AigcError: the signal is shorter than one 400 ms measurement block.
    """
    if len(samples) < int(0.4 * sample_rate):
        raise AigcError(f"audio of {len(samples) / sample_rate:.2f} s is too short to measure loudness; it needs at least 0.4 s")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(samples, dtype=np.float64)))


def normalise_loudness(samples: np.ndarray, sample_rate: int, target: float = TARGET_LUFS) -> np.ndarray:
    """``samples`` with the gain that makes their integrated loudness ``target`` LUFS, peaks kept under 0 dBFS.

    Raises:
        AigcError: the signal is silent (no loudness to scale) or too short to measure.
    """
    measured = loudness(samples, sample_rate)
    if not np.isfinite(measured):
        raise AigcError("the audio is silent, so its loudness cannot be normalised")
    out = np.asarray(samples, dtype=np.float64) * 10 ** ((target - measured) / 20)
    for _ in range(4):  # a soft limiter lowers the loudness a little; re-aim until within 0.1 LU
        peak = float(np.max(np.abs(out)))
        if peak <= 0.99:
            break
        out = _soft_limit(out)
        out *= 10 ** ((target - loudness(out, sample_rate)) / 20)
    return np.clip(out, -1.0, 1.0)


def _soft_limit(samples: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """A tanh knee above ``threshold``: loud peaks are rounded off instead of clipped."""
    magnitude = np.abs(samples)
    over = magnitude > threshold
    limited = samples.copy()
    headroom = 1.0 - threshold
    limited[over] = np.sign(samples[over]) * (threshold + headroom * np.tanh((magnitude[over] - threshold) / headroom))
    return limited


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (N, C) signal; a 1-D signal is returned as float64."""
    samples = np.asarray(samples, dtype=np.float64)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, source_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Linear-interpolation resampling (enough for speech at 22.05 kHz going to 44.1 kHz)."""
    if source_rate == target_rate:
        return samples
    duration = len(samples) / source_rate
    positions = np.arange(int(round(duration * target_rate))) / target_rate
    return np.interp(positions, np.arange(len(samples)) / source_rate, samples)


def fade(samples: np.ndarray, sample_rate: int, fade_in: float, fade_out: float) -> np.ndarray:
    """Linear fades of ``fade_in`` and ``fade_out`` seconds at the two ends."""
    out = samples.copy()
    n_in, n_out = min(len(out), int(fade_in * sample_rate)), min(len(out), int(fade_out * sample_rate))
    if n_in:
        out[:n_in] *= np.linspace(0.0, 1.0, n_in)
    if n_out:
        out[len(out) - n_out:] *= np.linspace(1.0, 0.0, n_out)
    return out


def ducking_gain(voice: np.ndarray, sample_rate: int, duck_db: float, *, attack: float = 0.05, release: float = 0.4,
                 gate_db: float = -40.0) -> np.ndarray:
    """The music's gain curve (1 = untouched) that drops by ``duck_db`` while ``voice`` is active.

    Voice activity is the 20 ms RMS envelope above ``gate_db`` dBFS, held through pauses shorter than the
    release; the gain ramps down over ``attack`` seconds and back up over ``release`` seconds.
    """
    window = max(1, int(0.02 * sample_rate))
    energy = np.convolve(voice ** 2, np.ones(window) / window, mode="same")
    active = 10 * np.log10(energy + 1e-12) > gate_db
    # The smoothing runs on 1 ms blocks (a block is active if any of its samples is), then is interpolated
    # back to samples: a recursive filter with two speeds has no numpy form, and 1 ms is far below what
    # the ear resolves in a gain change.
    block = max(1, sample_rate // 1000)
    blocks = -(-len(active) // block)
    padded = np.zeros(blocks * block, dtype=bool)
    padded[:len(active)] = active
    target = np.where(padded.reshape(blocks, block).any(axis=1), 10 ** (-abs(duck_db) / 20), 1.0)
    down, up = np.exp(-block / (attack * sample_rate)), np.exp(-block / (release * sample_rate))
    levels = np.empty(blocks)
    level = 1.0
    for i, goal in enumerate(target):
        coefficient = down if goal < level else up
        level = coefficient * level + (1 - coefficient) * goal
        levels[i] = level
    return np.interp(np.arange(len(voice)), np.arange(blocks) * block + block / 2, levels)


@dataclass
class MixSettings:
    """How :func:`mix_voice_over` lays the voice over the music."""

    intro: float = 2.0  # seconds of music before the voice starts
    outro: float = 2.5  # seconds of music after the voice ends (at least)
    min_seconds: float = 15.0  # the shortest spot: a short voice-over gets a longer musical tail
    duck_db: float = 12.0  # how far the music drops under the voice
    music_lufs: float = -24.0  # the music's level before ducking, below the voice's -16
    fade_in: float = 0.5
    fade_out: float = 1.5
    target_lufs: float = TARGET_LUFS

    def validate(self) -> None:
        """Raises AigcError naming a negative time or a ducking depth outside 0-40 dB."""
        for name in ("intro", "outro", "fade_in", "fade_out", "min_seconds"):
            if getattr(self, name) < 0:
                raise AigcError(f"{name} must be >= 0 seconds, got {getattr(self, name)}", param=name)
        if not 0 <= self.duck_db <= 40:
            raise AigcError(f"duck_db must be in 0..40 dB, got {self.duck_db}", param="duck_db")


def mix_voice_over(voice: np.ndarray, voice_rate: int, music: np.ndarray, music_rate: int,
                   settings: MixSettings | None = None) -> tuple[np.ndarray, int]:
    """Mix ``voice`` over ``music`` (see the module docstring); the music loops if it is shorter than needed.

    Returns:
        ``(samples, sample_rate)``: mono float samples at 44.1 kHz at ``settings.target_lufs``.

    Raises:
        AigcError: silent or too-short inputs, or bad settings.
    """
    settings = settings or MixSettings()
    settings.validate()
    rate = SAMPLE_RATE
    voice = normalise_loudness(resample(to_mono(voice), voice_rate, rate), rate, TARGET_LUFS)
    music = normalise_loudness(resample(to_mono(music), music_rate, rate), rate, settings.music_lufs)
    start = int(settings.intro * rate)
    total = max(start + len(voice) + int(settings.outro * rate), int(settings.min_seconds * rate))
    if len(music) < total:
        music = np.tile(music, int(np.ceil(total / len(music))))
    music = fade(music[:total], rate, settings.fade_in, settings.fade_out)
    voice_track = np.zeros(total)
    voice_track[start:start + len(voice)] = voice
    mixed = music * ducking_gain(voice_track, rate, settings.duck_db) + voice_track
    return normalise_loudness(mixed, rate, settings.target_lufs), rate
