"""Admin analytics: usage, cost, latency and memory activity over a chosen date range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import streamlit as st

from core.analytics import Analytics
from core.errors import AppError
from pages.common import get_runtime, require_admin

runtime = get_runtime()
admin = require_admin()


@st.cache_resource
def _analytics() -> Analytics:
    return Analytics(get_runtime().storage.engine)


@st.cache_data(ttl=60, show_spinner=False)
def _load(start: date, end: date) -> dict:
    a = _analytics()
    return {
        "messages": a.messages_per_day(start, end),
        "models": a.usage_by_model(start, end),
        "usage_days": a.usage_per_day(start, end),
        "events": a.memory_events(start, end),
        "top": a.top_users(start, end),
    }


@st.cache_data(ttl=30, show_spinner=False)
def _kpis(memories: int | None):
    return _analytics().kpis(memories=memories)


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
cols = st.columns(6)
cols[0].metric("Users", f"{k.users:,}")
cols[1].metric("Active (7 days)", f"{k.active_users_7d:,}")
cols[2].metric("Messages", f"{k.messages:,}")
cols[3].metric("Memories", "—" if k.memories is None else f"{k.memories:,}")
cols[4].metric("Tokens", f"{k.input_tokens + k.output_tokens:,}")
cols[5].metric("Cost", f"${k.cost_usd:,.4f}")

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
        st.bar_chart(data["messages"], x="day", y="messages", color="role", height=260)
    else:
        st.caption("No messages in this range.")
with right:
    st.subheader("Memory events")
    if data["events"]:
        st.bar_chart(data["events"], x="day", y="events", color="event", height=260)
    else:
        st.caption("No memory changes in this range.")

left, right = st.columns(2)
with left:
    st.subheader("Tokens by model")
    if data["usage_days"]:
        st.bar_chart(data["usage_days"], x="day", y="tokens", color="model", height=260)
    else:
        st.caption("No model usage in this range.")
with right:
    st.subheader("Cost by model (USD)")
    if data["usage_days"]:
        st.bar_chart(data["usage_days"], x="day", y="cost_usd", color="model", height=260)
    else:
        st.caption("No model usage in this range.")

st.subheader("Models: latency and spend")
if data["models"]:
    st.dataframe(
        [{"Model": f"{m['provider']}:{m['model']}", "Runs": m["runs"], "Errors": m["errors"],
          "Tokens in": m["input_tokens"], "Tokens out": m["output_tokens"], "Cost ($)": float(m["cost_usd"]),
          "p50 (ms)": m["latency_p50_ms"], "p95 (ms)": m["latency_p95_ms"]} for m in data["models"]],
        hide_index=True, width="stretch",
    )
    st.bar_chart([{"model": f"{m['provider']}:{m['model']}", "p50": m["latency_p50_ms"], "p95": m["latency_p95_ms"]}
                  for m in data["models"]], x="model", y=["p50", "p95"], stack=False, height=240)
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
        st.bar_chart(by_type, horizontal=True, height=240)
    else:
        st.caption("Memory counts by type are shown per user on the Memories page.")
with right:
    st.subheader("Top users by tokens")
    if data["top"]:
        st.dataframe(data["top"], hide_index=True, width="stretch")
    else:
        st.caption("No usage in this range.")
