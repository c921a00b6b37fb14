"""A real HTTP/1.1 webhook receiver on loopback that verifies every signature with the README's
Python recipe (loaded from the file, so the documentation is what is tested)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support import REPO

DOC = REPO / "README.md"


Verify = Callable[[str, str, str, bytes], bool]


def doc_block(language: str, marker: str) -> str:
    """The fenced ``language`` code block of the README that contains ``marker``."""
    for block in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S):
        if marker in block:
            return str(block)
    raise AssertionError(f"no {language} block with {marker!r} in {DOC}")


def python_recipe() -> Verify:
    """``verify_simulcast_signature`` exactly as documented."""
    namespace: dict[str, Any] = {}
    exec(doc_block("python", "def verify_simulcast_signature"), namespace)
    verify: Verify = namespace["verify_simulcast_signature"]
    return verify


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    signature_ok: bool | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next of ``statuses`` (the last repeats); ``hang`` never
    answers; ``stall_body`` sends the head and part of the body, then stalls. Records what
    arrives and checks the signature when ``secret`` is set."""

    statuses: list[int] = field(default_factory=lambda: [200])
    secret: str | None = None
    hang: bool = False
    stall_body: bool = False
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _verify: Verify = field(default_factory=python_recipe)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until ``count`` requests arrived (at most ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                ok = None
                if self.secret is not None:
                    ok = self._verify(
                        self.secret,
                        headers.get("x-simulcast-timestamp", ""),
                        headers.get("x-simulcast-signature", ""),
                        body,
                    )
                self.requests.append(Received(method, path, headers, body, time.monotonic(), ok))
                self.arrived.set()
                if self.hang:
                    await asyncio.sleep(3600)
                index = min(len(self.requests), len(self.statuses)) - 1
                status = self.statuses[index]
                answer = json.dumps({"seen": len(self.requests)}).encode()
                length = len(answer) + (1000 if self.stall_body else 0)
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {length}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
                if self.stall_body:
                    await asyncio.sleep(3600)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over (3.11 logs a cancelled handler)
        finally:
            self._tasks.discard(task)
            writer.close()
