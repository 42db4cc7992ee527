"""Backup and restore of an embedded install: one consistent archive of everything a person has.

An archive (``optimus-backup-<UTC time>.tar.gz``) holds

- ``optimus.db`` — the SQLite database copied with SQLite's online backup API (accounts, sessions,
  conversations, messages, memory history, usage, audit log, preferences, API keys, queue);
- ``vectors/<collection>/`` — the Qdrant Edge shard, flushed and copied file by file. Qdrant Edge
  cannot create snapshots (only restore server ones), so the shard is copied while its lock is
  held: no search or write runs during the copy;
- ``manifest.json`` — format, time, schema revision, qdrant-edge-py version, embedding model and
  dimensions, and the counts a restore is checked against.

Consistency: the whole backup runs under the memory service's write lock, so no memory or history
row changes between the database copy and the shard copy; chats may go on meanwhile (a message
written during the backup may or may not be in it, never half of it).

Restore unpacks an archive into an **empty** data dir (start Optimus on it afterwards); it checks
the manifest, the schema revision (older archives are migrated forward at the next start) and the
counts. Secrets are not in the archive: the JWT secret and provider keys stay with the install, so
people sign in again after a restore onto another machine. The archive holds everyone's personal
data: keep it as carefully as the data dir.

Server mode (PostgreSQL + Qdrant server) uses those engines' own tools: ``pg_dump``/``pg_restore``
for the database and the Qdrant snapshot API for the ``memories`` collection (README, "Backup and
restore"); :func:`create_backup` says so instead of copying files it does not own.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from core.db import current_revision, make_engine, sqlite_url
from core.errors import ConfigError, ValidationError
from core.schema import conversations, memory_history, messages, users

if TYPE_CHECKING:
    from core.runtime import Runtime

FORMAT = 1
DB_NAME = "optimus.db"
VECTORS = "vectors"


@dataclass(frozen=True, slots=True)
class BackupCounts:
    users: int
    conversations: int
    messages: int
    memories: int
    history: int


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    counts: BackupCounts
    bytes: int
    seconds: float


def _counts(engine: Any, memories: int) -> BackupCounts:
    with engine.connect() as conn:
        def n(table: Any) -> int:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

        return BackupCounts(users=n(users), conversations=n(conversations), messages=n(messages),
                            memories=memories, history=n(memory_history))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def create_backup(runtime: Runtime, target_dir: Path | str) -> BackupReport:
    """Write one consistent archive of this install into ``target_dir``; returns what it holds."""
    storage = runtime.storage
    if storage.mode != "embedded":
        raise ConfigError(
            "Backups from the app cover the embedded install (SQLite + Qdrant Edge). "
            + ("This install is ephemeral: there is nothing to keep." if storage.mode == "ephemeral" else
               "In server mode back up PostgreSQL with pg_dump and the 'memories' collection with Qdrant's "
               "snapshot API (README, 'Backup and restore').")
        )
    started = time.perf_counter()
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    archive = target_dir / f"optimus-backup-{stamp}.tar.gz"
    memory = runtime.memory
    store = memory.store
    with tempfile.TemporaryDirectory(prefix=".optimus-backup-", dir=target_dir) as tmp:
        work = Path(tmp)
        with memory.writes_paused():
            raw = storage.engine.raw_connection()
            try:
                destination = sqlite3.connect(work / DB_NAME)
                try:
                    raw.driver_connection.backup(destination)  # SQLite's online backup: a consistent copy
                finally:
                    destination.close()
            finally:
                raw.close()
            store.copy_shard_to(work / VECTORS / store.collection_name)
            counts = _counts(storage.engine, memory.count())
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "schema_revision": current_revision(storage.engine),
            "qdrant_edge": _version("qdrant-edge-py"),
            "collection": store.collection_name,
            "embedding_dims": store.embedding_model_dims,
            "embedder": runtime.settings.embedder,  # the vector space; the shard's own record says the same
            "embedder_backend": runtime.settings.embedder_backend,
            "counts": asdict(counts),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            for item in sorted(work.iterdir()):
                tar.add(item, arcname=item.name)
        os.chmod(partial, 0o600)
        os.replace(partial, archive)
    return BackupReport(archive, counts, archive.stat().st_size, time.perf_counter() - started)


def read_manifest(archive: Path | str) -> dict[str, Any]:
    """The manifest of an archive, checked to be one of ours."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise ValidationError(f"{archive} is not an Optimus backup ({type(exc).__name__}).", field="archive") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValidationError(f"{archive} is not an Optimus backup of format {FORMAT}.", field="archive")
    return manifest


def _points(shard: Path) -> int:
    """How many vectors a restored shard holds (opened and closed again: the app opens it later)."""
    import qdrant_edge as qe

    edge = qe.EdgeShard.load(str(shard))
    try:
        return int(edge.count(qe.CountRequest(exact=True)))
    finally:
        edge.close()


def restore_backup(archive: Path | str, data_dir: Path | str) -> BackupCounts:
    """Unpack ``archive`` into the empty ``data_dir`` and check it against its manifest.

    Start Optimus with ``OPTIMUS_DATA_DIR=data_dir`` afterwards. Refuses a non-empty data dir (a
    restore never merges into or overwrites a live install).
    """
    manifest = read_manifest(archive)
    data_dir = Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValidationError(f"{data_dir} is not empty: restore into a new, empty data directory.",
                              field="data_dir")
    have = _version("qdrant-edge-py")
    if manifest.get("qdrant_edge") not in (have, "unknown") and have.split(".")[:2] != str(
            manifest.get("qdrant_edge")).split(".")[:2]:
        raise ConfigError(f"The archive's vector shard was written by qdrant-edge-py {manifest.get('qdrant_edge')}; "
                          f"this install has {have}. Restore with the version that wrote it.")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise ValidationError("The archive holds links or devices; refusing to restore it.", field="archive")
        tar.extractall(data_dir, filter="data")
    (data_dir / "manifest.json").unlink(missing_ok=True)
    engine = make_engine(sqlite_url(data_dir / DB_NAME))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA integrity_check")
        counts = _counts(engine, _points(data_dir / VECTORS / str(manifest["collection"])))
    finally:
        engine.dispose()
    expected = BackupCounts(**manifest["counts"])
    if counts != expected:
        shutil.rmtree(data_dir)
        raise ValidationError(f"The restored database does not match the archive's manifest ({counts} vs "
                              f"{expected}); nothing was kept.", field="archive")
    return counts
