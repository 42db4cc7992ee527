"""The memory engine's typed values and the one translation from a stored payload to a
:class:`~core.memory.types.MemoryRecord`, shared by the service's modules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from core.errors import ValidationError
from core.memory.limits import check_id, check_text
from core.memory.types import MemoryRecord, Scope

MAX_MEMORY_CHARS = 2000
STORE_FAILED = "The memory store is not available right now; nothing was changed. Try again in a moment."
LIST_CAP = 100_000
# Cosine similarity of the bundled MiniLM between a query and a memory. Unrelated pairs measure
# 0.05-0.19 ("zzqx nothing" against anything), loosely related ones 0.23-0.35 ("music" ~ "Plays the
# cello"), clear matches above that ("Rita" ~ "My sister is called Rita Moreno": 0.68).
RELEVANCE_FLOOR = 0.21
STRONG_MATCH = 0.35
RRF_K = 60
ID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
OUR_FIELDS = {"owner_id", "type", "importance", "confidence", "entities", "people", "tags", "expires_at", "source"}
MEM0_FIELDS = {"data", "hash", "created_at", "updated_at", "text_lemmatized", "user_id", "agent_id", "run_id",
         "actor_id", "role", "expiration_date", "attributed_to"}


@dataclass(frozen=True, slots=True)
class MemoryFilters:
    """Optional narrowing for search and listing. Lists match if any value matches."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    min_importance: int | None = None
    max_importance: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EntityStats:
    kind: str  # "user", "agent" or "run"
    name: str
    total: int
    first_created: str | None
    last_created: str | None


@dataclass(frozen=True, slots=True)
class RankedResults:
    """A search split by relevance: clear matches first, then weak ones worth a look; anything
    below the relevance floor is left out, so a query can find nothing."""

    matches: list[MemoryRecord]
    weak: list[MemoryRecord]

    def __bool__(self) -> bool:
        return bool(self.matches or self.weak)


@dataclass(frozen=True, slots=True)
class DeletedMemory:
    """A memory whose latest history event is its deletion; it can be restored under its own id."""

    memory_id: str
    text: str
    deleted_at: datetime
    source: str | None
    user_id: str | None
    exact: bool  # the deletion kept the memory's fields, so a restore brings back type, tags and people too


@dataclass(frozen=True, slots=True)
class MemoryStats:
    total: int
    by_type: dict[str, int]
    top_tags: list[tuple[str, int]]
    top_people: list[tuple[str, int]]
    oldest: str | None
    newest: str | None
    user_ids: list[str]
    tags: list[tuple[str, int]] = field(default_factory=list)  # every tag in use, most used first
    people: list[tuple[str, int]] = field(default_factory=list)  # every person named, most named first


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def record_from_payload(mem_id: Any, payload: dict[str, Any], score: float | None = None) -> MemoryRecord:
    expires = payload.get("expiration_date")
    try:
        expires_at = date.fromisoformat(str(expires)) if expires else None
    except ValueError:
        expires_at = None
    extra = {k: v for k, v in payload.items() if k not in OUR_FIELDS and k not in MEM0_FIELDS}
    return MemoryRecord(
        id=str(mem_id),
        text=payload.get("data", ""),
        owner_id=payload.get("owner_id", ""),
        user_id=payload.get("user_id"),
        agent_id=payload.get("agent_id"),
        run_id=payload.get("run_id"),
        type=payload.get("type") or "note",
        importance=int(payload.get("importance") or 3),
        confidence=float(payload.get("confidence") if payload.get("confidence") is not None else 1.0),
        entities=as_tuple(payload.get("entities")),
        people=as_tuple(payload.get("people")),
        tags=as_tuple(payload.get("tags")),
        expires_at=expires_at,
        created_at=payload.get("created_at"),
        updated_at=payload.get("updated_at"),
        hash=payload.get("hash"),
        score=score,
        metadata=extra,
    )


def most_common(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))  # ties by name, so the order is stable


def rows_of(listed: Any) -> list[Any]:
    """mem0 stores' ``list()`` returns ``[rows]`` (or rows); normalise to rows."""
    if isinstance(listed, tuple):
        listed = listed[0]
    if listed and isinstance(listed, list) and listed and isinstance(listed[0], list):
        return listed[0]
    return list(listed or [])


def memory_text(text: Any, field: str = "text") -> str:
    return check_text(text, field=field, limit=MAX_MEMORY_CHARS, what="The memory" if field == "text" else "The query")


def check_scope(scope: Scope) -> None:
    """A scope a memory may be written to: an owner, a visible user id, optional agent and run ids."""
    if not isinstance(scope, Scope) or not isinstance(scope.owner_id, str) or not scope.owner_id:
        raise ValidationError("An owner is required.", field="owner_id")
    check_id(scope.user_id, field="user_id")
    for key in ("agent_id", "run_id"):
        value = getattr(scope, key)
        if value is not None:
            check_id(value, field=key)
