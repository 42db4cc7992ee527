"""Each method of the memory interface, once, as the HTTP exchange it needs.

A method here is a generator, shaped like httpx's ``Auth.auth_flow``: it yields each
:class:`~core.client.wire.Call` it needs, is sent that call's ``httpx.Response`` and returns the
method's result. Nothing here does I/O, so :mod:`core.client.remote` runs the very same exchange
on a blocking ``httpx.Client`` (``RemoteMemory``) and on an ``httpx.AsyncClient``
(``AsyncRemoteMemory``). The contract of each method is documented once, on
:class:`~core.memory.interface.MemoryInterface`; the drivers copy those docstrings.

The API key decides the account: every ``owner_id`` / ``scope.owner_id`` passed in must be that
account's id (asked once from ``/v1/ping/``), otherwise ``PermissionDenied`` before any request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from core.client import wire
from core.client.wire import MAX_BATCH, MAX_PAGE, Call, Flow
from core.errors import PermissionDenied, ValidationError
from core.memory.history import HistoryEntry
from core.memory.records import MemoryFilters, MemoryStats
from core.memory.types import MemoryRecord, NewMemory, Scope


class MemoryExchanges:
    """The HTTP side of :class:`~core.memory.interface.MemoryInterface`. Remembers only the key's owner id."""

    def __init__(self) -> None:
        self.owner_id: str | None = None

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def call(method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Flow[Any]:
        """One request; its JSON answer, or the error its failure stands for."""
        response = yield Call(method, path, json=json, params=params)
        return wire.body_of(response)

    def ping(self) -> Flow[dict[str, Any]]:
        """Who the key acts as: ``owner_id``, ``username``, ``user_email``, ``key_id``, ``key_name``."""
        data = yield from self.call("GET", "/v1/ping/")
        self.owner_id = data["owner_id"]
        return data

    def owner(self) -> Flow[str]:
        """The account this key acts as (one ping, the first time)."""
        if self.owner_id is None:
            yield from self.ping()
        assert self.owner_id is not None
        return self.owner_id

    def _own(self, owner_id: str) -> Flow[str]:
        mine = yield from self.owner()
        if owner_id != mine:
            raise PermissionDenied("This API key acts for one account only; it cannot reach another's memories.")
        return mine

    # ------------------------------------------------------------------ writes
    def add(self, scope: Scope, text: str, *, type: str = "note", importance: int = 3, confidence: float = 1.0,
            entities: Iterable[str] | None = None, people: Iterable[str] | None = None,
            tags: Iterable[str] | None = None, expires_at: date | datetime | str | None = None,
            metadata: dict[str, Any] | None = None, source: str = "ui") -> Flow[MemoryRecord]:
        owner = yield from self._own(scope.owner_id)
        body = {
            **wire.scope_json(scope), "text": text, "type": type, "importance": importance,
            "confidence": confidence, "entities": list(entities or []), "people": list(people or []),
            "tags": list(tags or []), "expires_at": wire.day(expires_at), "metadata": metadata,
        }
        return wire.record((yield from self.call("POST", "/v1/optimus/memories/", json=body)), owner)

    def add_many(self, scope: Scope, items: Sequence[str | NewMemory | dict[str, Any]], *,
                 source: str = "import", batch_size: int = 256) -> Flow[list[MemoryRecord]]:
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise ValidationError("add_many takes a list of memories.", field="items")
        if not 1 <= batch_size <= 4096:
            raise ValidationError("batch_size must be between 1 and 4096.", field="batch_size")
        owner = yield from self._own(scope.owner_id)
        prepared = [_new_memory(index, item).model_dump(mode="json") for index, item in enumerate(items)]
        saved: list[MemoryRecord] = []
        for start in range(0, len(prepared), MAX_BATCH):
            body = {**wire.scope_json(scope), "items": prepared[start:start + MAX_BATCH]}
            try:
                data = yield from self.call("POST", "/v1/optimus/memories/batch/", json=body)
            except ValidationError as exc:
                # The server numbers items within the request; name the index in the whole list.
                raise ValidationError(f"{exc.message} (request starting at memory #{start})",
                                      field=exc.field) from exc
            saved.extend(wire.records(data, owner))
        return saved

    def update(self, owner_id: str, memory_id: str, *, text: str | None = None, type: str | None = None,
               importance: int | None = None, confidence: float | None = None,
               entities: Iterable[str] | None = None, people: Iterable[str] | None = None,
               tags: Iterable[str] | None = None, expires_at: date | datetime | str | None | object = ...,
               metadata: dict[str, Any] | None = None, source: str = "ui") -> Flow[MemoryRecord]:
        owner = yield from self._own(owner_id)
        body: dict[str, Any] = {k: v for k, v in {
            "text": text, "type": type, "importance": importance, "confidence": confidence,
            "entities": None if entities is None else list(entities),
            "people": None if people is None else list(people),
            "tags": None if tags is None else list(tags), "metadata": metadata,
        }.items() if v is not None}
        if expires_at is not ...:
            body["expiration_date"] = wire.day(expires_at)  # type: ignore[arg-type]
        if not body:  # nothing to change: answer like the local service, with the memory as it is
            return (yield from self.get(owner_id, memory_id))
        data = yield from self.call("PUT", f"/v1/memories/{wire.segment(memory_id)}/", json=body)
        return wire.record(data, owner)

    def delete(self, scope_or_owner: Scope | str, memory_id: str, *, source: str = "ui") -> Flow[None]:
        yield from self._own(scope_or_owner.owner_id if isinstance(scope_or_owner, Scope) else scope_or_owner)
        yield from self.call("DELETE", f"/v1/memories/{wire.segment(memory_id)}/")

    def delete_all(self, owner_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, source: str = "ui") -> Flow[int]:
        yield from self._own(owner_id)
        params = {k: v for k, v in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)) if v}
        data = yield from self.call("DELETE", "/v1/memories/", params=params or {"user_id": "*"})
        return int(data["deleted"])

    def revert(self, owner_id: str, memory_id: str, history_id: str, *, source: str = "ui") -> Flow[MemoryRecord]:
        owner = yield from self._own(owner_id)
        data = yield from self.call("POST", f"/v1/optimus/memories/{wire.segment(memory_id)}/revert/",
                                    json={"history_id": history_id})
        return wire.record(data, owner)

    # ------------------------------------------------------------------ reads
    def get(self, owner_id: str, memory_id: str) -> Flow[MemoryRecord]:
        owner = yield from self._own(owner_id)
        return wire.record((yield from self.call("GET", f"/v1/memories/{wire.segment(memory_id)}/")), owner)

    def get_all(self, owner_id: str, filters: MemoryFilters | None = None, *, limit: int = 100, offset: int = 0,
                include_expired: bool = False) -> Flow[list[MemoryRecord]]:
        owner = yield from self._own(owner_id)
        limit, offset = max(0, int(limit)), max(0, int(offset))
        if limit == 0:
            return []
        body = {"filters": wire.filters_to_json(filters), "show_expired": include_expired}
        if limit <= MAX_PAGE and offset % limit == 0:
            data = yield from self.call("POST", "/v3/memories/", json=body,
                                        params={"page": offset // limit + 1, "page_size": limit})
            return wire.records(data, owner)
        collected: list[MemoryRecord] = []
        page = 1
        while len(collected) < offset + limit:
            data = yield from self.call("POST", "/v3/memories/", json=body,
                                        params={"page": page, "page_size": MAX_PAGE})
            collected.extend(wire.records(data, owner))
            if not data.get("next"):
                break
            page += 1
        return collected[offset:offset + limit]

    def history(self, owner_id: str, memory_id: str) -> Flow[list[HistoryEntry]]:
        owner = yield from self._own(owner_id)
        data = yield from self.call("GET", f"/v1/memories/{wire.segment(memory_id)}/history/")
        return [wire.history_entry(e, owner) for e in data]

    def search(self, owner_id: str, query: str, filters: MemoryFilters | None = None, *, top_k: int = 10,
               threshold: float | None = None, mode: str = "hybrid") -> Flow[list[MemoryRecord]]:
        owner = yield from self._own(owner_id)
        body = {"query": query, "filters": wire.filters_to_json(filters), "top_k": top_k, "threshold": threshold,
                "mode": mode}
        return wire.records((yield from self.call("POST", "/v3/memories/search/", json=body)), owner)

    def temporal_search(self, owner_id: str, when: str | tuple[datetime | None, datetime | None],
                        query: str | None = None, filters: MemoryFilters | None = None, *,
                        top_k: int = 20) -> Flow[list[MemoryRecord]]:
        owner = yield from self._own(owner_id)
        period: str | dict[str, str | None]
        if isinstance(when, str):
            period = when
        else:
            start, end = when
            period = {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None}
        body = {"when": period, "query": query, "filters": wire.filters_to_json(filters), "top_k": top_k}
        return wire.records((yield from self.call("POST", "/v1/optimus/search/temporal/", json=body)), owner)

    def by_tags(self, owner_id: str, tags: Sequence[str], *, user_id: str | None = None,
                limit: int = 100) -> Flow[list[MemoryRecord]]:
        owner = yield from self._own(owner_id)
        body = {"tags": list(tags), "user_id": user_id, "limit": limit}
        return wire.records((yield from self.call("POST", "/v1/optimus/search/tags/", json=body)), owner)

    def by_people(self, owner_id: str, people: Sequence[str], *, user_id: str | None = None,
                  limit: int = 100) -> Flow[list[MemoryRecord]]:
        owner = yield from self._own(owner_id)
        body = {"people": list(people), "user_id": user_id, "limit": limit}
        return wire.records((yield from self.call("POST", "/v1/optimus/search/people/", json=body)), owner)

    def stats(self, owner_id: str, *, user_id: str | None = None) -> Flow[MemoryStats]:
        yield from self._own(owner_id)
        data = yield from self.call("GET", "/v1/optimus/stats/", params={"user_id": user_id} if user_id else None)
        return wire.stats(data)


def _new_memory(index: int, item: str | NewMemory | dict[str, Any]) -> NewMemory:
    """``item`` as a checked NewMemory, or a ValidationError naming its index in the list."""
    try:
        if isinstance(item, str):
            return NewMemory(text=item)
        if isinstance(item, dict):
            return NewMemory.model_validate(item)
        if isinstance(item, NewMemory):
            return item
        raise ValidationError("each memory is text, a NewMemory or a dict of its fields.")
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValidationError(f"Memory #{index}: {exc}") from exc
    except ValidationError as exc:
        raise ValidationError(f"Memory #{index}: {exc}", field=exc.field) from exc
