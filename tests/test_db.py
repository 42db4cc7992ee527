import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from core.db import current_revision, downgrade, head_revision, make_engine, migrate, ping
from core.errors import ConfigError, StoreUnavailable
from core.schema import metadata
from tests.pgserver import free_port

TABLES = {"users", "conversations", "messages"}


def _tables(engine):
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_to_head_then_round_trip(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        assert _tables(engine) == set()
        migrate(engine)
        assert current_revision(engine) == head_revision()
        assert TABLES <= _tables(engine)
        downgrade(engine, "base")
        assert _tables(engine) == set()
        assert current_revision(engine) is None
        migrate(engine)
        assert TABLES <= _tables(engine)
        migrate(engine)  # idempotent at head
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_match_the_declared_schema(engine):
    """A migration that forgets a column or index shows up here as a diff."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_foreign_keys_are_enforced(engine):
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conversations (id, user_id, title, created_at, updated_at, message_count) "
                "VALUES ('c1', 'no-such-user', 't', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
            )
        )


def test_sqlite_runs_in_wal_mode(tmp_path):
    from core.db import sqlite_url

    engine = make_engine(sqlite_url(tmp_path / "nested" / "dir" / "x.db"))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_postgres_url_switches_backend_without_code_change(postgres):
    engine = make_engine(postgres.url().replace("+psycopg", ""))  # plain postgresql:// also works
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        ping(engine)
    finally:
        engine.dispose()


def test_unreachable_database_is_store_unavailable():
    engine = make_engine(f"postgresql+psycopg://optimus@127.0.0.1:{free_port()}/x", connect_timeout=2)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        ping(engine)


@pytest.mark.parametrize("url", ["not a url", "mysql://u@127.0.0.1/x"])
def test_bad_database_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="OPTIMUS_DATABASE_URL|Unsupported database"):
        make_engine(url)
