"""``aigc serve`` as a real process on a free port, driven by the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError
from aigc_studio.server.launcher import ServerProcess, start_server

openai = pytest.importorskip("openai", reason="the openai client is a test extra: pip install 'aigc-studio[test]'")
pytestmark = pytest.mark.slow  # a real server process: seconds of startup

MODEL = "e2e-copy"
ATTRIBUTES = "name[The Eagle], eatType[pub], food[French], area[riverside]"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, watermark_key_file: Path) -> Iterator[ServerProcess]:
    """One ``aigc serve`` process for the module (starting one costs seconds of imports and model loading)."""
    with start_server(tmp_path_factory.mktemp("live"), "--model", MODEL,
                      env={"AIGC_WATERMARK__KEY_FILE": str(watermark_key_file)}) as process:
        yield process


@pytest.fixture(scope="module")
def server(live: ServerProcess) -> str:
    return live.url


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
    # Batched rows round differently from a lone row (other matmul shapes), so a token whose two best
    # candidates sit within rounding of each other can flip and the texts part ways; the engine's promise is
    # the same seeds, not the same bits. Broken seeding would change every text.
    same = sum(together[seed] == text for seed, text in enumerate(alone))
    assert same >= 5, (alone, together)
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
    process, base = live.process, live.url
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
    live.stop()
    output = live.log_text(last=100_000)
    assert received[-1] == "[DONE]", output
    assert '"finish_reason":"length"' in received[-2].replace(" ", ""), received[-2]
    assert "Application shutdown complete" in output
    # uvicorn re-raises the signal once shut down, so the process ends as terminated by SIGTERM, not by a crash.
    assert process.returncode in (0, -signal.SIGTERM), output


def test_serve_refuses_an_unknown_model_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--model", "no-such-model", "--database-url", f"sqlite:///{tmp_path}/a.db"])
    assert isinstance(result.exception, AigcError) and "no-such-model" in str(result.exception)


def test_a_server_that_cannot_start_is_reported_with_its_output(tmp_path):
    from aigc_studio.server.launcher import ServerStartError

    with pytest.raises(ServerStartError, match="(?s)exited with.*no-such-model"):
        start_server(tmp_path, "--model", "no-such-model", timeout=120)


def test_serve_quantize_loads_every_served_model_in_int8(tmp_path, monkeypatch):
    import uvicorn

    from aigc_studio.server import app as server_app

    served = {}
    real_create_app = server_app.create_app

    def create_app(settings, *, models, database):
        served["models"] = models
        return real_create_app(settings, models=models, database=database)

    monkeypatch.setattr(server_app, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)  # whatever the app writes under var/ lands here
    arguments = ["serve", "--model", MODEL, "--database-url", f"sqlite:///{tmp_path}/a.db", "--auth", "off"]
    result = CliRunner().invoke(app, [*arguments, "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    [backend] = served["models"]
    assert backend.quantization == "int8" and backend.model.lm_head_weight.int8
    refused = CliRunner().invoke(app, [*arguments, "--quantize", "int4"])
    assert isinstance(refused.exception, AigcError) and "unknown quantization 'int4'" in str(refused.exception)
