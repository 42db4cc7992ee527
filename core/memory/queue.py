"""The durable pending-extraction queue.

Every chat turn that should feed long-term memory is written here first (one row, in the
project's database), then processed off the request path. A job that fails — the model
returned garbage, timed out, or the store was down — goes back to ``pending`` with an
exponential backoff and is retried by any worker on any replica; after ``max_attempts`` it is
``failed`` but kept, visible in health, and can be retried by an admin. Claiming is a
conditional UPDATE, so two workers never run the same job; a ``running`` job whose worker died
is reclaimed after the lease expires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update

from core.errors import AppError, NotFound
from core.logs import exception_summary
from core.memory.types import MemoryEvent, Scope
from core.schema import pending_extractions as jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExtractionJob:
    id: int
    scope: Scope
    conversation_id: str | None
    message_id: int | None
    exchange: list[dict[str, str]]
    context: list[dict[str, str]]
    status: str
    attempts: int
    last_error: str | None
    events: list[MemoryEvent] | None


def _job(row) -> ExtractionJob:
    payload = json.loads(row.payload)
    events = None if row.result is None else [MemoryEvent.from_dict(e) for e in json.loads(row.result)]
    return ExtractionJob(
        id=row.id,
        scope=Scope(row.owner_id, row.user_id, row.agent_id, row.run_id),
        conversation_id=row.conversation_id,
        message_id=row.message_id,
        exchange=payload.get("exchange", []),
        context=payload.get("context", []),
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        events=events,
    )


def failure_text(exc: BaseException) -> str:
    """What a failed job keeps as its last error (admins see it): our own errors' messages, which
    are written for people; for anything else only its type and where it happened, never its text."""
    if isinstance(exc, AppError):
        return f"{type(exc).__name__}: {exc.message}"
    return exception_summary(exc)


class ExtractionQueue:
    def __init__(
        self,
        engine: Engine,
        *,
        max_attempts: int = 5,
        base_delay: timedelta = timedelta(seconds=30),
        lease: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._engine = engine
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.lease = lease
        self._clock = clock or (lambda: datetime.now(UTC))

    def enqueue(
        self,
        scope: Scope,
        exchange: Sequence[dict[str, str]],
        context: Sequence[dict[str, str]] = (),
        *,
        conversation_id: str | None = None,
        message_id: int | None = None,
    ) -> int:
        now = self._clock()
        payload = json.dumps({"exchange": list(exchange), "context": list(context)}, ensure_ascii=False)
        with self._engine.begin() as conn:
            return conn.execute(
                insert(jobs)
                .values(
                    owner_id=scope.owner_id,
                    user_id=scope.user_id,
                    agent_id=scope.agent_id,
                    run_id=scope.run_id,
                    conversation_id=conversation_id,
                    message_id=message_id,
                    payload=payload,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
                .returning(jobs.c.id)
            ).scalar_one()

    def claim(self, limit: int = 10) -> list[ExtractionJob]:
        """Take up to ``limit`` due jobs; each is marked running (its attempt counted) for this worker only."""
        now = self._clock()
        due = or_(
            and_(jobs.c.status == "pending", jobs.c.next_attempt_at <= now),
            and_(jobs.c.status == "running", jobs.c.updated_at < now - self.lease),
        )
        with self._engine.connect() as conn:
            ids = conn.execute(select(jobs.c.id).where(due).order_by(jobs.c.id).limit(limit)).scalars().all()
        claimed = []
        for job_id in ids:
            with self._engine.begin() as conn:
                won = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, due)
                    .values(status="running", attempts=jobs.c.attempts + 1, updated_at=now)
                ).rowcount
                if won:
                    claimed.append(_job(conn.execute(select(jobs).where(jobs.c.id == job_id)).one()))
        return claimed

    def claim_job(self, job_id: int) -> ExtractionJob | None:
        """Take one pending job for this caller (it runs it now); None if a worker has it already."""
        now = self._clock()
        with self._engine.begin() as conn:
            won = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "pending")
                .values(status="running", attempts=jobs.c.attempts + 1, updated_at=now)
            ).rowcount
            if not won:
                return None
            return _job(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def mark_undone(self, owner_id: str, job_id: int, index: int) -> MemoryEvent:
        """Record that event ``index`` of a finished job was undone; returns it as it was before."""
        with self._engine.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.owner_id == owner_id)).first()
            if row is None or row.result is None:
                raise NotFound("No such memory change.")
            events = json.loads(row.result)
            if not 0 <= index < len(events):
                raise NotFound("No such memory change.")
            event = MemoryEvent.from_dict(events[index])
            events[index]["undone"] = True
            conn.execute(update(jobs).where(jobs.c.id == job_id)
                         .values(result=json.dumps(events, ensure_ascii=False), updated_at=self._clock()))
        return event

    def complete(self, job_id: int, events: Sequence[MemoryEvent]) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    status="done",
                    result=json.dumps([e.as_dict() for e in events], ensure_ascii=False),
                    last_error=None,
                    updated_at=self._clock(),
                )
            )

    def fail(self, job_id: int, error: str) -> str:
        """Record a failure; back to pending with backoff, or ``failed`` after the last attempt."""
        now = self._clock()
        with self._engine.begin() as conn:
            attempts = conn.execute(select(jobs.c.attempts).where(jobs.c.id == job_id)).scalar_one()
            status = "failed" if attempts >= self.max_attempts else "pending"
            delay = self.base_delay * (2 ** max(0, attempts - 1))
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status=status, last_error=error[:2000], next_attempt_at=now + delay, updated_at=now)
            )
        return status

    def retry_failed(self, *, owner_id: str | None = None) -> int:
        """Put failed jobs back in line now (admin maintenance)."""
        cond = [jobs.c.status == "failed"]
        if owner_id:
            cond.append(jobs.c.owner_id == owner_id)
        with self._engine.begin() as conn:
            return conn.execute(
                update(jobs).where(*cond).values(status="pending", attempts=0, next_attempt_at=self._clock())
            ).rowcount

    def get(self, job_id: int) -> ExtractionJob:
        with self._engine.connect() as conn:
            return _job(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def get_for_owner(self, owner_id: str, job_id: int) -> ExtractionJob:
        """One job of this owner (NotFound for anyone else's)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.owner_id == owner_id)).first()
        if row is None:
            raise NotFound("No such event.")
        return _job(row)

    def for_message(self, owner_id: str, message_id: int) -> ExtractionJob | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(jobs).where(jobs.c.owner_id == owner_id, jobs.c.message_id == message_id).order_by(jobs.c.id.desc())
            ).first()
        return None if row is None else _job(row)

    def depth(self) -> dict[str, int]:
        """Jobs by status (pending, running, failed, done) for health and metrics."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        counts = {"pending": 0, "running": 0, "failed": 0, "done": 0}
        counts.update({status: int(n) for status, n in rows})
        return counts


class ExtractionWorker:
    """Drains the queue with a pipeline runner; ``run_once`` for tests and admin, ``start`` for a thread."""

    def __init__(self, queue: ExtractionQueue, process: Callable[[ExtractionJob], list[MemoryEvent]], *, poll: float = 1.0) -> None:
        self.queue = queue
        self._process = process
        self.poll = poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, limit: int = 10) -> dict[str, Any]:
        done = failed = 0
        for job in self.queue.claim(limit):
            try:
                events = self._process(job)
            except Exception as exc:  # any failure keeps the job; it is retried with backoff
                status = self.queue.fail(job.id, failure_text(exc))
                log.warning("extraction job %s failed (%s): %s", job.id, status, exception_summary(exc))
                failed += 1
            else:
                self.queue.complete(job.id, events)
                done += 1
        return {"done": done, "failed": failed}

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.run_once()
            except Exception as exc:  # the database may be briefly unavailable; try again later
                log.error("extraction worker iteration failed: %s", exception_summary(exc))
                result = {"done": 0, "failed": 0}
            if not result["done"] and not result["failed"]:
                self._wake.wait(self.poll)
                self._wake.clear()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="optimus-extraction", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
