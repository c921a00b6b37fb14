"""A real HTTP/1.1 webhook receiver on loopback, and the documented verification recipes.

The receiver verifies every signature with the Python code block of the README (loaded
from the file, so the documentation is what is tested); the Node.js block is run by ``node``.
Other webhook tests import :class:`Receiver` from here.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulcast.control.services.webhooks import sign

DOC = Path(__file__).resolve().parents[2] / "README.md"

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


# --- the recipes themselves ------------------------------------------------------------------

SECRET = "whsec_test_secret"
BODY = b'{"id":"dlv_1","event":"test.ping","createdAt":1,"data":{"x":"\xc3\xa9"}}'


def test_python_recipe_accepts_our_signature_and_rejects_tampering() -> None:
    verify = python_recipe()
    ts = str(int(time.time()))
    signature = sign(SECRET, int(ts), BODY)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, ts, signature, BODY)
    assert not verify("other", ts, signature, BODY)
    assert not verify(SECRET, ts, signature, BODY + b" ")
    assert not verify(SECRET, str(int(ts) + 1), signature, BODY)
    old = str(int(time.time()) - 3600)
    assert not verify(SECRET, old, sign(SECRET, int(old), BODY), BODY)
    assert not verify(SECRET, "", signature, BODY)


def test_signature_matches_api_md_definition() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, BODY) == f"sha256={expected}"


NODE_HARNESS = """
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const out = input.cases.map((c) =>
  verifySimulcastSignature(c.secret, c.timestamp, c.signature, Buffer.from(c.body, "base64")));
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_recipe_agrees(tmp_path: Path) -> None:
    import base64

    script = tmp_path / "verify.js"
    script.write_text(doc_block("javascript", "function verifySimulcastSignature") + NODE_HARNESS)
    ts = str(int(time.time()))
    good = sign(SECRET, int(ts), BODY)
    b64 = base64.b64encode(BODY).decode()
    cases = [
        {"secret": SECRET, "timestamp": ts, "signature": good, "body": b64},
        {"secret": "other", "timestamp": ts, "signature": good, "body": b64},
        {"secret": SECRET, "timestamp": ts, "signature": good[:-1], "body": b64},
        {"secret": SECRET, "timestamp": "1", "signature": sign(SECRET, 1, BODY), "body": b64},
    ]
    out = subprocess.run(
        ["node", str(script)],
        input=json.dumps({"cases": cases}).encode(),
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert json.loads(out.stdout) == [True, False, False, False]


async def test_receiver_checks_signatures_with_the_recipe() -> None:
    import httpx

    async with Receiver(secret=SECRET, statuses=[500, 200]) as receiver:
        ts = int(time.time())
        headers = {
            "X-Simulcast-Timestamp": str(ts),
            "X-Simulcast-Signature": sign(SECRET, ts, BODY),
        }
        async with httpx.AsyncClient() as client:
            first = await client.post(receiver.url, content=BODY, headers=headers)
            second = await client.post(receiver.url, content=BODY + b"x", headers=headers)
        assert (first.status_code, second.status_code) == (500, 200)
        assert [r.signature_ok for r in receiver.requests] == [True, False]
