"""REST API keys: one row per key, holding its SHA-256 and a display prefix, never the key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from core.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("usage_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_api_keys_owner_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_owner_id_created_at"), "api_keys", ["owner_id", "created_at"])


def downgrade() -> None:
    op.drop_table("api_keys")  # its index goes with it
