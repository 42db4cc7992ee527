"""Typed values of the memory engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

MemoryType = Literal["conversation", "note", "document", "preference", "fact", "relationship"]
MEMORY_TYPES: tuple[str, ...] = ("conversation", "note", "document", "preference", "fact", "relationship")
EventKind = Literal["ADD", "UPDATE", "DELETE", "NONE"]


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a memory belongs to: the owner account (tenant) and mem0's end-user scope inside it.

    A chat user's own memories use ``user_id == owner_id``; an API key may keep memories for
    many end-user ids of its owner. Nothing ever crosses ``owner_id``.
    """

    owner_id: str
    user_id: str
    agent_id: str | None = None
    run_id: str | None = None

    @classmethod
    def personal(cls, account_id: str) -> Scope:
        return cls(owner_id=account_id, user_id=account_id)


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    id: str
    text: str
    owner_id: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    type: str
    importance: int
    confidence: float
    entities: tuple[str, ...]
    people: tuple[str, ...]
    tags: tuple[str, ...]
    expires_at: date | None
    created_at: str | None
    updated_at: str | None
    hash: str | None
    score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return Scope(self.owner_id, self.user_id or self.owner_id, self.agent_id, self.run_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memory": self.text,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "type": self.type,
            "importance": self.importance,
            "confidence": self.confidence,
            "entities": list(self.entities),
            "people": list(self.people),
            "tags": list(self.tags),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "hash": self.hash,
            "score": self.score,
            "metadata": self.metadata,
        }


class CandidateMemory(BaseModel):
    """One durable fact the extractor found in the newest exchange."""

    text: str = Field(min_length=1, max_length=500, description="Short, self-contained, third person.")
    type: MemoryType = "fact"
    importance: int = Field(3, ge=1, le=5, description="1 trivia … 5 essential")
    confidence: float = Field(0.8, ge=0, le=1)
    entities: list[str] = Field(default_factory=list, max_length=20)
    people: list[str] = Field(default_factory=list, max_length=20)
    tags: list[str] = Field(default_factory=list, max_length=20)
    expires_at: date | None = Field(None, description="Date after which the fact stops being true, if known.")

    @field_validator("text")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("empty memory text")
        return value

    @field_validator("entities", "people", "tags")
    @classmethod
    def _clean_list(cls, values: list[str]) -> list[str]:
        seen: list[str] = []
        for v in values:
            v = " ".join(str(v).split())[:100]
            if v and v.lower() not in {s.lower() for s in seen}:
                seen.append(v)
        return seen


class NewMemory(BaseModel):
    """One memory for bulk ingest (:meth:`MemoryService.add_many`): stored verbatim, no model."""

    text: str
    type: MemoryType = "note"
    importance: int = Field(3, ge=1, le=5)
    confidence: float = Field(1.0, ge=0, le=1)
    entities: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    expires_at: date | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


MAX_CANDIDATES = 6
"""At most this many facts are learned from one exchange; the output schema says so too."""
MAX_FACT_CHARS = 150
VERDICT_PATTERN = r"^(new|(same|replaces|retracts) [1-9])$"


# Phase 1 output, compact on purpose: the model writes only the facts; code derives the rest.
# The bounds are part of the JSON schema, so a grammar-constrained local model cannot loop: at
# most MAX_CANDIDATES facts of at most MAX_FACT_CHARS characters. (No docstrings on these two:
# pydantic would put them in the schema, and the schema goes into the model's prompt.)
class ExtractedFacts(BaseModel):
    facts: list[Annotated[str, StringConstraints(max_length=MAX_FACT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_CANDIDATES)


# Phase 2 output: one verdict per NEW fact, in order ("new", "same 1", "replaces 2", "retracts 1").
class Verdicts(BaseModel):
    verdicts: list[Annotated[str, StringConstraints(pattern=VERDICT_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_CANDIDATES)


@dataclass(frozen=True, slots=True)
class MemoryEvent:
    """What happened to long-term memory because of one candidate (or one manual operation).

    For UPDATE and DELETE, ``before`` is the memory as it was (``MemoryRecord.as_dict()``), so
    the change can be shown as "was → now" and undone exactly. ``undone`` is set once it was.
    """

    event: EventKind
    memory_id: str | None
    text: str | None
    previous_text: str | None = None
    reason: str = ""
    applied: bool = True
    rejected: str | None = None  # why a candidate or a model decision was refused (never applied)
    before: dict[str, Any] | None = None
    undone: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "memory_id": self.memory_id,
            "text": self.text,
            "previous_text": self.previous_text,
            "reason": self.reason,
            "applied": self.applied,
            "rejected": self.rejected,
            "before": self.before,
            "undone": self.undone,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryEvent:
        return cls(**{k: data.get(k) for k in cls.__slots__ if k in data})

    @property
    def undoable(self) -> bool:
        return self.applied and not self.undone and self.event in ("ADD", "UPDATE", "DELETE") and bool(self.memory_id)
