"""Benchmark the cloud-archive recorder: its CPU per stream beside the relay's, and its disk.

    python -m bench.archive [--seconds 20] [--warmup 3]

One run, same source and sink as ``bench.relay`` (720p30 H.264 ~4.3 Mb/s + AAC, published with
``-c copy`` from a pre-encoded file; nginx-rtmp sink; server pinned to CPU 0, everything else to
CPU 1), measures two fresh ``simulcast serve`` processes one after the other:

* ``relay``: one stream with one ``rtmp`` destination;
* ``relay+archive``: the same plus a ``cloud-archive`` destination uploading to a local
  ``moto_server`` (S3-compatible, pinned to CPU 1, unmeasured) in 8 MiB parts.

The recorder's cost is the difference (fMP4 muxing, file writes, multipart upload threads and
their MD5/HTTP work), in CPU ms per second of stream and % of one core. Disk: how fast the local
recording grows during the window against the source bitrate (the extra disk a live recording
holds: one copy, deleted once uploaded), and the parts uploaded while the stream was live.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from bench.relay import (
    OTHER_CPU,
    RELAY_CPU,
    RTMP_MODULE,
    SINK_CONF,
    Bench,
    Result,
    Sink,
    encode_source,
    nginx,
    pinned,
    publisher,
    running,
    source_mbps,
    wait_port,
)
from tests.support import free_port, make_server

BUCKET = "bench"
PART = 8 * 1024 * 1024


@dataclass(frozen=True)
class DiskUse:
    """The recording's growth over the measured window."""

    mb_per_minute: float
    source_mb_per_minute: float
    parts_during_stream: int
    uploaded_bytes: int


def run(bench: Bench, s3_url: str, archive: bool) -> tuple[Result, DiskUse | None]:
    """One fresh server with one relayed stream, recording it when ``archive``."""
    label = "relay+archive" if archive else "relay"
    data_dir = bench.work / label
    data_dir.mkdir()
    server = make_server(
        data_dir,
        log_level="WARNING",
        cost_per_platform="0",
        s3_endpoint_url=s3_url,
        s3_bucket=BUCKET,
        s3_access_key_id="bench",
        s3_secret_access_key="bench",
        archive_part_size_bytes=str(PART),
    )
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        subprocess.run(["taskset", "-apc", RELAY_CPU, str(pid)], check=True, capture_output=True)
        headers = {"Authorization": f"Bearer {server.create_account()}"}
        name = label.replace("+", "_")
        destinations: list[dict[str, Any]] = [
            {"type": "rtmp", "config": {"url": bench.sink.url("live", name)}}
        ]
        if archive:
            destinations.append({"type": "cloud-archive"})
        stream = httpx.post(
            server.base_url + "/api/streams",
            headers=headers,
            json={"label": label, "destinations": destinations},
            timeout=10,
        ).json()
        api = httpx.Client(base_url=server.base_url, headers=headers, timeout=10)
        with running([publisher(bench.ffmpeg, bench.source, server.rtmp_url(stream["streamKey"]))]):
            before = _recorded(api) if archive else 0
            t0 = time.monotonic()
            result = bench.measure(label, 1, [pid], [name])
            elapsed = time.monotonic() - t0
            disk = None
            if archive:
                grown = _recorded(api) - before
                parts = api.get("/api/archives").json()[0]["partsUploaded"]
                disk = DiskUse(
                    mb_per_minute=grown / 1e6 / elapsed * 60,
                    source_mb_per_minute=bench.expected_mbps / 8 * 60,
                    parts_during_stream=parts,
                    uploaded_bytes=0,
                )
            api.post(f"/api/streams/{stream['id']}/stop")
        if disk is not None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = api.get("/api/archives").json()[0]
                if row["status"] == "uploaded":
                    disk = DiskUse(
                        disk.mb_per_minute,
                        disk.source_mb_per_minute,
                        disk.parts_during_stream,
                        row["sizeBytes"],
                    )
                    break
                time.sleep(0.5)
        return result, disk
    finally:
        server.stop()


def _recorded(api: httpx.Client) -> int:
    rows = api.get("/api/archives").json()
    return int(rows[0]["sizeBytes"]) if rows else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3, help="after the destination is up")
    args = parser.parse_args()
    moto = shutil.which("moto_server")
    for tool in ("nginx", "taskset", "ffmpeg"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    if moto is None or not RTMP_MODULE.exists():
        raise SystemExit("moto_server and nginx's rtmp module are required")
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    source = Path(tempfile.gettempdir()) / "simulcast-bench-relay-20s.flv"
    encode_source(ffmpeg, source)
    expected = source_mbps(source)
    os.sched_setaffinity(0, {int(OTHER_CPU)})
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        work = Path(tmp)
        s3_port, sink_rtmp, sink_http = free_port(), free_port(), free_port()
        s3_url = f"http://127.0.0.1:{s3_port}"
        sink_body = SINK_CONF % {"rtmp": sink_rtmp, "http": sink_http, "dir": work / "sink"}
        moto_cmd = pinned(OTHER_CPU, moto, "-H", "127.0.0.1", "-p", str(s3_port))
        with (
            nginx(work / "sink", sink_body, OTHER_CPU, sink_rtmp),
            running([moto_cmd]) as (moto_proc,),
        ):
            wait_port(s3_port, moto_proc, "moto_server")
            boto3.client(
                "s3",
                endpoint_url=s3_url,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            ).create_bucket(Bucket=BUCKET)
            sink = Sink(sink_rtmp, sink_http)
            bench = Bench(ffmpeg, source, sink, work, args.warmup, args.seconds, expected)
            relay, _ = run(bench, s3_url, archive=False)
            archived, disk = run(bench, s3_url, archive=True)
    assert disk is not None
    per_s = [r.cpu_ns / 1e6 / r.window_s for r in (relay, archived)]
    recorder = per_s[1] - per_s[0]
    print(f"\nsource {expected:.2f} Mb/s; window {args.seconds:.0f} s; server pinned to CPU 0")
    print(f"  relay (1 rtmp destination)     {per_s[0]:7.2f} CPU ms/s  ({per_s[0] / 10:.2f} %)")
    print(f"  relay + cloud archive          {per_s[1]:7.2f} CPU ms/s  ({per_s[1] / 10:.2f} %)")
    print(f"  recorder + uploader, per stream {recorder:6.2f} CPU ms/s  ({recorder / 10:.2f} %)")
    print(
        f"  disk: recording grows {disk.mb_per_minute:.1f} MB/min "
        f"(source {disk.source_mb_per_minute:.1f} MB/min, "
        f"{(disk.mb_per_minute / disk.source_mb_per_minute - 1) * 100:+.1f} %); "
        f"{disk.parts_during_stream} parts of {PART // 2**20} MiB uploaded while live; "
        f"object {disk.uploaded_bytes / 1e6:.1f} MB; local copy deleted after upload"
    )


if __name__ == "__main__":
    main()
