"""Relational storage: one SQLAlchemy engine factory for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on; PostgreSQL is chosen by a
``postgresql+psycopg://`` URL and nothing else changes. The schema is owned by the Alembic
migrations under ``migrations/``; :func:`migrate` runs ``upgrade head`` at start.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.errors import ConfigError, StoreUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_migrate_lock = threading.Lock()
_MIGRATION_LOCK_KEY = 7_011_771  # arbitrary, constant across releases


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) readable by this user only (0700) if it does not exist."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask; this is not


def private_file(path: Path) -> None:
    """Create an empty ``path`` readable by this user only (0600) if it does not exist, in a private
    directory. SQLite gives its -wal and -shm files the mode of the database file."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{Path(path).resolve()}"


def _on_sqlite_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        # WAL + NORMAL is durable across process crashes; only an OS crash may lose the last commit.
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def make_engine(url: str, *, connect_timeout: float = 5.0, echo: bool = False) -> Engine:
    """An engine for ``url``. SQLite files get WAL + foreign keys; their directory is created."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ConfigError(
            f"OPTIMUS_DATABASE_URL is not a database URL ({exc}). "
            "Use sqlite:///path/to/optimus.db or postgresql+psycopg://user:pass@host:5432/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        engine = create_engine(
            parsed,
            echo=echo,
            hide_parameters=True,  # errors and echo never quote statement parameters (memory and message text)
            connect_args={"check_same_thread": False, "timeout": 10},
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            echo=echo,
            hide_parameters=True,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": max(1, int(connect_timeout))},
        )
    raise ConfigError(
        f"Unsupported database '{backend}'. Optimus runs on SQLite (default) or PostgreSQL "
        "(OPTIMUS_DATABASE_URL=postgresql+psycopg://...)."
    )


def describe(engine: Engine) -> str:
    """Engine URL with the password hidden, for logs and the health page."""
    return engine.url.render_as_string(hide_password=True)


def ping(engine: Engine) -> None:
    """Raise :class:`StoreUnavailable` if the database cannot answer ``SELECT 1``."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreUnavailable(f"Database {describe(engine)} is unreachable: {reason}") from exc


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", describe(engine))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest migration)."""
    from alembic import command

    cfg = _alembic_config(engine)
    with _migrate_lock, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together must not run the same migration twice.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``base`` empties it)."""
    from alembic import command

    cfg = _alembic_config(engine)
    with _migrate_lock, engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(create_engine("sqlite://"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
