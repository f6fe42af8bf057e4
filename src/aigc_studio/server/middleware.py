"""ASGI middleware: the request-body cap, and one structured log line plus metrics per request.

Both are plain ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched and the
latency measured is the time to the *end* of the response.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc_studio.server.errors import error_body

access_logger = logging.getLogger("aigc_studio.server.access")


class BodyLimitMiddleware:
    """Answers 413 to a request whose body is over ``max_bytes``, declared or actually sent.

    A ``Content-Length`` over the cap is refused before the body is read; a chunked body is counted as it
    arrives and the app's answer is replaced by the 413 once the cap is passed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                if not started:
                    started = True
                    await self._refuse(send)
                return
            started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body(
            413, f"request body is over this server's limit of {self.max_bytes} bytes; send less "
                 "(the limit is settings server.max_body_bytes)", code="request_too_large",
        )).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class AccessLogMiddleware:
    """Logs one JSON line per request (method, path, status, latency, key id, request id) and counts it.

    Args:
        app: the wrapped app.
        metrics: the app's :class:`~aigc_studio.server.metrics.ServerMetrics` (None: log only).
    """

    def __init__(self, app: ASGIApp, metrics: Any = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        status = 500  # what the client sees if the app dies before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            # The route template, not the raw path, keeps metric labels few (/v1/library/{item_id}).
            route_label = getattr(route, "path", None) or ("static" if status < 400 else "unmatched")
            state = scope.get("state") or {}
            access_logger.info(json.dumps({
                "event": "request", "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "route": route_label, "status": status, "latency_ms": round(seconds * 1000, 2),
                "key_id": state.get("api_key_id"),
                "client": scope["client"][0] if scope.get("client") else None,
            }))
            if self.metrics is not None:
                self.metrics.observe_request(route_label, scope["method"], status, seconds)


class JsonLogFormatter(logging.Formatter):
    """Formats every record as one JSON object (a request line's JSON is merged in, not nested)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
        }
        message = record.getMessage()
        try:
            parsed = json.loads(message) if message.startswith("{") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            entry.update(parsed)
        else:
            entry["message"] = message
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_json_logging(level: str = "info") -> None:
    """Send the server's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    for name in ("aigc_studio", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
