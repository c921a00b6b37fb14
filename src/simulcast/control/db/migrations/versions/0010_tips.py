"""tips: per-account tip settings and tip invoices of the streamer's own wallet

Revision ID: 0010
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tip_settings",
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("min_sats", sa.BigInteger(), nullable=False),
        sa.Column("max_sats", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_tip_settings_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_tip_settings")),
    )
    op.create_table(
        "tips",
        sa.Column("id", IdType, nullable=False),
        sa.Column("payment_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=True),
        sa.Column("amount_sats", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.String(length=280), nullable=True),
        sa.Column("invoice", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("paid_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_tips_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tips")),
        sa.UniqueConstraint("payment_hash", name=op.f("uq_tips_payment_hash")),
    )
    op.create_index("ix_tips_account_created", "tips", ["account_id", "created_ms"])
    op.create_index(op.f("ix_tips_status"), "tips", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tips_status"), table_name="tips")
    op.drop_index("ix_tips_account_created", table_name="tips")
    op.drop_table("tips")
    op.drop_table("tip_settings")
