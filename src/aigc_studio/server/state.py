"""What a running server holds: its loaded models (each owned by one engine), storage and governance.

:class:`ServedModel` pairs a backend with the :class:`~aigc_studio.generation.engine.Engine` that owns it (for
a builtin model, by default, an :class:`~aigc_studio.generation.engine_process.EngineProcess`: the same engine
in a child process).
:class:`ServedImageModel` holds an image generator (a sketch model) and the lock that runs one request on it
at a time (image sampling is CPU-bound and already uses the torch threads).
:class:`EngineBackend` is a :class:`~aigc_studio.backends.base.Backend` whose ``generate`` and ``stream`` go
through that engine, so content-pipeline traffic shares the decode batch with the OpenAI endpoints; it can
report each token to a callback (the content stream) and be cancelled when the client goes away.

Governance (prompt and output moderation, watermark, provenance and audit records, the content-pipeline
hooks) is the installation's one :class:`~aigc_studio.content.governance.Governance`, as the CLI uses it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aigc_studio.backends.base import Backend, GenerationResult, StreamChunk, TokenLogprob
from aigc_studio.content.governance import Governance
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.server.errors import ApiError
from aigc_studio.settings import Settings
from aigc_studio.store.results import ContentResults

logger = logging.getLogger("aigc_studio.server")

@dataclass
class ServedModel:
    """A loaded model and the engine that owns it."""

    name: str
    backend: Backend
    engine: Any  # aigc_studio.generation.engine.Engine, or .engine_process.EngineProcess (same interface)
    created: int = field(default_factory=lambda: int(time.time()))

    def default_params(self) -> SamplingParams:
        """The model's own sampling defaults (its generation_config), or the library defaults."""
        defaults = getattr(self.backend, "default_params", None)
        return defaults() if callable(defaults) else SamplingParams()


@dataclass
class ServedImageModel:
    """A loaded image generator (:class:`~aigc_studio.images.pipeline.SketchModel`) and its request lock."""

    name: str
    sketch: Any  # aigc_studio.images.pipeline.SketchModel
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: int = field(default_factory=lambda: int(time.time()))


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


@dataclass
class ServerState:
    """Everything the routers need, kept on ``app.state.server``."""

    settings: Settings
    database: Any
    models: dict[str, ServedModel]
    governance: Governance
    metrics: Any
    content_results: ContentResults
    image_models: dict[str, ServedImageModel] = field(default_factory=dict)
    image_signer: Any = None  # aigc_studio.images.provenance.C2paSigner: C2PA-signs served sketches when set

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

    def image_model(self, name: str | None) -> ServedImageModel:
        """The loaded image model called ``name`` (the first loaded one when ``name`` is None).

        Raises:
            ApiError: 404 naming the loaded image models (or saying how to load one).
        """
        wanted = name or next(iter(self.image_models), None)
        if wanted in self.image_models:
            return self.image_models[wanted]
        if wanted is None:
            raise ApiError(404, "no image model is loaded; start the server with --model fashion-sketch (or an "
                                "image model directory)", code="model_not_found", param="model")
        loaded = ", ".join(self.image_models) or "none"
        hint = " (a text model: use /v1/completions or /v1/chat/completions)" if wanted in self.models else ""
        raise ApiError(404, f"image model {wanted!r} is not loaded{hint}; loaded image models: {loaded} "
                            "(start the server with --model NAME to load another)",
                       code="model_not_found", param="model")
