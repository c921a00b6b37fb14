"""scale-out: at most one open session per stream, whichever node opened it

Two media nodes that both accept the same stream key at once would otherwise both insert an open
session (each checked there was none, then inserted): a unique partial index makes the second
insert fail, so exactly one node owns a live stream.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-04 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("ended_ms IS NULL")


def upgrade() -> None:
    # A crash-era duplicate (never expected) would block the index: keep the newest open one.
    op.execute(
        "UPDATE sessions SET ended_ms = started_ms, end_reason = 'duplicate' "
        "WHERE ended_ms IS NULL AND id NOT IN "
        "(SELECT MAX(id) FROM sessions WHERE ended_ms IS NULL GROUP BY stream_id)"
    )
    op.create_index(
        "ux_sessions_open_stream",
        "sessions",
        ["stream_id"],
        unique=True,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ux_sessions_open_stream", table_name="sessions")
