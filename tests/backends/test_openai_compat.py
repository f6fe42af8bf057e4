"""The OpenAI-compatible backend against a live `aigc serve` (completions and chat, streamed and not), and against a
small stub server for what a live one rarely does on cue: refusing the key, failing with 5xx, going away."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.backends.registry import list_models, load_backend
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.registry import resolve_model
from aigc_studio.server.launcher import free_port, start_server
from aigc_studio.settings import Settings

pytest.importorskip("openai")
from aigc_studio.backends.openai_compat import OpenAICompatBackend  # noqa: E402

EAGLE = "name[The Eagle], eatType[pub], food[French], area[riverside]"


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`aigc serve` with the bundled e2e-copy on a free port (auth off, watermark off so texts match the model's)."""
    with start_server(tmp_path_factory.mktemp("serve"), "--auth", "off", "--model", "e2e-copy", "--log-level",
                      "warning", env={"AIGC_WATERMARK__ENABLED": "false"}) as server:
        yield f"{server.url}/v1"


@pytest.fixture(scope="module")
def builtin() -> BuiltinBackend:
    return BuiltinBackend.from_directory(resolve_model("e2e-copy"), name="e2e-copy")


def remote(url: str, api: str = "completions", **kwargs) -> OpenAICompatBackend:
    return OpenAICompatBackend(name="e2e-copy", base_url=url, api=api, prompt_format="records", **kwargs)


def test_completions_give_the_served_models_candidates(live_url: str, builtin: BuiltinBackend):
    backend = remote(live_url)
    backend.check()
    assert backend.info.context_length == 128 and backend.info.backend == "openai"
    params = SamplingParams(temperature=1.0, n=3, seed=7, max_tokens=60)
    (result,) = backend.generate([EAGLE], params)
    (expected,) = builtin.generate([EAGLE], params)
    assert [c.text for c in result.candidates] == [c.text for c in expected.candidates]
    assert result.prompt_tokens == expected.prompt_tokens and all(c.finish_reason == "stop" for c in result.candidates)

    (greedy,) = backend.generate([EAGLE], SamplingParams(temperature=0, logprobs=2, max_tokens=60))
    candidate = greedy.candidates[0]
    assert candidate.logprobs and len(candidate.logprobs) == candidate.num_tokens
    assert all(len(item.top_logprobs) == 2 for item in candidate.logprobs)


def test_streamed_text_joins_to_the_unstreamed_text(live_url: str):
    params = SamplingParams(temperature=0.8, seed=3, max_tokens=60)
    for api in ("completions", "chat"):
        backend = remote(live_url, api)
        chunks = list(backend.stream(EAGLE, params))
        assert "".join(chunk.text for chunk in chunks) == backend.generate([EAGLE], params)[0].candidates[0].text
        assert chunks[-1].finish_reason == "stop" and all(chunk.finish_reason is None for chunk in chunks[:-1])


def test_the_chat_api_sends_the_prompt_as_the_user_message(live_url: str):
    params = SamplingParams(temperature=0, max_tokens=60)
    chat = remote(live_url, "chat").generate([EAGLE], params)[0].candidates[0].text
    assert chat == remote(live_url).generate([EAGLE], params)[0].candidates[0].text and "The Eagle" in chat


def test_an_unknown_model_is_named_with_the_models_the_server_has(live_url: str):
    with pytest.raises(AigcError, match="does not serve model 'nope'; it serves: e2e-copy") as error:
        OpenAICompatBackend(name="nope", base_url=live_url).check()
    assert error.value.param == "model" and error.value.status == 404


def test_the_registry_loads_a_remote_model_from_settings(live_url: str):
    settings = Settings(models={"remote": {"backend": "openai", "url": live_url, "model": "e2e-copy", "api": "completions",
                                           "prompt_format": "records"}})
    backend = load_backend("remote", settings)
    assert isinstance(backend, OpenAICompatBackend) and backend.info.name == "remote"
    assert "The Eagle" in backend.generate([EAGLE], SamplingParams(temperature=0))[0].candidates[0].text
    (entry, *_) = list_models(settings)
    assert (entry.name, entry.backend, entry.location, entry.prompt_format) == ("remote", "openai", live_url, "records")


def test_our_processors_that_a_remote_server_cannot_run_are_refused(live_url: str):
    from aigc_studio.safety.watermark import WatermarkConfig

    backend = remote(live_url)
    with pytest.raises(AigcError, match="cannot add this installation's watermark"):
        backend.generate([EAGLE], SamplingParams(watermark=WatermarkConfig(key=b"k" * 32)))
    with pytest.raises(AigcError, match="no_repeat_ngram_size is not part of the OpenAI API"):
        backend.generate([EAGLE], SamplingParams(no_repeat_ngram_size=3))


# -- failure modes, on a stub server ---------------------------------------------------------------------------------


class Stub:
    """A tiny OpenAI-shaped server: answers /v1/completions after ``failures`` 500s, checks the key if one is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.key: str | None = None
        app = FastAPI()

        @app.post("/v1/completions")
        async def completions(request: Request) -> JSONResponse:
            self.calls += 1
            if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
                return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
            if self.calls <= self.failures:
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, 500)
            body = await request.json()
            choices = [{"index": i, "text": f"{body['prompt']} #{i}", "finish_reason": "length", "logprobs": None}
                       for i in range(body.get("n", 1))]
            return JSONResponse({"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
                                 "choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    server = Stub()
    server.thread.start()
    while not server.server.started:
        time.sleep(0.05)
    yield server
    server.server.should_exit = True
    server.thread.join(timeout=10)


def test_5xx_errors_are_retried_with_back_off(stub: Stub):
    stub.calls, stub.failures, stub.key = 0, 3, None
    sleeps: list[float] = []
    backend = OpenAICompatBackend(name="m", base_url=stub.url, api="completions", max_retries=1, sleep=sleeps.append)
    (result,) = backend.generate(["hi"], SamplingParams(n=2))
    assert [c.text for c in result.candidates] == ["hi #0", "hi #1"] and result.candidates[0].num_tokens == 2
    assert stub.calls == 4 and sleeps == [1.0]  # the client's own retry, then ours after 1 s, then the client's again


def test_a_refused_key_names_the_variable_to_fix(stub: Stub, monkeypatch: pytest.MonkeyPatch):
    stub.calls, stub.failures, stub.key = 0, 0, "right"
    monkeypatch.setenv("STUB_KEY", "wrong")
    backend = OpenAICompatBackend(name="m", base_url=stub.url, api="completions", api_key_env="STUB_KEY")
    with pytest.raises(AigcError, match=r"refused the API key \(401; key from \$STUB_KEY\)") as error:
        backend.generate(["hi"], SamplingParams())
    assert error.value.param == "api_key_env" and stub.calls == 1  # a 401 is not retried
    monkeypatch.setenv("STUB_KEY", "right")
    assert OpenAICompatBackend(name="m", base_url=stub.url, api="completions", api_key_env="STUB_KEY").generate(
        ["hi"], SamplingParams())[0].candidates[0].text == "hi #0"
    monkeypatch.delenv("STUB_KEY")
    with pytest.raises(AigcError, match=r"reads its API key from \$STUB_KEY, which is not set"):
        OpenAICompatBackend(name="m", base_url=stub.url, api_key_env="STUB_KEY")


def test_an_unreachable_server_is_one_clear_error():
    sleeps: list[float] = []
    backend = OpenAICompatBackend(name="m", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, timeout=5,
                                  sleep=sleeps.append)
    with pytest.raises(AigcError, match="is unreachable .*check that it runs and that url is right") as error:
        backend.generate(["hi"], SamplingParams())
    assert error.value.param == "url" and sleeps == [1.0]
