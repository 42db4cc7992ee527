import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from core.conversations import ConversationStore, validate_text
from core.errors import NotFound, ValidationError
from core.memory.types import MemoryEvent
from core.schema import conversations as conversations_table
from core.schema import messages as messages_table
from core.turn_details import RecalledMemory, TurnDetails
from core.users import UserStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def users(engine):
    return UserStore(engine)


@pytest.fixture
def alice(users):
    return users.create("alice")


@pytest.fixture
def bob(users):
    return users.create("bob")


def _message_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(messages_table)).scalar_one()


def test_create_list_rename_delete(engine, alice, bob):
    store = ConversationStore(engine)
    first = store.create(alice.id)
    assert first.title == "New conversation" and first.message_count == 0
    second = store.create(alice.id, "  Trip   to Lisbon ")
    assert second.title == "Trip to Lisbon"
    store.create(bob.id, "Bob's")
    store.append(first.id, "user", "bump first so it is most recent")
    assert [c.id for c in store.list(alice.id)] == [first.id, second.id]
    assert [c.title for c in store.list(alice.id, search="lisbon")] == ["Trip to Lisbon"]
    assert store.rename(alice.id, first.id, "Groceries").title == "Groceries"
    store.delete(alice.id, first.id)
    assert [c.id for c in store.list(alice.id)] == [second.id]
    with pytest.raises(NotFound):
        store.get(alice.id, first.id)


def test_title_search_treats_wildcards_literally(engine, alice):
    store = ConversationStore(engine)
    store.create(alice.id, "100% done")
    store.create(alice.id, "1000 things")
    assert [c.title for c in store.list(alice.id, search="100%")] == ["100% done"]
    assert [c.title for c in store.list(alice.id, search="_")] == []


def test_conversations_are_private(engine, alice, bob):
    store = ConversationStore(engine)
    conv = store.create(alice.id, "secret")
    store.append(conv.id, "user", "my secret", user_id=alice.id)
    assert store.list(bob.id) == []
    for action in (
        lambda: store.get(bob.id, conv.id),
        lambda: store.rename(bob.id, conv.id, "mine"),
        lambda: store.delete(bob.id, conv.id),
        lambda: store.append(conv.id, "user", "hi", user_id=bob.id),
        lambda: store.context(conv.id, user_id=bob.id),
    ):
        with pytest.raises(NotFound):
            action()
    assert store.get(alice.id, conv.id).title == "secret"
    assert [m.content for m in store.context(conv.id)] == ["my secret"]


def test_create_for_unknown_user_is_not_found(engine):
    with pytest.raises(NotFound):
        ConversationStore(engine).create("nobody")


def test_append_records_turn_details_and_context_returns_last_n_in_order(engine, alice):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    for i in range(15):
        role = "user" if i % 2 == 0 else "assistant"
        store.append(conv.id, role, f"turn {i}", model=None if role == "user" else "local:qwen", output_tokens=i)
    ctx = store.context(conv.id)
    assert [m.content for m in ctx] == [f"turn {i}" for i in range(5, 15)]  # default 10
    assert [m.content for m in store.context(conv.id, turns=3)] == ["turn 12", "turn 13", "turn 14"]
    assert store.context(conv.id, turns=0) == []
    assert ctx[-1].model is None and ctx[-2].model == "local:qwen" and ctx[-2].output_tokens == 13
    assert ctx[0].created_at.tzinfo is not None
    assert store.get(alice.id, conv.id).message_count == 15
    assert len(store.messages(conv.id)) == 15
    assert [m.content for m in store.messages(conv.id, after_id=ctx[-2].id)] == ["turn 14"]


def test_turn_details_come_back_typed_and_older_rows_still_read(engine, alice):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    event = MemoryEvent("ADD", "m-1", "Lives in Porto", reason="tool")
    said = TurnDetails(recalled=(RecalledMemory("m-0", "Is vegetarian", 0.71),), tool_events=(event,),
                       cost_usd=Decimal("0.00042"), latency_ms=812.5, stopped=True)
    reply = store.append(conv.id, "assistant", "Noted.", user_id=alice.id, details=said)
    assert store.message(alice.id, reply.id).details == said
    undone = store.update_details(alice.id, reply.id, said.with_tool_event_undone(0)).details
    assert undone.tool_events[0].undone and not said.tool_events[0].undone and undone.recalled == said.recalled
    # A row an earlier version wrote: fewer keys, cost as a plain number.
    with engine.begin() as conn:
        conn.execute(update(messages_table).where(messages_table.c.id == reply.id)
                     .values(details='{"recalled": [{"id": "m-0", "text": "Is vegetarian"}], "cost_usd": 0.5}'))
    old = store.message(alice.id, reply.id).details
    assert old.recalled == (RecalledMemory("m-0", "Is vegetarian", None),) and old.cost_usd == Decimal("0.5")
    assert old.tool_events == () and not old.stopped and not old.memory_private


def test_default_turns_comes_from_settings(engine, alice):
    store = ConversationStore(engine, default_turns=2)
    conv = store.create(alice.id)
    for i in range(4):
        store.append(conv.id, "user", str(i))
    assert [m.content for m in store.context(conv.id)] == ["2", "3"]


def test_message_cap_drops_oldest(engine, alice):
    store = ConversationStore(engine, max_messages=5)
    conv = store.create(alice.id)
    for i in range(12):
        store.append(conv.id, "user", f"m{i}")
    assert [m.content for m in store.messages(conv.id)] == [f"m{i}" for i in range(7, 12)]
    assert store.get(alice.id, conv.id).message_count == 5


def test_lowering_the_cap_is_applied_by_cleanup(engine, alice):
    conv = ConversationStore(engine).create(alice.id)
    for i in range(8):
        ConversationStore(engine).append(conv.id, "user", f"m{i}")
    report = ConversationStore(engine, max_messages=3).cleanup()
    assert report.trimmed_messages == 5
    assert [m.content for m in ConversationStore(engine).messages(conv.id)] == ["m5", "m6", "m7"]


def test_ttl_hides_idle_conversations_and_cleanup_removes_them(engine, alice):
    clock = Clock()
    store = ConversationStore(engine, ttl=timedelta(days=30), clock=clock)
    old = store.create(alice.id, "old")
    store.append(old.id, "user", "a")
    store.append(old.id, "assistant", "b")
    clock.advance(days=20)
    fresh = store.create(alice.id, "fresh")
    store.append(fresh.id, "user", "c")
    clock.advance(days=11)  # old idle 31 days, fresh 11
    assert [c.title for c in store.list(alice.id)] == ["fresh"]
    with pytest.raises(NotFound):
        store.append(old.id, "user", "too late")
    report = store.cleanup()
    assert (report.expired_conversations, report.expired_messages) == (1, 2)
    assert _message_rows(engine) == 1
    assert store.cleanup().expired_conversations == 0


def test_zero_ttl_keeps_forever(engine, alice):
    clock = Clock()
    store = ConversationStore(engine, clock=clock)
    store.create(alice.id)
    clock.advance(days=3650)
    assert len(store.list(alice.id)) == 1 and store.cleanup().expired_conversations == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("x" * 101, "101 characters long; the limit is 100"),
        (b"caf\xc3", "not valid UTF-8"),
        ("half a pair \ud83d", "not valid UTF-8"),
        ("nul\x00byte", "NUL"),
        (42, "must be text"),
    ],
)
def test_bad_text_is_rejected_and_nothing_is_stored(engine, alice, text, expected):
    store = ConversationStore(engine, max_chars=100)
    conv = store.create(alice.id)
    store.append(conv.id, "user", "kept")
    with pytest.raises(ValidationError, match=expected) as err:
        store.append(conv.id, "user", text)
    assert err.value.field == "text"
    assert [m.content for m in store.messages(conv.id)] == ["kept"]
    assert store.get(alice.id, conv.id).message_count == 1


def test_default_limit_is_32k(engine, alice):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    store.append(conv.id, "user", "y" * 32_000)
    with pytest.raises(ValidationError):
        store.append(conv.id, "user", "y" * 32_001)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"role": "wizard"}, "role"), ({"input_tokens": -1}, "input_tokens"), ({"model": "m" * 201}, "model")],
)
def test_bad_fields_are_rejected(engine, alice, kwargs, field):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    kwargs = dict(kwargs)  # parametrize shares the dict between backends
    role = kwargs.pop("role", "user")
    with pytest.raises(ValidationError) as err:
        store.append(conv.id, role, "hello", **kwargs)
    assert err.value.field == field and _message_rows(engine) == 0


def test_valid_utf8_bytes_are_accepted(engine, alice):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    assert store.append(conv.id, "user", "café ☕".encode()).content == "café ☕"


def test_bad_titles(engine, alice):
    store = ConversationStore(engine)
    with pytest.raises(ValidationError):
        store.create(alice.id, "   ")
    with pytest.raises(ValidationError):
        store.create(alice.id, "t" * 201)


def test_deleting_a_conversation_deletes_its_messages(engine, alice):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    store.append(conv.id, "user", "x")
    store.delete(alice.id, conv.id)
    assert _message_rows(engine) == 0


def test_concurrent_appends_keep_count_consistent(engine, alice):
    store = ConversationStore(engine, max_messages=50)
    conv = store.create(alice.id)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                store.append(conv.id, "user", f"w{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(messages_table)).scalar_one()
        counted = conn.execute(select(conversations_table.c.message_count)).scalar_one()
    assert stored == counted == 50


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=300))
def test_any_accepted_text_round_trips_exactly(engine, alice, text):
    store = ConversationStore(engine, max_chars=300)
    conv = store.create(alice.id)
    try:
        expected = validate_text(text, limit=300)
    except ValidationError:
        with pytest.raises(ValidationError):
            store.append(conv.id, "user", text)
        return
    store.append(conv.id, "user", text)
    assert store.context(conv.id, turns=1)[0].content == expected == text


def test_search_finds_words_in_messages_with_a_snippet_and_keeps_recency_order(engine, alice, bob):
    clock = Clock()
    store = ConversationStore(engine, clock=clock)
    soup = store.create(alice.id, "Dinner")
    store.append(soup.id, "user", "How long should a tomato SOUP simmer?")
    clock.advance(minutes=5)
    trip = store.create(alice.id, "Trip to Lisbon")
    store.append(trip.id, "user", "Is the soup in Lisbon good?")
    store.append(trip.id, "user", "word " * 40 + "soup again at the end")
    clock.advance(minutes=5)
    store.create(alice.id, "Soup kitchen volunteering")
    theirs = store.create(bob.id, "Bob's soup")
    store.append(theirs.id, "user", "soup soup")
    found = store.search(alice.id, "Soup")
    assert [m.conversation.title for m in found] == ["Soup kitchen volunteering", "Trip to Lisbon", "Dinner"]
    assert found[0].snippet is None  # the title matched, no message did
    assert found[1].snippet.startswith("…") and found[1].snippet.endswith("soup again at the end")  # the newest match
    assert found[2].snippet == "How long should a tomato SOUP simmer?"
    assert [c.title for c in store.list(alice.id, search="simmer")] == ["Dinner"]
    assert store.search(alice.id, "100%") == []  # wildcards are literal
    assert [m.conversation.id for m in store.search(alice.id, "   ")] == [c.id for c in store.list(alice.id)]


def test_an_automatic_title_never_replaces_one_the_person_gave(engine, alice, bob):
    store = ConversationStore(engine)
    untitled = store.create(alice.id)
    assert store.title_untitled(alice.id, untitled.id, "Cooking with rice")
    assert store.get(alice.id, untitled.id).title == "Cooking with rice"
    assert not store.title_untitled(alice.id, untitled.id, "Something else")
    named = store.create(alice.id, "My plans")
    assert not store.title_untitled(alice.id, named.id, "Generated")
    assert store.get(alice.id, named.id).title == "My plans"
    with pytest.raises(NotFound):
        store.title_untitled(bob.id, untitled.id, "Bob was here")
    with pytest.raises(ValidationError):
        store.title_untitled(alice.id, store.create(alice.id).id, " ")


def test_truncate_removes_a_message_and_all_later_ones(engine, alice, bob):
    store = ConversationStore(engine)
    conv = store.create(alice.id)
    ids = [store.append(conv.id, role, text).id
           for role, text in [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]]
    other = store.create(alice.id)
    elsewhere = store.append(other.id, "user", "kept").id
    with pytest.raises(NotFound):
        store.truncate(alice.id, conv.id, elsewhere)  # a message of another conversation
    with pytest.raises(NotFound):
        store.truncate(bob.id, conv.id, ids[2])
    assert store.truncate(alice.id, conv.id, ids[2]) == 2
    assert [m.content for m in store.messages(conv.id)] == ["a", "b"]
    assert store.get(alice.id, conv.id).message_count == 2
    assert [m.content for m in store.messages(other.id)] == ["kept"]


def test_export_markdown_has_the_title_and_every_turn(engine, alice, bob):
    store = ConversationStore(engine, clock=Clock())
    conv = store.create(alice.id, "Trip to Lisbon")
    store.append(conv.id, "user", "Where should I eat?")
    store.append(conv.id, "assistant", "Try **Time Out Market**.\n\n- pastel de nata", model="openai:gpt-6-luna")
    text = store.export_markdown(alice.id, conv.id)
    assert text.startswith("# Trip to Lisbon\n")
    assert "## You · 2026-01-01 12:00\n\nWhere should I eat?" in text
    assert "## Optimus (openai:gpt-6-luna) · 2026-01-01 12:00\n\nTry **Time Out Market**.\n\n- pastel de nata" in text
    with pytest.raises(NotFound):
        store.export_markdown(bob.id, conv.id)
