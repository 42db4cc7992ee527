"""The two-phase memory pipeline (the Mem0 paper's extract → update).

Phase 1, **extract**: one model call turns the newest exchange (with a few turns of context)
into candidate memories — short third-person facts with a type, importance, confidence,
entities, people, tags and an optional expiry.

Phase 2, **update**: for all candidates at once, the top-s (s=5) most similar memories of the
same scope are retrieved; exact and near duplicates (same hash, cosine ≥ 0.95) become NONE
without asking anybody; the rest go to **one** model call that decides ADD, UPDATE (target +
merged text), DELETE (target) or NONE per candidate. Existing memories are shown under small
integer aliases; a decision naming an alias we did not show is rejected, never applied.

So a turn costs at most two model calls however many facts it holds (zero for phase 2 when
nothing is left to decide). Malformed model output is retried with exponential backoff; if it
still fails, :class:`ExtractionFailed` is raised and the caller parks the turn in the durable
queue (``core.memory.queue``) for a later retry — nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from pydantic_ai import Agent
from pydantic_ai.exceptions import AgentRunError, ModelAPIError, UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import Model

from core.errors import ServiceError
from core.memory.types import CandidateMemory, Decisions, Extraction, MemoryEvent, MemoryRecord, Scope

log = logging.getLogger(__name__)

SIMILAR_PER_CANDIDATE = 5
NEAR_DUPLICATE = 0.95
CONTEXT_TURNS = 4
MAX_TURN_CHARS = 4000

EXTRACT_INSTRUCTIONS = """\
You maintain the long-term memory of a personal assistant. Read the newest exchange between the
user and the assistant (earlier turns are given only as context) and list the durable facts worth
remembering about the user: preferences, people in their life and how they relate, plans and
commitments, facts about their life, work, health, possessions and circumstances, and notes they
explicitly ask to keep.

Rules:
- Only facts stated or clearly implied by the USER in the newest exchange. Nothing the assistant
  merely suggested, nothing from the context turns alone, no general knowledge, no small talk.
- Each memory is one short, self-contained sentence in the third person ("Prefers window seats",
  "Sister Ana lives in Porto"), understandable without the conversation.
- type: preference | fact | relationship | note | document | conversation.
- importance 1 (trivia) to 5 (essential: health, safety, family, hard constraints).
- confidence 0-1: how sure you are the user meant it.
- people: names of people mentioned; entities: places, organisations, things; tags: 1-3 lowercase topics.
- expires_at: an ISO date only if the fact stops being true at a known date (a trip, a deadline).
- If the user corrects or retracts something, state the corrected fact (or the retraction) as a memory.
- Return an empty list when there is nothing durable.
"""

UPDATE_INSTRUCTIONS = """\
You keep a personal memory store consistent. You get NEW candidate memories (numbered by
"candidate") and EXISTING memories (numbered by "alias"). For every candidate return exactly one
decision:
- ADD: the candidate is new information.
- UPDATE: the candidate refines, corrects or extends an existing memory about the same thing.
  Give target = that memory's alias and text = one merged sentence keeping what is still true.
- DELETE: the candidate says an existing memory is no longer true and there is nothing to keep.
  Give target = that memory's alias.
- NONE: the candidate is already fully covered by an existing memory.
Only use aliases from the EXISTING list. Keep reasons short.
"""


class ExtractionFailed(ServiceError):
    """The model kept failing (or returning malformed output); the turn must be retried later.

    ``result`` holds what the attempts used (for usage accounting); nothing was applied.
    """

    result: PipelineResult | None = None


class PipelineStore(Protocol):
    """What the pipeline needs from the memory service (``MemoryService`` implements it)."""

    def similar_batch(self, scope: Scope, texts: Sequence[str], *, k: int) -> list[list[MemoryRecord]]:
        """For each text, the ``k`` most similar live memories of ``scope``; higher score = more similar (cosine)."""

    def add_candidate(self, scope: Scope, candidate: CandidateMemory, *, source: str) -> MemoryRecord: ...

    def update_from_candidate(
        self, scope: Scope, memory_id: str, text: str, candidate: CandidateMemory, *, source: str
    ) -> MemoryRecord: ...

    def delete(self, scope: Scope, memory_id: str, *, source: str = "pipeline") -> None: ...


@dataclass
class PipelineResult:
    events: list[MemoryEvent] = field(default_factory=list)
    model_calls: int = 0
    candidates: list[CandidateMemory] = field(default_factory=list)
    # Per phase ("extract", "update"): what the model runs used, for usage/cost accounting.
    usage: dict[str, PhaseUsage] = field(default_factory=dict)


@dataclass
class PhaseUsage:
    provider: str = "unknown"
    model: str = "unknown"
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    latency_ms: float = 0.0
    ok: bool = False


def text_hash(text: str) -> str:
    """The hash mem0 stores with a memory (md5 of its exact text)."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - identity, not security


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _turns_text(turns: Sequence[dict[str, str]]) -> str:
    lines = []
    for t in turns:
        content = str(t.get("content", ""))
        if len(content) > MAX_TURN_CHARS:
            content = content[:MAX_TURN_CHARS] + " […]"
        lines.append(f"{t.get('role', 'user')}: {content}")
    return "\n".join(lines)


class MemoryPipeline:
    """Runs extract → update for one exchange against a :class:`PipelineStore`."""

    def __init__(
        self,
        store: PipelineStore,
        model: Model | str,
        *,
        similar_k: int = SIMILAR_PER_CANDIDATE,
        near_duplicate: float = NEAR_DUPLICATE,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.similar_k = similar_k
        self.near_duplicate = near_duplicate
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock or (lambda: datetime.now(UTC))
        # retries=1: one in-run re-ask when the output fails validation, before our own backoff.
        self._extractor = Agent(output_type=Extraction, instructions=EXTRACT_INSTRUCTIONS, retries=1)
        self._updater = Agent(output_type=Decisions, instructions=UPDATE_INSTRUCTIONS, retries=1)

    # ------------------------------------------------------------------ model calls
    def _ask(self, agent: Agent, prompt: str, result: PipelineResult, phase: str):
        last: Exception | None = None
        used = result.usage.setdefault("extract" if phase == "extraction" else "update", PhaseUsage())
        for attempt in range(self.attempts):
            started = time.perf_counter()
            try:
                run = agent.run_sync(prompt, model=self.model)
            except (UnexpectedModelBehavior, ModelAPIError, UsageLimitExceeded, AgentRunError, TimeoutError, OSError) as exc:
                used.latency_ms += (time.perf_counter() - started) * 1000
                used.requests += 1
                result.model_calls += 1
                last = exc
                log.warning("memory %s attempt %d/%d failed: %s", phase, attempt + 1, self.attempts, exc)
                if attempt + 1 < self.attempts:
                    self._sleep(self.backoff * (2**attempt))
                continue
            used.latency_ms += (time.perf_counter() - started) * 1000
            responses = [m for m in run.new_messages() if isinstance(m, ModelResponse)]
            result.model_calls += len(responses)
            used.requests += len(responses)
            used.ok = True
            for response in responses:
                used.input_tokens += response.usage.input_tokens or 0
                used.output_tokens += response.usage.output_tokens or 0
                if response.usage.cost is not None:
                    used.cost_usd = (used.cost_usd or Decimal(0)) + Decimal(str(response.usage.cost))
            if responses:
                used.model = responses[-1].model_name or used.model
                system = getattr(self.model, "system", None) if not isinstance(self.model, str) else None
                used.provider = responses[-1].provider_name or system or used.provider
            return run.output
        failed = ExtractionFailed(
            f"The memory {phase} step failed {self.attempts} times ({type(last).__name__}: {last}); "
            "the turn is kept and will be retried."
        )
        failed.result = result
        raise failed from last

    def extract(self, exchange: Sequence[dict[str, str]], context: Sequence[dict[str, str]], result: PipelineResult) -> list[CandidateMemory]:
        today = self._clock().date().isoformat()
        prompt = (
            f"Today is {today}.\n\nContext turns (older):\n{_turns_text(context[-CONTEXT_TURNS:]) or '(none)'}\n\n"
            f"Newest exchange:\n{_turns_text(exchange)}"
        )
        extraction: Extraction = self._ask(self._extractor, prompt, result, "extraction")
        return extraction.memories

    # ------------------------------------------------------------------ the turn
    def run(
        self,
        scope: Scope,
        exchange: Sequence[dict[str, str]],
        context: Sequence[dict[str, str]] = (),
        *,
        source: str = "pipeline",
        default_expires_at: date | None = None,
    ) -> PipelineResult:
        """Learn from one exchange. ``default_expires_at`` applies to facts the model gave no expiry."""
        result = PipelineResult()
        candidates = self.extract(exchange, context, result)
        if default_expires_at is not None:
            candidates = [c if c.expires_at else c.model_copy(update={"expires_at": default_expires_at})
                          for c in candidates]
        result.candidates = list(candidates)
        if not candidates:
            return result

        # Repeats inside the same exchange are NONE straight away.
        unique: list[CandidateMemory] = []
        seen: dict[str, CandidateMemory] = {}
        for cand in candidates:
            key = _normal(cand.text)
            if key in seen:
                result.events.append(MemoryEvent("NONE", None, cand.text, reason="repeated in the same exchange"))
            else:
                seen[key] = cand
                unique.append(cand)

        similar = self.store.similar_batch(scope, [c.text for c in unique], k=self.similar_k)
        pending: list[tuple[CandidateMemory, list[MemoryRecord]]] = []
        for cand, neighbours in zip(unique, similar, strict=True):
            dup = next(
                (
                    m
                    for m in neighbours
                    if m.hash == text_hash(cand.text)
                    or _normal(m.text) == _normal(cand.text)
                    or (m.score is not None and m.score >= self.near_duplicate)
                ),
                None,
            )
            if dup is not None:
                result.events.append(MemoryEvent("NONE", dup.id, dup.text, reason="already remembered"))
            else:
                pending.append((cand, neighbours))
        if not pending:
            return result

        if not any(neighbours for _, neighbours in pending):
            for cand, _ in pending:  # nothing similar exists: ADD is the only possible decision
                record = self.store.add_candidate(scope, cand, source=source)
                result.events.append(MemoryEvent("ADD", record.id, record.text, reason="new"))
            return result

        aliases: list[MemoryRecord] = []
        alias_of: dict[str, int] = {}
        for _, neighbours in pending:
            for m in neighbours:
                if m.id not in alias_of:
                    alias_of[m.id] = len(aliases)
                    aliases.append(m)
        prompt = json.dumps(
            {
                "existing": [{"alias": i, "text": m.text, "type": m.type} for i, m in enumerate(aliases)],
                "candidates": [
                    {"candidate": i, "text": c.text, "type": c.type, "similar_aliases": [alias_of[m.id] for m in nb]}
                    for i, (c, nb) in enumerate(pending)
                ],
            },
            ensure_ascii=False,
            indent=1,
        )
        decisions: Decisions = self._ask(self._updater, prompt, result, "update")
        self._apply(scope, pending, aliases, decisions, result, source)
        return result

    def _apply(
        self,
        scope: Scope,
        pending: list[tuple[CandidateMemory, list[MemoryRecord]]],
        aliases: list[MemoryRecord],
        decisions: Decisions,
        result: PipelineResult,
        source: str,
    ) -> None:
        chosen: dict[int, Any] = {}
        for d in decisions.decisions:
            if 0 <= d.candidate < len(pending) and d.candidate not in chosen:
                chosen[d.candidate] = d
        touched: set[str] = set()
        for index, (cand, _) in enumerate(pending):
            d = chosen.get(index)
            if d is None:  # the model skipped it: keep the fact rather than lose it
                record = self.store.add_candidate(scope, cand, source=source)
                result.events.append(MemoryEvent("ADD", record.id, record.text, reason="no decision returned; kept"))
                continue
            if d.action == "ADD":
                record = self.store.add_candidate(scope, cand, source=source)
                result.events.append(MemoryEvent("ADD", record.id, record.text, reason=d.reason))
                continue
            if d.action == "NONE":
                target = aliases[d.target] if d.target is not None and 0 <= d.target < len(aliases) else None
                result.events.append(
                    MemoryEvent("NONE", target.id if target else None, cand.text, reason=d.reason, applied=True)
                )
                continue
            if d.target is None or not 0 <= d.target < len(aliases):
                result.events.append(
                    MemoryEvent(
                        d.action, None, cand.text, reason=d.reason, applied=False,
                        rejected=f"unknown alias {d.target!r}; only 0..{len(aliases) - 1} were shown",
                    )
                )
                continue
            target = aliases[d.target]
            if target.id in touched:
                result.events.append(
                    MemoryEvent(d.action, target.id, cand.text, reason=d.reason, applied=False,
                                rejected="memory already changed by another decision in this turn")
                )
                continue
            if d.action == "UPDATE":
                merged = " ".join((d.text or "").split())
                if not merged:
                    result.events.append(
                        MemoryEvent("UPDATE", target.id, cand.text, reason=d.reason, applied=False,
                                    rejected="UPDATE without merged text")
                    )
                    continue
                record = self.store.update_from_candidate(scope, target.id, merged, cand, source=source)
                touched.add(target.id)
                result.events.append(MemoryEvent("UPDATE", record.id, record.text, target.text, reason=d.reason))
            else:  # DELETE
                self.store.delete(scope, target.id, source=source)
                touched.add(target.id)
                result.events.append(MemoryEvent("DELETE", target.id, None, target.text, reason=d.reason))
