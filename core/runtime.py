"""The process-wide runtime: settings, storage and services, opened once.

The Streamlit server (its pages, the REST API mounted at ``/api`` and MCP at ``/mcp``) shares
one per process through :func:`shared_runtime`; the API replica and the CLI call
:func:`open_runtime` themselves. Every service here is thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from core.accounts import AuthPolicy, AuthService, ensure_admin_from_settings
from core.audit import AuditLog
from core.config import Settings, get_settings, resolve_jwt_secret
from core.conversations import CleanupReport, ConversationStore
from core.health import ComponentStatus, HealthReport, collect_health
from core.memory.queue import ExtractionQueue, ExtractionWorker
from core.metrics import METRICS, Metrics
from core.models.registry import ModelRegistry
from core.storage import Storage, open_storage
from core.usage import UsageStore
from core.users import UserStore

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from core.analytics import Analytics
    from core.apikeys import ApiKeyStore
    from core.chat import ChatService
    from core.gdpr import GdprService
    from core.maintenance import MaintenanceScheduler, MaintenanceService
    from core.memory.learning import LearningService
    from core.preferences import PreferenceStore
    from core.memory.service import MemoryService

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    jwt_secret: SecretStr
    users: UserStore
    conversations: ConversationStore
    startup_cleanup: CleanupReport
    queue: ExtractionQueue
    usage: UsageStore
    registry: ModelRegistry
    _memory: MemoryService | None = field(default=None, repr=False)
    _memory_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _chat: ChatService | None = field(default=None, repr=False)
    _learning: LearningService | None = field(default=None, repr=False)
    _maintenance: MaintenanceService | None = field(default=None, repr=False)
    _scheduler: MaintenanceScheduler | None = field(default=None, repr=False)
    _learning_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _worker: ExtractionWorker | None = field(default=None, repr=False)
    _on_close: list[Callable[[], None]] = field(default_factory=list, repr=False)
    audit: AuditLog = field(kw_only=True)
    auth: AuthService = field(kw_only=True, repr=False)

    @property
    def memory(self) -> MemoryService:
        """Long-term memory, opened on first use (loading the embedder takes a moment)."""
        if self._memory is None:
            with self._memory_lock:
                if self._memory is None:
                    from core.memory.engine import build_memory_service

                    self._memory = build_memory_service(self.settings, self.storage, audit=self.audit)
        return self._memory

    @property
    def chat(self) -> ChatService:
        """The chat service; memory learning runs in this process's worker (see :meth:`start_worker`)."""
        if self._chat is None:
            with self._memory_lock:
                if self._chat is None:
                    from core.chat import ChatService

                    self._chat = ChatService(
                        settings=self.settings, conversations=self.conversations, memory=lambda: self.memory,
                        learning=self.learning, usage=self.usage, registry=self.registry,
                        preferences=self.preferences,
                    )
        return self._chat

    @property
    def learning(self) -> LearningService:
        """Learning memories from exchanges, for chat, the API and the worker alike."""
        if self._learning is None:
            with self._learning_lock:
                if self._learning is None:
                    from core.memory.learning import LearningService

                    def memory_model() -> Model:
                        wanted = self.settings.memory_model or self.registry.default_model_id()
                        return self.registry.build(wanted)

                    local = self.registry.local_model_factory()
                    self._learning = LearningService(
                        settings=self.settings, memory=lambda: self.memory, queue=self.queue, usage=self.usage,
                        model=memory_model, local_model=local, preferences=self.preferences,
                        on_enqueued=lambda: self._worker.wake() if self._worker else None,
                    )
        return self._learning

    @property
    def maintenance(self) -> MaintenanceService:
        """Scheduled (and admin-triggered) maintenance, one runner per task across replicas."""
        if self._maintenance is None:
            from core.maintenance import MaintenanceService

            self._maintenance = MaintenanceService(
                self.storage.engine, memory=lambda: self.memory, conversations=self.conversations,
                queue=self.queue, users=self.users, audit=self.audit, interval=self.settings.maintenance_interval)
        return self._maintenance

    @property
    def analytics(self) -> Analytics:
        """Admin analytics queries over usage, messages and memory events."""
        from core.analytics import Analytics

        return Analytics(self.storage.engine)

    @property
    def api_keys(self) -> ApiKeyStore:
        """REST API keys (created on the Settings page or by ``python -m core apikey``)."""
        from core.apikeys import ApiKeyStore

        return ApiKeyStore(self.storage.engine, audit=self.audit)

    @property
    def preferences(self) -> PreferenceStore:
        from core.preferences import PreferenceStore

        return PreferenceStore(self.storage.engine)

    @property
    def gdpr(self) -> GdprService:
        """Export and erasure of a person's data."""
        from core.gdpr import GdprService

        return GdprService(engine=self.storage.engine, users=self.users, conversations=self.conversations,
                           memory=lambda: self.memory, audit=self.audit,
                           delete_user=lambda actor, user_id: self.auth.delete_user(actor, user_id),
                           check_delete=self.auth.check_delete)

    def metrics_text(self) -> bytes:
        """The Prometheus exposition for this process (served at ``/metrics``)."""
        return METRICS.render()

    def start_worker(self) -> ExtractionWorker:
        """Start the background worker that learns memories from queued turns (idempotent)."""
        if self._worker is None:
            self._worker = ExtractionWorker(self.queue, lambda job: self.learning.process(job))
            self._worker.start()
            from core.maintenance import MaintenanceScheduler

            self._scheduler = MaintenanceScheduler(self.maintenance)
            self._scheduler.start()
        return self._worker

    def _models_probe(self) -> ComponentStatus:
        providers = self.registry.configured_providers()
        local = self.registry.is_configured("local")
        parts = [f"{len(self.registry.available_models())} models"]
        parts.append("local model ready" if local else "no local model")
        parts.append("providers: " + (", ".join(providers) if providers else "none configured"))
        return ComponentStatus("models", bool(local or providers), " · ".join(parts))

    def _vector_probe(self) -> ComponentStatus:
        started = time.perf_counter()
        try:
            count = self.memory.count()
        except Exception as exc:  # a broken store is a component that is down, not a crash
            return ComponentStatus("vector store", False, str(exc))
        where = self.storage.qdrant_url if self.storage.mode == "server" else self.storage.vector_path
        kind = "Qdrant server" if self.storage.mode == "server" else "Qdrant Edge"
        detail = f"{kind} · {where} · {count:,} memories"
        # Reads and writes can work while the index rebuild fails (a damaged payload): say so.
        problem = getattr(self.memory.store, "rebuild_problem", None)
        if problem:
            return ComponentStatus("vector store", False, f"{detail} · {problem}; erase or delete the damaged "
                                   "memories (their ids are in the log)", (time.perf_counter() - started) * 1000)
        return ComponentStatus("vector store", True, detail, (time.perf_counter() - started) * 1000)

    def _queue_probe(self) -> ComponentStatus:
        depth = self.queue.depth()
        detail = f"{depth['pending']} pending · {depth['running']} running · {depth['failed']} failed"
        return ComponentStatus("extraction queue", depth["failed"] == 0,
                               detail + (" — retry them from Admin › Maintenance" if depth["failed"] else ""))

    def health(self) -> HealthReport:
        extra: dict[str, int] = {}
        try:
            extra["memories"] = self.memory.count()
        except Exception:  # reported by the vector store probe below
            pass
        extra["pending_extractions"] = self.queue.depth()["pending"]
        return collect_health(self.storage, probes=[self._vector_probe, self._queue_probe, self._models_probe],
                              extra_counts=extra)

    def close(self) -> None:
        for hook in self._on_close:
            hook()
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._memory is not None:
            close = getattr(self._memory.store, "close", None)
            if close is not None and self.storage.mode != "server":
                close()
        self.storage.close()


def open_runtime(settings: Settings | None = None, *, check_embedder: bool = True) -> Runtime:
    """Open storage (migrating it), the services on top, and run retention once.

    With ``check_embedder`` (the default) a vector store filled by another embedder than the
    configured one stops the start here (``python -m core reembed`` opens it without the check).
    """
    settings = settings or get_settings()
    storage = open_storage(settings)
    try:
        if check_embedder:
            from core.memory.engine import check_store

            check_store(settings, storage)
        jwt_secret = resolve_jwt_secret(settings, storage.data_dir if storage.mode == "ephemeral" else None)
        convs = ConversationStore(
            storage.engine,
            max_messages=settings.max_messages_per_conversation,
            ttl=settings.conversation_ttl,
            max_chars=settings.max_message_chars,
            default_turns=settings.context_turns,
        )
        report = convs.cleanup()
    except BaseException:
        storage.close()
        raise
    if report.expired_conversations or report.trimmed_messages:
        log.info("retention at start: %s", report)
    queue = ExtractionQueue(storage.engine)

    def queue_depth(metrics: Metrics) -> None:
        for status, count in queue.depth().items():
            metrics.extraction_queue.labels(status).set(count)

    unregister = METRICS.on_scrape(queue_depth)
    people, audit = UserStore(storage.engine), AuditLog(storage.engine)
    runtime = Runtime(
        settings=settings,
        storage=storage,
        jwt_secret=jwt_secret,
        users=people,
        conversations=convs,
        startup_cleanup=report,
        queue=queue,
        usage=UsageStore(storage.engine),
        registry=ModelRegistry(settings, local_model=local_model_factory(settings),
                               local_variants=local_model_variants(settings)),
        _on_close=[unregister],
        audit=audit,
        auth=AuthService(storage.engine, secret=jwt_secret, users=people, audit=audit,
                         policy=AuthPolicy.from_settings(settings)),
    )
    try:
        ensure_admin_from_settings(runtime.auth, runtime.users, settings)  # OPTIMUS_ADMIN_*: first start only
    except BaseException:
        runtime.close()
        raise
    return runtime


_shared: Runtime | None = None
_shared_lock = threading.Lock()


def shared_runtime() -> Runtime:
    """This process's runtime, opened on first use with its learning worker running.

    Every page, the REST API and the MCP endpoint of the Streamlit server get the same one, so
    they read and write the same memories (Qdrant Edge opens a shard in one process only).
    Thread-safe. If opening fails (bad settings, unreachable storage) the error goes to the caller
    and the next call tries again.
    """
    global _shared
    runtime = _shared
    if runtime is not None:
        return runtime
    with _shared_lock:
        if _shared is None:
            opened = open_runtime()
            try:
                opened.start_worker()
            except BaseException:
                opened.close()
                raise
            _shared = opened
        return _shared


def close_shared_runtime() -> None:
    """Close this process's shared runtime, if open (at server shutdown; tests between cases)."""
    global _shared
    with _shared_lock:
        runtime, _shared = _shared, None
    if runtime is not None:
        runtime.close()


def local_model_factory(settings: Settings) -> Callable[..., Model] | None:
    """How to get the offline model (``factory()``, or ``factory(name)`` for another bundled model),
    or None when this install has none (no llama.cpp or no weights)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        log.warning("llama-cpp-python is not installed: no local model")
        return None
    from core.models.gguf import gguf_source

    source = gguf_source(settings)
    if not _local_available(source):
        return None

    def load(name: str | None = None) -> Model:
        from core.models.local import get_local_model

        return get_local_model(settings, bundled=name)

    return load


def local_model_variants(settings: Settings) -> list[str]:
    """The bundled models other than the default that this install can run (short names)."""
    from core.models.gguf import BUNDLED, BundledGGUF, gguf_source

    default = gguf_source(settings)
    out = []
    for spec in BUNDLED.values():
        source = BundledGGUF(Path(settings.data_dir), spec)
        if source == default or not _local_available(source):
            continue
        out.append(spec.name.removesuffix("-instruct"))
    return out


def _local_available(source: object) -> bool:
    from core.errors import ConfigError
    from core.models.gguf import BundledGGUF, locate_chunks

    if isinstance(source, BundledGGUF):
        if source.path.is_file():
            return True
        try:
            locate_chunks(source.spec)
        except ConfigError as exc:
            log.warning("bundled local model %s not installed: %s", source.spec.name, exc)
            return False
        return True
    if not source.path.is_file():  # type: ignore[attr-defined]
        log.warning("OPTIMUS_LOCAL_MODEL_PATH=%s does not exist: no local model", source.path)  # type: ignore[attr-defined]
        return False
    return True
