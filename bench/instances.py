"""Benchmark running instances: CPU and memory per passthrough instance, vs the streams API path.

    python -m bench.instances [--instances 1,10,30] [--seconds 10] [--warmup 3]
                              [--paths instances,sessions,failover] [--json out.json]

One instance here is what V1.md's "multistream" template runs: ``inputstream-1 ->
outputstream-1`` (``format: source``) with 3 destinations, LIVE (path ``instances``; path
``failover`` puts a ``failover`` element between them, the "failover" template). The same
fan-out done the streams API's way is one live session per publisher with 3 ``rtmp`` outputs
(path ``sessions``). All run in a *host* process (this module with ``host``) that is nothing
but a :class:`LocalEngine` on uvloop with an in-memory control plane, so the figures are the
media plane's and the paths are measured alike (a full ``simulcast serve`` adds its meter and
API, the same for all).

Everything else comes from ``bench/relay.py``: the 720p30 ~4.6 Mb/s source (encoded once,
published in real time with ``-c copy``, one ffmpeg per instance), the one nginx-rtmp sink whose
``rtmp_stat`` checks that every destination gets >= 80 % of the source bitrate, CPU pinning
(host on CPU 0, publishers and sink on CPU 1), and the measurement (schedstat run time of the
host's threads over a steady window).

Figures per instance: CPU ms per instance-second (= % of one core x 10) and the RSS the host
grew by per instance (its RSS with everything running minus its RSS before any publisher).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.relay import (
    OTHER_CPU,
    RELAY_CPU,
    RTMP_MODULE,
    SINK_CONF,
    Bench,
    Result,
    Sink,
    encode_source,
    memory_kb,
    nginx,
    pinned,
    publisher,
    running,
    source_mbps,
    wait_port,
)
from tests.support import free_port

DESTINATIONS = 3
KEY = "{:032x}"  # instance i publishes with key KEY.format(i + 1)


@dataclass(frozen=True)
class Row:
    """One path at one instance count."""

    path: str
    count: int
    result: Result
    idle_rss_kb: int

    @property
    def cpu_ms_per_instance_s(self) -> float:
        return self.result.cpu_ns / 1e6 / (self.count * self.result.window_s)

    @property
    def rss_mb_per_instance(self) -> float:
        return (self.result.rss_kb - self.idle_rss_kb) / 1024 / self.count


# --- the host process ---------------------------------------------------------------------------


def host(path: str, count: int, rtmp_port: int, sink_port: int, prefix: str) -> None:
    """Run a LocalEngine with ``count`` instances (or grantable stream keys) until SIGTERM."""
    import uvloop

    from simulcast.engine import (
        ElementSpec,
        EngineEvent,
        InstanceSpec,
        OutputSpec,
        PublishGrant,
        PublishRefused,
        PublishRequest,
    )
    from simulcast.node import media_engine
    from simulcast.settings import Settings

    def url(i: int, d: int) -> str:
        return f"rtmp://127.0.0.1:{sink_port}/live/{prefix}{count}_{i}_{d}"

    class Control:
        """Grants stream ``KEY.format(i + 1)`` with its 3 outputs; drops events."""

        async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
            i = int(request.stream_key, 16) - 1
            if not 0 <= i < count:
                raise PublishRefused("unknown key")
            outputs = [OutputSpec(d + 1, "rtmp", url(i, d)) for d in range(DESTINATIONS)]
            return PublishGrant(f"s{i}", i + 1, 1, outputs)

        async def on_engine_event(self, event: EngineEvent) -> None:
            return None

        async def srt_passphrase(self, stream_key: str) -> str | None:
            return None

    async def main() -> None:
        # Generous timeouts: on a loaded machine a starved host must not turn slowness into
        # refused handshakes and "stalled" publishers (it is measured in CPU time, not speed).
        settings = Settings(
            rtmp_host="127.0.0.1",
            rtmp_port=rtmp_port,
            srt_port=0,
            log_level="WARNING",
            rtmp_handshake_timeout=60.0,
            rtmp_publish_stall_seconds=60.0,
        )
        engine = media_engine(settings, Control())
        await engine.start()
        ids = [f"d{d}" for d in range(DESTINATIONS)]
        source = "failover-1" if path == "failover" else "inputstream-1"
        elements = [
            ElementSpec("inputstream-1", "inputstream", {}),
            ElementSpec("outputstream-1", "outputstream", {"destinations": ids}, [source]),
        ]
        if path == "failover":
            elements.insert(1, ElementSpec("failover-1", "failover", {}, ["inputstream-1"]))
        for i in range(count if path != "sessions" else 0):
            await engine.start_instance(
                InstanceSpec(
                    f"inst-{i}",
                    1,
                    elements,
                    {"inputstream-1": KEY.format(i + 1)},
                    {f"d{d}": url(i, d) for d in range(DESTINATIONS)},
                    {"outputstream-1": True},
                )
            )
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()
        await engine.close()

    uvloop.run(main())


@contextlib.contextmanager
def hosted(bench: Bench, path: str, count: int) -> Iterator[tuple[int, int]]:
    """A host process pinned to the relay CPU; yields (pid, rtmp port)."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.instances", "host", path, str(count), str(port)]
    cmd += [str(bench.sink.rtmp_port), path]
    with running([pinned(RELAY_CPU, *cmd)]) as (proc,):
        wait_port(port, proc, f"{path} host")
        yield proc.pid, port


def run(bench: Bench, path: str, count: int) -> Row:
    names = [f"{path}{count}_{i}_{d}" for i in range(count) for d in range(DESTINATIONS)]
    app = "live" if path == "sessions" else "inputstream-1"
    with hosted(bench, path, count) as (pid, port):
        idle_rss, _ = memory_kb(pid)
        urls = [f"rtmp://127.0.0.1:{port}/{app}/{KEY.format(i + 1)}" for i in range(count)]
        with contextlib.ExitStack() as publishers:
            for u in urls:
                # Staggered: 30 handshakes at once on a loaded machine can outlast the timeout.
                publishers.enter_context(running([publisher(bench.ffmpeg, bench.source, u)]))
                time.sleep(0.1)
            result = bench.measure(path, count * DESTINATIONS, [pid], names)
    row = Row(path, count, result, idle_rss)
    print(
        f"  {path:<9} x{count:<3} {row.cpu_ms_per_instance_s:7.2f} CPU ms per instance-second, "
        f"{row.rss_mb_per_instance:6.2f} MB RSS per instance",
        flush=True,
    )
    return row


def report(rows: list[Row], expected_mbps: float, window: float) -> None:
    print()
    print(
        f"Passthrough instances (1 input, 1 output, {DESTINATIONS} destinations), source "
        f"{expected_mbps:.2f} Mb/s, {window:g} s window, host on CPU 0"
    )
    print(
        f"{'path':<10} {'N':>3} {'CPU ms/inst-s':>13} {'CPU %':>6} {'RSS MB':>7} "
        f"{'idle MB':>7} {'MB/inst':>7} {'min Mb/s':>8}"
    )
    for row in rows:
        r = row.result
        print(
            f"{row.path:<10} {row.count:>3} {row.cpu_ms_per_instance_s:>13.2f} "
            f"{r.cpu_percent:>6.1f} {r.rss_kb / 1024:>7.1f} {row.idle_rss_kb / 1024:>7.1f} "
            f"{row.rss_mb_per_instance:>7.2f} {r.min_mbps:>8.2f}"
        )
    by = {(row.path, row.count): row for row in rows}
    for count in sorted({row.count for row in rows}):
        a, b = by.get(("instances", count)), by.get(("sessions", count))
        if a is not None and b is not None:
            ratio = a.cpu_ms_per_instance_s / b.cpu_ms_per_instance_s
            print(f"N={count:<3} instances/sessions CPU {ratio:5.2f}x")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "host":
        _, _, path, count, port, sink_port, prefix = sys.argv
        host(path, int(count), int(port), int(sink_port), prefix)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3, help="after every destination is up")
    parser.add_argument("--instances", default="1,10,30", help="instance counts")
    parser.add_argument("--paths", default="instances,sessions", help="and/or failover")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for tool in ("nginx", "taskset", "ffmpeg"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    if not RTMP_MODULE.exists():
        raise SystemExit(f"{RTMP_MODULE} is required (apt-get install libnginx-mod-rtmp)")
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    source = Path(tempfile.gettempdir()) / "simulcast-bench-relay-20s.flv"
    encode_source(ffmpeg, source)
    expected = source_mbps(source)
    os.sched_setaffinity(0, {int(OTHER_CPU)})
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp:
        work = Path(tmp)
        sink_rtmp, sink_http = free_port(), free_port()
        body = SINK_CONF % {"rtmp": sink_rtmp, "http": sink_http, "dir": work / "sink"}
        with nginx(work / "sink", body, OTHER_CPU, sink_rtmp):
            sink = Sink(sink_rtmp, sink_http)
            bench = Bench(ffmpeg, source, sink, work, args.warmup, args.seconds, expected)
            for count in [int(x) for x in args.instances.split(",")]:
                print(f"N={count}", flush=True)
                for path in args.paths.split(","):
                    rows.append(run(bench, path, count))
    report(rows, expected, args.seconds)
    if args.json is not None:
        import json

        args.json.write_text(
            json.dumps(
                [
                    {
                        "path": r.path,
                        "instances": r.count,
                        "cpu_ms_per_instance_s": round(r.cpu_ms_per_instance_s, 3),
                        "cpu_percent": round(r.result.cpu_percent, 2),
                        "rss_mb": round(r.result.rss_kb / 1024, 1),
                        "rss_mb_per_instance": round(r.rss_mb_per_instance, 2),
                        "min_mbps": round(r.result.min_mbps, 2),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
