"""All configuration, in one class: env prefix ``SIMULCAST_``, optional ``simulcast.env`` file.

Nothing else in the project reads the environment; components receive a ``Settings`` instance.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
        "this much added latency (0: read as data arrives).",
    )
    slate_image: Path | None = Field(
        default=None,
        description="PNG shown while a protected stream waits for its publisher "
        "(default: a built-in 'Stream will resume shortly').",
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
    hls_viewer_requests_per_minute: int = Field(
        default=60, ge=1, description="Testing mode: requests per minute shared by all viewers."
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
        default=5.0, gt=0, description="How often the dispatcher looks for other nodes' rows."
    )
    webhook_concurrency: int = Field(default=32, ge=1, description="Parallel sends per node.")

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment == "production" and not self.public_url:
            raise ValueError("SIMULCAST_PUBLIC_URL is required in production")
        return self

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
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite database."""
        return self.effective_database_url.startswith("sqlite")

    def base_url(self) -> str:
        """The public base URL without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"
