"""The RTMP connection state machines as tables, in the style of h11: each side has its states,
the inputs that move it (what the peer sent, or what the caller did), and a table mapping
``(state, input)`` to the next state. Anything the table does not name is an error: a
:class:`~simulcast.codecs.rtmp.errors.RemoteProtocolError` when the peer caused it, a
:class:`~simulcast.codecs.rtmp.errors.LocalProtocolError` when the caller did.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, Generic, TypeVar

from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError

S = TypeVar("S", bound=enum.Enum)
I = TypeVar("I", bound=enum.Enum)  # noqa: E741


class StateMachine(Generic[S, I]):
    """One side's current state and the table it moves by."""

    def __init__(self, table: Mapping[tuple[S, I], S], initial: S) -> None:
        self._table = table
        self.state = initial

    def allows(self, event: I) -> bool:
        """Whether ``event`` is expected in the current state."""
        return (self.state, event) in self._table

    def fire(self, event: I, *, remote: bool, message: str | None = None) -> S:
        """Move by ``event``; an input the table does not name raises (``message`` if given)."""
        new = self._table.get((self.state, event))
        if new is None:
            error = RemoteProtocolError if remote else LocalProtocolError
            raise error(message or f"{event.value} in state {self.state.value}")
        self.state = new
        return new


# -- the server (ingest) side ------------------------------------------------------------------


class ServerState(enum.Enum):
    """Where a publisher's connection stands (per-stream publishes are tracked apart)."""

    HANDSHAKE = "handshake"
    AWAIT_CONNECT = "awaiting connect"
    CONNECT_PENDING = "connect waiting for an answer"
    CONNECTED = "connected"
    REJECTED = "connect rejected"


class ServerInput(enum.Enum):
    """What moves the server side."""

    HANDSHAKE_DONE = "handshake done"
    CONNECT = "connect"  # the peer's
    COMMAND = "command"  # the peer's, any but connect
    ACCEPT_CONNECT = "accept connect"  # the caller's
    REJECT_CONNECT = "reject connect"  # the caller's
    ANSWER = "answer"  # the caller's, to any later command


SERVER_TABLE: Final[Mapping[tuple[ServerState, ServerInput], ServerState]] = {
    (ServerState.HANDSHAKE, ServerInput.HANDSHAKE_DONE): ServerState.AWAIT_CONNECT,
    (ServerState.AWAIT_CONNECT, ServerInput.CONNECT): ServerState.CONNECT_PENDING,
    (ServerState.CONNECT_PENDING, ServerInput.COMMAND): ServerState.CONNECT_PENDING,
    (ServerState.CONNECT_PENDING, ServerInput.ACCEPT_CONNECT): ServerState.CONNECTED,
    (ServerState.CONNECT_PENDING, ServerInput.REJECT_CONNECT): ServerState.REJECTED,
    (ServerState.CONNECTED, ServerInput.COMMAND): ServerState.CONNECTED,
    (ServerState.CONNECTED, ServerInput.ANSWER): ServerState.CONNECTED,
    # A rejected client is closed by the caller; until then its commands are still read.
    (ServerState.REJECTED, ServerInput.COMMAND): ServerState.REJECTED,
    (ServerState.REJECTED, ServerInput.ANSWER): ServerState.REJECTED,
}


# -- the client (push or play) side --------------------------------------------------------------


class ClientState(enum.Enum):
    """Where a push (or pull) stands."""

    IDLE = "idle"
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    CREATING = "creating"
    PUBLISHING_REQUESTED = "publish requested"
    PUBLISHING = "publishing"
    PLAY_REQUESTED = "play requested"
    PLAYING = "playing"
    FAILED = "failed"
    CLOSED = "closed"


class ClientInput(enum.Enum):
    """What moves the client side."""

    INITIATE = "initiate"  # the caller's
    HANDSHAKE_DONE = "handshake done"
    CONNECTED = "connect answered"
    CONNECT_FAILED = "connect refused"
    CREATED_TO_PUBLISH = "stream created (publish sent)"
    CREATED_TO_PLAY = "stream created (play sent)"
    PUBLISH_STARTED = "publish started"
    PLAY_STARTED = "play started"
    STREAM_FAILED = "stream refused"
    UNPUBLISH = "unpublish"  # the caller's


_C = ClientState
_CI = ClientInput
CLIENT_TABLE: Final[Mapping[tuple[ClientState, ClientInput], ClientState]] = {
    (_C.IDLE, _CI.INITIATE): _C.HANDSHAKE,
    (_C.HANDSHAKE, _CI.HANDSHAKE_DONE): _C.CONNECTING,
    (_C.CONNECTING, _CI.CONNECTED): _C.CREATING,
    (_C.CREATING, _CI.CREATED_TO_PUBLISH): _C.PUBLISHING_REQUESTED,
    (_C.CREATING, _CI.CREATED_TO_PLAY): _C.PLAY_REQUESTED,
    (_C.PUBLISHING_REQUESTED, _CI.PUBLISH_STARTED): _C.PUBLISHING,
    (_C.PLAY_REQUESTED, _CI.PLAY_STARTED): _C.PLAYING,
    (_C.PUBLISHING, _CI.UNPUBLISH): _C.CLOSED,
    # An ``_error`` answer to connect fails the connection whenever it comes; one to
    # createStream, publish or play fails it unless the publish had already started.
    **{(state, _CI.CONNECT_FAILED): _C.FAILED for state in _C},
    **{(state, _CI.STREAM_FAILED): _C.FAILED for state in _C if state is not _C.PUBLISHING},
}
