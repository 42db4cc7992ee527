"""Times and amounts as people read them."""

from __future__ import annotations

from datetime import UTC, datetime


def ago(moment: datetime, *, now: datetime | None = None) -> str:
    """ "just now", "3 min ago", "2 h ago", "yesterday", "4 days ago", or the date for older times."""
    now = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = (now.date() - moment.astimezone(UTC).date()).days
    if days <= 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    return f"{moment:%Y-%m-%d}"


def recency_group(moment: datetime, *, now: datetime | None = None) -> str:
    """Which heading of a list sorted by recency a time falls under."""
    now = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    days = (now.astimezone(UTC).date() - moment.astimezone(UTC).date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days < 7:
        return "Previous 7 days"
    if days < 30:
        return "Previous 30 days"
    return "Older"
