"""NetConnection / NetStream status codes and the info objects that carry them."""

from __future__ import annotations

from typing import Any, Final

LEVEL_STATUS: Final = "status"
LEVEL_ERROR: Final = "error"
LEVEL_WARNING: Final = "warning"

CONNECT_SUCCESS: Final = "NetConnection.Connect.Success"
CONNECT_REJECTED: Final = "NetConnection.Connect.Rejected"
CONNECT_FAILED: Final = "NetConnection.Connect.Failed"
CONNECT_CLOSED: Final = "NetConnection.Connect.Closed"
CALL_FAILED: Final = "NetConnection.Call.Failed"

PUBLISH_START: Final = "NetStream.Publish.Start"
PUBLISH_BAD_NAME: Final = "NetStream.Publish.BadName"
PUBLISH_DENIED: Final = "NetStream.Publish.Denied"
PUBLISH_FAILED: Final = "NetStream.Publish.Failed"
UNPUBLISH_SUCCESS: Final = "NetStream.Unpublish.Success"
STREAM_FAILED: Final = "NetStream.Failed"
PLAY_START: Final = "NetStream.Play.Start"


def info(level: str, code: str, description: str, **extra: Any) -> dict[str, Any]:
    """An info object as sent in ``_result``/``_error``/``onStatus`` (key order as FMS sends)."""
    return {"level": level, "code": code, "description": description, **extra}
