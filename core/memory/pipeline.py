"""The two-phase memory pipeline (the Mem0 paper's extract → update), with guardrails in code.

For one exchange:

0. **What the user said** (:mod:`core.memory.utterance`): the user's newest message is sorted
   into statements, questions, requests, greetings, hypotheticals and the memory commands. No
   statement and nothing to forget: nothing is learned and no model is called.
1. **Extract** (one model call): the user's statements only (never the assistant's reply; at most
   the question the user answers) go to the model, which returns up to six short facts in a
   compact schema. Code then normalises them to third person, splits compounds, merges repeats
   and drops any fact not **grounded** in the user's own words — so questions, greetings and the
   assistant's statements never become memories, whatever the model wrote.
2. **Update**: each fact's nearest memories in the same scope are fetched (one embedding each).
   Duplicates are NONE. A memory may only be changed by a fact *about the same thing*
   (:mod:`core.memory.matching`); with none, the fact is ADDed without a model. Changes code can
   decide alone (a move, a new job, a death, "no longer …", a new number) are applied as such;
   the rest go to **one** model call that answers "new" / "same N" / "replaces N" / "retracts N"
   per fact, constrained to the memories shown. A fact the user marked as an addition ("my other
   sister") never replaces anything.

Fields (type, importance, people, entities, tags, expiry) are derived by code from each fact
(:mod:`core.memory.facts`): an UPDATE takes the new fact's fields, never another memory's.
Every UPDATE/DELETE event carries the memory as it was, for "was → now" and an exact undo.

Runaway defence: the schemas bound the output (≤ 6 facts of ≤ 150 characters; one verdict per
fact), ``max_tokens`` is sized to them and each phase has a deadline. A failed attempt (timeout,
malformed or truncated output) raises :class:`ExtractionFailed` and the caller's durable queue
(``core.memory.queue``) takes the turn: see :mod:`core.retry` for the one retry policy.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol

from pydantic_ai import Agent
from pydantic_ai.exceptions import AgentRunError, ModelAPIError, UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import Model
from pydantic_ai.settings import ModelSettings

from core.errors import ServiceError
from core.memory.candidates import prepare_candidates
from core.memory.facts import normalise_fact, people_in
from core.memory.language import content_words, lower_words, numbers, same_stem
from core.memory.matching import Link, about_same_thing, is_duplicate, rule_for
from core.memory.types import (
    MAX_CANDIDATES,
    CandidateMemory,
    ExtractedFacts,
    MemoryEvent,
    MemoryRecord,
    Scope,
    Verdicts,
)
from core.memory.utterance import Utterance, analyse

log = logging.getLogger(__name__)

SIMILAR_PER_CANDIDATE = 5
TARGETS_SHOWN = 3
MAX_TURN_CHARS = 4000
EXTRACT_MAX_TOKENS = 60 * MAX_CANDIDATES + 20
DECIDE_MAX_TOKENS = 8 * MAX_CANDIDATES + 16
FORGET_COSINE = 0.55

EXTRACT_INSTRUCTIONS = """\
You write a personal assistant's long-term memory. From the user's message, list the lasting facts \
about the user: preferences, people and pets in their life, where they live, work, study, health, \
possessions, plans with dates, and anything they ask you to remember.
Write each fact as a short third-person sentence without a subject, keeping names, numbers and \
dates exactly as the user wrote them. One fact per item.
Skip greetings, questions, requests, passing moods and anything not about the user's life.
Examples:
Message: I'm vegan and I live in Oslo.
{"facts": ["Is vegan", "Lives in Oslo"]}
Message: My brother Kai is a pilot in Rome and I have two cats.
{"facts": ["Brother Kai is a pilot in Rome", "Has two cats"]}
Message: I moved from Oslo to Madrid in May.
{"facts": ["Lives in Madrid, moved from Oslo in May"]}
Message: I'm so tired today.
{"facts": []}"""

DECIDE_INSTRUCTIONS = """\
You keep a personal memory up to date. Each NEW fact is listed with the OLD facts it may concern. \
Give one verdict per NEW fact, in order:
"new" - it adds information; the OLD facts stay true.
"same N" - OLD fact N already says this.
"replaces N" - OLD fact N is about the same thing but is no longer true (changed, corrected).
"retracts N" - the NEW fact says OLD fact N is false or over, with nothing to replace it.
Example:
NEW 1: Lives in Madrid
  OLD 1: Lives in Oslo
NEW 2: Likes jazz
  OLD 1: Likes classical music
{"verdicts": ["replaces 1", "new"]}"""


class ExtractionFailed(ServiceError):
    """The model kept failing (or returning malformed output); the turn must be retried later.

    ``result`` holds what the attempts used (for usage accounting); nothing was applied.
    """

    result: PipelineResult | None = None


class PipelineStore(Protocol):
    """What the pipeline needs from the memory service (``MemoryService`` implements it)."""

    def similar_batch(self, scope: Scope, texts: Sequence[str], *, k: int) -> list[list[MemoryRecord]]:
        """For each text, the ``k`` most similar live memories of ``scope``; higher score = more similar (cosine)."""

    def add_candidate(self, scope: Scope, candidate: CandidateMemory, *, source: str) -> MemoryRecord:
        """Store a new memory from a candidate, with the candidate's fields."""

    def replace_with_candidate(self, scope: Scope, memory_id: str, candidate: CandidateMemory, *,
                               source: str) -> MemoryRecord:
        """Give an existing memory the candidate's text and fields (an UPDATE in history)."""

    def delete(self, scope: Scope, memory_id: str, *, source: str = "pipeline") -> None: ...


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


@dataclass
class PipelineResult:
    events: list[MemoryEvent] = field(default_factory=list)
    model_calls: int = 0
    candidates: list[CandidateMemory] = field(default_factory=list)
    # Per phase ("extract", "update"): what the model runs used, for usage/cost accounting.
    usage: dict[str, PhaseUsage] = field(default_factory=dict)
    skipped: str | None = None  # why no model was asked at all

    @property
    def applied(self) -> list[MemoryEvent]:
        return [e for e in self.events if e.applied and e.event != "NONE"]


def text_hash(text: str) -> str:
    """The hash mem0 stores with a memory (md5 of its exact text)."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - identity, not security


@dataclass
class _Pending:
    candidate: CandidateMemory
    links: list[tuple[MemoryRecord, Link]]


class MemoryPipeline:
    """Runs extract → update for one exchange against a :class:`PipelineStore`."""

    def __init__(
        self,
        store: PipelineStore,
        model: Model | str,
        *,
        similar_k: int = SIMILAR_PER_CANDIDATE,
        attempts: int = 1,
        backoff: float = 0.5,
        extract_deadline: float = 60.0,
        decide_deadline: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.similar_k = similar_k
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.deadlines = {"extract": extract_deadline, "update": decide_deadline}
        self._sleep = sleep
        self._clock = clock or (lambda: datetime.now(UTC))
        # retries=0: a malformed answer fails the job, which the durable queue retries (core.retry).
        self._extractor = Agent(output_type=ExtractedFacts, instructions=EXTRACT_INSTRUCTIONS, retries=0)
        self._decider = Agent(output_type=Verdicts, instructions=DECIDE_INSTRUCTIONS, retries=0)

    # ------------------------------------------------------------------ model calls
    def _ask(self, agent: Agent, prompt: str, result: PipelineResult, phase: str, max_tokens: int):
        last: Exception | None = None
        used = result.usage.setdefault(phase, PhaseUsage())
        settings = ModelSettings(max_tokens=max_tokens, temperature=0.0, request_timeout=self.deadlines[phase])
        for attempt in range(self.attempts):
            started = time.perf_counter()
            try:
                run = agent.run_sync(prompt, model=self.model, model_settings=settings)
            except (UnexpectedModelBehavior, ModelAPIError, UsageLimitExceeded, AgentRunError, TimeoutError,
                    OSError) as exc:
                used.latency_ms += (time.perf_counter() - started) * 1000
                used.requests += 1
                result.model_calls += 1
                last = exc
                log.warning("memory %s attempt %d/%d failed: %s", phase, attempt + 1, self.attempts,
                            type(exc).__name__)
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
            f"The memory {phase} step failed {self.attempts} times ({type(last).__name__}); "
            "the turn is kept and will be retried."
        )
        failed.result = result
        raise failed from last

    # ------------------------------------------------------------------ phase 1
    def extract(self, utterance: Utterance, result: PipelineResult) -> list[str]:
        """The model's candidate facts for the user's statements (raw, before any check)."""
        message = " ".join(utterance.statements)[:MAX_TURN_CHARS]
        prompt = f"Message: {message}"
        if utterance.asked:
            prompt = f"(The user is answering: {utterance.asked})\n{prompt}"
        extracted: ExtractedFacts = self._ask(self._extractor, prompt, result, "extract", EXTRACT_MAX_TOKENS)
        return list(extracted.facts)

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
        """Learn from one exchange (the user's message and the reply, with earlier turns as context).

        ``default_expires_at`` applies to facts that get no expiry of their own.
        """
        result = PipelineResult()
        user = next((str(m.get("content", "")) for m in reversed(exchange) if m.get("role") == "user"), "")
        assistant = " ".join(str(m.get("content", "")) for m in exchange if m.get("role") == "assistant")
        before = next((str(m.get("content", "")) for m in reversed(context) if m.get("role") == "assistant"), "")
        utterance = analyse(user[:MAX_TURN_CHARS], assistant_before=before)
        if not utterance.informative:
            result.skipped = "nothing stated: questions, requests, greetings or small talk only"
            return result
        touched: set[str] = set()
        if utterance.retractions:
            self._forget(scope, utterance, result, touched, source)
        if not utterance.statements:
            return result

        today = self._clock().date()
        raw = self.extract(utterance, result)
        candidates, refused = prepare_candidates(raw, utterance, assistant, today=today)
        result.events.extend(refused)
        if default_expires_at is not None:
            candidates = [c if c.expires_at else c.model_copy(update={"expires_at": default_expires_at})
                          for c in candidates]
        result.candidates = list(candidates)
        if not candidates:
            return result

        said = set(lower_words(" ".join(utterance.statements)))  # not the questions
        people = frozenset(people_in(user))
        neighbours_of = self.store.similar_batch(scope, [c.text for c in candidates], k=self.similar_k)
        linked: list[tuple[CandidateMemory, list[tuple[MemoryRecord, Link]]]] = []
        for cand, neighbours in zip(candidates, neighbours_of, strict=True):
            dup = next((m for m in neighbours if is_duplicate(cand.text, m.text, m.score)), None)
            if dup is not None:
                result.events.append(MemoryEvent("NONE", dup.id, dup.text, reason="already remembered"))
                continue
            links = [(m, link) for m in neighbours
                     if m.id not in touched
                     and (link := about_same_thing(cand.text, m.text, cosine=m.score, said=said,
                                                   people=people | {p.lower() for p in m.people}))]
            linked.append((cand, links[:TARGETS_SHOWN]))
        linked = self._one_change_per_memory(linked, result)

        pending: list[_Pending] = []
        for cand, links in linked:
            links = [(m, link) for m, link in links if m.id not in touched]
            if not links:
                self._add(scope, cand, result, source, "new: nothing similar is remembered")
                continue
            decided: Link | None = None
            for memory, link in links:
                rule = rule_for(cand.text, memory.text, link, additive=utterance.additive,
                                correction=utterance.correction)
                if rule is None or memory.id in touched:
                    continue
                if decided is None:
                    self._apply(scope, cand, rule, memory, link.why, result, touched, source)
                    decided = link
                elif rule == "replace" and link.strong and decided.strong and link.topic != decided.topic:
                    # One fact, two topics ("Relocated to Vancouver for a job at a hospital"):
                    # it replaced one memory and makes the other topic's old value obsolete too.
                    self._apply(scope, cand, "retract", memory, f"{link.why}, now in '{cand.text}'", result,
                                touched, source)
            if decided is None:
                pending.append(_Pending(cand, links))

        if pending:
            self._decide(scope, pending, utterance, result, touched, source)
        return result

    @staticmethod
    def _one_change_per_memory(linked: list[tuple[CandidateMemory, list[tuple[MemoryRecord, Link]]]],
                               result: PipelineResult) -> list[tuple[CandidateMemory, list[tuple[MemoryRecord, Link]]]]:
        """Several facts of one message about the same topic of one memory ("Married Maria" and
        "Wife now"; "Is 35" and "Just had a birthday") describe one change: the fact closest to
        the memory makes it, the others are part of it rather than separate memories."""
        best: dict[str, tuple[tuple[int, int, int, float], int]] = {}
        for index, (cand, links) in enumerate(linked):
            for memory, link in links:
                rank = _change_rank(cand.text, memory)
                if link.strong and (memory.id not in best or rank > best[memory.id][0]):
                    best[memory.id] = (rank, index)
        kept = []
        for index, (cand, links) in enumerate(linked):
            owner = next((best[m.id][1] for m, link in links if link.strong and best[m.id][1] != index), None)
            if owner is not None:
                result.events.append(MemoryEvent("NONE", None, cand.text,
                                                 reason=f"part of the same change as '{linked[owner][0].text}'"))
                continue
            kept.append((cand, links))
        return kept

    # ------------------------------------------------------------------ phase 2
    def _decide(self, scope: Scope, pending: list[_Pending], utterance: Utterance, result: PipelineResult,
                touched: set[str], source: str) -> None:
        lines = []
        for i, item in enumerate(pending, start=1):
            lines.append(f"NEW {i}: {item.candidate.text}")
            lines.extend(f"  OLD {j}: {memory.text}" for j, (memory, _) in enumerate(item.links, start=1))
        verdicts: Verdicts = self._ask(self._decider, "\n".join(lines), result, "update", DECIDE_MAX_TOKENS)
        for i, item in enumerate(pending):
            verdict = verdicts.verdicts[i] if i < len(verdicts.verdicts) else None
            if verdict is None:  # the model skipped it: keep the fact rather than lose it
                self._add(scope, item.candidate, result, source, "new: no verdict returned; kept")
                continue
            word, _, number = verdict.partition(" ")
            if word == "new":
                self._add(scope, item.candidate, result, source, "new: the model found it adds information")
                continue
            index = int(number) - 1
            if not 0 <= index < len(item.links):
                result.events.append(MemoryEvent(
                    "NONE", None, item.candidate.text, applied=False,
                    rejected=f"the model named OLD {number}, but only 1..{len(item.links)} were shown"))
                self._add(scope, item.candidate, result, source, "new: the model's verdict was invalid; kept")
                continue
            memory, link = item.links[index]
            if word == "same":
                result.events.append(MemoryEvent("NONE", memory.id, memory.text, reason="already remembered"))
                continue
            rule = "replace" if word == "replaces" else "retract"
            if utterance.additive:
                self._add(scope, item.candidate, result, source,
                          "new: the user said it is an addition, so nothing is replaced")
                continue
            if memory.id in touched:
                self._add(scope, item.candidate, result, source, "new: that memory already changed in this turn")
                continue
            self._apply(scope, item.candidate, rule, memory, f"{link.why}; the model judged it {word}", result,
                        touched, source)

    # ------------------------------------------------------------------ writes
    def _add(self, scope: Scope, cand: CandidateMemory, result: PipelineResult, source: str, reason: str) -> None:
        record = self.store.add_candidate(scope, cand, source=source)
        result.events.append(MemoryEvent("ADD", record.id, record.text, reason=reason))

    def _apply(self, scope: Scope, cand: CandidateMemory, rule: str, memory: MemoryRecord, why: str,
               result: PipelineResult, touched: set[str], source: str) -> None:
        touched.add(memory.id)
        before = memory.as_dict()
        before.pop("score", None)
        if rule == "replace":
            record = self.store.replace_with_candidate(scope, memory.id, cand, source=source)
            result.events.append(MemoryEvent("UPDATE", record.id, record.text, memory.text,
                                             reason=f"replaces: {why}", before=before))
        else:
            self.store.delete(scope, memory.id, source=source)
            result.events.append(MemoryEvent("DELETE", memory.id, None, memory.text,
                                             reason=f"no longer true: {why} ({cand.text})", before=before))

    def _forget(self, scope: Scope, utterance: Utterance, result: PipelineResult, touched: set[str],
                source: str) -> None:
        """"Forget that …": delete the memories that say it, without a model."""
        wanted = [fact for text in utterance.retractions for fact in normalise_fact(text)]
        if not wanted:
            return
        said = set(lower_words(utterance.text))
        for fact, neighbours in zip(wanted, self.store.similar_batch(scope, wanted, k=self.similar_k), strict=True):
            words_wanted = set(content_words(fact))
            for memory in neighbours:
                if memory.id in touched:
                    continue
                link = about_same_thing(fact, memory.text, cosine=memory.score, said=said)
                covers = words_wanted and all(
                    any(same_stem(w, m) for m in content_words(memory.text)) for w in words_wanted)
                if link is None or not (covers or (memory.score or 0) >= FORGET_COSINE):
                    continue
                touched.add(memory.id)
                before = memory.as_dict()
                before.pop("score", None)
                self.store.delete(scope, memory.id, source=source)
                result.events.append(MemoryEvent("DELETE", memory.id, None, memory.text,
                                                 reason="you asked to forget this", before=before))


_STATE_START = frozenset("is are has have lives works owns prefers likes loves eats speaks studies drives plays "
                         "uses keeps".split())


def _change_rank(fact: str, memory: MemoryRecord) -> tuple[int, int, int, float]:
    """Which of several facts about one change should make it: a new number first ("Is 35" over
    "Just had a birthday"), then a state over an event ("Is pescatarian" over "Started eating
    fish"), then the fuller one, then the closer one."""
    first = (lower_words(fact) or [""])[0]
    new_number = int(bool(numbers(fact) - numbers(memory.text)))
    return new_number, int(first in _STATE_START), len(content_words(fact)), memory.score or 0.0
