"""seal secrets at rest: stream keys (found by digest), destination URLs, webhook secrets

Revision ID: 0006
Revises: 0001
Create Date: 2026-12-04 16:05:00

Existing rows are converted in place with the server's secret box (``SIMULCAST_SECRET_KEY`` or
the data dir's key file), the same one the running server then uses to open them.
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from simulcast.control.secretbox import SecretBox
from simulcast.control.security import digest

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _box() -> SecretBox:
    config = op.get_context().config
    box = config.attributes.get("secret_box") if config is not None else None
    if isinstance(box, SecretBox):
        return box
    from simulcast.settings import Settings  # alembic run by hand: the server's own settings

    return SecretBox.from_settings(Settings())


def _convert(table: str, column: str, change: Callable[[str], str]) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
    for row_id, value in rows:
        if value:
            bind.execute(
                sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                {"v": change(value), "id": row_id},
            )


def upgrade() -> None:
    # No batch (table copy) on SQLite: dropping ``streams`` with foreign keys on fails, so only
    # changes SQLite makes in place. Seals are random, so the old unique constraint on
    # ``stream_key`` stays harmlessly; SQLite ignores the lengths PostgreSQL must widen.
    box = _box()
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("streams", sa.Column("stream_key_digest", sa.String(length=64), nullable=True))
    if postgres:
        op.alter_column("streams", "stream_key", existing_type=sa.String(64), type_=sa.Text())
        op.alter_column("webhooks", "secret", existing_type=sa.String(500), type_=sa.Text())
    bind = op.get_bind()
    for row_id, key in bind.execute(sa.text("SELECT id, stream_key FROM streams")).all():
        bind.execute(
            sa.text("UPDATE streams SET stream_key = :k, stream_key_digest = :d WHERE id = :id"),
            {"k": box.seal(key), "d": digest(key), "id": row_id},
        )
    if postgres:
        op.alter_column("streams", "stream_key_digest", existing_type=sa.String(64), nullable=False)
    op.create_index("uq_streams_stream_key_digest", "streams", ["stream_key_digest"], unique=True)
    _convert("webhooks", "secret", box.seal)
    _convert("destinations", "url", box.seal)


def downgrade() -> None:
    box = _box()
    _convert("destinations", "url", box.open)
    _convert("webhooks", "secret", box.open)
    _convert("streams", "stream_key", box.open)
    op.drop_index("uq_streams_stream_key_digest", table_name="streams")
    op.drop_column("streams", "stream_key_digest")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("webhooks", "secret", existing_type=sa.Text(), type_=sa.String(500))
        op.alter_column("streams", "stream_key", existing_type=sa.Text(), type_=sa.String(64))
