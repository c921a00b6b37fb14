"""Benchmark RTMP fan-out: ``simulcast serve`` vs nginx-rtmp ``push`` vs one ffmpeg per destination.

    python -m bench.relay [--seconds 10] [--warmup 3] [--destinations 1,10,20]
                          [--streams 50x2,10x10] [--idle 1000]
                          [--profile simulcast-n20.txt]
                          [--systems simulcast,sc-media,nginx-rtmp,ffmpeg,floor]

One run measures the three relays side by side, one after another, on the same source:

* The source is 720p30 H.264 (~4.3 Mb/s) + AAC (160 kb/s), encoded ONCE to an FLV file
  (cached in the temp directory) so no encoder runs during a measurement. A publisher
  ``ffmpeg -re -stream_loop -1 -i src.flv -c copy -f flv rtmp://...`` sends it in real time.
* Every destination is a stream on ONE sink: an nginx-rtmp process with ``application live
  { live on; }`` (no recording, no players), so a destination costs it almost nothing. Its
  ``rtmp_stat`` page gives each destination's ``bytes_in``: every destination must receive at
  least 80 % of the source bitrate during the window or the run fails.
* The relay under test runs pinned to CPU 0; publisher and sink (and everything else) are
  pinned to CPU 1.

  - ``simulcast``: a fresh ``simulcast serve`` per N (SQLite, log level WARNING) with one
    stream of N ``rtmp`` destinations; the publisher publishes to it. Measured: the server
    process (all its threads).
  - ``sc-media`` (only when named in ``--systems``): a fresh media node, ``simulcast serve
    --role media`` on a fresh PostgreSQL database (127.0.0.1:5432) and Redis (127.0.0.1:6379),
    its streams created through an unmeasured ``--role api`` node. Measured: the media node.
  - ``nginx-rtmp``: a fresh nginx with the Debian rtmp module, ``master_process off`` so one
    process ingests and relays, ``application live { live on; push ...; }`` with N pushes.
  - ``ffmpeg xN``: N ``ffmpeg -i rtmp://sink/src/KEY -c copy -f flv rtmp://sink/live/KEY_i``
    processes. The publisher publishes to the sink's own ``src`` application (unmeasured, on
    CPU 1), and every ffmpeg *pulls* from it: like the other two systems, each relay process
    parses an incoming RTMP stream and writes an outgoing one; the one-to-many fan-out that the
    other systems do themselves is done for free by the unmeasured sink. Measured: the sum over
    the N ffmpeg processes.
  - ``floor`` (only when named in ``--systems``; N=1 only): ``bench/floor_proxy.py``, a uvloop
    proxy that forwards the publisher's bytes to one sink stream unparsed, reading on the relay's
    batch clock. Not a relay: the CPU below which nothing on asyncio + uvloop relays one stream
    at this cadence, so ``simulcast`` minus ``floor`` is what the relay's own work costs.

CPU time comes from the kernel's per-thread run time (``/proc/PID/task/*/schedstat``,
nanoseconds), summed over the threads of the measured process(es) across a steady window that
starts ``--warmup`` seconds after every destination has received data. ``/proc/PID/stat``
utime+stime (10 ms ticks, too coarse at N=1) is shown next to it as a cross-check. The figure
of merit is **CPU ms per destination-second**: ``cpu_ms / (N * window_s)``. RSS is summed over
the measured processes (PSS too, which does not count shared libraries N times).

``--streams SxN,...`` (many streams): S publishers, each to its own stream with N
destinations, relayed by one simulcast server and by one nginx-rtmp process (whose ``push``
lines apply to every stream of the application). Same source, same sink, same check on every
destination; the figure is again CPU ms per destination-second, over all S x N.

``--idle COUNT``: COUNT RTMP connections that completed the handshake (C0/C1, S0/S1/S2, C2)
and then send nothing, held open to each server: RSS per connection (after minus before,
over COUNT) and the CPU the server spends keeping them over the window. The simulcast server
gets connection limits and a handshake timeout above COUNT and the window (the defaults would
refuse or close them: that is the hostile-input bound, not the cost being measured); nginx
gets ``timeout`` above the window for the same reason.

``--destinations ''`` (empty) skips the single-stream runs.

``--repeat K``: K rounds of every single-stream and many-streams shape, the systems alternating
within a round; the tables show each system's median run, and a last table the simulcast/nginx
ratio of every round and its median (one run's ratio moves with nginx-rtmp's own spread).

``--profile PATH``: after the largest-N simulcast window, record the server for another window
with ``py-spy record -f raw`` (a separate window, so sampling does not inflate the figures); each
many-streams shape is recorded the same way, to ``PATH`` with ``-SxN`` before its suffix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from simulcast.control.secretbox import new_key
from simulcast.settings import Settings
from tests.support import ServerProcess, free_port, fresh_postgres_database, make_server

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
RELAY_CPU = "0"
OTHER_CPU = "1"
SOURCE_SECONDS = 20
STAGGER = 0.1  # seconds between the starts of many publishers (both systems alike)
STARTUP = 120  # seconds a server may take to start on a loaded machine
MIN_DELIVERY = 0.8  # fraction of the source bitrate every destination must receive
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

NGINX_HEAD = """
load_module %(module)s;
master_process off;
worker_processes 1;
daemon off;
error_log %(dir)s/error.log warn;
pid %(dir)s/nginx.pid;
events { worker_connections 4096; }
"""
SINK_CONF = """
rtmp {
  server {
    listen 127.0.0.1:%(rtmp)d;
    chunk_size 4096;
    application live { live on; }
    application src { live on; wait_key on; wait_video on; }
%(apps)s
  }
}
http {
  access_log off;
  client_body_temp_path %(dir)s/tmp;
  proxy_temp_path %(dir)s/tmp;
  fastcgi_temp_path %(dir)s/tmp;
  uwsgi_temp_path %(dir)s/tmp;
  scgi_temp_path %(dir)s/tmp;
  server {
    listen 127.0.0.1:%(http)d;
    location /stat { rtmp_stat all; }
  }
}
"""
RELAY_CONF = """
rtmp {
  server {
    listen 127.0.0.1:%(rtmp)d;
    chunk_size 4096;
%(timeout)s
    application live {
      live on;
%(pushes)s
    }
  }
}
"""


@dataclass(frozen=True)
class Result:
    """One system relaying ``streams`` streams of ``n`` destinations over one steady window."""

    system: str
    n: int
    window_s: float
    cpu_ns: int  # schedstat run time of the measured threads
    stat_ticks: int  # utime + stime from /proc/PID/stat
    rss_kb: int
    pss_kb: int
    min_mbps: float  # the slowest destination's received bitrate over the window
    processes: int
    streams: int = 1

    @property
    def ms_per_dest_s(self) -> float:
        return self.cpu_ns / 1e6 / (self.streams * self.n * self.window_s)

    @property
    def stat_ms_per_dest_s(self) -> float:
        return self.stat_ticks * 1000 / CLOCK_TICK / (self.streams * self.n * self.window_s)

    @property
    def cpu_percent(self) -> float:
        return self.cpu_ns / 1e7 / self.window_s


# --- /proc ------------------------------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of every live thread of ``pid`` (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def stat_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB."""
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


# --- processes --------------------------------------------------------------------------------


def pinned(cpu: str, *cmd: str) -> list[str]:
    """``cmd`` run under ``taskset -c cpu`` (taskset execs, so the pid is the command's)."""
    return ["taskset", "-c", cpu, *cmd]


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(cmds: list[list[str]], stagger: float = 0.0) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``cmds`` (``stagger`` seconds apart); terminate them all on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in cmds:
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
            time.sleep(stagger)
        yield procs
    finally:
        for proc in procs:
            stop(proc)


@contextlib.contextmanager
def nginx(directory: Path, body: str, cpu: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """One nginx process (``master_process off``) with ``body`` after the common head."""
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_HEAD % {"module": RTMP_MODULE, "dir": directory} + body)
    cmd = pinned(cpu, "nginx", "-c", str(conf), "-p", str(directory))
    with running([cmd]) as (proc,):
        wait_port(port, proc, f"nginx ({directory.name})")
        yield proc


def publisher(ffmpeg: str, source: Path, url: str) -> list[str]:
    """Real-time, looping, ``-c copy`` publish of the pre-encoded source (on CPU 1)."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
    return pinned(OTHER_CPU, *cmd, "-i", str(source), "-c", "copy", "-f", "flv", url)


def encode_source(ffmpeg: str, path: Path) -> None:
    """720p30 H.264 ~4.3 Mb/s (2 s GOP) + AAC 160 kb/s stereo, ``SOURCE_SECONDS`` long.

    Noise on the test pattern keeps x264 at its target bitrate, as camera content would.
    """
    if path.exists():
        return
    print(f"encoding the source once: {path}", flush=True)
    tmp = path.with_suffix(".part.flv")
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(SOURCE_SECONDS), "-pix_fmt", "yuv420p", "-c:v", "libx264"]
    cmd += ["-preset", "veryfast", "-b:v", "4300k", "-maxrate", "4300k", "-bufsize", "8600k"]
    cmd += ["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"]
    cmd += ["-c:a", "aac", "-b:a", "160k", "-ac", "2", "-f", "flv", str(tmp)]
    subprocess.run(cmd, check=True)
    tmp.rename(path)


def source_mbps(path: Path) -> float:
    return path.stat().st_size * 8 / 1e6 / SOURCE_SECONDS


# --- the sink ---------------------------------------------------------------------------------


class Sink:
    """The nginx-rtmp process every destination publishes to; counts what each one receives."""

    def __init__(self, rtmp_port: int, http_port: int) -> None:
        self.rtmp_port = rtmp_port
        self.stat_url = f"http://127.0.0.1:{http_port}/stat"

    def url(self, app: str, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{name}"

    def key_url(self, key: str) -> str:
        """The URL of ``app/name``."""
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{key}"

    def bytes_in(self) -> dict[str, int]:
        """``bytes_in`` per live stream, keyed ``app/name``."""
        root = ET.fromstring(httpx.get(self.stat_url, timeout=5).text)
        out: dict[str, int] = {}
        for application in root.iter("application"):
            app = application.findtext("name", "")
            for stream in application.iter("stream"):
                key = f"{app}/{stream.findtext('name', '')}"
                out[key] = int(stream.findtext("bytes_in", "0"))
        return out

    def wait_receiving(self, names: list[str], timeout: float = 120) -> None:
        """Until every stream in ``names`` (``app/name``) has received data."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.bytes_in()
            if all(seen.get(name, 0) > 0 for name in names):
                return
            time.sleep(0.2)
        missing = [n for n in names if self.bytes_in().get(n, 0) == 0]
        raise SystemExit(f"sink: no data for {len(missing)} destination(s), e.g. {missing[:3]}")


def delivery_mbps(
    before: dict[str, int], after: dict[str, int], names: list[str], elapsed: float
) -> list[float]:
    """Mb/s each of ``names`` received between two :meth:`Sink.bytes_in` readings. A counter
    that went down was restarted by a reconnect inside the window: only what arrived since
    counts (it used to come out negative)."""
    rates = []
    for name in names:
        got = after.get(name, 0) - before.get(name, 0)
        rates.append((got if got >= 0 else after.get(name, 0)) * 8 / 1e6 / elapsed)
    return rates


# --- one measurement --------------------------------------------------------------------------


def measure(
    system: str,
    n: int,
    pids: list[int],
    sink: Sink,
    names: list[str],
    warmup: float,
    window: float,
    expected_mbps: float,
    streams: int = 1,
) -> Result:
    """Wait for every destination, warm up, then measure ``pids`` over ``window`` seconds."""
    sink.wait_receiving(names)
    time.sleep(warmup)
    before = sink.bytes_in()
    t0 = time.monotonic()
    ns0 = sum(cpu_ns(pid) for pid in pids)
    ticks0 = sum(stat_ticks(pid) for pid in pids)
    time.sleep(window)
    ns1 = sum(cpu_ns(pid) for pid in pids)
    ticks1 = sum(stat_ticks(pid) for pid in pids)
    elapsed = time.monotonic() - t0
    after = sink.bytes_in()
    memory = [memory_kb(pid) for pid in pids]
    rates = delivery_mbps(before, after, names, elapsed)
    slowest = min(rates)
    if slowest < MIN_DELIVERY * expected_mbps:
        message = (
            f"{system} {streams}x{n}: a destination received only {slowest:.2f} Mb/s "
            f"(source {expected_mbps:.2f} Mb/s): the relay is not keeping up"
        )
        if streams == 1:
            raise SystemExit(message)
        # Many streams: S publishers and the sink share one CPU, so on a loaded machine the
        # shortfall may be theirs; the figures are kept, flagged by the min Mb/s column.
        print(f"  WARNING {message} (or the publishers and sink on CPU {OTHER_CPU} are not)")
    result = Result(
        system=system,
        n=n,
        window_s=elapsed,
        cpu_ns=ns1 - ns0,
        stat_ticks=ticks1 - ticks0,
        rss_kb=sum(m[0] for m in memory),
        pss_kb=sum(m[1] for m in memory),
        min_mbps=slowest,
        processes=len(pids),
        streams=streams,
    )
    print(
        f"  {system:<10} {streams}x{n:<3} {result.ms_per_dest_s:7.3f} ms/dest-s  "
        f"{result.cpu_percent:5.1f} % CPU  RSS {result.rss_kb / 1024:7.1f} MB  "
        f"slowest destination {slowest:.2f} Mb/s",
        flush=True,
    )
    return result


# --- the three systems ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """What every system's run shares."""

    ffmpeg: str
    source: Path
    sink: Sink
    work: Path
    warmup: float
    window: float
    expected_mbps: float

    def measure(
        self, system: str, n: int, pids: list[int], names: list[str], streams: int = 1
    ) -> Result:
        return measure(
            system,
            n,
            pids,
            self.sink,
            names,
            self.warmup,
            self.window,
            self.expected_mbps,
            streams,
        )


def destinations(system: str, streams: int, n: int) -> list[list[str]]:
    """Per stream, its ``n`` destinations on the sink (``app/name``): destination j of every
    stream goes to application ``mj`` under the stream's own name, the layout an nginx ``push``
    without a name produces."""
    return [[f"m{j}/{system}{streams}x{n}_{i}" for j in range(n)] for i in range(streams)]


def run_nginx(bench: Bench, n: int, streams: int = 1) -> Result:
    keys = destinations("nginx", streams, n)
    pushes = "\n".join(f"      push {bench.sink.key_url(f'm{j}')};" for j in range(n))
    port = free_port()
    body = RELAY_CONF % {"rtmp": port, "pushes": pushes, "timeout": ""}
    publishers = [
        publisher(bench.ffmpeg, bench.source, f"rtmp://127.0.0.1:{port}/live/{k[0].split('/')[1]}")
        for k in keys
    ]
    with (
        nginx(bench.work / f"nginx-relay-{streams}x{n}", body, RELAY_CPU, port) as relay,
        running(publishers, STAGGER),
    ):
        return bench.measure("nginx-rtmp", n, [relay.pid], [k for ks in keys for k in ks], streams)


def run_ffmpeg(bench: Bench, n: int, streams: int = 1) -> Result:
    (keys,) = destinations("ffmpeg", 1, n)
    src = f"src/ffmpeg{n}"
    with running([publisher(bench.ffmpeg, bench.source, bench.sink.key_url(src))]):
        bench.sink.wait_receiving([src])
        relays = [
            pinned(
                RELAY_CPU,
                *(bench.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"),
                *("-i", bench.sink.key_url(src), "-c", "copy", "-f", "flv"),
                bench.sink.key_url(key),
            )
            for key in keys
        ]
        with running(relays) as procs:
            return bench.measure("ffmpeg", n, [p.pid for p in procs], keys)


def run_floor(bench: Bench, n: int, streams: int = 1) -> Result:
    """``bench/floor_proxy.py`` between one publisher and one sink stream (N=1 only)."""
    if (streams, n) != (1, 1):
        raise ValueError("the floor proxy relays one stream to one destination")
    (keys,) = destinations("floor", 1, 1)
    port = free_port()
    window = str(Settings.model_fields["relay_batch_seconds"].default)
    script = Path(__file__).with_name("floor_proxy.py")
    cmd = pinned(
        RELAY_CPU, sys.executable, str(script), str(port), str(bench.sink.rtmp_port), window
    )
    with running([cmd]) as (proc,):
        wait_port(port, proc, "floor proxy")
        url = f"rtmp://127.0.0.1:{port}/{keys[0]}"
        with running([publisher(bench.ffmpeg, bench.source, url)]):
            return bench.measure("floor", 1, [proc.pid], keys)


@contextlib.contextmanager
def simulcast_server(bench: Bench, name: str, **settings: str) -> Iterator[ServerProcess]:
    """A fresh ``simulcast serve`` (SQLite, WARNING logs, free platforms) pinned to the relay
    CPU; prints the end of its log if it did not exit cleanly."""
    data_dir = bench.work / name
    data_dir.mkdir()
    # Free platforms: the benchmark measures relaying, not the wallet.
    server = make_server(
        data_dir,
        log_level="WARNING",
        cost_per_platform="0",
        bandwidth_overage_sats_per_gb="0",
        rate_limit_per_minute="100000",  # S stream creations and checks are not an abuse
        **settings,
    )
    server.start(within=STARTUP)
    assert server.proc is not None
    try:
        pid = str(server.proc.pid)
        subprocess.run(["taskset", "-apc", RELAY_CPU, pid], check=True, capture_output=True)
        yield server
    except SystemExit:
        print(server.log()[-3000:])  # why a run failed is in the server's warnings
        raise
    finally:
        server.stop()
        if server.proc is not None and server.proc.returncode not in (0, -signal.SIGTERM):
            print(server.log()[-2000:])


def run_simulcast(bench: Bench, n: int, streams: int = 1, profile: Path | None = None) -> Result:
    with simulcast_server(bench, f"simulcast-{streams}x{n}", **relay_settings(streams)) as server:
        return relay_through(bench, "simulcast", server, server, n, streams, profile)


def run_simulcast_media(bench: Bench, n: int, streams: int = 1) -> Result:
    """A media node (``--role media``, measured) relaying; streams are created through an API
    node (``--role api``, unmeasured, on the other CPU) on a fresh PostgreSQL database and a
    Redis namespace of its own (127.0.0.1:5432 and :6379)."""
    with fresh_postgres_database() as url:
        fleet = {
            "database_url": url,
            "redis_url": "redis://127.0.0.1:6379/0",
            "bus_prefix": f"benchrelay{secrets.token_hex(3)}",
            "secret_key": new_key(),
        }
        data_dir = bench.work / f"api-{streams}x{n}"
        data_dir.mkdir()
        # The API node charges nothing either: the same free platforms as simulcast_server's.
        api = make_server(
            data_dir,
            role="api",
            node_id="api",
            log_level="WARNING",
            cost_per_platform="0",
            bandwidth_overage_sats_per_gb="0",
            rate_limit_per_minute="100000",
            **fleet,
        )
        api.start(within=STARTUP)
        try:
            with simulcast_server(
                bench,
                f"simulcast-media-{streams}x{n}",
                role="media",
                node_id="media",
                **fleet,
                **relay_settings(streams),
            ) as media:
                return relay_through(bench, "sc-media", api, media, n, streams)
        finally:
            api.stop()


def relay_settings(streams: int) -> dict[str, str]:
    """Every publisher connects from 127.0.0.1: lift the per-address cap above S. S publishers
    arriving together wait for S authorizations (database transactions): on a loaded machine
    that can exceed the default 10 s handshake timeout, which is not what is measured here."""
    return {
        "rtmp_max_connections_per_address": str(streams + 32),
        "rtmp_handshake_timeout": "60",
    }


def relay_through(
    bench: Bench,
    system: str,
    control: ServerProcess,
    relay: ServerProcess,
    n: int,
    streams: int,
    profile: Path | None = None,
) -> Result:
    """Create S streams of N destinations through ``control``'s API, publish them to
    ``relay`` and measure ``relay``; every destination must be live and sending."""
    keys = destinations(system, streams, n)
    assert relay.proc is not None
    pid = relay.proc.pid
    headers = {"Authorization": f"Bearer {control.create_account()}"}
    created = []
    for i, stream_keys in enumerate(keys):
        body = {
            "label": f"bench-{i}",
            "destinations": [
                {"type": "rtmp", "config": {"url": bench.sink.key_url(key)}} for key in stream_keys
            ],
        }
        response = httpx.post(
            control.base_url + "/api/streams", headers=headers, json=body, timeout=30
        )
        response.raise_for_status()
        created.append(response.json())
    publishers = [
        publisher(bench.ffmpeg, bench.source, relay.rtmp_url(c["streamKey"])) for c in created
    ]
    with running(publishers, STAGGER):
        result = bench.measure(system, n, [pid], [k for ks in keys for k in ks], streams)
        for stream in created:
            view = httpx.get(
                f"{control.base_url}/api/streams/{stream['id']}", headers=headers, timeout=10
            ).json()
            states = {d["state"] for d in view["destinations"]}
            low = [d for d in view["destinations"] if d["bytesSent"] <= 0]
            if states != {"live"} or low:
                message = f"{system} {streams}x{n}: destinations {states}, {len(low)} idle"
                if streams == 1:
                    raise SystemExit(message)
                print(f"  WARNING {message}")  # kept and flagged, as in measure()
        if profile is not None:
            record(pid, profile, bench.window)
    return result


# --- idle connections -------------------------------------------------------------------------


@dataclass(frozen=True)
class IdleResult:
    """One server holding ``count`` handshaken, silent RTMP connections."""

    system: str
    count: int
    window_s: float
    cpu_ns: int
    rss_before_kb: int
    rss_after_kb: int

    @property
    def kb_per_connection(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.count

    @property
    def cpu_percent(self) -> float:
        return self.cpu_ns / 1e7 / self.window_s


def handshaken(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port`` that completed the RTMP handshake (C0+C1 sent, S0+S1+S2
    read, C2 = S1 echoed) and then stay silent. Version-0 C1: the plain handshake."""
    c0c1 = b"\x03" + bytes(8) + os.urandom(1528)
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(c0c1)
        socks.append(sock)
    for sock in socks:
        reply = b""
        while len(reply) < 1 + 2 * 1536:
            data = sock.recv(1 + 2 * 1536 - len(reply))
            if not data:
                raise SystemExit(f"idle: the server closed a connection mid-handshake on {port}")
            reply += data
        sock.sendall(reply[1 : 1 + 1536])
    return socks


def measure_idle(system: str, pid: int, port: int, count: int, window: float) -> IdleResult:
    """RSS before and after opening ``count`` idle connections; CPU over ``window`` with them."""
    time.sleep(2)  # let start-up settle
    before = memory_kb(pid)[0]
    socks = handshaken(port, count)
    try:
        time.sleep(2)
        ns0, t0 = cpu_ns(pid), time.monotonic()
        time.sleep(window)
        ns1, elapsed = cpu_ns(pid), time.monotonic() - t0
        after = memory_kb(pid)[0]
        for sock in socks:  # all still open: the server closed none of them
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    raise SystemExit(f"idle {system}: the server closed an idle connection")
    finally:
        for sock in socks:
            sock.close()
    result = IdleResult(system, count, elapsed, ns1 - ns0, before, after)
    print(
        f"  {system:<10} {count} idle: {result.kb_per_connection:6.1f} KB/connection  "
        f"{result.cpu_percent:5.2f} % CPU  RSS {before / 1024:.1f} -> {after / 1024:.1f} MB",
        flush=True,
    )
    return result


def idle_nginx(bench: Bench, count: int) -> IdleResult:
    port = free_port()
    timeout = f"    timeout {round(bench.window) + 60}s;"
    body = RELAY_CONF % {"rtmp": port, "pushes": "", "timeout": timeout}
    with nginx(bench.work / f"nginx-idle-{count}", body, RELAY_CPU, port) as relay:
        return measure_idle("nginx-rtmp", relay.pid, port, count, bench.window)


def idle_simulcast(bench: Bench, count: int) -> IdleResult:
    limit, patience = str(count + 32), str(round(bench.window) + 60)
    with simulcast_server(
        bench,
        f"simulcast-idle-{count}",
        rtmp_max_connections=limit,
        rtmp_max_connections_per_address=limit,
        rtmp_handshake_timeout=patience,
    ) as server:
        assert server.proc is not None
        return measure_idle("simulcast", server.proc.pid, server.rtmp_port, count, bench.window)


def record(pid: int, out: Path, seconds: float) -> None:
    """py-spy ``record -f raw`` of ``pid`` (all threads, idle frames dropped) for ``seconds``."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("  (py-spy not installed: pip install py-spy)")
        return
    cmd = pinned(OTHER_CPU, py_spy, "record", "-p", str(pid), "-r", "1000", "-f", "raw")
    cmd += ["-o", str(out), "-d", str(round(seconds)), "--nonblocking"]
    subprocess.run(cmd, check=True, capture_output=True)
    print(f"  py-spy profile of simulcast: {out}", flush=True)


# --- report -----------------------------------------------------------------------------------


def report(results: list[Result], ns: list[int], expected_mbps: float, window: float) -> None:
    by = {(r.system, r.n): r for r in results if r.streams == 1}
    systems = ["simulcast", "sc-media", "nginx-rtmp", "ffmpeg", "floor"]
    if not by:
        return
    print()
    print(
        f"RTMP fan-out, 720p30 source {expected_mbps:.2f} Mb/s, {window:g} s window, "
        "relay on CPU 0; CPU ms per destination-second (lower is better)"
    )
    head = f"{'system':<11} {'N':>3} {'ms/dest-s':>10} {'(stat)':>7} {'CPU %':>6}"
    print(head + f" {'RSS MB':>8} {'PSS MB':>8} {'procs':>5} {'min Mb/s':>8}")
    for system in systems:
        for n in ns:
            r = by.get((system, n))
            if r is None:
                continue
            print(
                f"{system:<11} {n:>3} {r.ms_per_dest_s:>10.3f} {r.stat_ms_per_dest_s:>7.2f} "
                f"{r.cpu_percent:>6.1f} {r.rss_kb / 1024:>8.1f} {r.pss_kb / 1024:>8.1f} "
                f"{r.processes:>5} {r.min_mbps:>8.2f}"
            )
    print()
    for n in ns:
        ours, nginx_, ff = (
            by.get(("simulcast", n)),
            by.get(("nginx-rtmp", n)),
            by.get(("ffmpeg", n)),
        )
        if ours is None or nginx_ is None:
            continue
        line = (
            f"N={n:<3} simulcast/nginx-rtmp CPU {ours.ms_per_dest_s / nginx_.ms_per_dest_s:5.2f}x"
        )
        if ff is not None:
            line += f"   simulcast/ffmpeg CPU {ours.ms_per_dest_s / ff.ms_per_dest_s:5.2f}x"
        print(line)
    floor, nginx_1, ours_1 = (
        by.get(("floor", 1)),
        by.get(("nginx-rtmp", 1)),
        by.get(("simulcast", 1)),
    )
    if floor is not None and nginx_1 is not None:
        line = f"N=1   floor/nginx-rtmp CPU {floor.ms_per_dest_s / nginx_1.ms_per_dest_s:5.2f}x"
        if ours_1 is not None:
            own = ours_1.ms_per_dest_s - floor.ms_per_dest_s
            line += f"   simulcast above the floor {own:.2f} ms/s"
        print(line)
    for n in ns:
        rss = {s: by[(s, n)].rss_kb / 1024 for s in systems if (s, n) in by}
        if len(rss) > 1:
            # Targets (issues 17 and 18): one process <= 80 MB, a media node <= 60 MB at N=20.
            print(f"N={n:<3} RSS MB: " + ", ".join(f"{s} {mb:.1f}" for s, mb in rss.items()))
    if len(ns) > 1:
        low, high = sorted(ns)[-2:]
        print(f"marginal CPU ms per added destination-second (N={low} -> N={high}):")
        for system in systems:
            a, b = by.get((system, low)), by.get((system, high))
            if a is not None and b is not None:
                marginal = (b.cpu_ns / b.window_s - a.cpu_ns / a.window_s) / 1e6 / (high - low)
                print(f"  {system:<11} {marginal:6.3f}")
    top = max(ns)
    ours, nginx_ = by.get(("simulcast", top)), by.get(("nginx-rtmp", top))
    if ours is not None and nginx_ is not None:
        ratio = ours.ms_per_dest_s / nginx_.ms_per_dest_s
        verdict = "meets" if ratio <= 2 else "MISSES"
        print(f"bar (simulcast <= 2x nginx-rtmp at N={top}): {verdict} ({ratio:.2f}x)")


def report_many(results: list[Result], shapes: list[tuple[int, int]]) -> None:
    if not shapes:
        return
    by = {(r.system, r.streams, r.n): r for r in results}
    print()
    print("Many streams (S streams x N destinations), relay on CPU 0")
    print(
        f"{'S x N':>8} {'system':<11} {'ms/dest-s':>10} {'CPU %':>6} {'RSS MB':>8} {'min Mb/s':>8}"
    )
    for streams, n in shapes:
        for system in ("simulcast", "nginx-rtmp"):
            r = by.get((system, streams, n))
            if r is not None:
                print(
                    f"{f'{streams}x{n}':>8} {system:<11} {r.ms_per_dest_s:>10.3f} "
                    f"{r.cpu_percent:>6.1f} {r.rss_kb / 1024:>8.1f} {r.min_mbps:>8.2f}"
                )
        ours, theirs = by.get(("simulcast", streams, n)), by.get(("nginx-rtmp", streams, n))
        if ours is not None and theirs is not None:
            print(f"{'':>8} simulcast/nginx-rtmp CPU {ours.cpu_ns / theirs.cpu_ns:5.2f}x")


def median_runs(results: list[Result]) -> list[Result]:
    """Each system's run with the median CPU per shape (the lower middle one of an even count),
    in the order the shapes first ran."""
    runs: dict[tuple[str, int, int], list[Result]] = {}
    for r in results:
        runs.setdefault((r.system, r.streams, r.n), []).append(r)
    return [
        sorted(group, key=lambda r: r.ms_per_dest_s)[(len(group) - 1) // 2]
        for group in runs.values()
    ]


def report_rounds(results: list[Result], rounds: int) -> None:
    """The simulcast/nginx-rtmp CPU ratio of every round and its median, per shape (and the
    floor's, where it ran): nginx-rtmp's own figure moves by up to a third between runs on a
    shared machine, so one run's ratio is not a verdict."""
    if rounds < 2:
        return
    for system in ("simulcast", "floor"):
        rows = []
        for streams, n in dict.fromkeys((r.streams, r.n) for r in results):
            ours, theirs = (
                [r for r in results if (r.system, r.streams, r.n) == (name, streams, n)]
                for name in (system, "nginx-rtmp")
            )
            if not ours or len(ours) != len(theirs):
                continue
            ratios = [a.ms_per_dest_s / b.ms_per_dest_s for a, b in zip(ours, theirs, strict=True)]
            shape_ = f"N={n}" if streams == 1 else f"{streams}x{n}"
            rounds_ = " ".join(f"{ratio:5.2f}x" for ratio in ratios)
            rows.append(f"{shape_:<8} {rounds_}   median {statistics.median(ratios):5.2f}x")
        if rows:
            print()
            print(f"{system}/nginx-rtmp CPU per round ({rounds} rounds) and the median")
            print("\n".join(rows))


def report_idle(results: list[IdleResult]) -> None:
    if not results:
        return
    print()
    print("Idle RTMP connections (handshake done, then silent)")
    print(
        f"{'system':<11} {'count':>6} {'KB/conn':>8} {'CPU %':>6} {'RSS before':>10} {'after':>7}"
    )
    for r in results:
        print(
            f"{r.system:<11} {r.count:>6} {r.kb_per_connection:>8.1f} {r.cpu_percent:>6.2f} "
            f"{r.rss_before_kb / 1024:>10.1f} {r.rss_after_kb / 1024:>7.1f}"
        )


def shape(text: str) -> tuple[int, int]:
    """``SxN`` as ``(S, N)``."""
    streams, _, n = text.partition("x")
    return int(streams), int(n)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3, help="after every destination is up")
    parser.add_argument("--destinations", default="1,10,20", help="values of N")
    parser.add_argument("--systems", default="simulcast,nginx-rtmp,ffmpeg")
    parser.add_argument("--streams", default="", help="many-streams shapes, e.g. 50x2,10x10")
    parser.add_argument("--idle", type=int, default=0, help="idle connections to hold (e.g. 1000)")
    parser.add_argument(
        "--profile", type=Path, help="py-spy raw profiles of simulcast (max N, each shape)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every shape, systems alternating; the tables show each system's median "
        "run and the ratios of every round",
    )
    parser.add_argument("--json", type=Path, help="also write the results here (every run)")
    args = parser.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat takes a whole number from 1")
    ns = [int(x) for x in args.destinations.split(",") if x]
    shapes = [shape(x) for x in args.streams.split(",") if x]
    systems = args.systems.split(",")
    for tool in ("nginx", "taskset", "ffmpeg"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    if not RTMP_MODULE.exists():
        raise SystemExit(f"{RTMP_MODULE} is required (apt-get install libnginx-mod-rtmp)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("two CPUs are required (relay on CPU 0, the rest on CPU 1)")
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    source = Path(tempfile.gettempdir()) / f"simulcast-bench-relay-{SOURCE_SECONDS}s.flv"
    encode_source(ffmpeg, source)
    expected = source_mbps(source)
    # This script, httpx and the API calls stay off the relay CPU.
    os.sched_setaffinity(0, {int(OTHER_CPU)})

    runners: dict[str, Callable[[Bench, int], Result]] = {
        "nginx-rtmp": run_nginx,
        "ffmpeg": run_ffmpeg,
        "simulcast": run_simulcast,
        "sc-media": run_simulcast_media,
        "floor": run_floor,
    }
    results: list[Result] = []
    idle: list[IdleResult] = []
    widest = max([*ns, *(n for _, n in shapes), 1])
    apps = "\n".join(f"    application m{j} {{ live on; }}" for j in range(widest))
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        work = Path(tmp)
        sink_rtmp, sink_http = free_port(), free_port()
        body = SINK_CONF % {
            "rtmp": sink_rtmp,
            "http": sink_http,
            "dir": work / "sink",
            "apps": apps,
        }
        with nginx(work / "sink", body, OTHER_CPU, sink_rtmp):
            sink = Sink(sink_rtmp, sink_http)
            bench = Bench(ffmpeg, source, sink, work, args.warmup, args.seconds, expected)
            first = bench
            for round_ in range(args.repeat):
                if round_:
                    print(f"round {round_ + 1} of {args.repeat}", flush=True)
                    # Every run makes its own directories under the work directory.
                    bench = replace(first, work=work / f"round-{round_ + 1}")
                    bench.work.mkdir()
                profile = args.profile if round_ == 0 else None
                for n in ns:
                    print(f"N={n}", flush=True)
                    for system in systems:
                        if system == "floor" and n != 1:
                            continue  # one destination is all a byte proxy can feed
                        if system == "simulcast" and profile is not None and n == max(ns):
                            results.append(run_simulcast(bench, n, profile=profile))
                        else:
                            results.append(runners[system](bench, n))
                for streams, n in shapes:
                    print(f"{streams} streams x {n} destinations", flush=True)
                    shape_profile = None
                    if profile is not None:
                        name = f"{profile.stem}-{streams}x{n}{profile.suffix}"
                        shape_profile = profile.with_name(name)
                    results.append(run_simulcast(bench, n, streams, shape_profile))
                    results.append(run_nginx(bench, n, streams))
            if args.idle:
                print(f"{args.idle} idle connections", flush=True)
                idle.append(idle_simulcast(bench, args.idle))
                idle.append(idle_nginx(bench, args.idle))
    medians = median_runs(results)
    report(medians, ns, expected, args.seconds)
    report_many(medians, shapes)
    report_rounds(results, args.repeat)
    report_idle(idle)
    if args.json is not None:
        rows = [
            {
                "system": r.system,
                "streams": r.streams,
                "n": r.n,
                "ms_per_dest_s": round(r.ms_per_dest_s, 4),
                "cpu_percent": round(r.cpu_percent, 2),
                "rss_mb": round(r.rss_kb / 1024, 1),
                "pss_mb": round(r.pss_kb / 1024, 1),
                "min_mbps": round(r.min_mbps, 3),
            }
            for r in results
        ]
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
