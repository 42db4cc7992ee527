"""What an assistant turn carries besides its text: memories recalled for it, memory changes its
tools made, cost, latency and how it ended. Stored as JSON with the message; read back typed."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from core.memory.types import MemoryEvent


@dataclass(frozen=True, slots=True)
class RecalledMemory:
    """A memory put into the prompt for this reply, as it read then."""

    id: str
    text: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class TurnDetails:
    recalled: tuple[RecalledMemory, ...] = ()
    tool_events: tuple[MemoryEvent, ...] = ()  # changes the assistant's memory tools made mid-reply
    cost_usd: Decimal | None = None  # None: not known (or a stopped stream, which providers bill silently)
    latency_ms: float | None = None
    fell_back: bool = False  # answered by the fallback model
    stopped: bool = False  # the person stopped the stream; what was said is kept
    memory_private: bool = False  # hosted model while the person keeps memories to local models

    def with_tool_event_undone(self, index: int) -> TurnDetails:
        events = list(self.tool_events)
        events[index] = replace(events[index], undone=True)
        return replace(self, tool_events=tuple(events))

    def as_dict(self) -> dict[str, Any]:
        """JSON data (also what the person's data export shows)."""
        data: dict[str, Any] = {
            "recalled": [{"id": r.id, "text": r.text, "score": r.score} for r in self.recalled],
            "tool_events": [e.as_dict() for e in self.tool_events],
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "latency_ms": self.latency_ms,
            "fell_back": self.fell_back,
        }
        if self.stopped:
            data["stopped"] = True
        if self.memory_private:
            data["memory_private"] = True
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnDetails:
        """Read stored details; keys an older version did not write take their defaults."""
        recalled = tuple(RecalledMemory(str(r.get("id", "")), str(r.get("text", "")), r.get("score"))
                         for r in data.get("recalled") or [] if isinstance(r, dict))
        events = tuple(MemoryEvent.from_dict(e) for e in data.get("tool_events") or [] if isinstance(e, dict))
        return cls(recalled=recalled, tool_events=events, cost_usd=_decimal(data.get("cost_usd")),
                   latency_ms=data.get("latency_ms"), fell_back=bool(data.get("fell_back")),
                   stopped=bool(data.get("stopped")), memory_private=bool(data.get("memory_private")))

    @classmethod
    def from_json(cls, text: str | None) -> TurnDetails | None:
        return cls.from_dict(json.loads(text)) if text else None


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
