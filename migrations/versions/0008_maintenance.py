"""Scheduled maintenance: what each run changed, and one runner at a time across replicas.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from core.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "maintenance_runs",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("task", sa.String(40), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("detail", sa.Text()),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.CheckConstraint("status IN ('running', 'ok', 'failed')", name=op.f("ck_maintenance_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_runs")),
    )
    op.create_index(op.f("ix_maintenance_runs_task_started_at"), "maintenance_runs", ["task", "started_at"])
    op.create_table(
        "maintenance_leases",
        sa.Column("task", sa.String(40), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task", name=op.f("pk_maintenance_leases")),
    )


def downgrade() -> None:
    op.drop_table("maintenance_leases")
    op.drop_index(op.f("ix_maintenance_runs_task_started_at"), table_name="maintenance_runs")
    op.drop_table("maintenance_runs")
