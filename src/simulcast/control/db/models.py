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
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from simulcast.control.db.sealed import Sealed
from simulcast.control.security import digest

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
    label: Mapped[str | None] = mapped_column(String(200))
    last_used_ms: Mapped[int | None] = mapped_column(BigInteger)


class AuthSession(Base):
    """A dashboard login: the token is stored hashed and expires."""

    __tablename__ = "auth_sessions"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_used_ms: Mapped[int | None] = mapped_column(BigInteger)


class Stream(Base):
    """A durable stream key with its label, limits and lock state.

    The key is sealed at rest (its owner can still read it) and found by its digest, which
    setting ``stream_key`` keeps up to date.
    """

    __tablename__ = "streams"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    stream_key: Mapped[str] = mapped_column(Sealed, unique=True)  # seals never repeat
    stream_key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    max_sats: Mapped[int | None] = mapped_column(BigInteger)
    max_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    locked_reason: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)
    srt_passphrase: Mapped[str | None] = mapped_column(Sealed)
    """SRT publishers must encrypt with this (AES); ``None``: clear SRT only."""

    @validates("stream_key")
    def _keep_digest(self, _name: str, value: str) -> str:
        self.stream_key_digest = digest(value)
        return value


class Destination(Base):
    """Where a live stream goes. ``url`` holds the destination's secret: sealed at rest, it
    never leaves."""

    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Sealed, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    playback_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class LiveSession(Base):
    """One publish of a stream, from first byte to its end, with the reason it ended."""

    __tablename__ = "sessions"
    __table_args__ = (
        # One owner per live stream across nodes (migration 0011): a second open session of
        # the same stream fails to insert.
        Index(
            "ux_sessions_open_stream",
            "stream_id",
            unique=True,
            postgresql_where=text("ended_ms IS NULL"),
            sqlite_where=text("ended_ms IS NULL"),
        ),
    )
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
    secret: Mapped[str | None] = mapped_column(Sealed)  # signing secret, sealed at rest
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
    __table_args__ = (Index("ix_archives_node_status", "node_id", "status"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id"))
    session_pk: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    file_name: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # recording | uploading | uploaded | failed
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_seconds: Mapped[float] = mapped_column(default=0.0)
    url: Mapped[str | None] = mapped_column(Text)  # the presigned URL sent in recording.ready
    # The upload's durable state (migration 0003), written before it is acted on.
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("destinations.id"))
    node_id: Mapped[str] = mapped_column(String(128), default="")
    """The node holding the local copy (and so uploading it)."""
    local_path: Mapped[str | None] = mapped_column(Text)
    """The local copy; ``None`` once deleted."""
    finished_ms: Mapped[int | None] = mapped_column(BigInteger)
    """When the recording was complete (``None`` while the recorder may still append)."""
    upload_id: Mapped[str | None] = mapped_column(Text)
    s3_endpoint: Mapped[str | None] = mapped_column(Text)
    s3_bucket: Mapped[str | None] = mapped_column(String(255))
    s3_key: Mapped[str | None] = mapped_column(Text)
    part_size: Mapped[int] = mapped_column(BigInteger, default=0)
    parts_uploaded: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    failing_since_ms: Mapped[int | None] = mapped_column(BigInteger)
    """Start of the current run of failed attempts (the retry budget counts from here)."""
    failed_ms: Mapped[int | None] = mapped_column(BigInteger)
    uploaded_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


# -- lightning (NWC top-ups) --


class NwcConnection(Base):
    """An account's Nostr Wallet Connect URI (sealed with the secret box) and what the wallet
    reported when it was connected. One per account."""

    __tablename__ = "nwc_connections"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    sealed_uri: Mapped[str] = mapped_column(Text)
    wallet_pubkey: Mapped[str] = mapped_column(String(64))
    alias: Mapped[str | None] = mapped_column(String(200))
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    notifications: Mapped[list[str]] = mapped_column(JSON, default=list)
    balance_sats: Mapped[int | None] = mapped_column(BigInteger)
    budget: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class LightningTopup(Base):
    """An invoice of the operator's wallet that credits an account once paid.

    ``payment_hash`` is the idempotency key of the credit. ``status``: pending | paid |
    expired | failed; an expired invoice paid late is still credited (then ``paid``).
    """

    __tablename__ = "lightning_topups"
    __table_args__ = (Index("ix_lightning_topups_account_created", "account_id", "created_ms"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    payment_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    invoice: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # manual | auto | fee
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(String(500))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    paid_ms: Mapped[int | None] = mapped_column(BigInteger)


class AutoTopup(Base):
    """An account's auto top-up rule: below ``below_sats``, pay ``amount_sats`` from its
    connected wallet, at most ``max_per_day_sats`` in any 24 hours."""

    __tablename__ = "auto_topups"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    below_sats: Mapped[int] = mapped_column(BigInteger)
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    max_per_day_sats: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_ms: Mapped[int | None] = mapped_column(BigInteger)


# -- v1 dialect: configurations, instances, files (V1.md) --


class V1Destination(Base):
    """An account's saved output target for instances; the full URL (with key) is sealed."""

    __tablename__ = "v1_destinations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(32))
    masked_url: Mapped[str] = mapped_column(Text)
    sealed_url: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class V1File(Base):
    """An uploaded MP4 or PNG, stored under the data dir, with what probing found."""

    __tablename__ = "v1_files"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(8))  # "mp4" | "png"
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    probe: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class V1Configuration(Base):
    """A reusable pipeline: a validated graph of elements."""

    __tablename__ = "v1_configurations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    elements: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class V1InstanceRequest(Base):
    """One launch: the instances it created (its status is derived from theirs)."""

    __tablename__ = "v1_instance_requests"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    configuration_id: Mapped[str] = mapped_column(ForeignKey("v1_configurations.id"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class V1Instance(Base):
    """One copy of a configuration: queued (first in first out), running on a node, or stopped.

    Billing: ``seconds`` of running time (over every run) are accounted and ``cost_sats``
    charged; both move in the transaction of the ledger posting. ``run_started_ms`` and
    ``run_base_seconds`` say where the current run began and what earlier runs accounted.
    """

    __tablename__ = "v1_instances"
    __table_args__ = (Index("ix_v1_instances_queue", "status", "queued_ms", "seq"),)
    seq: Mapped[int] = mapped_column(IdType, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    configuration_id: Mapped[str] = mapped_column(ForeignKey("v1_configurations.id"), index=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("v1_instance_requests.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # QUEUED | RUNNING | STOPPED
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_keys: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    outputs_live: Mapped[dict[str, bool]] = mapped_column(JSON, default=dict)
    node_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    queued_ms: Mapped[int] = mapped_column(BigInteger)
    """When it (last) joined the queue: the queue is first in first out by this, then ``seq``."""
    started_ms: Mapped[int | None] = mapped_column(BigInteger)
    stopped_ms: Mapped[int | None] = mapped_column(BigInteger)
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    run_started_ms: Mapped[int | None] = mapped_column(BigInteger)
    run_base_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    restart_on_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    """The launch asked (``"restartOnFailure": true``) to be queued again, keeping its input
    keys, when the node running it is lost (scale-out, migration 0007)."""


# -- tips (Lightning, straight to the streamer's wallet) --


class TipSettings(Base):
    """An account's tip policy: whether viewers may tip, and the accepted range in sats.

    Per account, not per destination: tips are paid to the account's one connected wallet, so
    one policy goes with it (and destinations stay as the API defines them)."""

    __tablename__ = "tip_settings"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    min_sats: Mapped[int] = mapped_column(BigInteger)
    max_sats: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Tip(Base):
    """An invoice the streamer's own wallet made for a viewer's tip. Never touches the ledger:
    ``status`` (pending | paid | expired) only records what the streamer's wallet reported."""

    __tablename__ = "tips"
    __table_args__ = (Index("ix_tips_account_created", "account_id", "created_ms"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    payment_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    stream_id: Mapped[int | None] = mapped_column(BigInteger)
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(String(280))
    invoice: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    paid_ms: Mapped[int | None] = mapped_column(BigInteger)


# -- scale-out (issue 17) --


class Node(Base):
    """A media node of the fleet and its heartbeat lease.

    A node owns its live sessions and running instances while ``lease_expires_ms`` is ahead;
    when it falls behind, any API node declares it lost (``lost_ms``) exactly once (row lock)
    and closes what it owned (``node_lost``). A node that finds itself lost stops its outputs.
    """

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    rtmp_url: Mapped[str] = mapped_column(String(500), default="")
    hls_url: Mapped[str] = mapped_column(String(500), default="")
    slots: Mapped[int] = mapped_column(Integer, default=0)
    load: Mapped[int] = mapped_column(Integer, default=0)
    """Live sessions plus running instances at the last heartbeat."""
    started_ms: Mapped[int] = mapped_column(BigInteger)
    heartbeat_ms: Mapped[int] = mapped_column(BigInteger)
    lease_expires_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    lost_ms: Mapped[int | None] = mapped_column(BigInteger)
