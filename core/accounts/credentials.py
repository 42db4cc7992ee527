"""Accounts with a password: registration, the operator's admins, and password changes.

Every new or changed password passes :func:`~core.accounts.passwords.check_password_strength`
(with the username and email counted as guessable). Changing a password ends the account's other
sessions; guessing the current password counts like guessing at login.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, select, update

from core.accounts.passwords import PasswordHasher, check_hash, check_password_strength
from core.accounts.sessions import revoke_where
from core.accounts.throttle import LoginThrottle, lock_message
from core.audit import AuditLog
from core.errors import InvalidCredentials, NotFound, TooManyAttempts, ValidationError
from core.schema import auth_sessions, users
from core.users import Role, User, UserStore, normalise_username, require_role


class Credentials:
    """Creates password accounts and changes their passwords."""

    def __init__(self, engine: Engine, *, users: UserStore, hasher: PasswordHasher, throttle: LoginThrottle,
                 audit: AuditLog, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._users = users
        self._hasher = hasher
        self._throttle = throttle
        self._audit = audit
        self._clock = clock

    def register(self, username: str, password: str, *, email: str | None = None, ip: str | None = None) -> User:
        """Create an account with role ``user``. A weak password raises :class:`ValidationError` saying why."""
        return self._create(username, password, email=email, role="user", ip=ip, method="password")

    def create_admin(self, username: str, password: str, *, email: str | None = None, via: str = "cli") -> User:
        """The operator creates an admin (``python -m core create-admin`` or ``OPTIMUS_ADMIN_*``); same password
        rules."""
        return self._create(username, password, email=email, role="admin", ip=None, method=via)

    def _create(self, username: str, password: str, *, email: str | None, role: Role, ip: str | None,
                method: str) -> User:
        name = normalise_username(username)
        check_password_strength(password, user_inputs=(name, (email or "").split("@")[0]))
        user = self._users.create(name, email=email, role=role, password_hash=self._hasher.hash(password))
        self._audit.record("account.create", actor_id=user.id if method == "password" else None, subject_id=user.id,
                           ip=ip, detail={"role": role, "method": method})
        return user

    def change_password(
        self, user_id: str, old_password: str, new_password: str, *, current_jti: str | None = None,
        ip: str | None = None,
    ) -> int:
        """Set a new password after checking the old one; end every other session. Returns how many ended."""
        now = self._clock()
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
            if row is None:
                raise NotFound("No such user.")
            failures, locked_until = self._throttle.account_state(conn, row.username, now)
        if locked_until is not None:  # guessing the current password counts like guessing at login
            self._throttle.refuse(row.username, ip, now, row.id, "account", locked_until)
        if not check_hash(old_password or "", row.password_hash or self._hasher.dummy()) or row.password_hash is None:
            locked_until = self._throttle.note_failure(row.username, ip, now, failures)
            if locked_until is not None:
                raise TooManyAttempts(lock_message("this account", locked_until - now),
                                      retry_after=(locked_until - now).total_seconds())
            raise InvalidCredentials("Your current password is not right.")
        check_password_strength(new_password, user_inputs=(row.username, (row.email or "").split("@")[0]))
        if new_password == old_password:
            raise ValidationError("Choose a password different from the current one.", field="password")
        new_hash = self._hasher.hash(new_password)
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
            ended = revoke_where(conn, auth_sessions.c.user_id == user_id, "password", now, keep_jti=current_jti)
            self._audit.record("password.change", actor_id=user_id, subject_id=user_id, ip=ip,
                               detail={"sessions_ended": ended}, conn=conn)
        return ended

    def set_password(self, actor: User | None, user_id: str, new_password: str, *, ip: str | None = None) -> int:
        """An admin (or, with ``actor=None``, the operator's CLI) sets a password; ends all of its sessions."""
        if actor is not None:
            require_role(actor, "admin")
        target = self._users.get(user_id)
        check_password_strength(new_password, user_inputs=(target.username, (target.email or "").split("@")[0]))
        new_hash = self._hasher.hash(new_password)
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
            ended = revoke_where(conn, auth_sessions.c.user_id == user_id, "password", self._clock())
            self._audit.record("password.change", actor_id=actor.id if actor else None, subject_id=user_id, ip=ip,
                               detail={"sessions_ended": ended, "by": "admin" if actor else "cli"}, conn=conn)
        return ended
