"""Admin analytics on SQLite and PostgreSQL with known data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from core.analytics import Analytics
from core.conversations import ConversationStore
from core.errors import ValidationError
from core.usage import UsageStore
from core.users import UserStore

DAY1 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seed(engine):
    clock = Clock(DAY1)
    people = UserStore(engine)
    ada, bob = people.create("ada"), people.create("bob")
    convs = ConversationStore(engine, clock=clock)
    usage = UsageStore(engine, clock=clock)
    conv = convs.create(ada.id)
    convs.append(conv.id, "user", "hi")
    convs.append(conv.id, "assistant", "hello")
    usage.record(user_id=ada.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=100,
                 input_tokens=1000, output_tokens=100, cost_usd=Decimal("0.0035"))
    clock.now = DAY2  # 30 minutes later, but the next UTC day
    convs.append(conv.id, "user", "again")
    usage.record(user_id=ada.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=300,
                 input_tokens=2000, output_tokens=200, cost_usd=Decimal("0.007"))
    usage.record(user_id=bob.id, purpose="extract", provider="local", model="local", latency_ms=900,
                 input_tokens=50, output_tokens=10)
    usage.record(user_id=bob.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=60_000,
                 status="timeout")
    usage.record(user_id=bob.id, purpose="chat", provider="compatible", model="qwen2.5-7b", latency_ms=700,
                 input_tokens=40, output_tokens=20)
    return ada, bob


def test_kpis_and_series(engine):
    seed(engine)
    a = Analytics(engine)
    k = a.kpis(now=DAY2 + timedelta(hours=1), memories=7)
    assert (k.users, k.active_users_7d, k.messages, k.memories) == (2, 1, 3, 7)
    assert (k.input_tokens, k.output_tokens, k.cost_usd) == (3090, 330, Decimal("0.0105"))
    assert (k.priced_runs, k.free_runs, k.unpriced_runs) == (2, 1, 1)  # the self-hosted run has no price
    per_day = a.messages_per_day(date(2026, 11, 20), date(2026, 11, 21))
    assert [(d.day, d.role, d.messages) for d in per_day] == [("2026-11-20", "assistant", 1),
                                                              ("2026-11-20", "user", 1), ("2026-11-21", "user", 1)]
    models = {m.model: m for m in a.usage_by_model(date(2026, 11, 20), date(2026, 11, 21))}
    gpt = models["gpt-4o"]
    assert (gpt.runs, gpt.errors, gpt.input_tokens) == (3, 1, 3000)
    assert gpt.latency_p50_ms in (100.0, 300.0) and gpt.latency_p95_ms == 300.0  # timeouts excluded
    assert gpt.cost_usd == Decimal("0.0105") and gpt.unpriced_runs == 0  # the timeout cost nothing
    assert models["local"].cost_usd is None and models["local"].free  # free (local), not $0
    vllm = models["qwen2.5-7b"]
    assert vllm.cost_usd is None and not vllm.free and vllm.unpriced_runs == 1  # unknown, not $0
    days = {(d.day, d.model): d for d in a.usage_per_day(date(2026, 11, 21), date(2026, 11, 21))}
    assert set(days) == {("2026-11-21", "openai:gpt-4o"), ("2026-11-21", "local:local"),
                         ("2026-11-21", "compatible:qwen2.5-7b")}
    assert days[("2026-11-21", "local:local")].cost_usd is None
    assert days[("2026-11-21", "openai:gpt-4o")].cost_usd == pytest.approx(0.007)
    top = a.top_users(date(2026, 11, 20), date(2026, 11, 21))
    assert [(t.user, t.cost_usd) for t in top] == [("ada", pytest.approx(0.0105)), ("bob", None)]


def test_ranges_are_validated(engine):
    a = Analytics(engine)
    with pytest.raises(ValidationError):
        a.messages_per_day(date(2026, 11, 21), date(2026, 11, 20))
    with pytest.raises(ValidationError):
        a.usage_by_model(date(2024, 1, 1), date(2026, 1, 1))
