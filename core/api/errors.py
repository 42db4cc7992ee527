"""How the API answers when something goes wrong: a status, a message for the client, never a crash.

* :class:`~core.errors.AppError` → its status (422 with FastAPI's ``detail`` list for a
  ``ValidationError``). A service error (5xx) answers a fixed message per kind and an ``error_id``;
  the log line with that id says what failed (types and places, never data).
* FastAPI's request validation → 422 with ``loc``, ``msg`` and ``type`` per problem. The rejected
  input is not echoed: it may be huge, not encodable (a lone surrogate) or not JSON (NaN).
* anything else → 500 with an ``error_id``, answered by :class:`InternalErrors` inside the
  application, so the server keeps the client's keep-alive connection for the next request.

Every error body is rendered by :func:`safe_json`, which cannot fail to encode.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import (
    AppError,
    BudgetExceeded,
    ClientError,
    ConfigError,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    ServiceError,
    StoreUnavailable,
    ValidationError,
)
from core.logs import exception_summary, new_error_id

log = logging.getLogger("core.api")

# Most specific first: the first class an error is an instance of decides the status.
STATUS_OF: tuple[tuple[type[AppError], int], ...] = (
    (ValidationError, 422),
    (NotFound, 404),
    (PermissionDenied, 403),
    (InvalidCredentials, 401),
    (BudgetExceeded, 402),
    (RateLimited, 429),
    (ClientError, 400),
    (ServiceError, 503),
    (ConfigError, 503),
)
# What a client is told when the world failed: stable text, whatever the cause said.
SERVICE_MESSAGES: tuple[tuple[type[AppError], str], ...] = (
    (StoreUnavailable, "The memory store is not available right now; nothing was changed. Try again in a moment."),
    (ProviderUnavailable, "The model provider is not available right now. Try again in a moment."),
    (ServiceError, "A service Optimus depends on failed. Try again in a moment."),
    (ConfigError, "The server is not configured correctly; its operator can find out why from the error id."),
)
INTERNAL = "Internal server error."
FALLBACK_BODY = b'{"detail":"Internal server error."}'


def _plain(value: Any) -> Any:
    """``value`` with every string encodable as UTF-8 and every float finite, as JSON requires."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(_plain(str(k))): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return _plain(str(value))


def safe_json(content: Any) -> bytes:
    """Compact UTF-8 JSON of ``content``; never raises (a fixed body if all else fails)."""
    try:
        return json.dumps(_plain(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except Exception:  # noqa: BLE001 - the point of this function is to always answer
        return FALLBACK_BODY


class SafeJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return safe_json(content)


def error_response(exc: AppError, *, error_id: str | None = None) -> SafeJSONResponse:
    status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 500)
    headers: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        # The shape FastAPI uses for its own 422s, so clients parse one format.
        loc = exc.field.split(".") if exc.field else []
        content: dict = {"detail": [{"loc": loc, "msg": exc.message, "type": "value_error"}]}
    elif status >= 500:
        message = next((text for kind, text in SERVICE_MESSAGES if isinstance(exc, kind)), INTERNAL)
        content = {"detail": message, "error_id": error_id}
    else:
        content = {"detail": exc.message}
    if error_id:
        headers["X-Error-Id"] = error_id
    if isinstance(exc, InvalidCredentials):
        headers["WWW-Authenticate"] = "Token"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if "limit" in exc.detail:
            headers["X-RateLimit-Limit"] = str(exc.detail["limit"])
            headers["X-RateLimit-Remaining"] = "0"
    return SafeJSONResponse(content, status_code=status, headers=headers)


async def app_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, AppError)
    if isinstance(exc, ServiceError | ConfigError):
        error_id = new_error_id()
        cause = exc.__cause__ or exc.__context__
        log.warning("error %s: %s %s: %s%s", error_id, request.method, _route(request), type(exc).__name__,
                    f" (cause: {exception_summary(cause)})" if cause else "")
        return error_response(exc, error_id=error_id)
    return error_response(exc)


async def request_validation_error(_request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:50]:
        loc = [part if isinstance(part, int) else str(part)[:100] for part in error.get("loc", ())]
        problems.append({"loc": loc, "msg": str(error.get("msg", "Invalid value."))[:500],
                         "type": str(error.get("type", "value_error"))})
    return SafeJSONResponse({"detail": problems}, status_code=422)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class InternalErrors:
    """Answers an unhandled exception with 500 and an error id *inside* the application.

    Starlette's outermost error middleware answers too, but then re-raises, and the server closes
    the connection; answering here keeps it open. A response that already started cannot be
    changed: that exception goes on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except HTTPException:
            raise
        except Exception as exc:
            if started:
                raise
            error_id = new_error_id()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            log.error("error %s: %s %s: %s", error_id, scope.get("method", "?"), route, exception_summary(exc))
            body = safe_json({"detail": INTERNAL, "error_id": error_id})
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"x-error-id", error_id.encode())]})
            await send({"type": "http.response.body", "body": body})
