"""The memory interface: one contract, three implementations.

:class:`MemoryInterface` is what ``MemoryService`` (in this process), ``core.client.RemoteMemory``
(over the REST API) and ``core.client.AsyncRemoteMemory`` (the same, as coroutines) offer: the
same names, parameters and return types, so code — and the behavioural suite in
``tests/test_client_contract.py`` — does not care where memory lives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from core.memory.history import HistoryEntry
from core.memory.records import MemoryFilters, MemoryStats
from core.memory.types import MemoryRecord, NewMemory, Scope


@runtime_checkable
class MemoryInterface(Protocol):
    """Owner-scoped long-term memory. ``AsyncRemoteMemory`` offers each method as a coroutine."""

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


MEMORY_METHODS: tuple[str, ...] = tuple(
    name for name, value in vars(MemoryInterface).items() if callable(value) and not name.startswith("_"))
