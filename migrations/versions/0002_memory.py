"""Long-term memory: mem0's history in our database, and the durable pending-extraction queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from core.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "memory_history",
        sa.Column("seq", RowId, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("memory_id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(32)),
        sa.Column("user_id", sa.String(200)),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("run_id", sa.String(200)),
        sa.Column("old_memory", sa.Text()),
        sa.Column("new_memory", sa.Text()),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40)),
        sa.Column("updated_at", sa.String(40)),
        sa.Column("is_deleted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("actor_id", sa.String(200)),
        sa.Column("role", sa.String(32)),
        sa.Column("source", sa.String(16)),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_memory_history")),
        sa.UniqueConstraint("id", name=op.f("uq_memory_history_id")),
    )
    op.create_index(op.f("ix_memory_history_memory_id_seq"), "memory_history", ["memory_id", "seq"])
    op.create_index(op.f("ix_memory_history_owner_id_recorded_at"), "memory_history", ["owner_id", "recorded_at"])
    op.create_table(
        "pending_extractions",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("run_id", sa.String(200)),
        sa.Column("conversation_id", sa.String(32)),
        sa.Column("message_id", sa.BigInteger()),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("result", sa.Text()),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_pending_extractions_status")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_pending_extractions_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_extractions")),
    )
    op.create_index(
        op.f("ix_pending_extractions_status_next_attempt_at"), "pending_extractions", ["status", "next_attempt_at"]
    )
    op.create_index(
        op.f("ix_pending_extractions_owner_id_conversation_id"), "pending_extractions", ["owner_id", "conversation_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pending_extractions_owner_id_conversation_id"), table_name="pending_extractions")
    op.drop_index(op.f("ix_pending_extractions_status_next_attempt_at"), table_name="pending_extractions")
    op.drop_table("pending_extractions")
    op.drop_index(op.f("ix_memory_history_owner_id_recorded_at"), table_name="memory_history")
    op.drop_index(op.f("ix_memory_history_memory_id_seq"), table_name="memory_history")
    op.drop_table("memory_history")
