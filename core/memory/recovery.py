"""Going back: history, revert, undo of a learned change, and restoring deleted memories under their own id."""

from __future__ import annotations

import logging
from typing import Any

from core.errors import NotFound, ValidationError
from core.memory.history import HistoryEntry
from core.memory.records import (
    ID_RE,
    DeletedMemory,
    check_scope,
    memory_text,
)
from core.memory.types import MemoryEvent, MemoryRecord, Scope

log = logging.getLogger(__name__)


class MemoryRecovery:
    """Part of :class:`~core.memory.service.MemoryService` (its methods use the service's own)."""

    # ------------------------------------------------------------------ recovery
    def history(self, owner_id: str, memory_id: str) -> list[HistoryEntry]:
        """Every recorded change of a memory, oldest first (also for deleted memories of this owner)."""
        entries = self.history_store.for_memory(memory_id) if ID_RE.match(memory_id or "") else []
        if not entries or any(e.owner_id not in (None, owner_id) for e in entries):
            raise NotFound("No such memory.")
        if all(e.owner_id is None for e in entries):
            self._owned(owner_id, memory_id)  # history written before attribution: check via the store
        return entries

    def revert(self, owner_id: str, memory_id: str, history_id: str, *, source: str = "ui") -> MemoryRecord:
        """Bring back the text a memory had after (or before a DELETE) the given history entry."""
        entries = self.history(owner_id, memory_id)
        entry = next((e for e in entries if e.id == history_id), None)
        if entry is None:
            raise NotFound("No such history entry.")
        text = entry.new_memory if entry.event != "DELETE" else entry.old_memory
        if not text:
            raise ValidationError("That history entry has no text to go back to.")
        try:
            self._owned(owner_id, memory_id)
        except NotFound:  # deleted: re-create it in the scope it had (mem0 gives it a new id; the
            # REST API promises that). "Recently deleted" restores under the own id: restore_deleted.
            scope = next((e.scope for e in reversed(entries) if e.scope), None) or Scope.personal(owner_id)
            return self.add(scope, text, source=source, metadata={"restored_from": memory_id})
        return self.update(owner_id, memory_id, text=text, source=source)

    @staticmethod
    def _snapshot_from_history(entries: list[HistoryEntry]) -> dict[str, Any]:
        """What a deleted memory was: the snapshot its DELETE kept, or (for deletions recorded before
        snapshots existed) its last text, scope and creation time as history knows them."""
        last = entries[-1]
        if last.event == "DELETE" and last.snapshot:
            return dict(last.snapshot)
        scope = next((e.scope for e in reversed(entries) if e.scope), None)
        text = next((e.old_memory if e.event == "DELETE" else e.new_memory for e in reversed(entries)
                     if (e.old_memory if e.event == "DELETE" else e.new_memory)), None)
        return {"id": last.memory_id, "memory": text or "", "user_id": scope.user_id if scope else None,
                "agent_id": scope.agent_id if scope else None, "run_id": scope.run_id if scope else None,
                "created_at": next((e.created_at for e in entries if e.event == "ADD"), None)}

    def recently_deleted(self, owner_id: str, *, limit: int = 50) -> list[DeletedMemory]:
        """The owner's deleted memories (from history), most recently deleted first."""
        if not owner_id:
            raise ValidationError("An owner is required.", field="owner_id")
        out = []
        for entry in self.history_store.deleted_for_owner(owner_id, limit=limit):
            text = (entry.snapshot or {}).get("memory") or entry.old_memory
            if text:
                out.append(DeletedMemory(entry.memory_id, text, entry.recorded_at, entry.source,
                                         entry.scope.user_id if entry.scope else None, bool(entry.snapshot)))
        return out

    def restore_deleted(self, owner_id: str, memory_id: str, *, source: str = "ui") -> MemoryRecord:
        """Bring a deleted memory back under its own id, as it was when it was deleted (text only
        for deletions recorded before history kept whole memories). NotFound for another owner's."""
        entries = self.history(owner_id, memory_id)
        if entries[-1].event != "DELETE":
            raise ValidationError("This memory is not deleted.")
        return self.restore(owner_id, self._snapshot_from_history(entries), source=source)

    def undo(self, owner_id: str, event: MemoryEvent, *, source: str = "ui") -> MemoryRecord | None:
        """Take back one applied event exactly: an ADD is deleted, an UPDATE gets its previous text
        and fields back, a DELETE is restored under its own id with everything it had. Returns the
        memory as it is afterwards (None after undoing an ADD).

        Refused (:class:`ValidationError`) when the memory changed since the event, so an undo
        never throws away a later edit.
        """
        if not event.undoable:
            raise ValidationError("There is nothing to undo for this event.")
        if event.event == "ADD":
            current = self._owned(owner_id, event.memory_id)
            if current.text != event.text:
                raise ValidationError("This memory was edited since it was learned; delete it on the Memories page.")
            self.delete(owner_id, current.id, source=source)
            return None
        before = event.before
        if event.event == "UPDATE":
            current = self._owned(owner_id, event.memory_id)
            if current.text != event.text:
                raise ValidationError("This change can no longer be undone (the memory changed since).")
            if before is None:  # an event recorded before snapshots existed: text only
                if not event.previous_text:
                    raise ValidationError("This change can no longer be undone.")
                return self.update(owner_id, current.id, text=event.previous_text, source=source)
            return self.update(
                owner_id, current.id, text=before["memory"], type=before["type"], importance=before["importance"],
                confidence=before["confidence"], entities=before["entities"], people=before["people"],
                tags=before["tags"], expires_at=before.get("expires_at"), metadata=before.get("metadata") or {},
                source=source,
            )
        # DELETE
        try:
            self._owned(owner_id, event.memory_id)
        except NotFound:
            pass
        else:
            raise ValidationError("This memory is already back.")
        if before is None:  # an event recorded before events kept snapshots: what history kept
            return self.restore_deleted(owner_id, event.memory_id, source=source)
        return self.restore(owner_id, before, source=source)

    def restore(self, owner_id: str, snapshot: dict[str, Any], *, source: str = "ui") -> MemoryRecord:
        """Bring a deleted memory back under its own id, with the text and fields of ``snapshot``
        (a ``MemoryRecord.as_dict()``); history records it as an ADD."""
        memory_id = str(snapshot.get("id") or "")
        if not ID_RE.match(memory_id):
            raise ValidationError("That memory cannot be restored (no id).")
        history = self.history_store.for_memory(memory_id)
        if any(e.owner_id not in (None, owner_id) for e in history):
            raise NotFound("No such memory.")
        scope = Scope(owner_id, snapshot.get("user_id") or owner_id, snapshot.get("agent_id"), snapshot.get("run_id"))
        check_scope(scope)
        text = " ".join(memory_text(snapshot.get("memory") or "").split())
        meta = self._metadata(
            owner_id=owner_id, type=snapshot.get("type") or "note", importance=int(snapshot.get("importance") or 3),
            confidence=float(snapshot.get("confidence") if snapshot.get("confidence") is not None else 1.0),
            entities=snapshot.get("entities"), people=snapshot.get("people"), tags=snapshot.get("tags"),
            source=source, extra=snapshot.get("metadata") or {},
        )
        expires = snapshot.get("expires_at")
        record = self._insert(scope, [(text, meta, expires)], source=source, ids=[memory_id],
                              created_at=snapshot.get("created_at"))[0]
        return record
