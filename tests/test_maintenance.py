"""Scheduled maintenance: due tasks run by themselves, each run is recorded with what it changed,
an admin's run is audited, and one runner at a time holds a task across replicas."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from core.audit import AuditLog
from core.conversations import ConversationStore
from core.maintenance import TASKS, MaintenanceService
from core.memory.queue import ExtractionQueue, ExtractionWorker
from core.memory.types import Scope
from core.schema import audit_events
from tests.memory_fixtures import open_service


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(tmp_path):
    memory, users, close = open_service("edge", tmp_path / "m")
    engine = memory.history_store._engine
    clock = Clock()
    convs = ConversationStore(engine, ttl=timedelta(days=30), clock=clock)
    queue = ExtractionQueue(engine, max_attempts=1)

    def service(holder_clock=clock) -> MaintenanceService:
        return MaintenanceService(engine, memory=lambda: memory, conversations=convs, queue=queue, users=users,
                                  audit=AuditLog(engine), interval=timedelta(hours=1), clock=holder_clock)

    try:
        yield memory, users, convs, queue, clock, service
    finally:
        close()


def test_due_tasks_run_by_themselves_and_each_run_says_what_it_changed(setup):
    memory, users, convs, queue, clock, service = setup
    ada = users.create("ada-maint")
    scope = Scope.personal(ada.id)
    memory.add(scope, "Flight to Oslo on Friday", expires_at=date(2026, 1, 1))  # long expired
    memory.add(scope, "Keeps bees in the garden")
    memory.add(scope, "Keeps bees in the garden.")  # a near duplicate
    old = convs.create(ada.id, "old chat")
    convs.append(old.id, "user", "hello", user_id=ada.id)
    clock.now += timedelta(days=40)  # the chat is now past its 30-day TTL
    job = queue.enqueue(scope, [{"role": "user", "content": "x"}])
    ExtractionWorker(queue, lambda j: (_ for _ in ()).throw(RuntimeError("model down"))).run_once()
    assert queue.get(job).status == "failed"

    maintenance = service()
    assert maintenance.due() == list(TASKS)
    runs = {r.task: r for r in maintenance.run_due()}
    assert {t: (r.status, r.changed, r.trigger) for t, r in runs.items()} == {
        "expired_memories": ("ok", 1, "schedule"), "expired_conversations": ("ok", 1, "schedule"),
        "consolidation": ("ok", 1, "schedule"), "failed_extractions": ("ok", 1, "schedule")}
    assert runs["consolidation"].detail == {"merged": 1, "scopes": 1}
    assert [m.text.rstrip(".") for m in memory.get_all(ada.id)] == ["Keeps bees in the garden"]
    assert queue.get(job).status == "pending"
    assert maintenance.due() == []  # nothing is due again within the hour
    clock.now += timedelta(hours=1, minutes=1)
    assert maintenance.due() == ["expired_memories", "expired_conversations", "failed_extractions"]  # not daily ones
    assert [r.task for r in maintenance.recent(limit=4)][::-1] == list(TASKS)


def test_one_runner_at_a_time_across_replicas(setup):
    *_, service = setup
    first, second = service(), service()  # two replicas on one database
    assert first._take_lease("consolidation")
    assert second.run("consolidation", trigger="schedule") is None  # busy elsewhere: skipped, not doubled
    first._release_lease("consolidation")
    assert second.run("consolidation", trigger="schedule").status == "ok"


def test_an_admin_run_is_recorded_and_audited_and_a_failure_is_shown(setup):
    memory, users, convs, queue, clock, service = setup
    admin = users.create("root-maint", role="admin")
    maintenance = service()
    run = maintenance.run("expired_memories", trigger="admin", actor_id=admin.id, ip="203.0.113.9")
    assert (run.trigger, run.actor_id, run.status) == ("admin", admin.id, "ok")
    with memory.history_store._engine.connect() as conn:
        event = conn.execute(select(audit_events).where(audit_events.c.event == "admin.maintenance")).one()
    assert event.actor_id == admin.id and json.loads(event.detail)["task"] == "expired_memories"

    broken = MaintenanceService(memory.history_store._engine, memory=lambda: 1 / 0, conversations=convs,
                                queue=queue, users=users, audit=AuditLog(memory.history_store._engine),
                                interval=timedelta(hours=1), clock=clock)
    failed = broken.run("expired_memories", trigger="schedule")
    assert failed.status == "failed" and "ZeroDivisionError" in failed.detail["error"]
    assert broken._take_lease("expired_memories")  # a failed run released its lease
