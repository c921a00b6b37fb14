"""A real S3-compatible server (``moto_server``) on loopback, and helpers for archive tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import boto3
import pytest

from tests.support import free_port

MOTO = shutil.which("moto_server")


BUCKET = "recordings"


KEY_ID = "AKIDEXAMPLE"


SECRET = "moto-secret"


class Moto:
    """``moto_server`` on one loopback port; :meth:`stop` and :meth:`start` keep the port (a
    restarted moto starts empty, as a wiped S3 would)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOTO is not None
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(
                [MOTO, "-H", "127.0.0.1", "-p", str(self.port)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.client().list_buckets()
                break
            except Exception:
                time.sleep(0.2)
        else:
            raise RuntimeError("moto_server did not start")
        self.client().create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def settings(self) -> dict[str, str]:
        """The server settings that point recordings at this S3."""
        return {
            "s3_endpoint_url": self.url,
            "s3_bucket": BUCKET,
            "s3_access_key_id": KEY_ID,
            "s3_secret_access_key": SECRET,
            "s3_prefix": "rec/",
        }


def played(path: Path) -> tuple[float, int, int]:
    """``(seconds of video, video frames decoded, audio packets)`` of an MP4, with PyAV."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        first = last = None
        frames = audio = 0
        for packet in container.demux():
            if packet.dts is None or packet.size == 0:
                continue
            if packet.stream.type == "audio":
                audio += 1
                continue
            if packet.pts is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                last = packet.pts if last is None else max(last, packet.pts)
            frames += len(packet.decode())
        assert video.time_base is not None and first is not None and last is not None
        # The last frame shows for one frame period.
        seconds = float((last - first) * video.time_base) + 1 / 30
        return seconds, frames, audio


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    """A running moto_server with the bucket created."""
    if MOTO is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    server = Moto(tmp_path / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
