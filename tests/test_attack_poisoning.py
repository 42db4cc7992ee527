"""Threat model: one account stores something that breaks the shared memory store for everyone.

Attacker: a plain user, through any way in (the REST API, the Memories page, an agent tool, an
import). Goal: store a memory the engine accepts but cannot read back — metadata nested ~130
levels deep is stored by Qdrant Edge and then cannot be decoded, and the index rebuild that runs
after writes decodes every payload of the shard; qdrant-client recurses in Python and fails at
~500 levels — so that every other account's writes fail or are half applied, ``/health`` still
says ok, and the attacker's own data can be neither exported nor erased.

What must hold:

* hostile structures are refused by ``MemoryService`` itself, whichever way they come in, on both
  backends, and nothing is stored;
* on a shard damaged before those bounds existed, every account's writes still succeed completely
  (vector and history), the failing rebuild shows in the health report, and the damaged record's
  owner can still list, export and erase (after which the rebuild works again);
* a write that fails half-way (the history database goes away between the vector and its history
  row) leaves nothing half done: no vector without history, no change without its record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models
from sqlalchemy import text

from core.api.app import create_app
from core.config import load_settings
from core.db import make_engine, migrate, sqlite_url
from core.errors import StoreUnavailable, ValidationError
from core.memory.engine import build_memory_service
from core.memory.service import MemoryService
from core.memory.types import NewMemory, Scope
from core.runtime import Runtime, open_runtime
from core.storage import Storage
from tests.test_api import account, api_settings, http, serve


def nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value  # type: ignore[return-value]


def open_memory(backend: str, root: Path) -> tuple[MemoryService, object]:
    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(sqlite_url(root / "optimus.db"))
    migrate(engine)
    mode = "server" if backend == "server" else "embedded"
    storage = Storage(mode, mode, engine, root, root / "vectors" if mode == "embedded" else None,
                      ":memory:" if mode == "server" else None)
    return build_memory_service(load_settings(embedder_backend="onnx"), storage), engine


@pytest.fixture(params=["edge", "server"])
def memory(request, tmp_path) -> Iterator[tuple[MemoryService, object]]:
    service, engine = open_memory(request.param, tmp_path / request.param)
    try:
        yield service, engine
    finally:
        if request.param == "edge":
            service.store.close()
        engine.dispose()


# ------------------------------------------------------------------ refused at every way in
HOSTILE = [
    ("metadata 130 deep", {"metadata": {"m": nested(130)}}, "metadata"),
    ("metadata 500 deep", {"metadata": nested(500)}, "metadata"),
    ("metadata 300 keys", {"metadata": {f"k{i}": i for i in range(300)}}, "metadata"),
    ("metadata 40 KB", {"metadata": {"k": "v" * 40_000}}, "metadata"),
    ("metadata 10**20", {"metadata": {"k": 10**20}}, "metadata.k"),
    ("metadata NaN", {"metadata": {"k": float("nan")}}, "metadata.k"),
    ("metadata key NUL", {"metadata": {"a\x00b": 1}}, "metadata"),
    ("tag NUL", {"tags": ["a\x00b"]}, "tags"),
    ("person surrogate", {"people": ["Ana\ud800"]}, "people"),
    ("entity of 5000 chars", {"entities": ["x" * 5000]}, "entities"),
    ("400 tags", {"tags": [f"t{i}" for i in range(400)]}, "tags"),
]


@pytest.mark.parametrize(("name", "fields", "field"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_structures_are_refused_whichever_way_they_come_in(memory, name, fields, field):
    svc, _ = memory
    owner = f"o{uuid.uuid4().hex[:12]}"
    kept = svc.add(Scope.personal(owner), "A memory that must stay as it is", tags=["keep"])
    ways_in = {
        "page or agent tool (add)": lambda: svc.add(Scope.personal(owner), "hostile", **fields),
        "import (add_many)": lambda: svc.add_many(Scope.personal(owner), [NewMemory(text="fine"),
                                                                          {"text": "hostile", **fields}]),
        "edit (update)": lambda: svc.update(owner, kept.id, **fields),
    }
    for way, call in ways_in.items():
        with pytest.raises(ValidationError) as err:
            call()
        assert err.value.field and err.value.field.startswith(field.split(".")[0]), (way, err.value.field)
    assert svc.get_all(owner) == [kept] and svc.get(owner, kept.id) == kept
    assert [e.event for e in svc.history(owner, kept.id)] == ["ADD"]


def test_ids_that_cannot_be_stored_or_seen_are_refused(memory):
    svc, _ = memory
    owner = f"o{uuid.uuid4().hex[:12]}"
    for scope in (Scope(owner, "a\x00b"), Scope(owner, "\u200b\u200b"), Scope(owner, "x" * 201),
                  Scope(owner, "ok", agent_id="bad\ud800"), Scope(owner, "ok", run_id=" ")):
        with pytest.raises(ValidationError):
            svc.add(scope, "hostile scope")
        with pytest.raises(ValidationError):
            svc.add_many(scope, ["hostile scope"])
    assert svc.count(owner) == 0


# ------------------------------------------------------------------ a shard damaged before the bounds
@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[Runtime]:
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("poisoned")))
    try:
        yield rt
    finally:
        rt.close()


def _filler(store, owner: str, count: int, rng: np.random.Generator) -> None:
    now = datetime.now(UTC).isoformat()
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        vectors = rng.standard_normal((n, 384)).astype(np.float32)
        payloads = [{"owner_id": owner, "user_id": owner, "data": f"filler {start + i}", "type": "note",
                     "created_at": now, "updated_at": now} for i in range(n)]
        store.insert(vectors=list(vectors), payloads=payloads, ids=[str(uuid.uuid4()) for _ in range(n)])


def test_a_damaged_shard_never_fails_another_accounts_write_and_its_owner_can_still_leave(runtime):
    store = runtime.memory.store
    attacker_id, attacker_key = account(runtime)
    victim_id, victim_key = account(runtime)
    rng = np.random.default_rng(7)
    with serve(create_app(runtime)) as url:
        with http(url, attacker_key) as c:
            good = c.post("/v1/optimus/memories/", json={"text": "The attacker's ordinary memory"}).json()
        # What a build without limits stored: a payload Edge cannot decode again.
        now = datetime.now(UTC).isoformat()
        damaged = str(uuid.uuid4())
        store.insert(vectors=[rng.standard_normal(384).astype(np.float32)], ids=[damaged], payloads=[{
            "owner_id": attacker_id, "user_id": attacker_id, "data": "poison", "type": "note", "created_at": now,
            "updated_at": now, "m": nested(130)}])
        # Enough other memories that the index rebuild turns the damaged segment into an index (and
        # decodes every payload in it); the rebuilds these writes trigger fail and must not matter.
        _filler(store, "filler-owner", 7_000, rng)
        threshold = store.config.optimize_after
        _filler(store, "filler-owner", threshold - 1 - store.col_info()["written_since_optimize"], rng)

        with http(url, victim_key) as c:  # this write triggers the failing rebuild
            added = c.post("/v1/optimus/memories/", json={"text": "The victim's memory"})
            assert added.status_code == 201, added.text
            memory_id = added.json()["id"]
            assert c.get(f"/v1/memories/{memory_id}/").json()["memory"] == "The victim's memory"
            assert c.put(f"/v1/memories/{memory_id}/", json={"text": "The victim's edited memory"}).status_code == 200
            assert [h["event"] for h in c.get(f"/v1/memories/{memory_id}/history/").json()] == ["ADD", "UPDATE"]
        assert store.rebuild_problem and "cannot be decoded" in store.rebuild_problem
        vector = next(c for c in runtime.health().components if c.name == "vector store")
        assert not vector.ok and "cannot be decoded" in vector.detail
        assert runtime.health().status == "degraded"

        with pytest.raises(Exception, match="decode"):  # a write that needs the damaged payload fails…
            store.update(damaged, payload={"note": "merge me"})
        with http(url, victim_key) as c:  # …and leaves the shard taking everybody else's writes
            assert c.post("/v1/optimus/memories/", json={"text": "Written after a failed write"}).status_code == 201

        with http(url, attacker_key) as c:  # the owner of the damaged record can still see and take out the rest
            assert [m["id"] for m in c.post("/v3/memories/", json={}).json()["results"]] == [good["id"]]
            assert [m["id"] for m in c.post("/v1/exports/get/", json={}).json()["memories"]] == [good["id"]]
    attacker = runtime.users.get(attacker_id)
    report = runtime.gdpr.erase(attacker, attacker_id, confirm_username=attacker.username)
    assert report.memories == 2 and store.get(damaged) is None
    store.optimize()  # the rebuild works again, and health says so
    assert store.rebuild_problem is None
    assert next(c for c in runtime.health().components if c.name == "vector store").ok
    assert runtime.memory.get(victim_id, memory_id).text == "The victim's edited memory"


def test_server_mode_record_nested_500_deep_breaks_neither_listing_nor_erasure(tmp_path):
    svc, engine = open_memory("server", tmp_path)
    try:
        owner = "owner-with-an-old-record"
        good = svc.add(Scope.personal(owner), "An ordinary memory")
        now = datetime.now(UTC).isoformat()
        svc.store.client.upsert(svc.store.collection_name, [models.PointStruct(
            id=str(uuid.uuid4()), vector=[0.01] * 384,
            payload={"owner_id": owner, "user_id": owner, "data": "deep", "created_at": now, "m": nested(500)})])
        assert [r.id for r in svc.get_all(owner)] == [good.id]
        assert svc.stats(owner).total == 2
        assert svc.erase_owner(owner) == 2 and svc.count(owner) == 0
    finally:
        engine.dispose()


# ------------------------------------------------------------------ a write that fails half-way
HISTORY_DOWN = "CREATE TRIGGER history_down BEFORE INSERT ON memory_history BEGIN SELECT RAISE(ABORT, 'down'); END"


def test_a_write_that_fails_half_way_leaves_nothing_half_done(memory):
    svc, engine = memory
    owner = f"o{uuid.uuid4().hex[:12]}"
    kept = svc.add(Scope.personal(owner), "Lives in Lisbon", tags=["home"])
    with engine.begin() as conn:  # the history database refuses every write from now on
        conn.execute(text(HISTORY_DOWN))
    with pytest.raises(StoreUnavailable):
        svc.add(Scope.personal(owner), "Never half stored")
    with pytest.raises(StoreUnavailable):
        svc.update(owner, kept.id, text="Lives in Porto", tags=["moved"])
    with pytest.raises(StoreUnavailable):
        svc.delete(owner, kept.id)
    assert svc.get_all(owner) == [kept] and svc.get(owner, kept.id) == kept
    assert [r.text for r in svc.search(owner, "Never half stored")] == ["Lives in Lisbon"]
    assert [e.event for e in svc.history(owner, kept.id)] == ["ADD"]
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER history_down"))
    assert svc.update(owner, kept.id, text="Lives in Porto").text == "Lives in Porto"
    assert [e.event for e in svc.history(owner, kept.id)] == ["ADD", "UPDATE"]
