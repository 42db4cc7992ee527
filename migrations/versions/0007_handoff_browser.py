"""Bind each sign-in hand-off to the browser that signed in (login CSRF).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Hand-offs live 60 seconds; any minted before this revision simply stop working.
    op.execute(sa.text("DELETE FROM auth_handoffs"))
    with op.batch_alter_table("auth_handoffs") as batch:
        batch.add_column(sa.Column("browser_hash", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("auth_handoffs") as batch:
        batch.drop_column("browser_hash")
