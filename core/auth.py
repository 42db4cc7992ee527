"""Accounts, sessions and who may do what.

* **Passwords**: at least 12 characters and zxcvbn score >= 3 (the message says why a password is
  weak); stored as bcrypt (cost 12 by default) over a SHA-256 pre-hash, so passphrases longer
  than bcrypt's 72 bytes count in full.
* **Sessions**: HS256 JWTs (``sub``, ``role``, ``jti``, ``iat``, ``exp``, ``iss``) backed by a
  row in ``auth_sessions``; the token itself is never stored. Verification rejects anything but
  HS256, a bad or non-canonical signature, an expired or revoked token, and a token for a deleted
  or locked user. A token past half its life is renewed (same session, new ``exp``). A new login
  beyond ``max_sessions`` ends the user's oldest session.
* **Login**: the same message and (one bcrypt check, a dummy hash for unknown users) the same
  time for an unknown user and a wrong password. Failures count per username, known or not, over
  a window (15 min) and since the last success. After ``captcha_after`` (3) an arithmetic CAPTCHA
  is required; the ``max_failures``-th (5) locks the username until the window that began with
  the oldest of them ends, after which counting starts afresh. ``ip_max_failures`` (20) failures
  from one address within the window refuse every login from it (any username, even with the
  right password and CAPTCHA) until the oldest of them leaves the window. Logins whose address is
  unknown share one such count: an unknown address never escapes the limit. An admin-locked
  account answers exactly like a wrong password, whether the password is right or not.
* **Browser handoff**: after a login in the Streamlit session, :meth:`AuthService.mint_handoff`
  gives a 60-second single-use token that the ``/api/session/start`` route trades for the
  HttpOnly cookie (:meth:`AuthService.redeem_handoff`). The token is bound to the browser that
  signed in (its ``optimus_browser`` pre-session cookie), so a hand-off minted in an attacker's
  browser cannot sign a victim's browser into the attacker's account (login CSRF).
* **RBAC**: roles ``user`` and ``admin``; admin operations check :func:`require_role` here, and
  the last unlocked admin can be neither demoted, locked nor deleted.

Every action writes exactly one :mod:`core.audit` event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import bcrypt
import jwt
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.audit import AuditLog
from core.errors import (
    CaptchaRequired,
    ConfigError,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
    ValidationError,
)
from core.schema import auth_captchas, auth_handoffs, auth_sessions, login_attempts, oidc_identities, users
from core.users import Role, User, UserStore, normalise_username, require_role, user_from_row

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "BROWSER_COOKIE", "SESSION_COOKIE", "AuthPolicy", "AuthService", "AuthSession", "Captcha", "Login", "Verified",
    "check_password_strength", "ensure_admin_from_settings", "new_browser_id", "require_role",
]

ALGORITHM = "HS256"
ISSUER = "optimus"
SESSION_COOKIE = "optimus_session"
BROWSER_COOKIE = "optimus_browser"  # pre-session cookie a hand-off is bound to
HANDOFF_SECONDS = 60
CAPTCHA_SECONDS = 300
MIN_SECRET_BYTES = 32
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 128
MIN_PASSWORD_SCORE = 3
MAX_TOKEN_CHARS = 4096
LAST_SEEN_EVERY = timedelta(minutes=1)
GENERIC_LOGIN_ERROR = "Wrong username or password."
SIGN_IN_AGAIN = "Please sign in again."
RevokeReason = Literal["logout", "logout_all", "admin", "cap", "password", "locked", "owner"]
_REQUIRED_CLAIMS = ("sub", "role", "jti", "iat", "exp", "iss")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_zxcvbn_lock = threading.Lock()  # zxcvbn keeps the user inputs in a module-global dictionary


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """The knobs of :class:`AuthService`; :meth:`from_settings` reads them from ``OPTIMUS_*``."""

    session_minutes: int = 30
    max_sessions: int = 5
    bcrypt_rounds: int = 12
    login_window: timedelta = timedelta(minutes=15)
    max_failures: int = 5
    captcha_after: int = 3
    ip_max_failures: int = 20
    oidc_admin_emails: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthPolicy:
        return cls(
            session_minutes=settings.session_minutes, max_sessions=settings.max_sessions,
            bcrypt_rounds=settings.bcrypt_rounds, login_window=timedelta(minutes=settings.login_window_minutes),
            max_failures=settings.max_failures, captcha_after=settings.captcha_after,
            ip_max_failures=settings.ip_max_failures,
            oidc_admin_emails=frozenset(e.strip().lower() for e in settings.oidc_admin_emails),
        )

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(minutes=self.session_minutes)


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


@dataclass(frozen=True, slots=True)
class Captcha:
    id: str
    question: str


def _session(row) -> AuthSession:
    return AuthSession(
        jti=row.jti, user_id=row.user_id, created_at=row.created_at, last_seen_at=row.last_seen_at,
        expires_at=row.expires_at, ip=row.ip, user_agent=row.user_agent, revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _browser_ok(browser: str | None) -> bool:
    return isinstance(browser, str) and 16 <= len(browser) <= 128


def new_browser_id() -> str:
    """The value of a new pre-session cookie (:data:`BROWSER_COOKIE`)."""
    return secrets.token_urlsafe(24)


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes (bcrypt 5 refuses more); the base64 of a SHA-256 is 44 bytes
    # and has no NUL, so every character of a long passphrase counts.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, *, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def _check_hash(password: str, stored: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), stored.encode("ascii"))
    except ValueError:  # a malformed stored hash never matches
        return False


def _hash_cost(stored: str) -> int | None:
    parts = stored.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


def check_password_strength(password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
    """Raise :class:`ValidationError` saying why ``password`` is too weak; return if it is fine.

    Rules: 12–128 characters and a zxcvbn score of at least 3 out of 4, with the username and
    email counted as guessable.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(f"Use at least {MIN_PASSWORD_CHARS} characters for your password.", field="password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(f"Use at most {MAX_PASSWORD_CHARS} characters for your password.", field="password")
    import zxcvbn

    inputs = [i for i in user_inputs if i] + ["optimus"]
    with _zxcvbn_lock:
        # zxcvbn caps its input at 72 characters; a strong 72-character prefix is strong enough.
        result = zxcvbn.zxcvbn(password[:72], user_inputs=inputs)
    if result["score"] < MIN_PASSWORD_SCORE:
        feedback = result.get("feedback") or {}
        reasons = [feedback.get("warning") or ""] + list(feedback.get("suggestions") or [])
        why = " ".join(r.strip() for r in reasons if r and r.strip())
        raise ValidationError(
            "This password is too easy to guess." + (f" {why}" if why else " Add more uncommon words."),
            field="password", detail={"score": result["score"]},
        )


def _canonical_b64url(segment: str) -> bool:
    """True if ``segment`` is the one canonical unpadded base64url spelling of its bytes.

    Base64 lets the last character of a segment vary in its unused bits without changing the
    bytes; such a twin must not pass as the same token. PyJWT 2.15 refuses them too, older
    versions did not, so we check it ourselves: *any* change to a token makes a rejected token.
    """
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        return False
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == segment


class AuthService:
    """Registration, login, sessions and admin operations. Thread-safe; every rule is checked here."""

    def __init__(
        self,
        engine: Engine,
        *,
        secret: SecretStr | str,
        users: UserStore | None = None,
        audit: AuditLog | None = None,
        policy: AuthPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if len(key.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        self._engine = engine
        self._key = key
        self._clock = clock or (lambda: datetime.now(UTC))
        self.users = users or UserStore(engine, clock=self._clock)
        self.audit = audit or AuditLog(engine, clock=self._clock)
        self.policy = policy or AuthPolicy()
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()
        # Hash the dummy now, off the request path: the first unknown-user login must not be the slow one.
        threading.Thread(target=self._dummy, name="auth-dummy-hash", daemon=True).start()

    # --- passwords -------------------------------------------------------------------------
    def hash_password(self, password: str) -> str:
        return hash_password(password, rounds=self.policy.bcrypt_rounds)

    def _dummy(self) -> str:
        """A hash of a random password at our cost, checked for unknown users so they take as long."""
        if self._dummy_hash is None:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = self.hash_password(secrets.token_urlsafe(32))
        return self._dummy_hash

    def register(self, username: str, password: str, *, email: str | None = None, ip: str | None = None) -> User:
        """Create an account with role ``user``. A weak password raises :class:`ValidationError` saying why."""
        return self._create(username, password, email=email, role="user", ip=ip, method="password")

    def create_admin(self, username: str, password: str, *, email: str | None = None, via: str = "cli") -> User:
        """The operator creates an admin (``python -m core create-admin`` or ``OPTIMUS_ADMIN_*``); same password rules."""
        return self._create(username, password, email=email, role="admin", ip=None, method=via)

    def _create(self, username: str, password: str, *, email: str | None, role: Role, ip: str | None,
                method: str) -> User:
        name = normalise_username(username)
        check_password_strength(password, user_inputs=(name, (email or "").split("@")[0]))
        user = self.users.create(name, email=email, role=role, password_hash=self.hash_password(password))
        self.audit.record("account.create", actor_id=user.id if method == "password" else None, subject_id=user.id,
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
            failures, locked_until = self._account_state(conn, row.username, now)
        if locked_until is not None:  # guessing the current password counts like guessing at login
            self._refuse(row.username, ip, now, row.id, "account", locked_until)
        if not _check_hash(old_password or "", row.password_hash or self._dummy()) or row.password_hash is None:
            locked_until = self._note_failure(row.username, ip, now, failures)
            if locked_until is not None:
                raise TooManyAttempts(self._lock_message("this account", locked_until - now),
                                      retry_after=(locked_until - now).total_seconds())
            raise InvalidCredentials("Your current password is not right.")
        check_password_strength(new_password, user_inputs=(row.username, (row.email or "").split("@")[0]))
        if new_password == old_password:
            raise ValidationError("Choose a password different from the current one.", field="password")
        new_hash = self.hash_password(new_password)
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
            ended = self._revoke_where(conn, auth_sessions.c.user_id == user_id, "password", now,
                                       keep_jti=current_jti)
            self.audit.record("password.change", actor_id=user_id, subject_id=user_id, ip=ip,
                              detail={"sessions_ended": ended}, conn=conn)
        return ended

    def set_password(self, actor: User | None, user_id: str, new_password: str, *, ip: str | None = None) -> int:
        """An admin (or, with ``actor=None``, the operator's CLI) sets a password; ends all of its sessions."""
        if actor is not None:
            require_role(actor, "admin")
        target = self.users.get(user_id)
        check_password_strength(new_password, user_inputs=(target.username, (target.email or "").split("@")[0]))
        new_hash = self.hash_password(new_password)
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
            ended = self._revoke_where(conn, auth_sessions.c.user_id == user_id, "password", self._clock())
            self.audit.record("password.change", actor_id=actor.id if actor else None, subject_id=user_id, ip=ip,
                              detail={"sessions_ended": ended, "by": "admin" if actor else "cli"}, conn=conn)
        return ended

    # --- brute-force defence ---------------------------------------------------------------
    # Every attempt is a row of login_attempts. Failures count per username (known or not) since
    # the later of: the window's start, the last successful login, the end of the last lockout.
    # The failure that reaches max_failures stores the lockout's end (the oldest of the last
    # max_failures failures plus the window) in ``locked_until``; once it passes, the count starts
    # again from zero. Per address it is a plain sliding count of failures (wrong or missing CAPTCHA
    # answers included, so a client cannot retry without limit).
    def _record_attempt(self, username: str, ip: str | None, outcome: str, now: datetime, *,
                        locked_until: datetime | None = None, conn: Connection | None = None) -> None:
        statement = insert(login_attempts).values(username=username[:64], ip=None if ip is None else ip[:64],
                                                  outcome=outcome, created_at=now, locked_until=locked_until)
        if conn is not None:
            conn.execute(statement)
            return
        with self._engine.begin() as own:
            own.execute(statement)
            # Rows older than two windows no longer count for anything (a lockout ends within one).
            own.execute(delete(login_attempts).where(login_attempts.c.created_at < now - 2 * self.policy.login_window))

    def _account_state(self, conn: Connection, username: str, now: datetime) -> tuple[list[datetime], datetime | None]:
        """(failures that count, newest first, at most max_failures; end of an active lockout or None)."""
        attempts = login_attempts.c
        mine = and_(attempts.username == username, attempts.created_at > now - 2 * self.policy.login_window)
        ends = conn.execute(
            select(func.max(attempts.locked_until)).where(mine, attempts.locked_until > now)
        ).scalar()
        if ends is not None:
            return [], ends
        last_ok, last_lockout_end = conn.execute(
            select(func.max(attempts.created_at).filter(attempts.outcome == "ok"),
                   func.max(attempts.locked_until).filter(attempts.locked_until <= now)).where(mine)
        ).one()
        since = max(t for t in (now - self.policy.login_window, last_ok, last_lockout_end) if t is not None)
        failures = conn.execute(
            select(attempts.created_at).where(mine, attempts.outcome == "failed", attempts.created_at > since)
            .order_by(attempts.created_at.desc()).limit(self.policy.max_failures)
        ).scalars().all()
        return list(failures), None

    def _address_locked_until(self, conn: Connection, ip: str | None, now: datetime) -> datetime | None:
        limit = self.policy.ip_max_failures
        # Unknown addresses are one address: not knowing who is guessing must not mean no limit.
        same_address = login_attempts.c.ip.is_(None) if not ip else login_attempts.c.ip == ip[:64]
        failures = conn.execute(
            select(login_attempts.c.created_at).where(
                same_address, login_attempts.c.outcome.in_(("failed", "captcha")),
                login_attempts.c.created_at > now - self.policy.login_window)
            .order_by(login_attempts.c.created_at.desc()).limit(limit)
        ).scalars().all()
        return failures[limit - 1] + self.policy.login_window if len(failures) >= limit else None

    def _note_failure(self, username: str, ip: str | None, now: datetime, failures_before: list[datetime]
                      ) -> datetime | None:
        """Record a failed attempt; return the lockout's end if this one reached ``max_failures``."""
        failures = [now, *failures_before]
        limit = self.policy.max_failures
        locked_until = failures[limit - 1] + self.policy.login_window if len(failures) >= limit else None
        self._record_attempt(username, ip, "failed", now, locked_until=locked_until)
        return locked_until

    @staticmethod
    def _lock_message(who: str, remaining: timedelta) -> str:
        minutes = max(1, math.ceil(remaining.total_seconds() / 60))
        return f"Too many failed sign-ins for {who}. Try again in {minutes} minute{'s' if minutes != 1 else ''}."

    def captcha_needed(self, username: str) -> bool:
        """Whether the next login for ``username`` must answer a CAPTCHA (for showing it up front)."""
        name = (username or "").strip().lower()[:64]
        with self._engine.connect() as conn:
            failures, locked_until = self._account_state(conn, name, self._clock())
        return locked_until is None and len(failures) >= self.policy.captcha_after

    def new_captcha(self) -> Captcha:
        """A fresh arithmetic question; its answer is checked once, within five minutes."""
        now = self._clock()
        a, b = secrets.randbelow(9) + 1, secrets.randbelow(9) + 1
        if secrets.randbelow(2):
            question, answer = f"What is {a} + {b}?", a + b
        else:
            a, b = max(a, b) + 5, min(a, b)
            question, answer = f"What is {a} − {b}?", a - b
        captcha_id = uuid.uuid4().hex
        with self._engine.begin() as conn:
            conn.execute(delete(auth_captchas).where(auth_captchas.c.expires_at < now))
            conn.execute(insert(auth_captchas).values(
                id=captcha_id, answer_hash=self._answer_hash(captcha_id, str(answer)),
                expires_at=now + timedelta(seconds=CAPTCHA_SECONDS)))
        return Captcha(captcha_id, question)

    def _answer_hash(self, captcha_id: str, answer: str) -> str:
        return hmac.new(self._key.encode(), f"captcha:{captcha_id}:{answer}".encode(), hashlib.sha256).hexdigest()

    def _solve_captcha(self, captcha_id: str | None, answer: str | int | None, now: datetime) -> bool:
        """Consume the challenge (whatever the answer) and say whether ``answer`` was right."""
        if not captcha_id or answer is None:
            return False
        with self._engine.begin() as conn:
            row = conn.execute(
                delete(auth_captchas).where(auth_captchas.c.id == str(captcha_id))
                .returning(auth_captchas.c.answer_hash, auth_captchas.c.expires_at)
            ).first()
        if row is None or row.expires_at <= now:
            return False
        given = str(answer).strip().replace("−", "-")
        return hmac.compare_digest(row.answer_hash, self._answer_hash(str(captcha_id), given))

    # --- login -----------------------------------------------------------------------------
    def login(
        self,
        username: str,
        password: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        captcha_id: str | None = None,
        captcha_answer: str | int | None = None,
    ) -> Login:
        """Check a username and password and open a session.

        Raises :class:`InvalidCredentials` ("Wrong username or password.") for an unknown user and
        a wrong password alike, and for an admin-locked account whatever the password (a right one
        must not answer differently: that would confirm it); :class:`CaptchaRequired` once the account
        has had ``captcha_after`` failures (carrying the question to ask); :class:`TooManyAttempts`
        while the account or the address is locked.
        """
        now = self._clock()
        name = (username or "").strip().lower()[:64]
        policy = self.policy
        with self._engine.connect() as conn:
            account_failures, account_locked_until = self._account_state(conn, name, now)
            address_locked_until = self._address_locked_until(conn, ip, now)
            row = conn.execute(select(users).where(users.c.username == name)).first()
        subject = row.id if row is not None else None
        if address_locked_until is not None:
            self._refuse(name, ip, now, subject, "ip", address_locked_until)
        if account_locked_until is not None:
            self._refuse(name, ip, now, subject, "account", account_locked_until)

        if len(account_failures) >= policy.captcha_after:
            if not self._solve_captcha(captcha_id, captcha_answer, now):
                self._record_attempt(name, ip, "captcha", now)
                self.audit.record("login.failed", actor_id=None, subject_id=subject, ip=ip,
                                  detail={"reason": "captcha"})
                challenge = self.new_captcha()
                message = ("That answer was not right. Please try this one." if captcha_id
                           else "Please answer the question below to sign in.")
                raise CaptchaRequired(message, captcha_id=challenge.id, question=challenge.question)

        # Exactly one bcrypt check on every path that gets here, real or dummy, so timing says nothing.
        stored = row.password_hash if row is not None and row.password_hash else None
        password_ok = _check_hash(password if isinstance(password, str) else "", stored or self._dummy())
        if row is None or stored is None or not password_ok:
            self._fail(name, ip, now, subject, account_failures)
        user = user_from_row(row)
        if user.locked:  # counted and answered as a failure: the answer must not confirm the password
            self._fail(name, ip, now, subject, account_failures, reason="admin_lock")
        if (_hash_cost(stored) or 0) < policy.bcrypt_rounds:  # the cost was raised since: rehash at the new one
            with self._engine.begin() as conn:
                conn.execute(update(users).where(users.c.id == user.id).values(
                    password_hash=self.hash_password(password)))
        session, token = self._open_session(user, ip=ip, user_agent=user_agent, now=now, outcome_username=name)
        return Login(user, session, token)

    def _refuse(self, name: str, ip: str | None, now: datetime, subject: str | None, scope: str,
                until: datetime) -> NoReturn:
        self._record_attempt(name, ip, "locked", now)
        self.audit.record("login.locked", actor_id=None, subject_id=subject, ip=ip,
                          detail={"scope": scope, "minutes": max(1, math.ceil((until - now).total_seconds() / 60))})
        who = "this account" if scope == "account" else "your network address"
        raise TooManyAttempts(self._lock_message(who, until - now), retry_after=(until - now).total_seconds())

    def _fail(self, name: str, ip: str | None, now: datetime, subject: str | None,
              failures_before: list[datetime], *, reason: str = "password") -> NoReturn:
        locked_until = self._note_failure(name, ip, now, failures_before)
        detail: dict[str, Any] = {"reason": reason}
        if locked_until is not None:
            detail["locked_minutes"] = max(1, math.ceil((locked_until - now).total_seconds() / 60))
        self.audit.record("login.failed", actor_id=None, subject_id=subject, ip=ip, detail=detail)
        if locked_until is not None:
            raise TooManyAttempts(f"{GENERIC_LOGIN_ERROR} " + self._lock_message("this account", locked_until - now),
                                  retry_after=(locked_until - now).total_seconds())
        failures = len(failures_before) + 1
        if failures >= self.policy.captcha_after:
            challenge = self.new_captcha()
            error = CaptchaRequired(GENERIC_LOGIN_ERROR, captcha_id=challenge.id, question=challenge.question)
            error.detail.update(self._attempts_left(self.policy.max_failures - failures, "lock"))
            raise error
        raise InvalidCredentials(GENERIC_LOGIN_ERROR,
                                 detail=self._attempts_left(self.policy.captcha_after - failures, "captcha"))

    def _attempts_left(self, left: int, then: Literal["captcha", "lock"]) -> dict[str, Any]:
        """What a failed sign-in tells the person before the next step: how many tries are left
        before a security question (or a lock). The same for every username, known or not."""
        minutes = max(1, round(self.policy.login_window.total_seconds() / 60))
        what = ("you are asked a security question" if then == "captcha"
                else f"sign-in is locked for {minutes} minutes")
        return {"attempts_left": left, "then": then,
                "warning": f"{left} attempt{'s' if left != 1 else ''} left before {what}."}

    # --- sessions and tokens ---------------------------------------------------------------
    def _open_session(self, user: User, *, ip: str | None, user_agent: str | None, now: datetime,
                      outcome_username: str | None, method: str = "password") -> tuple[AuthSession, str]:
        jti = uuid.uuid4().hex
        expires = now + self.policy.session_lifetime
        with self._engine.begin() as conn:
            active = conn.execute(
                select(auth_sessions.c.jti).where(
                    auth_sessions.c.user_id == user.id, auth_sessions.c.revoked_at.is_(None),
                    auth_sessions.c.expires_at > now)
                .order_by(auth_sessions.c.created_at, auth_sessions.c.jti)
            ).scalars().all()
            oldest = list(active[: max(0, len(active) - self.policy.max_sessions + 1)])
            if oldest:
                self._revoke_where(conn, auth_sessions.c.jti.in_(oldest), "cap", now)
            conn.execute(insert(auth_sessions).values(
                jti=jti, user_id=user.id, created_at=now, last_seen_at=now, expires_at=expires,
                ip=None if ip is None else ip[:64], user_agent=None if user_agent is None else user_agent[:400]))
            if outcome_username is not None:
                self._record_attempt(outcome_username, ip, "ok", now, conn=conn)
            detail: dict[str, Any] = {"method": method, "session": jti}
            if oldest:
                detail["ended_oldest"] = oldest
            self.audit.record("login.ok", actor_id=user.id, subject_id=user.id, ip=ip, detail=detail, conn=conn)
        session = AuthSession(jti, user.id, now, now, expires, ip, user_agent, None, None)
        return session, self._encode(user, jti, now)

    def open_session(self, user: User, *, ip: str | None = None, user_agent: str | None = None,
                     method: str = "oidc") -> Login:
        """A session for someone already authenticated elsewhere (``st.login``/OIDC)."""
        if user.locked:
            raise PermissionDenied("This account is locked. Ask an administrator to unlock it.")
        session, token = self._open_session(user, ip=ip, user_agent=user_agent, now=self._clock(),
                                            outcome_username=None, method=method)
        return Login(user, session, token)

    def _encode(self, user: User, jti: str, now: datetime) -> str:
        issued = int(now.timestamp())
        claims = {"iss": ISSUER, "sub": user.id, "role": user.role, "jti": jti, "iat": issued,
                  "exp": issued + int(self.policy.session_lifetime.total_seconds())}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def _decode(self, token: str, now: datetime) -> dict[str, Any]:
        """Claims of a well-formed, correctly signed, unexpired token of ours; else InvalidCredentials."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        segments = token.split(".")
        if len(segments) != 3 or not all(_canonical_b64url(s) for s in segments):
            raise InvalidCredentials(SIGN_IN_AGAIN)
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidCredentials(SIGN_IN_AGAIN)
            # exp/iat are checked below against our clock (PyJWT would use the wall clock).
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": list(_REQUIRED_CLAIMS), "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError:
            raise InvalidCredentials(SIGN_IN_AGAIN) from None
        exp, iat = claims.get("exp"), claims.get("iat")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)) or not all(
                isinstance(claims.get(k), str) for k in ("sub", "role", "jti")):
            raise InvalidCredentials(SIGN_IN_AGAIN)
        ts = now.timestamp()
        if exp <= ts:
            raise InvalidCredentials("Your session has expired. Please sign in again.")
        if iat > ts + 60:  # issued in the future: not by this clock
            raise InvalidCredentials(SIGN_IN_AGAIN)
        return claims

    def verify(self, token: str, *, renew: bool = True) -> Verified:
        """The user and session behind ``token``, or :class:`InvalidCredentials`.

        Rejects: another algorithm (``none`` included), a bad or non-canonical signature, missing
        claims, an expired token, a revoked or unknown session, a deleted or locked user. Notes the
        session as seen (at most once a minute). With ``renew``, a token past half its lifetime
        gets a successor in :attr:`Verified.renewed_token` (same session, fresh ``exp``); so does a
        token whose role is out of date.
        """
        now = self._clock()
        claims = self._decode(token, now)
        with self._engine.connect() as conn:
            row = conn.execute(
                select(auth_sessions, users.c.username, users.c.email, users.c.role.label("user_role"),
                       users.c.created_at.label("user_created_at"), users.c.locked_at)
                .join(users, users.c.id == auth_sessions.c.user_id)
                .where(auth_sessions.c.jti == claims["jti"])
            ).first()
        if row is None or row.user_id != claims["sub"]:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        session = _session(row)
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
        half_life = self.policy.session_lifetime.total_seconds() / 2
        if renew and (claims["exp"] - now.timestamp() < half_life or claims["role"] != user.role):
            renewed = self._encode(user, session.jti, now)
            changes["expires_at"] = max(session.expires_at, now + self.policy.session_lifetime)
            changes["last_seen_at"] = now
        if changes:
            with self._engine.begin() as conn:
                conn.execute(update(auth_sessions).where(auth_sessions.c.jti == session.jti,
                                                         auth_sessions.c.revoked_at.is_(None)).values(**changes))
            session = replace(session, **changes)
        return Verified(user, session, renewed)

    def _revoke_where(self, conn: Connection, condition, reason: RevokeReason, now: datetime,
                      keep_jti: str | None = None) -> int:
        where = and_(condition, auth_sessions.c.revoked_at.is_(None))
        if keep_jti is not None:
            where = and_(where, auth_sessions.c.jti != keep_jti)
        return conn.execute(update(auth_sessions).where(where).values(revoked_at=now, revoked_reason=reason)).rowcount

    def logout(self, token: str, *, ip: str | None = None) -> bool:
        """End the session behind ``token``. False (and nothing recorded) if it was not a live session."""
        try:
            verified = self.verify(token, renew=False)
        except InvalidCredentials:
            return False
        with self._engine.begin() as conn:
            ended = self._revoke_where(conn, auth_sessions.c.jti == verified.session.jti, "logout", self._clock())
            if ended:
                self.audit.record("logout", actor_id=verified.user.id, subject_id=verified.user.id, ip=ip,
                                  detail={"session": verified.session.jti}, conn=conn)
        return bool(ended)

    def logout_everywhere(self, user_id: str, *, ip: str | None = None) -> int:
        """End every session of ``user_id`` (the caller's own, from the account page). Returns how many."""
        with self._engine.begin() as conn:
            ended = self._revoke_where(conn, auth_sessions.c.user_id == user_id, "logout_all", self._clock())
            self.audit.record("logout", actor_id=user_id, subject_id=user_id, ip=ip,
                              detail={"everywhere": True, "sessions_ended": ended}, conn=conn)
        return ended

    def sessions(self, user_id: str, *, include_inactive: bool = False) -> list[AuthSession]:
        """A user's sessions, newest first (for "where am I signed in")."""
        now = self._clock()
        query = select(auth_sessions).where(auth_sessions.c.user_id == user_id)
        if not include_inactive:
            query = query.where(auth_sessions.c.revoked_at.is_(None), auth_sessions.c.expires_at > now)
        with self._engine.connect() as conn:
            return [_session(r) for r in conn.execute(query.order_by(auth_sessions.c.created_at.desc())).all()]

    def revoke_session(self, actor: User, jti: str, *, ip: str | None = None) -> None:
        """End one session: the owner may end their own, an admin anyone's. Unknown → :class:`NotFound`."""
        require_role(actor, "user")
        with self._engine.connect() as conn:
            owner = conn.execute(select(auth_sessions.c.user_id).where(auth_sessions.c.jti == jti)).scalar()
        if owner is None or (owner != actor.id and actor.role != "admin"):
            raise NotFound("No such session.")
        with self._engine.begin() as conn:
            ended = self._revoke_where(conn, auth_sessions.c.jti == jti, "owner" if owner == actor.id else "admin",
                                       self._clock())
            if ended:
                self.audit.record("session.revoke", actor_id=actor.id, subject_id=owner, ip=ip,
                                  detail={"session": jti}, conn=conn)

    def revoke_all_sessions(self, actor: User, user_id: str, *, ip: str | None = None) -> int:
        """Admin: end every session of ``user_id``."""
        require_role(actor, "admin")
        with self._engine.begin() as conn:
            ended = self._revoke_where(conn, auth_sessions.c.user_id == user_id, "admin", self._clock())
            self.audit.record("session.revoke", actor_id=actor.id, subject_id=user_id, ip=ip,
                              detail={"all": True, "sessions_ended": ended}, conn=conn)
        return ended

    # --- browser handoff -------------------------------------------------------------------
    def mint_handoff(self, session: AuthSession, *, browser: str) -> str:
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

    def redeem_handoff(self, token: str, *, browser: str | None) -> Login:
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
        session, user = _session(srow), user_from_row(urow)
        if not session.active_at(now) or user.locked:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        expires = max(session.expires_at, now + self.policy.session_lifetime)
        with self._engine.begin() as conn:
            conn.execute(update(auth_sessions).where(auth_sessions.c.jti == session.jti)
                         .values(expires_at=expires, last_seen_at=now))
        return Login(user, replace(session, expires_at=expires, last_seen_at=now), self._encode(user, session.jti, now))

    # --- admin operations ------------------------------------------------------------------
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
            self.audit.record("role.change", actor_id=actor.id, subject_id=user_id, ip=ip,
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
            ended = self._revoke_where(conn, auth_sessions.c.user_id == user_id, "locked", now)
            self.audit.record("user.lock", actor_id=actor.id, subject_id=user_id, ip=ip,
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
            self.audit.record("user.unlock", actor_id=actor.id if actor else None, subject_id=user_id, ip=ip,
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
            self.audit.record("account.erase", actor_id=actor.id, subject_id=user_id, ip=ip,
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

    # --- OIDC (st.login) ------------------------------------------------------------------
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
            user = self.users.get(user_id)
            if user.locked:
                raise PermissionDenied("This account is locked. Ask an administrator to unlock it.")
            return user
        clean_email = (email or "").strip() or None
        if clean_email and ("@" not in clean_email or len(clean_email) > 320 or any(c.isspace() for c in clean_email)):
            clean_email = None  # not an address we can store; the identity does not depend on it
        role: Role = "admin" if clean_email and clean_email.lower() in self.policy.oidc_admin_emails else "user"
        base = self._username_base(preferred_username, clean_email, name)
        for attempt in range(20):  # the name may be taken: add a short random suffix
            candidate = base if attempt == 0 else f"{base[:56]}-{secrets.token_hex(3)}"
            try:
                user = self.users.create(candidate, email=clean_email, role=role)
                break
            except ValidationError:
                continue
        else:  # pragma: no cover - 20 random suffixes all taken
            raise ValidationError("Could not pick a username; please try again.", field="username")
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(oidc_identities).values(issuer=issuer, subject=subject, user_id=user.id,
                                                            email=clean_email, created_at=self._clock()))
                self.audit.record("account.create", actor_id=user.id, subject_id=user.id, ip=ip,
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
            return self.users.get(user_id)
        return user

    @staticmethod
    def _username_base(preferred: str | None, email: str | None, name: str | None) -> str:
        for raw in (preferred, (email or "").split("@")[0], name, "user"):
            cleaned = re.sub(r"[^a-z0-9_.-]+", "-", (raw or "").strip().lower()).strip("-._")[:64]
            if len(cleaned) < 3:
                continue
            try:
                return normalise_username(cleaned)
            except ValidationError:
                continue
        return "user"


# ---------------------------------------------------------------------------------- first admin
def ensure_admin_from_settings(auth: AuthService, users: UserStore, settings: Settings) -> User | None:
    """Create the ``OPTIMUS_ADMIN_*`` admin if the settings name one and no admin exists yet.

    Returns the user created, or None. A weak password or a half-set pair is a :class:`ConfigError`
    naming the variable to fix.
    """
    username = (settings.admin_username or "").strip()
    password = settings.admin_password.get_secret_value() if settings.admin_password is not None else ""
    if not username and not password:
        return None
    if not username or not password:
        missing = "OPTIMUS_ADMIN_PASSWORD" if username else "OPTIMUS_ADMIN_USERNAME"
        raise ConfigError(f"{missing} is not set: set both OPTIMUS_ADMIN_USERNAME and OPTIMUS_ADMIN_PASSWORD "
                          "to create the first admin at start, or neither (and use `python -m core create-admin`).")
    if users.list_users(role="admin", limit=1):
        existing = users.find_by_username(username)
        if existing is None or existing.role != "admin":
            log.warning("OPTIMUS_ADMIN_USERNAME=%s ignored: an admin already exists", username)
        return None
    try:
        user = auth.create_admin(username, password, email=settings.admin_email, via="settings")
    except ValidationError as exc:
        name = {"password": "OPTIMUS_ADMIN_PASSWORD", "email": "OPTIMUS_ADMIN_EMAIL"}.get(
            exc.field or "", "OPTIMUS_ADMIN_USERNAME")
        raise ConfigError(f"{name}: {exc.message}") from None
    log.info("created the first admin %r from OPTIMUS_ADMIN_USERNAME", user.username)
    return user
