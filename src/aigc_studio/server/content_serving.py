"""``/v1/content`` and ``/v1/evaluate``: the content pipeline behind the studio, run through the engines.

A content request becomes a :class:`~aigc_studio.content.requests.ContentRequest`, runs through
:class:`~aigc_studio.content.pipeline.ContentPipeline` on a worker thread (the pipeline's ``backend.generate``
is an :class:`~aigc_studio.server.state.EngineBackend`, so it shares the engine's batch), with governance's
hooks (moderation, watermark and provenance, audit). Streaming sends each candidate's text as the engine makes
it, then the ranked result.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio

from aigc_studio.content.pipeline import ContentPipeline, ContentResult
from aigc_studio.content.requests import ContentRequest, make_request
from aigc_studio.content.tasks import Task, get_task
from aigc_studio.errors import AigcError
from aigc_studio.content.governance import text_was_changed
from aigc_studio.evaluation.judge import RankedCandidate, rank_candidates
from aigc_studio.evaluation.metrics import EvalContext
from aigc_studio.server import protocol as p
from aigc_studio.server.errors import exception_to_error
from aigc_studio.server.openai_serving import chat_token
from aigc_studio.server.state import EngineBackend, ServedModel, ServerState
from aigc_studio.server.streaming import DONE, sse, sse_error

# Alternatives per token when a content request asks for logprobs without saying how many.
DEFAULT_TOP_LOGPROBS = 5


def build_request(body: p.ContentCreateRequest | p.EvaluateRequest, *, n: int) -> ContentRequest:
    """The checked pipeline request (AigcError naming the field for anything wrong)."""
    task = get_task(body.task)
    request = make_request(
        task.name, attributes=body.attributes, audience=getattr(body, "audience", None), tone=getattr(body, "tone", None),
        keywords=body.keywords or None, forbid=body.forbidden_words or None, language=body.language,
        length=body.length, n=n, platform=getattr(body, "platform", None),
    )
    task.validate(request)
    return request


def pick_model(state: ServerState, name: str | None, task: Task, language: str) -> ServedModel:
    """The named model, else the task's bundled default for the language when loaded, else the first loaded."""
    if name is None:
        default = task.default_models.get(language)
        name = default if default in state.models else None
    return state.model(name)


def candidate_body(candidate: RankedCandidate, task: Task, logprobs: list[Any] | None = None) -> p.ContentCandidate:
    """A ranked candidate's score card in the API shape."""
    return p.ContentCandidate(
        rank=candidate.rank, text=candidate.text, score=candidate.total, scores=candidate.scores,
        weights={name: task.metric_weights[name] for name in candidate.scores if name in task.metric_weights},
        violations=candidate.violations, flags=candidate.flags,
        explanation=candidate.explanation,
        logprobs=[chat_token(token) for token in logprobs] if logprobs is not None else None,
    )


class ContentServing:
    """Runs one ``/v1/content`` request.

    Args:
        state: the server state.
        api_key_id: the caller's key, for the audit record (None when auth is off).
    """

    def __init__(self, state: ServerState, api_key_id: int | None) -> None:
        self.state = state
        self.api_key_id = api_key_id

    def _prepare(self, body: p.ContentCreateRequest) -> tuple[ContentRequest, ServedModel, Any]:
        limits = self.state.settings.server
        if body.n > limits.max_n:
            raise AigcError(f"n={body.n} is over this server's cap of {limits.max_n}; ask for at most {limits.max_n} "
                            "candidates", param="n")
        request = build_request(body, n=body.n)
        served = pick_model(self.state, body.model, get_task(request.task), request.language)
        temperature = 0.0 if body.temperature is not None and body.temperature < p.SAMPLING_EPS else body.temperature
        changes: dict[str, Any] = {"temperature": temperature, "seed": body.seed}
        if body.logprobs:
            changes["logprobs"] = body.top_logprobs if body.top_logprobs is not None else DEFAULT_TOP_LOGPROBS
        params = served.default_params().replace(**{key: value for key, value in changes.items() if value is not None})
        # The watermark is added by governance's pipeline hook.
        return request, served, params.replace(max_tokens=min(params.max_tokens, limits.max_tokens_cap))

    def _run(self, request: ContentRequest, params: Any, backend: EngineBackend) -> ContentResult:
        pipeline = ContentPipeline(backend, hooks=self.state.governance.pipeline_hooks(backend, self.api_key_id))
        return pipeline.run(request, params)

    def _body(self, result: ContentResult, backend: EngineBackend, want_logprobs: bool) -> dict[str, Any]:
        task = get_task(result.request.task)
        generated = backend.results[0].candidates if backend.results else []
        candidates = [
            candidate_body(candidate, task,
                           generated[candidate.index].logprobs
                           if want_logprobs and candidate.index < len(generated) and not text_was_changed(candidate.flags) else None)
            for candidate in result.candidates
        ]
        content_id = f"cnt_{uuid.uuid4().hex}"
        body = p.ContentResponse(
            id=content_id, created=int(time.time()), model=result.model, task=task.name, text=result.best.text,
            candidates=candidates, provenance=result.provenance or {}, moderation=result.moderation,
            timing=result.timing, notes=result.notes,
            request=result.request.to_dict(),
        ).model_dump()
        self.state.content_results.put(content_id, body, api_key_id=self.api_key_id)
        return body

    async def create(self, body: p.ContentCreateRequest) -> dict[str, Any]:
        """The ranked result of a request (not streamed)."""
        request, served, params = self._prepare(body)
        backend = EngineBackend(served)
        result = await anyio.to_thread.run_sync(self._run, request, params, backend)
        return await anyio.to_thread.run_sync(self._body, result, backend, body.logprobs)  # writes the database

    async def stream(self, body: p.ContentCreateRequest) -> AsyncIterator[str]:
        """Start the pipeline and return its SSE events; a failure before the first event raises (a 4xx status)."""
        request, served, params = self._prepare(body)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        backend = EngineBackend(served, on_event=lambda event: put("delta", event))

        def work() -> None:
            try:
                put("result", self._run(request, params, backend))
            except BaseException as error:  # handed to the event loop, which reports it
                put("error", error)

        worker = asyncio.ensure_future(anyio.to_thread.run_sync(work))
        kind, item = await queue.get()
        if kind == "error":
            raise item
        return self._events(kind, item, queue, backend, worker, body.logprobs)

    async def _events(self, kind: str, item: Any, queue: asyncio.Queue, backend: EngineBackend, worker: Any,
                      want_logprobs: bool) -> AsyncIterator[str]:
        # `worker` (the pipeline thread's future) is held here so the loop does not drop it while it runs.
        try:
            while True:
                if kind == "delta":
                    if item.text:
                        yield sse({"type": "delta", "candidate": item.candidate_index, "text": item.text})
                elif kind == "result":
                    result_body = await anyio.to_thread.run_sync(self._body, item, backend, want_logprobs)
                    yield sse({"type": "result", **result_body})
                    break
                else:
                    yield sse({"type": "error", **exception_to_error(item)[1]})
                    break
                kind, item = await queue.get()
        except Exception as error:  # the stream has started: report in it
            yield sse_error(error)
        finally:
            backend.cancel()  # a no-op when done; frees the rows when the client went away
        yield DONE


def evaluate(state: ServerState, body: p.EvaluateRequest) -> p.EvaluateResponse:
    """Score and rank texts against a task's brief, as the pipeline ranks its own candidates.

    Perplexity is measured with the task's default model for the language when it is loaded and is a builtin
    records model (its ``score`` is one forward pass), as the pipeline does for its own candidates.
    """
    request = build_request(body, n=len(body.texts))
    task = get_task(request.task)
    texts = [task.finalize(text, request) for text in body.texts]
    violations = [[str(violation) for violation in task.check(text, request)] for text in texts]
    context = EvalContext(
        attributes=request.attributes, keywords=request.keywords, forbidden_words=request.forbidden_words,
        length_range=task.length_range(request), language=request.language, lm_scorer=_perplexity_scorer(state, task, request, texts),
    )
    ranked = rank_candidates(texts, context, task.metric_weights, violations=violations)
    return p.EvaluateResponse(task=task.name, candidates=[candidate_body(candidate, task) for candidate in ranked])


def _perplexity_scorer(state: ServerState, task: Task, request: ContentRequest, texts: list[str]):
    served = state.models.get(task.default_models.get(request.language, ""))
    if served is None or served.backend.info.prompt_format != "records" or served.backend.info.backend != "builtin":
        return None
    source = task.render_source(request)
    try:
        scores = {text: [token.logprob for token in served.backend.score(source, text)] for text in set(texts)}
    except AigcError:  # a text longer than the model's context: leave perplexity out for all, as the pipeline does
        return None
    return scores.__getitem__
