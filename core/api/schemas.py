"""Request and response bodies of the REST API.

The mem0-compatible bodies carry the fields the official ``mem0ai`` client sends; a field we do
not support is refused (422 naming it) rather than silently ignored, except a few ranking hints
that are accepted without effect (marked so in their descriptions).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any, ClassVar, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from core.memory.history import HistoryEntry
from core.memory.limits import text_problem
from core.memory.service import MAX_MEMORY_CHARS, MemoryStats
from core.memory.types import MemoryEvent, MemoryRecord, MemoryType, NewMemory

EntityId = Field(None, min_length=1, max_length=200)
NO_EFFECT = "Accepted for mem0 compatibility; has no effect here."


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ derived from the domain types
# A response that shows a domain value is built from that value's own fields, so a field added to
# the domain type reaches the API without restating it here. Only the wire names differ (mem0's).
def _wire_fields(source: type, *, drop: frozenset[str] = frozenset(),
                 rename: dict[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """``source``'s dataclass fields as pydantic field definitions, under their wire names."""
    hints = get_type_hints(source)
    fields: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(source):
        if f.name in drop:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[(rename or {}).get(f.name, f.name)] = (hints[f.name], default)
    return fields


class _FromDomain(BaseModel):
    """A response model whose fields are a domain dataclass's fields (see :func:`_derived`)."""

    _source: ClassVar[type]
    _rename: ClassVar[dict[str, str]]
    _fields: ClassVar[tuple[str, ...]]

    @classmethod
    def _values(cls, value: Any) -> dict[str, Any]:
        return {cls._rename.get(name, name): getattr(value, name) for name in cls._fields}


def _derived(name: str, base: type[_FromDomain], source: type, *, doc: str,
             drop: frozenset[str] = frozenset(), rename: dict[str, str] | None = None) -> Any:
    fields = _wire_fields(source, drop=drop, rename=rename)
    model = create_model(name, __base__=base, __doc__=doc, __module__=__name__, **fields)  # type: ignore[call-overload]
    model._source, model._rename = source, dict(rename or {})
    model._fields = tuple(f.name for f in dataclasses.fields(source) if f.name not in drop)
    return model


class _MemoryOutBase(_FromDomain):
    categories: list[str] = Field(description="mem0's name for tags.")

    @classmethod
    def of(cls, r: MemoryRecord) -> Any:
        return cls(**cls._values(r), categories=list(r.tags))


MemoryOut = _derived(
    "MemoryOut", _MemoryOutBase, MemoryRecord, drop=frozenset({"owner_id"}),
    rename={"text": "memory", "expires_at": "expiration_date"},
    doc="One memory in mem0's shape (``memory``, ``categories``, ``expiration_date``) plus Optimus fields; "
        "``score`` only in search results (cosine similarity to the query).",
)


class _HistoryOutBase(_FromDomain):
    user_id: str | None
    agent_id: str | None
    run_id: str | None

    @classmethod
    def of(cls, e: HistoryEntry) -> Any:
        scope = e.scope
        return cls(**cls._values(e), user_id=scope.user_id if scope else None,
                   agent_id=scope.agent_id if scope else None, run_id=scope.run_id if scope else None)


HistoryOut = _derived(
    "HistoryOut", _HistoryOutBase, HistoryEntry, drop=frozenset({"owner_id", "scope", "snapshot"}),
    doc="One change of a memory, in mem0's history shape plus who made it and from where.",
)


class _StatsOutBase(_FromDomain):
    @classmethod
    def of(cls, s: MemoryStats) -> Any:
        return cls(**cls._values(s))


StatsOut = _derived("StatsOut", _StatsOutBase, MemoryStats,
                    doc="Counts by type, the tags and people in use (top and all), the date range.")


# ------------------------------------------------------------------ responses
class MemoryList(BaseModel):
    results: list[MemoryOut]


class Page(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[MemoryOut]


class AddEventOut(BaseModel):
    id: str | None
    memory: str | None
    event: Literal["ADD", "UPDATE", "DELETE"]
    previous_memory: str | None = None
    reason: str = ""

    @classmethod
    def of(cls, e: MemoryEvent) -> AddEventOut:
        return cls(id=e.memory_id, memory=e.text, event=e.event, previous_memory=e.previous_text, reason=e.reason)


class AddOut(BaseModel):
    results: list[AddEventOut]
    status: Literal["SUCCEEDED", "PENDING"] = "SUCCEEDED"
    event_id: str | None = Field(None, description="The learning job; GET /v1/events/{event_id}/ tells its status.")
    message: str | None = None


class EventStatusOut(BaseModel):
    """An inferred add's learning job, as ``event_id`` named it."""

    id: str
    status: Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
    results: list[AddEventOut] = Field(default_factory=list)
    attempts: int = 0


class Notice(BaseModel):
    message: str


class CountMessage(BaseModel):
    message: str
    deleted: int


class EntityOut(BaseModel):
    id: str
    name: str
    type: Literal["user", "agent", "run"]
    total_memories: int
    created_at: str | None
    updated_at: str | None


class EntityPage(BaseModel):
    count: int
    next: str | None = None
    previous: str | None = None
    results: list[EntityOut]


class PingOut(BaseModel):
    status: Literal["ok"] = "ok"
    # mem0's client requires both at start; the account plays mem0's project (its project routes are not served).
    org_id: str = "optimus"
    project_id: str
    owner_id: str
    username: str
    user_email: str | None
    key_id: str
    key_name: str


# ------------------------------------------------------------------ mem0-compatible requests
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "system", "tool"] = "user"
    content: str = Field(min_length=1, max_length=100_000)

    @field_validator("content")
    @classmethod
    def _storable(cls, value: str) -> str:
        problem = text_problem(value)  # the exchange is queued in the database if the model fails
        if problem:
            raise ValueError(f"the message {problem}")
        return value


class AddIn(Strict):
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    filters: dict[str, Any] | None = Field(None, description="Entity ids, e.g. {\"user_id\": \"alice\"}.")
    user_id: str | None = EntityId
    agent_id: str | None = EntityId
    run_id: str | None = EntityId
    infer: bool = Field(True, description="True: learn facts with the two-phase pipeline; False: store verbatim.")
    metadata: dict[str, Any] | None = Field(None, description="infer=False only: stored with each memory.")
    expiration_date: date | None = Field(None, description="infer=False only: the memory is hidden after it.")
    # Optimus fields for verbatim (infer=False) memories
    type: MemoryType = "note"
    importance: int = Field(3, ge=1, le=5)
    tags: list[str] | None = None
    people: list[str] | None = None
    entities: list[str] | None = None


class SearchIn(Strict):
    query: str = Field(min_length=1, max_length=MAX_MEMORY_CHARS)
    filters: dict[str, Any] | None = None
    top_k: int = Field(10, ge=1, le=1000)
    threshold: float | None = Field(None, ge=0, le=1, description="Minimum cosine similarity.")
    metadata: dict[str, Any] | None = Field(None, description="Same as filters.metadata.")
    categories: list[str] | None = Field(None, description="Same as filters.categories.")
    mode: Literal["hybrid", "dense", "keyword"] = Field("hybrid", description="Optimus: retrieval mode.")
    rerank: bool | None = Field(None, description=NO_EFFECT)
    keyword_search: bool | None = Field(None, description=NO_EFFECT + " Hybrid search always uses keywords.")
    latest_only: bool | None = Field(None, description=NO_EFFECT)


class ListIn(Strict):
    filters: dict[str, Any] | None = None
    start_date: str | None = Field(None, description="Created on or after (ISO 8601).")
    end_date: str | None = Field(None, description="Created on or before (ISO 8601).")
    categories: list[str] | None = None
    show_expired: bool = False
    latest_only: bool | None = Field(None, description=NO_EFFECT)


class UpdateIn(Strict):
    text: str | None = Field(None, min_length=1, max_length=MAX_MEMORY_CHARS)
    metadata: dict[str, Any] | None = None
    expiration_date: date | None = Field(None, description="Send null to clear; leave out to keep.")
    # Optimus fields
    type: MemoryType | None = None
    importance: int | None = Field(None, ge=1, le=5)
    confidence: float | None = Field(None, ge=0, le=1)
    entities: list[str] | None = None
    people: list[str] | None = None
    tags: list[str] | None = None


class BatchUpdateItem(Strict):
    memory_id: str
    text: str | None = Field(None, min_length=1, max_length=MAX_MEMORY_CHARS)
    metadata: dict[str, Any] | None = None


class BatchUpdateIn(Strict):
    memories: list[BatchUpdateItem] = Field(min_length=1, max_length=1000)


class BatchDeleteItem(Strict):
    memory_id: str


class BatchDeleteIn(Strict):
    memories: list[BatchDeleteItem] = Field(min_length=1, max_length=1000)


class ExportIn(Strict):
    schema_: str | dict[str, Any] | None = Field(None, alias="schema", description=(
        "Echoed back; Optimus exports every field of each memory and its history (GDPR export)."))
    filters: dict[str, Any] | None = None
    user_id: str | None = EntityId
    agent_id: str | None = EntityId
    run_id: str | None = EntityId
    export_instructions: str | None = Field(None, description=NO_EFFECT)


class ExportCreatedOut(BaseModel):
    id: str
    message: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"


class ExportGetIn(Strict):
    memory_export_id: str | None = None
    filters: dict[str, Any] | None = None
    user_id: str | None = EntityId
    agent_id: str | None = EntityId
    run_id: str | None = EntityId


class AccountOut(BaseModel):
    id: str
    username: str
    email: str | None


class ExportOut(BaseModel):
    """The GDPR export. Always: the memories matching the filters (expired ones too) and their
    history. For the whole account (no filters) also everything else kept about the person —
    profile, conversations with their messages, model usage, audit events — as in the ZIP the
    app offers, and the history of memories that were deleted."""

    model_config = ConfigDict(populate_by_name=True)

    format: Literal["optimus.memory-export/1"] = "optimus.memory-export/1"
    id: str
    exported_at: datetime
    account: AccountOut
    filters: dict[str, Any]
    schema_: str | dict[str, Any] | None = Field(None, alias="schema", serialization_alias="schema")
    count: int
    memories: list[MemoryOut]
    history: list[HistoryOut]
    profile: dict[str, Any] | None = None
    conversations: list[dict[str, Any]] | None = None
    usage: list[dict[str, Any]] | None = None
    audit: list[dict[str, Any]] | None = None


# ------------------------------------------------------------------ Optimus extensions
class ScopeIn(Strict):
    user_id: str | None = Field(None, min_length=1, max_length=200,
                                description="End-user inside your account; default: your own memories.")
    agent_id: str | None = EntityId
    run_id: str | None = EntityId


class NewMemoryIn(NewMemory, ScopeIn):
    """:class:`NewMemory` (the domain's verbatim memory) plus the scope it goes to."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_MEMORY_CHARS)

    @field_validator("entities", "people", "tags", "metadata", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: ValidationInfo) -> Any:
        """JSON clients send ``null`` for "none"; it means the empty default."""
        if value is None:
            return {} if info.field_name == "metadata" else []
        return value


class NewMemoriesIn(ScopeIn):
    items: list[NewMemory] = Field(min_length=1, max_length=1000)


class RevertIn(Strict):
    history_id: str


class Period(Strict):
    start: datetime | None = None
    end: datetime | None = None


class TemporalIn(Strict):
    when: str | Period = Field(description="today, yesterday, this week, last week, this month, last month, "
                                            "this year, 'last N days', or {start, end}.")
    query: str | None = Field(None, max_length=MAX_MEMORY_CHARS)
    filters: dict[str, Any] | None = None
    top_k: int = Field(20, ge=1, le=1000)


class TagsIn(Strict):
    tags: list[str] = Field(min_length=1, max_length=30)
    user_id: str | None = EntityId
    limit: int = Field(100, ge=1, le=10_000)


class PeopleIn(Strict):
    people: list[str] = Field(min_length=1, max_length=30)
    user_id: str | None = EntityId
    limit: int = Field(100, ge=1, le=10_000)
