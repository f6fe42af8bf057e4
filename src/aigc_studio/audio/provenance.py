"""Provenance of generated audio: a sidecar JSON next to every file and the same record inside the file.

The record (:class:`AudioProvenance`) says what made the sound: generator, kind (``jingle``, ``voice``,
``audio-ad``), model and its weights hash, seed, parameters, the tune's tokens for a jingle, and the sha256
of the decoded samples. It is written

* into WAV files as the ``ICMT`` (comment) entry of the RIFF ``LIST/INFO`` chunk (libsndfile's ``comment``),
* into MP3 files as an ID3 comment and into Ogg files as a Vorbis comment (ffmpeg ``-metadata comment=...``),
* and as ``<file>.json`` beside the file.

:func:`verify_wav` recomputes the samples' hash, so an edited WAV fails while a re-saved identical one passes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aigc_studio import __version__
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json, atomic_write_with

GENERATOR = f"aigc-studio/{__version__}"
SAMPLE_RATE = 44100


class AudioProvenance(BaseModel):
    """What produced one audio file; stored beside it and inside it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    generator: str = GENERATOR
    kind: Literal["jingle", "voice", "audio-ad"]
    model: str | None = Field(None, description="the composing model's name or directory as given")
    model_sha256: str | None = None
    engine: str | None = Field(None, description="the voice engine, for speech")
    seed: int | None = None
    index: int = 0
    parameters: dict[str, Any] = Field(default_factory=dict)
    tokens: str | None = Field(None, description="a jingle's music tokens in its training key")
    sources: list[str] = Field(default_factory=list, description="sha256 of the audio an ad was mixed from")
    created: str = Field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    samples_sha256: str = ""


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit integers (what the WAV stores), or int16 samples unchanged."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    return np.clip(np.round(samples.astype(np.float64) * 32767), -32768, 32767).astype(np.int16)


def samples_sha256(samples: np.ndarray, sample_rate: int) -> str:
    """sha256 of the samples as 16-bit PCM (what a WAV holds), with the rate and channel count."""
    pcm = to_pcm16(samples).astype("<i2")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    digest = hashlib.sha256(f"{sample_rate}:{channels}:".encode())
    digest.update(pcm.tobytes())
    return digest.hexdigest()


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, record: AudioProvenance) -> AudioProvenance:
    """Atomically write a 16-bit WAV carrying ``record`` (its ``samples_sha256`` filled in) and its sidecar JSON.

    Returns:
        The record as written.
    """
    path = Path(path)
    pcm = to_pcm16(samples)  # quantised once here, so the hash is of exactly what the file holds
    record = record.model_copy(update={"samples_sha256": samples_sha256(pcm, sample_rate)})
    payload = record.model_dump_json()

    def write(tmp: Path) -> None:
        with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1 if samples.ndim == 1 else samples.shape[1],
                          subtype="PCM_16", format="WAV") as handle:
            handle.comment = payload
            handle.software = GENERATOR
            handle.write(pcm)

    atomic_write_with(path, write)
    atomic_write_json(sidecar_path(path), record.model_dump())
    return record


def sidecar_path(path: str | Path) -> Path:
    """``tune.wav`` -> ``tune.wav.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def encode_compressed(wav_path: str | Path, out_path: str | Path, record: AudioProvenance) -> Path:
    """Encode a WAV to MP3 or Ogg Vorbis (by ``out_path``'s suffix) with ffmpeg, the record as its comment tag.

    Raises:
        AigcError: ffmpeg is not installed (install it: ``make audio-tools``), an unsupported suffix, or ffmpeg fails.
    """
    out_path = Path(out_path)
    codecs = {".mp3": ["-codec:a", "libmp3lame", "-q:a", "4", "-id3v2_version", "3"], ".ogg": ["-codec:a", "libvorbis", "-q:a", "4"]}
    if out_path.suffix not in codecs:
        raise AigcError(f"cannot encode {out_path.name}: use .mp3 or .ogg (or .wav)", param="out")
    if not ffmpeg_available():
        raise AigcError("ffmpeg is not installed, so no MP3/Ogg can be written; run `make audio-tools` or write .wav", param="out")

    def write(tmp: Path) -> None:
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav_path), *codecs[out_path.suffix],
                   "-metadata", f"comment={record.model_dump_json()}", "-metadata", f"encoded_by={GENERATOR}",
                   "-f", out_path.suffix[1:], str(tmp)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AigcError(f"ffmpeg could not encode {out_path.name}: {result.stderr.strip()[-300:]}")

    atomic_write_with(out_path, write)
    atomic_write_json(sidecar_path(out_path), record.model_dump())
    return out_path


@dataclass
class AudioVerification:
    """The outcome of :func:`verify_wav`."""

    record: AudioProvenance | None
    valid: bool
    reason: str


def verify_wav(path: str | Path) -> AudioVerification:
    """Read the record inside a WAV and check it against the samples.

    Returns:
        ``valid`` when the file carries a record whose ``samples_sha256`` matches its samples; otherwise the reason.
    """
    try:
        with sf.SoundFile(path) as handle:
            comment = handle.copy_metadata().get("comment")
            samples = handle.read(dtype="int16")
            rate = handle.samplerate
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AigcError(f"cannot read {path} as audio: {error}") from None
    if not comment:
        return AudioVerification(None, False, "no provenance record in the file")
    try:
        record = AudioProvenance.model_validate(json.loads(comment))
    except (json.JSONDecodeError, ValidationError):
        return AudioVerification(None, False, "the file's comment is not an aigc provenance record")
    if record.samples_sha256 != samples_sha256(samples, rate):
        return AudioVerification(record, False, "the samples were changed after the record was written")
    return AudioVerification(record, True, "the record matches the samples")
