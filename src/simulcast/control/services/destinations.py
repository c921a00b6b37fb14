"""Destination rules: URL validation, platform names, masking, and the output each one becomes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from simulcast.engine import OutputSpec

DESTINATION_TYPES = ("rtmp", "twitch", "self-hosted", "cloud-archive")
TWITCH_INGEST = "rtmp://live.twitch.tv/app/"
HLS_MODES = ("testing", "production")
DVR_DEFAULT_SECONDS = 1800
DVR_MAX_SECONDS = 3600

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


def normalize(dest_type: str, config: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Validate a destination body: ``(url, platform, stored_config)``.

    ``rtmp`` needs an rtmp(s) URL with a host (an optional ``key`` is appended as the last path
    segment, the way OBS's server + stream key fields combine); ``twitch`` takes a URL or a bare
    stream key; ``self-hosted`` takes ``mode`` and ``dvrWindowSeconds``; ``cloud-archive`` takes no
    URL.
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
        window = config.get("dvrWindowSeconds", DVR_DEFAULT_SECONDS)
        if not isinstance(window, int) or isinstance(window, bool):
            raise DestinationError("config.dvrWindowSeconds", "must be an integer")
        if not 0 <= window <= DVR_MAX_SECONDS:
            raise DestinationError(
                "config.dvrWindowSeconds", f"must be between 0 and {DVR_MAX_SECONDS}"
            )
        return "", "Self-Hosted", {"mode": mode, "dvrWindowSeconds": window}
    return "", "Cloud Archive", {}


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
