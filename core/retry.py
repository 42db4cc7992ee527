"""The retry policy, stated once.

Three things can fail on the way to a memory or a reply, and each is retried in exactly one place:

1. **A provider's transient error** (429, 5xx, a dropped connection): retried right away inside
   the one model request by :func:`provider_retrying` (tenacity), ``OPTIMUS_MODEL_RETRIES`` times
   with exponential backoff and jitter, honouring ``Retry-After``. A stream is retried only while
   opening, never after text reached the person. This is the only in-process retry.
2. **A bad answer** (malformed or truncated output, a deadline passed): not retried in-process —
   asking the same model the same question at once mostly gets the same answer. The learning job
   fails and stays in the durable queue.
3. **The durable queue** (``core.memory.queue``) retries a failed learning job later, with its own
   exponential backoff (30 s, 60 s, …) up to ``max_attempts`` (5), on any replica; then it is
   ``failed`` and shown in health for an admin to retry.

So one transient error costs at most ``OPTIMUS_MODEL_RETRIES + 1`` model calls per request, and a
learning job at most that many per phase per queue attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelServerError,
    ModelUnavailableError,
)
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

TRANSIENT = (ModelRateLimitError, ModelUnavailableError, ModelServerError, ModelConnectionError)


def is_transient(exc: BaseException) -> bool:
    """A provider failure worth retrying at once: rate limited, overloaded, 5xx or disconnected."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, ModelHTTPError) and (exc.status_code == 429 or exc.status_code >= 500)


def backoff(attempt: int, exc: BaseException | None, *, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt + 1``: ``base * 2**attempt`` ±25 %, or the provider's
    ``Retry-After`` when that is longer, never above ``cap``."""
    wait = base * (2**attempt) * random.uniform(0.75, 1.25)
    after = getattr(exc, "retry_after", None)
    if isinstance(after, int | float) and after > wait:
        wait = float(after)
    return min(wait, cap)


def provider_retrying(
    *,
    retries: int,
    base_delay: float = 0.5,
    max_delay: float = 20.0,
    sleep: Callable[[float], Any] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> AsyncRetrying:
    """The tenacity policy for transient provider errors (see the module docstring)."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff(state.attempt_number - 1, exc, base=base_delay, cap=max_delay)

    async def pause(seconds: float) -> None:
        result = (sleep or asyncio.sleep)(seconds)
        if isinstance(result, Awaitable):
            await result

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    return AsyncRetrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, ModelAPIError) and is_transient(exc)),
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
