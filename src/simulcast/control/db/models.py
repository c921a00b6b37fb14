"""The ORM models: the durable state of the control plane.

Times are integer unix milliseconds (``*_ms``) unless named otherwise; money is integer sats.
Schema changes go through Alembic migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT ids.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic needs them)."""

    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    """An owner of streams, keys and a wallet."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    publish_blocked_reason: Mapped[str | None] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """An ``sk_`` (account-wide) or ``pk_`` (one self-hosted destination) key, stored hashed."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(2))  # "sk" | "pk"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # prefix + first chars, for listings
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("destinations.id"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)


class AuthSession(Base):
    """A dashboard login: the token is stored hashed and expires."""

    __tablename__ = "auth_sessions"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)


class Stream(Base):
    """A durable stream key with its label, limits and lock state."""

    __tablename__ = "streams"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    stream_key: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    max_sats: Mapped[int | None] = mapped_column(BigInteger)
    max_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    locked_reason: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class Destination(Base):
    """Where a live stream goes. ``url`` holds the destination's secret and never leaves."""

    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    playback_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class LiveSession(Base):
    """One publish of a stream, from first byte to its end, with the reason it ended."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), unique=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(128), default="")
    started_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)
    end_reason: Mapped[str | None] = mapped_column(String(64))
    metered_minutes: Mapped[int] = mapped_column(Integer, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)


class SessionDestination(Base):
    """A destination's part in one session: the basis of per-platform history rows."""

    __tablename__ = "session_destinations"
    __table_args__ = (UniqueConstraint("session_pk", "destination_id"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    session_pk: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    started_ms: Mapped[int] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)


class LedgerTransaction(Base):
    """One balanced money movement; ``idempotency_key`` makes every charge happen once."""

    __tablename__ = "ledger_transactions"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # credit | stream_minute | bandwidth | ...
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    session_pk: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("destinations.id"))
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(500), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class LedgerEntry(Base):
    """One leg of a transaction: ``book`` is ``wallet``, ``revenue`` or ``funding``.

    The entries of a transaction sum to zero; a wallet's balance is the sum of its entries.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_book_account", "book", "account_id"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    book: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    amount_sats: Mapped[int] = mapped_column(BigInteger)


class WalletBalance(Base):
    """The cached wallet balance, updated in the same transaction as every wallet entry.

    Row-locked (``SELECT ... FOR UPDATE`` on PostgreSQL) to serialize concurrent charges.
    """

    __tablename__ = "wallet_balances"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    balance_sats: Mapped[int] = mapped_column(BigInteger, default=0)


class BandwidthBucket(Base):
    """Bytes of self-hosted HLS served, per destination and clock hour (``hour_start`` in s)."""

    __tablename__ = "bandwidth_buckets"
    __table_args__ = (UniqueConstraint("destination_id", "hour_start"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id"))
    hour_start: Mapped[int] = mapped_column(BigInteger, index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class Webhook(Base):
    """A customer endpoint subscribed to events (secret kept to sign deliveries)."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str | None] = mapped_column(String(500))
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("streams.id"))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """The durable outbox: one row per (event, webhook), written with the state change."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_ms"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger)


class Archive(Base):
    """A recording of a session, uploaded (or waiting) to S3-compatible storage."""

    __tablename__ = "archives"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id"))
    session_pk: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    file_name: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # recording | uploading | ready | failed
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_seconds: Mapped[float] = mapped_column(default=0.0)
    url: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
