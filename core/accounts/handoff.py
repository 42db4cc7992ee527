"""Browser hand-off: from a login in the Streamlit session to the HttpOnly session cookie.

After a login, :meth:`Handoffs.mint` gives a 60-second single-use token that the
``/api/session/start`` route trades for the cookie (:meth:`Handoffs.redeem`). The token is bound to
the browser that signed in (its ``optimus_browser`` pre-session cookie), so a hand-off minted in an
attacker's browser cannot sign a victim's browser into the attacker's account (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from core.accounts.policy import AuthPolicy
from core.accounts.sessions import AuthSession, Login, session_from_row
from core.accounts.tokens import SIGN_IN_AGAIN, TokenCodec
from core.errors import InvalidCredentials
from core.schema import auth_handoffs, auth_sessions, users
from core.users import user_from_row

BROWSER_COOKIE = "optimus_browser"  # pre-session cookie a hand-off is bound to
HANDOFF_SECONDS = 60


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _browser_ok(browser: str | None) -> bool:
    return isinstance(browser, str) and 16 <= len(browser) <= 128


def new_browser_id() -> str:
    """The value of a new pre-session cookie (:data:`BROWSER_COOKIE`)."""
    return secrets.token_urlsafe(24)


class Handoffs:
    """Mints and redeems single-use, browser-bound hand-off tokens."""

    def __init__(self, engine: Engine, *, tokens: TokenCodec, policy: AuthPolicy,
                 clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._tokens = tokens
        self._policy = policy
        self._clock = clock

    def mint(self, session: AuthSession, *, browser: str) -> str:
        """A 60-second, single-use token that the cookie route trades for this session's cookie, in
        the browser whose pre-session cookie (:data:`BROWSER_COOKIE`) is ``browser`` and no other."""
        if not _browser_ok(browser):
            raise InvalidCredentials("This browser did not identify itself; allow cookies and sign in again.")
        now = self._clock()
        token = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(delete(auth_handoffs).where(auth_handoffs.c.expires_at < now))
            conn.execute(insert(auth_handoffs).values(token_hash=_sha256(token), session_jti=session.jti,
                                                      expires_at=now + timedelta(seconds=HANDOFF_SECONDS),
                                                      browser_hash=_sha256(browser)))
        return token

    def redeem(self, token: str, *, browser: str | None) -> Login:
        """Use up a handoff token in the browser it was minted for: a fresh access token for its
        session, or :class:`InvalidCredentials` (expired, used, or another browser)."""
        now = self._clock()
        if not isinstance(token, str) or not 16 <= len(token) <= 128:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        with self._engine.begin() as conn:  # used up whoever presents it: an intercepted link dies too
            row = conn.execute(
                delete(auth_handoffs).where(auth_handoffs.c.token_hash == _sha256(token))
                .returning(auth_handoffs.c.session_jti, auth_handoffs.c.expires_at, auth_handoffs.c.browser_hash)
            ).first()
        if row is None or row.expires_at <= now:
            raise InvalidCredentials("This sign-in link has expired or was already used. Please sign in again.")
        if not _browser_ok(browser) or not hmac.compare_digest(row.browser_hash, _sha256(browser)):
            raise InvalidCredentials("This sign-in link belongs to another browser. Please sign in here.")
        with self._engine.connect() as conn:
            srow = conn.execute(select(auth_sessions).where(auth_sessions.c.jti == row.session_jti)).first()
            urow = None if srow is None else conn.execute(select(users).where(users.c.id == srow.user_id)).first()
        if srow is None or urow is None:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        session, user = session_from_row(srow), user_from_row(urow)
        if not session.active_at(now) or user.locked:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        expires = max(session.expires_at, now + self._policy.session_lifetime)
        with self._engine.begin() as conn:
            conn.execute(update(auth_sessions).where(auth_sessions.c.jti == session.jti)
                         .values(expires_at=expires, last_seen_at=now))
        return Login(user, replace(session, expires_at=expires, last_seen_at=now),
                     self._tokens.encode(user, session.jti, now))
