"""Model usage and cost: one row per model run, priced with genai-prices (bundled with pydantic-ai).

Prices come from the snapshot shipped with the installed ``genai-prices``; nothing is fetched at
run time. A model the snapshot does not know (the local model, Ollama, self-hosted servers) has
an unknown cost, stored as NULL and shown as "—", never as a made-up zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import Engine, func, insert, select

from core.errors import ValidationError
from core.schema import model_usage

log = logging.getLogger(__name__)

Purpose = Literal["chat", "extract", "update", "title"]
Status = Literal["ok", "error", "timeout", "cancelled"]
# Rough English average for BPE tokenizers; estimates are labelled as such in the UI.
CHARS_PER_TOKEN = 4.0
# genai-prices calls xAI "x-ai"; the rest share pydantic-ai's provider names.
_PRICE_PROVIDER = {"xai": "x-ai"}


@dataclass(frozen=True, slots=True)
class UsageRow:
    id: int
    user_id: str | None
    conversation_id: str | None
    purpose: str
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    latency_ms: float
    status: str
    error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CostEstimate:
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None  # None: no price known for this model


def price(provider: str, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    """USD cost of a run, or None when genai-prices has no price for the model."""
    if provider in {"local", "test", "function", "ollama"} or not model:
        return None
    from genai_prices import Usage, calc_price

    try:
        calc = calc_price(
            Usage(input_tokens=int(input_tokens), output_tokens=int(output_tokens)),
            model,
            provider_id=_PRICE_PROVIDER.get(provider, provider),
        )
    except (LookupError, ValueError):
        return None
    return Decimal(str(calc.total_price))


FREE_PROVIDERS = frozenset({"local", "ollama"})
"""Models that run on the install's own hardware: no bill, so their cost is "free (local)"."""


def provider_of(model_id: str | None) -> str:
    """``"openai"`` for ``"openai:gpt-6-luna"``; ``"local"`` for ``"local"`` and ``"local:<name>"``."""
    return (model_id or "").partition(":")[0]


def cost_label(provider: str, cost_usd: Decimal | float | None) -> str:
    """How a run's cost reads everywhere: "free (local)" for models on this machine, "cost unknown"
    when no price is known (never a made-up $0), otherwise the amount in US dollars."""
    if provider in FREE_PROVIDERS:
        return "free (local)"
    if cost_usd is None:
        return "cost unknown"
    amount = Decimal(str(cost_usd))
    if amount == 0:
        return "$0"
    return f"${amount:.5f}" if amount < Decimal("0.01") else f"${amount:,.4f}"


def count_tokens_estimate(text: str) -> int:
    return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def estimate_cost(model_id: str, text: str, *, context_chars: int = 0, expected_output_tokens: int = 400) -> CostEstimate:
    """What sending ``text`` (plus ``context_chars`` of history and recalled memories) would cost.

    Token counts are estimated from characters (no tokenizer download); the price is genai-prices'.
    """
    if not isinstance(text, str):
        raise ValidationError("Text is required to estimate a cost.", field="text")
    provider, _, model = model_id.partition(":")
    if not model:
        provider, model = model_id, model_id
    tokens_in = count_tokens_estimate(text) + count_tokens_estimate("x" * context_chars)
    return CostEstimate(tokens_in, expected_output_tokens, price(provider, model, tokens_in, expected_output_tokens))


def _row(r) -> UsageRow:
    return UsageRow(
        id=r.id, user_id=r.user_id, conversation_id=r.conversation_id, purpose=r.purpose, provider=r.provider,
        model=r.model, requests=r.requests, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
        cost_usd=None if r.cost_usd is None else Decimal(str(r.cost_usd)), latency_ms=r.latency_ms,
        status=r.status, error=r.error, created_at=r.created_at,
    )


class UsageStore:
    """Usage rows in the relational database. Thread-safe (one transaction per call)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))

    def record(
        self,
        *,
        user_id: str | None,
        purpose: Purpose,
        provider: str,
        model: str,
        latency_ms: float,
        status: Status = "ok",
        conversation_id: str | None = None,
        requests: int = 1,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal | None = None,
        error: str | None = None,
    ) -> int:
        with self._engine.begin() as conn:
            return conn.execute(
                insert(model_usage)
                .values(
                    user_id=user_id, conversation_id=conversation_id, purpose=purpose,
                    provider=(provider or "unknown")[:40], model=(model or "unknown")[:200],
                    requests=int(requests), input_tokens=int(input_tokens or 0),
                    output_tokens=int(output_tokens or 0), cost_usd=cost_usd, latency_ms=float(latency_ms),
                    status=status, error=None if error is None else error[:2000], created_at=self._clock(),
                )
                .returning(model_usage.c.id)
            ).scalar_one()

    def _day_start(self) -> datetime:
        now = self._clock().astimezone(UTC)
        return now.replace(hour=0, minute=0, second=0, microsecond=0)

    def spent_today(self, user_id: str) -> Decimal:
        """USD the user's runs cost since 00:00 UTC (unknown prices count as 0)."""
        with self._engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(model_usage.c.cost_usd), 0)).where(
                    model_usage.c.user_id == user_id, model_usage.c.created_at >= self._day_start()
                )
            ).scalar_one()
        return Decimal(str(total))

    def for_user(self, user_id: str, *, limit: int = 100) -> list[UsageRow]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(model_usage).where(model_usage.c.user_id == user_id)
                .order_by(model_usage.c.id.desc()).limit(limit)
            ).all()
        return [_row(r) for r in rows]

    def for_conversation(self, conversation_id: str) -> list[UsageRow]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(model_usage).where(model_usage.c.conversation_id == conversation_id).order_by(model_usage.c.id)
            ).all()
        return [_row(r) for r in rows]

    def totals(self, *, since: timedelta | None = None) -> list[dict]:
        """Per provider/model/status totals, for the admin page."""
        query = select(
            model_usage.c.provider, model_usage.c.model, model_usage.c.status,
            func.count().label("runs"), func.sum(model_usage.c.requests).label("requests"),
            func.sum(model_usage.c.input_tokens).label("input_tokens"),
            func.sum(model_usage.c.output_tokens).label("output_tokens"),
            func.sum(model_usage.c.cost_usd).label("cost_usd"),
            func.avg(model_usage.c.latency_ms).label("avg_latency_ms"),
        ).group_by(model_usage.c.provider, model_usage.c.model, model_usage.c.status)
        if since is not None:
            query = query.where(model_usage.c.created_at >= self._clock() - since)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]
