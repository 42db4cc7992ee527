from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import StartupError
from core.health import collect_health
from core.storage import open_storage
from core.users import UserStore
from tests.pgserver import free_port


def test_embedded_is_persistent_sqlite_under_the_data_dir(isolated_settings):
    storage = open_storage(load_settings())
    try:
        assert storage.mode == "embedded" and storage.backend == "sqlite"
        assert (isolated_settings / "optimus.db").exists()
        assert storage.vector_path == isolated_settings.resolve() / "vectors"
        UserStore(storage.engine).create("kept")
    finally:
        storage.close()
    again = open_storage(load_settings())
    try:
        assert UserStore(again.engine).find_by_username("kept") is not None
    finally:
        again.close()


def test_ephemeral_starts_clean_and_is_wiped(monkeypatch, isolated_settings):
    monkeypatch.setenv("OPTIMUS_STORAGE", "ephemeral")
    first = open_storage(load_settings())
    root = first.data_dir
    UserStore(first.engine).create("temporary")
    assert root.exists() and not str(root).startswith(str(isolated_settings))
    first.close()
    assert not root.exists()
    second = open_storage(load_settings())
    try:
        assert UserStore(second.engine).count() == 0
        assert not second.degraded
    finally:
        second.close()
    assert not isolated_settings.exists()  # ephemeral never touches the configured data dir


def test_embedded_with_postgres_url_uses_postgres(monkeypatch, postgres):
    url = postgres.create_database()
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", url)
    storage = open_storage(load_settings())
    try:
        assert storage.backend == "postgresql" and storage.mode == "embedded"
    finally:
        storage.close()
        postgres.drop_database(url)


def test_server_mode_on_postgres(monkeypatch, postgres):
    url = postgres.create_database()
    monkeypatch.setenv("OPTIMUS_STORAGE", "server")
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", url)
    monkeypatch.setenv("OPTIMUS_QDRANT_URL", ":memory:")
    storage = open_storage(load_settings())
    try:
        assert storage.mode == "server" and storage.backend == "postgresql" and not storage.degraded
        assert collect_health(storage).status == "ok"
    finally:
        storage.close()
        postgres.drop_database(url)


def _server_settings(monkeypatch, qdrant=":memory:"):
    monkeypatch.setenv("OPTIMUS_STORAGE", "server")
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", f"postgresql+psycopg://optimus:pw@127.0.0.1:{free_port()}/optimus")
    monkeypatch.setenv("OPTIMUS_QDRANT_URL", qdrant)
    monkeypatch.setenv("OPTIMUS_DB_CONNECT_TIMEOUT", "2")


def test_unreachable_server_database_refuses_to_start(monkeypatch):
    _server_settings(monkeypatch)
    with pytest.raises(StartupError) as err:
        open_storage(load_settings())
    msg = err.value.message
    assert "cannot start" in msg and "unreachable" in msg and "OPTIMUS_FALLBACK=ephemeral" in msg
    assert "pw@" not in msg  # the password never appears


def test_unreachable_qdrant_refuses_to_start(monkeypatch, postgres):
    url = postgres.create_database()
    try:
        _server_settings(monkeypatch, qdrant=f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("OPTIMUS_DATABASE_URL", url)
        with pytest.raises(StartupError, match="Qdrant at http://127.0.0.1:\\d+ is unreachable"):
            open_storage(load_settings())
    finally:
        postgres.drop_database(url)


def test_fallback_starts_ephemeral_and_says_so(monkeypatch):
    _server_settings(monkeypatch)
    monkeypatch.setenv("OPTIMUS_FALLBACK", "ephemeral")
    storage = open_storage(load_settings())
    try:
        assert storage.mode == "ephemeral" and storage.requested_mode == "server"
        assert storage.degraded and "EPHEMERAL" in storage.degraded_reason
        report = collect_health(storage)
        assert report.status == "degraded" and report.degraded_reason == storage.degraded_reason
        UserStore(storage.engine).create("works")  # and it is usable
    finally:
        storage.close()


def test_data_dir_default_is_relative_data(monkeypatch, tmp_path):
    monkeypatch.delenv("OPTIMUS_DATA_DIR")
    storage = open_storage(load_settings())
    try:
        assert storage.data_dir == (Path.cwd() / "data").resolve()
    finally:
        storage.close()
