"""Admin analytics: KPIs and time series over users, messages, model usage and memory events.

Every query is a bounded aggregate over an index (``created_at`` / ``recorded_at``) so the admin
page stays fast on large installs. Days are UTC days.

Costs are never made up: runs of models on this machine (``core.usage.FREE_PROVIDERS``) are free,
runs without a known price are counted as such, and a total is ``None`` when no run in it had a price.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Engine, cast, func, select

from core.errors import ValidationError
from core.schema import conversations, memory_history, messages, model_usage, users
from core.usage import FREE_PROVIDERS

MAX_RANGE_DAYS = 366


@dataclass(frozen=True, slots=True)
class Kpis:
    users: int
    active_users_7d: int
    messages: int
    memories: int | None
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal  # of the runs with a known price
    priced_runs: int = 0
    free_runs: int = 0  # models on this machine: nothing to pay
    unpriced_runs: int = 0  # answered, but no price is known for the model (self-hosted, unlisted)


@dataclass(frozen=True, slots=True)
class MessagesOnDay:
    day: str  # ISO date, UTC
    role: str
    messages: int


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One provider/model over a range: cost is None when no run had a price; ``free`` = runs on this machine."""

    provider: str
    model: str
    runs: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    free: bool = False
    unpriced_runs: int = 0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class UsageOnDay:
    day: str
    model: str  # provider:model
    tokens: int
    cost_usd: float | None
    free: bool


@dataclass(frozen=True, slots=True)
class MemoryEventsOnDay:
    day: str
    event: str
    events: int


@dataclass(frozen=True, slots=True)
class TopUser:
    user: str
    runs: int
    tokens: int
    cost_usd: float | None
    free: bool


def _day(engine: Engine, column):
    # SQLite keeps UTC timestamps as text: date() gives the UTC day. PostgreSQL: cast at UTC.
    if engine.dialect.name == "sqlite":
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))] if values else 0.0


class Analytics:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @staticmethod
    def _range(start: date, end: date) -> tuple[datetime, datetime]:
        if end < start:
            raise ValidationError("The end date is before the start date.", field="end")
        if (end - start).days > MAX_RANGE_DAYS:
            raise ValidationError(f"Pick at most {MAX_RANGE_DAYS} days.", field="start")
        return (datetime.combine(start, datetime.min.time(), tzinfo=UTC),
                datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC))

    def kpis(self, *, now: datetime | None = None, memories: int | None = None) -> Kpis:
        now = now or datetime.now(UTC)
        week = now - timedelta(days=7)
        with self._engine.connect() as conn:
            n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
            active = conn.execute(
                select(func.count(func.distinct(conversations.c.user_id))).where(conversations.c.updated_at >= week)
            ).scalar_one()
            n_messages = conn.execute(select(func.count()).select_from(messages)).scalar_one()
            tin, tout, cost, priced, free, unpriced = conn.execute(
                select(func.coalesce(func.sum(model_usage.c.input_tokens), 0),
                       func.coalesce(func.sum(model_usage.c.output_tokens), 0),
                       func.coalesce(func.sum(model_usage.c.cost_usd), 0),
                       func.count().filter(model_usage.c.cost_usd.is_not(None)),
                       func.count().filter(model_usage.c.provider.in_(FREE_PROVIDERS)),
                       func.count().filter(model_usage.c.cost_usd.is_(None), model_usage.c.status == "ok",
                                           model_usage.c.provider.not_in(FREE_PROVIDERS)))
            ).one()
        return Kpis(n_users, active, n_messages, memories, int(tin), int(tout), Decimal(str(cost)),
                    int(priced), int(free), int(unpriced))

    def messages_per_day(self, start: date, end: date) -> list[MessagesOnDay]:
        lo, hi = self._range(start, end)
        day = _day(self._engine, messages.c.created_at).label("day")
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(day, messages.c.role, func.count().label("n"))
                .where(messages.c.created_at >= lo, messages.c.created_at < hi)
                .group_by(day, messages.c.role).order_by(day)
            ).all()
        return [MessagesOnDay(str(r.day), r.role, r.n) for r in rows]

    def usage_by_model(self, start: date, end: date) -> list[ModelUsage]:
        """Tokens, cost, runs and latency p50/p95 per provider/model (all purposes) in the range.

        ``cost_usd`` is None when no run of the model had a price; ``free`` marks models on this
        machine; ``unpriced_runs`` counts answered runs whose price is unknown."""
        lo, hi = self._range(start, end)
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        with self._engine.connect() as conn:
            result = conn.execute(
                select(model_usage.c.provider, model_usage.c.model, model_usage.c.status,
                       model_usage.c.input_tokens, model_usage.c.output_tokens, model_usage.c.cost_usd,
                       model_usage.c.latency_ms)
                .where(model_usage.c.created_at >= lo, model_usage.c.created_at < hi)
            )
            for r in result:
                key = (r.provider, r.model)
                t = totals.setdefault(key, {"provider": r.provider, "model": r.model, "runs": 0, "errors": 0,
                                            "input_tokens": 0, "output_tokens": 0, "cost_usd": None,
                                            "free": r.provider in FREE_PROVIDERS, "unpriced_runs": 0})
                t["runs"] += 1
                t["errors"] += r.status != "ok"
                t["input_tokens"] += r.input_tokens
                t["output_tokens"] += r.output_tokens
                if r.cost_usd is not None:
                    t["cost_usd"] = (t["cost_usd"] or Decimal(0)) + Decimal(str(r.cost_usd))
                elif r.status == "ok" and not t["free"]:
                    t["unpriced_runs"] += 1
                if r.status == "ok":
                    latencies[key].append(float(r.latency_ms))
        out = [ModelUsage(**t, latency_p50_ms=round(_pct(latencies[key], 50), 1),
                          latency_p95_ms=round(_pct(latencies[key], 95), 1)) for key, t in totals.items()]
        return sorted(out, key=lambda t: (-t.runs, t.provider, t.model))

    def usage_per_day(self, start: date, end: date) -> list[UsageOnDay]:
        lo, hi = self._range(start, end)
        day = _day(self._engine, model_usage.c.created_at).label("day")
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(day, model_usage.c.provider, model_usage.c.model,
                       func.sum(model_usage.c.input_tokens + model_usage.c.output_tokens).label("tokens"),
                       func.sum(model_usage.c.cost_usd).label("cost"))
                .where(model_usage.c.created_at >= lo, model_usage.c.created_at < hi)
                .group_by(day, model_usage.c.provider, model_usage.c.model).order_by(day)
            ).all()
        return [UsageOnDay(str(r.day), f"{r.provider}:{r.model}", int(r.tokens or 0),
                           None if r.cost is None else float(r.cost), r.provider in FREE_PROVIDERS) for r in rows]

    def memory_events(self, start: date, end: date) -> list[MemoryEventsOnDay]:
        lo, hi = self._range(start, end)
        day = _day(self._engine, memory_history.c.recorded_at).label("day")
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(day, memory_history.c.event, func.count().label("n"))
                .where(memory_history.c.recorded_at >= lo, memory_history.c.recorded_at < hi)
                .group_by(day, memory_history.c.event).order_by(day)
            ).all()
        return [MemoryEventsOnDay(str(r.day), r.event, r.n) for r in rows]

    def top_users(self, start: date, end: date, *, limit: int = 10) -> list[TopUser]:
        lo, hi = self._range(start, end)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(users.c.username, func.count().label("runs"),
                       func.sum(model_usage.c.input_tokens + model_usage.c.output_tokens).label("tokens"),
                       func.sum(model_usage.c.cost_usd).label("cost"),
                       func.count().filter(model_usage.c.provider.not_in(FREE_PROVIDERS)).label("paid"))
                .join(users, users.c.id == model_usage.c.user_id)
                .where(model_usage.c.created_at >= lo, model_usage.c.created_at < hi)
                .group_by(users.c.username)
                .order_by(func.sum(model_usage.c.input_tokens + model_usage.c.output_tokens).desc())
                .limit(limit)
            ).all()
        return [TopUser(r.username, r.runs, int(r.tokens or 0), None if r.cost is None else float(r.cost),
                        r.paid == 0) for r in rows]
