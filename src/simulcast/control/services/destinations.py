"""Destination rules: URL validation, platform names, masking, and the output each one becomes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from simulcast.engine import OutputSpec

DESTINATION_TYPES = ("rtmp", "twitch", "self-hosted", "cloud-archive")
TWITCH_INGEST = "rtmp://live.twitch.tv/app/"
HLS_MODES = ("testing", "production")

# Ordered: Kick ingests through Amazon IVS's global-contribute hosts, Twitch through its own
# contribute hosts under the same domain, so the longer suffix must match first.
_PLATFORM_HOSTS = (
    ("kick.com", "Kick"),
    ("global-contribute.live-video.net", "Kick"),
    ("twitch.tv", "Twitch"),
    ("contribute.live-video.net", "Twitch"),
    ("youtube.com", "YouTube"),
    ("facebook.com", "Facebook"),
)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
ARCHIVE_FIELDS = ("bucket", "prefix", "endpointUrl", "accessKeyId")
"""A cloud-archive destination's S3 settings shown to its owner (the secret never is)."""
SEALED_SECRET = "secretAccessKeySealed"

Sealer = Callable[[str], str]
"""Seals a secret for storage (``SecretBox.seal``)."""


class DestinationError(ValueError):
    """A destination body is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def platform_for(dest_type: str, url: str) -> str:
    """The platform name shown in responses and history, derived from the URL host."""
    if dest_type == "self-hosted":
        return "Self-Hosted"
    if dest_type == "cloud-archive":
        return "Cloud Archive"
    host = (urlsplit(url).hostname or "").lower()
    for suffix, name in _PLATFORM_HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return "Custom"


def _validate_rtmp_url(url: str, field: str) -> str:
    if len(url) > 2048:
        raise DestinationError(field, "URL is too long (max 2048 characters)")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DestinationError(field, f"Invalid URL: {exc}") from None
    if parts.scheme.lower() not in ("rtmp", "rtmps"):
        raise DestinationError(field, "URL must start with rtmp:// or rtmps://")
    if not parts.hostname:
        raise DestinationError(field, "URL must include a host")
    if port == 0:
        raise DestinationError(field, "URL port must be between 1 and 65535")
    if not parts.path.strip("/"):
        raise DestinationError(field, "URL must include an application path and stream key")
    return url.strip()


def _join_key(url: str, key: str) -> str:
    return url.rstrip("/") + "/" + key.lstrip("/") if key else url


def _archive_config(
    config: dict[str, Any], previous: dict[str, Any], seal: Sealer | None
) -> dict[str, Any]:
    """Validate a cloud-archive config over ``previous``; the secret is stored sealed only."""
    stored = {k: v for k, v in previous.items() if k in (*ARCHIVE_FIELDS, SEALED_SECRET)}
    for name in (*ARCHIVE_FIELDS, "secretAccessKey"):
        value = config.get(name)
        if value is not None and not isinstance(value, str):
            raise DestinationError(f"config.{name}", f"config.{name} must be a string")
    bucket = config.get("bucket")
    if bucket is not None:
        if bucket and not _BUCKET.match(bucket):
            raise DestinationError("config.bucket", "config.bucket is not a valid bucket name")
        stored["bucket"] = bucket
    prefix = config.get("prefix")
    if prefix is not None:
        if len(prefix) > 512 or prefix.startswith("/"):
            raise DestinationError(
                "config.prefix", "config.prefix must not start with / (max 512 characters)"
            )
        stored["prefix"] = prefix
    endpoint = config.get("endpointUrl")
    if endpoint is not None:
        try:
            parts = urlsplit(endpoint)
            parts.port  # noqa: B018 -- raises for a port out of range
        except ValueError:
            message = "config.endpointUrl is not a URL"
            raise DestinationError("config.endpointUrl", message) from None
        if endpoint and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise DestinationError(
                "config.endpointUrl", "config.endpointUrl must be an http(s) URL"
            )
        stored["endpointUrl"] = endpoint
    key_id = config.get("accessKeyId")
    if key_id is not None:
        stored["accessKeyId"] = key_id
    secret = config.get("secretAccessKey")
    if secret:
        if seal is None:
            raise DestinationError("config.secretAccessKey", "secrets cannot be stored here")
        stored[SEALED_SECRET] = seal(secret)
    if stored.get("accessKeyId") and not stored.get(SEALED_SECRET):
        raise DestinationError(
            "config.secretAccessKey", "config.secretAccessKey is required with accessKeyId"
        )
    return {k: v for k, v in stored.items() if v != ""}


def normalize(
    dest_type: str,
    config: dict[str, Any],
    *,
    previous: dict[str, Any] | None = None,
    seal: Sealer | None = None,
    dvr_max_seconds: int | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Validate a destination body: ``(url, platform, stored_config)``.

    ``rtmp`` needs an rtmp(s) URL with a host (an optional ``key`` is appended as the last path
    segment, the way OBS's server + stream key fields combine); ``twitch`` takes a URL or a bare
    stream key; ``self-hosted`` takes ``mode``, ``dvrWindowSeconds`` and ``lowLatency`` (default
    true; LL-HLS is served in production mode); ``cloud-archive`` takes no
    URL, and optionally its own ``bucket``, ``prefix``, ``endpointUrl``, ``accessKeyId`` and
    ``secretAccessKey`` (sealed with ``seal``; ``previous`` is the config being changed).
    """
    if dest_type not in DESTINATION_TYPES:
        raise DestinationError(
            "type",
            f"Unknown destination type '{dest_type}'; use one of {', '.join(DESTINATION_TYPES)}",
        )
    url = config.get("url")
    key = config.get("key")
    for name, value in (("url", url), ("key", key)):
        if value is not None and not isinstance(value, str):
            raise DestinationError(f"config.{name}", f"config.{name} must be a string")
    stored: dict[str, Any] = {}
    if dest_type == "rtmp":
        if not url:
            raise DestinationError("config.url", "config.url is required for rtmp destinations")
        full = _validate_rtmp_url(_join_key(url, key or ""), "config.url")
        return full, platform_for(dest_type, full), stored
    if dest_type == "twitch":
        if url:
            full = _validate_rtmp_url(_join_key(url, key or ""), "config.url")
        elif key:
            if "/" in key or len(key) > 512 or not key.strip():
                raise DestinationError("config.key", "config.key must be a bare Twitch stream key")
            full = TWITCH_INGEST + key.strip()
        else:
            raise DestinationError(
                "config.key", "config.key (or config.url) is required for twitch"
            )
        return full, "Twitch", stored
    if dest_type == "self-hosted":
        mode = config.get("mode", "testing")
        if mode not in HLS_MODES:
            raise DestinationError("config.mode", "config.mode must be 'testing' or 'production'")
        assert dvr_max_seconds is not None, "a self-hosted body is checked against the DVR limit"
        window = config.get("dvrWindowSeconds", dvr_max_seconds)
        if not isinstance(window, int) or isinstance(window, bool):
            raise DestinationError("config.dvrWindowSeconds", "must be an integer")
        if not 0 <= window <= dvr_max_seconds:
            raise DestinationError(
                "config.dvrWindowSeconds", f"must be between 0 and {dvr_max_seconds}"
            )
        low_latency = config.get("lowLatency", True)
        if not isinstance(low_latency, bool):
            raise DestinationError("config.lowLatency", "config.lowLatency must be a boolean")
        stored = {"mode": mode, "dvrWindowSeconds": window, "lowLatency": low_latency}
        return "", "Self-Hosted", stored
    return "", "Cloud Archive", _archive_config(config, previous or {}, seal)


def mask_url(url: str) -> str:
    """Hide everything past the app path: ``rtmp://live.twitch.tv/app/****``."""
    if not url:
        return url
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    app = "/".join(segments[:-1]) if len(segments) > 1 else (segments[0] if segments else "")
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}/{app}/****" if app else f"{parts.scheme}://{netloc}/****"


def output_spec(
    destination_id: int, dest_type: str, url: str, config: dict[str, Any]
) -> OutputSpec | None:
    """The media-plane output a destination becomes (``None`` if it has none yet)."""
    if dest_type in ("rtmp", "twitch"):
        return OutputSpec(destination_id=destination_id, kind="rtmp", url=url)
    if dest_type == "self-hosted":
        return OutputSpec(destination_id=destination_id, kind="hls", options=dict(config))
    return OutputSpec(destination_id=destination_id, kind="archive", options=dict(config))
