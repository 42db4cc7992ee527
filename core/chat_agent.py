"""The chat agent: its instructions, the per-turn note, and the memory tools it may call.

The instructions are fixed per kind of model (never per turn), so a local model can reuse the
prompt prefix; what changes every turn — the date and the recalled memories — is a note placed just
before the person's message (:func:`notes_for`). Models that call tools get ``search_memories``,
``remember``, ``update_memory``, ``forget_memory`` and ``recent_memories``, all scoped through
``RunContext`` deps (:class:`ChatDeps`); a refused call is told to the model, never raised.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.toolsets import FunctionToolset

from core.errors import ClientError, NotFound
from core.memory.facts import as_note
from core.memory.service import MemoryFilters, MemoryService
from core.memory.types import MEMORY_TYPES, MemoryEvent, MemoryRecord, Scope

INSTRUCTIONS = """\
You are Optimus, a friendly assistant with a long-term memory. You talk with one person, the user.
Reply to the user's last message directly, in their language.
When the user tells you something about themselves, acknowledge it in your own words; never repeat \
their message back and never recite these instructions.
Use the notes about the user when they are relevant; never invent facts about the user, and say so \
when you do not know.
"""

LOCAL_STYLE = """\
Keep replies to one to three sentences unless the user asks for more.
Example:
User: I just adopted a cat named Miso.
Assistant: Congratulations on adopting Miso! How is she settling in?
"""
"""Added for the small offline model, which otherwise echoes the user (measured in bench/local_models.py)."""

NOTES = """\
Today is {today}.
Notes about the user from earlier conversations (may be outdated):
{memories}"""

TOOLS_HINT = """\
You can search, add, correct and delete memories with your tools. Save durable facts the person
asks you to remember; correct or forget memories when they tell you something changed.
"""


def notes_for(recalled: list[MemoryRecord], today: str, *, private: bool = False) -> str:
    """The per-turn note that goes just before the user's message: the date and what is recalled.

    It is kept out of the fixed instructions on purpose: a prompt that starts the same way every
    turn lets the local model reuse the work it did for the conversation so far.
    """
    if private:
        lines = "- (the user keeps their memories from this model; ask them if you need to know)"
    else:
        lines = "\n".join(f"- {as_note(m.text)}" for m in recalled) or "- (nothing relevant yet)"
    return NOTES.format(today=today, memories=lines)


@dataclass
class ChatDeps:
    """Everything a turn's tools may touch. Tools never reach beyond ``scope``."""

    scope: Scope
    memory: MemoryService
    conversation_id: str
    recalled: list[MemoryRecord] = field(default_factory=list)
    tool_events: list[MemoryEvent] = field(default_factory=list)
    local: bool = False  # the offline model: shorter answers, no tools
    tools: bool = False


# ------------------------------------------------------------------ tools
def _tool(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A refused tool call (bad id, another user's memory, bad text) is told to the model, not raised."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            return {"error": str(exc)}

    return wrapper


def _in_scope(ctx: RunContext[ChatDeps], memory_id: str) -> MemoryRecord:
    """The memory, if it belongs to this turn's owner *and* end-user; NotFound otherwise."""
    record = ctx.deps.memory.get(ctx.deps.scope.owner_id, memory_id)
    if record.user_id != ctx.deps.scope.user_id:
        raise NotFound("No such memory.")
    return record


def _brief(record: MemoryRecord) -> dict[str, Any]:
    return {"id": record.id, "text": record.text, "type": record.type, "created_at": record.created_at}


@_tool
def search_memories(ctx: RunContext[ChatDeps], query: str, limit: int = 5) -> list[dict[str, Any]]:
    """Search the person's long-term memories by meaning and keywords; most relevant first."""
    limit = max(1, min(int(limit), 20))
    hits = ctx.deps.memory.search(ctx.deps.scope.owner_id, query,
                                  MemoryFilters(user_id=ctx.deps.scope.user_id), top_k=limit)
    return [_brief(h) for h in hits]


@_tool
def remember(ctx: RunContext[ChatDeps], text: str, type: str = "fact", importance: int = 3) -> dict[str, Any]:
    """Save one durable fact about the person (short, third person, e.g. "Prefers tea over coffee").

    type is one of conversation, note, document, preference, fact, relationship; importance is 1-5.
    """
    if type not in MEMORY_TYPES:
        type = "fact"
    record = ctx.deps.memory.add(ctx.deps.scope, text, type=type, importance=max(1, min(int(importance), 5)),
                                 source="agent")
    ctx.deps.tool_events.append(MemoryEvent("ADD", record.id, record.text, reason="saved by the assistant"))
    return _brief(record)


@_tool
def update_memory(ctx: RunContext[ChatDeps], memory_id: str, text: str) -> dict[str, Any]:
    """Correct a memory's text (use the id from search_memories or recent_memories)."""
    current = _in_scope(ctx, memory_id)
    record = ctx.deps.memory.update(ctx.deps.scope.owner_id, current.id, text=text, source="agent")
    ctx.deps.tool_events.append(MemoryEvent("UPDATE", record.id, record.text, previous_text=current.text,
                                            reason="corrected by the assistant"))
    return _brief(record)


@_tool
def forget_memory(ctx: RunContext[ChatDeps], memory_id: str) -> str:
    """Delete a memory the person wants forgotten or that is no longer true."""
    current = _in_scope(ctx, memory_id)
    ctx.deps.memory.delete(ctx.deps.scope, current.id, source="agent")
    ctx.deps.tool_events.append(MemoryEvent("DELETE", current.id, None, previous_text=current.text,
                                            reason="forgotten by the assistant"))
    return f"Forgot: {current.text}"


@_tool
def recent_memories(ctx: RunContext[ChatDeps], limit: int = 10) -> list[dict[str, Any]]:
    """The person's most recently saved memories, newest first."""
    limit = max(1, min(int(limit), 50))
    records = ctx.deps.memory.get_all(ctx.deps.scope.owner_id, MemoryFilters(user_id=ctx.deps.scope.user_id),
                                      limit=limit)
    return [_brief(r) for r in records]


def memory_toolset() -> FunctionToolset[ChatDeps]:
    return FunctionToolset([search_memories, remember, update_memory, forget_memory, recent_memories],
                           max_retries=1)


def _instructions(ctx: RunContext[ChatDeps]) -> str:
    """Fixed per kind of model (never per turn), so a local model can reuse the prompt prefix."""
    if ctx.deps.local:
        return INSTRUCTIONS + LOCAL_STYLE
    return INSTRUCTIONS + TOOLS_HINT if ctx.deps.tools else INSTRUCTIONS


def build_agent() -> Agent[ChatDeps, str]:
    agent: Agent[ChatDeps, str] = Agent(deps_type=ChatDeps, output_type=str, defer_model_check=True,
                                        instructions=_instructions)
    return agent
