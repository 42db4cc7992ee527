"""Table definitions (SQLAlchemy Core). The live schema is changed only by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores them naive; we add the zone back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


RowId = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("email", String(320)),
    Column("role", String(16), nullable=False, server_default="user"),
    Column("created_at", UTCDateTime(), nullable=False),
    # accounts (migration 0004): password_hash is NULL for OIDC-only people; locked_at is set by an admin
    Column("password_hash", String(100)),
    Column("locked_at", UTCDateTime()),
    CheckConstraint("role IN ('user', 'admin')", name="role"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("message_count", Integer(), nullable=False, server_default="0"),
    Index(None, "user_id", "updated_at"),
    Index(None, "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column(
        "conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text(), nullable=False),
    Column("model", String(200)),
    Column("input_tokens", Integer()),
    Column("output_tokens", Integer()),
    Column("created_at", UTCDateTime(), nullable=False),
    # JSON about an assistant turn: recalled memories, tool events, cost, fallback (migration 0003)
    Column("details", Text()),
    CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="role"),
    Index(None, "conversation_id", "id"),
)

# --- long-term memory (migration 0002) -------------------------------------------------------
memory_history = Table(
    "memory_history",
    metadata,
    Column("seq", RowId, primary_key=True, autoincrement=True),  # insertion order
    Column("id", String(36), nullable=False, unique=True),  # mem0's history record id
    Column("memory_id", String(64), nullable=False),
    Column("owner_id", String(32)),
    Column("user_id", String(200)),
    Column("agent_id", String(200)),
    Column("run_id", String(200)),
    Column("old_memory", Text()),
    Column("new_memory", Text()),
    Column("event", String(16), nullable=False),
    Column("created_at", String(40)),  # mem0's ISO strings, kept verbatim
    Column("updated_at", String(40)),
    Column("is_deleted", Integer(), nullable=False, server_default="0"),
    Column("actor_id", String(200)),
    Column("role", String(32)),
    Column("source", String(16)),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # JSON: a DELETE's memory as it was (MemoryRecord.as_dict()), for an exact restore (migration 0007)
    Column("snapshot", Text()),
    Index(None, "memory_id", "seq"),
    Index(None, "owner_id", "recorded_at"),
)

pending_extractions = Table(
    "pending_extractions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("owner_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("agent_id", String(200)),
    Column("run_id", String(200)),
    Column("conversation_id", String(32)),
    Column("message_id", BigInteger()),
    Column("payload", Text(), nullable=False),  # JSON: the exchange and its context turns
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("last_error", Text()),
    Column("result", Text()),  # JSON list of MemoryEvent once done
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "owner_id", "conversation_id"),
)

# --- model usage and cost (migration 0003) ---------------------------------------------------
model_usage = Table(
    "model_usage",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # SET NULL: erasing a person unlinks their rows but keeps the install's cost totals honest.
    Column("user_id", String(32), ForeignKey("users.id", ondelete="SET NULL")),
    Column("conversation_id", String(32)),
    Column("purpose", String(16), nullable=False),  # chat | extract | update | title
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("requests", Integer(), nullable=False, server_default="0"),
    Column("input_tokens", Integer(), nullable=False, server_default="0"),
    Column("output_tokens", Integer(), nullable=False, server_default="0"),
    Column("cost_usd", Numeric(14, 8)),  # NULL: price unknown (local, self-hosted, unlisted models)
    Column("latency_ms", Float(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text()),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("status IN ('ok', 'error', 'timeout', 'cancelled')", name="status"),
    Index(None, "user_id", "created_at"),
    Index(None, "created_at"),
)

# --- accounts, sessions and the audit log (migration 0004) -----------------------------------
# One row per login. The token itself is never stored: a JWT names its row by ``jti``.
auth_sessions = Table(
    "auth_sessions",
    metadata,
    Column("jti", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),  # exp of the newest token issued for it
    Column("ip", String(64)),
    Column("user_agent", String(400)),
    Column("revoked_at", UTCDateTime()),
    Column("revoked_reason", String(32)),
    Index(None, "user_id", "created_at"),
)

# Single-use, 60-second tokens that carry a login from the Streamlit session to the cookie route.
auth_handoffs = Table(
    "auth_handoffs",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex; the token is never stored
    Column("session_jti", String(32), ForeignKey("auth_sessions.jti", ondelete="CASCADE"), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    # sha256 of the pre-session cookie of the browser that signed in; the cookie route must see it
    Column("browser_hash", String(64), nullable=False, server_default=""),
)

# Arithmetic challenges asked after repeated failed logins; consumed by the first answer.
auth_captchas = Table(
    "auth_captchas",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("answer_hash", String(64), nullable=False),  # HMAC of the answer, keyed by the JWT secret
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "expires_at"),
)

# Every login attempt for the brute-force rules (per username, even unknown ones, and per IP).
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("ip", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime()),  # set on the failure that locked the account
    CheckConstraint("outcome IN ('ok', 'failed', 'captcha', 'locked')", name="outcome"),
    Index(None, "username", "created_at"),
    Index(None, "ip", "created_at"),
    Index(None, "created_at"),
)

# Identities from st.login (OIDC), each mapped to one local user.
oidc_identities = Table(
    "oidc_identities",
    metadata,
    Column("issuer", String(255), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320)),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "user_id"),
)

# Append-only: core.audit inserts and reads, nothing updates. Ids are kept after a user is erased
# (no foreign keys), so the trail survives the people it is about.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("event", String(40), nullable=False),
    Column("actor_id", String(32)),
    Column("subject_id", String(64)),
    Column("ip", String(64)),
    Column("detail", Text()),  # small JSON object; never a password or token
    Index(None, "created_at"),
    Index(None, "actor_id", "created_at"),
    Index(None, "event", "created_at"),
    Index(None, "subject_id", "created_at"),
)

# --- REST API keys (migration 0005) ----------------------------------------------------------
# The key itself is never stored: only its SHA-256 (hex) and a short prefix to recognise it by.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("usage_count", BigInteger(), nullable=False, server_default="0"),
    Column("revoked_at", UTCDateTime()),
    Index(None, "owner_id", "created_at"),
)

# --- per-user preferences (migration 0006) ---------------------------------------------------
user_preferences = Table(
    "user_preferences",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("data", Text(), nullable=False),  # JSON of core.preferences.Preferences
    Column("updated_at", UTCDateTime(), nullable=False),
)

# --- scheduled maintenance (migration 0008) ---------------------------------------------------
maintenance_runs = Table(
    "maintenance_runs",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("task", String(40), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule | admin
    Column("actor_id", String(32)),  # the admin who pressed "run now"; None for the schedule
    Column("status", String(16), nullable=False),  # running | ok | failed
    Column("changed", Integer(), nullable=False, server_default="0"),
    Column("detail", Text()),  # JSON counts, never content
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    CheckConstraint("status IN ('running', 'ok', 'failed')", name="status"),
    Index(None, "task", "started_at"),
)

# One runner at a time across replicas: a task's lease row, taken with a conditional update.
maintenance_leases = Table(
    "maintenance_leases",
    metadata,
    Column("task", String(40), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)
