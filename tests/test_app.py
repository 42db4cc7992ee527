"""Page logic through Streamlit's AppTest; the browser flows are in tests/test_browser.py.

A signed-in session is seeded the way the app proves one: a real access token from
``AuthService.login`` in ``st.session_state["auth_token"]`` (AppTest cannot carry cookies).
Replies come from the scripted ``test:echo`` model (``OPTIMUS_SCRIPTED_MODELS=true``).
"""

import time
from collections.abc import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO
from tests.pgserver import free_port

APP = str(REPO / "app.py")
PASSWORD = "violet otter carries 9 lanterns"


@pytest.fixture(autouse=True)
def fresh_runtime(monkeypatch) -> Iterator[None]:
    st.config.set_option("client.showErrorDetails", "full")
    monkeypatch.setenv("OPTIMUS_BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("OPTIMUS_SCRIPTED_MODELS", "true")
    monkeypatch.setenv("OPTIMUS_MEMORY_MODEL", "test:memory")
    monkeypatch.setenv("OPTIMUS_DEFAULT_MODEL", "test:echo")
    from core.runtime import close_shared_runtime

    close_shared_runtime()
    try:
        yield
    finally:
        close_shared_runtime()  # the process's runtime (closing wipes ephemeral dirs)


def _run(at: AppTest | None = None) -> AppTest:
    at = (AppTest.from_file(APP, default_timeout=60) if at is None else at).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _signed_in(username: str, *, admin: bool = False) -> AppTest:
    """An AppTest session signed in as a fresh account (created through the app's own runtime)."""
    from ui.common import get_runtime

    runtime = get_runtime()
    if admin:
        runtime.auth.create_admin(username, PASSWORD)
    else:
        runtime.auth.register(username, PASSWORD)
    login = runtime.auth.login(username, PASSWORD)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["auth_token"] = login.token
    return _run(at)


def test_signed_out_sees_only_the_sign_in_page(isolated_settings):
    at = _run()
    assert at.title[0].value == "Optimus"
    assert [t.label for t in at.tabs] == ["Sign in", "Create account"]
    with pytest.raises(ValueError):
        at.switch_page("pages/chat.py")
    assert (isolated_settings / "optimus.db").exists()


def test_sign_in_with_a_wrong_password_says_so_generically(isolated_settings):
    from ui.common import get_runtime

    get_runtime().auth.register("hopper", PASSWORD)
    at = _run()
    at.text_input[0].input("hopper")
    at.text_input[1].input("not the password at all")
    at.button[0].click()
    at = _run(at)
    assert any("Wrong username or password" in e.value for e in at.error)


def test_registration_explains_a_weak_password(isolated_settings):
    at = _run()
    at.text_input(key="reg_username").input("lovelace")
    at.text_input(key="reg_password").input("password1234")
    at = _run(at)
    assert any("too easy to guess" in c.value for c in at.caption)
    create = next(b for b in at.button if b.label == "Create account")
    assert create.disabled


def test_admin_status_page_shows_health(isolated_settings):
    at = _signed_in("root", admin=True)
    at.switch_page("pages/home.py")
    at = _run(at)
    assert at.title[0].value == "Optimus"
    assert "`embedded`" in at.markdown[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "1" and metrics["Memories"] == "0"
    rows = [m.value for m in at.markdown]
    names = [v.strip("*") for v in rows if v.startswith("**") and v.endswith("**")]
    assert names == ["database", "data directory", "vector store", "extraction queue", "models"]
    assert sum(":material/check_circle:" in v for v in rows) == 5  # a Material icon each, no emoji


def test_a_user_cannot_reach_admin_pages(isolated_settings):
    at = _signed_in("plainuser")
    with pytest.raises(ValueError):
        at.switch_page("pages/admin_tools.py")
    with pytest.raises(ValueError):
        at.switch_page("pages/admin_analytics.py")


def test_chat_streams_a_reply_and_the_pipeline_learns(isolated_settings):
    from ui.common import get_runtime

    at = _signed_in("ada")
    assert at.subheader[0].value == "New conversation"
    at.chat_input[0].set_value("Remember that my sister is called Rita").run()
    at = _run(at)
    texts = [m.markdown[0].value for m in at.chat_message]
    assert texts == ["Remember that my sister is called Rita", "You said: Remember that my sister is called Rita"]
    runtime = get_runtime()
    runtime.start_worker().run_once()  # the worker thread may have claimed the job already: wait for it
    deadline = time.monotonic() + 30
    while runtime.queue.depth()["pending"] + runtime.queue.depth()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    at = _run(at)
    panel = at.chat_message[1].expander[0]
    assert "1 change" in panel.label
    assert any("Sister is called Rita" in m.value for m in panel.markdown)
    user = runtime.users.find_by_username("ada")
    assert [m.text for m in runtime.memory.get_all(user.id)] == ["Sister is called Rita"]


def test_memories_page_edits_the_selected_memory_in_place(isolated_settings):
    from core.memory.types import Scope
    from ui.common import get_runtime

    at = _signed_in("grace")
    runtime = get_runtime()
    user = runtime.users.find_by_username("grace")
    rec = runtime.memory.add(Scope.personal(user.id), "Likes green tea", type="preference")
    at.switch_page("pages/memories.py")
    at = _run(at)
    assert at.metric[0].value == "1"
    at.session_state["selected_memories"] = [rec.id]  # what selecting its row in the table keeps
    at = _run(at)
    editor = next(t for t in at.text_area if t.label == "Memory")
    editor.input("Likes oolong tea")
    next(b for b in at.button if b.label == "Save changes").click()
    at = _run(at)
    assert runtime.memory.get(user.id, rec.id).text == "Likes oolong tea"
    assert any("Likes green tea" in m.value and "→" in m.value for m in at.markdown)  # its history, in place


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


def test_admin_runs_maintenance_now_and_sees_the_recorded_run_and_makes_a_backup(isolated_settings):
    from ui.common import get_runtime

    at = _signed_in("root-maint", admin=True)
    at.switch_page("pages/admin_tools.py")
    at = _run(at)
    next(b for b in at.button if b.key == "run-expired_memories").click()
    at = _run(at)
    runs = [r for r in get_runtime().maintenance.recent() if r.trigger == "admin"]  # the schedule runs too
    assert [(r.task, r.status) for r in runs] == [("expired_memories", "ok")]
    assert any(getattr(d, "value", None) is not None for d in at.dataframe)
    next(b for b in at.button if b.label == "Create backup").click()
    at = _run(at)
    archives = list((isolated_settings / "backups").glob("optimus-backup-*.tar.gz"))
    assert len(archives) == 1
    assert any(b.label.startswith("Download optimus-backup-") for b in at.get("download_button"))
