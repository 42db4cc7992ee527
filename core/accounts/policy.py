"""The knobs of the accounts layer, read once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Settings


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """The knobs of :class:`~core.accounts.AuthService`; :meth:`from_settings` reads them from ``OPTIMUS_*``."""

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
