"""Inferred adds (``infer=True``): the chat's two-phase pipeline, run inside the request.

The messages are learned from at once so the caller gets the events back, as mem0's client
expects. If the model keeps failing, nothing is lost: the exchange goes to the durable
extraction queue (the same one chat turns use) and the caller gets ``PENDING`` with the job id;
any process running the worker learns from it later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic_ai.models import Model

from core.errors import BudgetExceeded, ProviderUnavailable
from core.memory.pipeline import ExtractionFailed, MemoryPipeline, PipelineResult
from core.memory.types import MemoryEvent, Scope
from core.metrics import METRICS
from core.runtime import Runtime
from core.usage import price

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Learned:
    events: list[MemoryEvent] = field(default_factory=list)
    job_id: int | None = None  # set when the exchange was queued instead

    @property
    def pending(self) -> bool:
        return self.job_id is not None


def split_exchange(messages: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(newest exchange, earlier context): the exchange starts at the last user message."""
    turns = [dict(m) for m in messages if m.get("role") != "system"] or [dict(m) for m in messages]
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=0)
    return turns[last_user:], turns[:last_user]


class ApiLearner:
    """Runs the pipeline for API callers; one pipeline (and model) per server."""

    def __init__(self, runtime: Runtime, model: Model | None = None) -> None:
        self._runtime = runtime
        self._model = model
        self._pipeline: MemoryPipeline | None = None
        self._lock = threading.Lock()

    def _get_pipeline(self) -> MemoryPipeline:
        with self._lock:
            if self._pipeline is None:
                model = self._model
                if model is None:
                    registry, settings = self._runtime.registry, self._runtime.settings
                    model = registry.build(settings.memory_model or registry.default_model_id())
                self._pipeline = MemoryPipeline(self._runtime.memory, model)
            return self._pipeline

    def _check_budget(self, owner_id: str) -> None:
        budget = self._runtime.settings.daily_budget_usd
        if budget and self._runtime.usage.spent_today(owner_id) >= budget:
            raise BudgetExceeded("The daily model budget of this account is spent; it resets at 00:00 UTC. "
                                 "Add with infer=False to store memories without a model.")

    def remember(self, scope: Scope, messages: Sequence[dict[str, str]]) -> Learned:
        """Learn from ``messages`` now; queue them if the model fails."""
        self._check_budget(scope.owner_id)
        exchange, context = split_exchange(messages)
        try:
            outcome = self._get_pipeline().run(scope, exchange, context, source="api")
        except (ExtractionFailed, ProviderUnavailable) as exc:
            if isinstance(exc, ExtractionFailed) and exc.result is not None:
                self._record(scope, exc.result)
            job_id = self._runtime.queue.enqueue(scope, exchange, context)
            log.warning("inferred add queued as job %s: %s", job_id, exc)
            return Learned(job_id=job_id)
        self._record(scope, outcome)
        for event in outcome.events:
            if event.applied:
                METRICS.memory_event(event.event, "api")
        return Learned(events=outcome.events)

    def _record(self, scope: Scope, outcome: PipelineResult) -> None:
        for purpose, used in outcome.usage.items():
            cost = used.cost_usd if used.cost_usd is not None else price(
                used.provider, used.model, used.input_tokens, used.output_tokens)
            status = "ok" if used.ok else "error"
            METRICS.model_run(provider=used.provider, model=used.model, purpose=purpose,
                              seconds=used.latency_ms / 1000, status=status, input_tokens=used.input_tokens,
                              output_tokens=used.output_tokens, cost_usd=cost)
            try:
                self._runtime.usage.record(
                    user_id=scope.owner_id, purpose=purpose, provider=used.provider, model=used.model,
                    requests=used.requests, input_tokens=used.input_tokens, output_tokens=used.output_tokens,
                    cost_usd=cost, latency_ms=used.latency_ms, status=status)
            except Exception as exc:  # noqa: BLE001 - accounting must not undo learned memories
                log.error("could not record API memory usage: %s", exc)
