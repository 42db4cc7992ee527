"""Brute-force defence: failed-login counts, lockouts and the arithmetic CAPTCHA.

Every attempt is a row of ``login_attempts``. Failures count per username (known or not) since the
later of: the window's start (15 min), the last successful login, the end of the last lockout.
After ``captcha_after`` (3) failures a CAPTCHA is required; the failure that reaches
``max_failures`` (5) stores the lockout's end (the oldest of the last ``max_failures`` failures plus
the window) in ``locked_until``; once it passes, the count starts again from zero. Per address it
is a plain sliding count of failures (wrong or missing CAPTCHA answers included, so a client cannot
retry without limit): ``ip_max_failures`` (20) within the window refuse every login from it until
the oldest of them leaves the window. Logins whose address is unknown share one such count: an
unknown address never escapes the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select

from core.accounts.policy import AuthPolicy
from core.audit import AuditLog
from core.errors import TooManyAttempts
from core.schema import auth_captchas, login_attempts

CAPTCHA_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Captcha:
    id: str
    question: str


def record_attempt(conn: Connection, username: str, ip: str | None, outcome: str, now: datetime, *,
                   locked_until: datetime | None = None) -> None:
    """Write one ``login_attempts`` row inside the caller's transaction."""
    conn.execute(insert(login_attempts).values(username=username[:64], ip=None if ip is None else ip[:64],
                                               outcome=outcome, created_at=now, locked_until=locked_until))


def lock_message(who: str, remaining: timedelta) -> str:
    minutes = max(1, math.ceil(remaining.total_seconds() / 60))
    return f"Too many failed sign-ins for {who}. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


class LoginThrottle:
    """Counts attempts per username and per address, and issues and checks CAPTCHAs."""

    def __init__(self, engine: Engine, *, key: str, audit: AuditLog, policy: AuthPolicy,
                 clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._key = key
        self._audit = audit
        self._policy = policy
        self._clock = clock

    def record(self, username: str, ip: str | None, outcome: str, now: datetime, *,
               locked_until: datetime | None = None) -> None:
        """Write one attempt in its own transaction and drop rows too old to count."""
        with self._engine.begin() as conn:
            record_attempt(conn, username, ip, outcome, now, locked_until=locked_until)
            # Rows older than two windows no longer count for anything (a lockout ends within one).
            too_old = now - 2 * self._policy.login_window
            conn.execute(delete(login_attempts).where(login_attempts.c.created_at < too_old))

    def account_state(self, conn: Connection, username: str, now: datetime) -> tuple[list[datetime], datetime | None]:
        """(failures that count, newest first, at most max_failures; end of an active lockout or None)."""
        attempts = login_attempts.c
        mine = and_(attempts.username == username, attempts.created_at > now - 2 * self._policy.login_window)
        ends = conn.execute(
            select(func.max(attempts.locked_until)).where(mine, attempts.locked_until > now)
        ).scalar()
        if ends is not None:
            return [], ends
        last_ok, last_lockout_end = conn.execute(
            select(func.max(attempts.created_at).filter(attempts.outcome == "ok"),
                   func.max(attempts.locked_until).filter(attempts.locked_until <= now)).where(mine)
        ).one()
        since = max(t for t in (now - self._policy.login_window, last_ok, last_lockout_end) if t is not None)
        failures = conn.execute(
            select(attempts.created_at).where(mine, attempts.outcome == "failed", attempts.created_at > since)
            .order_by(attempts.created_at.desc()).limit(self._policy.max_failures)
        ).scalars().all()
        return list(failures), None

    def address_locked_until(self, conn: Connection, ip: str | None, now: datetime) -> datetime | None:
        limit = self._policy.ip_max_failures
        # Unknown addresses are one address: not knowing who is guessing must not mean no limit.
        same_address = login_attempts.c.ip.is_(None) if not ip else login_attempts.c.ip == ip[:64]
        failures = conn.execute(
            select(login_attempts.c.created_at).where(
                same_address, login_attempts.c.outcome.in_(("failed", "captcha")),
                login_attempts.c.created_at > now - self._policy.login_window)
            .order_by(login_attempts.c.created_at.desc()).limit(limit)
        ).scalars().all()
        return failures[limit - 1] + self._policy.login_window if len(failures) >= limit else None

    def note_failure(self, username: str, ip: str | None, now: datetime, failures_before: list[datetime]
                     ) -> datetime | None:
        """Record a failed attempt; return the lockout's end if this one reached ``max_failures``."""
        failures = [now, *failures_before]
        limit = self._policy.max_failures
        locked_until = failures[limit - 1] + self._policy.login_window if len(failures) >= limit else None
        self.record(username, ip, "failed", now, locked_until=locked_until)
        return locked_until

    def refuse(self, name: str, ip: str | None, now: datetime, subject: str | None, scope: str,
               until: datetime) -> NoReturn:
        """Record and raise :class:`TooManyAttempts` for a locked account (``scope="account"``) or address."""
        self.record(name, ip, "locked", now)
        self._audit.record("login.locked", actor_id=None, subject_id=subject, ip=ip,
                           detail={"scope": scope, "minutes": max(1, math.ceil((until - now).total_seconds() / 60))})
        who = "this account" if scope == "account" else "your network address"
        raise TooManyAttempts(lock_message(who, until - now), retry_after=(until - now).total_seconds())

    # --- CAPTCHA ---------------------------------------------------------------------------
    def captcha_needed(self, username: str) -> bool:
        """Whether the next login for ``username`` must answer a CAPTCHA (for showing it up front)."""
        name = (username or "").strip().lower()[:64]
        with self._engine.connect() as conn:
            failures, locked_until = self.account_state(conn, name, self._clock())
        return locked_until is None and len(failures) >= self._policy.captcha_after

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

    def solve_captcha(self, captcha_id: str | None, answer: str | int | None, now: datetime) -> bool:
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
