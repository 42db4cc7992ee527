"""Password login: one bcrypt check, the brute-force rules, then a session.

The same message and (one bcrypt check, a dummy hash for unknown users) the same time for an
unknown user and a wrong password. An admin-locked account answers exactly like a wrong password,
whether the password is right or not. Limits and CAPTCHAs come from :mod:`core.accounts.throttle`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, NoReturn

from sqlalchemy import Engine, select, update

from core.accounts.passwords import PasswordHasher, check_hash, hash_cost
from core.accounts.policy import AuthPolicy
from core.accounts.sessions import Login, Sessions
from core.accounts.throttle import LoginThrottle, lock_message
from core.audit import AuditLog
from core.errors import CaptchaRequired, InvalidCredentials, TooManyAttempts
from core.schema import users
from core.users import user_from_row

GENERIC_LOGIN_ERROR = "Wrong username or password."


class PasswordLogin:
    """Checks a username and password against the throttle and opens a session."""

    def __init__(self, engine: Engine, *, hasher: PasswordHasher, throttle: LoginThrottle, sessions: Sessions,
                 audit: AuditLog, policy: AuthPolicy, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._hasher = hasher
        self._throttle = throttle
        self._sessions = sessions
        self._audit = audit
        self._policy = policy
        self._clock = clock

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
        policy = self._policy
        throttle = self._throttle
        with self._engine.connect() as conn:
            account_failures, account_locked_until = throttle.account_state(conn, name, now)
            address_locked_until = throttle.address_locked_until(conn, ip, now)
            row = conn.execute(select(users).where(users.c.username == name)).first()
        subject = row.id if row is not None else None
        if address_locked_until is not None:
            throttle.refuse(name, ip, now, subject, "ip", address_locked_until)
        if account_locked_until is not None:
            throttle.refuse(name, ip, now, subject, "account", account_locked_until)

        if len(account_failures) >= policy.captcha_after:
            if not throttle.solve_captcha(captcha_id, captcha_answer, now):
                throttle.record(name, ip, "captcha", now)
                self._audit.record("login.failed", actor_id=None, subject_id=subject, ip=ip,
                                   detail={"reason": "captcha"})
                challenge = throttle.new_captcha()
                message = ("That answer was not right. Please try this one." if captcha_id
                           else "Please answer the question below to sign in.")
                raise CaptchaRequired(message, captcha_id=challenge.id, question=challenge.question)

        # Exactly one bcrypt check on every path that gets here, real or dummy, so timing says nothing.
        stored = row.password_hash if row is not None and row.password_hash else None
        password_ok = check_hash(password if isinstance(password, str) else "", stored or self._hasher.dummy())
        if row is None or stored is None or not password_ok:
            self._fail(name, ip, now, subject, account_failures)
        user = user_from_row(row)
        if user.locked:  # counted and answered as a failure: the answer must not confirm the password
            self._fail(name, ip, now, subject, account_failures, reason="admin_lock")
        if (hash_cost(stored) or 0) < policy.bcrypt_rounds:  # the cost was raised since: rehash at the new one
            with self._engine.begin() as conn:
                conn.execute(update(users).where(users.c.id == user.id).values(
                    password_hash=self._hasher.hash(password)))
        session, token = self._sessions.open(user, ip=ip, user_agent=user_agent, now=now, outcome_username=name)
        return Login(user, session, token)

    def _fail(self, name: str, ip: str | None, now: datetime, subject: str | None,
              failures_before: list[datetime], *, reason: str = "password") -> NoReturn:
        locked_until = self._throttle.note_failure(name, ip, now, failures_before)
        detail: dict[str, Any] = {"reason": reason}
        if locked_until is not None:
            detail["locked_minutes"] = max(1, math.ceil((locked_until - now).total_seconds() / 60))
        self._audit.record("login.failed", actor_id=None, subject_id=subject, ip=ip, detail=detail)
        if locked_until is not None:
            raise TooManyAttempts(f"{GENERIC_LOGIN_ERROR} " + lock_message("this account", locked_until - now),
                                  retry_after=(locked_until - now).total_seconds())
        failures = len(failures_before) + 1
        if failures >= self._policy.captcha_after:
            challenge = self._throttle.new_captcha()
            error = CaptchaRequired(GENERIC_LOGIN_ERROR, captcha_id=challenge.id, question=challenge.question)
            error.detail.update(self._attempts_left(self._policy.max_failures - failures, "lock"))
            raise error
        raise InvalidCredentials(GENERIC_LOGIN_ERROR,
                                 detail=self._attempts_left(self._policy.captcha_after - failures, "captcha"))

    def _attempts_left(self, left: int, then: Literal["captcha", "lock"]) -> dict[str, Any]:
        """What a failed sign-in tells the person before the next step: how many tries are left
        before a security question (or a lock). The same for every username, known or not."""
        minutes = max(1, round(self._policy.login_window.total_seconds() / 60))
        what = ("you are asked a security question" if then == "captcha"
                else f"sign-in is locked for {minutes} minutes")
        return {"attempts_left": left, "then": then,
                "warning": f"{left} attempt{'s' if left != 1 else ''} left before {what}."}
