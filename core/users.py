"""User rows: the identity every conversation, memory and usage record hangs off.

Credentials, sessions and the rules about roles live in ``core.accounts``; this module stores people
and answers the one RBAC question every service asks (:func:`require_role`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from core.errors import InvalidCredentials, NotFound, PermissionDenied, ValidationError
from core.schema import users

Role = Literal["user", "admin"]
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")
_ROLE_RANK = {"user": 0, "admin": 1}


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    email: str | None
    role: Role
    created_at: datetime
    locked_at: datetime | None = None  # set while an admin has locked the account

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


def require_role(user: User | None, role: Role) -> User:
    """Return ``user`` if it holds ``role`` (admins hold every role) and is not locked.

    Raises :class:`InvalidCredentials` when nobody is signed in (``None``), :class:`PermissionDenied`
    otherwise. Pass the user as just loaded or verified, never a role read from a token or the
    session state.
    """
    if user is None:
        raise InvalidCredentials("Please sign in first.")
    if user.locked:
        raise PermissionDenied("This account is locked. Ask an administrator to unlock it.")
    if _ROLE_RANK.get(user.role, -1) < _ROLE_RANK[role]:
        raise PermissionDenied("Only administrators can do that.")
    return user


def normalise_username(raw: str) -> str:
    """Usernames are case-insensitive: stored lower-case, 3–64 of ``a-z 0-9 _ . -``."""
    name = (raw or "").strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise ValidationError(
            "Usernames are 3–64 characters: letters, digits, '_', '.' or '-', starting with a letter or digit.",
            field="username",
        )
    return name


def user_from_row(row) -> User:
    return User(id=row.id, username=row.username, email=row.email, role=row.role, created_at=row.created_at,
                locked_at=row.locked_at)


class UserStore:
    """Create and look up users. Thread-safe: every call uses its own connection."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))

    def create(
        self, username: str, *, email: str | None = None, role: Role = "user", password_hash: str | None = None
    ) -> User:
        """A new user; ``password_hash`` comes from :mod:`core.accounts.credentials` (which checks its strength)."""
        name = normalise_username(username)
        if role not in ("user", "admin"):
            raise ValidationError("Role must be 'user' or 'admin'.", field="role")
        email = (email or "").strip() or None
        if email is not None and ("@" not in email or len(email) > 320 or any(c.isspace() for c in email)):
            raise ValidationError("That email address does not look right.", field="email")
        user = User(id=uuid.uuid4().hex, username=name, email=email, role=role, created_at=self._clock())
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(users).values(
                        id=user.id, username=name, email=email, role=role, created_at=user.created_at,
                        password_hash=password_hash,
                    )
                )
        except IntegrityError:
            raise ValidationError(f"The username '{name}' is taken.", field="username") from None
        return user

    def get(self, user_id: str) -> User:
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        if row is None:
            raise NotFound("No such user.")
        return user_from_row(row)

    def find_by_username(self, username: str) -> User | None:
        name = (username or "").strip().lower()
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == name)).first()
        return None if row is None else user_from_row(row)

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def list_users(self, *, role: Role | None = None, limit: int = 500, offset: int = 0) -> list[User]:
        """Users by username, for the admin page."""
        query = select(users).order_by(users.c.username).limit(max(1, min(limit, 5000))).offset(max(0, offset))
        if role is not None:
            query = query.where(users.c.role == role)
        with self._engine.connect() as conn:
            return [user_from_row(r) for r in conn.execute(query).all()]
