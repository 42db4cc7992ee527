"""Pure ASGI middleware: request metrics by route template, and the request body limit."""

from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import METRICS, Metrics

UNMATCHED = "unmatched"
# Every label value comes from a closed set: anonymous clients choose the method and the path, and
# each new label value is a new time series kept forever (5,000 made-up methods made /metrics 7 MB).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if isinstance(status, int) and 100 <= status <= 599 else OTHER


class RequestMetrics:
    """Counts every request by method, route template (never the raw path) and status, and times it.
    Unknown methods count as ``other``; an unmatched path as ``unmatched``."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics = METRICS) -> None:
        self.app = app
        self.metrics = metrics

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # rejected before routing (e.g. 413): find the template ourselves
            router = getattr(scope.get("app"), "router", None)
            for candidate in getattr(router, "routes", ()):
                match, _ = candidate.matches(scope)
                if match == Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", None) or UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self._route(scope)  # a route template of ours, or "unmatched"
            method = method_label(scope.get("method", "GET"))
            self.metrics.api_requests.labels(method, route, status_label(status)).inc()
            self.metrics.api_latency.labels(method, route).observe(time.perf_counter() - started)


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413: at once when Content-Length says so, otherwise
    as soon as the streamed body passes the limit (nothing beyond it is read)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    @property
    def message(self) -> str:
        return f"Request body too large: the limit is {self.max_bytes:,} bytes."

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self.message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions from reading the body (others become 400).
                    raise HTTPException(413, self.message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send)
