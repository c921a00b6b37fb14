"""End to end over TLS: an RTMPS ingest, and an RTMPS push that verifies the certificate."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from simulcast.codecs.unit import Kind
from simulcast.engine import OutputSpec
from simulcast.outputs.rtmp_push import RtmpPush
from tests.support import eventually
from tests.support.media import Processes
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (it is its own CA)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_push_over_rtmps_to_an_rtmps_ingest(
    make_engine: Any, procs: Processes, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    relay, relay_control = await make_engine(rtmps_port=0, rtmps_cert_file=cert, rtmps_key_file=key)
    origin, control = await make_engine()
    sink = RtmpSink()
    await sink.start()
    relay_control.allow("relay", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{sink.port}/a/k")])
    url = f"rtmps://localhost:{relay.ingest.tls_port}/live/relay"
    control.allow("key", 1, [OutputSpec(1, "rtmp", url), OutputSpec(2, "rtmp", url + "x")])
    # Destination 1 trusts our test CA; destination 2 uses the system store and must refuse it.
    origin.output_factories["rtmp"] = lambda spec: RtmpPush(
        spec.url, ca_file=cert if spec.destination_id == 1 else None
    )
    publisher = await procs.publish(origin.ingest.port, "key", seconds=3)

    def state(destination_id: int) -> str | None:
        session = origin.session(1)
        return session.outputs[destination_id].state if session is not None else None

    await eventually(lambda: state(1) == "live", within=3)
    # Between its retries (1 s, then 1-2 s) the refused push is briefly "connecting" again.
    await eventually(lambda: state(2) == "retrying", within=3)
    session = origin.session(1)
    assert session is not None and session.outputs[1].state == "live"
    assert "certificate" in (session.outputs[2].last_error or "").lower()
    assert await asyncio.wait_for(publisher.wait(), 8) == 0
    async with asyncio.timeout(5):
        while relay.sessions():  # noqa: ASYNC110 -- the relay session ends with the push
            await asyncio.sleep(0.05)
    await sink.close()
    assert len([m for m in sink.messages if m[0] == Kind.VIDEO]) >= 85  # of 90
