"""Changing the embedder of a store that holds memories: the start check and ``python -m core reembed``.

Memories are written with the bundled MiniLM (384-d) through the real service, on a temp Qdrant
Edge shard and on ``QdrantClient(":memory:")``; the new embedder is mem0's OpenAI embedder talking to
an embeddings server on loopback that answers 64-d vectors (tests/embedding_stub.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit import AuditLog
from core.config import load_settings
from core.db import make_engine, migrate, sqlite_url
from core.errors import ConfigError, ProviderUnavailable
from core.memory.store_embedding import COLLECTION, JOURNAL_FILE, STAGING_DIR, edge_embedding
from core.memory.engine import build_memory_service, reembed_store
from core.memory.service import MemoryService
from core.memory.types import Scope
from core.memory.vector_server import RescoringQdrantClient, dense_size
from core.schema import memory_history
from core.storage import Storage
from core.users import UserStore
from tests.conftest import REPO
from tests.embedding_stub import EmbeddingStub

KEY = "sk-reembed-secret-51c2e8"
FACTS = ["Lives in Lisbon near the river", "Is vegetarian since 2019", "Plays the cello on Sundays",
         "Sister Ana is a nurse in Porto", "Loves jazz and bossa nova", "Works as a civil engineer",
         "Allergic to peanuts", "Drives an old green Volvo"]
N = 40  # the facts plus numbered filler


def texts() -> list[str]:
    return FACTS + [f"Note number {i} about errand {i * 7} and hobby {i * 3}" for i in range(N - len(FACTS))]


@dataclass
class Install:
    """One data dir: SQLite plus an Edge shard (``edge``) or a Qdrant client shared across restarts."""

    backend: str
    root: Path
    storage: Storage
    client: Any | None

    def open(self, settings) -> MemoryService:
        return build_memory_service(settings, self.storage, qdrant_client=self.client,
                                    audit=AuditLog(self.storage.engine))

    def close(self, service: MemoryService) -> None:
        if self.backend == "edge":
            service.store.close()  # the app stops: the shard is free for the command

    def reembed(self, settings, **options):
        lines: list[str] = []
        report = reembed_store(settings, self.storage, qdrant_client=self.client, progress=lines.append, **options)
        return report, lines

    def history_rows(self) -> int:
        with self.storage.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(memory_history)).scalar_one())


def make_install(backend: str, root: Path) -> Install:
    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(sqlite_url(root / "optimus.db"))
    migrate(engine)
    mode = "server" if backend == "server" else "embedded"
    storage = Storage(mode, mode, engine, root, root / "vectors" if mode == "embedded" else None,
                      ":memory:" if mode == "server" else None)
    return Install(backend, root, storage, RescoringQdrantClient(":memory:") if mode == "server" else None)


@pytest.fixture
def stub() -> Iterator[EmbeddingStub]:
    server = EmbeddingStub(dims=64).start()
    try:
        yield server
    finally:
        server.stop()


def local_settings():
    return load_settings(embedder_backend="onnx")


def stub_settings(stub: EmbeddingStub, **extra):
    return load_settings(embedder="openai:stub-embed", embedding_dims=stub.dims, embedder_base_url=stub.url,
                         openai_compatible_api_key=KEY, **extra)


@pytest.fixture(params=["edge", "server"])
def filled(request, tmp_path) -> Iterator[tuple[Install, str]]:
    """An install holding N memories of one person, embedded by MiniLM, with an update and a delete
    in their history; the app is stopped."""
    install = make_install(request.param, tmp_path / "install")
    service = install.open(local_settings())
    person = UserStore(install.storage.engine).create("ada")
    scope = Scope.personal(person.id)
    records = service.add_many(scope, texts())
    service.update(person.id, records[0].id, text="Lives in Lisbon near the Tagus river")
    gone = service.add(scope, "A memory deleted before the move")
    service.delete(person.id, gone.id)
    install.close(service)
    try:
        yield install, person.id
    finally:
        install.storage.engine.dispose()


def snapshot(service: MemoryService, owner: str) -> dict[str, tuple]:
    return {r.id: (r.text, r.created_at, r.updated_at, r.type, tuple(r.tags))
            for r in service.get_all(owner, limit=1000)}


def test_start_refuses_a_store_of_another_size_naming_both_numbers_and_the_command(filled, stub):
    install, _ = filled
    with pytest.raises(ConfigError) as info:
        install.open(stub_settings(stub))
    message = str(info.value)
    assert "384-d" in message and "64-d" in message and "python -m core reembed" in message
    assert "OPTIMUS_EMBEDDER=openai:stub-embed" in message and KEY not in message
    install.close(install.open(local_settings()))  # the old embedder still opens it: nothing changed


def test_start_refuses_another_model_of_the_same_size(filled, stub):
    install, _ = filled
    stub.dims = 384
    with pytest.raises(ConfigError) as info:
        install.open(stub_settings(stub))
    assert "local:all-MiniLM-L6-v2" in str(info.value) and "same size (384-d)" in str(info.value)


def test_reembed_moves_every_memory_and_a_second_run_is_a_no_op(filled, stub, caplog):
    install, owner = filled
    service = install.open(local_settings())
    before = snapshot(service, owner)
    history = {mid: service.history(owner, mid) for mid in before}
    history_rows = install.history_rows()
    install.close(service)
    assert len(before) == N

    with caplog.at_level(logging.DEBUG):
        report, lines = install.reembed(stub_settings(stub), batch_size=7)
    assert report.changed and report.memories == N and report.embedded == N
    assert stub.texts_embedded() == N and {s.authorization for s in stub.seen} == {f"Bearer {KEY}"}
    assert lines[-1].startswith(f"memories: {N}/{N} points") and "64-d" in report.summary()
    assert KEY not in caplog.text and KEY not in "\n".join(lines) and KEY not in report.summary()

    moved = install.open(stub_settings(stub))
    try:
        assert moved.count() == N
        assert snapshot(moved, owner) == before  # same ids, texts, dates and labels
        assert {mid: moved.history(owner, mid) for mid in before} == history
        assert install.history_rows() == history_rows
        assert moved.search(owner, "who plays the cello", top_k=3)[0].text == "Plays the cello on Sundays"
        keyword = moved.search(owner, "peanuts", top_k=3, mode="keyword")  # the BM25 leg came along
        assert keyword and keyword[0].text == "Allergic to peanuts"
        added = moved.add(Scope.personal(owner), "Collects vintage fountain pens")
        assert moved.search(owner, "fountain pens", top_k=1)[0].id == added.id
        moved.delete(owner, added.id)
    finally:
        install.close(moved)

    asked = len(stub.seen)
    again, _ = install.reembed(stub_settings(stub))
    assert not again.changed and "already uses openai:stub-embed (64-d)" in again.summary()
    assert len(stub.seen) == asked  # nothing was embedded again
    if install.backend == "edge":
        vectors = install.storage.vector_path
        kept = [p for p in vectors.iterdir() if p.name.startswith(f"{COLLECTION}.before-reembed-")]
        assert len(kept) == 1 and edge_embedding(kept[0]).dims == 384  # the old shard, for rollback
        assert str(kept[0]) in report.kept
        assert edge_embedding(vectors / COLLECTION).embedder == "openai:stub-embed"
        assert not (vectors / STAGING_DIR).exists() and not (vectors / JOURNAL_FILE).exists()
    else:
        client = install.client
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        target = aliases[COLLECTION]
        assert target.startswith("memories_64d_") and aliases[f"{COLLECTION}_entities"] == f"{target}_entities"
        assert {c.name for c in client.get_collections().collections} == {target, f"{target}_entities"}
        assert dense_size(client.get_collection(target)) == 64


def test_a_failed_build_changes_nothing_and_the_next_run_goes_on_from_there(filled, stub):
    install, owner = filled
    stub.fail_after = 3  # three batches of 5 embed, then the provider fails (after the client's retries)
    with pytest.raises(ProviderUnavailable) as info:
        install.reembed(stub_settings(stub), batch_size=5)
    assert "old store is unchanged" in str(info.value) and KEY not in str(info.value)
    service = install.open(local_settings())  # the app still starts on the old embedder, all there
    assert service.count() == N
    install.close(service)

    stub.fail_after, stub.seen = None, []
    report, _ = install.reembed(stub_settings(stub), batch_size=5)
    assert report.memories == N
    assert stub.texts_embedded() == N - 15  # the 15 copied before the failure were not embedded again
    moved = install.open(stub_settings(stub))
    assert moved.count() == N and moved.search(owner, "bossa nova", top_k=1)[0].text == "Loves jazz and bossa nova"
    install.close(moved)


def test_an_interrupted_shard_swap_blocks_the_start_until_a_rerun_finishes_it(tmp_path, stub, monkeypatch):
    install = make_install("edge", tmp_path / "install")
    service = install.open(local_settings())
    owner = UserStore(install.storage.engine).create("ada").id
    service.add_many(Scope.personal(owner), FACTS)
    install.close(service)

    real_rename = Path.rename
    calls = []

    def crash_after_first_rename(self, target):  # the process dies between the two renames
        calls.append(self)
        if len(calls) == 2:
            raise OSError("simulated crash")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", crash_after_first_rename)
    with pytest.raises(OSError, match="simulated crash"):
        install.reembed(stub_settings(stub))
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not (install.storage.vector_path / COLLECTION).exists()  # half a swap on disk...
    for settings in (stub_settings(stub), local_settings()):
        with pytest.raises(ConfigError, match="interrupted.*python -m core reembed"):
            install.open(settings)  # ...is never served, with either embedder

    report, lines = install.reembed(stub_settings(stub))
    assert report.changed and lines[0].startswith("Finishing an interrupted swap")
    moved = install.open(stub_settings(stub))
    assert moved.count() == len(FACTS)
    assert moved.search(owner, "cello", top_k=1)[0].text == "Plays the cello on Sundays"
    install.close(moved)


def test_an_interrupted_first_alias_switch_blocks_the_start_until_a_rerun_finishes_it(tmp_path, stub, monkeypatch):
    install = make_install("server", tmp_path / "install")
    service = install.open(local_settings())
    owner = UserStore(install.storage.engine).create("ada").id
    service.add_many(Scope.personal(owner), FACTS)
    client = install.client

    def crash(*args, **kwargs):  # the process dies after dropping 'memories', before the alias exists
        raise ConnectionError("simulated crash")

    monkeypatch.setattr(client, "update_collection_aliases", crash)
    with pytest.raises(ConnectionError):
        install.reembed(stub_settings(stub))
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="interrupted.*python -m core reembed"):
        install.open(stub_settings(stub))  # no empty 'memories' is created in its place

    report, lines = install.reembed(stub_settings(stub))
    assert report.changed and "Finishing an interrupted re-embed" in lines[0]
    moved = install.open(stub_settings(stub))
    assert moved.count() == len(FACTS)
    assert moved.search(owner, "nurse in Porto", top_k=1)[0].text == "Sister Ana is a nurse in Porto"


def test_reembed_twice_switches_the_alias_and_drops_the_previous_collection(tmp_path, stub):
    install = make_install("server", tmp_path / "install")
    service = install.open(local_settings())
    owner = UserStore(install.storage.engine).create("ada").id
    service.add_many(Scope.personal(owner), FACTS)
    install.reembed(stub_settings(stub))
    first = {a.alias_name: a.collection_name for a in install.client.get_aliases().aliases}[COLLECTION]

    wider = EmbeddingStub(dims=96).start()
    try:
        report, _ = install.reembed(stub_settings(wider))
        assert report.changed and report.source == "openai:stub-embed (64-d)"
        second = {a.alias_name: a.collection_name for a in install.client.get_aliases().aliases}[COLLECTION]
        assert second != first and second.startswith("memories_96d_")
        assert not install.client.collection_exists(first)  # dropped only after the alias moved on
        moved = install.open(stub_settings(wider))
        assert moved.count() == len(FACTS)
        assert moved.search(owner, "green Volvo", top_k=1)[0].text == "Drives an old green Volvo"
    finally:
        wider.stop()


def test_the_command_refuses_while_the_app_holds_the_store_then_moves_it(isolated_settings, stub):
    """``python -m core reembed`` in its own process, as an operator runs it."""
    from core.runtime import open_runtime

    runtime = open_runtime(local_settings())
    owner = runtime.users.create("ada").id
    runtime.memory.add_many(Scope.personal(owner), FACTS)
    env = {**os.environ, "OPTIMUS_EMBEDDER": "openai:stub-embed", "OPTIMUS_EMBEDDING_DIMS": "64",
           "OPTIMUS_EMBEDDER_BASE_URL": stub.url, "OPTIMUS_OPENAI_COMPATIBLE_API_KEY": KEY,
           "MEM0_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}

    def command() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core", "reembed", "--batch-size", "3"], env=env,
                              capture_output=True, text=True, timeout=300)

    try:
        busy = command()  # the app is running: its process holds the shard
        assert busy.returncode == 1 and "in use by another process" in busy.stderr
    finally:
        runtime.close()
    with pytest.raises(ConfigError, match="holds 384-d vectors .* produces 64-d"):
        open_runtime(stub_settings(stub))  # the app with the new embedder stops at start, before any page
    done = command()
    assert done.returncode == 0, done.stderr
    assert f"memories: {len(FACTS)}/{len(FACTS)} points" in done.stdout
    assert f"{len(FACTS)} in memories" in done.stdout and "kept for rollback" in done.stdout
    assert KEY not in done.stdout + done.stderr + busy.stdout + busy.stderr
    again = command()
    assert again.returncode == 0 and "Nothing to re-embed" in again.stdout
    moved = open_runtime(stub_settings(stub))
    try:
        assert moved.memory.count() == len(FACTS)
        assert moved.memory.search(owner, "Sundays cello", top_k=1)[0].text == "Plays the cello on Sundays"
    finally:
        moved.close()


def test_reembed_back_to_the_bundled_model_restores_its_search(tmp_path, stub):
    """Rolling back by re-embedding: to the stub and straight back to MiniLM (built by mem0's factory too)."""
    install = make_install("edge", tmp_path / "install")
    service = install.open(local_settings())
    owner = UserStore(install.storage.engine).create("ada").id
    service.add_many(Scope.personal(owner), FACTS)
    before = {q: [r.id for r in service.search(owner, q, top_k=3, mode="dense")] for q in ("music", "food allergy")}
    install.close(service)

    install.reembed(stub_settings(stub))
    report, _ = install.reembed(local_settings())  # within the same second: the kept names must not collide
    assert report.changed and report.target == "local:all-MiniLM-L6-v2 (384-d)" and report.memories == len(FACTS)
    kept = sorted(p.name for p in install.storage.vector_path.iterdir() if ".before-reembed-" in p.name)
    assert len(kept) == 2
    back = install.open(local_settings())
    assert {q: [r.id for r in back.search(owner, q, top_k=3, mode="dense")] for q in before} == before
    install.close(back)


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_mem0_entity_vectors_move_with_the_memories(tmp_path, stub, backend):
    """mem0 keeps entity vectors (written by its add when spaCy finds entities) in a twin collection."""
    from core.memory.engine import build_memory

    install = make_install(backend, tmp_path / "install")
    memory = build_memory(local_settings(), install.storage, qdrant_client=install.client)
    added = memory.add("Lives in Lisbon", user_id="ada", infer=False)["results"][0]
    entity = {"data": "Lisbon", "entity_type": "PROPER", "linked_memory_ids": [added["id"]], "user_id": "ada"}
    entity_id = "5b0c54a2-6f1e-4a55-9d7e-3f7c2a9e1b10"
    memory.entity_store.insert(vectors=[memory.embedding_model.embed("Lisbon", "add")], ids=[entity_id],
                               payloads=[entity])
    if backend == "edge":
        memory.vector_store.close()
        memory.entity_store.close()

    report, _ = install.reembed(stub_settings(stub))
    assert report.counts == {COLLECTION: 1, f"{COLLECTION}_entities": 1}
    moved = build_memory(stub_settings(stub), install.storage, qdrant_client=install.client)
    hits = moved.entity_store.search(query="Lisbon", vectors=moved.embedding_model.embed("Lisbon", "search"),
                                     top_k=1, filters={"user_id": "ada"})
    assert [h.id for h in hits] == [entity_id] and hits[0].payload == entity
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # embedded anew by the stub: the query's own vector
    if backend == "edge":
        moved.vector_store.close()
        moved.entity_store.close()


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_a_new_store_records_its_hosted_embedder_and_opens_again(tmp_path, stub, backend):
    from core.memory.engine import build_memory

    install = make_install(backend, tmp_path / "install")
    for _ in range(2):  # a first start creates the store (and mem0's entity twin), a restart checks it
        memory = build_memory(stub_settings(stub), install.storage, qdrant_client=install.client)
        memory.entity_store.list(top_k=1)
        if backend == "edge":
            memory.vector_store.close()
            memory.entity_store.close()
    with pytest.raises(ConfigError, match="holds 64-d vectors made by openai:stub-embed"):
        build_memory(local_settings(), install.storage, qdrant_client=install.client)
    again, _ = install.reembed(stub_settings(stub))
    assert not again.changed
