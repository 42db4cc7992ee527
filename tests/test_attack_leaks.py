"""Threat model: what the server says when things go wrong reaches people it should not.

Readers: an API client who provokes failures and reads the answers; anyone who can reach
``/health``; whoever reads the logs (an operator, a log pipeline, a support ticket they are pasted
into); other users of the same machine. Goal: learn internals (SQL statements, stack frames, file
paths, the database URL, user counts) from answers, find memory text, message text, API keys or
tokens in the logs, or read the data files.

What must hold:

* a failure of the world (the database or vector store gone) answers 503 with a fixed message and
  an error id; an unexpected error answers 500 with an error id; neither carries the cause's text;
* the log line with that error id says what failed by types and places only;
* at every log level, no log record holds memory text, message text, a key or a token: not ours,
  not SQLAlchemy's (parameters are hidden), not mem0's (which logs every update's text at INFO);
* ``/health`` without an admin's key says only whether the service is up;
* the data dir is created 0700 and the database and the JWT secret 0600.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from core.api.app import create_app
from core.memory.types import Scope
from core.runtime import Runtime, open_runtime
from tests.test_api import account, api_settings, http, serve

MARKER = "Zanzibar-marker-8812"  # memory text nobody else would write


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def runtime(request, tmp_path_factory) -> Iterator[Runtime]:
    overrides = {}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        overrides["database_url"] = postgres.create_database(template=request.getfixturevalue("pg_template"))
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("leaks"), **overrides))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def api(runtime) -> Iterator[str]:
    app = create_app(runtime)

    @app.get("/test-only/boom")
    def boom() -> None:
        raise RuntimeError(f"internal detail: SELECT data FROM memories WHERE data = '{MARKER}'")

    with serve(app) as url:
        yield url


def history_down(runtime: Runtime, down: bool) -> None:
    """Make the history table refuse writes (a trigger), or accept them again."""
    engine = runtime.storage.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER history_down BEFORE INSERT ON memory_history "
                              "BEGIN SELECT RAISE(ABORT, 'history is down'); END" if down
                              else "DROP TRIGGER history_down"))
        elif down:
            conn.execute(text("CREATE FUNCTION history_down() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'history is down'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER history_down BEFORE INSERT ON memory_history "
                              "FOR EACH ROW EXECUTE FUNCTION history_down()"))
        else:
            conn.execute(text("DROP TRIGGER history_down ON memory_history"))
            conn.execute(text("DROP FUNCTION history_down()"))


def logged(caplog) -> str:
    """Everything the records say, as a handler would format it (messages, arguments, tracebacks)."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


def test_a_store_failure_answers_a_fixed_message_and_an_error_id(api, runtime, caplog):
    caplog.set_level(logging.DEBUG)
    _, key = account(runtime)
    with http(api, key) as c:
        kept = c.post("/v1/optimus/memories/", json={"text": f"{MARKER} kept"}).json()
        history_down(runtime, True)
        try:
            answers = [
                c.post("/v1/optimus/memories/", json={"text": f"{MARKER} new"}),
                c.put(f"/v1/memories/{kept['id']}/", json={"text": f"{MARKER} changed"}),
                c.delete(f"/v1/memories/{kept['id']}/"),
                c.post("/v3/memories/add/", json={"messages": [{"role": "user", "content": f"{MARKER} raw"}],
                                                  "infer": False}),
            ]
        finally:
            history_down(runtime, False)
        for r in answers:
            body = r.json()
            assert r.status_code == 503, r.text
            assert set(body) == {"detail", "error_id"} and body["error_id"] == r.headers["x-error-id"]
            assert body["detail"].startswith("The memory store is not available right now")
            for leak in (MARKER, "INSERT", "memory_history", "history is down", "Traceback", ".py"):
                assert leak not in r.text, (leak, r.text)
            assert f"error {body['error_id']}" in logged(caplog)  # the operator can find the cause
        assert c.get(f"/v1/memories/{kept['id']}/").json()["memory"] == f"{MARKER} kept"  # and nothing changed
    log_text = logged(caplog)
    assert MARKER not in log_text and key not in log_text and "history is down" not in log_text


def test_an_unexpected_error_answers_500_and_logs_no_message(api, runtime, caplog):
    caplog.set_level(logging.DEBUG)
    _, key = account(runtime)
    with http(api, key) as c:
        r = c.get("/test-only/boom")
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal server error.", "error_id": r.headers["x-error-id"]}
    log_text = logged(caplog)
    assert f"error {r.json()['error_id']}" in log_text and "RuntimeError" in log_text
    assert MARKER not in log_text and "SELECT" not in log_text


def test_no_log_record_holds_memory_text_messages_or_keys(api, runtime, caplog):
    caplog.set_level(logging.DEBUG)
    _, key = account(runtime)
    with http(api, key) as c:
        memory_id = c.post("/v1/optimus/memories/", json={"text": f"{MARKER} one", "tags": ["t"]}).json()["id"]
        c.put(f"/v1/memories/{memory_id}/", json={"text": f"{MARKER} two"})  # mem0 logs this text at INFO
        c.post("/v3/memories/search/", json={"query": MARKER})
        c.post("/v3/memories/", json={"filters": {"metadata": {"k": MARKER}}})
        c.post("/v1/optimus/memories/batch/", json={"items": [{"text": f"{MARKER} three"}]})
        c.post("/v3/memories/add/", json={"messages": [{"role": "user", "content": f"{MARKER} four"}],
                                          "infer": False})
        c.get(f"/v1/memories/{memory_id}/history/")
        c.delete(f"/v1/memories/{memory_id}/")
        c.post("/v1/optimus/memories/", json={"text": MARKER, "metadata": {"m": {"a": {"b": {"c": {"d": {
            "e": {"f": {"g": {"h": 1}}}}}}}}}})  # refused: its message must not quote the text either
    with http(api, "om_" + "x" * 43) as c:
        c.get("/v1/ping/")  # a forged key
    log_text = logged(caplog)
    assert caplog.records, "nothing was logged at all: the test would prove nothing"
    for secret in (MARKER, key, key[3:], "om_" + "x" * 43):
        assert secret not in log_text


def test_health_without_an_admin_key_says_only_whether_it_is_up(api, runtime):
    _, key = account(runtime)
    _, admin_key = account(runtime, role="admin")
    data_dir = str(runtime.storage.data_dir)
    with http(api) as anonymous, http(api, key) as user, http(api, admin_key) as admin:
        for client in (anonymous, user):
            r = client.get("/health")
            assert r.status_code == 200 and r.json() == {"status": runtime.health().status}
            assert data_dir not in r.text and "sqlite" not in r.text.lower()
        full = admin.get("/health").json()
        assert {"components", "counts", "sizes"} <= set(full) and "users" in full["counts"]
    with http(api, "om_" + "q" * 43) as forged:
        assert forged.get("/health").status_code == 401


def test_the_data_dir_and_database_are_private_to_their_user(tmp_path):
    import stat

    rt = open_runtime(api_settings(tmp_path / "fresh"))
    try:
        rt.memory.add(Scope.personal("someone"), "private")
        data = rt.storage.data_dir
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (data, data / "optimus.db", data / "jwt_secret")}
        wal = data / "optimus.db-wal"
        if wal.exists():
            modes[wal.name] = stat.S_IMODE(wal.stat().st_mode)
    finally:
        rt.close()
    assert modes.pop(data.name) == 0o700
    assert set(modes.values()) == {0o600}, modes
