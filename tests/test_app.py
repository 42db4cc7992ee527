"""Page logic through Streamlit's AppTest (the browser flows come with the product issue)."""

from collections.abc import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO
from tests.pgserver import free_port

APP = str(REPO / "app.py")


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    st.config.set_option("client.showErrorDetails", "full")
    st.cache_resource.clear()
    try:
        yield
    finally:
        st.cache_resource.clear()  # on_release closes the runtime (and wipes ephemeral dirs)


def _run() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home_shows_health_report(isolated_settings):
    at = _run()
    assert at.title[0].value == "Optimus"
    assert "Healthy" in at.markdown[0].value and "`embedded`" in at.markdown[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "0" and metrics["Conversations"] == "0" and metrics["Messages"] == "0"
    table = at.dataframe[0].value
    assert list(table["Component"]) == ["database", "data directory", "vector store", "extraction queue"]
    assert metrics["Memories"] == "0"
    assert all(status.startswith("✅") for status in table["Status"])
    assert not at.error
    assert (isolated_settings / "optimus.db").exists()


def test_home_counts_follow_the_database(isolated_settings):
    from core.runtime import open_runtime

    runtime = open_runtime()
    user = runtime.users.create("grace")
    conv = runtime.conversations.create(user.id)
    runtime.conversations.append(conv.id, "user", "hello")
    runtime.close()
    metrics = {m.label: m.value for m in _run().metric}
    assert (metrics["Users"], metrics["Conversations"], metrics["Messages"]) == ("1", "1", "1")


def test_bad_setting_shows_actionable_message_not_traceback(monkeypatch):
    monkeypatch.setenv("OPTIMUS_STORAGE", "cloud")
    at = _run()
    assert at.title[0].value == "Optimus cannot start"
    assert "OPTIMUS_STORAGE" in at.error[0].value
    assert "Traceback" not in at.error[0].value


def test_fallback_is_announced_on_every_page(monkeypatch):
    monkeypatch.setenv("OPTIMUS_STORAGE", "server")
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", f"postgresql+psycopg://optimus@127.0.0.1:{free_port()}/x")
    monkeypatch.setenv("OPTIMUS_QDRANT_URL", ":memory:")
    monkeypatch.setenv("OPTIMUS_DB_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("OPTIMUS_FALLBACK", "ephemeral")
    at = _run()
    assert "Degraded" in at.error[0].value and "EPHEMERAL" in at.error[0].value
    assert "Degraded" in at.markdown[0].value or "Degraded" in " ".join(m.value for m in at.markdown)
