"""Server fixtures: settings on a temporary SQLite database, the bundled model loaded once, apps and clients."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.models.registry import resolve_model
from aigc_studio.server.app import create_app
from aigc_studio.settings import Settings

MODEL = "e2e-copy"
ATTRIBUTES = "name[The Eagle], eatType[pub], food[French], area[riverside]"


@pytest.fixture(scope="session")
def backend() -> BuiltinBackend:
    """The bundled e2e-copy model, loaded once (each app starts its own engine over it)."""
    return BuiltinBackend.from_directory(resolve_model(MODEL), name=MODEL)


def make_settings(directory: Path, key_file: Path, *, watermark: bool = True, **server: Any) -> Settings:
    """Settings on a fresh SQLite database under ``directory`` and the watermark key ``key_file`` (the fixed test
    key: with a random one, a 60-token text misses the detector's threshold now and then); ``server`` overrides
    limits. The engine runs in the app's process (a child process costs seconds to start per app): the engine
    process is tested in tests/generation/test_engine.py, behind the app in test_operations.py, and by every
    live ``aigc serve``."""
    return Settings(
        database_url=f"sqlite:///{directory / 'aigc.db'}",
        vault_key_file=directory / "vault.key",
        server={"rate_limit_per_minute": 0, "engine_process": False, **server},
        watermark={"key_file": key_file, "enabled": watermark},
    )


@pytest.fixture
def client_factory(tmp_path: Path, backend: BuiltinBackend, watermark_key_file: Path) -> Iterator[Callable[..., TestClient]]:
    """``client_factory(**server_settings)``: a started app (lifespan run) with its test client.

    Apps get a database of their own, unless ``directory`` names one to share (a restart, a second worker).
    """
    clients: list[TestClient] = []

    def make(*, watermark: bool = True, directory: Path | None = None, **server: Any) -> TestClient:
        directory = directory or tmp_path / f"app{len(clients)}"
        directory.mkdir(exist_ok=True)
        client = TestClient(create_app(make_settings(directory, watermark_key_file, watermark=watermark, **server), models=[backend]))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, backend: BuiltinBackend, watermark_key_file: Path) -> Iterator[TestClient]:
    """One app per test module with default limits (rate limiting off) and auth off (no keys yet)."""
    directory = tmp_path_factory.mktemp("server")
    with TestClient(create_app(make_settings(directory, watermark_key_file, max_n=8, max_tokens_cap=64), models=[backend])) as test_client:
        yield test_client


def parse_sse(text: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``"[DONE]"`` kept as the string)."""
    events = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                payload = line[len("data: "):]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def check_error(response, status: int, *, param: str | None = None, code: str | None = None) -> dict:
    """The response is an OpenAI error body with this status (and param / code when given)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture
def sse_events() -> Callable[[str], list[Any]]:
    """Parses an SSE body into its JSON payloads (see :func:`parse_sse`)."""
    return parse_sse


@pytest.fixture
def assert_error() -> Callable[..., dict]:
    """Checks an OpenAI error response (see :func:`check_error`)."""
    return check_error
