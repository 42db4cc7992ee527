"""The two-phase pipeline and its durable queue, with scripted models (FunctionModel)."""

import pytest

from core.memory.pipeline import ExtractionFailed, MemoryPipeline
from core.memory.queue import ExtractionQueue, ExtractionWorker
from core.memory.types import Scope
from tests.memory_fixtures import open_service, scripted_model

EXCHANGE = [{"role": "user", "content": "I moved to Porto last month, and my dog Rex died."},
            {"role": "assistant", "content": "I'm sorry about Rex."}]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    service, users, close = open_service("edge", tmp_path_factory.mktemp("pipeline"))
    yield service, users
    close()


@pytest.fixture
def svc(env):
    return env[0]


@pytest.fixture
def scope(env):
    import uuid

    return Scope.personal(env[1].create(f"p{uuid.uuid4().hex[:10]}").id)


def fact(text, **kw):
    return {"text": text, "type": kw.pop("type", "fact"), "importance": 3, "confidence": 0.9, **kw}


def run(svc, scope, model):
    return MemoryPipeline(svc, model, sleep=lambda s: None).run(scope, EXCHANGE, [])


def test_add_new_facts_with_one_model_call(svc, scope):
    calls = []
    model = scripted_model(lambda p: {"memories": [fact("Lives in Porto", tags=["home"]), fact("Had a dog named Rex", people=[])]},
                           calls=calls)
    result = run(svc, scope, model)
    assert [e.event for e in result.events] == ["ADD", "ADD"] and calls == ["extract"]
    assert result.model_calls == 1
    stored = {r.text for r in svc.get_all(scope.owner_id)}
    assert stored == {"Lives in Porto", "Had a dog named Rex"}
    assert svc.get_all(scope.owner_id, limit=1)[0].confidence == pytest.approx(0.9)


def test_update_delete_none_in_one_decision_call(svc, scope):
    lisbon = svc.add(scope, "Lives in Lisbon", type="fact")
    rex = svc.add(scope, "Has a dog named Rex", type="fact")
    svc.add(scope, "Enjoys walking by the river")
    calls = []

    def decide(prompt):
        alias = {m["text"]: m["alias"] for m in prompt["existing"]}
        assert len(prompt["candidates"]) == 3
        return {"decisions": [
            {"candidate": 0, "action": "UPDATE", "target": alias["Lives in Lisbon"], "text": "Lives in Porto (moved from Lisbon)"},
            {"candidate": 1, "action": "DELETE", "target": alias["Has a dog named Rex"]},
            {"candidate": 2, "action": "NONE", "target": alias["Enjoys walking by the river"]},
        ]}

    model = scripted_model(lambda p: {"memories": [fact("Moved to Porto"), fact("Dog Rex passed away"),
                                                   fact("Likes river walks", type="preference")]}, decide, calls)
    result = run(svc, scope, model)
    assert calls == ["extract", "update"] and result.model_calls == 2
    assert [e.event for e in result.events] == ["UPDATE", "DELETE", "NONE"]
    assert svc.get(scope.owner_id, lisbon.id).text == "Lives in Porto (moved from Lisbon)"
    assert [h.event for h in svc.history(scope.owner_id, rex.id)] == ["ADD", "DELETE"]
    assert svc.history(scope.owner_id, lisbon.id)[-1].source == "pipeline"


def test_invented_alias_is_rejected_never_applied(svc, scope):
    existing = svc.add(scope, "Works at Acme")
    model = scripted_model(
        lambda p: {"memories": [fact("Works at Globex now")]},
        lambda p: {"decisions": [{"candidate": 0, "action": "DELETE", "target": 42},
                                 {"candidate": 0, "action": "ADD"}]},
    )
    result = run(svc, scope, model)
    assert len(result.events) == 1
    event = result.events[0]
    assert event.event == "DELETE" and not event.applied and "unknown alias 42" in event.rejected
    assert [r.id for r in svc.get_all(scope.owner_id)] == [existing.id]


def test_exact_and_near_duplicates_skip_the_model(svc, scope):
    svc.add(scope, "Prefers window seats")
    calls = []
    model = scripted_model(lambda p: {"memories": [fact("Prefers window seats"), fact("prefers window seats."),
                                                   fact("Prefers  window seats")]}, calls=calls)
    result = run(svc, scope, model)
    assert calls == ["extract"] and [e.event for e in result.events] == ["NONE", "NONE", "NONE"]
    assert len(svc.get_all(scope.owner_id)) == 1


def test_nothing_to_remember_is_one_call_and_no_events(svc, scope):
    result = run(svc, scope, scripted_model(lambda p: {"memories": []}))
    assert result.events == [] and result.model_calls == 1


def test_context_and_date_reach_the_extractor(svc, scope):
    seen = []
    model = scripted_model(lambda p: seen.append(p) or {"memories": []})
    MemoryPipeline(svc, model).run(scope, EXCHANGE, [{"role": "user", "content": "Earlier: I have a sister."}])
    assert "Earlier: I have a sister." in seen[0] and "Today is" in seen[0] and "my dog Rex died" in seen[0]


def test_malformed_output_is_retried_then_queued_then_succeeds_later(svc, scope, env):
    engine = svc.history_store._engine
    queue = ExtractionQueue(engine)
    job_id = queue.enqueue(scope, EXCHANGE, [], conversation_id=None, message_id=None)
    broken = ['{"memories": [{"text": ', "not json at all", '{"memories": "nope"}'] * 3
    sleeps = []
    bad = MemoryPipeline(svc, scripted_model(broken), sleep=sleeps.append, attempts=3, backoff=0.5)

    def process_with(pipeline):
        return lambda job: pipeline.run(job.scope, job.exchange, job.context).events

    worker = ExtractionWorker(queue, process_with(bad))
    assert worker.run_once() == {"done": 0, "failed": 1}
    assert sleeps == [0.5, 1.0]  # exponential backoff between attempts
    job = queue.get(job_id)
    assert job.status == "pending" and job.attempts == 1 and "ExtractionFailed" in job.last_error
    assert queue.depth()["pending"] >= 1
    assert svc.get_all(scope.owner_id) == []  # nothing half-applied

    with pytest.raises(ExtractionFailed, match="kept and will be retried"):
        MemoryPipeline(svc, scripted_model(broken), sleep=lambda s: None).run(scope, EXCHANGE)

    # later: the model behaves; the job is due again (backoff elapsed) and completes
    from datetime import timedelta

    later = ExtractionQueue(engine, clock=lambda: queue._clock() + timedelta(hours=1))
    good = MemoryPipeline(svc, scripted_model(lambda p: {"memories": [fact("Lives in Porto")]}))
    assert ExtractionWorker(later, process_with(good)).run_once() == {"done": 1, "failed": 0}
    done = later.get(job_id)
    assert done.status == "done" and [e.event for e in done.events] == ["ADD"]
    assert [r.text for r in svc.get_all(scope.owner_id)] == ["Lives in Porto"]


def test_job_fails_for_good_after_max_attempts_and_can_be_retried(svc, scope):
    from datetime import UTC, datetime, timedelta

    engine = svc.history_store._engine
    t = [datetime.now(UTC)]
    queue = ExtractionQueue(engine, max_attempts=2, clock=lambda: t[0])
    job_id = queue.enqueue(scope, EXCHANGE)

    def boom(job):
        raise RuntimeError("store down")

    worker = ExtractionWorker(queue, boom)
    assert worker.run_once()["failed"] == 1
    t[0] += timedelta(hours=1)
    assert worker.run_once()["failed"] == 1
    assert queue.get(job_id).status == "failed"
    t[0] += timedelta(days=1)
    assert worker.run_once() == {"done": 0, "failed": 0}  # failed jobs wait for an admin
    assert queue.retry_failed() >= 1 and queue.get(job_id).status == "pending"


def test_a_claimed_job_is_not_claimed_twice(svc, scope):
    queue = ExtractionQueue(svc.history_store._engine)
    job_id = queue.enqueue(scope, EXCHANGE)
    first = [j.id for j in queue.claim(100)]
    assert job_id in first and job_id not in [j.id for j in queue.claim(100)]
