"""GDPR: download everything we keep about a person, and erase them.

The export is a ZIP of JSON files (plus a README.txt explaining them): profile, conversations
with their messages, memories with their full history (all end-user scopes the account owns),
model usage and cost rows, and the audit events about the person. Erasure removes the vectors and
memory history first (they live outside the relational cascade), then the account row, whose
foreign keys take conversations, messages, sessions, keys and queued extractions with it; usage
rows are kept for the install's totals but unlinked, and the audit log keeps a pseudonymous record.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, select

from core.audit import AuditLog
from core.conversations import ConversationStore
from core.errors import PermissionDenied, ValidationError
from core.memory.service import MemoryService
from core.schema import audit_events, login_attempts, model_usage
from core.users import User, UserStore

EXPORT_README = """\
Your data from Optimus
======================

Exported {when} for the account "{username}".

profile.json        your account: id, username, email, role, creation time
conversations.json  every conversation with all its messages (role, text, model, tokens, time;
                    assistant replies also list the memories that were recalled for them)
memories.json       every long-term memory (text, type, importance, tags, people, scope, dates)
                    with its full history: each ADD / UPDATE / DELETE, when, and from where
                    (ui, agent, pipeline, api, import)
deleted_memories.json  memories you (or Optimus) deleted that are still in their history, each
                    with what it said, when it was deleted and its full history
usage.json          every model run made for you: provider, model, tokens, cost (USD), latency
audit.json          security events about your account (sign-ins, password changes, exports…)

All times are UTC (ISO 8601). Memories of end-user scopes you created through the API are
included, with their user_id.
"""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def pseudonym(user_id: str) -> str:
    """A stable stand-in (32 chars, fits every id column) for an erased person's id in the audit log."""
    return "erased-" + hashlib.sha256(f"optimus-erased:{user_id}".encode()).hexdigest()[:25]


@dataclass(frozen=True, slots=True)
class ErasureReport:
    memories: int
    conversations: int
    messages: int


class GdprService:
    def __init__(self, *, engine: Engine, users: UserStore, conversations: ConversationStore,
                 memory: Callable[[], MemoryService], audit: AuditLog, delete_user: Callable[[User, str], None],
                 check_delete: Callable[[User, str], None]) -> None:
        self._engine = engine
        self._users = users
        self._convs = conversations
        self._memory = memory
        self._audit = audit
        self._delete_user = delete_user
        self._check_delete = check_delete

    # ------------------------------------------------------------------ export
    def collect(self, user_id: str) -> dict[str, Any]:
        """Everything about ``user_id``, as JSON-ready data."""
        user = self._users.get(user_id)
        conversations = []
        offset = 0
        while True:
            page = self._convs.list(user_id, limit=200, offset=offset)
            if not page:
                break
            for conv in page:
                msgs, after = [], 0
                while True:
                    chunk = self._convs.messages(conv.id, user_id=user_id, after_id=after, limit=5000)
                    if not chunk:
                        break
                    msgs.extend({**asdict(m), "details": m.details.as_dict() if m.details else None}
                                for m in chunk)
                    after = chunk[-1].id
                conversations.append({**asdict(conv), "messages": msgs})
            offset += len(page)
        memory = self._memory()
        memories = []
        for record in memory.get_all(user_id, limit=1_000_000, include_expired=True):
            item = record.as_dict()
            item["history"] = [h.as_dict() for h in memory.history(user_id, record.id)]
            memories.append(item)
        deleted = []
        for gone in memory.recently_deleted(user_id, limit=1000):
            deleted.append({"id": gone.memory_id, "memory": gone.text, "user_id": gone.user_id,
                            "deleted_at": gone.deleted_at, "deleted_by": gone.source,
                            "history": [h.as_dict() for h in memory.history(user_id, gone.memory_id)]})
        with self._engine.connect() as conn:
            usage = [dict(r._mapping) for r in conn.execute(
                select(model_usage).where(model_usage.c.user_id == user_id).order_by(model_usage.c.id))]
            audit = [dict(r._mapping) for r in conn.execute(
                select(audit_events).where((audit_events.c.subject_id == user_id) | (audit_events.c.actor_id == user_id))
                .order_by(audit_events.c.id))]
        for row in audit:
            if isinstance(row.get("detail"), str):
                try:
                    row["detail"] = json.loads(row["detail"])
                except ValueError:
                    pass
        return {
            "profile": {"id": user.id, "username": user.username, "email": user.email, "role": user.role,
                        "created_at": user.created_at},
            "conversations": conversations,
            "memories": memories,
            "deleted_memories": deleted,
            "usage": usage,
            "audit": audit,
        }

    def export_zip(self, user_id: str, *, ip: str | None = None) -> bytes:
        """The person's data as a ZIP; the export itself is audited."""
        data = _plain(self.collect(user_id))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("README.txt", EXPORT_README.format(when=datetime.now(UTC).isoformat(timespec="seconds"),
                                                           username=data["profile"]["username"]))
            for name in ("profile", "conversations", "memories", "deleted_memories", "usage", "audit"):
                zf.writestr(f"{name}.json", json.dumps(data[name], ensure_ascii=False, indent=2))
        self._audit.record("export", actor_id=user_id, subject_id=user_id, ip=ip,
                           detail={"memories": len(data["memories"]), "conversations": len(data["conversations"])})
        return buffer.getvalue()

    # ------------------------------------------------------------------ erase
    def erase(self, actor: User, user_id: str, *, confirm_username: str, ip: str | None = None) -> ErasureReport:
        """Erase a person: vectors and memory history, then the account and everything hanging off it.

        ``confirm_username`` must equal the account's username (typed by the person, or the admin).
        """
        target = self._users.get(user_id)  # NotFound for an unknown id
        if (confirm_username or "").strip().lower() != target.username:
            raise ValidationError("Type the account's username exactly to confirm.", field="confirm_username")
        convs = self._convs.list(user_id, limit=1_000_000)
        messages = sum(c.message_count for c in convs)
        if actor.id != user_id and actor.role != "admin":
            raise PermissionDenied("Only the person themself or an administrator can erase an account.")
        self._check_delete(actor, user_id)  # every rule (the last admin stays) before anything is erased
        erased = self._memory().erase_owner(user_id)
        self._delete_user(actor, user_id)  # relational cascade + the "account.erase" event
        with self._engine.begin() as conn:
            # The audit log keeps what happened, not who it was; failed sign-ins keep no name.
            self._audit.pseudonymise(user_id, pseudonym(user_id), conn=conn)
            conn.execute(delete(login_attempts).where(login_attempts.c.username == target.username))
        return ErasureReport(erased, len(convs), messages)
