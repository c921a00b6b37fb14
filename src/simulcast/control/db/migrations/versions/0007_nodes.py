"""scale-out: the media nodes' registry and heartbeat leases; instances' restartOnFailure

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("rtmp_url", sa.String(500), nullable=False, server_default=""),
        sa.Column("hls_url", sa.String(500), nullable=False, server_default=""),
        sa.Column("slots", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("load", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("lost_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_nodes_lease_expires_ms", "nodes", ["lease_expires_ms"])
    with op.batch_alter_table("v1_instances") as batch:
        batch.add_column(
            sa.Column("restart_on_failure", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("v1_instances") as batch:
        batch.drop_column("restart_on_failure")
    op.drop_index("ix_nodes_lease_expires_ms", table_name="nodes")
    op.drop_table("nodes")
