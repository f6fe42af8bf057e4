"""The app factory: :func:`create_app` builds the FastAPI app that ``aigc serve`` runs under uvicorn.

::

    app = create_app(load_settings(), models=["e2e-copy"])     # uvicorn.run(app, host="127.0.0.1", port=8000)

Startup (the lifespan) opens the database (migrating it), loads every model and starts one engine per model;
shutdown stops taking requests and drains the engines, so requests already running finish (uvicorn first
waits for open responses, streams included). Routers live in :mod:`aigc_studio.server.routers`; every error
leaves through :mod:`aigc_studio.server.errors` as OpenAI's error body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from aigc_studio import __version__
from aigc_studio.backends.base import Backend
from aigc_studio.content.governance import Governance
from aigc_studio.server.auth import Authenticator
from aigc_studio.server.errors import install_error_handlers
from aigc_studio.server.metrics import ServerMetrics
from aigc_studio.server.middleware import AccessLogMiddleware, BodyLimitMiddleware
from aigc_studio.server.protocol import HealthResponse
from aigc_studio.server.routers import audio, content, images, openai, safety, support
from aigc_studio.server.state import ServedImageModel, ServedModel, ServerState
from aigc_studio.settings import Settings
from aigc_studio.store.results import ContentResults

logger = logging.getLogger("aigc_studio.server")

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"


def load_models(names: Sequence[str | Path | Backend], settings: Settings) -> list[Backend]:
    """Load each model: a ``[models.NAME]`` of aigc.toml (builtin, transformers or OpenAI-compatible), a model
    directory, a bundled model's name, or an already built backend.

    Raises:
        AigcError: an unknown name, a missing directory or broken model files, or two models with one name.
    """
    from aigc_studio.backends.registry import load_backend
    from aigc_studio.errors import AigcError

    backends: list[Backend] = [load_backend(item, settings) if isinstance(item, (str, Path)) else item for item in names]
    seen: set[str] = set()
    for backend in backends:
        if backend.info.name in seen:
            raise AigcError(f"two models are called {backend.info.name!r}; rename one of the directories", param="model")
        seen.add(backend.info.name)
    return backends


def split_models(names: Sequence[str | Path | Backend], settings: Settings) -> tuple[list[str | Path | Backend], dict[str, ServedImageModel]]:
    """The text models to load as backends, and the image generators (sketch models) loaded now, by name.

    Raises:
        AigcError: an image model that does not load (or is the classifier), or two image models with one name.
    """
    from aigc_studio.backends.registry import load_image_generator, model_kind
    from aigc_studio.errors import AigcError

    text: list[str | Path | Backend] = []
    image: dict[str, ServedImageModel] = {}
    for item in names:
        if isinstance(item, (str, Path)) and model_kind(item, settings) == "image":
            sketch = load_image_generator(item, settings)
            if sketch.name in image:
                raise AigcError(f"two image models are called {sketch.name!r}; rename one of the directories", param="model")
            image[sketch.name] = ServedImageModel(name=sketch.name, sketch=sketch)
        else:
            text.append(item)
    return text, image


def c2pa_signer_for(settings: Settings) -> Any:
    """The C2PA signer of served sketches (:class:`~aigc_studio.images.provenance.C2paSigner`, its local
    certificate made on first use), or None when ``server.image_c2pa`` is off or c2pa-python is not installed."""
    from aigc_studio.images.provenance import C2paSigner, c2pa_available

    if not settings.server.image_c2pa:
        return None
    if not c2pa_available():
        logger.info("served sketches carry their generation record only: install c2pa-python for C2PA manifests")
        return None
    return C2paSigner(settings.c2pa_directory)


def start_engines(backends: Sequence[Backend], settings: Settings) -> dict[str, ServedModel]:
    """One started engine per backend, keyed by model name: builtin models in a child process of their own
    unless ``server.engine_process`` is off, the others (and then all) in this process.

    Raises:
        AigcError: an engine process that does not start.
    """
    from aigc_studio.backends.builtin import BuiltinBackend
    from aigc_studio.generation.engine import Engine
    from aigc_studio.generation.engine_process import EngineProcess

    served = {}
    for backend in backends:
        sizes = {"max_batch_size": settings.server.max_batch_size, "max_queue": settings.server.max_queue}
        own_process = settings.server.engine_process and isinstance(backend, BuiltinBackend)
        engine = (EngineProcess(backend, **sizes, threads=settings.server.engine_threads) if own_process
                  else Engine(backend, **sizes))
        try:
            engine.start()
        except BaseException:
            for model in served.values():
                model.engine.shutdown(drain=False)
            raise
        served[backend.info.name] = ServedModel(name=backend.info.name, backend=backend, engine=engine)
    return served


def create_app(settings: Settings, *, models: Sequence[str | Path | Backend] | None = None, database: Any = None) -> FastAPI:
    """Build the app; models load and engines start when it starts (its lifespan).

    Args:
        settings: the installation's settings (:func:`~aigc_studio.settings.load_settings`).
        models: model names (bundled), directories or backends to serve; None serves ``settings.default_model``.
        database: an opened :class:`~aigc_studio.store.db.Database`; None opens ``settings.database_url``.

    Returns:
        The FastAPI app (use it as a context manager in tests so the lifespan runs).
    """
    model_specs = list(models) if models is not None else [settings.default_model]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database
        if db is None:
            from aigc_studio.store.db import Database

            db = await anyio.to_thread.run_sync(Database.from_settings, settings)
        governance = await anyio.to_thread.run_sync(Governance, settings, db)
        text_specs, image_models = await anyio.to_thread.run_sync(split_models, model_specs, settings)
        backends = await anyio.to_thread.run_sync(load_models, text_specs, settings)
        served = await anyio.to_thread.run_sync(start_engines, backends, settings)
        image_signer = await anyio.to_thread.run_sync(c2pa_signer_for, settings) if image_models else None
        app.state.server = ServerState(settings=settings, database=db, models=served, governance=governance,
                                       metrics=metrics, image_models=image_models, image_signer=image_signer,
                                       content_results=ContentResults(db, settings.server.content_retention_days))
        logger.info("serving models: %s", ", ".join([*served, *image_models]))
        try:
            yield
        finally:
            for model in served.values():
                # Finish what is running; uvicorn has already stopped accepting connections.
                await anyio.to_thread.run_sync(lambda engine=model.engine: engine.shutdown(drain=True))
            if database is None:
                db.close()

    app = FastAPI(
        title="AIGC Studio", version=__version__, lifespan=lifespan,
        description="OpenAI-compatible generation, ranked content with score cards, a content library and governance.",
    )
    metrics = ServerMetrics(lambda: _engines(app))
    authenticator = app.state.authenticator = Authenticator(settings.server, database)
    install_error_handlers(app)

    async def authenticate(request: Request) -> int | None:
        # The lifespan may have opened the database after the app was built: take it from the state then.
        if authenticator.database is None:
            authenticator.database = request.app.state.server.database
        return await anyio.to_thread.run_sync(authenticator, request)

    v1 = [Depends(authenticate)]
    app.include_router(openai.router, dependencies=v1)
    app.include_router(content.router, dependencies=v1)
    app.include_router(safety.router, dependencies=v1)
    app.include_router(images.router, dependencies=v1)
    app.include_router(support.router, dependencies=v1)
    app.include_router(audio.router, dependencies=v1)

    @app.get("/healthz", response_model=HealthResponse, tags=["operations"])
    def healthz() -> HealthResponse:
        """Liveness and readiness: the loaded models and whether the database answers."""
        state: ServerState = app.state.server
        try:
            with state.database.session() as session:
                session.execute(text("SELECT 1"))
            database_ok = True
        except Exception:  # a health check reports the failure instead of failing itself
            logger.warning("health check: database unreachable", exc_info=True)
            database_ok = False
        return HealthResponse(status="ok", models=[*state.models, *state.image_models], database=database_ok)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition: requests, latency, time to first token, tokens, queue depth, batch size."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    if settings.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.server.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Retry-After", "X-Request-Id"])
    STATIC_DIRECTORY.mkdir(exist_ok=True)
    app.mount("/", StaticFiles(directory=STATIC_DIRECTORY, html=True), name="studio")
    return app


def _engines(app: FastAPI) -> dict[str, Any]:
    """The running engines by model name (none before startup), for the metrics collector."""
    state: ServerState | None = getattr(app.state, "server", None)
    return {name: model.engine for name, model in state.models.items()} if state is not None else {}
