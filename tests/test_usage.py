"""Usage and cost records on SQLite and PostgreSQL; prices from the bundled genai-prices snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete

from core.errors import ValidationError
from core.schema import users as users_table
from core.usage import UsageStore, estimate_cost, price
from core.users import UserStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 23, 50, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_known_models_have_prices_and_unknown_ones_do_not():
    paid = price("openai", "gpt-4o", 10_000, 2_000)
    assert paid is not None and paid == Decimal("0.045")  # $2.50/M in, $10/M out
    assert price("xai", "grok-4.3", 1000, 500) is not None  # provider id mapped to genai-prices' "x-ai"
    assert price("local", "local", 1000, 500) is None
    assert price("openai", "no-such-model-xyz", 1000, 500) is None


def test_estimate_cost_before_sending():
    est = estimate_cost("openai:gpt-4o", "x" * 4000, expected_output_tokens=1000)
    assert est.input_tokens == 1000 and est.output_tokens == 1000
    assert est.cost_usd == price("openai", "gpt-4o", 1000, 1000)
    assert estimate_cost("local", "hello").cost_usd is None
    with pytest.raises(ValidationError):
        estimate_cost("openai:gpt-4o", None)  # type: ignore[arg-type]


def test_record_and_daily_spend_resets_at_midnight_utc(engine):
    clock = Clock()
    store = UsageStore(engine, clock=clock)
    person = UserStore(engine).create("spender")
    store.record(user_id=person.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=120.5,
                 input_tokens=10_000, output_tokens=2_000, cost_usd=Decimal("0.045"), conversation_id="c1")
    store.record(user_id=person.id, purpose="extract", provider="local", model="local", latency_ms=900,
                 input_tokens=300, output_tokens=40)
    store.record(user_id=person.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=30_000,
                 status="timeout", error="ModelRequestTimeout: 30s")
    assert store.spent_today(person.id) == Decimal("0.045")
    rows = store.for_user(person.id)
    assert [(r.purpose, r.status) for r in rows] == [("chat", "timeout"), ("extract", "ok"), ("chat", "ok")]
    assert rows[1].cost_usd is None and rows[2].cost_usd == Decimal("0.045")
    totals = {(t["model"], t["status"]): t for t in store.totals()}
    assert totals[("gpt-4o", "ok")]["input_tokens"] == 10_000
    clock.now += timedelta(minutes=15)  # past midnight UTC: a new day
    assert store.spent_today(person.id) == 0


def test_erasing_a_person_keeps_the_installs_totals_but_unlinks_them(engine):
    store = UsageStore(engine)
    person = UserStore(engine).create("leaver")
    store.record(user_id=person.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=10,
                 cost_usd=Decimal("0.01"))
    with engine.begin() as conn:
        conn.execute(delete(users_table).where(users_table.c.id == person.id))
    assert store.for_user(person.id) == []
    assert sum(t["cost_usd"] or 0 for t in store.totals()) == Decimal("0.01")


def test_bad_status_is_refused_by_the_database(engine):
    store = UsageStore(engine)
    with pytest.raises(Exception):
        store.record(user_id=None, purpose="chat", provider="x", model="y", latency_ms=1, status="weird")  # type: ignore[arg-type]


def test_cost_reads_free_for_local_models_and_unknown_rather_than_zero():
    from core.usage import cost_label, provider_of

    assert cost_label(provider_of("local"), None) == "free (local)"
    assert cost_label(provider_of("local:qwen2.5-1.5b"), None) == "free (local)"
    assert cost_label(provider_of("ollama:llama3.2"), None) == "free (local)"
    assert cost_label(provider_of("compatible:qwen2.5-7b"), None) == "cost unknown"
    assert cost_label("openai", Decimal("0.00012")) == "$0.00012"
    assert cost_label("openai", "1.5") == "$1.5000"
