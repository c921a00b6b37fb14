"""archive uploads: the durable state of a recording's multipart upload

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("archives", schema=None) as batch_op:
        batch_op.add_column(sa.Column("destination_id", _ID, nullable=True))
        batch_op.add_column(
            sa.Column("node_id", sa.String(length=128), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("local_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("finished_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("upload_id", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("s3_endpoint", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("s3_bucket", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("s3_key", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("part_size", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("parts_uploaded", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failing_since_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("failed_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("uploaded_ms", sa.BigInteger(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_archives_destination_id_destinations"),
            "destinations",
            ["destination_id"],
            ["id"],
        )
        batch_op.create_index("ix_archives_node_status", ["node_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("archives", schema=None) as batch_op:
        batch_op.drop_index("ix_archives_node_status")
        batch_op.drop_constraint(
            batch_op.f("fk_archives_destination_id_destinations"), type_="foreignkey"
        )
        for column in (
            "uploaded_ms",
            "failed_ms",
            "failing_since_ms",
            "error",
            "parts_uploaded",
            "part_size",
            "s3_key",
            "s3_bucket",
            "s3_endpoint",
            "upload_id",
            "finished_ms",
            "local_path",
            "node_id",
            "destination_id",
        ):
            batch_op.drop_column(column)
