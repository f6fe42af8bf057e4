"""The OpenAI-compatible completions and chat completions, over the engines.

Every request goes: moderate the prompt → the request's :class:`SamplingParams` (over the model's defaults,
capped, watermarked when enabled) → ``engine.submit`` per prompt → collect or stream the engine's events →
audit record with provenance. A client that disconnects from a stream cancels its engine rows.

Chat with a *records* model (``e2e-copy``, trained on ``attributes → text``): the last user message is the
source (``name[The Eagle], eatType[pub]``); earlier turns cannot condition such a model and are ignored. Chat
with a *text* model: the messages become a transcript that the model continues::

    System: {system message}
    User: {user message}
    Assistant: {assistant message}
    User: {user message}
    Assistant:

and generation stops at the next ``User:`` or ``System:`` line.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio

from aigc_studio.backends.base import GenerationResult, TokenLogprob
from aigc_studio.content.governance import text_was_changed
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.server import protocol as p
from aigc_studio.server.state import ServedModel, ServerState
from aigc_studio.server.streaming import DONE, coalesced, merged_batches, sse, sse_error

TRANSCRIPT_ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
TRANSCRIPT_STOPS = ["\nUser:", "\nSystem:"]


def chat_prompt(messages: list[p.ChatMessage], prompt_format: str) -> tuple[str, list[str]]:
    """The prompt a model of ``prompt_format`` is given for a chat, and the stop strings it adds.

    Raises:
        AigcError: a records model and no user message.
    """
    if prompt_format == "records":
        users = [message for message in messages if message.role == "user" and message.text().strip()]
        if not users:
            raise AigcError("a records model needs a user message holding the attributes, e.g. "
                            "'name[The Eagle], eatType[pub]'", param="messages")
        return users[-1].text().strip(), []
    lines = [f"{TRANSCRIPT_ROLES[message.role]}: {message.text().strip()}" for message in messages]
    return "\n".join([*lines, "Assistant:"]), TRANSCRIPT_STOPS


def completion_logprobs(tokens: list[TokenLogprob] | None, top: int | None) -> p.CompletionLogprobs | None:
    """The legacy completions ``logprobs`` object."""
    if tokens is None:
        return None
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token.token)
    return p.CompletionLogprobs(
        tokens=[token.token for token in tokens], token_logprobs=[token.logprob for token in tokens],
        top_logprobs=[dict(token.top_logprobs) for token in tokens] if top else None, text_offset=offsets,
    )


def chat_logprobs(tokens: list[TokenLogprob] | None) -> p.ChatChoiceLogprobs | None:
    """The chat ``logprobs`` object (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``)."""
    if tokens is None:
        return None
    return p.ChatChoiceLogprobs(content=[chat_token(token) for token in tokens])


def chat_token(token: TokenLogprob) -> p.ChatLogprob:
    """One token in the chat logprobs format."""
    return p.ChatLogprob(
        token=token.token, logprob=token.logprob, bytes=list(token.token.encode()),
        top_logprobs=[p.ChatLogprobAlternative(token=text, logprob=value, bytes=list(text.encode()))
                      for text, value in token.top_logprobs.items()],
    )


def _usage(results: list[GenerationResult]) -> p.UsageInfo:
    prompt = sum(result.prompt_tokens for result in results)
    completion = sum(result.completion_tokens for result in results)
    return p.UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class OpenAIServing:
    """Runs completions and chat completions for one request against the server's state.

    Args:
        state: the server state (models, governance, metrics).
        api_key_id: the caller's key (None when auth is off), for the audit record.
    """

    def __init__(self, state: ServerState, api_key_id: int | None) -> None:
        self.state = state
        self.api_key_id = api_key_id
        self.created = int(time.time())

    # ------------------------------------------------------------------------------------------ shared
    async def _prepare(self, served: ServedModel, prompts: list[str], params: SamplingParams) -> SamplingParams:
        for prompt in prompts:
            await anyio.to_thread.run_sync(self.state.governance.check_prompt, prompt)
        return self.state.governance.sampling_params(params, served.backend)

    @staticmethod
    def _submit(served: ServedModel, prompts: list[str], params: SamplingParams) -> list[Any]:
        """One engine handle per prompt; if one is refused (full queue), the ones already queued are cancelled."""
        handles: list[Any] = []
        try:
            for prompt in prompts:
                handles.append(served.engine.submit(prompt, params))
        except BaseException:
            for handle in handles:
                handle.cancel()
            raise
        return handles

    async def _collect(self, served: ServedModel, prompts: list[str], params: SamplingParams) -> list[GenerationResult]:
        handles = self._submit(served, prompts, params)
        async with aclosing(merged_batches(handles)) as batches:
            async for _ in batches:
                pass  # the events are the same tokens result() returns whole
        return [handle.result() for handle in handles]

    async def _checked(self, prompt: str, result: GenerationResult) -> list[tuple[str, list[dict[str, Any]]]]:
        """Each candidate as it may be published (moderated, personal data replaced) and the findings."""
        def check() -> list[tuple[str, list[dict[str, Any]]]]:
            checks = [self.state.governance.check_output(candidate.text, prompt) for candidate in result.candidates]
            return [(output.text, output.flags) for output in checks]

        return await anyio.to_thread.run_sync(check)

    async def _record(self, kind: str, served: ServedModel, params: SamplingParams, prompt: str, outputs: list[str],
                      started: float) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(lambda: self.state.governance.record(
            kind=kind, backend_info=served.backend.info, params=params, prompt=prompt, outputs=outputs,
            api_key_id=self.api_key_id, latency_ms=(time.perf_counter() - started) * 1000,
        ))

    def _count(self, served: ServedModel, endpoint: str, tokens: int) -> None:
        self.state.metrics.completion_tokens.labels(served.name, endpoint).inc(tokens)

    # ------------------------------------------------------------------------------------------ completions
    async def completion(self, request: p.CompletionRequest) -> p.CompletionResponse | AsyncIterator[str]:
        """A completion response, or the SSE chunks of a streamed one."""
        started = time.perf_counter()
        served = self.state.model(request.model)
        prompts = request.prompts()
        params = request.to_sampling_params(served.default_params(), self.state.settings.server)
        params = await self._prepare(served, prompts, params)
        request_id = f"cmpl-{uuid.uuid4().hex}"
        if request.stream:
            handles = self._submit(served, prompts, params)
            return self._completion_stream(request, served, params, prompts, handles, request_id, started)
        results = await self._collect(served, prompts, params)
        choices, provenance = [], []
        for prompt_index, (prompt, result) in enumerate(zip(prompts, results)):
            checked = await self._checked(prompt, result)
            for candidate_index, (candidate, (text, flags)) in enumerate(zip(result.candidates, checked)):
                choices.append(p.CompletionChoice(
                    index=prompt_index * params.n + candidate_index, text=prompt + text if request.echo else text,
                    finish_reason=candidate.finish_reason, flags=flags or None,
                    logprobs=None if text_was_changed(flags) else completion_logprobs(candidate.logprobs, params.logprobs),
                ))
            outputs = [text for text, _ in checked]
            provenance.append(await self._record("completion", served, params, prompt, outputs, started))
        self._count(served, "completions", sum(result.completion_tokens for result in results))
        return p.CompletionResponse(id=request_id, created=self.created, model=served.name, choices=choices,
                                    usage=_usage(results), provenance=provenance)

    async def _completion_stream(self, request: p.CompletionRequest, served: ServedModel, params: SamplingParams,
                                 prompts: list[str], handles: list[Any], request_id: str, started: float) -> AsyncIterator[str]:
        def chunk(choices: list[p.CompletionChoice], usage: p.UsageInfo | None = None) -> str:
            return sse(p.CompletionStreamResponse(id=request_id, created=self.created, model=served.name,
                                                  choices=choices, usage=usage))

        try:
            if request.echo:
                for prompt_index, prompt in enumerate(prompts):
                    for candidate_index in range(params.n):
                        yield chunk([p.CompletionChoice(index=prompt_index * params.n + candidate_index, text=prompt)])
            first = True
            async with aclosing(merged_batches(handles)) as batches:
                async for batch in batches:
                    if first:
                        self.state.metrics.first_token.labels(served.name).observe(time.perf_counter() - started)
                        first = False
                    # Everything that arrived since the last send goes out as one write, one chunk per choice.
                    yield "".join(chunk([p.CompletionChoice(
                        index=index, text="".join(event.text for event in events),
                        logprobs=_completion_stream_logprobs(events, params.logprobs),
                        finish_reason=events[-1].finish_reason,
                    )]) for index, events in coalesced(
                        batch, lambda prompt_index, event: prompt_index * params.n + event.candidate_index))
            results = [handle.result() for handle in handles]
            self._count(served, "completions", sum(result.completion_tokens for result in results))
            if request.stream_options is not None and request.stream_options.include_usage:
                yield chunk([], _usage(results))
            for prompt, result in zip(prompts, results):
                await self._record("completion", served, params, prompt, _texts(result), started)
        except Exception as error:  # the status line is sent: report the failure in the stream itself
            yield sse_error(error)
        yield DONE

    # ------------------------------------------------------------------------------------------ chat
    async def chat(self, request: p.ChatCompletionRequest) -> p.ChatCompletionResponse | AsyncIterator[str]:
        """A chat completion response, or the SSE chunks of a streamed one."""
        started = time.perf_counter()
        served = self.state.model(request.model)
        prompt, stops = chat_prompt(request.messages, served.backend.info.prompt_format)
        params = request.to_sampling_params(served.default_params(), self.state.settings.server)
        if stops:
            params = params.replace(stop=[*params.stop, *stops])
        params = await self._prepare(served, [prompt], params)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if request.stream:
            (handle,) = self._submit(served, [prompt], params)
            return self._chat_stream(request, served, params, prompt, handle, request_id, started)
        (result,) = await self._collect(served, [prompt], params)
        checked = await self._checked(prompt, result)
        choices = [
            p.ChatCompletionChoice(index=index, message=p.ChatResponseMessage(content=text), flags=flags or None,
                                   logprobs=None if text_was_changed(flags) else chat_logprobs(candidate.logprobs),
                                   finish_reason=candidate.finish_reason)
            for index, (candidate, (text, flags)) in enumerate(zip(result.candidates, checked))
        ]
        provenance = await self._record("chat", served, params, prompt, [text for text, _ in checked], started)
        self._count(served, "chat", result.completion_tokens)
        return p.ChatCompletionResponse(id=request_id, created=self.created, model=served.name, choices=choices,
                                        usage=_usage([result]), provenance=provenance)

    async def _chat_stream(self, request: p.ChatCompletionRequest, served: ServedModel, params: SamplingParams,
                           prompt: str, handle: Any, request_id: str, started: float) -> AsyncIterator[str]:
        def chunk(choices: list[p.ChatCompletionStreamChoice], usage: p.UsageInfo | None = None) -> str:
            return sse(p.ChatCompletionStreamResponse(id=request_id, created=self.created, model=served.name,
                                                      choices=choices, usage=usage))

        try:
            for index in range(params.n):
                yield chunk([p.ChatCompletionStreamChoice(index=index, delta=p.DeltaMessage(role="assistant", content=""))])
            first = True
            async with aclosing(merged_batches([handle])) as batches:
                async for batch in batches:
                    if first:
                        self.state.metrics.first_token.labels(served.name).observe(time.perf_counter() - started)
                        first = False
                    yield "".join(chunk([_chat_stream_choice(index, events)])
                                  for index, events in coalesced(batch, lambda _, event: event.candidate_index))
            result = handle.result()
            self._count(served, "chat", result.completion_tokens)
            if request.stream_options is not None and request.stream_options.include_usage:
                yield chunk([], _usage([result]))
            await self._record("chat", served, params, prompt, _texts(result), started)
        except Exception as error:  # the status line is sent: report the failure in the stream itself
            yield sse_error(error)
        yield DONE


def _completion_stream_logprobs(events: list[Any], top: int | None) -> p.CompletionLogprobs | None:
    tokens = [event.logprob for event in events if event.logprob is not None]
    return completion_logprobs(tokens, top) if tokens else None


def _chat_stream_choice(index: int, events: list[Any]) -> p.ChatCompletionStreamChoice:
    """One choice's delta for the events of one candidate that arrived together."""
    text = "".join(event.text for event in events)
    finish_reason = events[-1].finish_reason
    tokens = [event.logprob for event in events if event.logprob is not None]
    return p.ChatCompletionStreamChoice(
        index=index, delta=p.DeltaMessage(content=text) if text or not finish_reason else p.DeltaMessage(),
        logprobs=chat_logprobs(tokens) if tokens else None, finish_reason=finish_reason,
    )


def _texts(result: GenerationResult) -> list[str]:
    return [candidate.text for candidate in result.candidates]

