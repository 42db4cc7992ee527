"""Admin analytics: usage, cost, latency and memory activity over a chosen date range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import streamlit as st

from core.errors import AppError
from core.usage import cost_label
from ui.common import get_runtime, require_admin
from ui.charts import count_bars, daily_bars, latency_bars

runtime = get_runtime()
admin = require_admin()


@st.cache_data(ttl=60, show_spinner=False)
def _load(start: date, end: date) -> dict:
    a = get_runtime().analytics
    return {
        "messages": a.messages_per_day(start, end),
        "models": a.usage_by_model(start, end),
        "usage_days": a.usage_per_day(start, end),
        "events": a.memory_events(start, end),
        "top": a.top_users(start, end),
    }


@st.cache_data(ttl=30, show_spinner=False)
def _kpis(memories: int | None):
    return get_runtime().analytics.kpis(memories=memories)


st.title("Analytics")
today = datetime.now(UTC).date()
picked = st.date_input("Date range", value=(today - timedelta(days=29), today), max_value=today)
if not (isinstance(picked, tuple) and len(picked) == 2):
    st.info("Pick a start and an end date.")
    st.stop()
start, end = picked

try:
    memories = runtime.memory.count()
except AppError:
    memories = None
k = _kpis(memories)
cols = [*st.columns(3), *st.columns(3)]
cols[0].metric("Users", f"{k.users:,}")
cols[1].metric("Active (7 days)", f"{k.active_users_7d:,}")
cols[2].metric("Messages", f"{k.messages:,}")
cols[3].metric("Memories", "—" if k.memories is None else f"{k.memories:,}")
cols[4].metric("Tokens", f"{k.input_tokens + k.output_tokens:,}")
if k.priced_runs:
    cost_text = cost_label("", k.cost_usd)
elif k.free_runs and not k.unpriced_runs:
    cost_text = "free (local)"
else:
    cost_text = "unknown" if k.unpriced_runs else "$0"
notes = []
if k.free_runs:
    notes.append(f"{k.free_runs:,} free (local)")
if k.unpriced_runs:
    notes.append(f"{k.unpriced_runs:,} of unknown price")
cols[5].metric("Cost", cost_text, help="Runs with a known price; " + (", ".join(notes) or "no others") + " not counted.")
if notes:
    cols[5].caption("Not counted: " + " · ".join(notes) + " runs")

with st.spinner("Crunching numbers…"):
    try:
        data = _load(start, end)
    except AppError as exc:
        st.error(exc.message)
        st.stop()

left, right = st.columns(2)
with left:
    st.subheader("Messages per day")
    if data["messages"]:
        st.altair_chart(daily_bars(data["messages"], "messages", "role", start, end), width="stretch")
    else:
        st.caption("No messages in this range.")
with right:
    st.subheader("Memory events")
    if data["events"]:
        st.altair_chart(daily_bars(data["events"], "events", "event", start, end), width="stretch")
    else:
        st.caption("No memory changes in this range.")

left, right = st.columns(2)
with left:
    st.subheader("Tokens by model")
    if data["usage_days"]:
        st.altair_chart(daily_bars(data["usage_days"], "tokens", "model", start, end), width="stretch")
    else:
        st.caption("No model usage in this range.")
with right:
    st.subheader("Cost by model (USD)")
    priced = [d for d in data["usage_days"] if d.cost_usd is not None]
    if priced:
        st.altair_chart(daily_bars(priced, "cost_usd", "model", start, end, money=True), width="stretch")
    else:
        st.caption("No run in this range had a price.")
    free = sorted({d.model for d in data["usage_days"] if d.free})
    unknown = sorted({d.model for d in data["usage_days"] if d.cost_usd is None and not d.free})
    if free:
        st.caption("Free (local): " + ", ".join(free))
    if unknown:
        st.caption("Price unknown, not counted: " + ", ".join(unknown))

st.subheader("Models: latency and spend")
if data["models"]:
    st.dataframe(
        [{"Model": f"{m.provider}:{m.model}", "Runs": m.runs, "Errors": m.errors,
          "Tokens in": m.input_tokens, "Tokens out": m.output_tokens,
          "Cost": cost_label(m.provider, m.cost_usd)
          + (f" (+{m.unpriced_runs} unpriced)" if m.cost_usd is not None and m.unpriced_runs else ""),
          "p50 (ms)": m.latency_p50_ms, "p95 (ms)": m.latency_p95_ms} for m in data["models"]],
        hide_index=True, width="stretch",
    )
    timed = [m for m in data["models"] if m.latency_p95_ms > 0]
    if timed:
        st.altair_chart(latency_bars(timed), width="stretch")
        st.caption("Latency per model on a log scale: median (p50) and 95th percentile (p95) of the runs that "
                   "answered; failed runs are left out.")
else:
    st.caption("No model runs in this range.")

left, right = st.columns(2)
with left:
    st.subheader("Memories by type")
    try:
        by_type = runtime.memory.count_by_type()
    except AppError:
        by_type = None
    if by_type:
        st.altair_chart(count_bars(by_type), width="stretch")
    else:
        st.caption("Memory counts by type are shown per user on the Memories page.")
with right:
    st.subheader("Top users by tokens")
    if data["top"]:
        st.dataframe([{"User": t.user, "Runs": t.runs, "Tokens": t.tokens,
                       "Cost": cost_label("local" if t.free else "", t.cost_usd)} for t in data["top"]],
                     hide_index=True, width="stretch")
    else:
        st.caption("No usage in this range.")
