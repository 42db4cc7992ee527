"""The two-phase pipeline, its guardrails and its durable queue, with scripted models (FunctionModel).

The guardrail tests replay what a new user saw on the default offline model: an UPDATE of an
unrelated memory, a move kept as two current facts, a question and the assistant's own answer
stored as facts, an extractor repeating one fact ~48 times, and noise people. Whatever the
model answers, the pipeline must not do any of it.
"""

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.function import FunctionModel

from core.memory.pipeline import ExtractionFailed, MemoryPipeline
from core.memory.queue import ExtractionQueue, ExtractionWorker
from core.memory.types import Scope
from tests.memory_fixtures import open_service, scripted_model

TODAY = datetime(2026, 11, 28, 12, tzinfo=UTC)


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
    return Scope.personal(env[1].create(f"p{uuid.uuid4().hex[:10]}").id)


def turn(user, assistant="Got it."):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def learn(svc, scope, model, user, assistant="Got it.", context=(), **kw):
    pipeline = MemoryPipeline(svc, model, sleep=lambda s: None, clock=lambda: TODAY, **kw)
    return pipeline.run(scope, turn(user, assistant), list(context))


def texts(svc, scope):
    return sorted(r.text for r in svc.get_all(scope.owner_id))


def never_asked(question):
    raise AssertionError(f"the model was asked to decide: {question}")


# ------------------------------------------------------------------ what users saw
def test_an_unrelated_fact_is_never_overwritten_even_when_the_model_says_so(svc, scope):
    learn(svc, scope, scripted_model(lambda p: ["Is vegetarian", "Lives in Lisbon"]),
          "I'm vegetarian and I live in Lisbon.")
    calls = []
    # The model would answer "replaces 1" for anything; it is never even shown the unrelated memories.
    model = scripted_model(lambda p: ["Sister Ana is a nurse in Porto"], lambda q: ["replaces 1"] * len(q), calls)
    result = learn(svc, scope, model, "My sister Ana is a nurse in Porto.")
    assert calls == ["extract"]
    assert [e.event for e in result.events] == ["ADD"]
    assert texts(svc, scope) == ["Is vegetarian", "Lives in Lisbon", "Sister Ana is a nurse in Porto"]


def test_a_replace_verdict_aimed_at_an_unshown_memory_is_refused(svc, scope):
    svc.add(scope, "Prefers tea over coffee", type="preference")
    decided = []

    def decide(question):
        decided.append(question)
        return ["replaces 7"]  # only OLD 1 was shown

    result = learn(svc, scope, scripted_model(lambda p: ["Prefers coffee in the morning"], decide),
                   "I prefer coffee in the morning.")
    assert decided == [[("Prefers coffee in the morning", ["Prefers tea over coffee"])]]
    refused = [e for e in result.events if e.rejected]
    assert refused and "only 1..1 were shown" in refused[0].rejected
    assert texts(svc, scope) == ["Prefers coffee in the morning", "Prefers tea over coffee"]


def test_a_move_ends_with_one_current_fact_and_the_old_one_in_history(svc, scope):
    lisbon = learn(svc, scope, scripted_model(lambda p: ["Lives in Lisbon"]), "I live in Lisbon.").events[0]
    # The model calls it new information; the move is still one current fact.
    result = learn(svc, scope, scripted_model(lambda p: ["Lives in Berlin, moved from Lisbon last month"],
                                              lambda q: ["new"]),
                   "I moved from Lisbon to Berlin last month.")
    assert [e.event for e in result.events] == ["UPDATE"]
    update = result.events[0]
    assert (update.previous_text, update.text) == ("Lives in Lisbon", "Lives in Berlin, moved from Lisbon last month")
    assert update.memory_id == lisbon.memory_id and update.before["memory"] == "Lives in Lisbon"
    assert texts(svc, scope) == ["Lives in Berlin, moved from Lisbon last month"]
    history = svc.history(scope.owner_id, lisbon.memory_id)
    assert [(h.event, h.old_memory, h.new_memory) for h in history] == [
        ("ADD", None, "Lives in Lisbon"), ("UPDATE", "Lives in Lisbon", "Lives in Berlin, moved from Lisbon last month")]


def test_a_question_is_not_learned_and_costs_no_model_call(svc, scope):
    calls = []
    result = learn(svc, scope, scripted_model(lambda p: ["Lives in Lisbon", "Eats Portuguese food"], calls=calls),
                   "Where do I live and what do I eat?", "I live in Lisbon. I eat Portuguese food.")
    assert calls == [] and result.model_calls == 0 and result.events == []
    assert texts(svc, scope) == []


def test_the_assistants_statements_are_never_stored_as_the_users(svc, scope):
    result = learn(svc, scope, scripted_model(lambda p: ["Is from Toronto", "Is Australian", "Loves surfing"]),
                   "I'm from Toronto. What do you know about me?", "You are Australian and love surfing.")
    assert texts(svc, scope) == ["Is from Toronto"]
    refused = {e.text: e.rejected for e in result.events if e.rejected}
    assert set(refused) == {"Is Australian", "Loves surfing"}
    assert all(r.startswith("not stored:") for r in refused.values())


def test_the_extractor_only_sees_the_users_statements(svc, scope):
    prompts = []
    learn(svc, scope, scripted_model(lambda p: prompts.append(p) or []),
          "I'm training for a marathon. Any tips for long runs?", "Hydrate and build mileage slowly.",
          context=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Do you run?"}])
    assert prompts == ["(The user is answering: Do you run?)\nMessage: I'm training for a marathon."]


def test_a_looping_extractor_is_a_failed_attempt_never_48_memories(svc, scope):
    looping = '{"facts": [' + ", ".join(['"Loves hiking"'] * 48) + "]}"
    calls = []
    with pytest.raises(ExtractionFailed, match="kept and will be retried"):
        learn(svc, scope, scripted_model([looping, looping], calls=calls), "I love hiking.")
    assert calls == ["extract"]  # a failed attempt: the durable queue retries it later (core.retry)
    assert texts(svc, scope) == []


def test_repeated_and_near_identical_candidates_become_one_memory(svc, scope):
    result = learn(svc, scope, scripted_model(lambda p: ["Loves hiking", "loves hiking.", "Really loves hiking",
                                                         "The user loves hiking"]),
                   "I love hiking. I really love hiking!")
    assert [e.event for e in result.events] == ["ADD"]
    assert texts(svc, scope) == ["Really loves hiking"]


def test_people_are_names_never_the_user_the_assistant_or_places(svc, scope):
    learn(svc, scope, scripted_model(lambda p: ["User's sister Ana is a nurse in Porto", "Talks to Optimus"]),
          "Hi Optimus! My sister Ana is a nurse in Porto.")
    records = svc.get_all(scope.owner_id)
    ana = next(r for r in records if "Ana" in r.text)
    assert ana.text == "Sister Ana is a nurse in Porto"
    assert ana.people == ("Ana",) and "Porto" in ana.entities and ana.type == "relationship"
    assert all(p.lower() not in {"user", "assistant", "optimus", "porto", "sister ana"} for r in records for p in r.people)
    assert set(ana.tags) <= {"family", "work", "home"} and all(t == t.lower() for t in ana.tags)


def test_an_update_takes_the_new_facts_fields_never_the_old_memorys(svc, scope):
    old = svc.add(scope, "Works at a bank", type="fact", tags=["finance", "old-tag"], people=["Bob"], importance=2)
    result = learn(svc, scope, scripted_model(lambda p: ["Works at a museum"]), "I changed jobs, I now work at a museum.")
    assert [e.event for e in result.events] == ["UPDATE"]
    now = svc.get(scope.owner_id, old.id)
    assert now.text == "Works at a museum" and now.tags == ("work",) and now.people == ()


def test_a_compound_fact_is_split_so_one_change_keeps_the_other(svc, scope):
    learn(svc, scope, scripted_model(lambda p: ["Is vegetarian and lives in Lisbon"]),
          "I'm vegetarian and I live in Lisbon.")
    assert texts(svc, scope) == ["Is vegetarian", "Lives in Lisbon"]
    learn(svc, scope, scripted_model(lambda p: ["Lives in Berlin"]), "I moved to Berlin.")
    assert texts(svc, scope) == ["Is vegetarian", "Lives in Berlin"]


def test_an_addition_never_replaces(svc, scope):
    learn(svc, scope, scripted_model(lambda p: ["Sister Ana is a nurse"]), "My sister Ana is a nurse.")
    result = learn(svc, scope, scripted_model(lambda p: ["Sister Beatriz is a lawyer"], lambda q: ["replaces 1"]),
                   "My other sister, Beatriz, is a lawyer.")
    assert [e.event for e in result.events] == ["ADD"]
    assert texts(svc, scope) == ["Sister Ana is a nurse", "Sister Beatriz is a lawyer"]


def test_forget_that_deletes_without_a_model_call(svc, scope):
    learn(svc, scope, scripted_model(lambda p: ["Likes jazz", "Plays the piano"]), "I like jazz and I play the piano.")
    calls = []
    result = learn(svc, scope, scripted_model(lambda p: [], calls=calls), "Please forget that I like jazz.")
    assert calls == [] and [e.event for e in result.events] == ["DELETE"]
    assert result.events[0].previous_text == "Likes jazz"
    assert texts(svc, scope) == ["Plays the piano"]


def test_a_time_bound_plan_gets_its_date_written_out_and_an_expiry(svc, scope):
    learn(svc, scope, scripted_model(lambda p: ["Is flying to Tokyo next Friday for a conference"]),
          "I'm flying to Tokyo next Friday for a conference.")
    (plan,) = svc.get_all(scope.owner_id)
    assert plan.text == "Is flying to Tokyo on Friday 4 December 2026 for a conference"
    assert plan.expires_at == date(2026, 12, 5)


def test_the_model_decides_what_code_cannot(svc, scope):
    svc.add(scope, "Prefers tea over coffee", type="preference")
    result = learn(svc, scope, scripted_model(lambda p: ["Prefers coffee"], lambda q: ["replaces 1"]),
                   "These days I prefer coffee.")
    assert [(e.event, e.previous_text, e.text) for e in result.events] == [
        ("UPDATE", "Prefers tea over coffee", "Prefers coffee")]
    assert "the model judged it replaces" in result.events[0].reason
    assert result.model_calls == 2


def test_two_calls_at_most_however_many_facts(svc, scope):
    for text in ("Prefers tea over coffee", "Likes jazz music", "Plays chess on Sundays"):
        svc.add(scope, text)
    calls = []
    model = scripted_model(lambda p: ["Prefers coffee", "Likes jazz piano", "Plays chess online", "Owns a bike"],
                           lambda q: ["new"] * len(q), calls)
    result = learn(svc, scope, model, "I prefer coffee, I like jazz piano, I play chess online and I own a bike.")
    assert calls == ["extract", "update"] and result.model_calls == 2
    assert len(svc.get_all(scope.owner_id)) == 7


# ------------------------------------------------------------------ undo, exactly
def test_undo_of_an_update_restores_text_and_every_field(svc, scope):
    old = svc.add(scope, "Works at a bank", type="fact", importance=2, tags=["finance"], people=["Bob"],
                  entities=["Acme Bank"], expires_at=date(2030, 1, 1))
    result = learn(svc, scope, scripted_model(lambda p: ["Works at a museum"]), "I changed jobs, I now work at a museum.")
    (update,) = result.events
    restored = svc.undo(scope.owner_id, update)
    assert restored.id == old.id
    for field_name in ("text", "type", "importance", "tags", "people", "entities", "expires_at", "confidence"):
        assert getattr(restored, field_name) == getattr(old, field_name), field_name
    with pytest.raises(Exception, match="no longer be undone"):
        svc.undo(scope.owner_id, update)  # the memory changed since (it was undone)


def test_undo_of_a_delete_brings_the_memory_back_under_its_own_id(svc, scope):
    old = svc.add(scope, "Plays tennis every Sunday", type="preference", importance=4, tags=["hobbies"])
    result = learn(svc, scope, scripted_model(lambda p: ["No longer plays tennis"]), "I don't play tennis anymore.")
    (delete,) = [e for e in result.events if e.event == "DELETE"]
    assert texts(svc, scope) == []
    back = svc.undo(scope.owner_id, delete)
    assert (back.id, back.text, back.type, back.importance, back.tags) == (
        old.id, old.text, "preference", 4, ("hobbies",))
    assert [h.event for h in svc.history(scope.owner_id, old.id)] == ["ADD", "DELETE", "ADD"]
    assert svc.search(scope.owner_id, "tennis", top_k=1)[0].id == old.id  # searchable again


def test_undo_refuses_another_owners_event(svc, scope, env):
    other = Scope.personal(env[1].create(f"o{uuid.uuid4().hex[:10]}").id)
    result = learn(svc, other, scripted_model(lambda p: ["Likes jazz"]), "I like jazz.")
    with pytest.raises(Exception, match="No such memory"):
        svc.undo(scope.owner_id, result.events[0])
    assert texts(svc, other) == ["Likes jazz"]


# ------------------------------------------------------------------ failures and the queue
def test_a_phase_past_its_deadline_is_a_failed_attempt(svc, scope):
    async def slow(messages, info):
        await asyncio.sleep(2)
        return ModelResponse(parts=[ToolCallPart(tool_name=info.output_tools[0].name, args={"facts": ["Likes jazz"]})])

    started = time.perf_counter()
    with pytest.raises(ExtractionFailed):
        learn(svc, scope, FunctionModel(slow), "I like jazz.", extract_deadline=0.3, attempts=1)
    assert time.perf_counter() - started < 1.5  # cut at the deadline, not when the model finished
    assert texts(svc, scope) == []


def test_malformed_output_is_retried_then_queued_then_succeeds_later(svc, scope):
    engine = svc.history_store._engine
    queue = ExtractionQueue(engine)
    job_id = queue.enqueue(scope, turn("I live in Porto."), [], conversation_id=None, message_id=None)
    broken = ['{"facts": [', "not json at all", '{"facts": "nope"}'] * 3
    sleeps = []
    bad = MemoryPipeline(svc, scripted_model(broken), sleep=sleeps.append, attempts=3, backoff=0.5)

    def process_with(pipeline):
        return lambda job: pipeline.run(job.scope, job.exchange, job.context).events

    worker = ExtractionWorker(queue, process_with(bad))
    assert worker.run_once() == {"done": 0, "failed": 1}
    assert sleeps == [0.5, 1.0]  # exponential backoff between attempts
    job = queue.get(job_id)
    assert job.status == "pending" and job.attempts == 1 and "ExtractionFailed" in job.last_error
    assert svc.get_all(scope.owner_id) == []  # nothing half-applied

    later = ExtractionQueue(engine, clock=lambda: queue._clock() + timedelta(hours=1))
    good = MemoryPipeline(svc, scripted_model(lambda p: ["Lives in Porto"]))
    assert ExtractionWorker(later, process_with(good)).run_once() == {"done": 1, "failed": 0}
    done = later.get(job_id)
    assert done.status == "done" and [e.event for e in done.events] == ["ADD"]
    assert [r.text for r in svc.get_all(scope.owner_id)] == ["Lives in Porto"]


def test_job_fails_for_good_after_max_attempts_and_can_be_retried(svc, scope):
    engine = svc.history_store._engine
    t = [datetime.now(UTC)]
    queue = ExtractionQueue(engine, max_attempts=2, clock=lambda: t[0])
    job_id = queue.enqueue(scope, turn("I live in Porto."))

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
    job_id = queue.enqueue(scope, turn("I live in Porto."))
    first = [j.id for j in queue.claim(100)]
    assert job_id in first and job_id not in [j.id for j in queue.claim(100)]
    assert queue.claim_job(job_id) is None


def test_a_fact_written_about_the_user_but_said_about_someone_else_keeps_who_it_is_about(svc, scope):
    svc.add(scope, "Lives in Paris")
    result = learn(svc, scope, scripted_model(lambda p: ["Lives in Lyon"]), "My mom lives in Lyon.")
    assert [(e.event, e.text) for e in result.events] == [("ADD", "Mom lives in Lyon")]
    assert texts(svc, scope) == ["Lives in Paris", "Mom lives in Lyon"]


def test_thanks_and_passing_moods_are_not_facts(svc, scope):
    calls = []
    learn(svc, scope, scripted_model(lambda p: ["Thank you so much"], calls=calls), "Thank you so much, that was helpful!")
    assert calls == []
    result = learn(svc, scope, scripted_model(lambda p: ["Is tired today"]), "I'm so tired today.")
    assert result.events[0].rejected == "not stored: a passing state, not a lasting fact"
    assert texts(svc, scope) == []


def test_a_request_and_a_statement_in_one_sentence(svc, scope):
    prompts = []
    learn(svc, scope, scripted_model(lambda p: prompts.append(p) or ["Hates mushrooms"]),
          "Suggest a recipe for dinner, I hate mushrooms.", "Try a lemon pasta.")
    assert prompts == ["Message: I hate mushrooms."] and texts(svc, scope) == ["Hates mushrooms"]


def test_one_fact_about_two_topics_replaces_both_old_values(svc, scope):
    svc.add(scope, "Is based in Toronto")
    svc.add(scope, "Works for a bank")
    learn(svc, scope, scripted_model(lambda p: ["Relocated to Vancouver for a new job at a hospital"]),
          "Big news: I relocated to Vancouver for a new job at a hospital.")
    assert texts(svc, scope) == ["Relocated to Vancouver for a new job at a hospital"]
