"""The audit log: an append-only record of who did what to whom, when and from where.

Services call :meth:`AuditLog.record` once per action. Nothing here deletes an event, and the one
change ever made to one is :meth:`AuditLog.pseudonymise`, when a person is erased: the log keeps
what happened, not who it was. A detail is a small JSON object about the action; keys that could
carry a secret (password, token, secret, hash, captcha answer…) are replaced by ``"[redacted]"``
before they are stored, so a careless caller cannot leak one into the trail. Reading and
exporting are for admins.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from core.schema import audit_events
from core.users import User, require_role

# Every event type. Names are ``area.verb``; a new one is added here, not made up at the call site.
EVENTS = frozenset({
    "account.create",      # someone registered (or an admin/CLI/OIDC created them)
    "account.erase",       # a person and their data were deleted
    "login.ok",
    "login.failed",        # wrong password, unknown user or a wrong/missing CAPTCHA answer
    "login.locked",        # refused: account or address locked, or an admin's lock
    "logout",              # one session, or all of them ("everywhere")
    "session.revoke",      # an admin (or the owner, from the sessions list) ended a session
    "password.change",
    "role.change",
    "user.lock",
    "user.unlock",
    "memory.add",
    "memory.update",
    "memory.delete",
    "export",              # a person downloaded their data
    "apikey.create",
    "apikey.revoke",
    "admin.maintenance",   # retry failed jobs, cleanup, reindex…
    "audit.export",
})
DETAIL_MAX_CHARS = 2000
REDACTED = "[redacted]"
# Detail keys whose values are words a person chose or that identify them (a key's name, an email);
# erasure removes them from the events about that person.
PERSONAL_DETAIL_KEYS = frozenset({"name", "username", "email", "title", "user_agent", "text"})
_SECRET_KEY = re.compile(r"pass|token|secret|hash|captcha|answer|cookie|authorization|api_?key", re.IGNORECASE)
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("id", "time", "event", "actor_id", "subject_id", "ip", "detail")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    event: str
    actor_id: str | None  # who did it; None for the system, the CLI or an anonymous caller
    subject_id: str | None  # what it was done to: a user, session, memory or key id
    ip: str | None
    detail: dict[str, Any]


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): (REDACTED if _SECRET_KEY.search(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _scrub(value: Any, user_id: str, alias: str) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, user_id, alias) for k, v in value.items() if k not in PERSONAL_DETAIL_KEYS}
    if isinstance(value, list):
        return [_scrub(v, user_id, alias) for v in value]
    if isinstance(value, str):
        return value.replace(user_id, alias)
    return value


def _encode_detail(detail: dict[str, Any] | None) -> str | None:
    if not detail:
        return None
    text = json.dumps(_redact(detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if len(text) > DETAIL_MAX_CHARS:  # keep it small: a summary, never a payload
        text = json.dumps({"truncated": True, "keys": sorted(str(k) for k in detail)[:50]})
    return text


def _row(r) -> AuditEvent:
    return AuditEvent(id=r.id, at=r.created_at, event=r.event, actor_id=r.actor_id, subject_id=r.subject_id,
                      ip=r.ip, detail=json.loads(r.detail) if r.detail else {})


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheet programs run cells that start like a formula; an audit export must not.
    return "'" + text if text.startswith(_CSV_FORMULA) else text


class AuditLog:
    """Append-only audit events in the relational database. Thread-safe (one transaction per call)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))

    def record(
        self,
        event: str,
        *,
        actor_id: str | None,
        subject_id: str | None = None,
        ip: str | None = None,
        detail: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Append one event and return its id.

        Pass ``conn`` to write it in the caller's transaction, so the action and its event commit
        (or roll back) together. Secret-looking keys in ``detail`` are redacted.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}; add it to core.audit.EVENTS")
        values = dict(
            created_at=self._clock(), event=event, actor_id=actor_id, subject_id=subject_id,
            ip=None if ip is None else str(ip)[:64], detail=_encode_detail(detail),
        )
        statement = insert(audit_events).values(**values).returning(audit_events.c.id)
        if conn is not None:
            return conn.execute(statement).scalar_one()
        with self._engine.begin() as own:
            return own.execute(statement).scalar_one()

    def pseudonymise(self, user_id: str, alias: str, *, conn: Connection) -> int:
        """Erase a person from the log, keeping the events: ``user_id`` becomes ``alias`` wherever it
        appears (actor, subject, anywhere in a detail), the detail loses its personal fields
        (:data:`PERSONAL_DETAIL_KEYS`) and events by or about the person lose their address.
        Runs in the caller's transaction; returns how many events changed."""
        e = audit_events.c
        rows = conn.execute(select(e.id, e.actor_id, e.subject_id, e.detail).where(
            or_(e.actor_id == user_id, e.subject_id == user_id, e.detail.contains(user_id, autoescape=True)))).all()
        for row in rows:
            values: dict[str, Any] = {}
            if row.actor_id == user_id:
                values.update(actor_id=alias[:32], ip=None)
            if row.subject_id == user_id:
                values.update(subject_id=alias, ip=None)
            if row.detail:
                values["detail"] = json.dumps(_scrub(json.loads(row.detail), user_id, alias), ensure_ascii=False,
                                              sort_keys=True, separators=(",", ":"))
            conn.execute(update(audit_events).where(e.id == row.id).values(**values))
        return len(rows)

    def query(
        self,
        *,
        viewer: User,
        actor_id: str | None = None,
        subject_id: str | None = None,
        events: str | Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Events matching every given filter, newest first. Admins only.

        ``since`` is inclusive, ``until`` exclusive; page with ``before_id`` = the last id seen.
        """
        require_role(viewer, "admin")
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(max(1, min(int(limit), 10_000)))
        if actor_id is not None:
            query = query.where(audit_events.c.actor_id == actor_id)
        if subject_id is not None:
            query = query.where(audit_events.c.subject_id == subject_id)
        if events is not None:
            names = [events] if isinstance(events, str) else list(events)
            query = query.where(audit_events.c.event.in_(names))
        if since is not None:
            query = query.where(audit_events.c.created_at >= since)
        if until is not None:
            query = query.where(audit_events.c.created_at < until)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        with self._engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).all()]

    def export_csv(self, *, viewer: User, ip: str | None = None, limit: int = 10_000, **filters: Any) -> str:
        """The events :meth:`query` would return, as CSV (oldest first). Admins only; the export is audited."""
        rows = self.query(viewer=viewer, limit=limit, **filters)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for e in reversed(rows):
            writer.writerow([
                e.id, e.at.isoformat(), e.event, _csv_cell(e.actor_id), _csv_cell(e.subject_id), _csv_cell(e.ip),
                _csv_cell(json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else ""),
            ])
        self.record("audit.export", actor_id=viewer.id, ip=ip,
                    detail={"rows": len(rows), "filters": {k: v for k, v in filters.items() if v is not None}})
        return out.getvalue()
