"""The REST API over real HTTP: uvicorn on a loopback port, driven by the official ``mem0ai``
client (unchanged) and by httpx. Real parts: a migrated SQLite database, a Qdrant Edge shard,
the bundled embedder; the memory model is scripted (FunctionModel)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from mem0.exceptions import MemoryNotFoundError
from sqlalchemy import select, update

from core.api.app import create_app
from core.apikeys import ApiKeyStore
from core.config import load_settings
from core.runtime import Runtime, open_runtime
from core.schema import pending_extractions, users
from tests.conftest import MODEL_CACHE, REPO
from tests.memory_fixtures import scripted_model


# ------------------------------------------------------------------ a live server
class LiveServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        # As `python -m core.api` runs it: uvicorn's X-Forwarded-For handling is off (OPTIMUS_TRUSTED_PROXIES decides).
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    server = LiveServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()


def api_settings(root: Path, **overrides):
    """Settings for a test runtime under ``root`` (no rate limit unless asked)."""
    values = dict(data_dir=root / "data", model_cache_dir=MODEL_CACHE, embedder_backend="onnx",
                  api_rate_limit_per_minute=0, api_rate_limit_per_address_per_minute=0)
    values.update(overrides)
    return load_settings(**values)


def account(runtime: Runtime, *, role: str = "user") -> tuple[str, str]:
    """A fresh user and one API key: (owner id, key)."""
    user = runtime.users.create(f"u{uuid.uuid4().hex[:12]}", role=role)
    _, key = ApiKeyStore(runtime.storage.engine).create(user.id, "tests")
    return user.id, key


# ------------------------------------------------------------------ the scripted memory model
def extract(prompt: str) -> list[str]:
    if "FAIL" in prompt:
        return "not a list"  # malformed every time: the pipeline gives up
    facts = []
    if "vegetarian" in prompt:
        facts.append("Is vegetarian")
    if "fish" in prompt:
        facts.append("Eats fish now")
    if "Porto" in prompt:
        facts.append("Sister Ana lives in Porto")
    return facts


def decide(question: list) -> list[str]:
    return ["new"] * len(question)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[Runtime]:
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("api")))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def api(runtime) -> Iterator[str]:
    with serve(create_app(runtime, memory_model=scripted_model(extract, decide))) as url:
        yield url


@pytest.fixture
def mem0_client():
    from mem0 import MemoryClient

    clients = []

    def make(key: str, url: str):
        client = MemoryClient(api_key=key, host=url)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.client.close()


def http(url: str, key: str | None = None, scheme: str = "Token") -> httpx.Client:
    headers = {"Authorization": f"{scheme} {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


# ------------------------------------------------------------------ mem0's client, end to end
def test_official_mem0_client_full_flow(api, runtime, mem0_client):
    owner_id, key = account(runtime)
    client = mem0_client(key, api)
    assert client.project_id == owner_id  # the init ping named the account

    raw = client.add("I keep my bike in the garage", user_id="enduser-1", infer=False,
                     metadata={"source_app": "notes"})
    assert [r["event"] for r in raw["results"]] == ["ADD"]
    bike_id = raw["results"][0]["id"]

    learned = client.add([{"role": "user", "content": "I'm vegetarian and my sister Ana lives in Porto."},
                          {"role": "assistant", "content": "Noted!"}], filters={"user_id": "enduser-1"})
    assert learned["status"] == "SUCCEEDED"
    assert sorted(r["memory"] for r in learned["results"]) == ["Is vegetarian", "Sister Ana lives in Porto"]
    changed = client.add([{"role": "user", "content": "These days I eat fish."}], user_id="enduser-1")
    [event] = changed["results"]
    assert event["event"] == "UPDATE" and event["memory"] == "Eats fish"
    assert event["previous_memory"] == "Is vegetarian"
    diet_id = event["id"]
    client.add("Prefers aisle seats", user_id="enduser-2", infer=False)

    everything = client.get_all(filters={"user_id": "enduser-1"})
    assert everything["count"] == 3 and {m["user_id"] for m in everything["results"]} == {"enduser-1"}
    page = client.get_all(filters={"user_id": "enduser-1"}, page=1, page_size=2)
    assert len(page["results"]) == 2 and page["next"] and page["count"] == 3
    by_meta = client.get_all(filters={"AND": [{"user_id": "enduser-1"}, {"metadata": {"source_app": "notes"}}]})
    assert [m["id"] for m in by_meta["results"]] == [bike_id]

    found = client.search("where is the bicycle kept?", filters={"user_id": "enduser-1"}, top_k=1)
    assert [m["id"] for m in found["results"]] == [bike_id] and found["results"][0]["score"] > 0.3
    other_user = client.search("seats", filters={"user_id": "enduser-2"}, top_k=5)
    assert [m["memory"] for m in other_user["results"]] == ["Prefers aisle seats"]
    tagged = client.search("diet", filters={"user_id": "enduser-1", "categories": {"in": ["food"]}}, top_k=5)
    assert [m["id"] for m in tagged["results"]] == [diet_id]

    assert client.get(bike_id)["memory"] == "I keep my bike in the garage"
    updated = client.update(bike_id, text="I keep my bike in the shed")
    assert updated["memory"] == "I keep my bike in the shed" and updated["metadata"] == {"source_app": "notes"}
    history = client.history(bike_id)
    assert [(h["event"], h["new_memory"]) for h in history] == [
        ("ADD", "I keep my bike in the garage"), ("UPDATE", "I keep my bike in the shed")]
    assert [h["event"] for h in client.history(diet_id)] == ["ADD", "UPDATE"]

    entities = client.users()
    assert {(e["type"], e["name"], e["total_memories"]) for e in entities["results"]} == {
        ("user", "enduser-1", 3), ("user", "enduser-2", 1)}

    assert "1 memories" in client.batch_update([{"memory_id": bike_id, "text": "Bike: in the shed"}])["message"]
    assert client.get(bike_id)["memory"] == "Bike: in the shed"

    export = client.create_memory_export(schema='{"type": "object"}', filters={"user_id": "enduser-1"})
    document = client.get_memory_export(memory_export_id=export["id"])
    assert document["count"] == 3 and document["account"]["id"] == owner_id
    assert {m["id"] for m in document["memories"]} >= {bike_id, diet_id}
    assert {h["memory_id"] for h in document["history"]} == {m["id"] for m in document["memories"]}
    assert document["schema"] == '{"type": "object"}' and document["conversations"] is None
    whole = client.get_memory_export()  # no filters: the whole account's GDPR export
    assert whole["count"] == 4 and whole["profile"]["id"] == owner_id and whole["conversations"] == []
    # the fetch above was audited (beside the memory changes, which are audited from the service)
    assert [e["event"] for e in whole["audit"] if not e["event"].startswith("memory.")] == ["export"]

    porto_id = next(m["id"] for m in everything["results"] if "Porto" in m["memory"])
    client.batch_delete([{"memory_id": porto_id}])
    client.delete(diet_id)
    with pytest.raises(MemoryNotFoundError, match="No such memory"):
        client.get(diet_id)
    assert [h["event"] for h in client.history(diet_id)] == ["ADD", "UPDATE", "DELETE"]  # kept after delete
    assert client.delete_all(filters={"user_id": "enduser-1"})["deleted"] == 1  # sent as a query parameter
    assert client.get_all(filters={"user_id": "enduser-1"})["count"] == 0
    assert client.delete_users(user_id="enduser-2") == {"message": "Entity deleted successfully."}
    assert client.get_all()["count"] == 0

    client.add("Planner note", user_id="enduser-3", agent_id="planner", infer=False)
    client.add("Run note", user_id="enduser-3", run_id="run-1", infer=False)
    assert {e["type"] for e in client.users()["results"]} == {"user", "agent", "run"}
    assert [m["memory"] for m in client.get_all(filters={"agent_id": "planner"})["results"]] == ["Planner note"]
    assert [m["memory"] for m in client.search("note", filters={"run_id": "run-1"})["results"]] == ["Run note"]
    client.delete_users()  # walks users(): the agent and run are already empty when it reaches them
    assert client.get_all()["count"] == 0 and client.users()["results"] == []


def test_official_mem0_async_client_adds_searches_and_lists(api, runtime):
    from mem0 import AsyncMemoryClient

    owner_id, key = account(runtime)
    other_id, _ = account(runtime)

    async def flow() -> tuple[dict, dict, dict, dict]:
        async with AsyncMemoryClient(api_key=key, host=api) as client:
            raw, learned = await asyncio.gather(
                client.add("I keep my bike in the garage", user_id="enduser-1", infer=False),
                client.add([{"role": "user", "content": "I'm vegetarian."}], user_id="enduser-1"))
            found = await client.search("where is the bicycle kept?", filters={"user_id": "enduser-1"}, top_k=1)
            listed = await client.get_all(filters={"user_id": "enduser-1"})
            return raw, learned, found, listed

    raw, learned, found, listed = asyncio.run(flow())
    bike_id = raw["results"][0]["id"]
    assert [r["memory"] for r in learned["results"]] == ["Is vegetarian"]
    assert [m["id"] for m in found["results"]] == [bike_id]
    assert listed["count"] == 2 and {m["memory"] for m in listed["results"]} == {
        "I keep my bike in the garage", "Is vegetarian"}
    # the chat's own service sees them under the key's account, and only there
    assert {r.text for r in runtime.memory.get_all(owner_id)} == {"I keep my bike in the garage", "Is vegetarian"}
    assert runtime.memory.get_all(other_id) == []


def test_inferred_add_is_queued_when_the_model_keeps_failing(api, runtime):
    owner_id, key = account(runtime)
    with http(api, key) as c:
        r = c.post("/v3/memories/add/", json={"messages": [{"role": "user", "content": "FAIL please"}],
                                              "user_id": "u1"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "PENDING" and body["results"] == []
    with runtime.storage.engine.connect() as conn:
        job = conn.execute(select(pending_extractions).where(pending_extractions.c.id == int(body["event_id"]))).one()
    assert (job.owner_id, job.user_id, job.status) == (owner_id, "u1", "pending")
    assert "FAIL please" in job.payload


def test_slow_learning_answers_pending_in_time_and_finishes_in_the_background(runtime, tmp_path, mem0_client):
    """mem0's client gives up after 300 s; a slow local model must never make it wait that long."""
    import threading

    release = threading.Event()

    def slow_extract(prompt):
        release.wait(10)  # the model is still thinking when the API answers
        return ["Keeps bees in the garden"]

    owner_id, key = account(runtime)
    app = create_app(runtime, memory_model=scripted_model(slow_extract, decide),
                     settings=api_settings(tmp_path, api_learn_wait_seconds=0.5))
    with serve(app) as url:
        client = mem0_client(key, url)
        started = time.perf_counter()
        answer = client.add([{"role": "user", "content": "I keep bees in my garden."}], user_id="beekeeper")
        assert time.perf_counter() - started < 5
        assert answer["status"] == "PENDING" and answer["event_id"]
        with http(url, key) as c:
            status = c.get(f"/v1/events/{answer['event_id']}/").json()
            assert status["status"] == "RUNNING"
            release.set()
            for _ in range(100):
                status = c.get(f"/v1/events/{answer['event_id']}/").json()
                if status["status"] == "SUCCEEDED":
                    break
                time.sleep(0.05)
            assert status["status"] == "SUCCEEDED"
            assert [(r["event"], r["memory"]) for r in status["results"]] == [("ADD", "Keeps bees in the garden")]
            other_id, other_key = account(runtime)
        with http(url, other_key) as c:  # another account cannot see the event
            assert c.get(f"/v1/events/{answer['event_id']}/").status_code == 404
        assert [m["memory"] for m in client.get_all(filters={"user_id": "beekeeper"})["results"]] == [
            "Keeps bees in the garden"]


def test_inferred_add_rejects_fields_only_verbatim_memories_keep(api, runtime):
    _, key = account(runtime)
    with http(api, key) as c:
        r = c.post("/v3/memories/add/", json={"messages": [{"role": "user", "content": "I'm vegetarian"}],
                                              "metadata": {"a": 1}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["metadata"]


# ------------------------------------------------------------------ isolation between accounts
def test_keys_of_one_account_never_reach_another(api, runtime, mem0_client):
    a_id, a_key = account(runtime)
    b_id, b_key = account(runtime, role="admin")  # admins' keys are scoped to their own account too
    a = mem0_client(a_key, api)
    b = mem0_client(b_key, api)
    b_mem = b.add("B's secret: the safe code is 4711", user_id="shared-name", infer=False)["results"][0]["id"]
    a_mem = a.add("A's note about the safe", user_id="shared-name", infer=False)["results"][0]["id"]
    with pytest.raises(MemoryNotFoundError):
        a.get(b_mem)
    with pytest.raises(MemoryNotFoundError):
        a.history(b_mem)

    with http(api, a_key) as c:
        for method, path, body in [
            ("GET", f"/v1/memories/{b_mem}/", None),
            ("PUT", f"/v1/memories/{b_mem}/", {"text": "hijacked"}),
            ("GET", f"/v1/memories/{b_mem}/history/", None),
            ("DELETE", f"/v1/memories/{b_mem}/", None),
            ("DELETE", "/v1/batch/", {"memories": [{"memory_id": a_mem}, {"memory_id": b_mem}]}),
            ("PUT", "/v1/batch/", {"memories": [{"memory_id": b_mem, "text": "x"}]}),
            ("POST", f"/v1/optimus/memories/{b_mem}/revert/", {"history_id": str(uuid.uuid4())}),
        ]:
            r = c.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json() == {"detail": r.json()["detail"]} and "4711" not in r.text
        missing = c.get(f"/v1/memories/{uuid.uuid4()}/")
        assert missing.status_code == 404 and missing.json() == c.get(f"/v1/memories/{b_mem}/").json()

        hits = c.post("/v3/memories/search/", json={"query": "safe code", "top_k": 50}).json()["results"]
        assert [h["id"] for h in hits] == [a_mem]
        listed = c.post("/v3/memories/", json={"filters": {"user_id": "shared-name"}}).json()["results"]
        assert [m["id"] for m in listed] == [a_mem]
        exported = c.post("/v1/exports/get/", json={}).json()
        assert [m["id"] for m in exported["memories"]] == [a_mem] and exported["profile"]["id"] == a_id
        assert {h["memory_id"] for h in exported["history"]} == {a_mem} and "4711" not in str(exported)
        assert c.get("/v1/entities/").json()["results"][0]["total_memories"] == 1
        assert c.delete("/v1/memories/", params={"user_id": "*"}).json()["deleted"] == 1
        assert c.get("/v1/optimus/stats/").json()["total"] == 0

    assert b.get(b_mem)["memory"] == "B's secret: the safe code is 4711"  # untouched by all of the above
    assert [h["event"] for h in b.history(b_mem)] == ["ADD"]
    assert b.get_all()["count"] == 1 and a.project_id == a_id and b.project_id == b_id


# ------------------------------------------------------------------ authentication
def test_missing_forged_malformed_and_revoked_keys_get_401(api, runtime):
    owner_id, key = account(runtime)
    store = ApiKeyStore(runtime.storage.engine)
    with http(api) as anonymous:
        r = anonymous.get("/v1/ping/")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Token"
        assert "Authorization: Token" in r.json()["detail"]
    for header in [f"Basic {key}", "Token", "Token om_" + "x" * 43, f"Token {key}x", key]:
        with httpx.Client(base_url=api, headers={"Authorization": header}) as c:
            assert c.get("/v1/ping/").status_code == 401, header
    with http(api, key, scheme="Bearer") as c:
        assert c.get("/v1/ping/").json()["owner_id"] == owner_id
    with http(api, key, scheme="token") as c:
        assert c.get("/v1/ping/").status_code == 200

    key_id = store.for_owner(owner_id)[0].id
    store.revoke(owner_id, key_id)
    with http(api, key) as c:
        assert c.get("/v1/ping/").status_code == 401
        assert c.post("/v3/memories/search/", json={"query": "x"}).status_code == 401

    locked_id, locked_key = account(runtime)
    with runtime.storage.engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == locked_id).values(locked_at=datetime.now(UTC)))
    with http(api, locked_key) as c:
        assert c.get("/v1/ping/").status_code == 401


def test_mem0_client_refuses_to_start_with_a_bad_key(api):
    from mem0 import MemoryClient

    with pytest.raises(ValueError, match="Invalid or revoked API key"):
        MemoryClient(api_key="om_" + "y" * 43, host=api)


def test_usage_of_a_key_is_counted(api, runtime):
    owner_id, key = account(runtime)
    with http(api, key) as c:
        for _ in range(3):
            c.get("/v1/ping/")
    [listed] = ApiKeyStore(runtime.storage.engine).for_owner(owner_id)
    assert listed.usage_count == 3 and listed.last_used_at is not None


# ------------------------------------------------------------------ validation
def test_validation_errors_are_422_with_field_messages(api, runtime):
    _, key = account(runtime)
    with http(api, key) as c:
        cases = [
            ("POST", "/v3/memories/search/", {"query": "tea", "top_k": 0}, ["body", "top_k"]),
            ("POST", "/v3/memories/search/", {"query": "tea", "rank_by": "x"}, ["body", "rank_by"]),
            ("POST", "/v3/memories/search/", {"query": "tea", "filters": {"OR": [{"user_id": "a"}]}},
             ["filters", "OR"]),
            ("POST", "/v3/memories/search/", {"query": "tea", "filters": {"app_id": "x"}}, ["filters", "app_id"]),
            ("POST", "/v3/memories/search/", {"query": "tea", "filters": {"created_at": {"gte": "soon"}}},
             ["filters", "created_at"]),
            ("POST", "/v3/memories/search/", {"query": "   "}, ["query"]),
            ("POST", "/v3/memories/add/", {"messages": []}, ["body", "messages"]),
            ("POST", "/v3/memories/add/", {"messages": [{"role": "user", "content": "x" * 3000}], "infer": False},
             ["text"]),
            ("POST", "/v1/optimus/memories/", {"text": "hi", "importance": 9}, ["body", "importance"]),
            ("POST", "/v1/optimus/search/temporal/", {"when": "the other day"}, ["when"]),
            ("DELETE", "/v1/memories/", None, ["user_id"]),
        ]
        for method, path, body, loc in cases:
            r = c.request(method, path, json=body)
            assert r.status_code == 422, (path, body, r.text)
            detail = r.json()["detail"]
            assert detail[0]["loc"] == loc, (path, body, detail)
            assert detail[0]["msg"], detail
        broken = c.post("/v3/memories/search/", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422


# ------------------------------------------------------------------ limits
def test_rate_limit_answers_429_with_retry_after(runtime):
    _, key = account(runtime)
    app = create_app(runtime, settings=runtime.settings.model_copy(update={"api_rate_limit_per_minute": 3}))
    with serve(app) as url, http(url, key) as c:
        assert [c.get("/v1/ping/").status_code for _ in range(3)] == [200, 200, 200]
        r = c.get("/v1/ping/")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 20 and r.headers["x-ratelimit-limit"] == "3"
        assert "3 per minute" in r.json()["detail"]

        from mem0 import MemoryClient
        from mem0.exceptions import RateLimitError

        client_key = account(runtime)[1]

        # Keys are limited separately: a fresh key has its own 3 (the client's start-up ping is one).
        client = MemoryClient(api_key=client_key, host=url)
        client.get_all()
        client.get_all()
        with pytest.raises(RateLimitError) as err:
            client.get_all()
        assert err.value.debug_info["retry_after"] >= 1
        client.client.close()


def test_bodies_over_the_limit_get_413(runtime):
    _, key = account(runtime)
    app = create_app(runtime, settings=runtime.settings.model_copy(update={"api_max_body_bytes": 2048}))
    big = {"query": "x" * 5000}
    with serve(app) as url, http(url, key) as c:
        r = c.post("/v3/memories/search/", json=big)
        assert r.status_code == 413 and "2,048 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit applies while reading
            for _ in range(10):
                yield b"x" * 1000

        r = c.post("/v3/memories/search/", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v3/memories/search/", json={"query": "small"}).status_code == 200


def test_cors_is_off_by_default_and_follows_the_setting(api, runtime):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with http(api) as c:
        r = c.options("/v3/memories/search/", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    allowed = runtime.settings.model_copy(update={"api_cors_origins": ["https://app.example"]})
    with serve(create_app(runtime, settings=allowed)) as url, http(url) as c:
        ok = c.options("/v3/memories/search/", headers={**preflight, "Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in c.options("/v3/memories/search/", headers=preflight).headers


# ------------------------------------------------------------------ docs, health, metrics
def test_openapi_docs_are_served(api):
    with http(api) as c:
        docs = c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = c.get("/openapi.json").json()
    assert spec["info"]["title"] == "Optimus API"
    for path in ("/v1/ping/", "/v3/memories/add/", "/v3/memories/search/", "/v1/memories/{memory_id}/history/",
                 "/v1/exports/get/", "/v1/optimus/search/temporal/", "/v1/optimus/stats/"):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["ApiKey"]["in"] == "header"


def test_health_needs_no_key_and_reports_components_to_admins(api, runtime):
    with http(api) as c:
        r = c.get("/health")
    assert r.status_code == 200 and set(r.json()) == {"status"} and r.json()["status"] in ("ok", "degraded")
    with http(api, account(runtime, role="admin")[1]) as c:
        report = c.get("/health").json()
    assert report["status"] in ("ok", "degraded") and report["mode"] == "embedded"
    assert {c["name"] for c in report["components"]} >= {"database", "vector store", "extraction queue"}


def test_metrics_count_requests_by_route_template_and_status(api, runtime):
    _, key = account(runtime)
    with http(api, key) as c:
        memory_id = c.post("/v1/optimus/memories/", json={"text": "metrics probe"}).json()["id"]
        c.get(f"/v1/memories/{memory_id}/")
        c.get(f"/v1/memories/{uuid.uuid4()}/")
        c.post("/v3/memories/search/", json={"query": "probe"})
    with http(api) as c:
        c.get("/v1/ping/")
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'optimus_api_requests_total{method="GET",route="/v1/memories/{memory_id}/",status="200"}' in text
    assert 'optimus_api_requests_total{method="GET",route="/v1/memories/{memory_id}/",status="404"}' in text
    assert 'optimus_api_requests_total{method="POST",route="/v3/memories/search/",status="200"}' in text
    assert 'optimus_api_requests_total{method="GET",route="/v1/ping/",status="401"}' in text
    assert 'optimus_api_latency_seconds_bucket{' in text and "optimus_memory_events_total" in text
    assert memory_id not in text and key not in text


# ------------------------------------------------------------------ the app opening its own runtime
def test_create_app_without_a_runtime_opens_and_closes_one(tmp_path):
    settings = api_settings(tmp_path)
    rt = open_runtime(settings)
    owner_id, key = account(rt, role="admin")
    rt.close()  # the embedded vector shard is single-process: the server opens it next
    app = create_app(settings=settings, start_worker=False)
    with serve(app) as url, http(url, key) as c:
        assert c.get("/v1/ping/").json()["owner_id"] == owner_id
        assert c.post("/v1/optimus/memories/", json={"text": "opened by the lifespan"}).status_code == 201
        assert c.get("/health").json()["counts"]["memories"] == 1
    reopened = open_runtime(settings)  # the server closed the shard on shutdown
    try:
        assert reopened.memory.count(owner_id) == 1
    finally:
        reopened.close()


def test_python_dash_m_core_api_serves_on_the_configured_port(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIMUS_")}
    env.update(OPTIMUS_DATA_DIR=str(tmp_path / "data"), OPTIMUS_MODEL_CACHE_DIR=str(MODEL_CACHE),
               OPTIMUS_API_PORT=str(port), MEM0_TELEMETRY="False", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "core.api", "--log-level", "warning"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "no output") from None
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["status"] in ("ok", "degraded")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/ping/").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_responses_follow_the_domain_types_they_show():
    """API bodies are derived from the domain dataclasses: a domain field reaches the wire on its own."""
    import dataclasses

    from core.api.schemas import HistoryOut, MemoryOut, StatsOut
    from core.memory.history import HistoryEntry
    from core.memory.records import MemoryStats
    from core.memory.types import MemoryRecord

    renamed = {"text": "memory", "expires_at": "expiration_date"}
    memory_wire = {renamed.get(f.name, f.name) for f in dataclasses.fields(MemoryRecord)} - {"owner_id"}
    assert memory_wire | {"categories"} == set(MemoryOut.model_fields)
    history_wire = {f.name for f in dataclasses.fields(HistoryEntry)} - {"owner_id", "scope", "snapshot"}
    assert history_wire | {"user_id", "agent_id", "run_id"} == set(HistoryOut.model_fields)
    assert {f.name for f in dataclasses.fields(MemoryStats)} == set(StatsOut.model_fields)
