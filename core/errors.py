"""The errors Optimus raises on purpose.

Every error a person may see is an ``AppError``; its message is written for them. Anything
else escaping ``core`` is a bug and should surface as one.

    AppError
    ├── ClientError            the caller asked for something we will not do
    │   ├── ValidationError    bad input: empty/huge/invalid text, a bad field
    │   ├── NotFound           no such thing *for this caller* (never leaks existence)
    │   ├── PermissionDenied   authenticated, but not allowed
    │   ├── InvalidCredentials wrong username/password, forged or expired token
    │   │   ├── CaptchaRequired   repeated failures: the next try must answer an arithmetic question
    │   │   └── TooManyAttempts   the account or address is locked for the rest of the window
    │   ├── BudgetExceeded     the user's daily model budget is spent
    │   └── RateLimited        too many requests from one API key; says when to retry
    ├── ServiceError           the world failed; retrying later may work
    │   ├── StoreUnavailable   database or vector store unreachable
    │   └── ProviderUnavailable model provider down, refused or rate-limited
    │       └── ProviderTimeout the provider did not answer in time
    └── ConfigError            a setting is missing or invalid; says how to fix it
        ├── StartupError       storage could not be opened as configured
        └── ProviderAuthError  a provider key is missing or was rejected
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error whose message is meant for a person."""

    def __init__(self, message: str, *, detail: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def __str__(self) -> str:
        return self.message


class ClientError(AppError):
    """The caller's mistake; retrying the same request will fail the same way."""


class ValidationError(ClientError):
    """Input rejected before anything was stored."""

    def __init__(self, message: str, *, field: str | None = None, detail: dict | None = None) -> None:
        super().__init__(message, detail=detail)
        self.field = field


class NotFound(ClientError):
    """The object does not exist for this caller (it may exist for someone else)."""


class PermissionDenied(ClientError):
    """The caller is known but not allowed to do this."""


class InvalidCredentials(ClientError):
    """Authentication failed; the message never says which part was wrong."""


class CaptchaRequired(InvalidCredentials):
    """The next login attempt for this account must answer ``question`` (challenge ``captcha_id``)."""

    def __init__(self, message: str, *, captcha_id: str, question: str) -> None:
        super().__init__(message, detail={"captcha_id": captcha_id, "question": question})
        self.captcha_id = captcha_id
        self.question = question


class TooManyAttempts(InvalidCredentials):
    """Logins are refused until ``retry_after`` seconds have passed; the message says how long."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, detail={"retry_after": retry_after})
        self.retry_after = retry_after


class BudgetExceeded(ClientError):
    """The user's model spending limit for today is reached."""


class RateLimited(ClientError):
    """Too many requests in a short time; ``retry_after`` is the number of seconds to wait."""

    def __init__(self, message: str, *, retry_after: float, detail: dict | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(0.0, float(retry_after))


class ServiceError(AppError):
    """Something outside the caller's control failed."""


class StoreUnavailable(ServiceError):
    """The relational database or the vector store could not be reached."""


class ProviderUnavailable(ServiceError):
    """A model provider timed out, refused, or is down."""


class ProviderTimeout(ProviderUnavailable):
    """A model provider did not answer within the configured timeout."""


class ConfigError(AppError):
    """A setting is missing or invalid. The message names the setting and the fix."""


class StartupError(ConfigError):
    """Storage could not be opened in the configured mode."""


class ProviderAuthError(ConfigError):
    """A provider's API key is missing or the provider rejected it. Names the variable to set."""
