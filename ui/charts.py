"""Charts for the admin pages, in the theme's colours (``[theme] chartCategoricalColors``)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

import altair as alt

CHART_HEIGHT = 260


def daily_bars(rows: list[Any], value: str, color: str, start: date, end: date, *,
               money: bool = False) -> alt.Chart:
    """Stacked bars per UTC day over exactly the picked range: a single day is one slim bar in the
    middle of its day, not a wall across the whole chart."""
    days = (end - start).days + 1
    width = max(2, min(36, 640 // (days * 2)))
    records = [r if isinstance(r, dict) else asdict(r) for r in rows]  # typed analytics values or plain rows
    data = [{**r, "_at": f"{r['day']}T12:00:00Z"} for r in records]
    # Ticks sit under the bars (noon UTC), at most eight of them, always including the last day.
    step = max(1, -(-days // 8))
    ticks = [_noon(end - timedelta(days=i)) for i in range(0, days, step)]
    x = alt.X("_at:T", title=None, scale=alt.Scale(type="utc", domain=[f"{start}T00:00:00Z",
                                                                      f"{end + timedelta(days=1)}T00:00:00Z"]),
              axis=alt.Axis(format="%b %d", labelAngle=0, values=ticks, grid=False))
    y = alt.Y(f"sum({value}):Q", title=None, axis=alt.Axis(format="$,.4~f" if money else ",~s"))
    return (
        alt.Chart(alt.Data(values=data), height=CHART_HEIGHT)
        .mark_bar(size=width, cornerRadiusTopLeft=2, cornerRadiusTopRight=2)
        .encode(x=x, y=y, color=alt.Color(f"{color}:N", title=None, legend=alt.Legend(orient="bottom")),
                tooltip=[alt.Tooltip("day:N", title="Day"), alt.Tooltip(f"{color}:N", title=color.capitalize()),
                         alt.Tooltip(f"{value}:Q", title=value.replace("_usd", "").capitalize(),
                                     format="$,.5f" if money else ",")])
    )


def _noon(day: date) -> alt.DateTime:
    return alt.DateTime(year=day.year, month=day.month, date=day.day, hours=12, utc=True)


def count_bars(counts: dict[str, int]) -> alt.Chart:
    """One slim horizontal bar per label (e.g. memories per type), largest first."""
    data = [{"label": k, "count": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return (
        alt.Chart(alt.Data(values=data), height=max(80, 34 * len(data)))
        .mark_bar(size=20, cornerRadiusTopRight=2, cornerRadiusBottomRight=2)
        .encode(x=alt.X("count:Q", title=None, axis=alt.Axis(format=",d", tickMinStep=1)),
                y=alt.Y("label:N", title=None, sort=None), color=alt.value("#5b4bdb"),
                tooltip=[alt.Tooltip("label:N", title="Type"), alt.Tooltip("count:Q", title="Memories")])
    )


def latency_bars(models: list[Any]) -> alt.Chart:
    """p50 and p95 latency per model side by side on a log scale, so a 30x difference between
    them (or between models) stays readable."""
    rows = [{"model": f"{m.provider}:{m.model}", "percentile": name, "ms": max(float(getattr(m, key)), 1.0)}
            for m in models for name, key in (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"))]
    return (
        alt.Chart(alt.Data(values=rows), height=110 + 48 * len(models))  # the legend and axis fit inside
        # Points, not bars: a bar on a log scale has no zero to start from.
        .mark_circle(size=140, opacity=1)
        .encode(x=alt.X("ms:Q", title="milliseconds (log scale)", scale=alt.Scale(type="log", nice=True),
                        axis=alt.Axis(format=",~s")),
                y=alt.Y("model:N", title=None, sort=None), yOffset=alt.YOffset("percentile:N", sort=["p50", "p95"]),
                color=alt.Color("percentile:N", title=None, sort=["p50", "p95"], legend=alt.Legend(orient="bottom")),
                tooltip=[alt.Tooltip("model:N", title="Model"), alt.Tooltip("percentile:N", title="Percentile"),
                         alt.Tooltip("ms:Q", title="ms", format=",.0f")])
    )
