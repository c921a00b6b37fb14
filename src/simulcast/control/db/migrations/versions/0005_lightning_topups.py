"""lightning: NWC connections, top-ups, auto top-up rules

Revision ID: 0005
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "nwc_connections",
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("sealed_uri", sa.Text(), nullable=False),
        sa.Column("wallet_pubkey", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=True),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("notifications", sa.JSON(), nullable=False),
        sa.Column("balance_sats", sa.BigInteger(), nullable=True),
        sa.Column("budget", sa.JSON(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_nwc_connections_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_nwc_connections")),
    )
    op.create_table(
        "lightning_topups",
        sa.Column("id", IdType, nullable=False),
        sa.Column("payment_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("amount_sats", sa.BigInteger(), nullable=False),
        sa.Column("invoice", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("paid_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_lightning_topups_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lightning_topups")),
        sa.UniqueConstraint("payment_hash", name=op.f("uq_lightning_topups_payment_hash")),
    )
    op.create_index(
        "ix_lightning_topups_account_created", "lightning_topups", ["account_id", "created_ms"]
    )
    op.create_index(op.f("ix_lightning_topups_status"), "lightning_topups", ["status"])
    op.create_table(
        "auto_topups",
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("below_sats", sa.BigInteger(), nullable=False),
        sa.Column("amount_sats", sa.BigInteger(), nullable=False),
        sa.Column("max_per_day_sats", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_auto_topups_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_auto_topups")),
    )


def downgrade() -> None:
    op.drop_table("auto_topups")
    op.drop_index(op.f("ix_lightning_topups_status"), table_name="lightning_topups")
    op.drop_index("ix_lightning_topups_account_created", table_name="lightning_topups")
    op.drop_table("lightning_topups")
    op.drop_table("nwc_connections")
