"""``aigc serve``: the OpenAI-compatible API and the web studio under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from aigc_studio.models.registry import resolve_model
from aigc_studio.settings import load_settings

console = Console(highlight=False, stderr=True)

# Seconds uvicorn waits, after SIGTERM or Ctrl-C, for open responses (streams included) before closing them.
GRACEFUL_SHUTDOWN_S = 30


def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default 127.0.0.1: this machine only).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default 8000).")] = None,
    model: Annotated[Optional[list[str]], typer.Option(help="Model to serve: a bundled name or a model directory (repeatable; default e2e-copy).")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL (default sqlite:///var/aigc.db).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Settings file (default aigc.toml when present).")] = None,
    auth: Annotated[Optional[str], typer.Option(help="auto (keys needed once one exists), required or off.")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="none or int8: int8 weights for every --model (builtin and transformers; faster CPU decoding). Default: each model's quantize setting, else none.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the HTTP API (/v1, OpenAI-compatible), the web studio (/), /docs, /healthz and /metrics."""
    import uvicorn

    from aigc_studio.backends.registry import load_backend
    from aigc_studio.errors import AigcError
    from aigc_studio.server.app import create_app
    from aigc_studio.server.middleware import configure_json_logging
    from aigc_studio.store.db import Database

    if auth is not None and auth not in ("auto", "required", "off"):
        raise AigcError(f"unknown --auth {auth!r}; use auto, required or off", param="auth")
    server = {"host": host, "port": port, "auth": auth}
    settings = load_settings(config, database_url=database_url,
                             server={key: value for key, value in server.items() if value is not None} or None)
    models = model or [settings.default_model]
    for name in models:
        if name not in settings.models:
            resolve_model(name)  # an unknown name is a one-line error now, not a failed startup later
    served = [load_backend(name, settings, quantize=quantize) for name in models] if quantize else models
    database = Database.from_settings(settings)
    app = create_app(settings, models=served, database=database)
    configure_json_logging(log_level)
    shown_host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    console.print(f"AIGC Studio at http://{shown_host}:{settings.server.port}/  (API /v1, docs /docs); Ctrl-C stops")
    try:
        uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_config=None, access_log=False,
                    log_level=log_level, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    finally:
        database.close()

