"""Benchmark SRT ingest: ``simulcast serve`` vs ffmpeg's libsrt listener, both remuxing to RTMP.

    python -m bench.srt [--seconds 10] [--warmup 3] [--streams 1,4] [--profile out.txt]

Per SRT publisher, each system receives MPEG-TS over SRT (loopback, 120 ms latency, no loss) and
sends it on as RTMP to the nginx-rtmp sink of ``bench/relay.py`` (reused here with its CPU
measurement, pinning and delivery check):

* Source: the cached 720p30 H.264 ~4.3 Mb/s + AAC 160 kb/s file of ``bench.relay``, remuxed
  once to MPEG-TS (~5 Mb/s on the wire with TS overhead). N publishers run
  ``ffmpeg -re -stream_loop -1 -i src.ts -c copy -f mpegts srt://...`` on CPU 1.
* ``simulcast``: one server (CPU 0), N streams with one ``rtmp`` destination each, publishers
  call ``srt://HOST:PORT?streamid=publish:KEY``. Measured: the server process.
* ``ffmpeg``: N processes (CPU 0) ``ffmpeg -i 'srt://:PORT?mode=listener' -c copy -f flv
  rtmp://sink/...``, each with its own publisher. Measured: the sum of the N processes.

The figure of merit is CPU ms per stream-second; the issue's bar is simulcast <= 1.5x ffmpeg.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.relay import (
    OTHER_CPU,
    RELAY_CPU,
    SINK_CONF,
    Bench,
    Result,
    Sink,
    encode_source,
    nginx,
    pinned,
    record,
    running,
)
from tests.support import free_port, make_server

SOURCE_SECONDS = 20


def free_udp_port() -> int:
    """A UDP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ts_source(ffmpeg: str, flv: Path) -> Path:
    """The relay benchmark's source remuxed to MPEG-TS (cached next to it)."""
    ts = flv.with_suffix(".ts")
    if not ts.exists():
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(flv)]
        subprocess.run([*cmd, "-c", "copy", "-f", "mpegts", str(ts)], check=True)
    return ts


def srt_publisher(ffmpeg: str, source: Path, url: str) -> list[str]:
    """Real-time, looping, ``-c copy`` MPEG-TS over SRT (on CPU 1)."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
    return pinned(OTHER_CPU, *cmd, "-i", str(source), "-c", "copy", "-f", "mpegts", url)


def run_ffmpeg(bench: Bench, n: int) -> Result:
    names = [f"live/ffsrt{n}_{i}" for i in range(n)]
    ports = [free_udp_port() for _ in names]
    listeners = [
        pinned(
            RELAY_CPU,
            *(bench.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"),
            *("-i", f"srt://127.0.0.1:{port}?mode=listener", "-c", "copy", "-f", "flv"),
            bench.sink.key_url(name),
        )
        for port, name in zip(ports, names, strict=True)
    ]
    with running(listeners) as procs:
        time.sleep(1.0)  # the listeners bind
        publishers = [
            srt_publisher(bench.ffmpeg, bench.source, f"srt://127.0.0.1:{port}?pkt_size=1316")
            for port in ports
        ]
        with running(publishers):
            return bench.measure("ffmpeg", n, [p.pid for p in procs], names)


def run_simulcast(bench: Bench, n: int, profile: Path | None) -> Result:
    names = [f"live/simsrt{n}_{i}" for i in range(n)]
    data_dir = bench.work / f"simulcast-{n}"
    data_dir.mkdir()
    srt_port = free_udp_port()
    server = make_server(
        data_dir,
        log_level="WARNING",
        cost_per_platform="0",
        bandwidth_overage_sats_per_gb="0",
        srt_port=str(srt_port),
    )
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        subprocess.run(["taskset", "-apc", RELAY_CPU, str(pid)], check=True, capture_output=True)
        headers = {"Authorization": f"Bearer {server.create_account()}"}
        keys = []
        for name in names:
            destination = {"type": "rtmp", "config": {"url": bench.sink.key_url(name)}}
            response = httpx.post(
                server.base_url + "/api/streams",
                headers=headers,
                json={"label": name, "destinations": [destination]},
                timeout=10,
            )
            response.raise_for_status()
            keys.append(response.json()["streamKey"])
        publishers = [
            srt_publisher(
                bench.ffmpeg,
                bench.source,
                f"srt://127.0.0.1:{srt_port}?streamid=publish:{key}&pkt_size=1316",
            )
            for key in keys
        ]
        with running(publishers):
            result = bench.measure("simulcast", n, [pid], names)
            if profile is not None:
                record(pid, profile, bench.window)
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3, help="after every stream is up")
    parser.add_argument("--streams", default="1,4", help="SRT publishers at once (values of N)")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of simulcast at max N")
    args = parser.parse_args()
    ns = [int(x) for x in args.streams.split(",")]
    for tool in ("nginx", "taskset", "ffmpeg"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    flv = Path(tempfile.gettempdir()) / f"simulcast-bench-relay-{SOURCE_SECONDS}s.flv"
    encode_source(ffmpeg, flv)
    source = ts_source(ffmpeg, flv)
    expected = flv.stat().st_size * 8 / 1e6 / SOURCE_SECONDS
    os.sched_setaffinity(0, {int(OTHER_CPU)})
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-srt-") as tmp:
        work = Path(tmp)
        sink_rtmp, sink_http = free_port(), free_port()
        body = SINK_CONF % {"rtmp": sink_rtmp, "http": sink_http, "dir": work / "sink", "apps": ""}
        with nginx(work / "sink", body, OTHER_CPU, sink_rtmp):
            sink = Sink(sink_rtmp, sink_http)
            bench = Bench(ffmpeg, source, sink, work, args.warmup, args.seconds, expected)
            for n in ns:
                print(f"N={n}", flush=True)
                results.append(run_simulcast(bench, n, args.profile if n == max(ns) else None))
                results.append(run_ffmpeg(bench, n))
    print()
    print(f"SRT ingest -> RTMP, source {expected:.2f} Mb/s; CPU ms per stream-second")
    by = {(r.system, r.n): r for r in results}
    for n in ns:
        sim, ff = by[("simulcast", n)], by[("ffmpeg", n)]
        print(
            f"  N={n:<3} simulcast {sim.ms_per_dest_s:7.2f}  ffmpeg {ff.ms_per_dest_s:7.2f}  "
            f"ratio {sim.ms_per_dest_s / ff.ms_per_dest_s:5.2f}x (bar <= 1.5x)  "
            f"RSS simulcast {sim.rss_kb / 1024:.0f} MB, ffmpeg {ff.rss_kb / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()
