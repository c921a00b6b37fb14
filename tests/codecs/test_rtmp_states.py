"""The RTMP state tables (h11 style): every state is reachable, anything else is an error."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import pytest

from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError
from simulcast.codecs.rtmp.states import (
    CLIENT_TABLE,
    SERVER_TABLE,
    ClientInput,
    ClientState,
    ServerInput,
    ServerState,
    StateMachine,
)


def _reachable(table: Mapping[tuple[enum.Enum, enum.Enum], enum.Enum], start: enum.Enum) -> set:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for (source, _event), target in table.items():
            if source is state and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_is_reachable() -> None:
    assert _reachable(SERVER_TABLE, ServerState.HANDSHAKE) == set(ServerState)
    assert _reachable(CLIENT_TABLE, ClientState.IDLE) == set(ClientState)


def test_an_input_the_table_does_not_name_is_an_error_of_whoever_caused_it() -> None:
    server = StateMachine(SERVER_TABLE, ServerState.HANDSHAKE)
    with pytest.raises(RemoteProtocolError, match="connect in state handshake"):
        server.fire(ServerInput.CONNECT, remote=True)
    assert server.state is ServerState.HANDSHAKE  # an error moves nothing
    server.fire(ServerInput.HANDSHAKE_DONE, remote=True)
    with pytest.raises(LocalProtocolError, match="no connect"):
        server.fire(ServerInput.ACCEPT_CONNECT, remote=False, message="no connect")
    client = StateMachine(CLIENT_TABLE, ClientState.IDLE)
    assert not client.allows(ClientInput.UNPUBLISH)
    client.fire(ClientInput.INITIATE, remote=False)
    with pytest.raises(LocalProtocolError):
        client.fire(ClientInput.INITIATE, remote=False)


def test_a_started_publish_cannot_fail_by_a_late_error_answer() -> None:
    assert (ClientState.PUBLISHING, ClientInput.STREAM_FAILED) not in CLIENT_TABLE
    assert CLIENT_TABLE[(ClientState.PUBLISHING, ClientInput.CONNECT_FAILED)] is ClientState.FAILED
