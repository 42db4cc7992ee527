"""One behavioural suite, three implementations of :class:`core.memory.interface.MemoryInterface`:
the local ``MemoryService``, ``RemoteMemory`` and ``AsyncRemoteMemory`` talking to the live API
(uvicorn on loopback) over HTTP. The async client is driven from these sync tests through an
event loop running on a thread of its own.

All run against the same runtime (SQLite + Qdrant Edge + the bundled embedder); every test gets
a fresh account, so tests do not see each other's memories.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import uuid
from collections.abc import Coroutine, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from core.api.app import create_app
from core.client import AsyncRemoteMemory, RemoteMemory
from core.errors import InvalidCredentials, NotFound, PermissionDenied, RateLimited, StoreUnavailable, ValidationError
from core.memory.interface import MEMORY_METHODS, MemoryInterface
from core.memory.service import MemoryFilters, MemoryService
from core.memory.types import NewMemory, Scope
from core.runtime import Runtime, open_runtime
from tests.test_api import account, api_settings, serve


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[Runtime]:
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("contract")))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def api_url(runtime) -> Iterator[str]:
    with serve(create_app(runtime)) as url:
        yield url


# ------------------------------------------------------------------ the async client from sync tests
@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on its own thread for the whole module."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.call_soon_threadsafe(running.stop)
        thread.join(30)
        running.close()


def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)


class OnLoop:
    """An ``AsyncRemoteMemory`` driven from sync code: each coroutine method runs on ``loop``."""

    def __init__(self, target: AsyncRemoteMemory, loop: asyncio.AbstractEventLoop) -> None:
        self.target, self.loop = target, loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *args, **kwargs: on_loop(self.loop, attr(*args, **kwargs))


@contextlib.contextmanager
def remote(kind: str, loop: asyncio.AbstractEventLoop, url: str, key: str, **options: Any) -> Iterator[Any]:
    """A sync (``RemoteMemory``) or async (``AsyncRemoteMemory`` entered with ``async with``) client."""
    if kind == "sync":
        with RemoteMemory(url, key, **options) as client:
            yield client
        return
    client = AsyncRemoteMemory(url, key, **options)
    on_loop(loop, client.__aenter__())
    try:
        yield OnLoop(client, loop)
    finally:
        on_loop(loop, client.__aexit__(None, None, None))


@pytest.fixture(params=["local", "sync", "async"])
def memory(request, runtime) -> Iterator[tuple[MemoryInterface, str]]:
    """(implementation, owner id of a fresh account)."""
    owner_id, key = account(runtime)
    if request.param == "local":
        yield runtime.memory, owner_id
        return
    with remote(request.param, request.getfixturevalue("loop"), request.getfixturevalue("api_url"), key,
                timeout=60) as client:
        yield client, owner_id


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("cls", [MemoryService, RemoteMemory, AsyncRemoteMemory])
@pytest.mark.parametrize("name", MEMORY_METHODS)
def test_every_method_has_exactly_the_interfaces_parameters(cls, name):
    contract, method = getattr(MemoryInterface, name), getattr(cls, name)
    assert _parameters(method) == _parameters(contract)
    assert inspect.iscoroutinefunction(method) is (cls is AsyncRemoteMemory)
    if cls is not MemoryService:  # the clients take their contract from the interface
        assert method.__doc__ == contract.__doc__
        assert inspect.signature(method).return_annotation == inspect.signature(contract).return_annotation


def test_every_implementation_passes_the_runtime_protocol_check(memory):
    impl, owner = memory
    assert isinstance(impl.target if isinstance(impl, OnLoop) else impl, MemoryInterface)


def test_add_then_get_round_trips_every_field(memory):
    m, owner = memory
    scope = Scope(owner, "end-user", agent_id="planner", run_id="run-7")
    added = m.add(scope, "  Sister   Ana lives in Porto ", type="relationship", importance=4, confidence=0.9,
                  entities=["Porto"], people=["Ana"], tags=["family"], expires_at=date(2099, 1, 1),
                  metadata={"source_app": "crm", "n": 3})
    got = m.get(owner, added.id)
    assert got == added
    assert (got.text, got.type, got.importance, got.confidence) == ("Sister Ana lives in Porto", "relationship", 4, 0.9)
    assert (got.entities, got.people, got.tags) == (("Porto",), ("Ana",), ("family",))
    assert got.expires_at == date(2099, 1, 1) and got.metadata == {"source_app": "crm", "n": 3}
    assert (got.owner_id, got.user_id, got.agent_id, got.run_id) == (owner, "end-user", "planner", "run-7")


@pytest.mark.parametrize("bad", [
    {"text": "   "}, {"text": "x" * 2001}, {"text": "ok", "importance": 9}, {"text": "ok", "type": "gossip"},
    {"text": "ok", "confidence": 1.5},
])
def test_invalid_memories_are_refused(memory, bad):
    m, owner = memory
    with pytest.raises(ValidationError):
        m.add(Scope.personal(owner), **bad)
    assert m.get_all(owner) == []


def test_unknown_and_foreign_ids_are_not_found(memory, runtime):
    m, owner = memory
    other_owner = account(runtime)[0]
    foreign = runtime.memory.add(Scope.personal(other_owner), "someone else's memory")
    for memory_id in (str(uuid.uuid4()), "not-an-id", foreign.id):
        with pytest.raises(NotFound):
            m.get(owner, memory_id)
        with pytest.raises(NotFound):
            m.update(owner, memory_id, text="taken over")
        with pytest.raises(NotFound):
            m.delete(owner, memory_id)
        with pytest.raises(NotFound):
            m.history(owner, memory_id)
    assert runtime.memory.get(other_owner, foreign.id).text == "someone else's memory"


def test_get_all_filters_orders_and_pages(memory):
    m, owner = memory
    made = []
    for i in range(5):
        made.append(m.add(Scope(owner, "u1" if i % 2 == 0 else "u2"), f"fact number {i}",
                          type="fact" if i < 3 else "preference", importance=i + 1, tags=[f"t{i % 2}"]))
    newest_first = [r.id for r in reversed(made)]
    assert [r.id for r in m.get_all(owner)] == newest_first
    assert [r.id for r in m.get_all(owner, limit=2)] == newest_first[:2]
    assert [r.id for r in m.get_all(owner, limit=2, offset=2)] == newest_first[2:4]
    assert [r.id for r in m.get_all(owner, limit=2, offset=3)] == newest_first[3:5]  # not page-aligned
    assert {r.text for r in m.get_all(owner, MemoryFilters(user_id="u2"))} == {"fact number 1", "fact number 3"}
    assert {r.text for r in m.get_all(owner, MemoryFilters(types=("preference",)))} == {
        "fact number 3", "fact number 4"}
    assert {r.text for r in m.get_all(owner, MemoryFilters(tags=("t1",)))} == {"fact number 1", "fact number 3"}
    ranged = m.get_all(owner, MemoryFilters(min_importance=2, max_importance=3))
    assert {r.importance for r in ranged} == {2, 3}
    assert m.get_all(owner, MemoryFilters(created_after=datetime.now(UTC) + timedelta(days=1))) == []


def test_expired_memories_are_hidden_unless_asked_for(memory):
    m, owner = memory
    gone = m.add(Scope.personal(owner), "Trip to Lisbon next week", expires_at=date.today() - timedelta(days=2))
    live = m.add(Scope.personal(owner), "Lives in Berlin")
    assert [r.id for r in m.get_all(owner)] == [live.id]
    assert {r.id for r in m.get_all(owner, include_expired=True)} == {gone.id, live.id}
    assert gone.id not in [r.id for r in m.search(owner, "Lisbon trip")]


def test_metadata_filters_match_exact_values(memory):
    m, owner = memory
    crm = m.add(Scope.personal(owner), "Customer prefers email", metadata={"source_app": "crm"})
    m.add(Scope.personal(owner), "Customer prefers phone", metadata={"source_app": "helpdesk"})
    assert [r.id for r in m.get_all(owner, MemoryFilters(metadata={"source_app": "crm"}))] == [crm.id]
    hits = m.search(owner, "how does the customer like to be contacted", MemoryFilters(metadata={"source_app": "crm"}))
    assert [r.id for r in hits] == [crm.id]


def test_update_changes_only_what_is_given_and_is_recorded(memory):
    m, owner = memory
    rec = m.add(Scope.personal(owner), "Works at Acme", tags=["work"], expires_at=date(2099, 1, 1),
                metadata={"a": 1})
    updated = m.update(owner, rec.id, text="Works at Globex", importance=5, metadata={"b": 2})
    assert (updated.id, updated.text, updated.importance, updated.tags) == (rec.id, "Works at Globex", 5, ("work",))
    assert updated.expires_at == date(2099, 1, 1) and updated.metadata == {"a": 1, "b": 2}
    cleared = m.update(owner, rec.id, expires_at=None)
    assert cleared.expires_at is None and cleared.text == "Works at Globex"
    assert m.get(owner, rec.id) == cleared
    history = m.history(owner, rec.id)
    assert [e.event for e in history] == ["ADD", "UPDATE", "UPDATE"]
    assert (history[1].old_memory, history[1].new_memory) == ("Works at Acme", "Works at Globex")
    assert all(e.memory_id == rec.id and e.owner_id == owner for e in history)
    with pytest.raises(ValidationError):
        m.update(owner, rec.id, importance=0)


def test_delete_keeps_history_and_revert_brings_memories_back(memory):
    m, owner = memory
    rec = m.add(Scope(owner, "u1"), "Has a cat named Miso")
    m.update(owner, rec.id, text="Has two cats")
    first = m.history(owner, rec.id)[0]
    reverted = m.revert(owner, rec.id, first.id)
    assert (reverted.id, reverted.text) == (rec.id, "Has a cat named Miso")
    m.delete(owner, rec.id)
    with pytest.raises(NotFound):
        m.get(owner, rec.id)
    with pytest.raises(NotFound):
        m.delete(owner, rec.id)
    history = m.history(owner, rec.id)
    assert [e.event for e in history] == ["ADD", "UPDATE", "UPDATE", "DELETE"]
    restored = m.revert(owner, rec.id, history[-1].id)
    assert restored.id != rec.id and restored.text == "Has a cat named Miso" and restored.user_id == "u1"
    with pytest.raises(NotFound):
        m.revert(owner, rec.id, str(uuid.uuid4()))


def test_delete_all_counts_and_respects_the_scope(memory):
    m, owner = memory
    for text in ("one", "two", "three"):
        m.add(Scope(owner, "u1"), f"memory {text}")
    m.add(Scope(owner, "u2"), "memory four")
    m.add(Scope(owner, "u2", agent_id="bot"), "memory five")
    assert m.delete_all(owner, user_id="u1") == 3
    assert m.delete_all(owner, agent_id="bot") == 1
    assert [r.text for r in m.get_all(owner)] == ["memory four"]
    assert m.delete_all(owner) == 1
    assert m.get_all(owner) == []


def test_search_ranks_scores_and_filters(memory):
    m, owner = memory
    bike = m.add(Scope(owner, "u1"), "I keep my bicycle in the garden shed")
    m.add(Scope(owner, "u1"), "My favourite food is ramen")
    m.add(Scope(owner, "u2"), "The bicycle is red")
    hits = m.search(owner, "where is the bike stored?", MemoryFilters(user_id="u1"), top_k=2)
    assert hits[0].id == bike.id and len(hits) == 2
    assert all(h.score is not None and -1.0 <= h.score <= 1.0 for h in hits)
    assert hits[0].score > hits[1].score
    assert [h.id for h in m.search(owner, "bike storage", MemoryFilters(user_id="u1"), top_k=1)] == [bike.id]
    strict = m.search(owner, "where is the bike stored?", threshold=0.99)
    assert strict == []
    keyword = m.search(owner, "ramen", mode="keyword")
    assert [h.text for h in keyword] == ["My favourite food is ramen"]
    assert {h.user_id for h in m.search(owner, "bicycle", top_k=10)} == {"u1", "u2"}
    with pytest.raises(ValidationError):
        m.search(owner, "   ")
    with pytest.raises(ValidationError):
        m.search(owner, "bike", top_k=0)


def test_temporal_tag_and_people_search(memory):
    m, owner = memory
    ana = m.add(Scope(owner, "u1"), "Ana loves hiking", people=["Ana"], tags=["hobby"])
    ben = m.add(Scope(owner, "u1"), "Ben plays chess", people=["Ben"], tags=["hobby", "games"])
    m.add(Scope(owner, "u2"), "Ana moved to Porto", people=["Ana"], tags=["family"])
    assert {r.id for r in m.temporal_search(owner, "today", filters=MemoryFilters(user_id="u1"))} == {ana.id, ben.id}
    assert m.temporal_search(owner, "today", "hiking in the mountains", MemoryFilters(user_id="u1"), top_k=1)[0].id \
        == ana.id
    long_ago = (datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 2, 1, tzinfo=UTC))
    assert m.temporal_search(owner, long_ago) == []
    assert len(m.temporal_search(owner, (datetime.now(UTC) - timedelta(hours=1), None))) == 3
    with pytest.raises(ValidationError) as err:
        m.temporal_search(owner, "the other day")
    assert err.value.field == "when"
    assert {r.id for r in m.by_tags(owner, ["games"])} == {ben.id}
    assert {r.id for r in m.by_tags(owner, ["hobby"], user_id="u1")} == {ana.id, ben.id}
    assert {r.text for r in m.by_people(owner, ["Ana"])} == {"Ana loves hiking", "Ana moved to Porto"}
    assert [r.id for r in m.by_people(owner, ["Ana"], user_id="u1")] == [ana.id]


def test_stats_summarise_the_account(memory):
    m, owner = memory
    m.add(Scope(owner, "u1"), "Likes tea", type="preference", tags=["food"], people=["Ana"])
    m.add(Scope(owner, "u1"), "Likes coffee", type="preference", tags=["food"])
    m.add(Scope(owner, "u2"), "Born in 1990", type="fact", tags=["bio"])
    stats = m.stats(owner)
    assert (stats.total, stats.by_type, stats.user_ids) == (3, {"preference": 2, "fact": 1}, ["u1", "u2"])
    assert stats.top_tags[0] == ("food", 2) and stats.top_people == [("Ana", 1)]
    assert stats.tags == [("food", 2), ("bio", 1)] and stats.people == [("Ana", 1)]  # every one in use
    assert stats.oldest <= stats.newest
    assert m.stats(owner, user_id="u2").total == 1


def test_add_many_stores_all_or_nothing(memory):
    m, owner = memory
    items = ["plain text memory", NewMemory(text="typed memory", type="fact", tags=["x"]),
             {"text": "dict memory", "importance": 5}]
    saved = m.add_many(Scope(owner, "bulk"), items)
    assert [r.text for r in saved] == ["plain text memory", "typed memory", "dict memory"]
    assert [(r.type, r.importance, r.user_id) for r in saved] == [("note", 3, "bulk"), ("fact", 3, "bulk"),
                                                                   ("note", 5, "bulk")]
    assert {r.id for r in m.get_all(owner)} == {r.id for r in saved}
    with pytest.raises(ValidationError, match="#1"):
        m.add_many(Scope(owner, "bulk"), ["fine", {"text": "bad", "importance": 42}, "also fine"])
    with pytest.raises(ValidationError):
        m.add_many(Scope(owner, "bulk"), ["fine", "   "])
    assert len(m.get_all(owner)) == 3  # nothing from the failed batches


# ------------------------------------------------------------------ the clients only: keys and errors over HTTP
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_remote_memory_acts_for_its_own_account_only(kind, loop, api_url, runtime):
    owner_id, key = account(runtime)
    other_id, _ = account(runtime)
    with remote(kind, loop, api_url, key) as client:
        assert client.owner_id == owner_id and client.ping()["username"].startswith("u")
        with pytest.raises(PermissionDenied):
            client.add(Scope.personal(other_id), "not mine to write")
        with pytest.raises(PermissionDenied):
            client.get_all(other_id)
    assert runtime.memory.get_all(other_id) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_remote_memory_maps_http_failures_to_our_errors(kind, loop, api_url, runtime):
    with pytest.raises(InvalidCredentials), remote(kind, loop, api_url, "om_" + "z" * 43) as forged:
        forged.get_all("anyone")  # the async client already refuses the key on `async with`
    with pytest.raises(StoreUnavailable, match="unreachable"), \
            remote(kind, loop, f"http://127.0.0.1:{_closed_port()}", "om_x", timeout=5) as nowhere:
        nowhere.ping()

    owner_id, key = account(runtime)
    limited = create_app(runtime, settings=runtime.settings.model_copy(update={"api_rate_limit_per_minute": 2}))
    with serve(limited) as url, remote(kind, loop, url, key) as client:
        client.get_all(owner_id)  # the owner lookup (ping) is the first request
        with pytest.raises(RateLimited) as err:
            client.get_all(owner_id)
        assert err.value.retry_after >= 1
    with remote(kind, loop, api_url, key) as client:
        with pytest.raises(ValidationError) as err:
            client.search(owner_id, "x", top_k=5000)
        assert err.value.field == "top_k"
        with pytest.raises(NotFound):
            client.get(owner_id, str(uuid.uuid4()))


def broken_proxy() -> FastAPI:
    """What may stand in front of a down API: the ping passes, then HTML pages (502, or 200 from a portal)."""
    app = FastAPI()

    @app.get("/v1/ping/")
    def ping() -> dict[str, str]:
        return {"owner_id": "someone", "username": "someone"}

    @app.get("/v1/memories/{memory_id}/")
    def portal(memory_id: str) -> HTMLResponse:  # a login portal answering 200 with a page
        return HTMLResponse("<html><body>Sign in to the network</body></html>")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    def down(path: str) -> HTMLResponse:
        return HTMLResponse("<html><body>502 Bad Gateway" + "<p>upstream</p>" * 500 + "</body></html>", status_code=502)

    return app


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_server_failures_are_store_unavailable(kind, loop):
    with serve(broken_proxy()) as url, remote(kind, loop, url, "om_x") as client:
        with pytest.raises(StoreUnavailable, match="502"):
            client.get_all("someone")
        with pytest.raises(StoreUnavailable, match="502") as err:
            client.add(Scope.personal("someone"), "anything")
        assert len(str(err.value)) < 300  # the page is not pasted into the message
        with pytest.raises(StoreUnavailable, match="without a JSON body"):
            client.get("someone", str(uuid.uuid4()))


# ------------------------------------------------------------------ the async client in its own loop
def test_async_client_serves_concurrent_tasks(api_url, runtime):
    """Tasks of one loop share a client (the first calls race to learn the owner), and two
    clients for two accounts used at the same time never see each other's memories."""
    (ana, ana_key), (ben, ben_key) = account(runtime), account(runtime)

    async def scenario() -> None:
        lazy = AsyncRemoteMemory(api_url, ana_key, timeout=60)  # not entered: the owner is asked by the calls
        try:
            assert await asyncio.gather(*(lazy.get_all(ana) for _ in range(8))) == [[]] * 8
        finally:
            await lazy.aclose()
        async with AsyncRemoteMemory(api_url, ana_key, timeout=60) as mine, \
                AsyncRemoteMemory(api_url, ben_key, timeout=60) as theirs:

            async def write(client: AsyncRemoteMemory, owner: str, user: str) -> list[str]:
                return [(await client.add(Scope(owner, user), f"{user} fact {i}")).id for i in range(4)]

            written = await asyncio.gather(write(mine, ana, "u1"), write(mine, ana, "u2"),
                                           write(theirs, ben, "u1"), mine.search(ana, "fact"))
            ana_ids, ben_ids = set(written[0] + written[1]), set(written[2])
            assert len(ana_ids) == 8 and len(ben_ids) == 4
            listed, by_user, ben_listed = await asyncio.gather(
                mine.get_all(ana), mine.get_all(ana, MemoryFilters(user_id="u2")), theirs.get_all(ben))
            assert {r.id for r in listed} == ana_ids and {r.id for r in ben_listed} == ben_ids
            assert {r.id for r in by_user} == set(written[1])
            with pytest.raises(NotFound):
                await mine.get(ana, next(iter(ben_ids)))

    asyncio.run(scenario())
    # checked through the local service, not through the client that wrote them
    assert len(runtime.memory.get_all(ana)) == 8 and len(runtime.memory.get_all(ben)) == 4


def test_async_client_refuses_a_bad_key_on_entry_and_needs_entry_for_owner_id(api_url):
    async def scenario() -> None:
        client = AsyncRemoteMemory(api_url, "om_" + "q" * 43)
        with pytest.raises(RuntimeError, match="async with"):
            _ = client.owner_id
        with pytest.raises(InvalidCredentials):
            async with client:
                pytest.fail("entered with a forged key")
        assert client._http.is_closed  # a refused entry leaves no open connections behind

    asyncio.run(scenario())
