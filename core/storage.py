"""Storage modes: where relational data and vectors live.

* ``embedded`` (default): SQLite (WAL) and Qdrant Edge under the data dir; survives restarts.
* ``ephemeral``: the same engines in a temp dir that is wiped on exit; a clean slate each start.
* ``server``: PostgreSQL (``OPTIMUS_DATABASE_URL``) and a Qdrant server (``OPTIMUS_QDRANT_URL``).

If a configured server store is unreachable, start-up fails with a clear message unless
``OPTIMUS_FALLBACK=ephemeral``; then Optimus starts ephemeral and says so everywhere
(:attr:`Storage.degraded_reason`).
"""

from __future__ import annotations

import logging
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from core.config import Settings, StorageMode
from core.db import describe, make_engine, migrate, ping, private_dir, sqlite_url
from core.errors import StartupError, StoreUnavailable

log = logging.getLogger(__name__)

SQLITE_FILE = "optimus.db"
VECTOR_DIR = "vectors"


def database_url_for(settings: Settings) -> str:
    """The relational database URL the settings ask for (ephemeral mode ignores it)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return sqlite_url(Path(settings.data_dir) / SQLITE_FILE)


def check_qdrant_server(url: str, *, timeout: float = 3.0, api_key: str | None = None) -> None:
    """Raise :class:`StoreUnavailable` unless the Qdrant server at ``url`` answers ``/readyz``."""
    if url == ":memory:":  # qdrant-client's in-process mode, used by tests
        return
    request = urllib.request.Request(url.rstrip("/") + "/readyz")
    if api_key:
        request.add_header("api-key", api_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (configured URL)
            if response.status >= 400:
                raise StoreUnavailable(f"Qdrant at {url} answered HTTP {response.status}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreUnavailable(f"Qdrant at {url} is unreachable: {reason}") from exc


@dataclass
class Storage:
    """Opened storage for one process: the SQL engine plus where vectors go."""

    requested_mode: StorageMode
    mode: StorageMode
    engine: Engine
    data_dir: Path
    vector_path: Path | None
    qdrant_url: str | None
    degraded_reason: str | None = None
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def degraded(self) -> bool:
        return self.degraded_reason is not None

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def describe_database(self) -> str:
        return describe(self.engine)

    def close(self) -> None:
        """Dispose connections; in ephemeral mode also wipe the temp dir."""
        self.engine.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _open_ephemeral(settings: Settings, *, requested: StorageMode, reason: str | None) -> Storage:
    tmp = tempfile.TemporaryDirectory(prefix="optimus-ephemeral-")
    root = Path(tmp.name)
    engine = make_engine(sqlite_url(root / SQLITE_FILE))
    migrate(engine)
    return Storage(
        requested_mode=requested,
        mode="ephemeral",
        engine=engine,
        data_dir=root,
        vector_path=root / VECTOR_DIR,
        qdrant_url=None,
        degraded_reason=reason,
        _tmp=tmp,
    )


def _unreachable(settings: Settings, problem: str) -> Storage:
    if settings.fallback == "ephemeral":
        reason = (
            f"{problem}. Running EPHEMERAL because OPTIMUS_FALLBACK=ephemeral: "
            "nothing you do now is kept after a restart."
        )
        log.error(reason)
        return _open_ephemeral(settings, requested=settings.storage, reason=reason)
    raise StartupError(
        f"Optimus cannot start: {problem}. Start the database, fix OPTIMUS_DATABASE_URL / "
        "OPTIMUS_QDRANT_URL, or set OPTIMUS_FALLBACK=ephemeral to run a throwaway instance meanwhile."
    )


def open_storage(settings: Settings) -> Storage:
    """Open the storage the settings describe, run migrations, and apply the fallback rule."""
    if settings.storage == "ephemeral":
        return _open_ephemeral(settings, requested="ephemeral", reason=None)

    engine = make_engine(database_url_for(settings), connect_timeout=settings.db_connect_timeout)
    try:
        ping(engine)
        if settings.storage == "server":
            assert settings.qdrant_url is not None  # enforced by Settings
            api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            check_qdrant_server(settings.qdrant_url, timeout=settings.db_connect_timeout, api_key=api_key)
    except StoreUnavailable as exc:
        engine.dispose()
        return _unreachable(settings, exc.message)

    migrate(engine)
    if settings.storage == "server":
        return Storage(
            requested_mode="server",
            mode="server",
            engine=engine,
            data_dir=Path(settings.data_dir).resolve(),
            vector_path=None,
            qdrant_url=settings.qdrant_url,
        )
    data_dir = Path(settings.data_dir).resolve()
    private_dir(data_dir)  # memories, the database and the JWT secret: nobody else's to read
    return Storage(
        requested_mode="embedded",
        mode="embedded",
        engine=engine,
        data_dir=data_dir,
        vector_path=data_dir / VECTOR_DIR,
        qdrant_url=None,
    )
