"""All configuration, in one class: env prefix ``SIMULCAST_``, optional ``simulcast.env`` file.

Nothing else in the project reads the environment; components receive a ``Settings`` instance.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``SIMULCAST_<FIELD NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="SIMULCAST_", env_file="simulcast.env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./simulcast-data")
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means SQLite in data_dir "
        "(postgresql://... is accepted and mapped to asyncpg).",
    )
    public_url: str = Field(
        default="", description="Base URL clients reach the HTTP server at (for hlsUrl etc.)."
    )
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    rtmp_host: str = "0.0.0.0"
    rtmp_port: int = 1935
    rtmps_port: int = 1936
    rtmps_cert_file: Path | None = None
    rtmps_key_file: Path | None = None
    node_id: str = Field(default="", description="Name of this node (default: hostname).")
    log_level: str = "INFO"
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key(s) sealing secrets at rest, comma-separated for rotation (first seals); "
        "default: a key file created in data_dir.",
    )
    trust_proxy_headers: bool = Field(
        default=False,
        description="Honour X-Forwarded-For/-Proto/-Host (only behind a proxy you run).",
    )

    # API
    rate_limit_per_minute: int = Field(default=60, ge=1)
    rate_limit_storage_uri: str = Field(
        default="memory://", description="limits storage URI, e.g. redis://127.0.0.1:6379"
    )
    session_token_hours: float = Field(default=24.0, gt=0)
    max_body_bytes: int = 1024 * 1024
    cors_origins: str = "*"

    # Pricing (published by GET /api/public/config)
    bandwidth_limit_gb_per_hour: int = Field(default=10, ge=0)
    bandwidth_overage_sats_per_gb: int = Field(default=5, ge=0)
    cost_per_platform: int = Field(default=2, ge=0)
    free_platforms: int = Field(default=1, ge=0)
    billing_minute_seconds: float = Field(default=60.0, gt=0)

    # Media
    rtmp_chunk_size: int = Field(default=4096, ge=128, le=65536)
    rtmp_max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    rtmp_handshake_timeout: float = Field(default=10.0, gt=0)
    rtmp_publish_stall_seconds: float = Field(
        default=5.0,
        ge=0.5,
        description="A live publisher that sends nothing for this long is treated as lost "
        "(network cut without FIN/RST): disconnect protection takes over.",
    )
    output_queue_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    output_queue_seconds: float = Field(default=4.0, gt=0)
    push_retry_min_seconds: float = Field(default=1.0, gt=0)
    push_retry_max_seconds: float = Field(default=30.0, gt=0)
    relay_batch_seconds: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="A publisher's socket is read at most once per this window and what was "
        "read goes to each destination in one write: far fewer wake-ups and syscalls, at most "
        "this much added latency, give or take the event loop's 2 ms timer slack (0: read as "
        "data arrives).",
    )
    # Relay at scale
    max_destinations_per_stream: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="How many destinations one stream key may have (creating a stream with "
        "more, or adding one past it, is a 400 naming 'destinations'). The v1 dialect keeps "
        "its own 6 per output element.",
    )
    slate_image: Path | None = Field(
        default=None,
        description="PNG shown while a protected stream waits for its publisher "
        "(default: a built-in 'Stream will resume shortly').",
    )

    # Hostile input: bounds on what strangers and frozen peers can hold
    rtmp_max_connections: int = Field(
        default=1000, ge=1, description="RTMP(S) connections open at once; more are refused."
    )
    rtmp_max_connections_per_address: int = Field(
        default=32, ge=1, description="RTMP(S) connections open at once from one IP address."
    )
    rtmp_max_message_bytes_before_publish: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest RTMP message accepted before a publish is authorized (a real "
        "connect/publish is a few hundred bytes).",
    )
    rtmp_max_chunk_size_before_publish: int = Field(
        default=64 * 1024,
        ge=128,
        description="Largest Set Chunk Size accepted before a publish is authorized "
        "(ffmpeg and OBS send 4096, GStreamer's rtmp2sink 128 unless configured).",
    )
    rtmp_unauthenticated_buffer_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        description="Bytes one connection may have buffered (unparsed or partial messages) "
        "before its publish is authorized.",
    )
    rtmp_unauthenticated_total_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes all not-yet-authorized connections together may have buffered; "
        "the connection that goes over is closed.",
    )
    close_grace_seconds: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="A closing connection (timeout, protocol error, refusal) gets this long to "
        "send its last replies; then it is aborted, whether the peer reads or not.",
    )
    login_failures_per_minute_per_account: int = Field(
        default=10,
        ge=1,
        description="Failed dashboard logins per account name per minute; more are refused "
        "(429) before any password hashing.",
    )
    login_failures_per_minute_per_address: int = Field(
        default=30,
        ge=1,
        description="Failed dashboard logins per client address per minute (429 beyond).",
    )
    invalid_keys_per_minute_per_address: int = Field(
        default=120,
        ge=1,
        description="Requests with an unknown API key or token per client address per minute; "
        "beyond, that address gets 429 before any key lookup.",
    )
    push_write_stall_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A destination that takes no bytes for this long is torn down and retried "
        "(lastError 'write stalled').",
    )

    # SRT ingest
    srt_host: str = Field(default="0.0.0.0", description="Address the SRT (UDP) listener binds.")
    srt_port: int = Field(
        default=8890,
        ge=0,
        le=65535,
        description="UDP port of the SRT listener (publish with streamid=publish:KEY).",
    )
    srt_latency_ms: int = Field(
        default=120,
        ge=20,
        le=4000,
        description="SRT receive latency (TSBPD) offered to publishers; the larger of this and "
        "the publisher's wins. Raise it for bonded/IRL links (up to 4000 ms).",
    )

    # HLS
    hls_segment_seconds: float = Field(default=2.0, gt=0, le=10)
    hls_dir: Path | None = Field(
        default=None, description="HLS segment directory (default: data_dir/hls); emptied on start."
    )
    hls_live_segments: int = Field(
        default=6, ge=3, description="Segments kept in the playlist when dvrWindowSeconds is 0."
    )
    hls_memory_segments: int = Field(
        default=4, ge=0, description="Newest segments also kept in memory (served without disk)."
    )
    # The DVR limit: the longest dvrWindowSeconds a self-hosted destination may ask for, and the
    # window of one that names none (the seed's maxWindowSeconds). One setting read by the
    # destination validation, the HLS packager and the public status.
    hls_dvr_max_seconds: int = Field(
        default=3600,
        ge=0,
        description="Longest (and default) DVR window of a self-hosted destination.",
    )
    hls_viewer_requests_per_minute: int = Field(
        default=60,
        ge=1,
        description="Testing mode: playlist requests per minute shared by all viewers (segments "
        "fetched through a served playlist do not count).",
    )
    hls_min_free_disk_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Below this much free disk, the oldest DVR segments are dropped first.",
    )
    bandwidth_flush_seconds: float = Field(
        default=5.0, gt=0, le=5.0, description="How often served bytes are persisted."
    )

    # Webhooks
    webhooks_allow_http: bool = Field(
        default=False, description="Accept http:// webhook URLs (development only)."
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Allow webhook targets on loopback, private, link-local or metadata addresses.",
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_age_seconds: float = Field(
        default=86400.0, gt=0, description="Retry window after the event; then failed."
    )
    webhook_retry_base_seconds: float = Field(default=2.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_response_cap_bytes: int = Field(default=4096, ge=0)
    webhook_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often an API node's dispatcher looks for the rows media nodes queued "
        "(a single-process server is woken by every enqueue).",
    )
    webhook_concurrency: int = Field(default=32, ge=1, description="Parallel sends per node.")

    # Low-latency HLS (self-hosted destinations with lowLatency, production mode)
    hls_part_target_seconds: float = Field(
        default=0.5,
        ge=0.1,
        le=2.0,
        description="Part target of low-latency HLS: each part is at most this long, and players "
        "hold back three parts from the live edge.",
    )

    # Playback in testing mode, and push failure reports
    hls_testing_segment_seconds: float = Field(
        default=4.0,
        gt=0,
        le=10,
        description="Target segment duration of testing-mode destinations: players reload the "
        "playlist about once per segment, so 4 s keeps two viewers well inside the shared "
        "playlist budget (hls_viewer_requests_per_minute).",
    )
    hls_segment_token_seconds: int = Field(
        default=300,
        ge=30,
        le=86400,
        description="How long the signed token in a served playlist's segment URIs stays valid "
        "(segments fetched with it are not counted against the testing-mode budget).",
    )
    push_fail_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A push that has not gone live after this long of attempts sends "
        "destination.failed (once per destination and session); it keeps retrying.",
    )

    # Lightning top-ups over Nostr Wallet Connect (NIP-47)
    operator_nwc_uri: SecretStr | None = Field(
        default=None,
        description="The operator's receiving wallet (nostr+walletconnect://...; needs "
        "make_invoice and lookup_invoice). Unset: the Lightning endpoints answer 503.",
    )
    nwc_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long a wallet request waits for its response."
    )
    lightning_invoice_expiry_seconds: int = Field(
        default=900, ge=1, description="Expiry of the top-up invoices the operator's wallet makes."
    )
    lightning_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often unsettled top-ups and tips are looked up (while there are any).",
    )
    lightning_late_payment_seconds: int = Field(
        default=86400,
        ge=0,
        description="How long after its expiry an invoice is still looked up (a late payment "
        "is credited anyway).",
    )
    lightning_max_topup_sats: int = Field(
        default=10_000_000, ge=1, description="Largest top-up one request may ask for."
    )

    # Cloud archive (S3-compatible storage); a cloud-archive destination's config may override
    # the target and credentials per destination.
    s3_endpoint_url: str = Field(
        default="", description="S3 endpoint URL, e.g. http://127.0.0.1:9000 (empty: AWS)."
    )
    s3_region: str = Field(default="us-east-1", description="S3 region (signing).")
    s3_bucket: str = Field(default="", description="Bucket recordings are uploaded to.")
    s3_access_key_id: str = Field(default="", description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key (never logged or returned)."
    )
    s3_prefix: str = Field(default="", description="Key prefix of uploaded recordings.")
    archive_dir: Path | None = Field(
        default=None, description="Where recordings are written (default: data_dir/archives)."
    )
    archive_part_size_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=5 * 1024 * 1024 * 1024,
        description="Multipart upload part size: a part is uploaded as soon as the recording "
        "has grown by this much (S3's minimum is 5 MiB).",
    )
    archive_fragment_seconds: float = Field(
        default=2.0,
        gt=0,
        le=10,
        description="Fragment length of recordings (cut at the next keyframe): a crash loses "
        "at most the fragment being written.",
    )
    archive_upload_retry_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a failing upload is retried with backoff before the archive is "
        "failed (then POST /api/archives/recover retries it).",
    )
    archive_retry_min_seconds: float = Field(
        default=1.0, gt=0, description="First backoff of a failing upload."
    )
    archive_retry_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest backoff of a failing upload."
    )
    archive_url_expiry_seconds: int = Field(
        default=7 * 86400,
        ge=60,
        le=7 * 86400,
        description="Lifetime of the presigned GET URL in recording.ready and GET /api/archives.",
    )
    archive_keep_local: bool = Field(
        default=False, description="Keep the local copy of a recording after it is uploaded."
    )
    archive_failed_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="Local copies of failed uploads are deleted after this long (then they "
        "can no longer be recovered).",
    )
    archive_recovery_fee_sats: int = Field(
        default=0, ge=0, description="Fee of POST /api/archives/recover, posted to the ledger."
    )
    archive_poll_seconds: float = Field(
        default=1.0, gt=0, le=10, description="How often recordings are checked for new parts."
    )
    archive_upload_concurrency: int = Field(
        default=4, ge=1, description="Uploads (S3 calls) running at once on this node."
    )

    # Processing elements (V1.md: htmloverlay)
    overlays_allow_private: bool = Field(
        default=False,
        description="Let htmloverlay pages load from loopback, private, link-local or reserved "
        "addresses (checked when the page is opened; local development only, as for webhooks).",
    )

    # v1 dialect: configurations run as instances (V1.md)
    instance_slots: int = Field(
        default=40,
        ge=0,
        description="Instances this node runs at once; more wait QUEUED, first in first out. "
        "40 passthrough instances with 3 destinations each use about a quarter of the one core "
        "an event loop can use (bench/instances.py), leaving room for 6-destination outputs.",
    )
    max_instances_per_account: int = Field(
        default=10, ge=0, description="Running plus queued instances one account may have."
    )
    instance_sats_per_hour: int = Field(
        default=400,
        ge=0,
        description="Price of a RUNNING instance, billed per second (published by "
        "GET /api/public/config as pricing.INSTANCE_SATS_PER_HOUR).",
    )
    instance_billing_seconds: float = Field(
        default=15.0,
        gt=0,
        le=60.0,
        description="How often running instances are charged (never more than a minute in "
        "arrears); a stop settles to the second.",
    )
    instance_idle_stop_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A running instance with no live input and outputs OFFLINE this long "
        "stops (stopReason idle).",
    )
    instance_no_input_stop_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A running instance with outputs LIVE and nothing feeding them this long "
        "stops (stopReason no_input).",
    )
    files_quota_bytes: int = Field(
        default=1_000_000_000,
        ge=0,
        description="Uploaded files (POST /api/v1/files) one account may store, in bytes.",
    )
    file_probe_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long probing one uploaded file may take."
    )

    # Lightning tips (straight to the streamer's own wallet)
    tips_per_minute: int = Field(
        default=10,
        ge=1,
        description="Tip invoices one viewer address may ask for in a minute (then 429).",
    )

    # Scale-out (issue 17): roles, the node registry and the control bus
    role: Literal["all", "api", "media"] = Field(
        default="all",
        description="What this process runs: all (one process), api (HTTP API, dashboard, "
        "webhook dispatch, lost-node sweep) or media (ingest, outputs, HLS, instances, meter).",
    )
    redis_url: str = Field(
        default="",
        description="Redis URL (redis://host:6379/0) of the control bus; required by api and "
        "media roles.",
    )
    bus_prefix: str = Field(
        default="simulcast",
        description="Prefix of every Redis key and channel this fleet uses (one per fleet).",
    )
    node_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="A media node that has not heartbeaten for this long is declared lost.",
    )
    advertised_rtmp_url: str = Field(
        default="",
        description="RTMP base URL publishers reach this media node at (default: from "
        "rtmp_host/rtmp_port).",
    )
    advertised_hls_url: str = Field(
        default="",
        description="HTTP base URL viewers reach this media node's HLS at (default: base_url).",
    )
    bus_command_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long an API node waits for the owning media node to answer a command.",
    )

    # Scale-out faults (issue 17): what shared state does while Redis is unreachable
    rate_limit_on_redis_down: Literal["open", "closed"] = Field(
        default="open",
        description="While the rate limits' Redis (rate_limit_storage_uri) is unreachable: "
        "open allows requests (limits unenforced, a warning logged), closed refuses them with "
        "429 and Retry-After.",
    )

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment == "production" and not self.public_url:
            raise ValueError("SIMULCAST_PUBLIC_URL is required in production")
        return self

    def multi_node_problem(self) -> str | None:
        """Why this multi-node role cannot start (one line), or ``None`` when it can."""
        if self.role == "all":
            return None
        missing = []
        if not self.effective_database_url.startswith("postgresql"):
            missing.append("SIMULCAST_DATABASE_URL (a postgresql:// URL)")
        if not self.redis_url:
            missing.append("SIMULCAST_REDIS_URL (redis://...)")
        if not missing:
            return None
        return f"--role {self.role} (multi-node) requires " + " and ".join(missing)

    @cached_property
    def effective_database_url(self) -> str:
        """The async SQLAlchemy URL actually used."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'simulcast.db').resolve()}"
        if url.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + url.split("://", 1)[1]
        if url.startswith("sqlite://") and "+aiosqlite" not in url:
            return url.replace("sqlite://", "sqlite+aiosqlite://", 1)
        return url

    @property
    def hls_path(self) -> Path:
        """Where HLS segments are written (``hls_dir``, else ``data_dir/hls``)."""
        return self.hls_dir or self.data_dir / "hls"

    @property
    def archive_path(self) -> Path:
        """Where recordings are written (``archive_dir``, else ``data_dir/archives``)."""
        return self.archive_dir or self.data_dir / "archives"

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite database."""
        return self.effective_database_url.startswith("sqlite")

    def base_url(self) -> str:
        """The public base URL without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"
