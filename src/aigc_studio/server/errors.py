"""One error body for every failure: OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

:func:`error_response` builds it; :func:`install_error_handlers` maps every exception to it:

* :class:`~aigc_studio.errors.AigcError` → 400 (or the error's own ``status``), ``param`` from the error;
* :class:`ApiError` (unknown model 404, missing key 401, rate limit 429, body too large 413, ...) → its status;
* the engine's full queue → 503 with ``Retry-After``;
* FastAPI's request validation → 422 with ``param`` the offending field, except malformed JSON → 400;
* anything else → 500 with a generic message; the traceback goes to the log only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aigc_studio.errors import AigcError
from aigc_studio.store.library import ContentNotFoundError

logger = logging.getLogger("aigc_studio.server")

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error", 500: "server_error", 503: "server_overloaded",
}
# Seconds a client should wait before retrying a request refused because the engine's queue was full.
OVERLOADED_RETRY_AFTER_S = 1


class ApiError(Exception):
    """An HTTP-level refusal with its status, OpenAI ``code`` and optional headers (``Retry-After``)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object for ``status`` (also sent as the last event of a failed stream)."""
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param, "code": code}}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON response carrying :func:`error_body`."""
    return JSONResponse(error_body(status, message, param=param, code=code), status_code=status, headers=headers)


def exception_to_error(error: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, body, headers)`` for any exception a handler raised (the single mapping, shared by streams)."""
    if isinstance(error, ApiError):
        return error.status, error_body(error.status, error.message, param=error.param, code=error.code), error.headers
    if _is_overloaded(error):
        message = f"{error}; the server is at capacity, retry in a moment"
        return 503, error_body(503, message, code="engine_overloaded"), {"Retry-After": str(OVERLOADED_RETRY_AFTER_S)}
    if isinstance(error, ContentNotFoundError):
        return 404, error_body(404, error.message, param=error.param, code="not_found"), {}
    if isinstance(error, AigcError):
        # Governance and other parts may give their errors an HTTP status and an OpenAI code.
        status = int(getattr(error, "status", 400) or 400)
        code = getattr(error, "code", None) or "invalid_value"
        return status, error_body(status, error.message, param=error.param, code=code), {}
    logger.error("unhandled error", exc_info=error)
    return 500, error_body(500, "internal server error; the server log has the details", code="internal_error"), {}


def _is_overloaded(error: Exception) -> bool:
    try:
        from aigc_studio.generation.engine import EngineOverloaded
    except ImportError:  # the engine module is optional while the server starts without models
        return False
    return isinstance(error, EngineOverloaded)


def _validation_param(location: tuple[Any, ...]) -> str | None:
    # ("body", "messages", 0, "role") -> "messages.0.role"; the leading "body"/"query" is noise to a client.
    parts = [str(part) for part in location[1:] if str(part) not in {"str", "list[str]", "dict[str,str]"}]
    return ".".join(parts) or None


async def _validation_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return error_response(400, f"the request body is not valid JSON ({detail}); send a JSON object",
                              code="invalid_json")
    location = tuple(first.get("loc", ()))
    param = _validation_param(location)
    # A validator of the whole body (type "value_error") explains itself; other problems at ("body",) are a
    # body that is not an object.
    if first.get("type") == "model_attributes_type" or (location == ("body",) and first.get("type") not in ("missing", "value_error")):
        return error_response(400, "the request body must be a JSON object", code="invalid_json")
    where = param or "request"
    message = f"{where}: {first.get('msg', 'invalid value').removeprefix('Value error, ')}"
    if "input" in first and first.get("type") != "missing":
        message += f" (got {json.dumps(first['input'], default=str, ensure_ascii=False)[:80]})"
    if len(problems) > 1:
        message += f"; and {len(problems) - 1} more problem(s)"
    return error_response(422, message, param=param, code=first.get("type"))


async def _exception_handler(request: Request, error: Exception) -> JSONResponse:
    status, body, headers = exception_to_error(error)
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_exception_handler(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
    if error.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
    return error_response(error.status_code, message, headers=getattr(error, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type to the one error body."""
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _exception_handler)
    app.add_exception_handler(AigcError, _exception_handler)
    app.add_exception_handler(Exception, _exception_handler)
