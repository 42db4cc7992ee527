"""The MCP endpoint: Optimus memories for any MCP client, over streamable HTTP at ``/mcp``.

Built with the official ``mcp`` SDK (``MCPServer``), served in stateless mode with JSON
responses, so any replica can answer any request (no session lives in a process). It is one
ASGI app, :class:`McpEndpoint`, mounted by two hosts:

* the Streamlit server (``streamlit run app.py``), beside the UI and the REST API at ``/api``,
  over the process's shared runtime;
* the REST API replica (``python -m core.api``), beside its routes.

The host's lifespan must run :meth:`McpEndpoint.running` (the SDK's session manager). Before the
SDK sees a request the endpoint checks, in this order: that the runtime is open (503 with an
error id when settings are invalid or storage is unreachable), the client address's rate limit
(429, before the key is looked up, as the REST API does), the body limit (413), and that the
body is JSON that every part of the system can hold (400): UTF-8, no NaN or Infinity, no
unpaired surrogate, nested at most :data:`MAX_JSON_DEPTH` levels. The SDK then checks the key
(401) and dispatches the tool call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.context import ApiContext
from core.api.errors import error_response, safe_json
from core.errors import AppError, ClientError
from core.logs import configure_logging, exception_summary, new_error_id
from core.mcp.auth import ApiKeyVerifier
from core.mcp.tools import MemoryTools
from core.memory.limits import nesting_depth
from core.proxies import client_address

log = logging.getLogger("core.mcp")
PATH = "/mcp"
MAX_JSON_DEPTH = 32  # the JSON-RPC envelope, tool arguments, and filters nested as the REST API allows
INSTRUCTIONS = """\
Long-term memory of one Optimus account (the API key's owner). Search before answering questions
about the person; add or learn what they want remembered. user_id scopes memories to an end-user
inside the account (default: the account's own memories, the ones its chats use)."""
# The SDK logs refused tool calls' messages (INFO), caller-chosen method names and request ids
# (WARNING, DEBUG): caller input. Its errors still reach the log; ours say what failed by error id.
SDK_LOG_LEVEL = logging.ERROR


def build_server(context: Callable[[], ApiContext], *, issuer_url: str = "http://localhost") -> MCPServer:
    """The SDK server with the memory tools and API-key auth (a resource server: no OAuth routes).

    ``issuer_url`` is required by the SDK's ``AuthSettings``; with no ``resource_server_url`` it
    is never published (there is no OAuth metadata: clients send the key they were given).
    """
    configure_logging()  # first: MCPServer() calls logging.basicConfig, which would install its own handler
    logging.getLogger("mcp").setLevel(SDK_LOG_LEVEL)
    server = MCPServer(
        name="optimus", title="Optimus memory", instructions=INSTRUCTIONS, version="0.1.0",
        token_verifier=ApiKeyVerifier(context),
        auth=AuthSettings(issuer_url=issuer_url, resource_server_url=None),
        log_level="WARNING",
    )
    MemoryTools(context).register(server)
    return server


class McpEndpoint:
    """ASGI app for ``Route("/mcp", endpoint)``, over ``context`` (which raises an
    :class:`~core.errors.AppError` while the runtime cannot open)."""

    def __init__(self, context: Callable[[], ApiContext], *, path: str = PATH) -> None:
        self._context = context
        self.server = build_server(context)
        # DNS-rebinding protection guards unauthenticated local servers; every request here needs
        # an API key, and the Host behind a reverse proxy is the operator's choice.
        self._app: ASGIApp = self.server.streamable_http_app(
            streamable_http_path=path, json_response=True, stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the SDK's session manager (its task group) for the host's lifetime."""
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            ctx = await anyio.to_thread.run_sync(self._context)
            peer = scope.get("client")
            address = client_address(peer[0] if peer else None, Headers(scope=scope).get("x-forwarded-for"),
                                     ctx.trusted_proxies)  # as the REST API reads it
            ctx.address_limiter.check(address or "unknown")
            limit = ctx.runtime.settings.api_max_body_bytes
            body = await _read_body(receive, limit)
            if body is None:
                await _answer(send, 413, {"detail": f"Request body too large: the limit is {limit:,} bytes."})
                return
            problem = body_problem(body)
            if problem:
                await _answer(send, 400, {"jsonrpc": "2.0", "id": None,
                                          "error": {"code": -32700, "message": f"Parse error: {problem}"}})
                return
            await self._app(scope, _replay(body, receive), tracking_send)
        except AppError as exc:
            if started:
                raise
            await self._refuse(exc, scope, receive, send)
        except Exception as exc:
            if started:
                raise
            error_id = new_error_id()
            log.error("error %s: %s %s: %s", error_id, scope.get("method", "?"), PATH, exception_summary(exc))
            await _answer(send, 500, {"detail": "Internal server error.", "error_id": error_id},
                          extra=[(b"x-error-id", error_id.encode())])

    async def _refuse(self, exc: AppError, scope: Scope, receive: Receive, send: Send) -> None:
        """The REST API's answer to the same error (429 with Retry-After, 503 with an error id)."""
        error_id = None
        if not isinstance(exc, ClientError):  # the runtime cannot open: the log line says why, by id
            error_id = new_error_id()
            cause = exc.__cause__ or exc.__context__
            log.warning("error %s: %s %s: %s%s", error_id, scope.get("method", "?"), PATH, type(exc).__name__,
                        f" (cause: {exception_summary(cause)})" if cause else "")
        await error_response(exc, error_id=error_id)(scope, receive, send)


def body_problem(body: bytes) -> str | None:
    """Why ``body`` is not JSON we accept, or None (an empty body is the SDK's to judge)."""
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8."

    def constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        value = json.loads(text, parse_constant=constant)
    except RecursionError:
        return f"the body is nested more than {MAX_JSON_DEPTH} levels deep."
    except ValueError:
        return "the body is not valid JSON (NaN and Infinity are not JSON numbers)."
    if nesting_depth(value, stop_at=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return f"the body is nested more than {MAX_JSON_DEPTH} levels deep."
    work = [value]
    while work:
        item = work.pop()
        if isinstance(item, dict):
            work.extend(item.keys())
            work.extend(item.values())
        elif isinstance(item, list):
            work.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "the body holds text with an unpaired surrogate, which is not Unicode."
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the SDK the body already read, then waits on the client as before."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, content: dict, *, extra: list | None = None) -> None:
    body = safe_json(content)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
