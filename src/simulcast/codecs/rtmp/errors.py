"""RTMP codec errors: the peer's fault and ours are different classes (as in h11)."""

from __future__ import annotations


class RtmpError(Exception):
    """Base class of every error the RTMP codec raises."""


class RemoteProtocolError(RtmpError):
    """The peer sent something invalid or over a limit; the connection cannot continue."""


class LocalProtocolError(RtmpError):
    """The caller used the connection wrongly (bad state, bad argument)."""
