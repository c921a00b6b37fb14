"""RTMP and RTMPS URLs: where a push (or a pull) connects, and the app and key it names."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


class InvalidRtmpUrl(ValueError):
    """The URL is not ``rtmp(s)://host[:port]/app/key``."""


@dataclass(frozen=True, slots=True)
class RtmpTarget:
    """Where an RTMP push goes, split the way OBS and ffmpeg present it to the server."""

    tls: bool
    host: str
    port: int
    app: str
    stream_key: str

    @property
    def tc_url(self) -> str:
        """The ``tcUrl`` of the ``connect`` command: scheme, host, port and app (no key)."""
        scheme = "rtmps" if self.tls else "rtmp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.app}"


def parse_rtmp_url(url: str) -> RtmpTarget:
    """Split an ``rtmp://`` or ``rtmps://`` URL into host, port, app and stream key.

    The app is every path segment before the last ``/`` and the stream key is the last segment
    with the query string kept on it (``rtmp://host/app/inst/key?x=1`` -> app ``app/inst``, key
    ``key?x=1``). That is OBS's split (its "Server" is the URL up to the app, the key is
    appended as the play path) and agrees with ffmpeg's heuristic for the one- and two-segment
    apps every platform uses; ffmpeg would put a fourth segment into the key instead, which no
    platform we know relies on. Default ports: 1935 for rtmp, 443 for rtmps. Raises
    :class:`InvalidRtmpUrl` for a URL that names no RTMP(S) app and key.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("rtmp", "rtmps"):
        raise InvalidRtmpUrl(f"unsupported URL scheme {parts.scheme!r} (want rtmp or rtmps)")
    try:
        port = parts.port
    except ValueError:
        raise InvalidRtmpUrl("invalid port in destination URL") from None
    if not parts.hostname:
        raise InvalidRtmpUrl("destination URL has no host")
    path = parts.path.strip("/")
    app, slash, key = path.rpartition("/")
    if not slash or not app or not key:
        raise InvalidRtmpUrl("destination URL needs an app and a stream key: rtmp://host/app/key")
    if parts.query:
        key = f"{key}?{parts.query}"
    tls = scheme == "rtmps"
    return RtmpTarget(tls, parts.hostname, port or (443 if tls else 1935), app, key)
