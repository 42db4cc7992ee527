"""Server-side sessions: one ``auth_sessions`` row per sign-in, named by the token's ``jti``.

The token itself is never stored. Verification rejects a token whose session is revoked, expired
or unknown, or whose user is deleted or locked. A token past half its life is renewed (same
session, new ``exp``). A new sign-in beyond ``max_sessions`` ends the user's oldest session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, insert, select, update

from core.accounts.policy import AuthPolicy
from core.accounts.throttle import record_attempt
from core.accounts.tokens import SIGN_IN_AGAIN, TokenCodec
from core.audit import AuditLog
from core.errors import InvalidCredentials, NotFound, PermissionDenied
from core.schema import auth_sessions, users
from core.users import User, require_role

SESSION_COOKIE = "optimus_session"
LAST_SEEN_EVERY = timedelta(minutes=1)
RevokeReason = Literal["logout", "logout_all", "admin", "cap", "password", "locked", "owner"]


@dataclass(frozen=True, slots=True)
class AuthSession:
    """A server-side session; JWTs name it by ``jti``."""

    jti: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    revoked_at: datetime | None
    revoked_reason: str | None

    def active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login (or handoff): the user, their session and the access token to hand over."""

    user: User
    session: AuthSession
    token: str


@dataclass(frozen=True, slots=True)
class Verified:
    """A token that checked out. ``renewed_token`` replaces it when set (sliding renewal)."""

    user: User
    session: AuthSession
    renewed_token: str | None = None


def session_from_row(row) -> AuthSession:
    return AuthSession(
        jti=row.jti, user_id=row.user_id, created_at=row.created_at, last_seen_at=row.last_seen_at,
        expires_at=row.expires_at, ip=row.ip, user_agent=row.user_agent, revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


def revoke_where(conn: Connection, condition, reason: RevokeReason, now: datetime,
                 keep_jti: str | None = None) -> int:
    """End the live sessions matching ``condition`` (except ``keep_jti``); returns how many ended."""
    where = and_(condition, auth_sessions.c.revoked_at.is_(None))
    if keep_jti is not None:
        where = and_(where, auth_sessions.c.jti != keep_jti)
    return conn.execute(update(auth_sessions).where(where).values(revoked_at=now, revoked_reason=reason)).rowcount


class Sessions:
    """Opens, verifies, lists and ends sessions."""

    def __init__(self, engine: Engine, *, tokens: TokenCodec, audit: AuditLog, policy: AuthPolicy,
                 clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._tokens = tokens
        self._audit = audit
        self._policy = policy
        self._clock = clock

    def open(self, user: User, *, ip: str | None, user_agent: str | None, now: datetime,
             outcome_username: str | None, method: str = "password") -> tuple[AuthSession, str]:
        """A new session and its token, ending the oldest beyond ``max_sessions``. With
        ``outcome_username`` the successful attempt is recorded for the brute-force count."""
        jti = uuid.uuid4().hex
        expires = now + self._policy.session_lifetime
        with self._engine.begin() as conn:
            active = conn.execute(
                select(auth_sessions.c.jti).where(
                    auth_sessions.c.user_id == user.id, auth_sessions.c.revoked_at.is_(None),
                    auth_sessions.c.expires_at > now)
                .order_by(auth_sessions.c.created_at, auth_sessions.c.jti)
            ).scalars().all()
            oldest = list(active[: max(0, len(active) - self._policy.max_sessions + 1)])
            if oldest:
                revoke_where(conn, auth_sessions.c.jti.in_(oldest), "cap", now)
            conn.execute(insert(auth_sessions).values(
                jti=jti, user_id=user.id, created_at=now, last_seen_at=now, expires_at=expires,
                ip=None if ip is None else ip[:64], user_agent=None if user_agent is None else user_agent[:400]))
            if outcome_username is not None:
                record_attempt(conn, outcome_username, ip, "ok", now)
            detail: dict[str, Any] = {"method": method, "session": jti}
            if oldest:
                detail["ended_oldest"] = oldest
            self._audit.record("login.ok", actor_id=user.id, subject_id=user.id, ip=ip, detail=detail, conn=conn)
        session = AuthSession(jti, user.id, now, now, expires, ip, user_agent, None, None)
        return session, self._tokens.encode(user, jti, now)

    def open_session(self, user: User, *, ip: str | None = None, user_agent: str | None = None,
                     method: str = "oidc") -> Login:
        """A session for someone already authenticated elsewhere (``st.login``/OIDC)."""
        if user.locked:
            raise PermissionDenied("This account is locked. Ask an administrator to unlock it.")
        session, token = self.open(user, ip=ip, user_agent=user_agent, now=self._clock(),
                                   outcome_username=None, method=method)
        return Login(user, session, token)

    def verify(self, token: str, *, renew: bool = True) -> Verified:
        """The user and session behind ``token``, or :class:`InvalidCredentials`.

        Rejects: another algorithm (``none`` included), a bad or non-canonical signature, missing
        claims, an expired token, a revoked or unknown session, a deleted or locked user. Notes the
        session as seen (at most once a minute). With ``renew``, a token past half its lifetime
        gets a successor in :attr:`Verified.renewed_token` (same session, fresh ``exp``); so does a
        token whose role is out of date.
        """
        now = self._clock()
        claims = self._tokens.decode(token, now)
        with self._engine.connect() as conn:
            row = conn.execute(
                select(auth_sessions, users.c.username, users.c.email, users.c.role.label("user_role"),
                       users.c.created_at.label("user_created_at"), users.c.locked_at)
                .join(users, users.c.id == auth_sessions.c.user_id)
                .where(auth_sessions.c.jti == claims["jti"])
            ).first()
        if row is None or row.user_id != claims["sub"]:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        session = session_from_row(row)
        if session.revoked_at is not None:
            raise InvalidCredentials("You were signed out. Please sign in again.")
        if session.expires_at <= now:
            raise InvalidCredentials("Your session has expired. Please sign in again.")
        user = User(id=row.user_id, username=row.username, email=row.email, role=row.user_role,
                    created_at=row.user_created_at, locked_at=row.locked_at)
        if user.locked:
            raise InvalidCredentials("This account is locked. Ask an administrator to unlock it.")
        changes: dict[str, Any] = {}
        if now - session.last_seen_at >= LAST_SEEN_EVERY:
            changes["last_seen_at"] = now
        renewed = None
        half_life = self._policy.session_lifetime.total_seconds() / 2
        if renew and (claims["exp"] - now.timestamp() < half_life or claims["role"] != user.role):
            renewed = self._tokens.encode(user, session.jti, now)
            changes["expires_at"] = max(session.expires_at, now + self._policy.session_lifetime)
            changes["last_seen_at"] = now
        if changes:
            with self._engine.begin() as conn:
                conn.execute(update(auth_sessions).where(auth_sessions.c.jti == session.jti,
                                                         auth_sessions.c.revoked_at.is_(None)).values(**changes))
            session = replace(session, **changes)
        return Verified(user, session, renewed)

    def logout(self, token: str, *, ip: str | None = None) -> bool:
        """End the session behind ``token``. False (and nothing recorded) if it was not a live session."""
        try:
            verified = self.verify(token, renew=False)
        except InvalidCredentials:
            return False
        with self._engine.begin() as conn:
            ended = revoke_where(conn, auth_sessions.c.jti == verified.session.jti, "logout", self._clock())
            if ended:
                self._audit.record("logout", actor_id=verified.user.id, subject_id=verified.user.id, ip=ip,
                                   detail={"session": verified.session.jti}, conn=conn)
        return bool(ended)

    def logout_everywhere(self, user_id: str, *, ip: str | None = None) -> int:
        """End every session of ``user_id`` (the caller's own, from the account page). Returns how many."""
        with self._engine.begin() as conn:
            ended = revoke_where(conn, auth_sessions.c.user_id == user_id, "logout_all", self._clock())
            self._audit.record("logout", actor_id=user_id, subject_id=user_id, ip=ip,
                               detail={"everywhere": True, "sessions_ended": ended}, conn=conn)
        return ended

    def for_user(self, user_id: str, *, include_inactive: bool = False) -> list[AuthSession]:
        """A user's sessions, newest first (for "where am I signed in")."""
        now = self._clock()
        query = select(auth_sessions).where(auth_sessions.c.user_id == user_id)
        if not include_inactive:
            query = query.where(auth_sessions.c.revoked_at.is_(None), auth_sessions.c.expires_at > now)
        with self._engine.connect() as conn:
            return [session_from_row(r) for r in conn.execute(query.order_by(auth_sessions.c.created_at.desc())).all()]

    def revoke_session(self, actor: User, jti: str, *, ip: str | None = None) -> None:
        """End one session: the owner may end their own, an admin anyone's. Unknown → :class:`NotFound`."""
        require_role(actor, "user")
        with self._engine.connect() as conn:
            owner = conn.execute(select(auth_sessions.c.user_id).where(auth_sessions.c.jti == jti)).scalar()
        if owner is None or (owner != actor.id and actor.role != "admin"):
            raise NotFound("No such session.")
        with self._engine.begin() as conn:
            ended = revoke_where(conn, auth_sessions.c.jti == jti, "owner" if owner == actor.id else "admin",
                                 self._clock())
            if ended:
                self._audit.record("session.revoke", actor_id=actor.id, subject_id=owner, ip=ip,
                                   detail={"session": jti}, conn=conn)

    def revoke_all_sessions(self, actor: User, user_id: str, *, ip: str | None = None) -> int:
        """Admin: end every session of ``user_id``."""
        require_role(actor, "admin")
        with self._engine.begin() as conn:
            ended = revoke_where(conn, auth_sessions.c.user_id == user_id, "admin", self._clock())
            self._audit.record("session.revoke", actor_id=actor.id, subject_id=user_id, ip=ip,
                               detail={"all": True, "sessions_ended": ended}, conn=conn)
        return ended
