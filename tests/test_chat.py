"""The chat service, driven through its public interface with scripted models (FunctionModel).

Real parts: a temp SQLite database (migrated), a temp Qdrant Edge shard, the bundled embedder.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

from core.chat import ChatService
from core.config import load_settings
from core.conversations import ConversationStore
from core.db import make_engine, sqlite_url
from core.errors import BudgetExceeded, ProviderTimeout, ProviderUnavailable, ValidationError
from core.memory.learning import LearningService
from core.memory.queue import ExtractionQueue, ExtractionWorker
from core.memory.types import Scope
from core.metrics import Metrics
from core.preferences import PreferenceStore
from core.models.registry import ModelRegistry
from core.usage import UsageStore
from tests.memory_fixtures import open_service, scripted_model


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    memory, users, close = open_service("edge", root)
    engine = make_engine(sqlite_url(root / "optimus.db"))
    yield memory, users, engine
    engine.dispose()
    close()


def make_chat(env, *, local=None, memory_model=None, metrics=None, prefs=False, **overrides) -> ChatService:
    memory, _users, engine = env
    settings = load_settings(**overrides)
    metrics = metrics or Metrics()
    preferences = PreferenceStore(engine) if prefs else None
    usage = UsageStore(engine)
    learning = LearningService(settings=settings, memory=memory, queue=ExtractionQueue(engine), usage=usage,
                               model=memory_model or FunctionModel(lambda m, i: None), preferences=preferences,
                               metrics=metrics)
    return ChatService(
        settings=settings,
        conversations=ConversationStore(engine),
        memory=memory,
        learning=learning,
        usage=usage,
        registry=ModelRegistry(settings, local_model=local, sleep=lambda s: None),
        metrics=metrics,
        preferences=preferences,
    )


def learn_queued(chat: ChatService) -> dict:
    """Run the background worker once, as the app's worker thread does."""
    return ExtractionWorker(chat.learning.queue, chat.learning.process).run_once()


@pytest.fixture
def person(env):
    return env[1].create(f"c{uuid.uuid4().hex[:10]}")


def instructions_of(messages: list[ModelMessage]) -> str:
    """What the model was told besides the conversation: instructions and system notes."""
    parts = [getattr(m, "instructions", None) or "" for m in messages]
    parts += [p.content for m in messages for p in getattr(m, "parts", []) if getattr(p, "part_kind", "") == "system-prompt"]
    return "\n".join(parts)


def last_user_text(messages: list[ModelMessage]) -> str:
    for msg in reversed(messages):
        for part in getattr(msg, "parts", []):
            if getattr(part, "part_kind", "") == "user-prompt":
                return str(part.content)
    return ""


def streaming(reply: str, seen: list | None = None) -> FunctionModel:
    """Answers with ``reply`` in word chunks; records (messages, info) in ``seen``."""

    async def stream(messages: list[ModelMessage], info: AgentInfo):
        if seen is not None:
            seen.append((messages, info))
        for i, word in enumerate(reply.split(" ")):
            yield word if i == 0 else " " + word

    return FunctionModel(stream_function=stream, model_name="scripted")


def as_stream(respond):
    """A stream_function replaying a non-streaming FunctionModel function's response."""

    async def stream(messages: list[ModelMessage], info: AgentInfo):
        response = respond(messages, info)
        calls = {i: DeltaToolCall(name=p.tool_name, json_args=json.dumps(p.args), tool_call_id=p.tool_call_id)
                 for i, p in enumerate(response.parts) if isinstance(p, ToolCallPart)}
        if calls:
            yield calls
        for part in response.parts:
            if isinstance(part, TextPart):
                yield part.content

    return stream


def test_turn_recalls_streams_persists_and_queues(env, person):
    memory, _, _ = env
    chat = make_chat(env)
    memory.add(Scope.personal(person.id), "Lives in Lisbon with a cat called Miso", type="fact")
    memory.add(Scope.personal(person.id), "Works as a marine biologist", type="fact")
    conv = chat.conversations.create(person.id, "Cats")
    seen: list = []
    turn = chat.send(person.id, conv.id, "What is my cat's name?", model=streaming("Your cat is Miso.", seen))
    chunks = list(turn)
    assert len(chunks) >= 3 and "".join(chunks).strip() == "Your cat is Miso."
    result = turn.result
    # recall reached the prompt, and the conversation history the model saw is in order
    assert "Miso" in instructions_of(seen[0][0])
    assert any(m.text.startswith("Lives in Lisbon") for m in result.recalled)
    stored = chat.conversations.messages(conv.id, user_id=person.id)
    assert [(m.role, m.content) for m in stored] == [("user", "What is my cat's name?"),
                                                     ("assistant", "Your cat is Miso.")]
    assert result.reply is not None and result.reply.output_tokens and result.reply.output_tokens > 0
    # what was recalled is kept with the reply, so the memory panel survives a reload
    assert any(r.text.startswith("Lives in Lisbon") for r in stored[1].details.recalled)
    rows = chat.usage.for_conversation(conv.id)
    assert [(r.purpose, r.status) for r in rows] == [("chat", "ok")]
    assert rows[0].output_tokens == result.output_tokens > 0 and rows[0].cost_usd is None  # function model: no price
    assert chat.turn_status(person.id, result.reply.id) == "pending"
    job = chat.learning.queue.get(result.job_id)
    assert job.exchange[0]["content"] == "What is my cat's name?" and job.message_id == result.reply.id


def test_second_turn_sees_the_first_as_history(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    chat.send(person.id, conv.id, "My name is Ana.", model=streaming("Hello Ana!")).text()
    seen: list = []
    chat.send(person.id, conv.id, "What is my name?", model=streaming("Ana.", seen)).text()
    texts = [p.content for m in seen[0][0] for p in m.parts if getattr(p, "part_kind", "") in {"user-prompt", "text"}
             and not str(p.content).startswith("<system>")]  # the per-turn note, as this model gets it
    assert texts == ["My name is Ana.", "Hello Ana!", "What is my name?"]


def test_tools_are_scoped_to_the_caller(env):
    memory, users, _ = env
    alice, bob = users.create(f"a{uuid.uuid4().hex[:8]}"), users.create(f"b{uuid.uuid4().hex[:8]}")
    memory.add(Scope.personal(alice.id), "Alice plays the cello", type="fact")
    bobs = memory.add(Scope.personal(bob.id), "Bob plays the cello in an orchestra", type="fact")
    tool_results: dict[str, object] = {}
    step = {"n": 0}

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        for msg in messages:
            for part in getattr(msg, "parts", []):
                if getattr(part, "part_kind", "") == "tool-return":
                    tool_results[part.tool_name] = part.content
        step["n"] += 1
        if step["n"] == 1:
            return ModelResponse(parts=[
                ToolCallPart("search_memories", {"query": "cello", "limit": 10}),
                ToolCallPart("forget_memory", {"memory_id": bobs.id}),
                ToolCallPart("update_memory", {"memory_id": bobs.id, "text": "Bob quit music"}),
                ToolCallPart("remember", {"text": "Alice is learning Portuguese", "type": "fact"}),
            ])
        return ModelResponse(parts=[TextPart("Done.")])

    chat = make_chat(env)
    conv = chat.conversations.create(alice.id)
    model = FunctionModel(stream_function=as_stream(respond), model_name="tool-user")
    turn = chat.send(alice.id, conv.id, "What instruments do we play?", model=model)
    assert turn.text() == "Done."
    found = [r["text"] for r in tool_results["search_memories"]]
    assert "Alice plays the cello" in found and not any("Bob" in t for t in found)  # never Bob's
    assert tool_results["forget_memory"] == {"error": "No such memory."}
    assert tool_results["update_memory"] == {"error": "No such memory."}
    assert memory.get(bob.id, bobs.id).text == "Bob plays the cello in an orchestra"
    added = [e for e in turn.result.tool_events if e.event == "ADD"]
    assert len(added) == 1 and memory.get(alice.id, added[0].memory_id).text == "Alice is learning Portuguese"
    assert [h.source for h in memory.history(alice.id, added[0].memory_id)] == ["agent"]


def test_a_failing_provider_falls_back_to_the_local_model(env, person):
    calls = {"primary": 0}

    def down(messages, info):
        calls["primary"] += 1
        raise ModelHTTPError(503, "primary-model", body={"error": "overloaded"})

    async def down_stream(messages, info):
        calls["primary"] += 1
        raise ModelHTTPError(503, "primary-model", body={"error": "overloaded"})
        yield ""  # pragma: no cover - makes this an async generator

    local = streaming("Answered offline.")
    chat = make_chat(env, local=lambda: local, model_retries=2)
    primary = chat.registry.resilient(FunctionModel(down, stream_function=down_stream, model_name="primary-model"),
                                      "openai:primary-model")
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "Hello?", model=primary)
    assert turn.text().strip() == "Answered offline."
    assert calls["primary"] == 3  # first try + 2 retries with backoff, then the fallback answered
    assert turn.result.reply is not None and turn.result.reply.content.strip() == "Answered offline."


def test_provider_timeout_keeps_the_users_message(env, person):
    async def slow(messages, info):
        await asyncio.sleep(5)
        yield "too late"

    chat = make_chat(env, model_timeout=0.3)
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "Are you there?", model=FunctionModel(stream_function=slow, model_name="slow"))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="saved"):
        turn.text()
    assert time.monotonic() - started < 4
    stored = chat.conversations.messages(conv.id, user_id=person.id)
    assert [(m.role, m.content) for m in stored] == [("user", "Are you there?")]
    assert [r.status for r in chat.usage.for_conversation(conv.id)] == ["timeout"]
    # and the unanswered message can be answered later, without storing it twice
    assert chat.retry(person.id, conv.id, model=streaming("Yes.")).text().strip() == "Yes."
    assert [m.role for m in chat.conversations.messages(conv.id, user_id=person.id)] == ["user", "assistant"]


def test_a_broken_model_is_a_clear_error_and_keeps_the_message(env, person):
    def broken(messages, info):
        raise ModelHTTPError(400, "broken", body={"error": "bad request"})

    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    with pytest.raises(ProviderUnavailable, match="saved"):
        chat.send(person.id, conv.id, "Hi", model=FunctionModel(stream_function=as_stream(broken),
                                                                model_name="broken")).text()
    assert [m.content for m in chat.conversations.messages(conv.id, user_id=person.id)] == ["Hi"]
    assert [r.status for r in chat.usage.for_conversation(conv.id)] == ["error"]


@pytest.mark.parametrize("text", ["", "   ", "x" * 32_001, b"\xff\xfe bad utf-8"])
def test_bad_messages_are_refused_and_nothing_is_stored(env, person, text):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    with pytest.raises(ValidationError):
        chat.send(person.id, conv.id, text, model=streaming("never"))
    assert chat.conversations.messages(conv.id, user_id=person.id) == []


def test_unknown_model_id_is_refused_before_storing(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    with pytest.raises(ValidationError, match="Unknown model"):
        chat.send(person.id, conv.id, "Hi", model="nosuch:model")
    assert chat.conversations.messages(conv.id, user_id=person.id) == []


def test_daily_budget_blocks_paid_turns_but_keeps_the_message(env, person):
    chat = make_chat(env, daily_budget_usd="0.05")
    conv = chat.conversations.create(person.id)
    chat.usage.record(user_id=person.id, purpose="chat", provider="openai", model="gpt-6-luna", latency_ms=10,
                      cost_usd=Decimal("0.06"))
    with pytest.raises(BudgetExceeded, match="daily model budget"):
        chat.send(person.id, conv.id, "One more?", model=streaming("no")).text()
    assert [m.content for m in chat.conversations.messages(conv.id, user_id=person.id)] == ["One more?"]


def test_local_model_gets_recall_but_no_tools(env, person):
    memory, _, _ = env
    memory.add(Scope.personal(person.id), "Is allergic to peanuts", type="fact")
    seen: list = []
    chat = make_chat(env, local=lambda: streaming("Noted.", seen))
    conv = chat.conversations.create(person.id)
    assert chat.send(person.id, conv.id, "Any food allergies I have?", model="local").text().strip() == "Noted."
    messages, info = seen[0]
    assert info.function_tools == []
    assert "peanuts" in instructions_of(messages)


def test_hosted_models_are_offered_the_memory_tools(env, person):
    seen: list = []
    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    chat.send(person.id, conv.id, "Hi", model=streaming("Hi.", seen)).text()
    assert sorted(t.name for t in seen[0][1].function_tools) == [
        "forget_memory", "recent_memories", "remember", "search_memories", "update_memory"]


def test_learning_runs_after_the_reply_and_its_events_are_kept_with_the_turn(env, person):
    memory, _, _ = env
    learner = scripted_model(lambda prompt: ["Sister Rita visits tomorrow"])
    chat = make_chat(env, memory_model=learner)
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "My sister Rita visits tomorrow.", model=streaming("Have fun!"))
    turn.text()
    reply_id = turn.result.reply.id
    assert chat.turn_events(person.id, reply_id) is None  # not learned yet: off the request path
    outcome = learn_queued(chat)
    assert outcome["done"] >= 1
    events = chat.turn_events(person.id, reply_id)
    assert [e.event for e in events] == ["ADD"] and events[0].text.startswith("Sister Rita visits on ")
    assert memory.get(person.id, events[0].memory_id).people == ("Rita",)
    assert ("extract", "ok") in [(r.purpose, r.status) for r in chat.usage.for_conversation(conv.id)]


def test_a_conversation_of_another_user_is_not_found(env, person):
    from core.errors import NotFound

    chat = make_chat(env)
    other = env[1].create(f"o{uuid.uuid4().hex[:8]}")
    conv = chat.conversations.create(other.id)
    with pytest.raises(NotFound):
        chat.send(person.id, conv.id, "Hi", model=streaming("x"))
    assert chat.conversations.messages(conv.id, user_id=other.id) == []



def test_turns_and_learning_are_counted_in_metrics_without_user_ids(env, person):
    metrics = Metrics()
    learner = scripted_model(lambda prompt: ["Ran their third marathon"])
    chat = make_chat(env, memory_model=learner, metrics=metrics)
    conv = chat.conversations.create(person.id)
    chat.send(person.id, conv.id, "I ran my third marathon.", model=streaming("Congratulations!")).text()

    def broken(messages, info):
        raise ModelHTTPError(500, "broken", body=None)

    with pytest.raises(ProviderUnavailable):
        chat.send(person.id, conv.id, "Again?", model=FunctionModel(stream_function=as_stream(broken),
                                                                    model_name="broken")).text()
    learn_queued(chat)
    text = metrics.render().decode()
    assert 'optimus_chat_requests_total{status="ok"} 1.0' in text
    assert 'optimus_chat_requests_total{status="error"} 1.0' in text
    assert 'optimus_memory_events_total{event="ADD",source="pipeline"}' in text
    assert 'optimus_model_latency_seconds_count{model="scripted",provider="function",purpose="chat"} 1.0' in text
    assert person.id not in text and conv.id not in text


def test_preferences_turn_off_learning_and_shrink_recall(env, person):
    memory, _, _ = env
    for i in range(4):
        memory.add(Scope.personal(person.id), f"Knows fact number {i} about gardening", type="fact")
    chat = make_chat(env, prefs=True)
    chat.preferences.set(person.id, {"auto_memory": False, "recall_top_k": 2})
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "Tell me about gardening", model=streaming("Sure."))
    turn.text()
    assert len(turn.result.recalled) == 2
    assert turn.result.job_id is None and chat.turn_status(person.id, turn.result.reply.id) is None
    with pytest.raises(ValidationError):
        chat.preferences.set(person.id, {"recall_top_k": 99})


def test_default_memory_expiry_applies_to_learned_facts(env, person):
    from datetime import UTC, datetime, timedelta

    learner = scripted_model(lambda prompt: ["Is training for a 10k race"])
    chat = make_chat(env, memory_model=learner, prefs=True)
    chat.preferences.set(person.id, {"memory_ttl_days": 30})
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "I'm training for a 10k.", model=streaming("Good luck!"))
    turn.text()
    job = chat.learning.queue.get(turn.result.job_id)
    events = chat.learning.process(job)
    record = env[0].get(person.id, events[0].memory_id)
    assert record.expires_at == (datetime.now(UTC) + timedelta(days=30)).date()


def test_a_learned_change_is_shown_as_was_now_and_undone_exactly_once(env, person):
    memory, _, _ = env
    scope = Scope.personal(person.id)
    lisbon = memory.add(scope, "Lives in Lisbon", type="fact", tags=["home"], importance=4)
    chat = make_chat(env, memory_model=scripted_model(lambda prompt: ["Lives in Berlin"]))
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "I moved to Berlin last month.", model=streaming("Welcome to Berlin!"))
    turn.text()
    learn_queued(chat)
    (event,) = chat.turn_events(person.id, turn.result.reply.id)
    assert (event.event, event.previous_text, event.text) == ("UPDATE", "Lives in Lisbon", "Lives in Berlin")
    assert event.undoable
    chat.undo_change(person.id, turn.result.reply.id, "learned", 0)
    back = memory.get(person.id, lisbon.id)
    assert (back.text, back.tags, back.importance) == ("Lives in Lisbon", ("home",), 4)
    (event,) = chat.turn_events(person.id, turn.result.reply.id)
    assert event.undone and not event.undoable  # the panel shows "undone" after a reload too
    with pytest.raises(ValidationError, match="already undone"):
        chat.undo_change(person.id, turn.result.reply.id, "learned", 0)
    assert memory.get(person.id, lisbon.id).text == "Lives in Lisbon"


def test_another_user_cannot_undo_my_changes(env, person):
    from core.errors import NotFound

    chat = make_chat(env, memory_model=scripted_model(lambda prompt: ["Plays the cello"]))
    conv = chat.conversations.create(person.id)
    turn = chat.send(person.id, conv.id, "I play the cello.", model=streaming("Lovely!"))
    turn.text()
    learn_queued(chat)
    other = env[1].create(f"o{uuid.uuid4().hex[:8]}")
    with pytest.raises(NotFound):
        chat.undo_change(other.id, turn.result.reply.id, "learned", 0)
    assert [e.undone for e in chat.turn_events(person.id, turn.result.reply.id)] == [False]


# ------------------------------------------------------------------ titles, regenerate, edit, stop
def titled(reply: str, title: str | None = None, *, title_delay: float = 0.0, seen: list | None = None) -> FunctionModel:
    """Streams ``reply`` to chat turns; answers a title request with ``title`` after ``title_delay`` s."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if seen is not None:
            seen.append(last_user_text(messages))
        time.sleep(title_delay)
        return ModelResponse(parts=[TextPart(title or "")])

    return FunctionModel(answer, stream_function=streaming(reply).stream_function, model_name="scripted")


def test_the_first_exchange_titles_the_conversation_with_the_models_answer(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    asked: list[str] = []
    chat.send(person.id, conv.id, "hi! can you help me plan 3 days in Lisbon?",
              model=titled("Gladly: day one…", "Three days in Lisbon", seen=asked)).text()
    assert chat.conversations.get(person.id, conv.id).title == "Three days in Lisbon"
    assert "3 days in Lisbon" in asked[0] and "Gladly" in asked[0]  # the model saw the exchange
    assert [r.purpose for r in chat.usage.for_conversation(conv.id)] == ["chat", "title"]
    # later turns keep the title
    chat.send(person.id, conv.id, "And what about Porto?", model=titled("Porto is lovely.", "Porto")).text()
    assert chat.conversations.get(person.id, conv.id).title == "Three days in Lisbon"


def test_a_slow_or_unhelpful_model_leaves_the_title_derived_from_the_message(env, person, monkeypatch):
    import core.chat

    monkeypatch.setattr(core.chat, "TITLE_TIMEOUT", 0.3)
    chat = make_chat(env)
    slow = chat.conversations.create(person.id)
    chat.send(person.id, slow.id, "Hello! What should I cook tonight with rice and eggs?",
              model=titled("Fried rice!", "Dinner ideas", title_delay=2.0)).text()
    assert chat.conversations.get(person.id, slow.id).title == "What should I cook tonight with rice and eggs"
    chatty = chat.conversations.create(person.id)
    chat.send(person.id, chatty.id, "Remember that my sister is called Rita",
              model=titled("Noted.", "Sure! Here is a title for you:\nSister Rita")).text()
    assert chat.conversations.get(person.id, chatty.id).title == "My sister is called Rita"


def test_a_title_the_person_typed_is_never_replaced(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id)
    chat.conversations.rename(person.id, conv.id, "Holiday")
    chat.send(person.id, conv.id, "Plan a trip to Rome", model=titled("Sure.", "Rome trip")).text()
    assert chat.conversations.get(person.id, conv.id).title == "Holiday"


def test_regenerate_replaces_the_last_reply(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id, "Jokes")
    chat.send(person.id, conv.id, "Tell me a joke", model=streaming("Why did the chicken…")).text()
    chat.regenerate(person.id, conv.id, model=streaming("Knock knock.")).text()
    stored = chat.conversations.messages(conv.id, user_id=person.id)
    assert [(m.role, m.content) for m in stored] == [("user", "Tell me a joke"), ("assistant", "Knock knock.")]
    assert chat.conversations.get(person.id, conv.id).message_count == 2
    other = env[1].create(f"o{uuid.uuid4().hex[:8]}")
    from core.errors import NotFound

    with pytest.raises(NotFound):
        chat.regenerate(other.id, conv.id, model=streaming("Mine now."))
    assert len(chat.conversations.messages(conv.id, user_id=person.id)) == 2


def test_editing_a_message_replaces_it_and_everything_after_it(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id, "Trip")
    chat.send(person.id, conv.id, "I want to visit Lisbon", model=streaming("Lisbon is great.")).text()
    chat.send(person.id, conv.id, "In May", model=streaming("May is warm.")).text()
    first = chat.conversations.messages(conv.id, user_id=person.id)[0]
    with pytest.raises(ValidationError):
        chat.edit(person.id, first.id, "   ", model=streaming("never"))
    assert len(chat.conversations.messages(conv.id, user_id=person.id)) == 4  # a bad edit removes nothing
    reply = chat.conversations.messages(conv.id, user_id=person.id)[1]
    with pytest.raises(ValidationError, match="your own messages"):
        chat.edit(person.id, reply.id, "hijack", model=streaming("never"))
    chat.edit(person.id, first.id, "I want to visit Porto", model=streaming("Porto is great.")).text()
    stored = chat.conversations.messages(conv.id, user_id=person.id)
    assert [(m.role, m.content) for m in stored] == [("user", "I want to visit Porto"),
                                                     ("assistant", "Porto is great.")]


def test_stopping_a_reply_keeps_what_was_said_marked_as_stopped(env, person):
    chat = make_chat(env)
    conv = chat.conversations.create(person.id, "Story")
    turn = chat.send(person.id, conv.id, "Tell me a long story",
                     model=streaming("Once upon a time there was a lighthouse keeper who"))
    stream = iter(turn)
    said = next(stream) + next(stream) + next(stream)
    assert not chat.wait_for_replies(conv.id, timeout=0.05)  # a page drawn now would miss the reply
    turn.close()  # what the Stop button does
    assert chat.wait_for_replies(conv.id, timeout=0.05)
    stored = chat.conversations.messages(conv.id, user_id=person.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content == said and stored[1].details.stopped is True
    assert [(r.purpose, r.status) for r in chat.usage.for_conversation(conv.id)] == [("chat", "cancelled")]
    # stopped before a word: nothing is stored as a reply, the message can be answered again
    empty = chat.conversations.create(person.id, "Nothing")
    chat.send(person.id, empty.id, "Hello?", model=streaming("Hi")).close()
    assert [m.role for m in chat.conversations.messages(empty.id, user_id=person.id)] == ["user"]


def test_memories_only_with_local_models_keeps_them_from_a_hosted_model(env, person):
    """Preference "use my memories only with local models": a hosted model gets no recall and no memory
    tools (the reply says so), and learning from the exchange runs on the local model."""
    memory, _, engine = env
    memory.add(Scope.personal(person.id), "Is allergic to penicillin", type="fact")
    hosted_calls, local_calls = [], []
    hosted = scripted_model(lambda prompt: hosted_calls.append(prompt) or ["From the hosted model"])
    local = scripted_model(lambda prompt: local_calls.append(prompt) or ["Takes the bus to work"])
    chat = make_chat(env, memory_model=hosted, prefs=True)
    chat.learning = chat.learning.with_model(hosted, local_model=local)
    chat.preferences.set(person.id, {"memories_local_only": True})
    conv = chat.conversations.create(person.id)
    seen: list = []
    turn = chat.send(person.id, conv.id, "I take the bus to work. Am I allergic to anything?",
                     model=streaming("I don't know.", seen))
    turn.text()
    assert turn.result.recalled == [] and turn.result.memory_private
    assert "penicillin" not in instructions_of(seen[0][0])
    assert not seen[0][1].function_tools  # no memory tools for this model
    assert chat.conversations.message(person.id, turn.result.reply.id).details.memory_private is True
    chat.learning.process(chat.learning.queue.get(turn.result.job_id))
    assert hosted_calls == [] and len(local_calls) == 1  # learned on this machine
    assert "Takes the bus to work" in {m.text for m in memory.get_all(person.id)}
    # without a local model installed, nothing is sent to the hosted one either
    chat.learning = chat.learning.with_model(hosted)
    chat.learning._local_model = None
    turn = chat.send(person.id, conv.id, "I walk my dog at six.", model=streaming("Nice."))
    turn.text()
    (event,) = chat.learning.process(chat.learning.queue.get(turn.result.job_id))
    assert "only with local models" in event.rejected and hosted_calls == []


def test_recall_brings_only_related_memories_and_the_important_ones_when_asked_about_me(env, person):
    memory, _, _ = env
    scope = Scope.personal(person.id)
    memory.add(scope, "Is allergic to penicillin", type="fact", importance=5)
    memory.add(scope, "Plays the cello on Sundays", type="preference", importance=2)
    memory.add(scope, "Sister Ana is a nurse in Porto", type="relationship", importance=4)
    chat = make_chat(env, recall_top_k=2)
    assert chat.recall(scope, "What is the capital of France?") == []  # nothing related: nothing recalled
    assert [m.text for m in chat.recall(scope, "Which instrument do I play?")][:1] == ["Plays the cello on Sundays"]
    assert [m.text for m in chat.recall(scope, "What do you remember about me?")] == [
        "Is allergic to penicillin", "Sister Ana is a nurse in Porto"]
