"""Accounts: password hashes and admin locks on users, sessions, handoffs, CAPTCHAs, login attempts,
OIDC identities and the audit log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from core.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain nullable columns: ADD COLUMN on both backends, no table rebuild on SQLite.
    op.add_column("users", sa.Column("password_hash", sa.String(100)))
    op.add_column("users", sa.Column("locked_at", UTCDateTime()))
    op.create_table(
        "auth_sessions",
        sa.Column("jti", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(400)),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("revoked_reason", sa.String(32)),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_auth_sessions")),
    )
    op.create_index(op.f("ix_auth_sessions_user_id_created_at"), "auth_sessions", ["user_id", "created_at"])
    op.create_table(
        "auth_handoffs",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("session_jti", sa.String(32), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_jti"], ["auth_sessions.jti"],
                                name=op.f("fk_auth_handoffs_session_jti_auth_sessions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_auth_handoffs")),
    )
    op.create_table(
        "auth_captchas",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("answer_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_captchas")),
    )
    op.create_index(op.f("ix_auth_captchas_expires_at"), "auth_captchas", ["expires_at"])
    op.create_table(
        "login_attempts",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime()),
        sa.CheckConstraint("outcome IN ('ok', 'failed', 'captcha', 'locked')",
                           name=op.f("ck_login_attempts_outcome")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index(op.f("ix_login_attempts_username_created_at"), "login_attempts", ["username", "created_at"])
    op.create_index(op.f("ix_login_attempts_ip_created_at"), "login_attempts", ["ip", "created_at"])
    op.create_index(op.f("ix_login_attempts_created_at"), "login_attempts", ["created_at"])
    op.create_table(
        "oidc_identities",
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_oidc_identities_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("issuer", "subject", name=op.f("pk_oidc_identities")),
    )
    op.create_index(op.f("ix_oidc_identities_user_id"), "oidc_identities", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("actor_id", sa.String(32)),
        sa.Column("subject_id", sa.String(64)),
        sa.Column("ip", sa.String(64)),
        sa.Column("detail", sa.Text()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_created_at"), "audit_events", ["created_at"])
    op.create_index(op.f("ix_audit_events_actor_id_created_at"), "audit_events", ["actor_id", "created_at"])
    op.create_index(op.f("ix_audit_events_event_created_at"), "audit_events", ["event", "created_at"])
    op.create_index(op.f("ix_audit_events_subject_id_created_at"), "audit_events", ["subject_id", "created_at"])


def downgrade() -> None:
    op.drop_table("audit_events")  # its indexes go with it
    op.drop_table("oidc_identities")
    op.drop_table("login_attempts")
    op.drop_table("auth_captchas")
    op.drop_table("auth_handoffs")
    op.drop_table("auth_sessions")
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch rebuild of users would cascade-delete
    # everyone's rows through the foreign keys.
    op.drop_column("users", "locked_at")
    op.drop_column("users", "password_hash")
