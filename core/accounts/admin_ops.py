"""What an admin does to other accounts: roles, locks, deletion.

Roles are ``user`` and ``admin``; every operation checks :func:`~core.users.require_role`, and the
last unlocked admin can be neither demoted, locked nor deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, select, update

from core.accounts.sessions import revoke_where
from core.audit import AuditLog
from core.errors import NotFound, PermissionDenied, ValidationError
from core.schema import auth_sessions, login_attempts, users
from core.users import Role, User, require_role, user_from_row


class AdminOps:
    """Role changes, locks and account deletion, each audited."""

    def __init__(self, engine: Engine, *, audit: AuditLog, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._audit = audit
        self._clock = clock

    def _unlocked_admins_except(self, conn: Connection, user_id: str) -> int:
        # FOR UPDATE serialises concurrent admin changes on PostgreSQL (SQLite has one writer anyway).
        ids = conn.execute(
            select(users.c.id).where(users.c.role == "admin", users.c.locked_at.is_(None)).with_for_update()
        ).scalars().all()
        return sum(1 for i in ids if i != user_id)

    def _target(self, conn: Connection, user_id: str) -> User:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
        if row is None:
            raise NotFound("No such user.")
        return user_from_row(row)

    def set_role(self, actor: User, user_id: str, role: Role, *, ip: str | None = None) -> User:
        """Admin: change a user's role. The last unlocked admin cannot be demoted."""
        require_role(actor, "admin")
        if role not in ("user", "admin"):
            raise ValidationError("Role must be 'user' or 'admin'.", field="role")
        with self._engine.begin() as conn:
            target = self._target(conn, user_id)
            if target.role == role:
                return target
            if target.role == "admin" and not target.locked and self._unlocked_admins_except(conn, user_id) == 0:
                raise PermissionDenied("This is the last administrator; make someone else an admin first.")
            conn.execute(update(users).where(users.c.id == user_id).values(role=role))
            self._audit.record("role.change", actor_id=actor.id, subject_id=user_id, ip=ip,
                               detail={"from": target.role, "to": role}, conn=conn)
        return replace(target, role=role)

    def lock_user(self, actor: User, user_id: str, *, ip: str | None = None) -> User:
        """Admin: lock an account (its sessions end; logins are refused until unlocked)."""
        require_role(actor, "admin")
        now = self._clock()
        with self._engine.begin() as conn:
            target = self._target(conn, user_id)
            if target.locked:
                return target
            if target.role == "admin" and self._unlocked_admins_except(conn, user_id) == 0:
                raise PermissionDenied("This is the last administrator and cannot be locked.")
            conn.execute(update(users).where(users.c.id == user_id).values(locked_at=now))
            ended = revoke_where(conn, auth_sessions.c.user_id == user_id, "locked", now)
            self._audit.record("user.lock", actor_id=actor.id, subject_id=user_id, ip=ip,
                               detail={"sessions_ended": ended}, conn=conn)
        return replace(target, locked_at=now)

    def unlock_user(self, actor: User | None, user_id: str, *, ip: str | None = None) -> User:
        """Admin (or the operator's CLI, ``actor=None``): lift an admin's lock and clear failed logins."""
        if actor is not None:
            require_role(actor, "admin")
        with self._engine.begin() as conn:
            target = self._target(conn, user_id)
            conn.execute(update(users).where(users.c.id == user_id).values(locked_at=None))
            # Also forgive the brute-force counter: the person asked for help and was identified.
            conn.execute(delete(login_attempts).where(login_attempts.c.username == target.username,
                                                      login_attempts.c.outcome == "failed"))
            self._audit.record("user.unlock", actor_id=actor.id if actor else None, subject_id=user_id, ip=ip,
                               detail={"by": "admin" if actor else "cli"}, conn=conn)
        return replace(target, locked_at=None)

    def delete_user(self, actor: User, user_id: str, *, ip: str | None = None) -> None:
        """Delete an account row (sessions, conversations… cascade). Admins, or the user themself.

        Vector memories are not touched here; the account-erasure service removes those first.
        """
        require_role(actor, "user" if actor.id == user_id else "admin")
        with self._engine.begin() as conn:
            self._deletable(conn, user_id)
            conn.execute(delete(users).where(users.c.id == user_id))
            # No username in the detail: erasure pseudonymises ids in the log, a name would undo that.
            self._audit.record("account.erase", actor_id=actor.id, subject_id=user_id, ip=ip,
                               detail={"by": "self" if actor.id == user_id else "admin"}, conn=conn)

    def check_delete(self, actor: User, user_id: str) -> None:
        """Raise what :meth:`delete_user` would raise, changing nothing: erasure asks first, so it never
        erases a person's data and then finds the account may not go."""
        require_role(actor, "user" if actor.id == user_id else "admin")
        with self._engine.begin() as conn:
            self._deletable(conn, user_id)

    def _deletable(self, conn: Connection, user_id: str) -> User:
        target = self._target(conn, user_id)
        if target.role == "admin" and not target.locked and self._unlocked_admins_except(conn, user_id) == 0:
            raise PermissionDenied("This is the last administrator and cannot be deleted; make someone else an "
                                   "admin first.")
        return target
