"""The audio API: OpenAI's /v1/audio/speech, and the studio's jingles, ads and library, over a started app."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from aigc_studio.audio.mix import loudness
from aigc_studio.server.app import create_app
from aigc_studio.settings import Settings

from .conftest import needs_fluidsynth

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is missing; `make audio-tools`")


@pytest.fixture(scope="module")
def audio_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = tmp_path_factory.mktemp("audio-server")
    settings = Settings(database_url=f"sqlite:///{directory / 'aigc.db'}", vault_key_file=directory / "vault.key",
                        server={"rate_limit_per_minute": 0}, watermark={"key_file": directory / "watermark.key"})
    with TestClient(create_app(settings, models=[])) as client:
        yield client


@needs_espeak
@pytest.mark.parametrize("body, media_type", [
    ({"model": "tts-1", "input": "Fresh bread every morning.", "voice": "nova"}, "audio/wav"),
    ({"input": "每天早上都有新鲜面包。", "voice": "alloy", "response_format": "wav", "speed": 1.2}, "audio/wav"),
])
def test_speech_in_openai_shape(audio_client: TestClient, body: dict, media_type: str) -> None:
    response = audio_client.post("/v1/audio/speech", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    samples, rate = sf.read(io.BytesIO(response.content))
    assert len(samples) / rate > 1.0


@pytest.mark.parametrize("body, param, message", [
    ({"input": "", "voice": "alloy"}, "input", "the text to speak is empty"),
    ({"input": "hi", "voice": "alloy", "speed": 7}, "speed", "out of range"),
    ({"input": "hi", "voice": "alloy", "model": "whisper"}, "model", "unknown speech model"),
])
def test_bad_speech_requests_are_400s_naming_the_field(audio_client: TestClient, body: dict, param: str, message: str) -> None:
    response = audio_client.post("/v1/audio/speech", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"]


@needs_fluidsynth
@needs_espeak
def test_compose_save_and_ad(audio_client: TestClient, music_model: Path) -> None:
    body = {"model": str(music_model), "meter": "2/4", "bars": 4, "n": 2, "seed": 4, "key": "A", "mode": "minor"}
    response = audio_client.post("/v1/audio/jingles", json=body)
    assert response.status_code == 200, response.text
    tunes = response.json()["data"]
    assert len(tunes) == 2 and all(t["tokens"].count("|") == 4 and base64.b64decode(t["b64_midi"])[:4] == b"MThd" for t in tunes)
    saved = audio_client.post("/v1/audio/library", json={"id": tunes[0]["id"], "tags": ["jingle"]})
    assert saved.status_code == 201, saved.text
    audio = audio_client.get(f"/v1/audio/library/{saved.json()['id']}")
    assert audio.status_code == 200 and audio.content == base64.b64decode(tunes[0]["b64_audio"])
    ad = audio_client.post("/v1/audio/ads", json={"copy": "The Eagle. French food by the river.", "jingle": tunes[1]["id"]})
    assert ad.status_code == 200, ad.text
    samples, rate = sf.read(io.BytesIO(base64.b64decode(ad.json()["b64_audio"])))
    assert abs(loudness(samples, rate) + 16.0) < 1.0  # MP3 encoding moves the level a little
    bad = audio_client.post("/v1/audio/jingles", json={**body, "meter": "0/4"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "meter"
