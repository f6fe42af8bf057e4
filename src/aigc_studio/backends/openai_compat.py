"""The OpenAI-compatible backend: any server that speaks ``/v1/chat/completions`` or ``/v1/completions``.

vLLM, TGI, Ollama, llama.cpp's server, hosted APIs and ``aigc serve`` itself, through the official ``openai``
package::

    backend = OpenAICompatBackend(name="qwen", base_url="http://localhost:8001/v1", model="Qwen/Qwen2.5-7B-Instruct",
                                  api_key_env="VLLM_API_KEY")
    backend.generate(["Write a tagline for a riverside pub."], SamplingParams(n=3, temperature=0.8))

Mapping of :class:`SamplingParams`: ``temperature, top_p, max_tokens, stop, n, seed, presence_penalty,
frequency_penalty`` are OpenAI fields; ``logprobs`` becomes ``logprobs=k`` (completions) or ``logprobs=true,
top_logprobs=k`` (chat). ``top_k, min_p, repetition_penalty, min_tokens, stop_token_ids, num_beams,
length_penalty`` are vLLM's extensions (``aigc serve`` takes them too) and are sent only when set away from
their defaults, so a strict hosted API never sees them unasked. ``no_repeat_ngram_size`` and the watermark need
our own logits processors and are refused with a clear error; a server that marks text does it itself.

Retries: the ``openai`` client retries 408/409/429/5xx and connection errors ``max_retries`` times with its
back-off; when it gives up on a 5xx or a connection error, this backend waits 1 s, 2 s, 4 s, ... and tries the
request again, ``max_retries`` more times. Failures end as :class:`~aigc_studio.errors.AigcError` naming the
server and the fix: unreachable, refused key (401/403), unknown model (404, with the models the server offers),
a rejected request (400, with the server's message).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

from aigc_studio.backends.base import BackendInfo, Candidate, GenerationResult, PromptFormat, StreamChunk, TokenLogprob
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams

Api = Literal["chat", "completions"]
INSTALL_HINT = "pip install 'aigc-studio[openai]'"
FIRST_BACKOFF_S = 1.0
T = TypeVar("T")

# Our extensions that vLLM (and aigc serve) accept in the request body, with the value that means "off".
_EXTENSIONS = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "min_tokens": 0, "num_beams": 1, "length_penalty": 1.0}


def _openai() -> Any:
    try:
        import openai
    except ImportError:
        raise AigcError(f"the openai backend needs the `openai` package; {INSTALL_HINT}") from None
    return openai


class OpenAICompatBackend:
    """A :class:`~aigc_studio.backends.base.Backend` over an OpenAI-compatible HTTP server.

    Args:
        name: the model's name here (results, the registry, provenance).
        base_url: the server's API root, e.g. ``http://localhost:8000/v1``.
        model: the model name the server knows (default: ``name``).
        api_key_env: the environment variable that holds the key; None sends a placeholder key (local servers).
        api: ``"chat"`` sends each prompt as one user message; ``"completions"`` sends it as is (a records
            model behind ``aigc serve`` or vLLM takes its compact source that way).
        prompt_format: what the served model expects (see :class:`~aigc_studio.backends.base.BackendInfo`).
        context_length: the model's context, when known (the server's model list is asked otherwise).
        timeout: seconds per HTTP request.
        max_retries: retries of the ``openai`` client, and as many more of our own (see the module docstring).
        sleep: how to wait between retries (tests pass a recorder).

    Raises:
        AigcError: the ``openai`` package is missing, or ``api_key_env`` names an unset variable.
    """

    def __init__(self, *, name: str, base_url: str, model: str | None = None, api_key_env: str | None = None,
                 api: Api = "chat", prompt_format: PromptFormat = "text", context_length: int | None = None,
                 timeout: float = 60.0, max_retries: int = 2, sleep: Callable[[float], None] = time.sleep) -> None:
        openai = _openai()
        if api not in ("chat", "completions"):
            raise AigcError(f"unknown api {api!r}; use chat or completions", param="api")
        api_key = "not-needed"  # local servers ignore it, but the client insists on one
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                raise AigcError(f"model {name!r} reads its API key from ${api_key_env}, which is not set; export "
                                f"{api_key_env}=YOUR_KEY", param="api_key_env")
        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.base_url = base_url
        self.model = model or name
        self.api_key_env = api_key_env
        self.api = api
        self.max_retries = max_retries
        self.sleep = sleep
        self.info = BackendInfo(name=name, backend="openai", prompt_format=prompt_format,
                                context_length=context_length or 0, model_type=self.model)

    def check(self) -> None:
        """Ask the server for its models: it answers, accepts the key and serves :attr:`model`.

        A server without ``GET /models`` (404) passes: the first request will tell. Fills in the context
        length when the server reports one (vLLM's ``max_model_len``, ``aigc serve``'s ``context_length``).

        Raises:
            AigcError: the server is unreachable, refuses the key, or does not serve the model.
        """
        try:
            served = self._call(lambda: list(self.client.models.list()))
        except AigcError as error:
            if error.status == 404 and error.code == "no_model_list":
                return
            raise
        names = [item.id for item in served]
        if self.model not in names:
            raise AigcError(f"the server at {self.base_url} does not serve model {self.model!r}; it serves: "
                            f"{', '.join(names) or 'nothing'}; set model = one of them", param="model", status=404)
        if not self.info.context_length:
            entry = served[names.index(self.model)]
            extra = getattr(entry, "model_extra", None) or {}
            length = extra.get("context_length") or extra.get("max_model_len")
            if isinstance(length, int) and length > 0:
                self.info = dataclasses.replace(self.info, context_length=length)

    def default_params(self) -> SamplingParams:
        """The server decides its own defaults; ours are the plain :class:`SamplingParams` ones."""
        return SamplingParams()

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        body = self._body(params)
        results = []
        for prompt in _check_prompts(prompts):
            candidates: list[Candidate] = []
            prompt_tokens = 0
            # Some servers (Ollama, llama.cpp) return one choice whatever n says: ask again for the rest, with
            # the next seeds so a seeded request still gives distinct, reproducible candidates.
            while len(candidates) < params.n:
                missing = params.n - len(candidates)
                request = {**body, "n": missing}
                if params.seed is not None:
                    request["seed"] = params.seed + len(candidates)
                response = self._call(lambda request=request: self._create(prompt, request, stream=False))
                usage = getattr(response, "usage", None)
                prompt_tokens = getattr(usage, "prompt_tokens", 0) or prompt_tokens
                completion_tokens = getattr(usage, "completion_tokens", 0) or 0
                choices = sorted(response.choices, key=lambda choice: choice.index)[:missing]
                if not choices:
                    raise AigcError(f"the server at {self.base_url} returned no choices for model {self.model!r}")
                candidates += [self._candidate(choice, completion_tokens, len(choices)) for choice in choices]
            results.append(GenerationResult(prompt=prompt, candidates=candidates, prompt_tokens=prompt_tokens))
        return results

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        if params.n != 1 or params.num_beams != 1:
            raise AigcError("streaming returns one candidate: set n=1 and num_beams=1", param="n")
        body = self._body(params)
        (prompt,) = _check_prompts([prompt])
        # Opening the stream is retried like any request; once text has arrived a failure ends the stream.
        events = self._call(lambda: self._create(prompt, body, stream=True))
        return self._chunks(events)

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        raise AigcError("the openai backend cannot score a given text: OpenAI-compatible servers do not return the "
                        "log-probabilities of a text they did not generate; score with a builtin or transformers model")

    # -- requests --------------------------------------------------------------------------------------------------

    def _body(self, params: SamplingParams) -> dict[str, Any]:
        """The request fields for ``params`` (see the module docstring)."""
        params.validate()
        if params.watermark is not None:
            raise AigcError("the openai backend cannot add this installation's watermark: the remote server samples; "
                            "generate with a builtin or transformers model to watermark", param="watermark")
        if params.no_repeat_ngram_size:
            raise AigcError("no_repeat_ngram_size is not part of the OpenAI API; leave it at 0 for this model",
                            param="no_repeat_ngram_size")
        body: dict[str, Any] = {"model": self.model, "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_tokens}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if params.logprobs is not None:
            if self.api == "chat":
                body |= {"logprobs": True, "top_logprobs": params.logprobs}
            else:
                body["logprobs"] = params.logprobs
        extra = {name: getattr(params, name) for name, off in _EXTENSIONS.items() if getattr(params, name) != off}
        if params.stop_token_ids:
            extra["stop_token_ids"] = list(params.stop_token_ids)
        if extra:
            body["extra_body"] = extra
        return body

    def _create(self, prompt: str, body: dict[str, Any], *, stream: bool) -> Any:
        if self.api == "chat":
            return self.client.chat.completions.create(messages=[{"role": "user", "content": prompt}], stream=stream, **body)
        return self.client.completions.create(prompt=prompt, stream=stream, **body)

    def _call(self, request: Callable[[], T]) -> T:
        """Run ``request`` with our retries of 5xx and connection errors; turn failures into AigcError."""
        openai = self._openai
        for attempt in range(self.max_retries + 1):
            try:
                return request()
            except (openai.APIConnectionError, openai.InternalServerError) as error:
                if attempt == self.max_retries:
                    raise self._error(error) from None
                self.sleep(FIRST_BACKOFF_S * 2 ** attempt)
            except openai.OpenAIError as error:
                raise self._error(error) from None
        raise AssertionError("the loop returns or raises")

    def _error(self, error: Exception) -> AigcError:
        """The one-line AigcError for a failed request."""
        openai, where = self._openai, f"the server at {self.base_url}"
        if isinstance(error, openai.APIConnectionError):  # includes timeouts
            kind = "timed out" if isinstance(error, openai.APITimeoutError) else "is unreachable"
            return AigcError(f"{where} {kind} ({error}); check that it runs and that url is right", param="url",
                             code="backend_unreachable", status=503)
        if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
            source = f"${self.api_key_env}" if self.api_key_env else "no api_key_env (no key was sent)"
            return AigcError(f"{where} refused the API key ({error.status_code}; key from {source}); set a valid key "
                             "in that variable", param="api_key_env", code="backend_auth", status=502)
        if isinstance(error, openai.NotFoundError):
            message = _server_message(error)
            if "model" in message.lower():
                return AigcError(f"{where} does not know model {self.model!r}: {message}; set model to one it serves",
                                 param="model", status=404)
            return AigcError(f"{where} has no such endpoint ({message}); check that url ends in /v1 and the api "
                             f"({self.api}) is one it offers", param="url", code="no_model_list", status=404)
        if isinstance(error, openai.APIStatusError):
            param = (error.body or {}).get("param") if isinstance(error.body, dict) else None
            return AigcError(f"{where} rejected the request ({error.status_code}): {_server_message(error)}",
                             param=param, status=400 if error.status_code < 500 else 502)
        return AigcError(f"{where} gave an unusable answer: {error}", status=502)

    # -- responses -------------------------------------------------------------------------------------------------

    def _candidate(self, choice: Any, completion_tokens: int, choices: int) -> Candidate:
        text = (choice.message.content or "") if self.api == "chat" else (choice.text or "")
        logprobs = self._logprobs(choice)
        # Servers report tokens per response, not per choice: logprobs count them exactly, else share them out.
        num_tokens = len(logprobs) if logprobs is not None else round(completion_tokens / max(choices, 1))
        cumulative = sum(item.logprob for item in logprobs) if logprobs is not None else None
        return Candidate(text=text, finish_reason=_finish_reason(choice.finish_reason), num_tokens=num_tokens,
                         logprobs=logprobs, cumulative_logprob=cumulative)

    def _logprobs(self, choice: Any) -> list[TokenLogprob] | None:
        data = getattr(choice, "logprobs", None)
        if data is None:
            return None
        if self.api == "chat":
            return [TokenLogprob(token=item.token, logprob=item.logprob,
                                 top_logprobs={alt.token: alt.logprob for alt in (item.top_logprobs or [])})
                    for item in (data.content or [])]
        tops = data.top_logprobs or [None] * len(data.tokens or [])
        return [TokenLogprob(token=token, logprob=value if value is not None else -1e9, top_logprobs=dict(top or {}))
                for token, value, top in zip(data.tokens or [], data.token_logprobs or [], tops)]

    def _chunks(self, events: Any) -> Iterator[StreamChunk]:
        finished = False
        try:
            for event in events:
                if not event.choices:  # a usage-only chunk at the end
                    continue
                choice = event.choices[0]
                text = (choice.delta.content or "") if self.api == "chat" else (choice.text or "")
                logprobs = self._logprobs(choice) or []
                finish = _finish_reason(choice.finish_reason) if choice.finish_reason else None
                # One chunk per token when the server sends logprobs, else one per event.
                for item in logprobs[:-1]:
                    yield StreamChunk(text="", logprob=item)
                yield StreamChunk(text=text, logprob=logprobs[-1] if logprobs else None, finish_reason=finish)
                finished = finished or finish is not None
        except self._openai.OpenAIError as error:
            raise self._error(error) from None
        if not finished:
            raise AigcError(f"the stream from {self.base_url} ended before the text was finished; try again")


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise AigcError("prompts must be a non-empty list of strings", param="prompt")
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise AigcError(f"prompt must be a string, got {type(prompt).__name__}", param="prompt")
    return list(prompts)


def _finish_reason(value: str | None) -> Literal["stop", "length"]:
    # content_filter, tool_calls and the like also mean the model stopped on purpose.
    return "length" if value == "length" else "stop"


def _server_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return getattr(error, "message", None) or str(error)
