"""Every Prometheus metric Optimus exports, defined once.

Labels are low-cardinality on purpose: provider, model, purpose, status, event type, route
template — never a user id, conversation id or memory id. The registry is our own (not the
process-global default) so tests can start from a fresh one and several servers in one process
cannot collide; ``render()`` produces the text exposition for ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """One set of collectors on its own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.chat_requests = Counter("optimus_chat_requests", "Chat turns by outcome.", ["status"], registry=r)
        self.model_latency = Histogram(
            "optimus_model_latency_seconds", "Model run latency (chat replies and memory steps).",
            ["provider", "model", "purpose"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_tokens = Counter("optimus_model_tokens", "Tokens by direction.",
                                    ["provider", "model", "direction"], registry=r)
        self.model_cost = Counter("optimus_model_cost_usd", "Model spend in USD (known prices only).",
                                  ["provider", "model"], registry=r)
        self.model_errors = Counter("optimus_model_errors", "Failed model runs.", ["provider", "purpose", "status"],
                                    registry=r)
        self.memory_events = Counter("optimus_memory_events", "Memory events applied, by type and source.",
                                     ["event", "source"], registry=r)
        self.memory_search_latency = Histogram("optimus_memory_search_seconds", "Memory search latency.",
                                               ["mode"], buckets=FAST_BUCKETS, registry=r)
        self.extraction_queue = Gauge("optimus_extraction_queue", "Pending-extraction jobs by status.", ["status"],
                                      registry=r)
        self.auth_results = Counter("optimus_auth_results", "Login and token checks by result.", ["result"],
                                    registry=r)
        self.api_requests = Counter("optimus_api_requests", "REST API requests.", ["method", "route", "status"],
                                    registry=r)
        self.api_latency = Histogram("optimus_api_latency_seconds", "REST API latency.", ["method", "route"],
                                     buckets=FAST_BUCKETS, registry=r)
        self.mcp_tool_calls = Counter("optimus_mcp_tool_calls", "MCP tool calls by tool and outcome.",
                                      ["tool", "outcome"], registry=r)
        self._collectors: list[Callable[[Metrics], None]] = []
        self._lock = threading.Lock()

    # -- recorders used by core services
    def model_run(self, *, provider: str, model: str, purpose: str, seconds: float, status: str,
                  input_tokens: int = 0, output_tokens: int = 0, cost_usd: Decimal | None = None) -> None:
        provider, model = provider or "unknown", model or "unknown"
        self.model_latency.labels(provider, model, purpose).observe(max(0.0, seconds))
        if status != "ok":
            self.model_errors.labels(provider, purpose, status).inc()
        if input_tokens:
            self.model_tokens.labels(provider, model, "input").inc(input_tokens)
        if output_tokens:
            self.model_tokens.labels(provider, model, "output").inc(output_tokens)
        if cost_usd:
            self.model_cost.labels(provider, model).inc(float(cost_usd))

    def memory_event(self, event: str, source: str) -> None:
        self.memory_events.labels(event, source).inc()

    def on_scrape(self, collect: Callable[[Metrics], None]) -> Callable[[], None]:
        """Run ``collect`` before each exposition (gauges read from the database, e.g. queue depth).

        Returns a function that unregisters it (call it when the source closes).
        """
        with self._lock:
            self._collectors.append(collect)

        def remove() -> None:
            with self._lock:
                if collect in self._collectors:
                    self._collectors.remove(collect)

        return remove

    def render(self) -> bytes:
        with self._lock:
            collectors = list(self._collectors)
        for collect in collectors:
            try:
                collect(self)
            except Exception:  # noqa: BLE001 - a failing probe must not break /metrics
                pass
        return generate_latest(self.registry)


METRICS = Metrics()
