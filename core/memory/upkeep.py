"""Keeping the store tidy: removing expired memories, consolidating near-duplicates, erasing an owner."""

from __future__ import annotations

import logging
from typing import Any

from core.errors import ValidationError
from core.memory.history import attribution, deleting
from core.memory.paging import EXPIRES
from core.memory.records import LIST_CAP, MemoryFilters, record_from_payload
from core.memory.types import MemoryEvent, Scope

log = logging.getLogger(__name__)


class MemoryUpkeep:
    """Part of :class:`~core.memory.service.MemoryService` (its methods use the service's own)."""

    # ------------------------------------------------------------------ maintenance
    def cleanup_expired(self, owner_id: str | None = None) -> int:
        """Delete memories whose expiry date has passed (they are already hidden). Returns the count."""
        flt: dict[str, Any] = {EXPIRES: {"lt": self._clock().date().isoformat()}}  # found by the engine
        if owner_id:
            flt["owner_id"] = owner_id
        removed = 0
        for mem_id in self._call(self._reads.ids, flt, limit=LIST_CAP):
            point = self._call(self.store.get, vector_id=mem_id)
            if point is None:
                continue
            record = record_from_payload(point.id, point.payload or {})
            with self._write_lock, attribution(record.scope, "cleanup"), deleting(record.as_dict()):
                self._call(self._m.delete, str(point.id))
            removed += 1
        return removed

    def consolidate(self, scope: Scope, *, threshold: float = 0.95) -> list[MemoryEvent]:
        """Merge near-duplicates in one scope: keep the most important (then newest), fold the
        others' people/tags into it (UPDATE) and delete them (DELETE)."""
        records = self.get_all(scope.owner_id, MemoryFilters(user_id=scope.user_id, agent_id=scope.agent_id,
                                                             run_id=scope.run_id), limit=LIST_CAP)
        gone: set[str] = set()
        events: list[MemoryEvent] = []
        for rec in sorted(records, key=lambda r: (r.importance, r.updated_at or ""), reverse=True):
            if rec.id in gone:
                continue
            neighbours = [n for n in self.similar_batch(scope, [rec.text], k=10)[0]
                          if n.id != rec.id and n.id not in gone and (n.score or 0) >= threshold]
            if not neighbours:
                continue
            people = [*rec.people, *(p for n in neighbours for p in n.people)]
            tags = [*rec.tags, *(t for n in neighbours for t in n.tags)]
            if set(people) != set(rec.people) or set(tags) != set(rec.tags):
                kept = self.update(scope.owner_id, rec.id, people=people, tags=tags, source="consolidation")
                events.append(MemoryEvent("UPDATE", kept.id, kept.text, rec.text, reason="merged near-duplicates"))
            for n in neighbours:
                self.delete(scope.owner_id, n.id, source="consolidation")
                gone.add(n.id)
                events.append(MemoryEvent("DELETE", n.id, None, n.text, reason=f"near-duplicate of {rec.id}"))
        return events

    def erase_owner(self, owner_id: str) -> int:
        """GDPR erase: every vector and every history row of the owner."""
        if not owner_id:
            raise ValidationError("An owner is required.", field="owner_id")
        erased = 0
        with self._write_lock:
            while True:  # in pages, so any number of memories goes
                # Ids only: a payload the engine cannot decode must not keep a person's data alive.
                ids = self._call(self._reads.ids, {"owner_id": owner_id}, limit=5_000)
                if not ids:
                    break
                for memory_id in ids:
                    self._call(self.store.delete, vector_id=memory_id)
                erased += len(ids)
            self.history_store.erase_owner(owner_id)
        return erased
