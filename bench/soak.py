"""Soak: mutated RTMP publish sessions against a running server; memory and log afterwards.

Every session is the captured ffmpeg publish (``tests/codecs/data/rtmp_ffmpeg_publish.bin``)
with a few random mutations (bit flips, truncation, inserted or deleted bytes); a share of them
carries a real stream key (the capture re-chunked with it), so mutations also reach the parser
after authorization. Each session connects, sends, reads the answers until the server closes or
``--session-seconds`` pass, and leaves. Reported: sessions per outcome, server RSS before and
after (once every connection is gone), and the number of distinct log lines (addresses and
numbers normalized), with any traceback.

    python -m bench.soak [--sessions 100000] [--concurrency 64] [--valid-share 0.1] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from simulcast.codecs import amf0
from simulcast.codecs.rtmp import handshake
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import ChunkDecoder, encode_message
from tests.support import ServerProcess, make_server

CAPTURE = Path(__file__).parent.parent / "tests" / "codecs" / "data" / "rtmp_ffmpeg_publish.bin"
CAPTURED_KEY = "key?token=abc"
_HANDSHAKE = 1 + 2 * handshake.PACKET_SIZE
_NORMALIZE = (
    (re.compile(r"^\S+ \S+ "), ""),  # timestamp
    (re.compile(r"\[?[0-9a-f.:]+\]?:\d+"), "ADDR"),  # peer address and port
    (re.compile(r"0x[0-9a-fA-F]+|\\x[0-9a-fA-F]{2}"), "#"),  # bytes quoted from the input
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'...'"),  # names quoted from the input
    (re.compile(r"\b[A-Z2-9]{10}\b"), "SESSION"),  # session ids
    (re.compile(r"\d+"), "#"),
)


def with_key(capture: bytes, key: str) -> bytes:
    """The captured session re-chunked with ``key`` as its stream name."""
    decoder = ChunkDecoder()
    decoder.feed(capture[_HANDSHAKE:])
    old, new = amf0.encode(CAPTURED_KEY), amf0.encode(key)
    out, chunk_size = [capture[:_HANDSHAKE]], 128
    while (m := decoder.next_message()) is not None:
        payload = m.payload.replace(old, new) if m.type_id == msg.COMMAND_AMF0 else m.payload
        out.append(encode_message(m.csid, m.type_id, m.msid, m.timestamp, payload, chunk_size))
        if m.type_id == msg.SET_CHUNK_SIZE:
            chunk_size = msg.parse_u32(payload)
    return b"".join(out)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1-5 random flips, truncations, insertions or deletions."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        if not out:
            break
        pos = rng.randrange(len(out))
        kind = rng.choice(("flip", "flip", "insert", "delete", "truncate"))
        if kind == "flip":
            out[pos] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif kind == "delete":
            del out[pos : pos + rng.randint(1, 8)]
        else:
            del out[pos:]
    return bytes(out)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def distinct_log_lines(log: str) -> Counter[str]:
    """Log lines with timestamps, addresses and numbers normalized, counted."""
    lines: Counter[str] = Counter()
    for line in log.splitlines():
        for pattern, replacement in _NORMALIZE:
            line = pattern.sub(replacement, line)
        lines[line] += 1
    return lines


@dataclass
class SoakResult:
    """What a soak measured."""

    sessions: int
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    rss_before: int = 0
    rss_after: int = 0
    log_lines: Counter[str] = field(default_factory=Counter)

    @property
    def tracebacks(self) -> int:
        """Log lines that start a traceback."""
        return sum(n for line, n in self.log_lines.items() if line.startswith("Traceback"))

    def summary(self) -> dict[str, Any]:
        """The figures, JSON-ready."""
        return {
            "sessions": self.sessions,
            "seconds": round(self.seconds, 1),
            "sessions_per_second": round(self.sessions / max(self.seconds, 1e-9), 1),
            "outcomes": dict(self.outcomes),
            "rss_before_mb": round(self.rss_before / 1e6, 1),
            "rss_after_mb": round(self.rss_after / 1e6, 1),
            "distinct_log_lines": len(self.log_lines),
            "tracebacks": self.tracebacks,
        }


async def _session(port: int, data: bytes, seconds: float) -> str:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "connect_failed"
    outcome = "timeout"
    try:
        writer.write(data)
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
            outcome = "closed_by_server"
    except TimeoutError:
        pass
    except OSError:
        outcome = "reset_by_server"
    finally:
        writer.transport.abort()
    return outcome


async def soak(
    server: ServerProcess,
    *,
    stream_key: str | None,
    sessions: int,
    concurrency: int,
    valid_share: float,
    session_seconds: float,
    seed: int,
) -> SoakResult:
    """Run ``sessions`` mutated sessions (``concurrency`` at a time) against ``server``."""
    assert server.proc is not None
    capture = CAPTURE.read_bytes()
    valid = with_key(capture, stream_key) if stream_key else capture
    rng = random.Random(seed)
    result = SoakResult(sessions, 0.0)
    result.rss_before = rss_bytes(server.proc.pid)
    queue: asyncio.Queue[bytes] = asyncio.Queue(concurrency * 2)

    async def worker() -> None:
        while (data := await queue.get()) != b"":
            result.outcomes[await _session(server.rtmp_port, data, session_seconds)] += 1

    started = time.monotonic()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for _ in range(sessions):
        base = valid if rng.random() < valid_share else capture
        await queue.put(mutate(base, rng))
    for _ in workers:
        await queue.put(b"")
    await asyncio.gather(*workers)
    result.seconds = time.monotonic() - started
    # Let the server finish ending sessions before measuring what it kept.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for _ in range(100):
            if (await client.get("/healthz")).status_code == 200:
                break
    await asyncio.sleep(3)
    result.rss_after = rss_bytes(server.proc.pid)
    result.log_lines = distinct_log_lines(server.log())
    return result


def start_server(data_dir: Path) -> tuple[ServerProcess, str]:
    """A server that lets one address open many connections, and a stream key on it."""
    server = make_server(
        data_dir,
        rtmp_max_connections_per_address="10000",
        rtmp_handshake_timeout="3",
        log_level="INFO",
    )
    server.start()
    sk = server.create_account(sats=1_000_000)
    created = httpx.post(
        server.base_url + "/api/streams", json={"label": "soak"}, headers={"X-API-Key": sk}
    )
    created.raise_for_status()
    return server, str(created.json()["streamKey"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--valid-share", type=float, default=0.1)
    parser.add_argument("--session-seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, key = start_server(Path(tmp))
        try:
            result = asyncio.run(
                soak(
                    server,
                    stream_key=key,
                    sessions=args.sessions,
                    concurrency=args.concurrency,
                    valid_share=args.valid_share,
                    session_seconds=args.session_seconds,
                    seed=args.seed,
                )
            )
        finally:
            server.stop()
        print(json.dumps(result.summary(), indent=2))
        print("distinct log lines (most frequent first):")
        for line, count in result.log_lines.most_common():
            print(f"{count:8d}  {line[:160]}")


if __name__ == "__main__":
    main()
