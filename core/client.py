"""One memory interface, two implementations: the local ``MemoryService`` and ``RemoteMemory``.

:class:`MemoryInterface` is the contract both satisfy — same names, arguments and return types —
so code (and the behavioural suite in ``tests/test_client_contract.py``) does not care whether
memory lives in this process or behind the REST API.

:class:`RemoteMemory` talks to an Optimus API server with an API key. The key decides the
account: every ``owner_id`` / ``scope.owner_id`` passed in must be that account's id
(:attr:`RemoteMemory.owner_id`), otherwise :class:`PermissionDenied`. HTTP failures come back as
the errors the local service raises: 404 → ``NotFound``, 422 → ``ValidationError`` (with the
field), 401 → ``InvalidCredentials``, 403 → ``PermissionDenied``, 429 → ``RateLimited`` (with
``retry_after``), 5xx or no connection → ``StoreUnavailable``.

Differences from the local service, by design: the ``source`` recorded in history is always
``api``; ``add_many`` is all-or-nothing per request of up to 1000 memories (items are checked
against :class:`NewMemory` before the first request is sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable
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
from core.memory.service import MemoryFilters, MemoryStats
from core.memory.types import MemoryRecord, NewMemory, Scope

MAX_PAGE = 1000
MAX_BATCH = 1000


@runtime_checkable
class MemoryInterface(Protocol):
    """Owner-scoped long-term memory. Implemented by ``MemoryService`` (local) and ``RemoteMemory``."""

    def add(self, scope: Scope, text: str, *, type: str = "note", importance: int = 3, confidence: float = 1.0,
            entities: Iterable[str] | None = None, people: Iterable[str] | None = None,
            tags: Iterable[str] | None = None, expires_at: date | datetime | str | None = None,
            metadata: dict[str, Any] | None = None, source: str = "ui") -> MemoryRecord:
        """Store ``text`` verbatim as one memory in ``scope``; returns it with its new id."""

    def add_many(self, scope: Scope, items: Sequence[str | NewMemory | dict[str, Any]], *,
                 source: str = "import", batch_size: int = 256) -> list[MemoryRecord]:
        """Store many memories verbatim; a bad item raises ValidationError naming its index."""

    def get(self, owner_id: str, memory_id: str) -> MemoryRecord:
        """The memory, or NotFound — also when it belongs to another owner."""

    def get_all(self, owner_id: str, filters: MemoryFilters | None = None, *, limit: int = 100, offset: int = 0,
                include_expired: bool = False) -> list[MemoryRecord]:
        """The owner's memories matching ``filters``, newest first."""

    def update(self, owner_id: str, memory_id: str, *, text: str | None = None, type: str | None = None,
               importance: int | None = None, confidence: float | None = None,
               entities: Iterable[str] | None = None, people: Iterable[str] | None = None,
               tags: Iterable[str] | None = None, expires_at: date | datetime | str | None | object = ...,
               metadata: dict[str, Any] | None = None, source: str = "ui") -> MemoryRecord:
        """Change the given fields (``None`` / ``...`` keep a field); history records an UPDATE."""

    def delete(self, scope_or_owner: Scope | str, memory_id: str, *, source: str = "ui") -> None:
        """Delete one memory; NotFound if it is not the owner's."""

    def delete_all(self, owner_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, source: str = "ui") -> int:
        """Delete the owner's memories (optionally of one user/agent/run); returns how many."""

    def history(self, owner_id: str, memory_id: str) -> list[HistoryEntry]:
        """Every recorded change of the memory, oldest first (deleted memories too)."""

    def revert(self, owner_id: str, memory_id: str, history_id: str, *, source: str = "ui") -> MemoryRecord:
        """Bring back the text the memory had at ``history_id`` (a deleted one returns under a new id)."""

    def search(self, owner_id: str, query: str, filters: MemoryFilters | None = None, *, top_k: int = 10,
               threshold: float | None = None, mode: str = "hybrid") -> list[MemoryRecord]:
        """Most relevant first; ``score`` is the cosine similarity (higher is more similar)."""

    def temporal_search(self, owner_id: str, when: str | tuple[datetime | None, datetime | None],
                        query: str | None = None, filters: MemoryFilters | None = None, *,
                        top_k: int = 20) -> list[MemoryRecord]:
        """Memories created in a period ("last week", "last 3 days", or a ``(start, end)`` range)."""

    def by_tags(self, owner_id: str, tags: Sequence[str], *, user_id: str | None = None,
                limit: int = 100) -> list[MemoryRecord]:
        """Memories carrying any of ``tags``, newest first."""

    def by_people(self, owner_id: str, people: Sequence[str], *, user_id: str | None = None,
                  limit: int = 100) -> list[MemoryRecord]:
        """Memories about any of ``people``, newest first."""

    def stats(self, owner_id: str, *, user_id: str | None = None) -> MemoryStats:
        """Totals by type, top tags and people, oldest/newest dates, end-user ids."""


# ------------------------------------------------------------------ wire format
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


def _day(value: date | datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _tuple(values: Any) -> tuple[str, ...]:
    return tuple(values or ())


class RemoteMemory:
    """:class:`MemoryInterface` over the REST API (httpx). Thread-safe; close it when done."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Token {api_key}"})
        self._owner_id: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"The memory API at {self.base_url} did not answer in time.") from exc
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"The memory API at {self.base_url} is unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response.json()

    def _error(self, response: httpx.Response) -> AppError:
        status = response.status_code
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text.strip() or None
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

    @property
    def owner_id(self) -> str:
        """The account this key acts as (asked once, from ``/v1/ping/``)."""
        if self._owner_id is None:
            self._owner_id = self.ping()["owner_id"]
        return self._owner_id

    def ping(self) -> dict[str, Any]:
        """Who the key acts as: ``owner_id``, ``username``, ``user_email``, ``key_id``, ``key_name``."""
        return self._request("GET", "/v1/ping/")

    def _own(self, owner_id: str) -> None:
        if owner_id != self.owner_id:
            raise PermissionDenied("This API key acts for one account only; it cannot reach another's memories.")

    def _record(self, data: dict[str, Any]) -> MemoryRecord:
        expires = data.get("expiration_date")
        return MemoryRecord(
            id=data["id"], text=data["memory"], owner_id=self.owner_id, user_id=data.get("user_id"),
            agent_id=data.get("agent_id"), run_id=data.get("run_id"), type=data.get("type") or "note",
            importance=int(data.get("importance") or 3), confidence=float(data.get("confidence", 1.0)),
            entities=_tuple(data.get("entities")), people=_tuple(data.get("people")), tags=_tuple(data.get("tags")),
            expires_at=date.fromisoformat(expires) if expires else None, created_at=data.get("created_at"),
            updated_at=data.get("updated_at"), hash=data.get("hash"), score=data.get("score"),
            metadata=data.get("metadata") or {},
        )

    def _records(self, data: dict[str, Any]) -> list[MemoryRecord]:
        return [self._record(r) for r in data["results"]]

    def _entry(self, data: dict[str, Any]) -> HistoryEntry:
        user_id = data.get("user_id")
        return HistoryEntry(
            id=data["id"], memory_id=data["memory_id"], owner_id=self.owner_id,
            scope=Scope(self.owner_id, user_id, data.get("agent_id"), data.get("run_id")) if user_id else None,
            event=data["event"], old_memory=data.get("old_memory"), new_memory=data.get("new_memory"),
            created_at=data.get("created_at"), updated_at=data.get("updated_at"),
            is_deleted=bool(data.get("is_deleted")), actor_id=data.get("actor_id"), role=data.get("role"),
            source=data.get("source"), recorded_at=datetime.fromisoformat(data["recorded_at"]),
        )

    @staticmethod
    def _path(memory_id: str) -> str:
        return quote(str(memory_id), safe="")

    @staticmethod
    def _scope_json(scope: Scope) -> dict[str, Any]:
        return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}

    # ------------------------------------------------------------------ writes
    def add(self, scope: Scope, text: str, *, type: str = "note", importance: int = 3, confidence: float = 1.0,
            entities: Iterable[str] | None = None, people: Iterable[str] | None = None,
            tags: Iterable[str] | None = None, expires_at: date | datetime | str | None = None,
            metadata: dict[str, Any] | None = None, source: str = "ui") -> MemoryRecord:
        self._own(scope.owner_id)
        body = {
            **self._scope_json(scope), "text": text, "type": type, "importance": importance,
            "confidence": confidence, "entities": list(entities or []), "people": list(people or []),
            "tags": list(tags or []), "expires_at": _day(expires_at), "metadata": metadata,
        }
        return self._record(self._request("POST", "/v1/optimus/memories/", json=body))

    def add_many(self, scope: Scope, items: Sequence[str | NewMemory | dict[str, Any]], *,
                 source: str = "import", batch_size: int = 256) -> list[MemoryRecord]:
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise ValidationError("add_many takes a list of memories.", field="items")
        if not 1 <= batch_size <= 4096:
            raise ValidationError("batch_size must be between 1 and 4096.", field="batch_size")
        self._own(scope.owner_id)
        prepared: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                if isinstance(item, str):
                    item = NewMemory(text=item)
                elif isinstance(item, dict):
                    item = NewMemory.model_validate(item)
                elif not isinstance(item, NewMemory):
                    raise ValidationError("each memory is text, a NewMemory or a dict of its fields.")
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise ValidationError(f"Memory #{index}: {exc}") from exc
            except ValidationError as exc:
                raise ValidationError(f"Memory #{index}: {exc}", field=exc.field) from exc
            prepared.append(item.model_dump(mode="json"))
        saved: list[MemoryRecord] = []
        for start in range(0, len(prepared), MAX_BATCH):
            try:
                data = self._request("POST", "/v1/optimus/memories/batch/",
                                     json={**self._scope_json(scope), "items": prepared[start:start + MAX_BATCH]})
            except ValidationError as exc:
                # The server numbers items within the request; name the index in the whole list.
                raise ValidationError(f"{exc.message} (request starting at memory #{start})",
                                      field=exc.field) from exc
            saved.extend(self._records(data))
        return saved

    def update(self, owner_id: str, memory_id: str, *, text: str | None = None, type: str | None = None,
               importance: int | None = None, confidence: float | None = None,
               entities: Iterable[str] | None = None, people: Iterable[str] | None = None,
               tags: Iterable[str] | None = None, expires_at: date | datetime | str | None | object = ...,
               metadata: dict[str, Any] | None = None, source: str = "ui") -> MemoryRecord:
        self._own(owner_id)
        body: dict[str, Any] = {k: v for k, v in {
            "text": text, "type": type, "importance": importance, "confidence": confidence,
            "entities": None if entities is None else list(entities),
            "people": None if people is None else list(people),
            "tags": None if tags is None else list(tags), "metadata": metadata,
        }.items() if v is not None}
        if expires_at is not ...:
            body["expiration_date"] = _day(expires_at)  # type: ignore[arg-type]
        if not body:  # nothing to change: answer like the local service, with the memory as it is
            return self.get(owner_id, memory_id)
        return self._record(self._request("PUT", f"/v1/memories/{self._path(memory_id)}/", json=body))

    def delete(self, scope_or_owner: Scope | str, memory_id: str, *, source: str = "ui") -> None:
        self._own(scope_or_owner.owner_id if isinstance(scope_or_owner, Scope) else scope_or_owner)
        self._request("DELETE", f"/v1/memories/{self._path(memory_id)}/")

    def delete_all(self, owner_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, source: str = "ui") -> int:
        self._own(owner_id)
        params = {k: v for k, v in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)) if v}
        return int(self._request("DELETE", "/v1/memories/", params=params or {"user_id": "*"})["deleted"])

    def revert(self, owner_id: str, memory_id: str, history_id: str, *, source: str = "ui") -> MemoryRecord:
        self._own(owner_id)
        return self._record(self._request("POST", f"/v1/optimus/memories/{self._path(memory_id)}/revert/",
                                          json={"history_id": history_id}))

    # ------------------------------------------------------------------ reads
    def get(self, owner_id: str, memory_id: str) -> MemoryRecord:
        self._own(owner_id)
        return self._record(self._request("GET", f"/v1/memories/{self._path(memory_id)}/"))

    def get_all(self, owner_id: str, filters: MemoryFilters | None = None, *, limit: int = 100, offset: int = 0,
                include_expired: bool = False) -> list[MemoryRecord]:
        self._own(owner_id)
        limit, offset = max(0, int(limit)), max(0, int(offset))
        if limit == 0:
            return []
        body = {"filters": filters_to_json(filters), "show_expired": include_expired}
        if limit <= MAX_PAGE and offset % limit == 0:
            data = self._request("POST", "/v3/memories/", json=body,
                                 params={"page": offset // limit + 1, "page_size": limit})
            return self._records(data)
        collected: list[MemoryRecord] = []
        page = 1
        while len(collected) < offset + limit:
            data = self._request("POST", "/v3/memories/", json=body, params={"page": page, "page_size": MAX_PAGE})
            collected.extend(self._records(data))
            if not data.get("next"):
                break
            page += 1
        return collected[offset:offset + limit]

    def history(self, owner_id: str, memory_id: str) -> list[HistoryEntry]:
        self._own(owner_id)
        return [self._entry(e) for e in self._request("GET", f"/v1/memories/{self._path(memory_id)}/history/")]

    def search(self, owner_id: str, query: str, filters: MemoryFilters | None = None, *, top_k: int = 10,
               threshold: float | None = None, mode: str = "hybrid") -> list[MemoryRecord]:
        self._own(owner_id)
        body = {"query": query, "filters": filters_to_json(filters), "top_k": top_k, "threshold": threshold,
                "mode": mode}
        return self._records(self._request("POST", "/v3/memories/search/", json=body))

    def temporal_search(self, owner_id: str, when: str | tuple[datetime | None, datetime | None],
                        query: str | None = None, filters: MemoryFilters | None = None, *,
                        top_k: int = 20) -> list[MemoryRecord]:
        self._own(owner_id)
        if not isinstance(when, str):
            start, end = when
            when = {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None}
        body = {"when": when, "query": query, "filters": filters_to_json(filters), "top_k": top_k}
        return self._records(self._request("POST", "/v1/optimus/search/temporal/", json=body))

    def by_tags(self, owner_id: str, tags: Sequence[str], *, user_id: str | None = None,
                limit: int = 100) -> list[MemoryRecord]:
        self._own(owner_id)
        body = {"tags": list(tags), "user_id": user_id, "limit": limit}
        return self._records(self._request("POST", "/v1/optimus/search/tags/", json=body))

    def by_people(self, owner_id: str, people: Sequence[str], *, user_id: str | None = None,
                  limit: int = 100) -> list[MemoryRecord]:
        self._own(owner_id)
        body = {"people": list(people), "user_id": user_id, "limit": limit}
        return self._records(self._request("POST", "/v1/optimus/search/people/", json=body))

    def stats(self, owner_id: str, *, user_id: str | None = None) -> MemoryStats:
        self._own(owner_id)
        data = self._request("GET", "/v1/optimus/stats/", params={"user_id": user_id} if user_id else None)
        return MemoryStats(
            total=data["total"], by_type=data["by_type"], top_tags=[tuple(t) for t in data["top_tags"]],
            top_people=[tuple(p) for p in data["top_people"]], oldest=data["oldest"], newest=data["newest"],
            user_ids=data["user_ids"],
        )
