"""mem0's memory history, kept in the project's database instead of a node-local SQLite file.

``mem0.Memory`` writes history through ``self.db`` (an ``SQLiteManager`` by default). The
:class:`SqlHistory` here has the same methods and is put in its place, so every ADD / UPDATE /
DELETE that mem0 applies is recorded in ``memory_history`` — PostgreSQL in server mode, shared
by every app replica. Rows carry the owning account and the source of the change, which mem0
does not know; :func:`attribution` supplies them for the calls made inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, func, insert, select

from core.memory.types import Scope

if TYPE_CHECKING:
    from core.audit import AuditLog
from core.schema import memory_history

_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("optimus_memory_scope", default=None)
_source: contextvars.ContextVar[str | None] = contextvars.ContextVar("optimus_memory_source", default=None)
_snapshot: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("optimus_memory_snapshot",
                                                                                 default=None)


@contextlib.contextmanager
def attribution(scope: Scope, source: str) -> Iterator[None]:
    """History rows written inside this block belong to ``scope`` and say where they came from."""
    scope_token = _scope.set(scope)
    source_token = _source.set(source)
    try:
        yield
    finally:
        _scope.reset(scope_token)
        _source.reset(source_token)


@contextlib.contextmanager
def deleting(snapshot: dict[str, Any]) -> Iterator[None]:
    """A DELETE written inside this block keeps ``snapshot`` (the memory as it was) with its row."""
    token = _snapshot.set(snapshot)
    try:
        yield
    finally:
        _snapshot.reset(token)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: str
    memory_id: str
    owner_id: str | None
    scope: Scope | None
    event: str
    old_memory: str | None
    new_memory: str | None
    created_at: str | None
    updated_at: str | None
    is_deleted: bool
    actor_id: str | None
    role: str | None
    source: str | None
    recorded_at: datetime
    snapshot: dict[str, Any] | None = None  # DELETE rows: the memory as it was, when known

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memory_id": self.memory_id,
            "user_id": self.scope.user_id if self.scope else None,
            "agent_id": self.scope.agent_id if self.scope else None,
            "run_id": self.scope.run_id if self.scope else None,
            "event": self.event,
            "old_memory": self.old_memory,
            "new_memory": self.new_memory,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "is_deleted": self.is_deleted,
            "actor_id": self.actor_id,
            "role": self.role,
            "source": self.source,
            "recorded_at": self.recorded_at.isoformat(),
        }


def _entry(row) -> HistoryEntry:
    return HistoryEntry(
        id=row.id,
        memory_id=row.memory_id,
        owner_id=row.owner_id,
        scope=Scope(row.owner_id, row.user_id, row.agent_id, row.run_id) if row.owner_id and row.user_id else None,
        event=row.event,
        old_memory=row.old_memory,
        new_memory=row.new_memory,
        created_at=row.created_at,
        updated_at=row.updated_at,
        is_deleted=bool(row.is_deleted),
        actor_id=row.actor_id,
        role=row.role,
        source=row.source,
        recorded_at=row.recorded_at,
        snapshot=json.loads(row.snapshot) if row.snapshot else None,
    )


_AUDIT_EVENT = {"ADD": "memory.add", "UPDATE": "memory.update", "DELETE": "memory.delete"}
_SYSTEM_SOURCES = frozenset({"cleanup", "consolidation", "maintenance", "reembed", "erasure"})


class SqlHistory:
    """Drop-in for mem0's ``SQLiteManager`` on the project's SQLAlchemy engine. Thread-safe.

    With an :class:`~core.audit.AuditLog`, every history row is also an audit event
    (``memory.add`` / ``memory.update`` / ``memory.delete``) written in the same transaction, so
    every change is audited whatever its source (chat, pipeline, UI, API, MCP, maintenance) — with
    ids and the source only, never the memory's text.
    """

    def __init__(self, engine: Engine, *, audit: AuditLog | None = None) -> None:
        self._engine = engine
        self._audit = audit

    def _record_audit(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        if self._audit is None:
            return
        for row in rows:
            event = _AUDIT_EVENT.get(str(row["event"]))
            if event is None:
                continue
            source = row["source"] or "unknown"
            # Only the source: end-user, agent and run ids are the caller's own names, which may
            # identify people; they stay in history, which erasure removes with the account.
            detail = {"source": source}
            self._audit.record(event, actor_id=None if source in _SYSTEM_SOURCES else row["owner_id"],
                               subject_id=row["memory_id"], detail=detail, conn=conn)

    # ----------------------------------------------------------- mem0's interface
    def _row(self, memory_id, old_memory, new_memory, event, created_at, updated_at, is_deleted, actor_id, role):
        scope = _scope.get()
        snapshot = _snapshot.get() if event == "DELETE" else None
        return {
            "id": str(uuid.uuid4()),
            "memory_id": str(memory_id),
            "owner_id": scope.owner_id if scope else None,
            "user_id": scope.user_id if scope else None,
            "agent_id": scope.agent_id if scope else None,
            "run_id": scope.run_id if scope else None,
            "old_memory": old_memory,
            "new_memory": new_memory,
            "event": event,
            "created_at": None if created_at is None else str(created_at),
            "updated_at": None if updated_at is None else str(updated_at),
            "is_deleted": int(bool(is_deleted)),
            "actor_id": actor_id,
            "role": role,
            "source": _source.get(),
            "recorded_at": datetime.now(UTC),
            "snapshot": json.dumps(snapshot, ensure_ascii=False, default=str) if snapshot else None,
        }

    def add_history(
        self,
        memory_id: str,
        old_memory: str | None,
        new_memory: str | None,
        event: str,
        *,
        created_at: str | None = None,
        updated_at: str | None = None,
        is_deleted: int = 0,
        actor_id: str | None = None,
        role: str | None = None,
    ) -> None:
        row = self._row(memory_id, old_memory, new_memory, event, created_at, updated_at, is_deleted, actor_id, role)
        with self._engine.begin() as conn:
            conn.execute(insert(memory_history).values(**row))
            self._record_audit(conn, [row])

    def batch_add_history(self, records: list[dict[str, Any]]) -> None:
        rows = [
            self._row(
                r.get("memory_id"),
                r.get("old_memory"),
                r.get("new_memory"),
                r.get("event"),
                r.get("created_at"),
                r.get("updated_at"),
                r.get("is_deleted", 0),
                r.get("actor_id"),
                r.get("role"),
            )
            for r in records
        ]
        if rows:
            with self._engine.begin() as conn:
                conn.execute(insert(memory_history), rows)
                self._record_audit(conn, rows)

    def get_history(self, memory_id: str) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.for_memory(memory_id)]

    # mem0 keeps the last messages of a session for its own single-call inference. Optimus
    # never runs that path (conversations live in core.conversations and our pipeline gets
    # its context from there), so there is nothing to keep.
    def save_messages(self, messages: list[dict[str, Any]], session_scope: str) -> None:
        return None

    def get_last_messages(self, session_scope: str, limit: int = 10) -> list[dict[str, Any]]:
        return []

    def reset(self) -> None:
        """mem0's ``reset()`` wipes everything; Optimus erases per owner (:meth:`erase_owner`)."""
        with self._engine.begin() as conn:
            conn.execute(delete(memory_history))

    def close(self) -> None:
        return None  # the engine belongs to the runtime

    # ----------------------------------------------------------- ours
    def for_memory(self, memory_id: str) -> list[HistoryEntry]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(memory_history).where(memory_history.c.memory_id == memory_id).order_by(memory_history.c.seq)
            ).all()
        return [_entry(r) for r in rows]

    def for_owner(self, owner_id: str) -> list[HistoryEntry]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(memory_history).where(memory_history.c.owner_id == owner_id).order_by(memory_history.c.seq)
            ).all()
        return [_entry(r) for r in rows]

    def deleted_for_owner(self, owner_id: str, *, limit: int = 50) -> list[HistoryEntry]:
        """The DELETE rows of the owner's memories whose latest event is that DELETE (still deleted),
        newest first."""
        latest = (
            select(memory_history.c.memory_id, func.max(memory_history.c.seq).label("seq"))
            .where(memory_history.c.owner_id == owner_id)
            .group_by(memory_history.c.memory_id).subquery()
        )
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(memory_history).join(latest, latest.c.seq == memory_history.c.seq)
                .where(memory_history.c.event == "DELETE")
                .order_by(memory_history.c.seq.desc()).limit(max(1, min(int(limit), 1000)))
            ).all()
        return [_entry(r) for r in rows]

    def erase_owner(self, owner_id: str) -> int:
        with self._engine.begin() as conn:
            return conn.execute(delete(memory_history).where(memory_history.c.owner_id == owner_id)).rowcount
