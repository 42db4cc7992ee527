"""API keys for the REST API: each key acts as its owner account, and only as that account.

A key is ``om_`` followed by 43 URL-safe random characters (256 bits). It is shown once, when
created; the database keeps its SHA-256 and a short prefix to recognise it by in lists. A key
stops working when it is revoked, when its owner is locked, or when its owner is deleted (the
row goes with the user). Admins' keys are scoped to their own account like everybody else's.

CLI (prints a new key once)::

    python -m core apikey create --username alice --name "laptop script"
    python -m core apikey list --username alice
    python -m core apikey revoke --username alice --key-id 3f2a...
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import EllipsisType
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, insert, select, update

from core.errors import InvalidCredentials, NotFound, PermissionDenied, ValidationError
from core.schema import api_keys, users

if TYPE_CHECKING:
    from core.audit import AuditLog

KEY_PREFIX = "om_"
KEY_RANDOM_BYTES = 32
SHOWN_PREFIX_CHARS = 11  # "om_" + 8 characters: enough to tell keys apart, useless for guessing
MAX_ACTIVE_KEYS = 50
MAX_NAME_CHARS = 100
_INVALID = "Invalid or revoked API key."


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed to its owner (never the key itself)."""

    id: str
    owner_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    usage_count: int
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who a verified key acts as."""

    key_id: str
    key_name: str
    owner_id: str
    username: str
    email: str | None
    role: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def looks_like_key(text: str) -> bool:
    return isinstance(text, str) and text.startswith(KEY_PREFIX) and 20 <= len(text) <= 200


def _row_to_key(row) -> ApiKey:
    return ApiKey(
        id=row.id, owner_id=row.owner_id, name=row.name, prefix=row.prefix, created_at=row.created_at,
        last_used_at=row.last_used_at, usage_count=int(row.usage_count or 0), revoked_at=row.revoked_at,
    )


class ApiKeyStore:
    """Create, verify, list and revoke API keys. Thread-safe: every call uses its own transaction.

    With an ``audit`` log, creating and revoking a key are recorded in the same transaction
    (``actor_id`` defaults to the owner; the CLI passes ``None``, the system).
    """

    def __init__(self, engine: Engine, *, audit: AuditLog | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))

    def _record(self, conn: Connection, event: str, owner_id: str, key: ApiKey,
                actor_id: str | None | EllipsisType, ip: str | None) -> None:
        if self._audit is not None:
            self._audit.record(event, actor_id=owner_id if actor_id is ... else actor_id, subject_id=key.id, ip=ip,
                               detail={"owner_id": owner_id, "name": key.name, "prefix": key.prefix}, conn=conn)

    def create(self, owner_id: str, name: str, *, actor_id: str | None | EllipsisType = ...,
               ip: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``owner_id``: the stored record and the plaintext, which is never shown again.
        ``ip`` is the client's address, for the audit log."""
        label = " ".join((name or "").split())
        if not label:
            raise ValidationError("Give the key a name, so you can tell it apart later.", field="name")
        if len(label) > MAX_NAME_CHARS:
            raise ValidationError(f"Key names are at most {MAX_NAME_CHARS} characters.", field="name")
        plaintext = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
        key = ApiKey(
            id=uuid.uuid4().hex, owner_id=owner_id, name=label, prefix=plaintext[:SHOWN_PREFIX_CHARS],
            created_at=self._clock(), last_used_at=None, usage_count=0, revoked_at=None,
        )
        with self._engine.begin() as conn:
            owner = conn.execute(select(users.c.id, users.c.locked_at).where(users.c.id == owner_id)).first()
            if owner is None:
                raise NotFound("No such user.")
            if owner.locked_at is not None:
                raise PermissionDenied("This account is locked; it cannot get new API keys.")
            active = conn.execute(
                select(func.count()).select_from(api_keys)
                .where(api_keys.c.owner_id == owner_id, api_keys.c.revoked_at.is_(None))
            ).scalar_one()
            if active >= MAX_ACTIVE_KEYS:
                raise ValidationError(
                    f"An account has at most {MAX_ACTIVE_KEYS} active keys; revoke one you no longer use.",
                    field="name",
                )
            conn.execute(insert(api_keys).values(
                id=key.id, owner_id=owner_id, name=label, prefix=key.prefix, key_hash=hash_key(plaintext),
                created_at=key.created_at, usage_count=0,
            ))
            self._record(conn, "apikey.create", owner_id, key, actor_id, ip)
        return key, plaintext

    def verify(self, plaintext: str, *, count_use: bool = True) -> KeyOwner:
        """The account ``plaintext`` acts as; counts the use unless ``count_use`` is False (the API
        counts it with :meth:`record_use` once the request is accepted). :class:`InvalidCredentials`
        for an unknown, malformed or revoked key and for a locked or deleted owner (one message)."""
        if not looks_like_key(plaintext):
            raise InvalidCredentials(_INVALID)
        digest = hash_key(plaintext)
        with self._engine.begin() as conn:
            row = conn.execute(
                select(api_keys.c.id, api_keys.c.name, api_keys.c.key_hash, api_keys.c.revoked_at,
                       api_keys.c.owner_id, users.c.username, users.c.email, users.c.role, users.c.locked_at)
                .join(users, users.c.id == api_keys.c.owner_id)
                .where(api_keys.c.key_hash == digest)
            ).first()
            # The lookup is by hash; the compare is constant-time anyway, so timing says nothing.
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                raise InvalidCredentials(_INVALID)
            if row.revoked_at is not None or row.locked_at is not None:
                raise InvalidCredentials(_INVALID)
            if count_use:
                self._count_use(conn, row.id)
        return KeyOwner(key_id=row.id, key_name=row.name, owner_id=row.owner_id, username=row.username,
                        email=row.email, role=row.role)

    def record_use(self, key_id: str) -> None:
        """Count one accepted request made with the key."""
        with self._engine.begin() as conn:
            self._count_use(conn, key_id)

    def _count_use(self, conn: Connection, key_id: str) -> None:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                     .values(usage_count=api_keys.c.usage_count + 1, last_used_at=self._clock()))

    def for_owner(self, owner_id: str, *, include_revoked: bool = True) -> list[ApiKey]:
        """The owner's keys, newest first."""
        query = select(api_keys).where(api_keys.c.owner_id == owner_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(api_keys.c.created_at.desc(), api_keys.c.id)).all()
        return [_row_to_key(r) for r in rows]

    def revoke(self, owner_id: str, key_id: str, *, actor_id: str | None | EllipsisType = ...,
               ip: str | None = None) -> ApiKey:
        """Stop ``key_id`` working at once. Revoking twice is harmless; another owner's key is :class:`NotFound`."""
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.owner_id == owner_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            ).rowcount
            row = conn.execute(
                select(api_keys).where(api_keys.c.id == key_id, api_keys.c.owner_id == owner_id)
            ).first()
            if row is None:
                raise NotFound("No such API key.")
            key = _row_to_key(row)
            if changed:
                self._record(conn, "apikey.revoke", owner_id, key, actor_id, ip)
        return key
