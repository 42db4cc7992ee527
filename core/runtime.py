"""The process-wide runtime: settings, storage and services, opened once.

The Streamlit app keeps one in ``st.cache_resource``; the API and CLI call
:func:`open_runtime` themselves. Every service here is thread-safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr

from core.config import Settings, get_settings, resolve_jwt_secret
from core.conversations import CleanupReport, ConversationStore
from core.health import HealthReport, collect_health
from core.storage import Storage, open_storage
from core.users import UserStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    jwt_secret: SecretStr
    users: UserStore
    conversations: ConversationStore
    startup_cleanup: CleanupReport

    def health(self) -> HealthReport:
        return collect_health(self.storage)

    def close(self) -> None:
        self.storage.close()


def open_runtime(settings: Settings | None = None) -> Runtime:
    """Open storage (migrating it), the services on top, and run retention once."""
    settings = settings or get_settings()
    storage = open_storage(settings)
    try:
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
    return Runtime(
        settings=settings,
        storage=storage,
        jwt_secret=jwt_secret,
        users=UserStore(storage.engine),
        conversations=convs,
        startup_cleanup=report,
    )
