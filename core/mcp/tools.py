"""The MCP tools: a person's Optimus memories, scoped and shaped exactly like the REST API.

Each tool is a thin adapter over the REST API's own operations (``core.api.routes_memories``)
and its request models, filter parsing and scoping (``core.api.schemas``, ``core.api.filters``,
``core.api.context.scope_for``): the same account boundary, the same checks, the same memory
shape (``MemoryOut``). Changes are recorded with source ``"mcp"``.

Every call takes one request from the caller's account budget (shared with its REST requests)
and counts a use of the key. A refused call is a tool error that says why: bad input names the
field, an unknown id says there is no such memory, a failed store gives an error id whose log
line says what failed (types and places, never data).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from datetime import date
from typing import Any, Literal, TypeVar

import pydantic
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from core.api import routes_memories as ops
from core.api.context import ApiContext
from core.api.errors import SERVICE_MESSAGES, STATUS_OF
from core.api.filters import parse_filters
from core.api.schemas import (
    AddIn,
    AddOut,
    EventStatusOut,
    HistoryOut,
    ListIn,
    MemoryList,
    MemoryOut,
    Notice,
    SearchIn,
    UpdateIn,
)
from core.apikeys import KeyOwner
from core.errors import AppError, RateLimited, ValidationError
from core.logs import exception_summary, new_error_id
from core.mcp.auth import current_caller
from core.memory.types import MemoryType
from core.metrics import METRICS

log = logging.getLogger("core.mcp")
T = TypeVar("T")
SOURCE = "mcp"
# The outcome label of optimus_mcp_tool_calls_total: a closed set, like every label we export.
OUTCOMES = ("ok", "invalid", "not_found", "denied", "rate_limited", "unavailable", "error")
_OUTCOME_OF_STATUS = {422: "invalid", 400: "invalid", 402: "denied", 401: "denied", 403: "denied",
                      404: "not_found", 429: "rate_limited", 503: "unavailable"}
Scoped = Field(None, min_length=1, max_length=200)


class LearnMessage(BaseModel):
    role: Literal["user", "assistant"] = "user"
    content: str


class MemoryPage(BaseModel):
    count: int = Field(description="How many memories match.")
    page: int
    page_size: int
    has_more: bool
    results: list[MemoryOut]


class HistoryList(BaseModel):
    results: list[HistoryOut]


def _field_errors(exc: pydantic.ValidationError) -> str:
    # Field names and pydantic's messages only: the rejected values are the caller's data.
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "arguments"
        parts.append(f"{where}: {error.get('msg', 'invalid value')}")
    return "Invalid input: " + "; ".join(parts)


def _app_error_text(exc: AppError, tool: str) -> tuple[str, str]:
    """(outcome label, the text the caller gets) for one of our errors."""
    status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 500)
    outcome = _OUTCOME_OF_STATUS.get(status, "error")
    if status < 500:
        field = getattr(exc, "field", None)
        text = f"{field}: {exc.message}" if field else exc.message
        if isinstance(exc, RateLimited):
            text = f"429 {text}"
        return outcome, text
    error_id = new_error_id()
    cause = exc.__cause__ or exc.__context__
    log.warning("error %s: mcp tool %s: %s%s", error_id, tool, type(exc).__name__,
                f" (cause: {exception_summary(cause)})" if cause else "")
    message = next((text for kind, text in SERVICE_MESSAGES if isinstance(exc, kind)), "Internal server error.")
    return "unavailable", f"503 {message} (error id {error_id})"


class MemoryTools:
    """The tools over a context provider (the process's API context: runtime, keys, rate limits)."""

    def __init__(self, context: Callable[[], ApiContext]) -> None:
        self._context = context

    def _call(self, tool: str, work: Callable[[ApiContext, KeyOwner], T]) -> T:
        try:
            ctx = self._context()
            caller = current_caller()
            ctx.limiter.check(caller.owner_id)  # one budget per account, REST and MCP together
            ctx.keys.record_use(caller.key_id)
            result = work(ctx, caller)
        except pydantic.ValidationError as exc:
            METRICS.mcp_tool_calls.labels(tool, "invalid").inc()
            raise ToolError(_field_errors(exc)) from None
        except AppError as exc:
            outcome, text = _app_error_text(exc, tool)
            METRICS.mcp_tool_calls.labels(tool, outcome).inc()
            raise ToolError(text) from None
        except Exception as exc:  # a bug: the caller gets an id, the log gets types and places
            error_id = new_error_id()
            log.error("error %s: mcp tool %s: %s", error_id, tool, exception_summary(exc))
            METRICS.mcp_tool_calls.labels(tool, "error").inc()
            raise ToolError(f"500 Internal server error (error id {error_id}).") from None
        METRICS.mcp_tool_calls.labels(tool, "ok").inc()
        return result

    # ------------------------------------------------------------------ reading
    def search_memories(
        self, query: str, filters: dict[str, Any] | None = None, user_id: str | None = None,
        agent_id: str | None = None, run_id: str | None = None, top_k: int = 10, threshold: float | None = None,
        mode: Literal["hybrid", "dense", "keyword"] = "hybrid",
    ) -> MemoryList:
        """Search the account's memories by meaning and keywords, best first.

        ``filters`` is mem0's filter object (user_id, agent_id, run_id, created_at, metadata,
        categories/tags, people, types, importance, AND); ``user_id`` etc. are shortcuts for it.
        Without a user_id every memory of the account is searched. ``score`` is cosine similarity."""
        def work(ctx: ApiContext, caller: KeyOwner) -> MemoryList:
            body = SearchIn(query=query, filters=_scoped(filters, user_id, agent_id, run_id), top_k=top_k,
                            threshold=threshold, mode=mode)
            return ops.search_memories(body, caller, ctx)

        return self._call("search_memories", work)

    def list_memories(
        self, filters: dict[str, Any] | None = None, user_id: str | None = None, agent_id: str | None = None,
        run_id: str | None = None, page: int = 1, page_size: int = 100, show_expired: bool = False,
    ) -> MemoryPage:
        """List the account's memories, newest first, a page at a time (mem0's filter object, as in search)."""
        def work(ctx: ApiContext, caller: KeyOwner) -> MemoryPage:
            body = ListIn(filters=_scoped(filters, user_id, agent_id, run_id), show_expired=show_expired)
            paging = _Paging(page=page, page_size=page_size)
            total, results = ops.list_page(body, caller, ctx, page=paging.page, page_size=paging.page_size)
            return MemoryPage(count=total, page=paging.page, page_size=paging.page_size,
                              has_more=paging.page * paging.page_size < total, results=results)

        return self._call("list_memories", work)

    def get_memory(self, memory_id: str) -> MemoryOut:
        """One memory by id."""
        return self._call("get_memory", lambda ctx, caller: ops.get_memory(memory_id, caller, ctx))

    def memory_history(self, memory_id: str) -> HistoryList:
        """Every change of one memory, oldest first (who or what changed it: ``source``)."""
        return self._call("memory_history", lambda ctx, caller: HistoryList(
            results=ops.memory_history(memory_id, caller, ctx)))

    def learning_status(self, event_id: str) -> EventStatusOut:
        """Whether a learn_memories call answered PENDING is done, and what it learned."""
        return self._call("learning_status", lambda ctx, caller: ops.event_status(event_id, caller, ctx))

    # ------------------------------------------------------------------ writing
    def add_memory(
        self, text: str, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None,
        type: MemoryType = "note", importance: int = 3, tags: list[str] | None = None,  # noqa: A002 - the API's name
        people: list[str] | None = None, entities: list[str] | None = None,
        metadata: dict[str, Any] | None = None, expiration_date: date | None = None,
    ) -> AddOut:
        """Store ``text`` verbatim as one memory (no model involved). ``user_id`` is the end-user
        inside your account; without it the memory is the account's own (the one its chats use)."""
        def work(ctx: ApiContext, caller: KeyOwner) -> AddOut:
            body = AddIn(messages=[{"role": "user", "content": text}], user_id=user_id, agent_id=agent_id,
                         run_id=run_id, infer=False, type=type, importance=importance, tags=tags, people=people,
                         entities=entities, metadata=metadata, expiration_date=expiration_date)
            return ops.add(body, caller, ctx, source=SOURCE)

        return self._call("add_memory", work)

    def learn_memories(
        self, messages: list[LearnMessage], user_id: str | None = None, agent_id: str | None = None,
        run_id: str | None = None,
    ) -> AddOut:
        """Learn facts from a conversation with the memory model (the same two-phase pipeline as
        the chat): new facts are added, changed ones updated, retracted ones deleted. When learning
        takes longer, the answer is ``status: PENDING`` with an ``event_id`` for learning_status."""
        def work(ctx: ApiContext, caller: KeyOwner) -> AddOut:
            body = AddIn(messages=[m.model_dump() for m in messages], user_id=user_id, agent_id=agent_id,
                         run_id=run_id, infer=True)
            return ops.add(body, caller, ctx, source=SOURCE)

        return self._call("learn_memories", work)

    def update_memory(
        self, memory_id: str, text: str | None = None, metadata: dict[str, Any] | None = None,
        expiration_date: date | None = None, clear_expiration: bool = False, type: MemoryType | None = None,  # noqa: A002
        importance: int | None = None, confidence: float | None = None, tags: list[str] | None = None,
        people: list[str] | None = None, entities: list[str] | None = None,
    ) -> MemoryOut:
        """Change a memory; fields left out are kept (``clear_expiration`` removes its expiry date)."""
        def work(ctx: ApiContext, caller: KeyOwner) -> MemoryOut:
            given = {k: v for k, v in (("text", text), ("metadata", metadata), ("expiration_date", expiration_date),
                                       ("type", type), ("importance", importance), ("confidence", confidence),
                                       ("tags", tags), ("people", people), ("entities", entities)) if v is not None}
            if clear_expiration:
                if expiration_date is not None:
                    raise ValidationError("Give expiration_date or clear_expiration, not both.", field="clear_expiration")
                given["expiration_date"] = None
            return ops.update(memory_id, UpdateIn(**given), caller, ctx, source=SOURCE)

        return self._call("update_memory", work)

    def delete_memory(self, memory_id: str) -> Notice:
        """Delete one memory (its history keeps the deletion)."""
        return self._call("delete_memory", lambda ctx, caller: ops.delete(memory_id, caller, ctx, source=SOURCE))

    # ------------------------------------------------------------------ registration
    def register(self, server: MCPServer) -> None:
        read = ToolAnnotations(read_only_hint=True, open_world_hint=False)
        write = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
        destroy = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
        for fn, hints in ((self.search_memories, read), (self.list_memories, read), (self.get_memory, read),
                          (self.memory_history, read), (self.learning_status, read), (self.add_memory, write),
                          (self.learn_memories, write), (self.update_memory, destroy),
                          (self.delete_memory, destroy)):
            server.add_tool(fn, name=fn.__name__, description=inspect.cleandoc(fn.__doc__ or ""), annotations=hints,
                            structured_output=True)


TOOL_NAMES = ("search_memories", "list_memories", "get_memory", "memory_history", "learning_status", "add_memory",
              "learn_memories", "update_memory", "delete_memory")


class _Paging(BaseModel):
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(100, ge=1, le=1000)


def _scoped(filters: dict[str, Any] | None, user_id: str | None, agent_id: str | None,
            run_id: str | None) -> dict[str, Any] | None:
    """``filters`` with the top-level scope shortcuts folded in; a contradiction is a field error."""
    given = {k: v for k, v in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)) if v is not None}
    if not given:
        return filters
    parse_filters(filters, **given)  # says which one contradicts filters, and checks the ids
    return {**(filters or {}), **given}

