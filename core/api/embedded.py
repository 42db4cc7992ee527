"""The REST API and the MCP endpoint on the Streamlit server's own port (embedded mode).

``streamlit run app.py`` serves the UI and, through :func:`embedded_services`, the REST API
mounted at ``/api`` (``MemoryClient(host="http://localhost:8501/api")``) and MCP at ``/mcp``,
all over the one runtime of the process (:func:`core.runtime.shared_runtime`): what the chat
learns, the API and MCP see, and the other way round.

Nothing opens when the server starts: the runtime opens on first use, by a page, an API call or
an MCP call, whichever comes first. While it cannot open (invalid settings, unreachable storage)
``/api`` and ``/mcp`` answer 503 with an error id and the page says what to fix; the next request
tries again. The REST API and MCP share one :class:`~core.api.context.ApiContext` per runtime,
so an account's rate limit is one budget for both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from core.api.context import ApiContext
from core.api.errors import error_response
from core.errors import AppError
from core.logs import exception_summary, new_error_id
from core.mcp.server import McpEndpoint
from core.runtime import Runtime, close_shared_runtime, shared_runtime

log = logging.getLogger("core.api")


class EmbeddedServices:
    """``/api`` and ``/mcp`` over ``runtime`` (a provider that raises while it cannot open)."""

    def __init__(self, runtime: Callable[[], Runtime] = shared_runtime,
                 close: Callable[[], None] = close_shared_runtime) -> None:
        self._runtime = runtime
        self._close = close
        self._lock = threading.Lock()
        self._built: tuple[Runtime, FastAPI] | None = None
        self.mcp = McpEndpoint(self.context)

    def _api(self) -> FastAPI:
        runtime = self._runtime()
        with self._lock:
            if self._built is None or self._built[0] is not runtime:  # a reopened runtime gets a fresh app
                from core.api.app import create_app

                self._built = (runtime, create_app(runtime, start_worker=False, mcp=False))
            return self._built[1]

    def context(self) -> ApiContext:
        """The context the REST API and MCP share (opens the runtime on first use)."""
        return self._api().state.api

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: the REST API, or 503 while the runtime cannot open."""
        if scope["type"] != "http":
            return
        try:
            app = await run_in_threadpool(self._api)
        except AppError as exc:
            error_id = new_error_id()
            cause = exc.__cause__ or exc.__context__
            log.warning("error %s: %s /api: %s%s", error_id, scope.get("method", "?"), type(exc).__name__,
                        f" (cause: {exception_summary(cause)})" if cause else "")
            await error_response(exc, error_id=error_id)(scope, receive, send)
            return
        await app(scope, receive, send)

    @property
    def routes(self) -> list[BaseRoute]:
        """List these after the app's own ``/api/...`` routes: the mount takes everything under ``/api``."""
        return [Mount("/api", app=self.api), Route("/mcp", endpoint=self.mcp)]

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """For ``st.App(lifespan=...)``: runs MCP's session manager, closes the runtime at shutdown."""
        async with self.mcp.running():
            try:
                yield
            finally:
                await run_in_threadpool(self._close)


_services: EmbeddedServices | None = None
_services_lock = threading.Lock()


def embedded_services() -> EmbeddedServices:
    """This process's services (``app.py`` is re-run for every browser session; they are built once)."""
    global _services
    with _services_lock:
        if _services is None:
            _services = EmbeddedServices()
        return _services
