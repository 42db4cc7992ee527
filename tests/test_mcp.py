"""The MCP endpoint over real HTTP, driven by the official SDK's own client (``mcp.Client``).

Two hosts serve it, and the shared tests run against both: the API replica (uvicorn on loopback
in this process, the memory model scripted with FunctionModel) and a real ``streamlit run
app.py`` (its own process and data dir; the scripted ``test:memory`` model learns there). Real
parts throughout: SQLite, a Qdrant Edge shard, the bundled embedder, the key store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from core.api.app import create_app
from core.apikeys import ApiKeyStore
from core.db import make_engine, migrate, sqlite_url
from core.runtime import open_runtime
from core.users import UserStore
from tests.memory_fixtures import scripted_model
from tests.streamlit_server import StreamlitServer
from tests.test_api import account, api_settings, decide, extract, serve

TOOLS = {"search_memories", "list_memories", "get_memory", "add_memory", "learn_memories", "learning_status",
         "update_memory", "delete_memory", "memory_history"}
MARKER = "zebra-quartz-7731"  # a text that must never reach a log
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


# ------------------------------------------------------------------ the SDK client
@contextlib.asynccontextmanager
async def connect(url: str, key: str | None, *, scheme: str = "Bearer") -> AsyncIterator[Client]:
    headers = {"Authorization": f"{scheme} {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def ok(client: Client, tool: str, args: dict) -> dict:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def refused(client: Client, tool: str, args: dict) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


def run(scenario: Callable[..., object], *args) -> object:
    return asyncio.run(scenario(*args))


# ------------------------------------------------------------------ the two hosts
@dataclass
class Host:
    name: str
    base: str  # where the REST API answers (the replica's root, or the app's /api)
    mcp: str
    new_account: Callable[[], tuple[str, str]]
    log_text: Callable[[], str]
    revoke: Callable[[str, str], None]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("mcp-replica")))
    try:
        yield rt
    finally:
        rt.close()


class Records(logging.Handler):
    """Everything logged in this process while the replica serves, formatted as a handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def replica(runtime) -> Iterator[Host]:
    records = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)  # every record any logger lets through
    keys = ApiKeyStore(runtime.storage.engine)
    try:
        with serve(create_app(runtime, memory_model=scripted_model(extract, decide))) as url:
            yield Host("replica", url, url + "/mcp", lambda: account(runtime), lambda: "\n".join(records.lines),
                       lambda owner, key_id: keys.revoke(owner, key_id))
    finally:
        root.removeHandler(records)
        root.setLevel(level)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory) -> Iterator[StreamlitServer]:
    root = tmp_path_factory.mktemp("mcp-app")
    engine = make_engine(sqlite_url(root / "data" / "optimus.db"))
    migrate(engine)  # before the server's first request, so the two processes never race on it
    engine.dispose()
    server = StreamlitServer(root, OPTIMUS_SCRIPTED_MODELS="true", OPTIMUS_MEMORY_MODEL="test:memory",
                             OPTIMUS_DEFAULT_MODEL="test:echo", OPTIMUS_API_RATE_LIMIT_PER_MINUTE="0",
                             OPTIMUS_API_RATE_LIMIT_PER_ADDRESS_PER_MINUTE="0")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def app_host(app_server) -> Iterator[Host]:
    engine = make_engine(sqlite_url(app_server.data / "optimus.db"))
    keys = ApiKeyStore(engine)

    def new_account() -> tuple[str, str]:
        user = UserStore(engine).create(f"u{uuid.uuid4().hex[:12]}")
        return user.id, keys.create(user.id, "tests")[1]

    try:
        yield Host("streamlit", app_server.base + "/api", app_server.base + "/mcp", new_account,
                   lambda: app_server.log.read_text(errors="replace"), lambda owner, key_id: keys.revoke(owner, key_id))
    finally:
        engine.dispose()


@pytest.fixture(params=["replica", "streamlit"])
def host(request) -> Host:
    return request.getfixturevalue("replica" if request.param == "replica" else "app_host")


def rest(host: Host, key: str) -> httpx.Client:
    return httpx.Client(base_url=host.base, headers={"Authorization": f"Token {key}"}, timeout=60)


# ------------------------------------------------------------------ shared by both hosts
def test_every_tool_is_listed_with_an_input_schema(host):
    _, key = host.new_account()

    async def scenario():
        async with connect(host.mcp, key) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in run(scenario)}
    assert set(tools) == TOOLS
    assert tools["search_memories"].input_schema["required"] == ["query"]
    assert tools["learn_memories"].input_schema["required"] == ["messages"]
    assert tools["delete_memory"].annotations.destructive_hint is True
    assert tools["get_memory"].annotations.read_only_hint is True
    assert all(t.description for t in tools.values())


def test_a_round_trip_through_every_tool(host):
    _, key = host.new_account()

    async def scenario():
        async with connect(host.mcp, key) as client:
            added = await ok(client, "add_memory", {"text": "Keeps a vegetable garden", "user_id": "alice",
                                                    "tags": ["garden"], "importance": 4})
            assert added["status"] == "SUCCEEDED" and [e["event"] for e in added["results"]] == ["ADD"]
            memory_id = added["results"][0]["id"]
            got = await ok(client, "get_memory", {"memory_id": memory_id})
            found = await ok(client, "search_memories", {"query": "garden vegetables", "user_id": "alice"})
            listed = await ok(client, "list_memories", {"filters": {"user_id": "alice"}})
            changed = await ok(client, "update_memory", {"memory_id": memory_id, "text": "Keeps a herb garden",
                                                          "importance": 5})
            learned = await ok(client, "learn_memories", {
                "messages": [{"role": "user", "content": "My sister Ana lives in Porto."}], "user_id": "alice"})
            status = await ok(client, "learning_status", {"event_id": learned["event_id"]})
            history = await ok(client, "memory_history", {"memory_id": memory_id})
            gone = await ok(client, "delete_memory", {"memory_id": memory_id})
            missing = await refused(client, "get_memory", {"memory_id": memory_id})
            left = await ok(client, "list_memories", {"user_id": "alice"})
            return got, found, listed, changed, learned, status, history, gone, missing, left

    got, found, listed, changed, learned, status, history, gone, missing, left = run(scenario)
    assert (got["memory"], got["user_id"], got["tags"], got["categories"], got["importance"]) == (
        "Keeps a vegetable garden", "alice", ["garden"], ["garden"], 4)
    assert found["results"][0]["id"] == got["id"] and found["results"][0]["score"] > 0
    assert listed["count"] == 1 and listed["results"][0] == got  # the same shape from every tool
    assert (changed["memory"], changed["importance"]) == ("Keeps a herb garden", 5)
    assert learned["status"] == "SUCCEEDED" and any("Porto" in e["memory"] for e in learned["results"])
    assert status["status"] == "SUCCEEDED" and status["results"] == learned["results"]
    assert [(h["event"], h["source"]) for h in history["results"]] == [("ADD", "mcp"), ("UPDATE", "mcp")]
    assert gone == {"message": "Memory deleted successfully!"}
    assert "No such memory" in missing
    assert [m["memory"] for m in left["results"]] == [e["memory"] for e in learned["results"]]
    with rest(host, key) as c:  # the REST API sees the same memories, in the same shape
        learned_id = learned["results"][0]["id"]
        assert c.get(f"/v1/memories/{learned_id}/").json() == left["results"][0]
        assert [h["source"] for h in c.get(f"/v1/memories/{learned_id}/history/").json()] == ["mcp"]


def test_one_account_never_reaches_another(host):
    _, key_a = host.new_account()
    _, key_b = host.new_account()

    async def scenario():
        async with connect(host.mcp, key_a) as a:
            mine = await ok(a, "add_memory", {"text": f"Secret plan {MARKER}", "user_id": "shared-name"})
            learned = await ok(a, "learn_memories", {"messages": [{"role": "user", "content": "I am vegetarian."}]})
        memory_id = mine["results"][0]["id"]
        async with connect(host.mcp, key_b) as b:
            answers = {
                "get": await refused(b, "get_memory", {"memory_id": memory_id}),
                "update": await refused(b, "update_memory", {"memory_id": memory_id, "text": "taken over"}),
                "delete": await refused(b, "delete_memory", {"memory_id": memory_id}),
                "history": await refused(b, "memory_history", {"memory_id": memory_id}),
                "event": await refused(b, "learning_status", {"event_id": learned["event_id"]}),
            }
            searched = await ok(b, "search_memories", {"query": "secret plan", "user_id": "shared-name"})
            listed = await ok(b, "list_memories", {})
        async with connect(host.mcp, key_a) as a:
            still = await ok(a, "get_memory", {"memory_id": memory_id})
        return answers, searched, listed, still

    answers, searched, listed, still = run(scenario)
    assert "No such memory" in answers["get"] and "No such memory" in answers["update"]
    assert "No such memory" in answers["delete"] and "No such memory" in answers["history"]
    assert "No such event" in answers["event"]
    assert searched["results"] == [] and listed["count"] == 0
    assert still["memory"] == f"Secret plan {MARKER}"


def test_missing_forged_malformed_and_revoked_keys_get_401(host):
    owner, key = host.new_account()
    forged = "om_" + "A" * 43
    with httpx.Client(timeout=30) as c:
        for headers in ({}, {"Authorization": f"Bearer {forged}"}, {"Authorization": "Bearer"},
                        {"Authorization": f"Basic {key}"}, {"Authorization": f"Bearer {key[:-2]}"},
                        {"Authorization": "Bearer not-a-key"}):
            r = c.post(host.mcp, json=INIT, headers={**MCP_HEADERS, **headers})
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert key not in r.text and forged not in r.text
        assert c.post(host.mcp, json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"}).status_code == 200
        with rest(host, key) as api:
            key_id = api.get("/v1/ping/").json()["key_id"]
        host.revoke(owner, key_id)
        r = c.post(host.mcp, json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"})
        assert r.status_code == 401

    async def scenario():
        async with connect(host.mcp, forged) as client:
            await client.list_tools()

    with pytest.raises(BaseException):  # the SDK's client cannot even start a session
        run(scenario)


def test_bad_input_is_a_tool_error_that_says_why(host):
    _, key = host.new_account()

    async def scenario():
        async with connect(host.mcp, key) as client:
            memory_id = (await ok(client, "add_memory", {"text": "Drinks oolong"}))["results"][0]["id"]
            return {
                "empty query": await refused(client, "search_memories", {"query": ""}),
                "top_k": await refused(client, "search_memories", {"query": "tea", "top_k": 0}),
                "OR": await refused(client, "search_memories", {"query": "tea", "filters": {"OR": []}}),
                "unknown filter": await refused(client, "list_memories", {"filters": {"colour": "red"}}),
                "contradiction": await refused(client, "list_memories", {"filters": {"user_id": "a"},
                                                                         "user_id": "b"}),
                "wildcard": await refused(client, "add_memory", {"text": "x", "user_id": "*"}),
                "importance": await refused(client, "add_memory", {"text": "x", "importance": 9}),
                "type": await refused(client, "add_memory", {"text": "x", "type": "sonnet"}),
                "nothing": await refused(client, "update_memory", {"memory_id": memory_id}),
                "no user": await refused(client, "learn_memories", {"messages": [
                    {"role": "assistant", "content": "Hello."}]}),
                "page": await refused(client, "list_memories", {"page": 0}),
                "missing": await refused(client, "get_memory", {"memory_id": str(uuid.uuid4())}),
                "event": await refused(client, "learning_status", {"event_id": "12ab"}),
                "untouched": await ok(client, "get_memory", {"memory_id": memory_id}),
            }

    answers = run(scenario)
    assert "query" in answers["empty query"] and "at least 1 character" in answers["empty query"]
    assert "top_k" in answers["top_k"]
    assert "filters.OR" in answers["OR"] and "not supported" in answers["OR"]
    assert "filters.colour" in answers["unknown filter"]
    assert "user_id" in answers["contradiction"] and "different values" in answers["contradiction"]
    assert "user_id" in answers["wildcard"]
    assert "importance" in answers["importance"] and "type" in answers["type"]
    assert "Nothing to update" in answers["nothing"]
    assert "messages" in answers["no user"] and "no user message" in answers["no user"]
    assert "page" in answers["page"]
    assert "No such memory" in answers["missing"] and "No such event" in answers["event"]
    assert answers["untouched"]["memory"] == "Drinks oolong"


HOSTILE = {
    "not UTF-8": b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"x": "\xff\xfe"}}',
    "NaN": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_memories", '
           b'"arguments": {"query": "tea", "threshold": NaN}}}',
    "lone surrogate": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_memory", '
                      b'"arguments": {"text": "bad \\ud800 text"}}}',
    "deep": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_memories", '
            b'"arguments": {"filters": ' + b'{"AND": [' * 3000 + b'{}' + b']}' * 3000 + b'}}}',
    "not JSON": b'{"jsonrpc": "2.0", "id": 1,',
}


def test_hostile_bodies_get_a_4xx_and_the_server_goes_on(host):
    _, key = host.new_account()
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=60) as c:
        for name, body in HOSTILE.items():
            r = c.post(host.mcp, content=body, headers=headers)
            assert r.status_code == 400, (name, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == -32700, name
        big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "add_memory", "arguments": {"text": "x" * 2_000_000}}})
        r = c.post(host.mcp, content=big, headers=headers)
        assert r.status_code == 413 and "too large" in r.json()["detail"]
        assert c.post(host.mcp, json=INIT, headers=headers).status_code == 200  # still serving

    async def scenario():  # and the SDK's client still works on the same server
        async with connect(host.mcp, key) as client:
            return await ok(client, "list_memories", {})

    assert run(scenario)["count"] == 0


def test_no_log_line_holds_memory_text_queries_or_keys(host):
    owner, key = host.new_account()

    async def scenario():
        async with connect(host.mcp, key) as client:
            added = await ok(client, "add_memory", {"text": f"Allergic to {MARKER}"})
            await ok(client, "search_memories", {"query": f"what about {MARKER}"})
            await refused(client, "list_memories", {"filters": {f"k{MARKER}": 1}})
            await refused(client, "search_memories", {"query": "x", "filters": {"user_id": MARKER * 20}})
            await refused(client, "get_memory", {"memory_id": f"{MARKER}-id"})
            await refused(client, "learning_status", {"event_id": MARKER})
            await ok(client, "learn_memories", {"messages": [{"role": "user", "content": f"I love {MARKER}."}]})
            await ok(client, "delete_memory", {"memory_id": added["results"][0]["id"]})
        with contextlib.suppress(Exception):
            async with connect(host.mcp, key) as client:
                await client.call_tool(f"tool-{MARKER}", {"x": MARKER})

    run(scenario)
    with httpx.Client(timeout=30) as c:
        c.post(host.mcp, content=b'{"id": "' + MARKER.encode() + b'", NaN', headers={
            **MCP_HEADERS, "Authorization": f"Bearer {key}"})
        c.post(host.mcp, json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {MARKER}"})
    time.sleep(0.5)  # the server process flushes its log
    logged = host.log_text()
    assert MARKER not in logged and key not in logged


# ------------------------------------------------------------------ the replica only
def test_learning_that_takes_longer_answers_pending_and_finishes(runtime, tmp_path):
    release = threading.Event()

    def slow_extract(prompt: str) -> list[str]:
        release.wait(10)  # the model is still thinking when the tool answers
        return ["Keeps bees in the garden"]

    _, key = account(runtime)
    app = create_app(runtime, memory_model=scripted_model(slow_extract, decide),
                     settings=api_settings(tmp_path, api_learn_wait_seconds=0.5))

    async def scenario(url: str):
        async with connect(url + "/mcp", key) as client:
            started = time.perf_counter()
            answer = await ok(client, "learn_memories", {"messages": [
                {"role": "user", "content": "I keep bees in my garden."}], "user_id": "beekeeper"})
            waited = time.perf_counter() - started
            first = await ok(client, "learning_status", {"event_id": answer["event_id"]})
            release.set()
            for _ in range(100):
                done = await ok(client, "learning_status", {"event_id": answer["event_id"]})
                if done["status"] == "SUCCEEDED":
                    break
                await asyncio.sleep(0.05)
            listed = await ok(client, "list_memories", {"user_id": "beekeeper"})
            return answer, waited, first, done, listed

    with serve(app) as url:
        answer, waited, first, done, listed = run(scenario, url)
    assert answer["status"] == "PENDING" and answer["results"] == [] and waited < 5
    assert first["status"] == "RUNNING"
    assert done["status"] == "SUCCEEDED"
    assert [(r["event"], r["memory"]) for r in done["results"]] == [("ADD", "Keeps bees in the garden")]
    assert [m["memory"] for m in listed["results"]] == ["Keeps bees in the garden"]


def test_rate_limits_are_the_rest_apis(runtime, tmp_path):
    """Per address before the key is looked up; per account one budget with REST."""
    app = create_app(runtime, settings=api_settings(tmp_path, api_rate_limit_per_minute=3,
                                                    api_rate_limit_per_address_per_minute=0))
    _, key = account(runtime)

    async def tool_calls(url: str) -> list:
        async with connect(url + "/mcp", key) as client:
            return [await client.call_tool("list_memories", {}) for _ in range(2)]

    with serve(app) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {key}"}, timeout=30) as c:
            assert [c.get("/v1/ping/").status_code for _ in range(2)] == [200, 200]  # two of the account's three
        first, second = run(tool_calls, url)
    assert not first.is_error and first.structured_content["count"] == 0
    assert second.is_error
    assert second.content[0].text.startswith("Error executing tool list_memories: 429 Too many requests: "
                                             "this account may make 3 per minute. Retry in")

    app = create_app(runtime, settings=api_settings(tmp_path, api_rate_limit_per_minute=0,
                                                    api_rate_limit_per_address_per_minute=2))
    with serve(app) as url, httpx.Client(timeout=30) as c:
        forged = {**MCP_HEADERS, "Authorization": "Bearer om_" + "B" * 43}
        codes = [c.post(url + "/mcp", json=INIT, headers=forged).status_code for _ in range(3)]
        r = c.post(url + "/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"})
    assert codes == [401, 401, 429]  # guessing keys is limited too
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "this address" in r.json()["detail"]


def test_a_store_failure_is_a_503_tool_error_with_an_error_id_in_the_log(replica, runtime):
    from tests.test_attack_leaks import history_down

    _, key = replica.new_account()

    async def scenario():
        async with connect(replica.mcp, key) as client:
            kept = (await ok(client, "add_memory", {"text": f"{MARKER} kept"}))["results"][0]["id"]
            history_down(runtime, True)
            try:
                answers = [await refused(client, "add_memory", {"text": f"{MARKER} new"}),
                           await refused(client, "update_memory", {"memory_id": kept, "text": f"{MARKER} changed"}),
                           await refused(client, "delete_memory", {"memory_id": kept})]
            finally:
                history_down(runtime, False)
            return answers, await ok(client, "get_memory", {"memory_id": kept})

    answers, kept = run(scenario)
    logged = replica.log_text()
    for text in answers:
        assert "503 The memory store is not available right now; nothing was changed." in text
        error_id = text.rsplit("(error id ", 1)[1].rstrip(").")
        assert f"error {error_id}: mcp tool" in logged  # the operator finds the cause by the id
        for leak in (MARKER, "INSERT", "memory_history", "history is down", "Traceback"):
            assert leak not in text
    assert kept["memory"] == f"{MARKER} kept"  # nothing changed
    assert MARKER not in logged and "history is down" not in logged


def test_tool_calls_are_counted_with_closed_labels(replica):
    _, key = replica.new_account()

    async def scenario():
        async with connect(replica.mcp, key) as client:
            await ok(client, "list_memories", {})
            await refused(client, "get_memory", {"memory_id": "nope"})
            await refused(client, "search_memories", {"query": ""})

    run(scenario)
    text = httpx.get(replica.base + "/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("optimus_mcp_tool_calls_total{")]
    assert any('tool="list_memories"' in line and 'outcome="ok"' in line for line in lines)
    assert any('tool="get_memory"' in line and 'outcome="not_found"' in line for line in lines)
    assert any('tool="search_memories"' in line and 'outcome="invalid"' in line for line in lines)
    assert "nope" not in text
