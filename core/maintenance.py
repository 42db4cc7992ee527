"""Maintenance that runs by itself: expired memories and conversations, consolidation of near
duplicates, and retries of failed learning jobs.

Each task runs on a schedule in the background (``OPTIMUS_MAINTENANCE_INTERVAL``, 1 h by default;
consolidation every 24 intervals; 0 turns the schedule off) and on an admin's *Run now*. Either
way one runner at a time across replicas: a task's lease row in the database is taken with a
conditional update, so two replicas never run the same task at once. Every run is recorded in
``maintenance_runs`` — when, by whom (the schedule or an admin), what it changed (counts only,
never content) and whether it failed — and shown on the admin page; an admin's run is also an
``admin.maintenance`` audit event.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.errors import ValidationError
from core.logs import exception_summary
from core.schema import maintenance_leases, maintenance_runs

if TYPE_CHECKING:
    from core.audit import AuditLog
    from core.conversations import ConversationStore
    from core.memory.queue import ExtractionQueue
    from core.memory.service import MemoryService
    from core.users import UserStore

log = logging.getLogger(__name__)

Task = Literal["expired_memories", "expired_conversations", "consolidation", "failed_extractions"]
TASKS: tuple[Task, ...] = ("expired_memories", "expired_conversations", "consolidation", "failed_extractions")
LABELS: dict[str, str] = {
    "expired_memories": "Remove expired memories",
    "expired_conversations": "Remove expired conversations",
    "consolidation": "Consolidate near-duplicate memories",
    "failed_extractions": "Retry failed learning jobs",
}
EVERY_INTERVALS: dict[str, int] = {"consolidation": 24}  # the others run every interval
LEASE = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class MaintenanceRun:
    id: int
    task: str
    trigger: str
    actor_id: str | None
    status: str
    changed: int
    detail: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None

    @property
    def label(self) -> str:
        return LABELS.get(self.task, self.task)


def _run(row: Any) -> MaintenanceRun:
    return MaintenanceRun(row.id, row.task, row.trigger, row.actor_id, row.status, row.changed,
                          json.loads(row.detail) if row.detail else {}, row.started_at, row.finished_at)


class MaintenanceService:
    """Runs the maintenance tasks, records each run, and keeps one runner per task across replicas."""

    def __init__(
        self,
        engine: Engine,
        *,
        memory: Callable[[], MemoryService],
        conversations: ConversationStore,
        queue: ExtractionQueue,
        users: UserStore,
        audit: AuditLog,
        interval: timedelta,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._engine = engine
        self._memory = memory
        self.conversations = conversations
        self.queue = queue
        self.users = users
        self.audit = audit
        self.interval = interval
        self._clock = clock or (lambda: datetime.now(UTC))
        self.holder = f"{socket.gethostname()[:40]}:{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------------ the tasks
    def _work(self, task: Task) -> tuple[int, dict[str, Any]]:
        if task == "expired_memories":
            removed = self._memory().cleanup_expired()
            return removed, {"memories": removed}
        if task == "expired_conversations":
            report = self.conversations.cleanup()
            removed = report.expired_conversations
            return removed, {"conversations": removed,
                             "messages": report.expired_messages + report.trimmed_messages}
        if task == "consolidation":
            from core.memory.types import Scope

            memory, merged, scopes, offset = self._memory(), 0, 0, 0
            while people := self.users.list_users(limit=5000, offset=offset):
                offset += len(people)
                for person in people:
                    for user_id in memory.stats(person.id).user_ids:
                        events = memory.consolidate(Scope(person.id, user_id))
                        merged += sum(e.event == "DELETE" for e in events)
                        scopes += 1
            return merged, {"merged": merged, "scopes": scopes}
        retried = self.queue.retry_failed()
        return retried, {"jobs": retried}

    # ------------------------------------------------------------------ running one
    def run(self, task: Task, *, trigger: Literal["schedule", "admin"] = "admin",
            actor_id: str | None = None, ip: str | None = None) -> MaintenanceRun | None:
        """Run ``task`` now if no other runner has it; returns the recorded run (None: busy elsewhere)."""
        if task not in TASKS:
            raise ValidationError(f"Unknown maintenance task {task!r}.", field="task")
        if not self._take_lease(task):
            return None
        started = self._clock()
        with self._engine.begin() as conn:
            run_id = conn.execute(insert(maintenance_runs).values(
                task=task, trigger=trigger, actor_id=actor_id, status="running", changed=0, started_at=started,
            ).returning(maintenance_runs.c.id)).scalar_one()
        status, changed, detail = "ok", 0, {}
        try:
            changed, detail = self._work(task)
        except Exception as exc:  # noqa: BLE001 - a failed run is recorded and shown, the schedule goes on
            status, detail = "failed", {"error": exception_summary(exc)}
            log.warning("maintenance %s failed: %s", task, exception_summary(exc))
        finally:
            with self._engine.begin() as conn:
                conn.execute(update(maintenance_runs).where(maintenance_runs.c.id == run_id).values(
                    status=status, changed=changed, detail=json.dumps(detail), finished_at=self._clock()))
                if trigger == "admin":
                    self.audit.record("admin.maintenance", actor_id=actor_id, ip=ip, conn=conn,
                                      detail={"task": task, "status": status, **{k: v for k, v in detail.items()
                                                                                  if k != "error"}})
            self._release_lease(task)
        return self.get(run_id)

    def get(self, run_id: int) -> MaintenanceRun:
        with self._engine.connect() as conn:
            return _run(conn.execute(select(maintenance_runs).where(maintenance_runs.c.id == run_id)).one())

    def recent(self, limit: int = 50) -> list[MaintenanceRun]:
        """The latest runs, newest first (the admin page's table)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(maintenance_runs).order_by(maintenance_runs.c.id.desc()).limit(limit)).all()
        return [_run(r) for r in rows]

    def last_started(self, task: str) -> datetime | None:
        with self._engine.connect() as conn:
            return conn.execute(select(maintenance_runs.c.started_at).where(maintenance_runs.c.task == task)
                                .order_by(maintenance_runs.c.id.desc()).limit(1)).scalar_one_or_none()

    # ------------------------------------------------------------------ the schedule
    def due(self) -> list[Task]:
        """The tasks whose period has passed since they last started (any replica, any trigger)."""
        if self.interval <= timedelta(0):
            return []
        now = self._clock()
        due: list[Task] = []
        for task in TASKS:
            last = self.last_started(task)
            if last is None or now - last >= self.interval * EVERY_INTERVALS.get(task, 1):
                due.append(task)
        return due

    def run_due(self) -> list[MaintenanceRun]:
        return [run for task in self.due() if (run := self.run(task, trigger="schedule")) is not None]

    # ------------------------------------------------------------------ one runner at a time
    def _take_lease(self, task: str) -> bool:
        now = self._clock()
        with self._engine.begin() as conn:
            taken = conn.execute(update(maintenance_leases).where(and_(
                maintenance_leases.c.task == task,
                or_(maintenance_leases.c.expires_at < now, maintenance_leases.c.holder == self.holder),
            )).values(holder=self.holder, expires_at=now + LEASE)).rowcount
        if taken:
            return True
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(maintenance_leases).values(task=task, holder=self.holder, expires_at=now + LEASE))
            return True
        except IntegrityError:  # another runner holds it
            return False

    def _release_lease(self, task: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(maintenance_leases).where(maintenance_leases.c.task == task,
                                                          maintenance_leases.c.holder == self.holder))


class MaintenanceScheduler:
    """A background thread running due tasks; checks every minute (or ``poll`` seconds)."""

    def __init__(self, service: MaintenanceService, *, poll: float = 60.0) -> None:
        self.service = service
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.run_due()
            except Exception as exc:  # noqa: BLE001 - the database may be briefly away; try again later
                log.warning("maintenance schedule iteration failed: %s", exception_summary(exc))
            self._stop.wait(self.poll)

    def start(self) -> None:
        if self.service.interval <= timedelta(0):
            return
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="optimus-maintenance", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
