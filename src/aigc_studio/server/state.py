"""What a running server holds: its loaded models (each owned by one engine), storage and governance.

:class:`ServedModel` pairs a backend with the :class:`~aigc_studio.generation.engine.Engine` that owns it.
:class:`EngineBackend` is a :class:`~aigc_studio.backends.base.Backend` whose ``generate`` and ``stream`` go
through that engine, so content-pipeline traffic shares the decode batch with the OpenAI endpoints; it can
report each token to a callback (the content stream) and be cancelled when the client goes away.

:class:`GovernanceAdapter` is the one place the server calls governance (prompt moderation, watermark,
provenance and audit records, the pipeline hooks) and the watermark detector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aigc_studio.backends.base import Backend, GenerationResult, StreamChunk, TokenLogprob
from aigc_studio.content.pipeline import PipelineHooks
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.server.errors import ApiError
from aigc_studio.settings import Settings

logger = logging.getLogger("aigc_studio.server")

# How many /v1/content results GET /v1/content/{id} can return (the newest ones; saved items live in the library).
RECENT_CONTENT_LIMIT = 1024


@dataclass
class ServedModel:
    """A loaded model and the engine that owns it."""

    name: str
    backend: Backend
    engine: Any  # aigc_studio.generation.engine.Engine
    created: int = field(default_factory=lambda: int(time.time()))

    def default_params(self) -> SamplingParams:
        """The model's own sampling defaults (its generation_config), or the library defaults."""
        defaults = getattr(self.backend, "default_params", None)
        return defaults() if callable(defaults) else SamplingParams()


class EngineBackend:
    """A Backend over a :class:`ServedModel` that runs every generation through its engine.

    Args:
        served: the model and its engine.
        on_event: called with each ``EngineEvent`` (candidate index, new text, logprob, finish reason) as the
            engine makes it; used to stream the pipeline's candidates.
    """

    def __init__(self, served: ServedModel, on_event: Callable[[Any], None] | None = None) -> None:
        self.served = served
        self.info = served.backend.info
        self.on_event = on_event
        self.results: list[GenerationResult] = []
        self._handles: list[Any] = []
        self._cancelled = threading.Event()

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        # Submit every prompt before waiting, so they join the batch together.
        handles = [self._submit(prompt, params) for prompt in prompts]
        try:
            results = []
            for handle in handles:
                if self.on_event is not None:
                    for event in handle.events():
                        self.on_event(event)
                results.append(handle.result())
        except BaseException:
            for handle in handles:
                handle.cancel()
            raise
        self._check_cancelled()
        self.results.extend(results)
        return results

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        handle = self._submit(prompt, params)
        try:
            for event in handle.events():
                yield StreamChunk(text=event.text, logprob=event.logprob, finish_reason=event.finish_reason)
        finally:
            handle.cancel()

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        # One forward pass over known text, nothing to batch with decoding, so it runs on the caller's thread.
        # It only reads the weights (no KV cache, no sampling state), so it is safe beside the engine's steps.
        return self.served.backend.score(prompt, continuation)

    def cancel(self) -> None:
        """Free the engine rows of everything this backend submitted (the client went away)."""
        self._cancelled.set()
        for handle in self._handles:
            handle.cancel()

    def _submit(self, prompt: str, params: SamplingParams) -> Any:
        self._check_cancelled()
        handle = self.served.engine.submit(prompt, params)
        self._handles.append(handle)
        return handle

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise AigcError("the request was cancelled")


class GovernanceAdapter:
    """The server's single entry into governance (:class:`~aigc_studio.content.governance.Governance`).

    Args:
        settings: the installation's settings (moderation policy, watermark key file and strength).
        database: the opened store, for audit records and provenance.
    """

    def __init__(self, settings: Settings, database: Any) -> None:
        from aigc_studio.content.governance import Governance

        self.governance = Governance(settings, database)
        self.moderator = self.governance.moderator

    def check_prompt(self, text: str) -> None:
        """Refuse a prompt that moderation blocks (AigcError, 400 ``content_policy_violation``)."""
        self.governance.check_prompt(text)

    def sampling_params(self, params: SamplingParams, backend: Backend) -> SamplingParams:
        """The parameters with the watermark added when it is enabled."""
        return self.governance.sampling_params(params, backend)

    def check_output(self, text: str, prompt: str) -> tuple[str, list[dict[str, Any]]]:
        """An output as it may be published (withheld, redacted or as is) and the findings about it."""
        check = self.governance.check_output(text, prompt)
        return check.text, check.flags

    def record(self, **fields: Any) -> dict[str, Any]:
        """Write the audit record of a generation; returns its provenance (with the audit ``record_id``)."""
        return self.governance.record(**fields)

    def pipeline_hooks(self, backend: Backend, api_key_id: int | None) -> PipelineHooks:
        """Moderation, watermark, provenance and audit steps for one content-pipeline run."""
        return self.governance.pipeline_hooks(backend, api_key_id=api_key_id)

    def watermark(self):
        """The server's watermark config (key and strength).

        Raises:
            AigcError: the watermark is off in the settings, so there is no key to detect with.
        """
        if self.governance.watermark is None:
            raise AigcError("the watermark is off on this server (settings watermark.enabled = false); "
                            "turn it on to detect it", param="text")
        return self.governance.watermark

    def verify(self, text: str, backend: Backend | None):
        """Whether this installation produced ``text`` (audit match, else the watermark under ``backend``)."""
        return self.governance.verify(text, backend)


class RecentContent:
    """The newest /v1/content results by id, bounded (thread-safe)."""

    def __init__(self, limit: int = RECENT_CONTENT_LIMIT) -> None:
        self.limit = limit
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, content_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._items[content_id] = body
            self._items.move_to_end(content_id)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def get(self, content_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(content_id)


@dataclass
class ServerState:
    """Everything the routers need, kept on ``app.state.server``."""

    settings: Settings
    database: Any
    models: dict[str, ServedModel]
    governance: GovernanceAdapter
    metrics: Any
    recent_content: RecentContent = field(default_factory=RecentContent)

    def model(self, name: str | None, *, default: str | None = None) -> ServedModel:
        """The loaded model called ``name`` (or ``default``, else the first loaded one when ``name`` is None).

        Raises:
            ApiError: 404 naming the loaded models.
        """
        wanted = name or default or next(iter(self.models), None)
        if wanted in self.models:
            return self.models[wanted]
        loaded = ", ".join(self.models) or "none"
        raise ApiError(404, f"model {wanted!r} is not loaded; loaded models: {loaded} "
                            "(start the server with --model NAME to load another)",
                       code="model_not_found", param="model")
