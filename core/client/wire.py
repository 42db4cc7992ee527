"""The REST API's wire format, both ways: our values to JSON bodies, JSON answers to our values,
and HTTP failures to the errors the local service raises."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote

import httpx

from core.errors import (
    AppError,
    BudgetExceeded,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    RateLimited,
    StoreUnavailable,
    ValidationError,
)
from core.memory.history import HistoryEntry
from core.memory.records import MemoryFilters, MemoryStats
from core.memory.types import MemoryRecord, Scope

MAX_PAGE = 1000
MAX_BATCH = 1000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request an exchange asks its driver to make (``path`` is under the base URL)."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None


# An exchange yields the calls it needs, is sent each call's response and returns its result.
Flow: TypeAlias = Generator[Call, httpx.Response, T]


# ------------------------------------------------------------------ requests
def filters_to_json(flt: MemoryFilters | None) -> dict[str, Any]:
    """The API's ``filters`` object for ``flt`` (the inverse of ``core.api.filters.parse_filters``)."""
    if flt is None:
        return {}
    out: dict[str, Any] = {}
    for key in ("user_id", "agent_id", "run_id"):
        if getattr(flt, key):
            out[key] = getattr(flt, key)
    for key in ("types", "tags", "people"):
        if getattr(flt, key):
            out[key] = {"in": list(getattr(flt, key))}
    importance = {op: v for op, v in (("gte", flt.min_importance), ("lte", flt.max_importance)) if v is not None}
    if importance:
        out["importance"] = importance
    created = {op: v.isoformat() for op, v in (("gte", flt.created_after), ("lte", flt.created_before))
               if v is not None}
    if created:
        out["created_at"] = created
    if flt.metadata:
        out["metadata"] = dict(flt.metadata)
    return out


def day(value: date | datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def segment(memory_id: str) -> str:
    """``memory_id`` as one path segment (an id with a slash must not reach another route)."""
    return quote(str(memory_id), safe="")


def scope_json(scope: Scope) -> dict[str, Any]:
    return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}


# ------------------------------------------------------------------ answers
def _tuple(values: Any) -> tuple[str, ...]:
    return tuple(values or ())


def record(data: dict[str, Any], owner_id: str) -> MemoryRecord:
    expires = data.get("expiration_date")
    return MemoryRecord(
        id=data["id"], text=data["memory"], owner_id=owner_id, user_id=data.get("user_id"),
        agent_id=data.get("agent_id"), run_id=data.get("run_id"), type=data.get("type") or "note",
        importance=int(data.get("importance") or 3), confidence=float(data.get("confidence", 1.0)),
        entities=_tuple(data.get("entities")), people=_tuple(data.get("people")), tags=_tuple(data.get("tags")),
        expires_at=date.fromisoformat(expires) if expires else None, created_at=data.get("created_at"),
        updated_at=data.get("updated_at"), hash=data.get("hash"), score=data.get("score"),
        metadata=data.get("metadata") or {},
    )


def records(data: dict[str, Any], owner_id: str) -> list[MemoryRecord]:
    return [record(r, owner_id) for r in data["results"]]


def history_entry(data: dict[str, Any], owner_id: str) -> HistoryEntry:
    user_id = data.get("user_id")
    return HistoryEntry(
        id=data["id"], memory_id=data["memory_id"], owner_id=owner_id,
        scope=Scope(owner_id, user_id, data.get("agent_id"), data.get("run_id")) if user_id else None,
        event=data["event"], old_memory=data.get("old_memory"), new_memory=data.get("new_memory"),
        created_at=data.get("created_at"), updated_at=data.get("updated_at"),
        is_deleted=bool(data.get("is_deleted")), actor_id=data.get("actor_id"), role=data.get("role"),
        source=data.get("source"), recorded_at=datetime.fromisoformat(data["recorded_at"]),
    )


def stats(data: dict[str, Any]) -> MemoryStats:
    return MemoryStats(
        total=data["total"], by_type=data["by_type"], top_tags=[tuple(t) for t in data["top_tags"]],
        top_people=[tuple(p) for p in data["top_people"]], oldest=data["oldest"], newest=data["newest"],
        user_ids=data["user_ids"], tags=[tuple(t) for t in data.get("tags", [])],
        people=[tuple(p) for p in data.get("people", [])],
    )


def body_of(response: httpx.Response) -> Any:
    """The decoded JSON of a successful answer, or the error the failure stands for."""
    if response.status_code >= 400:
        raise error_for(response)
    try:
        return response.json()
    except ValueError as exc:
        raise StoreUnavailable(f"The memory API answered {response.status_code} without a JSON body.") from exc


# ------------------------------------------------------------------ failures
def unreachable(base_url: str, exc: httpx.TransportError) -> StoreUnavailable:
    """The error for a request that got no answer (``exc`` becomes its cause)."""
    if isinstance(exc, httpx.TimeoutException):
        error = StoreUnavailable(f"The memory API at {base_url} did not answer in time.")
    else:
        error = StoreUnavailable(f"The memory API at {base_url} is unreachable: {exc}")
    error.__cause__ = exc
    return error


def error_for(response: httpx.Response) -> AppError:
    """404 → NotFound, 422 → ValidationError (with the field), 401 → InvalidCredentials,
    402 → BudgetExceeded, 403 → PermissionDenied, 429 → RateLimited, else StoreUnavailable."""
    status = response.status_code
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):  # not our API's JSON: a proxy's page, say; its start is enough
        detail = response.text.strip()[:200] or None
    if isinstance(detail, list) and detail:  # 422: [{"loc": [...], "msg": ...}, ...]
        first = detail[0] if isinstance(detail[0], dict) else {}
        loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path")]
        messages = [f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'request'}: {d.get('msg')}"
                    for d in detail if isinstance(d, dict)]
        message = first.get("msg", "Invalid request.") if len(detail) == 1 else "; ".join(messages)
        return ValidationError(str(message), field=".".join(loc) or None)
    message = str(detail or f"HTTP {status} from the memory API.")
    if status == 404:
        return NotFound(message)
    if status in (400, 413, 422):
        return ValidationError(message)
    if status == 401:
        return InvalidCredentials(message)
    if status == 402:
        return BudgetExceeded(message)
    if status == 403:
        return PermissionDenied(message)
    if status == 429:
        try:
            retry_after = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
        return RateLimited(message, retry_after=retry_after)
    return StoreUnavailable(f"The memory API failed ({status}): {message}")
