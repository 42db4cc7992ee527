"""MemoryService behaviour, identical on Qdrant Edge (embedded) and the Qdrant server path."""

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import NotFound, ValidationError
from core.memory.service import MemoryFilters, parse_period
from core.memory.types import Scope
from tests.memory_fixtures import open_service


@pytest.fixture(scope="module", params=["edge", "server"])
def env(request, tmp_path_factory):
    service, users, close = open_service(request.param, tmp_path_factory.mktemp(request.param))
    yield service, users
    close()


@pytest.fixture
def svc(env):
    return env[0]


@pytest.fixture
def owner(env):
    import uuid

    return env[1].create(f"u{uuid.uuid4().hex[:10]}")


def test_add_get_update_delete_with_history(svc, owner):
    scope = Scope.personal(owner.id)
    rec = svc.add(scope, "  Prefers   window seats on flights ", type="preference", importance=4,
                  tags=["travel"], people=[], source="ui")
    assert rec.text == "Prefers window seats on flights" and rec.type == "preference" and rec.importance == 4
    assert svc.get(owner.id, rec.id) == rec
    updated = svc.update(owner.id, rec.id, text="Prefers aisle seats on long flights", tags=["travel", "flights"])
    assert updated.text == "Prefers aisle seats on long flights" and updated.tags == ("travel", "flights")
    assert updated.importance == 4  # untouched fields keep their values
    svc.delete(owner.id, rec.id)
    with pytest.raises(NotFound):
        svc.get(owner.id, rec.id)
    events = [(e.event, e.old_memory, e.new_memory, e.source) for e in svc.history(owner.id, rec.id)]
    assert events == [
        ("ADD", None, "Prefers window seats on flights", "ui"),
        ("UPDATE", "Prefers window seats on flights", "Prefers aisle seats on long flights", "ui"),
        ("DELETE", "Prefers aisle seats on long flights", None, "ui"),
    ]


def test_revert_to_an_earlier_text_and_undelete(svc, owner):
    scope = Scope(owner.id, "end-user-7")
    rec = svc.add(scope, "Lives in Lisbon", type="fact")
    svc.update(owner.id, rec.id, text="Lives in Porto")
    first = svc.history(owner.id, rec.id)[0]
    assert svc.revert(owner.id, rec.id, first.id).text == "Lives in Lisbon"
    svc.delete(owner.id, rec.id)
    delete_entry = svc.history(owner.id, rec.id)[-1]
    restored = svc.revert(owner.id, rec.id, delete_entry.id)
    assert restored.text == "Lives in Lisbon" and restored.user_id == "end-user-7"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"text": ""}, "text"), ({"text": "x" * 2001}, "text"), ({"type": "gossip"}, "type"),
     ({"importance": 9}, "importance"), ({"confidence": 1.5}, "confidence")],
)
def test_bad_input_is_rejected_and_nothing_stored(svc, owner, kwargs, field):
    args = {"text": "A valid memory", **kwargs}
    text = args.pop("text")
    with pytest.raises(ValidationError) as err:
        svc.add(Scope.personal(owner.id), text, **args)
    assert err.value.field == field
    assert svc.get_all(owner.id) == []


def test_unknown_or_malformed_ids_are_not_found(svc, owner):
    for bad in ("nope", "00000000-0000-0000-0000-000000000000", "' OR 1=1 --"):
        with pytest.raises(NotFound):
            svc.get(owner.id, bad)
        with pytest.raises(NotFound):
            svc.history(owner.id, bad)


def test_other_owners_ids_behave_as_missing(svc, env):
    users = env[1]
    a, b = users.create("owner-a-x"), users.create("owner-b-x")
    rec = svc.add(Scope(a.id, "shared-end-user"), "Alice's secret plan")
    svc.add(Scope(b.id, "shared-end-user"), "Bob's note")
    for op in (lambda: svc.get(b.id, rec.id), lambda: svc.update(b.id, rec.id, text="pwned"),
               lambda: svc.delete(b.id, rec.id), lambda: svc.history(b.id, rec.id)):
        with pytest.raises(NotFound):
            op()
    found = svc.search(b.id, "Alice's secret plan")
    assert [r.text for r in found] == ["Bob's note"] and found[0].owner_id == b.id
    assert svc.delete_all(b.id, user_id="shared-end-user") == 1
    assert svc.get(a.id, rec.id).text == "Alice's secret plan"


def test_search_filters_and_hybrid(svc, owner):
    scope = Scope.personal(owner.id)
    svc.add(scope, "Allergic to peanuts", type="fact", importance=5, tags=["health"])
    svc.add(scope, "Sister Ana lives in Porto", type="relationship", people=["Ana"], tags=["family"])
    svc.add(scope, "Wants to learn the cello", type="preference", importance=2, tags=["music"])
    svc.add(scope, "Car licence plate is XJ-9042", type="fact", importance=2, tags=["car"])
    top = svc.search(owner.id, "food allergy", top_k=1)
    assert top[0].text == "Allergic to peanuts" and 0 < top[0].score <= 1
    assert svc.search(owner.id, "XJ-9042", top_k=1)[0].text == "Car licence plate is XJ-9042"
    fam = svc.search(owner.id, "where does my family live", MemoryFilters(people=("Ana",)))
    assert [r.text for r in fam] == ["Sister Ana lives in Porto"]
    important = svc.search(owner.id, "anything", MemoryFilters(min_importance=5))
    assert [r.text for r in important] == ["Allergic to peanuts"]
    typed = svc.get_all(owner.id, MemoryFilters(types=("preference",)))
    assert [r.text for r in typed] == ["Wants to learn the cello"]
    assert [r.text for r in svc.by_tags(owner.id, ["music", "car"])] and all(
        set(r.tags) & {"music", "car"} for r in svc.by_tags(owner.id, ["music", "car"]))
    assert [r.text for r in svc.by_people(owner.id, ["Ana"])] == ["Sister Ana lives in Porto"]
    assert svc.search(owner.id, "cello lessons", threshold=0.99) == []
    future = datetime.now(UTC) + timedelta(days=1)
    assert svc.search(owner.id, "peanuts", MemoryFilters(created_after=future)) == []
    recent = svc.temporal_search(owner.id, "last 1 days", "peanuts", top_k=1)
    assert recent[0].text == "Allergic to peanuts"
    stats = svc.stats(owner.id)
    assert stats.total == 4 and stats.by_type == {"fact": 2, "relationship": 1, "preference": 1}
    assert ("Ana", 1) in stats.top_people and stats.oldest <= stats.newest
    with pytest.raises(ValidationError):
        svc.search(owner.id, "x", MemoryFilters(types=("gossip",)))
    with pytest.raises(ValidationError):
        svc.search(owner.id, "   ")


def test_expired_memories_are_hidden_then_cleaned(svc, owner):
    scope = Scope.personal(owner.id)
    old = svc.add(scope, "Is in Rome until Sunday", expires_at=date.today() - timedelta(days=1))
    keep = svc.add(scope, "Lives in Berlin", expires_at=date.today() + timedelta(days=30))
    assert [r.id for r in svc.get_all(owner.id)] == [keep.id]
    assert all(r.id != old.id for r in svc.search(owner.id, "Rome"))
    assert svc.cleanup_expired(owner.id) == 1
    assert svc.history(owner.id, old.id)[-1].event == "DELETE"
    assert len(svc.get_all(owner.id, include_expired=True)) == 1


def test_consolidation_merges_near_duplicates(svc, owner):
    scope = Scope.personal(owner.id)
    a = svc.add(scope, "Likes green tea", importance=4, tags=["drinks"])
    b = svc.add(scope, "Likes green tea.", importance=2, people=["Mia"])
    svc.add(scope, "Plays tennis on Sundays")
    events = svc.consolidate(scope)
    kinds = sorted(e.event for e in events)
    assert kinds == ["DELETE", "UPDATE"]
    assert {r.id for r in svc.get_all(owner.id)} >= {a.id} and b.id not in {r.id for r in svc.get_all(owner.id)}
    assert svc.get(owner.id, a.id).people == ("Mia",)


def test_eight_threads_adding_lose_nothing(svc, owner):
    scope = Scope.personal(owner.id)
    acked: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for i in range(6):
                rec = svc.add(scope, f"Thread {n} fact number {i}")
                with lock:
                    acked.append(rec.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored = {r.id for r in svc.get_all(owner.id, limit=1000)}
    assert len(acked) == 48 and set(acked) <= stored
    for mem_id in acked:
        assert [e.event for e in svc.history(owner.id, mem_id)] == ["ADD"]


def test_parse_period():
    now = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # a Wednesday
    assert parse_period("last week", now=now) == (datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
    assert parse_period("Yesterday", now=now)[0] == datetime(2026, 11, 17, tzinfo=UTC)
    assert parse_period("last month", now=now) == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    assert parse_period("last 3 days", now=now)[0] == now - timedelta(days=3)
    with pytest.raises(ValidationError, match="period"):
        parse_period("the other day", now=now)


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "get", "update", "delete", "search", "list", "history", "delete_all"]),
              st.integers(0, 2), st.integers(0, 1), st.integers(0, 50)),
    min_size=1, max_size=10,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_no_operation_ever_crosses_owners(env, ops):
    """Random owners, end-users and operations: every result belongs to the caller's owner."""
    import uuid

    svc, users = env
    owners = [users.create(f"p{uuid.uuid4().hex[:12]}").id for _ in range(3)]
    mine: dict[str, set[str]] = {o: set() for o in owners}
    for op, who, end_user, n in ops:
        owner = owners[who]
        others = {m for o, ids in mine.items() if o != owner for m in ids}
        target = sorted(others)[n % len(others)] if others and n % 2 else (sorted(mine[owner])[n % len(mine[owner])] if mine[owner] else None)
        if op == "add":
            rec = svc.add(Scope(owner, f"end{end_user}"), f"fact {n} about topic {n % 5}")
            mine[owner].add(rec.id)
        elif op in ("get", "update", "delete", "history") and target:
            foreign = target in others
            call = {
                "get": lambda: svc.get(owner, target),
                "update": lambda: svc.update(owner, target, text=f"changed {n}"),
                "delete": lambda: svc.delete(owner, target),
                "history": lambda: svc.history(owner, target),
            }[op]
            if foreign:
                with pytest.raises(NotFound):
                    call()
            else:
                result = call()
                if op == "delete":
                    mine[owner].discard(target)
                if op in ("get", "update"):
                    assert result.owner_id == owner
        elif op == "search":
            assert all(r.owner_id == owner for r in svc.search(owner, f"topic {n % 5}"))
        elif op == "list":
            assert {r.id for r in svc.get_all(owner, limit=1000)} == mine[owner]
        elif op == "delete_all":
            removed = svc.delete_all(owner, user_id=f"end{end_user}")
            mine[owner] = {r.id for r in svc.get_all(owner, limit=1000)}
            assert removed >= 0
    for owner in owners:
        assert {r.id for r in svc.get_all(owner, limit=1000)} == mine[owner]


def test_add_many_stores_all_with_history_and_searchable(svc, owner):
    scope = Scope(owner.id, "importer")
    items = [f"Imported fact {i}: favourite number is {i * 3}" for i in range(40)]
    items.append({"text": "Allergic to penicillin", "type": "fact", "importance": 5, "tags": ["health"]})
    records = svc.add_many(scope, items, batch_size=16)
    assert len(records) == 41 and len({r.id for r in records}) == 41
    assert [r.text for r in records[:2]] == items[:2]
    allergy = records[-1]
    assert svc.get(owner.id, allergy.id) == allergy
    assert allergy.importance == 5 and allergy.tags == ("health",) and allergy.user_id == "importer"
    assert [(e.event, e.source) for e in svc.history(owner.id, allergy.id)] == [("ADD", "import")]
    assert svc.count(owner.id) >= 41
    hits = svc.search(owner.id, "penicillin allergy", top_k=3)
    assert hits and hits[0].id == allergy.id


def test_add_many_rejects_a_bad_item_and_stores_none(svc, owner):
    before = svc.count(owner.id)
    with pytest.raises(ValidationError, match="#2"):
        svc.add_many(Scope.personal(owner.id), ["fine", "also fine", "   ", "never stored"])
    with pytest.raises(ValidationError, match="#1"):
        svc.add_many(Scope.personal(owner.id), ["fine", {"text": "x", "importance": 9}])
    with pytest.raises(ValidationError):
        svc.add_many(Scope.personal(owner.id), "one string, not a list")
    assert svc.count(owner.id) == before


def test_acknowledged_adds_survive_sigkill(tmp_path):
    """A process adding memories is killed mid-ingest; every add that returned is there after."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    from pathlib import Path

    from tests.conftest import REPO

    root = tmp_path / "crash"
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from core.users import UserStore
        from core.memory.types import Scope
        from tests.memory_fixtures import open_service
        svc, users, close = open_service("edge", Path(sys.argv[1]))
        owner = users.create("crashy")
        print(owner.id, flush=True)
        i = 0
        while True:
            rec = svc.add(Scope.personal(owner.id), f"Crash test fact number {i}")
            print(rec.id, flush=True)
            i += 1
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MEM0_TELEMETRY": "False"}
    child = subprocess.Popen([sys.executable, "-c", code, str(root)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while len(lines) < 61 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        lines.extend(line.strip() for line in child.stdout if line.strip())
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    owner_id, acked = lines[0], lines[1:]
    assert len(acked) >= 60

    service, _users, close = open_service("edge", Path(root))
    try:
        stored = {r.id for r in service.get_all(owner_id, limit=10_000)}
        assert [a for a in acked if a not in stored] == []
        for mem_id in acked:
            assert [e.event for e in service.history(owner_id, mem_id)] == ["ADD"]
    finally:
        close()


def test_undo_add_update_delete_events(svc, owner):
    from core.memory.types import MemoryEvent

    scope = Scope.personal(owner.id)
    rec = svc.add(scope, "Drinks oat milk", type="preference")
    svc.update(owner.id, rec.id, text="Drinks soy milk")
    back = svc.undo(owner.id, MemoryEvent("UPDATE", rec.id, "Drinks soy milk", previous_text="Drinks oat milk"))
    assert back.text == "Drinks oat milk"
    svc.delete(owner.id, rec.id)
    restored = svc.undo(owner.id, MemoryEvent("DELETE", rec.id, None, previous_text="Drinks oat milk"))
    assert restored.text == "Drinks oat milk" and svc.get(owner.id, restored.id)
    assert svc.undo(owner.id, MemoryEvent("ADD", restored.id, restored.text)) is None
    with pytest.raises(NotFound):
        svc.get(owner.id, restored.id)
    with pytest.raises(ValidationError):
        svc.undo(owner.id, MemoryEvent("NONE", None, "x"))


def test_counts_are_exact_and_scoped(svc, owner, env):
    other = env[1].create(f"n{__import__('uuid').uuid4().hex[:10]}")
    svc.add_many(Scope.personal(owner.id), ["one", {"text": "two", "type": "fact"}, {"text": "three", "type": "fact"}])
    svc.add(Scope.personal(other.id), "elsewhere", type="fact")
    assert svc.count(owner.id) == 3
    assert svc.count(owner.id, type="fact") == 2
    assert svc.count(other.id) == 1
    assert svc.count_by_type()["fact"] >= 3 and svc.count() >= 4


def test_pages_stats_and_entities_come_from_the_engine_and_agree(svc, owner):
    # A batch import gives every memory the same created_at: pages must still be stable and disjoint.
    scope = Scope(owner.id, "pager")
    items = [{"text": f"Paged fact number {i}", "tags": ["even" if i % 2 == 0 else "odd"],
              "people": ["Ana"] if i % 3 == 0 else []} for i in range(25)]
    svc.add_many(scope, items)
    svc.add(Scope(owner.id, "pager", agent_id="helper"), "A later note by an agent", type="fact")
    everything = svc.get_all(owner.id, MemoryFilters(user_id="pager"), limit=1000)
    pages = [svc.get_all(owner.id, MemoryFilters(user_id="pager"), limit=7, offset=o) for o in range(0, 28, 7)]
    assert [r.id for page in pages for r in page] == [r.id for r in everything] and len(everything) == 26
    assert everything[0].text == "A later note by an agent"  # newest first, then ties by id
    assert svc.count_matching(owner.id, MemoryFilters(user_id="pager")) == 26
    stats = svc.stats(owner.id, user_id="pager")
    assert stats.total == 26 and stats.by_type == {"note": 25, "fact": 1}
    assert stats.top_tags == [("even", 13), ("odd", 12)] and stats.top_people == [("Ana", 9)]
    assert stats.oldest == everything[-1].created_at and stats.newest == everything[0].created_at
    entities = {(e.kind, e.name): e.total for e in svc.entities(owner.id)}
    assert entities[("user", "pager")] == 26 and entities[("agent", "helper")] == 1


def test_search_can_say_nothing_matches_and_marks_weak_matches(svc, owner):
    scope = Scope.personal(owner.id)
    for text in ["My sister is called Rita Moreno", "Likes green tea", "Plays the cello on Sundays",
                 "Drives a blue Volvo", "Allergic to peanuts"]:
        svc.add(scope, text)
    assert not svc.search_relevant(owner.id, "zzqx nothing")
    assert not svc.search_relevant(owner.id, "asdf qwer")
    found = svc.search_relevant(owner.id, "Rita")
    assert [m.text for m in found.matches] == ["My sister is called Rita Moreno"]
    assert found.weak == []
    music = svc.search_relevant(owner.id, "music")  # related, not a clear match
    assert [m.text for m in music.weak] == ["Plays the cello on Sundays"] and music.matches == []
    other = svc.search_relevant(owner.id, "Rita", MemoryFilters(user_id="someone-else"))
    assert not other


def test_recently_deleted_memories_come_back_exactly_under_their_own_id(svc, owner):
    scope = Scope(owner.id, "end-user-3")
    tea = svc.add(scope, "Likes green tea", type="preference", importance=4, tags=["drinks"], people=["Ana"])
    cello = svc.add(scope, "Plays the cello", type="fact")
    kept = svc.add(scope, "Drives a blue Volvo")
    svc.delete(owner.id, tea.id)
    svc.delete(owner.id, cello.id)
    deleted = svc.recently_deleted(owner.id)
    assert [(d.memory_id, d.text, d.user_id, d.exact) for d in deleted] == [
        (cello.id, "Plays the cello", "end-user-3", True), (tea.id, "Likes green tea", "end-user-3", True)]
    back = svc.restore_deleted(owner.id, tea.id)
    assert (back.id, back.text, back.type, back.importance, back.tags, back.people, back.user_id) == (
        tea.id, "Likes green tea", "preference", 4, ("drinks",), ("Ana",), "end-user-3")
    assert svc.get(owner.id, tea.id).created_at == tea.created_at
    assert [d.memory_id for d in svc.recently_deleted(owner.id)] == [cello.id]
    with pytest.raises(ValidationError, match="not deleted"):
        svc.restore_deleted(owner.id, kept.id)
    with pytest.raises(ValidationError, match="not deleted"):
        svc.restore_deleted(owner.id, tea.id)


def test_another_owner_cannot_see_or_restore_my_deleted_memories(env, svc, owner):
    import uuid

    rec = svc.add(Scope.personal(owner.id), "Secret hobby: falconry")
    svc.delete(owner.id, rec.id)
    other = env[1].create(f"u{uuid.uuid4().hex[:10]}")
    assert svc.recently_deleted(other.id) == []
    with pytest.raises(NotFound):
        svc.restore_deleted(other.id, rec.id)
    assert [d.memory_id for d in svc.recently_deleted(owner.id)] == [rec.id]


def test_a_deletion_recorded_without_a_snapshot_restores_from_history_text(env, svc, owner):
    from sqlalchemy import update

    from core.schema import memory_history

    rec = svc.add(Scope(owner.id, "end-user-9"), "Birthday is on 3 March", type="fact", tags=["dates"])
    svc.update(owner.id, rec.id, text="Birthday is on 4 March")
    svc.delete(owner.id, rec.id)
    with svc.history_store._engine.begin() as conn:  # as a deletion from before migration 0007 looks
        conn.execute(update(memory_history).where(memory_history.c.memory_id == rec.id).values(snapshot=None))
    (deleted,) = [d for d in svc.recently_deleted(owner.id) if d.memory_id == rec.id]
    assert deleted.text == "Birthday is on 4 March" and not deleted.exact
    back = svc.restore_deleted(owner.id, rec.id)
    assert (back.id, back.text, back.user_id, back.created_at) == (rec.id, "Birthday is on 4 March", "end-user-9",
                                                                   rec.created_at)


def test_history_lists_what_is_still_deleted_on_both_databases(engine):
    """The query behind "Recently deleted", on SQLite and PostgreSQL, through mem0's history interface."""
    from core.memory.history import SqlHistory, attribution, deleting

    history = SqlHistory(engine)
    mine, theirs = Scope.personal("owner-a"), Scope.personal("owner-b")
    with attribution(mine, "ui"):
        history.add_history("m1", None, "Likes tea", "ADD")
        history.add_history("m2", None, "Plays chess", "ADD")
        with deleting({"id": "m1", "memory": "Likes tea", "type": "preference"}):
            history.add_history("m1", "Likes tea", None, "DELETE", is_deleted=1)
        history.add_history("m2", "Plays chess", None, "DELETE", is_deleted=1)
        history.add_history("m2", None, "Plays chess", "ADD")  # restored: no longer deleted
    with attribution(theirs, "ui"):
        history.add_history("m3", "Secret", None, "DELETE", is_deleted=1)
    (entry,) = history.deleted_for_owner("owner-a")
    assert (entry.memory_id, entry.old_memory, entry.snapshot) == (
        "m1", "Likes tea", {"id": "m1", "memory": "Likes tea", "type": "preference"})
    assert [e.memory_id for e in history.deleted_for_owner("owner-b")] == ["m3"]
    assert history.for_memory("m2")[1].snapshot is None  # only DELETE rows inside deleting() keep one


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_expired_memories_are_left_out_by_the_engine_and_take_no_result_slot(backend, tmp_path):
    """Expiry is part of the engine's filter (issue 15.4): with 30 expired near-copies of the best
    match, top-3 still returns 3 live memories, and cleanup finds the expired ones in the engine."""
    from datetime import date

    from core.memory.types import Scope
    from tests.memory_fixtures import open_service

    memory, users, close = open_service(backend, tmp_path / backend)
    try:
        owner = users.create(f"exp-{backend}")
        scope = Scope.personal(owner.id)
        memory.add_many(scope, [{"text": f"Trip to Kyoto in spring number {i}", "expires_at": date(2026, 1, 1)}
                                for i in range(30)])
        live = memory.add_many(scope, ["Loves Kyoto in autumn", "Visited Kyoto temples", "Dreams of Kyoto trains",
                                       "Likes green tea"])
        hits = memory.search(owner.id, "Trip to Kyoto in spring", top_k=3)
        assert len(hits) == 3 and {h.id for h in hits} <= {r.id for r in live}
        similar = memory.similar_batch(scope, ["Trip to Kyoto in spring"], k=3)[0]
        assert len(similar) == 3 and all("spring" not in r.text for r in similar)
        assert memory.cleanup_expired(owner.id) == 30
        assert memory.count(owner.id) == 4
    finally:
        close()
