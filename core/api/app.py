"""The FastAPI application: mem0-compatible memory routes, Optimus extensions, health and metrics.

``create_app(runtime)`` serves an open :class:`~core.runtime.Runtime` (tests, embedding in
another server); ``create_app()`` opens one from the settings when the server starts and closes
it when it stops, and runs the extraction worker meanwhile. ``uvicorn core.api.app:app`` and
``python -m core.api`` use the latter; the module attribute ``app`` is built on first access.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from core.api import routes_entities, routes_exports, routes_memories, routes_optimus, routes_service
from core.api.context import ApiContext, RateLimiter
from core.api.errors import InternalErrors, app_error, request_validation_error
from core.api.middleware import BodyLimit, RequestMetrics
from core.apikeys import ApiKeyStore
from core.config import Settings, get_settings
from core.errors import AppError, ServiceError
from core.runtime import Runtime, open_runtime

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from core.mcp.server import McpEndpoint

DESCRIPTION = """\
Long-term memory over HTTP. Works with the official `mem0ai` client unchanged:

```python
from mem0 import MemoryClient
client = MemoryClient(api_key="om_…", host="http://localhost:8501/api")  # the app's own port
```

(`python -m core.api` serves the same API at its root, e.g. `http://127.0.0.1:8000`.) MCP
clients use `/mcp` beside it with `Authorization: Bearer om_…`. Every key acts as its owner account and sees only that account's memories; `user_id`,
`agent_id` and `run_id` are scopes inside it. Send the key as `Authorization: Token om_…`
(or `Bearer om_…`). Create keys on the Settings page or with `python -m core apikey create`.
"""


def build_context(runtime: Runtime, settings: Settings, memory_model: Model | None = None) -> ApiContext:
    """What the routes and the MCP tools share: the runtime, the key store and the rate limits."""
    return ApiContext(
        runtime=runtime,
        keys=ApiKeyStore(runtime.storage.engine),
        limiter=RateLimiter(settings.api_rate_limit_per_minute, who="this account"),
        learner=runtime.learning.with_model(memory_model) if memory_model is not None else runtime.learning,
        learn_wait=settings.api_learn_wait_seconds,
        address_limiter=RateLimiter(settings.api_rate_limit_per_address_per_minute, who="this address"),
        trusted_proxies=settings.trusted_networks,
    )


def create_app(
    runtime: Runtime | None = None,
    *,
    memory_model: Model | None = None,
    settings: Settings | None = None,
    start_worker: bool | None = None,
    mcp: bool = True,
) -> FastAPI:
    """The API over ``runtime``, or over a runtime opened at start-up from ``settings``.

    ``settings`` also sets the API's own knobs (rate limit, body limit, CORS); by default the
    runtime's. ``memory_model`` replaces the configured memory model for inferred adds (tests pass
    a scripted one). ``start_worker`` (default: only when the app opens its own runtime) runs the
    extraction worker that learns from queued exchanges. ``mcp`` serves the MCP endpoint at ``/mcp``
    (``core.mcp``) beside the routes, over the same context (keys and rate limits).
    """
    settings = settings or (runtime.settings if runtime is not None else get_settings())
    run_worker = runtime is None if start_worker is None else start_worker

    endpoint: McpEndpoint | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime if runtime is not None else await run_in_threadpool(open_runtime, settings)
        try:
            if runtime is None:
                app.state.api = build_context(rt, settings, memory_model)
                await run_in_threadpool(lambda: rt.memory)  # load the embedder before the first request
            if run_worker:
                rt.start_worker()
            if endpoint is None:
                yield
            else:
                async with endpoint.running():
                    yield
        finally:
            if runtime is None:
                rt.close()

    app = FastAPI(
        title="Optimus API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks stay off: our metrics are Prometheus, and nothing leaves the host.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                   "auto_configure": False},
    )
    if runtime is not None:
        app.state.api = build_context(runtime, settings, memory_model)
    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    for module in (routes_service, routes_memories, routes_entities, routes_exports, routes_optimus):
        app.include_router(module.router)
    if mcp:
        from core.mcp.server import McpEndpoint

        endpoint = McpEndpoint(lambda: _opened(app))
        app.router.add_route("/mcp", endpoint, include_in_schema=False)

    # Added innermost first: unhandled errors become a 500 inside the app (so the connection survives),
    # then CORS (only if origins are configured), the body limit, and metrics, which count them all.
    app.add_middleware(InternalErrors)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"], allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestMetrics)
    return app


def _opened(app: FastAPI) -> ApiContext:
    ctx = getattr(app.state, "api", None)
    if ctx is None:  # only while the server starts
        raise ServiceError("The API is starting.")
    return ctx


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    """``core.api.app.app``: built on first access, so importing this module reads no settings."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
