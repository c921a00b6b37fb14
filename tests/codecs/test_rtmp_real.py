"""The codec against real peers: ffmpeg publishing to us, us pushing to ffmpeg and nginx-rtmp.

The asyncio shells here are test scaffolding (the real ingest/push live elsewhere); they show how
thin an adapter over the sans-I/O connections is.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp.connection import ClientConnection, ServerConnection
from tests.support import ffmpeg_exe, free_port
from tests.support.media import recorded
from tests.support.rtmp_peer import serve

pytestmark = pytest.mark.media

DATA = Path(__file__).parent / "data"
CAPTURE = DATA / "rtmp_ffmpeg_publish.bin"
NGINX = Path("/usr/sbin/nginx")
NGINX_RTMP = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
HAVE_NGINX_RTMP = NGINX.exists() and NGINX_RTMP.exists()


class Ingest:
    """A minimal ingest shell: accepts every publish and records events and raw bytes."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.raw = bytearray()
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection(chunk_size=4096)
        try:
            while data := await reader.read(65536):
                self.raw += data
                self.events.extend(serve(conn, data))
                writer.write(conn.data_to_send())
                await writer.drain()
        finally:
            writer.close()
            self.done.set()


async def publish_with_ffmpeg(seconds: float = 1.0) -> Ingest:
    """Run ffmpeg publishing a short test pattern to an in-test ingest shell."""
    ingest = Ingest()
    server = await asyncio.start_server(ingest.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # fmt: off
    args = [
        "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", "15", "-c:a", "aac", "-b:a", "32k", "-f", "flv",
        f"rtmp://127.0.0.1:{port}/live/key?token=abc",
    ]
    # fmt: on
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_exe(), *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 9)
        await asyncio.wait_for(ingest.done.wait(), 2)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()
        await server.wait_closed()
    assert proc.returncode == 0, err.decode(errors="replace")
    return ingest


def media_of(events: list[ev.Event]) -> list[ev.MediaMessage]:
    return [e for e in events if isinstance(e, ev.MediaMessage)]


async def test_ffmpeg_publishes_to_server_connection() -> None:
    ingest = await publish_with_ffmpeg()
    kinds = [type(e) for e in ingest.events]
    for expected in (ev.HandshakeDone, ev.ConnectRequest, ev.CreateStream, ev.PublishCommand):
        assert expected in kinds
    assert kinds.index(ev.ConnectRequest) < kinds.index(ev.PublishCommand)
    handshake = next(e for e in ingest.events if isinstance(e, ev.HandshakeDone))
    assert handshake.peer_digest  # ffmpeg uses the FP9 digest handshake
    connect = next(e for e in ingest.events if isinstance(e, ev.ConnectRequest))
    assert connect.app == "live"
    assert connect.tc_url.endswith("/live")
    publish = next(e for e in ingest.events if isinstance(e, ev.PublishCommand))
    assert publish.stream_name == "key?token=abc"
    media = media_of(ingest.events)
    video = [m for m in media if m.type_id == 9]
    audio = [m for m in media if m.type_id == 8]
    data = [m for m in media if m.type_id == 18]
    assert len(video) >= 10 and len(audio) >= 10
    assert data and b"onMetaData" in data[0].payload
    assert video[0].payload[0] == 0x17 and video[0].payload[1] == 0  # AVC sequence header
    assert audio[0].payload[0] >> 4 == 10 and audio[0].payload[1] == 0  # AAC sequence header
    for track in (video, audio):
        stamps = [m.timestamp for m in track]
        assert stamps == sorted(stamps)
        assert 500 <= stamps[-1] <= 1500


def regenerate_capture() -> None:
    """Record a fresh ffmpeg publish session (client -> server bytes) as the test fixture."""
    ingest = asyncio.run(publish_with_ffmpeg())
    CAPTURE.write_bytes(bytes(ingest.raw))


def captured_media() -> list[ev.MediaMessage]:
    """Media messages of the captured session, decoded by a ServerConnection."""
    return media_of(serve(ServerConnection(), CAPTURE.read_bytes()))


async def open_retrying(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a server that is still starting up (up to about 5 s)."""
    for _ in range(100):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
    return await asyncio.open_connection("127.0.0.1", port)


async def push(port: int, app: str, name: str, media: list[ev.MediaMessage]) -> ClientConnection:
    """Push ``media`` with a ClientConnection, as an output shell would; return the connection."""
    reader, writer = await open_retrying(port)
    conn = ClientConnection(app, f"rtmp://127.0.0.1:{port}/{app}", name, chunk_size=4096)
    conn.initiate()
    try:
        async with asyncio.timeout(8):
            writer.write(conn.data_to_send())
            while not conn.publishing:
                data = await reader.read(65536)
                assert data, "server closed before publish started"
                for event in conn.receive_data(data):
                    assert not isinstance(event, ev.ConnectFailed | ev.PublishFailed), event
                writer.write(conn.data_to_send())
            cache: dict[tuple[int, int | None, int], bytes] = {}
            for i, m in enumerate(media):
                key = (conn.chunk_size, conn.msid, i)
                wire = cache.setdefault(key, conn.media_bytes(m.type_id, m.timestamp, m.payload))
                writer.write(wire)
                await writer.drain()
            conn.unpublish()
            writer.write(conn.data_to_send())
            await writer.drain()
            # Keep serving the server (acks, pings) briefly so it flushes its side.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.3):
                    while data := await reader.read(65536):
                        for _ in conn.receive_data(data):
                            pass
                        writer.write(conn.data_to_send())
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return conn


def assert_flv_decodes(path: Path) -> None:
    with av.open(str(path)) as container:
        kinds = {s.type for s in container.streams}
        assert {"video", "audio"} <= kinds
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 10


async def test_client_connection_pushes_to_ffmpeg(tmp_path: Path) -> None:
    media = captured_media()
    port = free_port()
    out = tmp_path / "out.flv"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-listen", "1",
        "-i", f"rtmp://127.0.0.1:{port}/live/x", "-c", "copy", "-f", "flv", str(out),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await push(port, "live", "x", media)
        _, err = await asyncio.wait_for(proc.communicate(), 8)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert_flv_decodes(out)


@pytest.fixture
async def nginx_rtmp(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    if not HAVE_NGINX_RTMP:
        pytest.skip("nginx with the rtmp module is not installed")
    port = free_port()
    record = tmp_path / "record"
    (tmp_path / "logs").mkdir()
    record.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
load_module {NGINX_RTMP};
master_process off;
error_log {tmp_path}/logs/error.log info;
pid {tmp_path}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
            record all;
            record_path {record};
        }}
    }}
}}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        str(NGINX), "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield port, record
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_client_connection_pushes_to_nginx_rtmp(nginx_rtmp: tuple[int, Path]) -> None:
    port, record = nginx_rtmp
    conn = await push(port, "live", "x", captured_media())
    assert conn.handshake_verified  # nginx answers the digest handshake
    # nginx writes the tail of the recording as the publisher goes away.
    await recorded(record / "x.flv", lambda p: p.stat().st_size, lambda size: size > 0)
    assert_flv_decodes(record / "x.flv")


if __name__ == "__main__" and sys.argv[1:] == ["--regenerate"]:
    regenerate_capture()
