"""Memory history keeps what a deleted memory was (its fields, not only its text), so it can be
restored exactly from "Recently deleted".

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("memory_history") as batch:
        batch.add_column(sa.Column("snapshot", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("memory_history") as batch:
        batch.drop_column("snapshot")
