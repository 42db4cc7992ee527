"""Health report shared by the home page, the admin page and the API's ``/health``.

It says which storage mode is running (and loudly if it is a fallback), whether each
component answers, how much data there is and how much disk it takes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select, text

from core.db import current_revision, head_revision, ping
from core.errors import AppError
from core.schema import conversations, messages, users
from core.storage import Storage

Status = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Status
    mode: str
    requested_mode: str
    degraded_reason: str | None
    components: list[ComponentStatus]
    counts: dict[str, int]
    sizes: dict[str, int]
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "mode": self.mode,
            "requested_mode": self.requested_mode,
            "degraded_reason": self.degraded_reason,
            "components": [
                {"name": c.name, "ok": c.ok, "detail": c.detail, "latency_ms": c.latency_ms} for c in self.components
            ],
            "counts": self.counts,
            "sizes": self.sizes,
            "checked_at": self.checked_at.isoformat(),
        }


Probe = Callable[[], ComponentStatus]


def dir_size(path: Path) -> int:
    """Bytes allocated under ``path`` (0 if it does not exist)."""
    total = 0
    if not path.exists():
        return 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def _database_status(storage: Storage) -> ComponentStatus:
    started = time.perf_counter()
    try:
        ping(storage.engine)
        revision = current_revision(storage.engine)
    except AppError as exc:
        return ComponentStatus("database", False, exc.message)
    latency = (time.perf_counter() - started) * 1000
    head = head_revision()
    name = "PostgreSQL" if storage.backend == "postgresql" else "SQLite (WAL)"
    if revision != head:
        return ComponentStatus("database", False, f"{name}: schema at {revision}, expected {head}", latency)
    return ComponentStatus("database", True, f"{name} · {storage.describe_database()} · schema {revision}", latency)


def _data_dir_status(storage: Storage) -> ComponentStatus:
    path = storage.data_dir
    if not path.exists():
        return ComponentStatus("data directory", storage.mode == "server", f"{path} does not exist")
    writable = os.access(path, os.W_OK)
    free = shutil.disk_usage(path).free
    detail = f"{path} · {free / 2**30:.1f} GiB free" + ("" if writable else " · NOT WRITABLE")
    return ComponentStatus("data directory", writable, detail)


def _database_bytes(storage: Storage) -> int:
    if storage.backend == "postgresql":
        with storage.engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    database = storage.engine.url.database
    if not database or database == ":memory:":
        return 0
    return sum(os.path.getsize(p) for p in (database, database + "-wal", database + "-shm") if os.path.exists(p))


def collect_health(storage: Storage, *, probes: Iterable[Probe] = (), extra_counts: dict[str, int] | None = None) -> HealthReport:
    """Check every component; later subsystems (memory, queue) add their own ``probes``."""
    components = [_database_status(storage), _data_dir_status(storage)]
    for probe in probes:
        try:
            components.append(probe())
        except Exception as exc:  # a probe that crashes is a component that is down
            components.append(ComponentStatus(getattr(probe, "__name__", "component"), False, str(exc)))

    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    if components[0].ok:
        with storage.engine.connect() as conn:
            for name, table in (("users", users), ("conversations", conversations), ("messages", messages)):
                counts[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        sizes["database_bytes"] = _database_bytes(storage)
    counts.update(extra_counts or {})
    sizes["data_dir_bytes"] = dir_size(storage.data_dir) if storage.mode != "server" else 0

    if not all(c.ok for c in components):
        status: Status = "down" if not components[0].ok else "degraded"
    else:
        status = "degraded" if storage.degraded else "ok"
    return HealthReport(
        status=status,
        mode=storage.mode,
        requested_mode=storage.requested_mode,
        degraded_reason=storage.degraded_reason,
        components=components,
        counts=counts,
        sizes=sizes,
    )
