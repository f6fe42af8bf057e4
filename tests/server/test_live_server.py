"""``aigc serve`` as a real process on a free port, driven by the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError

openai = pytest.importorskip("openai", reason="the openai client is a test extra: pip install 'aigc-studio[test]'")
pytestmark = pytest.mark.slow  # a real server process: seconds of startup

MODEL = "e2e-copy"
ATTRIBUTES = "name[The Eagle], eatType[pub], food[French], area[riverside]"
STARTUP_TIMEOUT_S = 180  # generous: imports and model loading on a loaded CI machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(directory: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start ``aigc serve`` in ``directory`` (its var/ holds the database and keys); wait until healthy."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AIGC_DATABASE_URL": f"sqlite:///{directory / 'aigc.db'}"}
    # Output goes to a file: a pipe nobody reads would fill up and block the server's logging.
    with open(directory / "server.log", "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "aigc_studio.cli.main", "serve", "--port", str(port), "--model", MODEL, *args],
            cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
    process.log_path = directory / "server.log"
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"aigc serve exited with {process.returncode}:\n{stop_server(process)}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"aigc serve did not become healthy in {STARTUP_TIMEOUT_S} s:\n{stop_server(process)}")


def stop_server(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.log_path.read_text()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str]]:
    """One ``aigc serve`` process for the module (starting one costs seconds of imports and model loading)."""
    process, base = start_server(tmp_path_factory.mktemp("live"))
    try:
        yield process, base
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def server(live: tuple[subprocess.Popen, str]) -> str:
    return live[1]


@pytest.fixture(scope="module")
def sdk(server: str):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused-while-no-key-exists", max_retries=0)


def test_sdk_plain_completion(sdk):
    completion = sdk.completions.create(model=MODEL, prompt=ATTRIBUTES, max_tokens=40, seed=1)
    assert "Eagle" in completion.choices[0].text
    assert completion.usage.completion_tokens > 0 and completion.model == MODEL
    assert [model.id for model in sdk.models.list()] == [MODEL]


def test_sdk_streamed_completion(sdk):
    pieces = [chunk.choices[0].text for chunk in sdk.completions.create(model=MODEL, prompt=ATTRIBUTES, max_tokens=40,
                                                                          seed=2, stream=True) if chunk.choices]
    whole = sdk.completions.create(model=MODEL, prompt=ATTRIBUTES, max_tokens=40, seed=2)
    assert len(pieces) > 3 and "".join(pieces) == whole.choices[0].text


def test_sdk_three_candidates(sdk):
    completion = sdk.completions.create(model=MODEL, prompt=ATTRIBUTES, max_tokens=40, n=3, seed=3, temperature=1.0)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert len({choice.text for choice in completion.choices}) > 1


def test_sdk_chat_plain_and_streamed(sdk):
    messages = [{"role": "user", "content": ATTRIBUTES}]
    chat = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, seed=4, logprobs=True, top_logprobs=2)
    assert "Eagle" in chat.choices[0].message.content and chat.choices[0].message.role == "assistant"
    assert chat.choices[0].logprobs.content[0].top_logprobs
    stream = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, seed=4, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == chat.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens


def test_sdk_errors_are_typed(sdk):
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.completions.create(model="no-such-model", prompt="x")
    assert "not loaded" in missing.value.message
    with pytest.raises(openai.BadRequestError) as capped:
        sdk.completions.create(model=MODEL, prompt=ATTRIBUTES, max_tokens=100_000)
    assert capped.value.body["param"] == "max_tokens"


def test_concurrent_clients_share_the_engine(server):
    def call(seed: int) -> str:
        response = httpx.post(f"{server}/v1/completions", timeout=60,
                              json={"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 30, "seed": seed})
        return response.json()["choices"][0]["text"]

    alone = [call(seed) for seed in range(6)]
    together: dict[int, str] = {}
    threads = [threading.Thread(target=lambda s=seed: together.__setitem__(s, call(s))) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [together[seed] for seed in range(6)] == alone
    metrics = httpx.get(f"{server}/metrics").text
    assert 'aigc_engine_requests_finished_total{model="e2e-copy"}' in metrics


def test_a_client_that_disconnects_frees_its_rows(server):
    def tokens_generated() -> float:
        line = next(line for line in httpx.get(f"{server}/metrics").text.splitlines()
                    if line.startswith('aigc_tokens_generated_total{model="e2e-copy"}'))
        return float(line.split()[-1])

    before = tokens_generated()
    body = {"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 100, "min_tokens": 100, "stream": True, "seed": 6}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=60) as response:
        next(line for line in response.iter_lines() if line.startswith("data: "))
    # Left after the first event: the request must stop well before its 100 forced tokens.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and 'aigc_engine_running_requests{model="e2e-copy"} 0.0' not in httpx.get(f"{server}/metrics").text:
        time.sleep(0.1)
    time.sleep(0.5)
    assert tokens_generated() - before < 100


def test_sigterm_lets_a_running_stream_finish(live):
    """Runs last in this module: it stops the shared server (uvicorn waits for open responses, then the engine drains)."""
    process, base = live
    received: list[str] = []
    started = threading.Event()

    def stream() -> None:
        body = {"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 60, "min_tokens": 60, "stream": True, "seed": 5}
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    received.append(line[len("data: "):])
                    started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(30), "the stream did not start"
    process.send_signal(signal.SIGTERM)
    reader.join(60)
    output = stop_server(process)
    assert received[-1] == "[DONE]", output
    assert '"finish_reason":"length"' in received[-2].replace(" ", ""), received[-2]
    assert "Application shutdown complete" in output
    # uvicorn re-raises the signal once shut down, so the process ends as terminated by SIGTERM, not by a crash.
    assert process.returncode in (0, -signal.SIGTERM), output


def test_serve_refuses_an_unknown_model_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--model", "no-such-model", "--database-url", f"sqlite:///{tmp_path}/a.db"])
    assert isinstance(result.exception, AigcError) and "no-such-model" in str(result.exception)
