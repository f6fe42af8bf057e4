"""Audio ads: a voice-over of ad copy mixed over a jingle (``aigc audio-ad``, the studio's "make an ad").

:func:`make_audio_ad`:

1. the copy: the text itself, or the text of a content-library item when ``copy`` is one's id;
2. the voice-over with a voice engine (:mod:`aigc_studio.audio.tts`);
3. the jingle: an audio file (WAV/MP3/Ogg), or a music model that composes one long enough to carry the voice
   (intro + voice + outro, and at least ``min_seconds``, at the tempo and meter asked; a longer ad loops the tune);
4. :func:`aigc_studio.audio.mix.mix_voice_over`: ducking, fades, -16 LUFS (measured again and recorded);
5. the file (WAV, or MP3/Ogg through ffmpeg) with its provenance inside and beside it.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from aigc_studio.audio.mix import MixSettings, loudness, mix_voice_over
from aigc_studio.audio.provenance import AudioProvenance, encode_compressed, samples_sha256, write_wav
from aigc_studio.audio.tts import check_text, get_engine
from aigc_studio.errors import AigcError

AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".flac")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class AdRequest:
    """What goes into an audio ad."""

    copy: str
    jingle: str = "jingle"  # an audio file, or a music model's name or directory
    lang: str = "en"
    voice: str | None = None
    engine: str = "espeak"
    rate: float = 1.0
    key: str = "C"
    mode: str = "major"
    meter: str = "4/4"
    tempo: float = 120.0
    instrument: str = "acoustic grand piano"
    seed: int = 0
    mix: MixSettings = field(default_factory=MixSettings)


@dataclass
class AdResult:
    path: Path
    seconds: float
    lufs: float
    copy: str
    record: AudioProvenance


def resolve_copy(copy: str, database_url: str | None = None) -> str:
    """The ad's words: the text of library item ``copy`` when it is a content-library id, else ``copy`` itself."""
    if _UUID.match(copy.strip()):
        from aigc_studio.settings import load_settings
        from aigc_studio.store.db import Database
        from aigc_studio.store.library import ContentLibrary

        database = Database(database_url or load_settings().database_url)
        try:
            return ContentLibrary(database).get(copy.strip()).text
        finally:
            database.close()
    return check_text(copy)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float samples and rate of an audio file. Raises AigcError when it cannot be read."""
    try:
        samples, rate = sf.read(str(path), dtype="float64")
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AigcError(f"cannot read {path} as audio ({error}); use a WAV, MP3, Ogg or FLAC file", param="jingle") from None
    return (samples.mean(axis=1) if samples.ndim == 2 else samples), rate


def _composed_jingle(request: AdRequest, seconds: float, scratch: Path) -> tuple[np.ndarray, int, str]:
    """Compose one tune long enough for ``seconds`` (at most 32 bars; the mixer loops it) and read its WAV."""
    from aigc_studio.music.compose import ComposeRequest, MusicModel, compose
    from aigc_studio.music.tokens import parse_meter

    meter = parse_meter(request.meter)
    bar_seconds = meter.bar_units / 4 * 60 / request.tempo
    bars = min(32, max(4, 2 * math.ceil(seconds / bar_seconds / 2)))  # an even number of bars: phrases come in pairs
    compose_request = ComposeRequest(key=request.key, mode=request.mode, meter=request.meter, bars=bars,
                                     tempo=request.tempo, instrument=request.instrument, n=1, seed=request.seed,
                                     formats=("wav",))
    result = compose(MusicModel(request.jingle), compose_request, scratch)
    samples, rate = read_audio(scratch / result.tunes[0].files["wav"])
    return samples, rate, result.tunes[0].tokens


def make_audio_ad(request: AdRequest, out: str | Path, *, database_url: str | None = None) -> AdResult:
    """Build the ad (see the module docstring) into ``out`` (``.wav``, ``.mp3`` or ``.ogg``).

    Raises:
        AigcError: empty copy, an unknown library id, a bad voice or jingle, or an unsupported output suffix.
    """
    out = Path(out)
    if out.suffix not in (".wav", ".mp3", ".ogg"):
        raise AigcError(f"--out {out.name} must end in .wav, .mp3 or .ogg", param="out")
    request.mix.validate()
    # 1. copy, 2. voice
    text = resolve_copy(request.copy, database_url)
    speech = get_engine(request.engine).synthesize(text, lang=request.lang, voice=request.voice, rate=request.rate)
    with tempfile.TemporaryDirectory(prefix="aigc-ad-") as scratch:
        # 3. jingle
        tokens = None
        jingle_path = Path(request.jingle)
        if jingle_path.suffix.lower() in AUDIO_SUFFIXES:
            if not jingle_path.is_file():
                raise AigcError(f"jingle file {jingle_path} not found", param="jingle")
            music, music_rate = read_audio(jingle_path)
        else:
            needed = max(request.mix.intro + speech.seconds + request.mix.outro, request.mix.min_seconds)
            music, music_rate, tokens = _composed_jingle(request, needed, Path(scratch))
        # 4. mix
        mixed, rate = mix_voice_over(speech.samples, speech.sample_rate, music, music_rate, request.mix)
        measured = loudness(mixed, rate)
        # 5. write
        record = AudioProvenance(
            kind="audio-ad", model=None if tokens is None else request.jingle, engine=f"{speech.engine}:{speech.voice}",
            seed=request.seed, tokens=tokens,
            parameters={"copy_sha256": hashlib.sha256(text.encode()).hexdigest(), "lang": request.lang,
                        "rate": request.rate, "key": request.key, "mode": request.mode, "meter": request.meter,
                        "tempo": request.tempo, "instrument": request.instrument, "lufs": round(measured, 2),
                        "mix": vars(request.mix)},
            sources=[samples_sha256(speech.samples, speech.sample_rate), samples_sha256(music, music_rate)],
        )
        if out.suffix == ".wav":
            written = write_wav(out, mixed, rate, record)
        else:
            wav = Path(scratch) / "ad.wav"
            written = write_wav(wav, mixed, rate, record)
            encode_compressed(wav, out, written)
    return AdResult(path=out, seconds=len(mixed) / rate, lufs=measured, copy=text, record=written)
