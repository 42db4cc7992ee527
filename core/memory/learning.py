"""Learning memories from exchanges: the one path used by chat, the REST API and the queue worker.

Every exchange to learn from is first written to the durable queue (``core.memory.queue``), then
run through the two-phase pipeline by :meth:`LearningService.process` — in the background worker
for chat turns, or right away for an API caller who waits (:meth:`LearningService.learn`) for at
most a few seconds before being answered ``PENDING`` (as mem0's platform does for asynchronous
adds). Either way the same checks apply once: the person's daily budget, their "automatic memory"
preference and default expiry, usage and cost records, and metrics. A failure leaves the job in
the queue, which is the only durable retry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic_ai.models import Model

from core.config import Settings
from core.errors import BudgetExceeded, ValidationError
from core.memory.pipeline import ExtractionFailed, MemoryPipeline, PipelineResult
from core.memory.queue import ExtractionJob, ExtractionQueue, failure_text
from core.memory.service import MemoryService
from core.memory.types import MemoryEvent, Scope
from core.metrics import METRICS, Metrics
from core.usage import UsageStore, price

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Learned:
    """What an exchange taught, or the queued job that will (``pending``)."""

    job_id: int
    events: list[MemoryEvent] = field(default_factory=list)
    pending: bool = False


def split_exchange(messages: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(newest exchange, earlier context): the exchange starts at the last user message."""
    turns = [dict(m) for m in messages if m.get("role") != "system"] or [dict(m) for m in messages]
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=0)
    return turns[last_user:], turns[:last_user]


class LearningService:
    """Queues exchanges and learns from them with one pipeline per process. Thread-safe."""

    def __init__(
        self,
        *,
        settings: Settings,
        memory: Callable[[], MemoryService] | MemoryService,
        queue: ExtractionQueue,
        usage: UsageStore,
        model: Callable[[], Model] | Model | str,
        local_model: Callable[[], Model] | Model | None = None,
        preferences: object | None = None,
        metrics: Metrics = METRICS,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        """``model`` learns by default; ``local_model`` (the offline model, if installed) learns for
        people who use their memories only with local models when ``model`` is hosted."""
        self.settings = settings
        self._memory = memory
        self.queue = queue
        self.usage = usage
        self._model = model
        self._local_model = local_model
        self.preferences = preferences
        self.metrics = metrics
        self._on_enqueued = on_enqueued
        self._lock = threading.Lock()
        self._pipelines: dict[str, MemoryPipeline] = {}

    @property
    def memory(self) -> MemoryService:
        return self._memory() if callable(self._memory) else self._memory

    def with_model(self, model: Model, *, local_model: Model | None = None) -> LearningService:
        """The same service learning with another model (tests and demos pass a scripted one)."""
        return LearningService(settings=self.settings, memory=self._memory, queue=self.queue, usage=self.usage,
                               model=model, local_model=local_model or self._local_model,
                               preferences=self.preferences, metrics=self.metrics, on_enqueued=self._on_enqueued)

    def pipeline(self, *, local_only: bool = False) -> MemoryPipeline | None:
        """The pipeline learning for a person; with ``local_only``, one on a local model (None when
        the install has none and the default model is hosted)."""
        with self._lock:
            if "default" not in self._pipelines:
                self._pipelines["default"] = MemoryPipeline(self.memory, _built(self._model))
            default = self._pipelines["default"]
            if not local_only or _is_local(default.model):
                return default
            if self._local_model is None:
                return None
            if "local" not in self._pipelines:
                self._pipelines["local"] = MemoryPipeline(self.memory, _built(self._local_model))
            return self._pipelines["local"]

    # ------------------------------------------------------------------ queueing
    def enqueue(self, scope: Scope, exchange: Sequence[dict[str, str]], context: Sequence[dict[str, str]] = (), *,
                conversation_id: str | None = None, message_id: int | None = None) -> int:
        """Keep an exchange to learn from; the worker runs it soon (it is woken up)."""
        job_id = self.queue.enqueue(scope, exchange, context, conversation_id=conversation_id, message_id=message_id)
        if self._on_enqueued:
            self._on_enqueued()
        return job_id

    def check_budget(self, owner_id: str) -> None:
        budget = self.settings.daily_budget_usd
        if budget and self.usage.spent_today(owner_id) >= budget:
            raise BudgetExceeded("The daily model budget of this account is spent; it resets at 00:00 UTC. "
                                 "Add with infer=False to store memories without a model.")

    # ------------------------------------------------------------------ learning
    def process(self, job: ExtractionJob, *, source: str = "pipeline") -> list[MemoryEvent]:
        """Run the pipeline for one queued exchange (the worker's callback). Raises to keep the job."""
        self.check_budget(job.scope.owner_id)
        prefs = self._prefs(job.scope.owner_id)
        ttl = getattr(prefs, "memory_ttl_days", None)
        expires = (datetime.now(UTC) + timedelta(days=ttl)).date() if ttl else None
        pipeline = self.pipeline(local_only=bool(getattr(prefs, "memories_local_only", False)))
        if pipeline is None:
            return [MemoryEvent("NONE", None, None, applied=False,
                                rejected="not learned: you use your memories only with local models, and this "
                                         "install has none")]
        try:
            outcome = pipeline.run(job.scope, job.exchange, job.context, source=source,
                                   default_expires_at=expires)
        except ExtractionFailed as exc:
            if exc.result is not None:
                self._record(job, exc.result)
            raise
        self._record(job, outcome)
        for event in outcome.events:
            if event.applied and event.event != "NONE":
                self.metrics.memory_event(event.event, source)
        return outcome.events

    def learn(self, scope: Scope, messages: Sequence[dict[str, str]], *, wait: float, source: str = "api") -> Learned:
        """Learn from ``messages`` now, answering within ``wait`` seconds: the events, or the job
        that is still running (``pending``) and finishes in the background. Nothing is lost: a
        failure leaves the job in the queue for the worker."""
        self.check_budget(scope.owner_id)
        exchange, context = split_exchange(messages)
        if not any(m.get("role") == "user" and str(m.get("content", "")).strip() for m in exchange):
            raise ValidationError("There is no user message to learn from.", field="messages")
        job_id = self.queue.enqueue(scope, exchange, context)
        job = self.queue.claim_job(job_id)
        if job is None:  # a worker took it first: it will finish it
            return Learned(job_id, pending=True)
        done = threading.Event()
        outcome: dict[str, list[MemoryEvent]] = {}

        def run() -> None:
            try:
                outcome["events"] = self.process(job, source=source)
                self.queue.complete(job.id, outcome["events"])
            except Exception as exc:  # noqa: BLE001 - the job stays queued; the worker retries it
                status = self.queue.fail(job.id, failure_text(exc))
                log.warning("learning job %s failed (%s): %s", job.id, status, type(exc).__name__)
            finally:
                done.set()

        threading.Thread(target=run, name=f"optimus-learn-{job_id}", daemon=True).start()
        if done.wait(wait) and "events" in outcome:
            return Learned(job_id, outcome["events"])
        return Learned(job_id, pending=True)

    # ------------------------------------------------------------------ helpers
    def _prefs(self, owner_id: str) -> object | None:
        if self.preferences is None:
            return None
        try:
            return self.preferences.get(owner_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - preferences are a nicety; learning goes on without them
            log.warning("preferences unavailable: %s", type(exc).__name__)
            return None

    def _record(self, job: ExtractionJob, outcome: PipelineResult) -> None:
        for purpose, used in outcome.usage.items():
            cost = used.cost_usd if used.cost_usd is not None else price(
                used.provider, used.model, used.input_tokens, used.output_tokens)
            status = "ok" if used.ok else "error"
            self.metrics.model_run(provider=used.provider, model=used.model, purpose=purpose,
                                   seconds=used.latency_ms / 1000, status=status, input_tokens=used.input_tokens,
                                   output_tokens=used.output_tokens, cost_usd=cost)
            try:
                self.usage.record(user_id=job.scope.owner_id, conversation_id=job.conversation_id, purpose=purpose,
                                  provider=used.provider, model=used.model, requests=used.requests,
                                  input_tokens=used.input_tokens, output_tokens=used.output_tokens, cost_usd=cost,
                                  latency_ms=used.latency_ms, status=status)
            except Exception as exc:  # noqa: BLE001 - accounting must not undo learned memories
                log.error("could not record memory usage for job %s: %s", job.id, type(exc).__name__)


def _built(model: Callable[[], Model] | Model | str) -> Model | str:
    return model() if callable(model) and not isinstance(model, Model) else model


def _is_local(model: Model | str) -> bool:
    """Whether a model runs on this machine (the offline llama.cpp model)."""
    return getattr(model, "system", None) == "local"
