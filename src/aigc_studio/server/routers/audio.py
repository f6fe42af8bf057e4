"""Audio routes: OpenAI's ``POST /v1/audio/speech``, and the studio's jingles and audio ads.

* ``POST /v1/audio/speech`` takes OpenAI's body (``model``, ``input``, ``voice``, ``response_format``,
  ``speed``; extension ``language``) and answers the audio bytes. ``model`` names the engine (``espeak``;
  OpenAI's ``tts-1``/``tts-1-hd``/``gpt-4o-mini-tts`` mean the default engine); ``voice`` is an espeak-ng voice
  or one of OpenAI's voice names, which map to espeak-ng voices (:data:`OPENAI_VOICES`).
* ``POST /v1/audio/jingles`` composes tunes (:func:`aigc_studio.music.compose.compose`) and answers each
  with its tokens, record, and audio (MP3 when ffmpeg is present, else WAV) and MIDI as base64.
* ``POST /v1/audio/ads`` answers a ready ad (voice-over over a composed jingle or a recent one).
* ``POST /v1/audio/library`` keeps a recently made jingle or ad in the content library;
  ``GET /v1/audio/library/{id}`` answers its audio.

Recent results are held in this process (the last :data:`RECENT_LIMIT`), so saving works against the replica
that made them; the library itself is in the database. The schemas live here, beside their only user.
"""

from __future__ import annotations

import base64
import functools
import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from aigc_studio.errors import AigcError
from aigc_studio.server import protocol as p
from aigc_studio.server.state import ServerState
from aigc_studio.store.library import ContentLibrary, ContentNotFoundError, NewContentItem

router = APIRouter(prefix="/v1", tags=["audio"], responses=p.ERROR_RESPONSES)

AUDIO_TASK = "audio"
RECENT_LIMIT = 64
MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's voice names -> espeak-ng voices (espeak's +f/+m variants give some variety of pitch and timbre).
OPENAI_VOICES: dict[str, str] = {"alloy": "en-us", "ash": "en-us+m3", "ballad": "en-gb+m2", "coral": "en-us+f2",
                                 "echo": "en-gb", "fable": "en-gb-scotland", "onyx": "en-us+m1", "nova": "en-us+f3",
                                 "sage": "en-us+f4", "shimmer": "en-us+f1", "verse": "en-gb+m4"}
_CJK = re.compile(r"[\u3400-\u9fff]")


class SpeechRequest(p.OpenAIBaseModel):
    """OpenAI's speech request, in its field order, then this server's extension."""

    model: str = Field("espeak", description="voice engine: espeak (tts-1 and the other OpenAI names mean espeak)")
    input: str = Field(description="the text to speak, at most 4096 characters")
    voice: str = Field("alloy", description="an OpenAI voice name or an espeak-ng voice (en-gb, cmn, en-us+f3)")
    response_format: Literal["wav", "mp3", "ogg"] = "wav"
    speed: float = Field(1.0, description="0.5-2.5 (1.0 normal)")
    # --- extensions
    language: Literal["en", "zh"] | None = Field(None, description="en or zh; default: zh when the text has Chinese characters")


class JingleRequest(p.StrictModel):
    model: str = Field("jingle", description="a music model: a bundled name or a model directory")
    key: str = "C"
    mode: str = "major"
    meter: str = "4/4"
    bars: int = 8
    tempo: float = 120.0
    instrument: str = "acoustic grand piano"
    n: int = Field(1, ge=1, le=4)
    seed: int = 0
    temperature: float = 1.0


class AudioFile(BaseModel):
    id: str = Field(description="keep it in the library with POST /v1/audio/library")
    format: Literal["wav", "mp3", "ogg"]
    b64_audio: str
    b64_midi: str | None = None
    tokens: str | None = None
    seconds: float
    provenance: dict[str, Any]


class JingleResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[AudioFile]


class AdRequest(p.StrictModel):
    copy_text: str = Field(alias="copy", description="the ad's words, or a content-library id")
    jingle: str = Field("jingle", description="a music model, or the id of a recent jingle")
    language: Literal["en", "zh"] = "en"
    voice: str | None = None
    speed: float = 1.0
    key: str = "C"
    mode: str = "major"
    meter: str = "4/4"
    tempo: float = 120.0
    instrument: str = "acoustic grand piano"
    seed: int = 0
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AudioSaveRequest(p.StrictModel):
    id: str = Field(description="the id of a jingle or ad made by this server")
    title: str | None = Field(None, max_length=200)
    tags: list[str] = Field(default_factory=list)


class _Recent:
    """The last results, by id: ``(format, audio bytes, record)``."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[str, bytes, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, fmt: str, data: bytes, record: dict[str, Any]) -> str:
        item_id = uuid.uuid4().hex
        with self._lock:
            self._items[item_id] = (fmt, data, record)
            while len(self._items) > RECENT_LIMIT:
                self._items.popitem(last=False)
        return item_id

    def get(self, item_id: str) -> tuple[str, bytes, dict[str, Any]]:
        with self._lock:
            if item_id not in self._items:
                raise ContentNotFoundError(f"no recent audio {item_id!r} on this server (it keeps the last {RECENT_LIMIT}); "
                                           "compose it again", param="id")
            return self._items[item_id]


_recent = _Recent()


@functools.lru_cache(maxsize=4)
def _music_model(name: str):  # -> MusicModel; cached: loading reads the weights and the copy index
    from aigc_studio.music.compose import MusicModel

    return MusicModel(name)


def _best_file(files: dict[str, str], directory: Path) -> tuple[str, bytes]:
    fmt = "mp3" if "mp3" in files else "wav"
    return fmt, (directory / files[fmt]).read_bytes()


def _speech(body: SpeechRequest) -> tuple[bytes, str]:
    from aigc_studio.audio.tts import synthesize_to_file

    if body.model not in ("espeak", "piper", *OPENAI_MODELS):
        raise AigcError(f"unknown speech model {body.model!r}; use espeak (or tts-1, which means espeak)", param="model")
    engine = "piper" if body.model == "piper" else "espeak"
    language = body.language or ("zh" if _CJK.search(body.input or "") else "en")
    voice = OPENAI_VOICES.get(body.voice, body.voice)
    if language == "zh" and body.voice in OPENAI_VOICES:
        voice = "cmn"  # OpenAI's voices are language-neutral; espeak needs its Mandarin voice for Chinese
    with tempfile.TemporaryDirectory(prefix="aigc-speech-") as scratch:
        out = Path(scratch) / f"speech.{body.response_format}"
        synthesize_to_file(body.input, out, lang=language, voice=voice, rate=body.speed, engine=engine)
        return out.read_bytes(), MEDIA_TYPES[body.response_format]


@router.post("/audio/speech", response_class=Response, responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}})
async def create_speech(body: SpeechRequest) -> Response:
    """Speak the input (OpenAI's speech endpoint); the audio carries its provenance record."""
    data, media_type = await anyio.to_thread.run_sync(_speech, body)
    return Response(data, media_type=media_type)


def _jingles(body: JingleRequest) -> JingleResponse:
    from aigc_studio.music.compose import ComposeRequest, compose

    request = ComposeRequest(key=body.key, mode=body.mode, meter=body.meter, bars=body.bars, tempo=body.tempo,
                             instrument=body.instrument, n=body.n, seed=body.seed, temperature=body.temperature)
    request.validate()  # before the model loads, so a bad field is named first
    model = _music_model(body.model)
    files = []
    with tempfile.TemporaryDirectory(prefix="aigc-jingles-") as scratch:
        result = compose(model, request, scratch)
        for tune in result.tunes:
            fmt, audio = _best_file(tune.files, Path(scratch))
            record = {"kind": "jingle", "model": model.name, "model_sha256": model.weights_sha256, "seed": tune.seed,
                      "index": tune.index, "tokens": tune.tokens, "request": body.model_dump(),
                      "longest_copied_run": tune.longest_copied_run}
            midi = (Path(scratch) / tune.files["mid"]).read_bytes()
            seconds = _seconds(Path(scratch) / tune.files["wav"])
            item_id = _recent.put(fmt, audio, record)
            files.append(AudioFile(id=item_id, format=fmt, b64_audio=base64.b64encode(audio).decode(),
                                   b64_midi=base64.b64encode(midi).decode(), tokens=tune.tokens, seconds=seconds,
                                   provenance=record))
    return JingleResponse(data=files)


def _seconds(wav: Path) -> float:
    import soundfile as sf

    return round(sf.info(str(wav)).duration, 2)


@router.post("/audio/jingles", response_model=JingleResponse)
async def create_jingles(body: JingleRequest) -> JingleResponse:
    """Compose 1-4 jingles (whole bars, ending on the tonic, checked for copying) rendered to audio."""
    return await anyio.to_thread.run_sync(_jingles, body)


def _ad(body: AdRequest, database_url: str) -> AudioFile:
    from aigc_studio.audio.ad import AdRequest as LibraryAdRequest, make_audio_ad
    from aigc_studio.audio.provenance import ffmpeg_available

    fmt = "mp3" if ffmpeg_available() else "wav"
    with tempfile.TemporaryDirectory(prefix="aigc-ad-") as scratch:
        jingle = body.jingle
        if re.fullmatch(r"[0-9a-f]{32}", jingle):  # a recent jingle: mix over its audio
            jingle_format, audio, _ = _recent.get(jingle)
            jingle = str(Path(scratch) / f"jingle.{jingle_format}")
            Path(jingle).write_bytes(audio)
        request = LibraryAdRequest(copy=body.copy_text, jingle=jingle, lang=body.language, voice=body.voice,
                                   rate=body.speed, key=body.key, mode=body.mode, meter=body.meter, tempo=body.tempo,
                                   instrument=body.instrument, seed=body.seed)
        out = Path(scratch) / f"ad.{fmt}"
        result = make_audio_ad(request, out, database_url=database_url)
        data = out.read_bytes()
    record = {**result.record.model_dump(), "copy": result.copy}
    item_id = _recent.put(fmt, data, record)
    return AudioFile(id=item_id, format=fmt, b64_audio=base64.b64encode(data).decode(), tokens=result.record.tokens,
                     seconds=round(result.seconds, 2), provenance=record)


@router.post("/audio/ads", response_model=AudioFile)
async def create_ad(body: AdRequest, request: Request) -> AudioFile:
    """A ready audio ad: the copy spoken over a jingle, ducked, faded, at -16 LUFS."""
    state: ServerState = request.app.state.server
    return await anyio.to_thread.run_sync(_ad, body, state.settings.database_url)


@router.post("/audio/library", response_model=p.LibraryItem, status_code=201)
def save_audio(body: AudioSaveRequest, request: Request) -> p.LibraryItem:
    """Keep a recent jingle or ad (audio, tokens and record) in the content library."""
    state: ServerState = request.app.state.server
    fmt, data, record = _recent.get(body.id)
    kind = record.get("kind", "audio")
    description = record.get("copy") or f"{kind} by {record.get('model')} (seed {record.get('seed')})"
    item = NewContentItem(task=AUDIO_TASK, title=body.title or f"{kind}: {description[:60]}",
                          text=f"{description}\n{record.get('tokens') or ''}".strip(),
                          request={"kind": kind, "format": fmt, "audio_b64": base64.b64encode(data).decode(),
                                   "provenance": record}, tags=body.tags)
    return p.LibraryItem.from_info(ContentLibrary(state.database).save(item))


@router.get("/audio/library/{item_id}", response_class=Response, responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}}})
def get_audio(item_id: str, request: Request) -> Response:
    """The audio of a jingle or ad kept in the library."""
    state: ServerState = request.app.state.server
    info = ContentLibrary(state.database).get(item_id)
    stored = info.request if isinstance(info.request, dict) else {}
    if info.task != AUDIO_TASK or "audio_b64" not in stored:
        raise ContentNotFoundError(f"library item {item_id} holds no audio", param="item_id")
    fmt = stored.get("format", "wav")
    return Response(base64.b64decode(stored["audio_b64"]), media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
                    headers={"Content-Disposition": f'inline; filename="{AUDIO_TASK}-{item_id}.{fmt}"'})
