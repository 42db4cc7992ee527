"""Model usage and cost: one row per model run (chat reply or memory step); turn details on messages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from core.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("details", sa.Text()))
    op.create_table(
        "model_usage",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(32)),
        sa.Column("conversation_id", sa.String(32)),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Numeric(14, 8)),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'error', 'timeout', 'cancelled')", name=op.f("ck_model_usage_status")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_model_usage_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_usage")),
    )
    op.create_index(op.f("ix_model_usage_user_id_created_at"), "model_usage", ["user_id", "created_at"])
    op.create_index(op.f("ix_model_usage_created_at"), "model_usage", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_model_usage_created_at"), table_name="model_usage")
    op.drop_index(op.f("ix_model_usage_user_id_created_at"), table_name="model_usage")
    op.drop_table("model_usage")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("details")
