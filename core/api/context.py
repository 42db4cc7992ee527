"""What every route needs: the runtime, and the caller behind the API key (rate-limited)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from core.apikeys import ApiKeyStore, KeyOwner
from core.errors import InvalidCredentials, RateLimited
from core.memory.learning import LearningService
from core.memory.limits import check_id
from core.memory.service import MemoryService
from core.memory.types import Scope
from core.proxies import client_address
from core.runtime import Runtime

AUTH_SCHEMES = ("token", "bearer")


class RateLimiter:
    """A token bucket per name (an account, a client address): ``per_minute`` requests a minute,
    bursts up to a minute's worth.

    Per process: with several API replicas each one allows ``per_minute`` (put a shared limiter in
    front, e.g. the reverse proxy, if that matters). ``per_minute == 0`` turns limiting off.
    ``who`` names what is limited in the message ("this account").
    """

    MAX_BUCKETS = 10_000  # beyond this, full buckets (idle callers) are forgotten

    def __init__(self, per_minute: int, *, who: str = "this account",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.who = who
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        """Take one request from ``name``'s bucket or raise :class:`RateLimited` saying when to retry."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * self._rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
                raise RateLimited(
                    f"Too many requests: {self.who} may make {self.per_minute} per minute. "
                    f"Retry in {math.ceil(wait)} s.",
                    retry_after=wait, detail={"limit": self.per_minute},
                )
            self._buckets[name] = (tokens - 1.0, now)
            if len(self._buckets) > self.MAX_BUCKETS:  # many addresses must not grow memory without end
                self._buckets = {k: (t, a) for k, (t, a) in self._buckets.items()
                                 if t + (now - a) * self._rate < self.per_minute}


@dataclass
class ApiContext:
    runtime: Runtime
    keys: ApiKeyStore
    limiter: RateLimiter  # per account, all its keys together
    learner: LearningService
    learn_wait: float  # seconds an inferred add may take before it is answered PENDING
    address_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, who="this address"))
    trusted_proxies: list = field(default_factory=list)

    @property
    def memory(self) -> MemoryService:
        return self.runtime.memory


def api_context(request: Request) -> ApiContext:
    ctx = getattr(request.app.state, "api", None)
    if ctx is None:  # only between import and start-up
        raise RuntimeError("the API runtime is not open yet")
    return ctx


key_header = APIKeyHeader(
    name="Authorization", auto_error=False, scheme_name="ApiKey",
    description="`Token om_…` (what mem0's client sends) or `Bearer om_…`.",
)


def key_from_header(value: str | None) -> str:
    if not value:
        raise InvalidCredentials("Missing API key: send the header 'Authorization: Token om_…'.")
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() not in AUTH_SCHEMES or not key.strip():
        raise InvalidCredentials("Send the API key as 'Authorization: Token om_…' or 'Bearer om_…'.")
    return key.strip()


def current_caller(
    request: Request,
    ctx: Annotated[ApiContext, Depends(api_context)],
    authorization: Annotated[str | None, Security(key_header)] = None,
) -> KeyOwner:
    """The account the request's key acts as; 401 for a missing/forged/revoked key, 429 over a limit.

    The client address is limited before the key is even looked up (so guessing keys is limited
    too), then the account, whichever of its keys is used; a use is counted only when accepted.
    """
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.get("x-forwarded-for"), ctx.trusted_proxies)
    ctx.address_limiter.check(address or "unknown")
    owner = ctx.keys.verify(key_from_header(authorization), count_use=False)
    ctx.limiter.check(owner.owner_id)
    ctx.keys.record_use(owner.key_id)
    return owner


Ctx = Annotated[ApiContext, Depends(api_context)]
Caller = Annotated[KeyOwner, Depends(current_caller)]


def scope_for(caller: KeyOwner, user_id: str | None, agent_id: str | None = None,
              run_id: str | None = None) -> Scope:
    """Where a new memory goes: ``user_id`` is the end-user inside the caller's account (default:
    the account's own memories, the ones its chats use). ``"*"`` and ids that cannot be stored are 422."""
    for key, value in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)):
        if value is not None:
            check_id(value, field=key)
    return Scope(owner_id=caller.owner_id, user_id=user_id or caller.owner_id, agent_id=agent_id, run_id=run_id)
