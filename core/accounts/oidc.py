"""Accounts for people who sign in with an OpenID Connect provider (``st.login``).

The identity is the (issuer, subject) pair in ``oidc_identities``, never the email: an email that
matches a local account does not link to it (whoever controls the IdP could otherwise take the
account over). New users get role ``user``, or ``admin`` when their email is in
``OPTIMUS_OIDC_ADMIN_EMAILS``. Their session is opened by
:meth:`core.accounts.sessions.Sessions.open_session`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from core.accounts.policy import AuthPolicy
from core.audit import AuditLog
from core.errors import InvalidCredentials, PermissionDenied, ValidationError
from core.schema import oidc_identities, users
from core.users import Role, User, UserStore, normalise_username


class OidcAccounts:
    """Finds or creates the local user behind an OIDC identity."""

    def __init__(self, engine: Engine, *, users: UserStore, audit: AuditLog, policy: AuthPolicy,
                 clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._users = users
        self._audit = audit
        self._policy = policy
        self._clock = clock

    def user_for_oidc(
        self,
        issuer: str,
        subject: str,
        *,
        email: str | None = None,
        preferred_username: str | None = None,
        name: str | None = None,
        ip: str | None = None,
    ) -> User:
        """The local user for an OIDC identity, created on first sight.

        The identity is the (issuer, subject) pair, never the email: an email that matches a local
        account does not link to it (whoever controls the IdP could otherwise take the account over).
        New users get role ``user``, or ``admin`` when their email is in ``OPTIMUS_OIDC_ADMIN_EMAILS``.
        """
        issuer, subject = (issuer or "").strip()[:255], (subject or "").strip()[:255]
        if not issuer or not subject:
            raise InvalidCredentials("The sign-in provider did not say who you are.")
        with self._engine.connect() as conn:
            user_id = conn.execute(select(oidc_identities.c.user_id).where(
                oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject)).scalar()
        if user_id is not None:
            user = self._users.get(user_id)
            if user.locked:
                raise PermissionDenied("This account is locked. Ask an administrator to unlock it.")
            return user
        clean_email = (email or "").strip() or None
        if clean_email and ("@" not in clean_email or len(clean_email) > 320 or any(c.isspace() for c in clean_email)):
            clean_email = None  # not an address we can store; the identity does not depend on it
        role: Role = "admin" if clean_email and clean_email.lower() in self._policy.oidc_admin_emails else "user"
        base = username_base(preferred_username, clean_email, name)
        for attempt in range(20):  # the name may be taken: add a short random suffix
            candidate = base if attempt == 0 else f"{base[:56]}-{secrets.token_hex(3)}"
            try:
                user = self._users.create(candidate, email=clean_email, role=role)
                break
            except ValidationError:
                continue
        else:  # pragma: no cover - 20 random suffixes all taken
            raise ValidationError("Could not pick a username; please try again.", field="username")
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(oidc_identities).values(issuer=issuer, subject=subject, user_id=user.id,
                                                            email=clean_email, created_at=self._clock()))
                self._audit.record("account.create", actor_id=user.id, subject_id=user.id, ip=ip,
                                   detail={"role": role, "method": "oidc", "issuer": issuer}, conn=conn)
        except IntegrityError:
            # Another request linked this identity first: keep theirs, drop our duplicate user.
            with self._engine.begin() as conn:
                conn.execute(delete(users).where(users.c.id == user.id))
            with self._engine.connect() as conn:
                user_id = conn.execute(select(oidc_identities.c.user_id).where(
                    oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject)).scalar()
            if user_id is None:
                raise
            return self._users.get(user_id)
        return user


def username_base(preferred: str | None, email: str | None, name: str | None) -> str:
    """A free-to-try local username from what the provider told us, or ``"user"``."""
    for raw in (preferred, (email or "").split("@")[0], name, "user"):
        cleaned = re.sub(r"[^a-z0-9_.-]+", "-", (raw or "").strip().lower()).strip("-._")[:64]
        if len(cleaned) < 3:
            continue
        try:
            return normalise_username(cleaned)
        except ValidationError:
            continue
    return "user"
