"""Conversations: the short-term memory of a chat.

A conversation belongs to one user and holds an ordered list of messages ("turns"): each is
one role's text with the model and token counts that produced it. :meth:`ConversationStore.context`
hands the last N turns to the model. Retention is configurable: a per-conversation message cap
(oldest dropped first) and an idle TTL after which conversations expire (hidden at once, removed by
:meth:`ConversationStore.cleanup`).

Every write is one transaction: a rejected message stores nothing, an accepted one stores
the message, the conversation's activity time and its trimmed history together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.errors import NotFound, ValidationError
from core.schema import conversations, messages
from core.turn_details import TurnDetails

MessageRole = Literal["user", "assistant", "system", "tool"]
ROLES: frozenset[str] = frozenset({"user", "assistant", "system", "tool"})
DEFAULT_TITLE = "New conversation"
MAX_TITLE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    message_count: int


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: str
    role: MessageRole
    content: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    created_at: datetime
    details: TurnDetails | None = None  # assistant turns: recalled memories, tool events, cost


@dataclass(frozen=True, slots=True)
class ConversationMatch:
    """A conversation found by :meth:`ConversationStore.search`, with where the words were found."""

    conversation: Conversation
    snippet: str | None  # a piece of the newest matching message; None when only the title matched


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What :meth:`ConversationStore.cleanup` removed."""

    expired_conversations: int = 0
    expired_messages: int = 0
    trimmed_messages: int = 0


def validate_text(text: str | bytes, *, limit: int, field: str = "text") -> str:
    """Return ``text`` as a clean ``str`` or raise :class:`ValidationError` saying what is wrong."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"The message is not valid UTF-8 (bad byte at position {exc.start}).", field=field
            ) from None
    if not isinstance(text, str):
        raise ValidationError("The message must be text.", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"The message is not valid UTF-8 (unpaired surrogate at position {exc.start}).", field=field
        ) from None
    if "\x00" in text:
        raise ValidationError("The message contains a NUL character, which cannot be stored.", field=field)
    if not text.strip():
        raise ValidationError("The message is empty.", field=field)
    if len(text) > limit:
        raise ValidationError(
            f"The message is {len(text):,} characters long; the limit is {limit:,}. "
            "Shorten it or split it into several messages.",
            field=field,
        )
    return text


SNIPPET_CHARS = 90


def _snippet(text: str, needle: str) -> str:
    """About ``SNIPPET_CHARS`` characters of ``text`` around the first place ``needle`` occurs."""
    flat = " ".join(text.split())
    at = flat.lower().find(needle)
    if at < 0:
        return flat[:SNIPPET_CHARS] + ("…" if len(flat) > SNIPPET_CHARS else "")
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = flat[start:start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(flat) else "")


def _clean_title(title: str | None) -> str:
    if title is None:
        return DEFAULT_TITLE
    if not isinstance(title, str):
        raise ValidationError("The title must be text.", field="title")
    cleaned = " ".join(title.split())
    if "\x00" in cleaned:
        raise ValidationError("The title contains a NUL character.", field="title")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("The title is not valid UTF-8.", field="title") from None
    if not cleaned:
        raise ValidationError("The title is empty.", field="title")
    if len(cleaned) > MAX_TITLE_CHARS:
        raise ValidationError(f"Titles are at most {MAX_TITLE_CHARS} characters.", field="title")
    return cleaned


def _check_tokens(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{name} must be a non-negative integer.", field=name)
    return value


def _conversation(row) -> Conversation:
    return Conversation(
        id=row.id,
        user_id=row.user_id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        message_count=row.message_count,
    )


def _message(row) -> Message:
    return Message(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        model=row.model,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        created_at=row.created_at,
        details=TurnDetails.from_json(row.details),
    )


class ConversationStore:
    """Conversations and their messages, per user.

    ``max_messages`` (0 = unlimited) caps each conversation, dropping its oldest messages;
    ``ttl`` (zero = forever) expires conversations idle for longer than it.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_messages: int = 0,
        ttl: timedelta = timedelta(0),
        max_chars: int = 32_000,
        default_turns: int = 10,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if max_messages < 0 or ttl < timedelta(0) or max_chars < 1 or default_turns < 1:
            raise ValueError("retention settings must be non-negative")
        self._engine = engine
        self.max_messages = max_messages
        self.ttl = ttl
        self.max_chars = max_chars
        self.default_turns = default_turns
        self._clock = clock or (lambda: datetime.now(UTC))

    # ---------------------------------------------------------------- conversations
    def _live(self, now: datetime):
        """SQL condition: the conversation has not expired."""
        if self.ttl <= timedelta(0):
            return True
        return conversations.c.updated_at >= now - self.ttl

    def _fetch(self, conn: Connection, conv_id: str, user_id: str | None, now: datetime):
        cond = [conversations.c.id == conv_id, self._live(now)]
        if user_id is not None:
            cond.append(conversations.c.user_id == user_id)
        row = conn.execute(select(conversations).where(and_(*cond))).first()
        if row is None:
            raise NotFound("No such conversation.")
        return row

    def create(self, user_id: str, title: str | None = None) -> Conversation:
        """Start a conversation for ``user_id``."""
        clean = _clean_title(title)
        now = self._clock()
        conv_id = uuid.uuid4().hex
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(conversations).values(
                        id=conv_id, user_id=user_id, title=clean, created_at=now, updated_at=now, message_count=0
                    )
                )
        except IntegrityError:
            raise NotFound("No such user.") from None
        return Conversation(conv_id, user_id, clean, now, now, 0)

    def get(self, user_id: str, conv_id: str) -> Conversation:
        """The conversation if ``user_id`` owns it and it has not expired; else :class:`NotFound`."""
        with self._engine.connect() as conn:
            return _conversation(self._fetch(conn, conv_id, user_id, self._clock()))

    def _matching(self, user_id: str, search: str | None):
        """The user's live conversations whose title or any message contains ``search`` (any case)."""
        query = select(conversations).where(conversations.c.user_id == user_id, self._live(self._clock()))
        needle = (search or "").strip().lower()
        if needle:
            in_messages = select(messages.c.id).where(
                messages.c.conversation_id == conversations.c.id,
                func.lower(messages.c.content).contains(needle, autoescape=True),
            ).exists()
            query = query.where(or_(func.lower(conversations.c.title).contains(needle, autoescape=True), in_messages))
        return query.order_by(conversations.c.updated_at.desc(), conversations.c.id)

    def list(self, user_id: str, *, search: str | None = None, limit: int = 50, offset: int = 0) -> list[Conversation]:
        """The user's live conversations, most recently active first; ``search`` matches titles and
        message text (case-insensitive, wildcards taken literally)."""
        limit = max(1, min(int(limit), 500))
        query = self._matching(user_id, search).limit(limit).offset(max(0, offset))
        with self._engine.connect() as conn:
            return [_conversation(r) for r in conn.execute(query)]

    def search(self, user_id: str, text: str, *, limit: int = 50) -> list[ConversationMatch]:
        """Conversations whose title or messages contain ``text``, most recently active first, each
        with a snippet of its newest matching message to show where the words are."""
        needle = (text or "").strip().lower()
        found = self.list(user_id, search=needle or None, limit=limit)
        if not needle or not found:
            return [ConversationMatch(c, None) for c in found]
        newest = (
            select(messages.c.conversation_id, func.max(messages.c.id).label("id"))
            .where(messages.c.conversation_id.in_([c.id for c in found]),
                   func.lower(messages.c.content).contains(needle, autoescape=True))
            .group_by(messages.c.conversation_id).subquery()
        )
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.conversation_id, messages.c.content).join(newest, newest.c.id == messages.c.id)
            ).all()
        texts = {r.conversation_id: r.content for r in rows}
        return [ConversationMatch(c, _snippet(texts[c.id], needle) if c.id in texts else None) for c in found]

    def rename(self, user_id: str, conv_id: str, title: str) -> Conversation:
        clean = _clean_title(title)
        with self._engine.begin() as conn:
            self._fetch(conn, conv_id, user_id, self._clock())
            conn.execute(update(conversations).where(conversations.c.id == conv_id).values(title=clean))
            return _conversation(self._fetch(conn, conv_id, user_id, self._clock()))

    def title_untitled(self, user_id: str, conv_id: str, title: str) -> bool:
        """Give a conversation that still has the default title this one (an automatic title).

        Returns False, changing nothing, when the person named it meanwhile: a title someone
        typed is never overwritten by a generated one.
        """
        clean = _clean_title(title)
        with self._engine.begin() as conn:
            self._fetch(conn, conv_id, user_id, self._clock())
            result = conn.execute(update(conversations).where(
                conversations.c.id == conv_id, conversations.c.title == DEFAULT_TITLE).values(title=clean))
        return result.rowcount == 1

    def delete(self, user_id: str, conv_id: str) -> None:
        """Delete the conversation and all its messages."""
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(conversations).where(conversations.c.id == conv_id, conversations.c.user_id == user_id)
            )
        if result.rowcount == 0:
            raise NotFound("No such conversation.")

    # ---------------------------------------------------------------- messages
    def append(
        self,
        conv_id: str,
        role: MessageRole,
        text: str | bytes,
        *,
        user_id: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        details: TurnDetails | None = None,
    ) -> Message:
        """Add one turn. Validates everything first; stores all of it or nothing.

        When ``user_id`` is given the conversation must belong to that user.
        """
        if role not in ROLES:
            raise ValidationError(f"Unknown role {role!r}; use one of {sorted(ROLES)}.", field="role")
        content = validate_text(text, limit=self.max_chars)
        input_tokens = _check_tokens(input_tokens, "input_tokens")
        output_tokens = _check_tokens(output_tokens, "output_tokens")
        if model is not None and (not isinstance(model, str) or len(model) > 200):
            raise ValidationError("The model name must be text of at most 200 characters.", field="model")
        details_json = details.to_json() if details else None
        now = self._clock()
        with self._engine.begin() as conn:
            self._fetch(conn, conv_id, user_id, now)
            # The UPDATE comes first so PostgreSQL holds the conversation's row lock for the
            # whole append: concurrent appends to one conversation serialise cleanly.
            count = conn.execute(
                update(conversations)
                .where(conversations.c.id == conv_id)
                .values(updated_at=now, message_count=conversations.c.message_count + 1)
                .returning(conversations.c.message_count)
            ).scalar_one()
            msg_id = conn.execute(
                insert(messages)
                .values(
                    conversation_id=conv_id,
                    role=role,
                    content=content,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    created_at=now,
                    details=details_json,
                )
                .returning(messages.c.id)
            ).scalar_one()
            if self.max_messages and count > self.max_messages:
                self._trim(conn, conv_id, count - self.max_messages)
        return Message(msg_id, conv_id, role, content, model, input_tokens, output_tokens, now, details)

    def _trim(self, conn: Connection, conv_id: str, excess: int) -> int:
        oldest = (
            select(messages.c.id)
            .where(messages.c.conversation_id == conv_id)
            .order_by(messages.c.id)
            .limit(excess)
            .scalar_subquery()
        )
        removed = conn.execute(delete(messages).where(messages.c.id.in_(oldest))).rowcount
        conn.execute(
            update(conversations)
            .where(conversations.c.id == conv_id)
            .values(message_count=conversations.c.message_count - removed)
        )
        return removed

    def context(self, conv_id: str, turns: int | None = None, *, user_id: str | None = None) -> list[Message]:
        """The last ``turns`` messages (default from settings, usually 10), oldest first."""
        n = self.default_turns if turns is None else int(turns)
        if n < 0:
            raise ValidationError("turns must be 0 or more.", field="turns")
        with self._engine.connect() as conn:
            self._fetch(conn, conv_id, user_id, self._clock())
            if n == 0:
                return []
            rows = conn.execute(
                select(messages).where(messages.c.conversation_id == conv_id).order_by(messages.c.id.desc()).limit(n)
            ).all()
        return [_message(r) for r in reversed(rows)]

    def messages(
        self, conv_id: str, *, user_id: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[Message]:
        """Messages in order, for showing or exporting a whole conversation page by page."""
        with self._engine.connect() as conn:
            self._fetch(conn, conv_id, user_id, self._clock())
            rows = conn.execute(
                select(messages)
                .where(messages.c.conversation_id == conv_id, messages.c.id > after_id)
                .order_by(messages.c.id)
                .limit(max(1, min(limit, 10_000)))
            ).all()
        return [_message(r) for r in rows]

    def message(self, user_id: str, message_id: int) -> Message:
        """One message of one of the user's live conversations (NotFound otherwise)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
            if row is None:
                raise NotFound("No such message.")
            self._fetch(conn, row.conversation_id, user_id, self._clock())
        return _message(row)

    def update_details(self, user_id: str, message_id: int, details: TurnDetails) -> Message:
        """Replace an assistant turn's details (e.g. a memory change it made was undone)."""
        current = self.message(user_id, message_id)
        with self._engine.begin() as conn:
            conn.execute(update(messages).where(messages.c.id == current.id)
                         .values(details=details.to_json()))
        return self.message(user_id, message_id)

    def truncate(self, user_id: str, conv_id: str, from_message_id: int) -> int:
        """Delete one message of the conversation and every message after it (to answer again or
        to send an edited message in its place). Returns how many messages were removed."""
        with self._engine.begin() as conn:
            self._fetch(conn, conv_id, user_id, self._clock())
            owned = conn.execute(select(messages.c.id).where(
                messages.c.id == from_message_id, messages.c.conversation_id == conv_id)).first()
            if owned is None:
                raise NotFound("No such message.")
            removed = conn.execute(delete(messages).where(
                messages.c.conversation_id == conv_id, messages.c.id >= from_message_id)).rowcount
            conn.execute(update(conversations).where(conversations.c.id == conv_id)
                         .values(message_count=conversations.c.message_count - removed, updated_at=self._clock()))
        return removed

    def export_markdown(self, user_id: str, conv_id: str) -> str:
        """The whole conversation as a Markdown document: its title, then each turn with its time."""
        conv = self.get(user_id, conv_id)
        lines = [f"# {conv.title}", "", f"*Exported from Optimus on {self._clock():%Y-%m-%d %H:%M} UTC.*", ""]
        after = 0
        while chunk := self.messages(conv_id, user_id=user_id, after_id=after, limit=5000):
            for m in chunk:
                who = {"user": "You", "assistant": "Optimus"}.get(m.role, m.role.capitalize())
                model = f" ({m.model})" if m.role == "assistant" and m.model else ""
                lines += [f"## {who}{model} · {m.created_at:%Y-%m-%d %H:%M}", "", m.content.rstrip(), ""]
            after = chunk[-1].id
        return "\n".join(lines)

    # ---------------------------------------------------------------- retention
    def cleanup(self, *, batch: int = 500) -> CleanupReport:
        """Remove expired conversations and trim any over the message cap; report the counts."""
        expired_convs = expired_msgs = trimmed = 0
        now = self._clock()
        if self.ttl > timedelta(0):
            cutoff = now - self.ttl
            while True:
                with self._engine.begin() as conn:
                    ids = conn.execute(
                        select(conversations.c.id).where(conversations.c.updated_at < cutoff).limit(batch)
                    ).scalars().all()
                    if not ids:
                        break
                    # ON DELETE CASCADE removes the messages with their conversation; the
                    # re-check of updated_at spares one that became active meanwhile.
                    gone = conn.execute(
                        delete(conversations)
                        .where(conversations.c.id.in_(ids), conversations.c.updated_at < cutoff)
                        .returning(conversations.c.message_count)
                    ).scalars().all()
                    expired_convs += len(gone)
                    expired_msgs += sum(gone)
        if self.max_messages:
            with self._engine.connect() as conn:
                over = conn.execute(
                    select(conversations.c.id, conversations.c.message_count).where(
                        conversations.c.message_count > self.max_messages
                    )
                ).all()
            for row in over:
                with self._engine.begin() as conn:
                    trimmed += self._trim(conn, row.id, row.message_count - self.max_messages)
        return CleanupReport(expired_conversations=expired_convs, expired_messages=expired_msgs, trimmed_messages=trimmed)

    # ---------------------------------------------------------------- counts
    def counts(self) -> dict[str, int]:
        """Totals across all users (for health and admin pages)."""
        with self._engine.connect() as conn:
            convs = conn.execute(select(func.count()).select_from(conversations)).scalar_one()
            msgs = conn.execute(select(func.count()).select_from(messages)).scalar_one()
        return {"conversations": int(convs), "messages": int(msgs)}
