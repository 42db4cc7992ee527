"""Threat model: a client with a valid key sends input built to break the server.

Attacker: any account holder (or a buggy script) calling the REST API over HTTP.
Goal: make the server answer 5xx, corrupt stored data, or hurt other accounts, by sending what
no honest client sends: lone UTF-16 surrogates and NUL bytes in ids, tags and metadata; text of
only invisible characters; numbers no float can hold (10**400, NaN, Infinity); dates Python parses
but nothing else does ("2026W01T00"); filters and bodies nested thousands of levels deep.

What must hold, on SQLite and on PostgreSQL:

* every hostile input is answered 4xx with a JSON ``detail`` naming the problem, never 5xx;
* the connection stays usable: the next request on the same keep-alive connection is answered,
  even after an internal error (which answers 500 with an error id and nothing more);
* nothing is stored or changed by a refused request, and no other account notices anything.

The matrix below is the single list of hostile requests; its size is recorded in
``bench/RESULTS.md``.
"""

from __future__ import annotations

from http.client import HTTPConnection, HTTPException
import json
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest

from core.api.app import create_app
from core.runtime import Runtime, open_runtime
from tests.test_api import account, api_settings, http, serve

SURROGATE = "ab\ud800cd"
NUL = "ab\x00cd"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
BLANK_LETTERS = "\u3164\u2800\u115f"  # a Hangul filler, a blank Braille cell: letters nobody can see
BAD_STRINGS = {"surrogate": SURROGATE, "nul": NUL, "zero-width": ZERO_WIDTH, "blank-letters": BLANK_LETTERS,
               "too-long": "x" * 5000}
BAD_DATES = ["2026W01T00", "2026-13-45", "2026-02-30", "0000-00-00", "2026-01-01T25:00", "20260101T000000+9999",
             "+275760-09-13", "-0001-01-01", "", "2026-01-01\x00", "2026-01-01\ud800"]
BAD_NUMBERS = {"huge": "1" + "0" * 400, "-huge": "-1" + "0" * 400, "nan": "NaN", "inf": "Infinity",
               "-inf": "-Infinity", "overflow-float": "1e400"}


def nested_json(depth: int) -> str:
    """``{"k": {"k": ... 1}}`` with ``depth`` objects, as JSON text."""
    return '{"k": ' * depth + "1" + "}" * depth


def nested_and_json(depth: int) -> str:
    """A filter of ``depth`` AND levels around one condition, as JSON text."""
    return '{"AND": [' * depth + '{"user_id": "x"}' + "]}" * depth


Case = tuple[str, str, str, object]  # (name, method, path with query, JSON-able body or raw bytes)


def hostile_requests(memory_id: str) -> list[Case]:
    """Every hostile request of the matrix. ``memory_id`` is a memory of the caller's own."""
    cases: list[Case] = []

    def add(name: str, method: str, path: str, body: object = None) -> None:
        cases.append((name, method, path, body))

    for label, bad in BAD_STRINGS.items():
        # one memory, verbatim (Optimus route)
        for field in ("text", "user_id", "agent_id", "run_id"):
            add(f"optimus add {field}={label}", "POST", "/v1/optimus/memories/",
                {"text": "harmless", field: bad} if field != "text" else {"text": bad})
        for field in ("tags", "people", "entities"):
            add(f"optimus add {field}=[{label}]", "POST", "/v1/optimus/memories/", {"text": "harmless", field: [bad]})
        add(f"optimus add metadata key {label}", "POST", "/v1/optimus/memories/",
            {"text": "harmless", "metadata": {bad: "v"}})
        # mem0's add (verbatim, and learned from)
        add(f"mem0 add content={label}", "POST", "/v3/memories/add/",
            {"messages": [{"role": "user", "content": bad}], "infer": False})
        if label in ("surrogate", "nul"):
            add(f"mem0 inferred add content={label}", "POST", "/v3/memories/add/",
                {"messages": [{"role": "user", "content": bad}]})
        add(f"mem0 inferred add user_id={label}", "POST", "/v3/memories/add/",
            {"messages": [{"role": "user", "content": "harmless"}], "user_id": bad})
        for field in ("user_id", "agent_id", "run_id"):
            add(f"mem0 add {field}={label}", "POST", "/v3/memories/add/",
                {"messages": [{"role": "user", "content": "harmless"}], field: bad, "infer": False})
            add(f"mem0 add filters.{field}={label}", "POST", "/v3/memories/add/",
                {"messages": [{"role": "user", "content": "harmless"}], "filters": {field: bad}, "infer": False})
        for field in ("tags", "people", "entities"):
            add(f"mem0 add {field}=[{label}]", "POST", "/v3/memories/add/",
                {"messages": [{"role": "user", "content": "harmless"}], field: [bad], "infer": False})
        # bulk import
        add(f"batch add text={label}", "POST", "/v1/optimus/memories/batch/",
            {"items": [{"text": "ok"}, {"text": bad}]})
        add(f"batch add tags=[{label}]", "POST", "/v1/optimus/memories/batch/",
            {"items": [{"text": "ok", "tags": [bad]}]})
        add(f"batch add user_id={label}", "POST", "/v1/optimus/memories/batch/",
            {"user_id": bad, "items": [{"text": "ok"}]})
        # updates
        for field, value in (("text", bad), ("tags", [bad]), ("people", [bad]), ("entities", [bad]),
                             ("metadata", {bad: 1})):
            add(f"update {field} {label}", "PUT", f"/v1/memories/{memory_id}/", {field: value})
        add(f"batch update text {label}", "PUT", "/v1/batch/", {"memories": [{"memory_id": memory_id, "text": bad}]})
        # reads
        add(f"search query {label}", "POST", "/v3/memories/search/", {"query": bad})
        for field in ("user_id", "agent_id", "run_id"):
            add(f"search filters.{field} {label}", "POST", "/v3/memories/search/",
                {"query": "tea", "filters": {field: bad}})
            add(f"list filters.{field} {label}", "POST", "/v3/memories/", {"filters": {field: bad}})
        for field in ("tags", "people", "categories"):
            add(f"search filters.{field} {label}", "POST", "/v3/memories/search/",
                {"query": "tea", "filters": {field: [bad]}})
        add(f"search metadata key {label}", "POST", "/v3/memories/search/", {"query": "tea", "metadata": {bad: "v"}})
        add(f"tag search {label}", "POST", "/v1/optimus/search/tags/", {"tags": [bad]})
        add(f"people search {label}", "POST", "/v1/optimus/search/people/", {"people": [bad]})
        add(f"tag search user_id {label}", "POST", "/v1/optimus/search/tags/", {"tags": ["x"], "user_id": bad})
        add(f"temporal query {label}", "POST", "/v1/optimus/search/temporal/", {"when": "today", "query": bad})
        add(f"temporal when {label}", "POST", "/v1/optimus/search/temporal/", {"when": bad})
        add(f"export filters {label}", "POST", "/v1/exports/", {"filters": {"user_id": bad}})
        add(f"export get user_id {label}", "POST", "/v1/exports/get/", {"user_id": bad})
        # query-string ids (NUL and long survive URL encoding; surrogates cannot be sent as UTF-8)
        if label != "surrogate":
            q = quote(bad, safe="")
            add(f"stats user_id {label}", "GET", f"/v1/optimus/stats/?user_id={q}")
            add(f"delete all user_id {label}", "DELETE", f"/v1/memories/?user_id={q}")
            add(f"delete all agent_id {label}", "DELETE", f"/v1/memories/?user_id=harmless&agent_id={q}")
            add(f"delete entity {label}", "DELETE", f"/v2/entities/user/{q}/")
            add(f"delete all filters {label}", "DELETE",
                "/v1/memories/?filters=" + quote(json.dumps({"user_id": bad}), safe=""))

    # "*" means "any" in filters, so it is never an id
    for path, body in (("/v1/optimus/memories/", {"text": "harmless", "user_id": "*"}),
                       ("/v1/optimus/memories/batch/", {"agent_id": "*", "items": [{"text": "harmless"}]}),
                       ("/v3/memories/add/", {"messages": [{"role": "user", "content": "x"}], "agent_id": "*",
                                              "infer": False}),
                       ("/v3/memories/add/", {"messages": [{"role": "user", "content": "x"}],
                                              "filters": {"run_id": "*"}, "infer": False}),
                       ("/v3/memories/add/", {"messages": [{"role": "user", "content": "x"}], "user_id": "*"})):
        add(f"write with a * id: {path} {sorted(body)}", "POST", path, body)

    # metadata values may be any text, but not text that cannot be stored
    for label in ("surrogate", "nul"):
        bad = BAD_STRINGS[label]
        add(f"optimus add metadata value {label}", "POST", "/v1/optimus/memories/",
            {"text": "harmless", "metadata": {"note": bad}})
        add(f"optimus add nested metadata value {label}", "POST", "/v1/optimus/memories/",
            {"text": "harmless", "metadata": {"a": [{"b": bad}]}})
        add(f"mem0 add metadata {label}", "POST", "/v3/memories/add/",
            {"messages": [{"role": "user", "content": "harmless"}], "metadata": {"k": bad}, "infer": False})
        add(f"batch add metadata {label}", "POST", "/v1/optimus/memories/batch/",
            {"items": [{"text": "ok", "metadata": {"k": bad}}]})
        add(f"update metadata value {label}", "PUT", f"/v1/memories/{memory_id}/", {"metadata": {"k": bad}})
        add(f"batch update metadata {label}", "PUT", "/v1/batch/",
            {"memories": [{"memory_id": memory_id, "metadata": {"k": bad}}]})
        add(f"search metadata filter {label}", "POST", "/v3/memories/search/",
            {"query": "tea", "filters": {"metadata": {"k": bad}}})

    # dates nothing but Python parses, or nothing parses
    for bad in BAD_DATES:
        add(f"search created_at gte {bad!r}", "POST", "/v3/memories/search/",
            {"query": "tea", "filters": {"created_at": {"gte": bad}}})
        add(f"list created_at lte {bad!r}", "POST", "/v3/memories/", {"filters": {"created_at": {"lte": bad}}})
        add(f"list start_date {bad!r}", "POST", "/v3/memories/", {"start_date": bad})
        add(f"list end_date {bad!r}", "POST", "/v3/memories/", {"end_date": bad})
        add(f"temporal start {bad!r}", "POST", "/v1/optimus/search/temporal/", {"when": {"start": bad}})
        add(f"add expiration_date {bad!r}", "POST", "/v3/memories/add/",
            {"messages": [{"role": "user", "content": "harmless"}], "infer": False, "expiration_date": bad})
        add(f"optimus add expires_at {bad!r}", "POST", "/v1/optimus/memories/", {"text": "harmless", "expires_at": bad})
        add(f"update expiration_date {bad!r}", "PUT", f"/v1/memories/{memory_id}/", {"expiration_date": bad})

    # numbers (sent as raw JSON: Python's json module reads NaN/Infinity and 400-digit integers)
    for label, number in BAD_NUMBERS.items():
        def raw(template: str) -> bytes:
            return template.replace("N", number).encode()

        add(f"search threshold {label}", "POST", "/v3/memories/search/", raw('{"query": "tea", "threshold": N}'))
        add(f"search top_k {label}", "POST", "/v3/memories/search/", raw('{"query": "tea", "top_k": N}'))
        add(f"search importance filter {label}", "POST", "/v3/memories/search/",
            raw('{"query": "tea", "filters": {"importance": N}}'))
        add(f"search importance range {label}", "POST", "/v3/memories/search/",
            raw('{"query": "tea", "filters": {"importance": {"gte": N}}}'))
        add(f"search metadata number {label}", "POST", "/v3/memories/search/",
            raw('{"query": "tea", "filters": {"metadata": {"k": N}}}'))
        add(f"list created_at number {label}", "POST", "/v3/memories/", raw('{"filters": {"created_at": {"gte": N}}}'))
        add(f"optimus add importance {label}", "POST", "/v1/optimus/memories/", raw('{"text": "x", "importance": N}'))
        add(f"optimus add confidence {label}", "POST", "/v1/optimus/memories/", raw('{"text": "x", "confidence": N}'))
        add(f"optimus add metadata number {label}", "POST", "/v1/optimus/memories/",
            raw('{"text": "x", "metadata": {"k": N}}'))
        add(f"mem0 add importance {label}", "POST", "/v3/memories/add/",
            raw('{"messages": [{"role": "user", "content": "x"}], "infer": false, "importance": N}'))
        add(f"update confidence {label}", "PUT", f"/v1/memories/{memory_id}/", raw('{"confidence": N}'))
        add(f"update metadata number {label}", "PUT", f"/v1/memories/{memory_id}/", raw('{"metadata": {"k": N}}'))
        add(f"tag search limit {label}", "POST", "/v1/optimus/search/tags/", raw('{"tags": ["x"], "limit": N}'))
        add(f"list page {label}", "POST", f"/v3/memories/?page={number}", {})
        add(f"list page_size {label}", "POST", f"/v3/memories/?page_size={number}", {})

    # depth and size (raw JSON text: no JSON library writes 5000 levels)
    for depth in (40, 130, 500, 5000):
        deep, deep_list, deep_and = nested_json(depth), "[" * depth + "]" * depth, nested_and_json(depth)
        add(f"optimus add metadata depth {depth}", "POST", "/v1/optimus/memories/",
            f'{{"text": "harmless", "metadata": {{"m": {deep}}}}}'.encode())
        add(f"mem0 add metadata depth {depth}", "POST", "/v3/memories/add/",
            f'{{"messages": [{{"role": "user", "content": "x"}}], "infer": false, "metadata": {deep}}}'.encode())
        add(f"batch add metadata depth {depth}", "POST", "/v1/optimus/memories/batch/",
            f'{{"items": [{{"text": "harmless", "metadata": {deep}}}]}}'.encode())
        add(f"update metadata depth {depth}", "PUT", f"/v1/memories/{memory_id}/", f'{{"metadata": {deep}}}'.encode())
        add(f"batch update metadata depth {depth}", "PUT", "/v1/batch/",
            f'{{"memories": [{{"memory_id": "{memory_id}", "metadata": {deep}}}]}}'.encode())
        add(f"metadata list depth {depth}", "POST", "/v1/optimus/memories/",
            f'{{"text": "harmless", "metadata": {{"m": {deep_list}}}}}'.encode())
        add(f"search filters depth {depth}", "POST", "/v3/memories/search/",
            f'{{"query": "tea", "filters": {{"metadata": {deep}}}}}'.encode())
        add(f"search AND depth {depth}", "POST", "/v3/memories/search/",
            f'{{"query": "tea", "filters": {deep_and}}}'.encode())
        add(f"export filters depth {depth}", "POST", "/v1/exports/", f'{{"filters": {deep_and}}}'.encode())
        add(f"delete query filters depth {depth}", "DELETE", "/v1/memories/?filters=" + quote(deep, safe=""))
    add("query filters of 4000 [", "DELETE", "/v1/memories/?filters=" + "[" * 4000)
    add("query filters of 4000 {", "DELETE", "/v1/memories/?filters=" + quote("{'a': " * 4000, safe=""))
    add("query filters python literal bomb", "DELETE", "/v1/memories/?filters=" + quote("(" * 200 + ")" * 200))
    add("body of 200000 [", "POST", "/v3/memories/search/", b"[" * 200_000)
    add("body of 100000 nested objects", "POST", "/v3/memories/search/", b'{"a":' * 100_000)
    add("metadata with 5000 keys", "POST", "/v1/optimus/memories/",
        {"text": "harmless", "metadata": {f"k{i}": i for i in range(5000)}})
    add("metadata value of 500000 chars", "POST", "/v1/optimus/memories/",
        {"text": "harmless", "metadata": {"k": "v" * 500_000}})
    add("metadata list of 20000 items", "POST", "/v1/optimus/memories/",
        {"text": "harmless", "metadata": {"k": list(range(20_000))}})
    add("2000 tags", "POST", "/v1/optimus/memories/", {"text": "harmless", "tags": [f"t{i}" for i in range(2000)]})
    add("metadata not an object", "POST", "/v1/optimus/memories/", {"text": "harmless", "metadata": [1, 2]})
    add("export id of nested json", "POST", "/v1/exports/get/",
        {"memory_export_id": "exp_" + _b64('{"filters": ' + nested_json(3000) + "}")})
    add("export id not base64", "POST", "/v1/exports/get/", {"memory_export_id": "exp_%%%%"})
    add("export id of a list", "POST", "/v1/exports/get/", {"memory_export_id": "exp_" + _b64("[1]")})
    add("export id with bad filters", "POST", "/v1/exports/get/",
        {"memory_export_id": "exp_" + _b64(json.dumps({"filters": {"created_at": {"gte": "2026W01T00"}}}))})
    add("not json", "POST", "/v3/memories/search/", b"{not json")
    add("invalid utf-8 body", "POST", "/v3/memories/search/", b'{"query": "\xff\xfe"}')
    add("body is a string", "POST", "/v3/memories/search/", b'"just a string"')
    add("memory id of 10000 chars", "GET", "/v1/memories/" + "a" * 10_000 + "/")
    add("memory id with NUL", "GET", "/v1/memories/%00/")
    add("history id of another shape", "GET", "/v1/memories/..%2F..%2Fetc/history/")
    return cases


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ------------------------------------------------------------------ the servers
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def runtime(request, tmp_path_factory) -> Iterator[Runtime]:
    overrides = {}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        overrides["database_url"] = postgres.create_database(template=request.getfixturevalue("pg_template"))
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("bad-input"), **overrides))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def api(runtime) -> Iterator[str]:
    app = create_app(runtime)

    @app.get("/test-only/boom")
    def boom() -> None:  # an internal error, to see what a client gets and that the connection survives
        raise RuntimeError("secret internal detail: SELECT * FROM memories")

    with serve(app) as url:
        yield url


class KeepAlive:
    """One HTTP/1.1 connection reused for every request, to see whether the server ever drops it."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.conn = HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.key = key
        self.sockets: set[int] = set()

    def request(self, method: str, path: str, body: object = None) -> tuple[int, dict, bytes]:
        headers = {"Authorization": f"Token {self.key}"}
        payload = None
        if isinstance(body, bytes):
            payload = body
        elif body is not None:
            payload = json.dumps(body).encode()  # lone surrogates become "\\ud800" escapes
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            self.sockets.add(id(self.conn.sock))
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, HTTPException) as exc:  # the server dropped the connection
            self.conn.close()
            return 0, {}, repr(exc).encode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self.conn.close()


def test_every_hostile_input_gets_a_4xx_with_a_message_and_changes_nothing(api, runtime):
    owner_id, key = account(runtime)
    bystander_id, bystander_key = account(runtime)
    with http(api, key) as c:
        mine = c.post("/v1/optimus/memories/", json={"text": "My bike is blue", "tags": ["bike"],
                                                      "metadata": {"colour": "blue"}}).json()
    with http(api, bystander_key) as c:
        theirs = c.post("/v1/optimus/memories/", json={"text": "Bystander note"}).json()

    cases = hostile_requests(mine["id"])
    client = KeepAlive(api, key)
    failures = []
    try:
        for name, method, path, body in cases:
            status, headers, data = client.request(method, path, body)
            try:
                detail = json.loads(data)["detail"]
            except (ValueError, KeyError, TypeError):
                detail = None
            if not 400 <= status < 500 or not detail or headers.get("connection") == "close":
                failures.append(f"{name}: {status} {data[:200]!r}")
    finally:
        client.close()
    summary = f"{len(failures)} of {len(cases)} hostile requests were not a clean 4xx:\n"
    assert not failures, summary + "\n".join(failures)
    assert len(client.sockets) == 1  # one keep-alive connection carried every request

    with http(api, key) as c:
        listed = c.post("/v3/memories/", json={}).json()
        assert [m["id"] for m in listed["results"]] == [mine["id"]]  # nothing was added
        now = c.get(f"/v1/memories/{mine['id']}/").json()
        assert (now["memory"], now["tags"], now["metadata"]) == ("My bike is blue", ["bike"], {"colour": "blue"})
        assert [h["event"] for h in c.get(f"/v1/memories/{mine['id']}/history/").json()] == ["ADD"]
    with http(api, bystander_key) as c:
        assert [m["id"] for m in c.post("/v3/memories/", json={}).json()["results"]] == [theirs["id"]]
        assert c.post("/v1/optimus/memories/", json={"text": "Bystander still writes"}).status_code == 201
    vector = next(c for c in runtime.health().components if c.name == "vector store")
    assert vector.ok, vector.detail


def test_an_internal_error_answers_500_with_an_error_id_and_keeps_the_connection(api, runtime):
    _, key = account(runtime)
    client = KeepAlive(api, key)
    try:
        status, headers, data = client.request("GET", "/test-only/boom")
        body = json.loads(data)
        assert status == 500 and headers.get("connection") != "close"
        assert set(body) == {"detail", "error_id"} and "SELECT" not in data.decode()
        assert body["error_id"] in headers.get("x-error-id", "")
        status, _, data = client.request("GET", "/v1/ping/")
        assert status == 200
    finally:
        client.close()
    assert len(client.sockets) == 1


def test_the_matrix_names_each_hostile_request_once():
    cases = hostile_requests(str(uuid.uuid4()))
    names = [name for name, *_ in cases]
    assert len(set(names)) == len(names) >= 450  # bench/RESULTS.md quotes its size
