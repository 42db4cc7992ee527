"""Logging that never holds memory text, message text, tokens or keys.

Three rules keep personal data and secrets out of the logs:

* exceptions from the outside world (database drivers, vector engines, model SDKs) are logged by
  :func:`exception_summary`: their types and where they were raised, never their messages, which
  quote SQL parameters, payloads and provider responses;
* every engine is created with ``hide_parameters`` (``core.db``), so SQLAlchemy errors do not
  carry statement parameters either;
* mem0's loggers are switched off (:func:`quiet_mem0`): mem0 logs the memory text of every update at
  INFO and entity text in its warnings.

A failure a client sees carries an error id; the log line with the same id says what happened.
"""

from __future__ import annotations

import logging
import secrets
import traceback

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SILENT = logging.CRITICAL + 1


def quiet_mem0() -> None:
    """Stop mem0 logging anything: its messages embed memory and entity text (idempotent)."""
    logging.getLogger("mem0").setLevel(_SILENT)


def configure_logging(level: int = logging.INFO) -> None:
    """Root logging for the app and API processes: one format, INFO, and nobody logging memory text."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    quiet_mem0()


def new_error_id() -> str:
    """A short random id that ties a client's error answer to its log line."""
    return secrets.token_hex(6)


def exception_summary(exc: BaseException, *, frames: int = 8) -> str:
    """``"OperationalError <- ConnectionRefusedError at core/db.py:88 in ping, ..."``: the types in the
    exception chain and the innermost frames of the first one. No message, so no data."""
    chain: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < 5:
        seen.add(id(current))
        chain.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    where = ", ".join(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in reversed(stack))
    return " <- ".join(chain) + (f" at {where}" if where else "")


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/core/", "/pages/"):
        if marker in path:
            head = "core/" if marker == "/core/" else "pages/" if marker == "/pages/" else ""
            return head + path.rsplit(marker, 1)[1]
    return path.rsplit("/", 1)[-1]
