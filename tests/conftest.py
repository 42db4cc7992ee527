"""Test-wide setup: loopback-only network, isolated settings, real SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests import netguard
from tests.pgserver import PostgresError, PostgresServer

netguard.install()
os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pydantic_ai.models  # noqa: E402

pydantic_ai.models.ALLOW_MODEL_REQUESTS = False  # models are faked at the boundary only

REPO = Path(__file__).resolve().parent.parent
# Derived model files (the ONNX export of the bundled MiniLM) are shared by the whole run.
MODEL_CACHE = Path(os.environ.get("OPTIMUS_TEST_MODEL_CACHE", str(REPO / ".cache" / "test-models")))


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    before = len(netguard.violations)
    yield
    new = netguard.violations[before:]
    if new:
        pytest.fail(f"test reached outside loopback: {new}")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own working dir and data dir, no inherited OPTIMUS_* settings."""
    from core.config import reset_settings_cache

    from core.config import SDK_KEY_NAMES

    for key in list(os.environ):
        if key.startswith("OPTIMUS_") or key.upper() in SDK_KEY_NAMES:
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("OPTIMUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPTIMUS_MODEL_CACHE_DIR", str(MODEL_CACHE))
    reset_settings_cache()
    try:
        yield tmp_path / "data"
    finally:
        reset_settings_cache()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the whole session. Failing to start it fails the tests (no skip)."""
    server = PostgresServer()
    try:
        server.start()
    except PostgresError as exc:
        server.stop()
        pytest.fail(f"PostgreSQL could not start; the suite needs it:\n{exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresServer) -> str:
    """Name of a database migrated to head, cloned cheaply for each test."""
    from core.db import make_engine, migrate

    url = postgres.create_database()
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url.rsplit("/", 1)[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL on the parametrised backend."""
    from core.db import sqlite_url

    if backend == "sqlite":
        yield sqlite_url(tmp_path / "test.db")
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    template = request.getfixturevalue("pg_template")
    url = postgres.create_database(template=template)
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    from core.db import sqlite_url

    if backend == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    from core.db import make_engine, migrate

    eng = make_engine(db_url)
    migrate(eng)  # no-op on the PostgreSQL template clone; real work on SQLite
    try:
        yield eng
    finally:
        eng.dispose()
