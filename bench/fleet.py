"""A fleet's figures (issue 17): status requests per second through 2 API nodes vs 1, the
destinations 4 media nodes sustain on this machine vs 1, and resident memory of each role.

    python -m bench.fleet [--modes rss,status,capacity] [--seconds 10] [--repeat 2]
                          [--concurrency 8] [--ladder 20,40,80,120] [--settle 3]
                          [--relay-seconds 15]

Every mode starts real ``simulcast serve`` processes on loopback against a fresh PostgreSQL
database (127.0.0.1:5432) and Redis (127.0.0.1:6379, a namespace of its own).

- ``status``: one media node relays a live stream; ``GET /api/streams/{id}`` (its live state
  comes from the media node's snapshot) is requested by two load processes, each with
  ``--concurrency`` requests in flight for ``--seconds``: both against one API node, then one
  process per API node. Reported: requests/s of each layout and the ratio, ``--repeat`` times
  in alternating order.
- ``capacity``: total destinations (rtmp, on one nginx-rtmp sink) in ``--ladder`` steps, split
  evenly over 1 media node, then over 4, one publisher per node (``bench/relay.py``'s 720p30
  ~4.5 Mb/s source, ``-c copy``). A step is sustained when every destination received >= 80 %
  of the source bitrate over the window; capacity is the largest sustained step. The media
  node's RSS at 20 destinations (one node) is reported too.
- ``rss``: idle RSS of ``--role all``, ``api`` and ``media``, then of the media node relaying
  one 320x240 stream to one ``self-hosted`` destination.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from pathlib import Path

import httpx
import imageio_ffmpeg

from bench import relay
from simulcast.control.secretbox import new_key
from tests.support import ServerProcess, free_port, fresh_postgres_database, make_server

FENCED = "lease not renewed"
"""What a media node logs when it stops its sessions because its heartbeat came too late."""


def rss_mb(server: ServerProcess) -> float:
    """The server process's resident set, in MB."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Fleet:
    """Nodes of one fleet (one database, Redis namespace and secret key) under ``tmp``."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp = tmp
        self.url = database_url
        self.shared = {
            "redis_url": "redis://127.0.0.1:6379/0",
            "bus_prefix": f"bench{secrets.token_hex(3)}",
            "secret_key": new_key(),
            "log_level": "WARNING",
            "rate_limit_per_minute": "10000000",
            "cost_per_platform": "0",
            "bandwidth_overage_sats_per_gb": "0",
            "max_destinations_per_stream": "1000",  # one node's one stream takes every step
        }
        self.servers: dict[str, ServerProcess] = {}

    def start(self, role: str, name: str) -> ServerProcess:
        server = make_server(
            self.tmp / name, database_url=self.url, role=role, node_id=name, **self.shared
        )
        server.data_dir.mkdir()
        server.start(within=300)  # the benchmark waits out a loaded machine
        self.servers[name] = server
        return server

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()

    def api_key(self, api_node: ServerProcess) -> str:
        out = api_node.cli("accounts", "create", f"bench-{secrets.token_hex(3)}", "--admin")
        return next(ln.split()[-1] for ln in out.splitlines() if "sk_" in ln)


@contextlib.contextmanager
def fleet() -> Iterator[Fleet]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    with fresh_postgres_database() as url:
        nodes = Fleet(tmp, url)
        try:
            yield nodes
        finally:
            nodes.close()


def small_publisher(server: ServerProcess, key: str, seconds: float) -> subprocess.Popen[bytes]:
    """A 320x240 test stream encoded live (for the modes that do not measure the relay)."""
    return subprocess.Popen(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
            "-f", "flv", server.rtmp_url(key),
        ]
    )  # fmt: skip


# --- rss --------------------------------------------------------------------------------------


def run_rss(args: argparse.Namespace) -> None:
    with fleet() as nodes:
        for role in ("all", "api", "media"):
            nodes.start(role, role)
        time.sleep(args.settle)
        for role, server in nodes.servers.items():
            print(f"idle --role {role}: {rss_mb(server):.1f} MB")
        api = httpx.Client(
            base_url=nodes.servers["api"].base_url + "/api",
            headers={"X-API-Key": nodes.api_key(nodes.servers["api"])},
        )
        body = {"label": "bench", "destinations": [{"type": "self-hosted"}]}
        stream = api.post("/streams", json=body).json()
        pub = small_publisher(nodes.servers["media"], stream["streamKey"], args.relay_seconds + 10)
        try:
            time.sleep(args.relay_seconds)
            print(f"--role media relaying 1 stream (HLS): {rss_mb(nodes.servers['media']):.1f} MB")
        finally:
            pub.kill()
            pub.wait()


# --- status -----------------------------------------------------------------------------------


def _load(
    url: str, key: str, seconds: float, concurrency: int, out: Queue[tuple[int, int]]
) -> None:
    """One load process: ``concurrency`` clients requesting ``url`` back to back."""

    async def run() -> tuple[int, int]:
        ok = errors = 0
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(headers={"X-API-Key": key}, limits=limits) as client:

            async def worker() -> None:
                nonlocal ok, errors
                while time.monotonic() < deadline:
                    response = await client.get(url, timeout=10)
                    if response.status_code == 200 and response.json()["status"] == "active":
                        ok += 1
                    else:
                        errors += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok, errors

    out.put(asyncio.run(run()))


def requests_per_second(urls: list[str], key: str, seconds: float, concurrency: int) -> float:
    """Total answered (200, live) requests/s of one load process per URL in ``urls``."""
    ctx = multiprocessing.get_context("spawn")
    out: Queue[tuple[int, int]] = ctx.Queue()
    procs = [ctx.Process(target=_load, args=(u, key, seconds, concurrency, out)) for u in urls]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join()
    errors = sum(e for _, e in results)
    if errors:
        print(f"  ({errors} requests not answered 200/active)")
    return sum(ok for ok, _ in results) / seconds


def run_status(args: argparse.Namespace) -> None:
    with fleet() as nodes:
        api_1, api_2 = nodes.start("api", "api-1"), nodes.start("api", "api-2")
        media = nodes.start("media", "media-1")
        key = nodes.api_key(api_1)
        api = httpx.Client(base_url=api_1.base_url + "/api", headers={"X-API-Key": key})
        body = {"label": "bench", "destinations": [{"type": "self-hosted"}]}
        stream = api.post("/streams", json=body).json()
        total = (args.seconds + 2) * args.repeat * 2 + 60
        pub = small_publisher(media, stream["streamKey"], total)
        try:
            path = f"/api/streams/{stream['id']}"
            while api.get(path.removeprefix("/api")).json()["status"] != "active":
                time.sleep(0.5)
            one = [api_1.base_url + path] * 2
            two = [api_1.base_url + path, api_2.base_url + path]
            for i in range(args.repeat):
                layouts = [("1 API node", one), ("2 API nodes", two)]
                rates = {}
                for name, urls in layouts if i % 2 == 0 else layouts[::-1]:
                    rates[name] = requests_per_second(urls, key, args.seconds, args.concurrency)
                    print(f"  run {i + 1}: {name}: {rates[name]:.0f} req/s", flush=True)
                ratio = rates["2 API nodes"] / rates["1 API node"]
                print(f"status endpoint, run {i + 1}: 2 API nodes / 1 = {ratio:.2f}x", flush=True)
        finally:
            pub.kill()
            pub.wait()


# --- capacity ---------------------------------------------------------------------------------


def sustained(
    nodes: Fleet,
    api: httpx.Client,
    media: list[ServerProcess],
    total: int,
    bench: relay.Bench,
    rss_of: ServerProcess | None = None,
) -> tuple[bool, float, float]:
    """Relay ``total`` destinations split over ``media`` (one stream, one publisher each):
    whether every destination kept >= 80 % of the source bitrate, the slowest one's Mb/s, and
    ``rss_of``'s RSS while relaying."""
    per_node = total // len(media)
    logged = {node.data_dir.name: len(node.log()) for node in media}
    names: list[str] = []
    publishers = []
    for i, node in enumerate(media):
        dests = [f"m{j}/k{len(media)}d{total}_{i}" for j in range(per_node)]
        names += dests
        body = {
            "label": f"cap-{total}-{i}",
            "destinations": [
                {"type": "rtmp", "config": {"url": bench.sink.key_url(d)}} for d in dests
            ],
        }
        created = api.post("/streams", json=body)
        created.raise_for_status()
        url = node.rtmp_url(created.json()["streamKey"])
        publishers.append(relay.publisher(bench.ffmpeg, bench.source, url))
    with relay.running(publishers, relay.STAGGER):
        try:
            bench.sink.wait_receiving(names, timeout=60)
        except SystemExit as missing:
            print(f"  {missing}")
            return False, 0.0, 0.0
        time.sleep(bench.warmup)
        try:
            before = bench.sink.bytes_in()
            t0 = time.monotonic()
            time.sleep(bench.window)
            after = bench.sink.bytes_in()
        except httpx.HTTPError as exc:
            # The one nginx sink (on one CPU) is then the bottleneck: nothing measured.
            print(f"  the sink's stat page did not answer ({exc!r}): step not measured")
            return False, 0.0, 0.0
        rss = rss_mb(rss_of) if rss_of is not None else 0.0
        elapsed = time.monotonic() - t0
    rates = relay.delivery_mbps(before, after, names, elapsed)
    slowest = min(rates)
    # A node too busy to renew its lease in time stops its sessions (fencing): say so, it is
    # what a shortfall then means.
    fenced = [n.data_dir.name for n in media if FENCED in n.log()[logged[n.data_dir.name] :]]
    if fenced:
        print(f"  {', '.join(fenced)}: lease not renewed in time, sessions stopped (fencing)")
    return slowest >= relay.MIN_DELIVERY * bench.expected_mbps, slowest, rss


def run_capacity(args: argparse.Namespace) -> None:
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    source = Path(tempfile.gettempdir()) / f"simulcast-bench-relay-{relay.SOURCE_SECONDS}s.flv"
    relay.encode_source(ffmpeg, source)
    expected = relay.source_mbps(source)
    ladder = [int(x) for x in args.ladder.split(",") if x]
    with fleet() as nodes:
        api_node = nodes.start("api", "api-1")
        media = [nodes.start("media", f"media-{i}") for i in range(1, 5)]
        key = nodes.api_key(api_node)
        api = httpx.Client(
            base_url=api_node.base_url + "/api", headers={"X-API-Key": key}, timeout=30
        )
        rtmp_port, http_port = free_port(), free_port()
        apps = "\n".join(f"    application m{j} {{ live on; }}" for j in range(max(ladder)))
        sink_dir = nodes.tmp / "sink"
        conf = relay.SINK_CONF % {
            "rtmp": rtmp_port,
            "http": http_port,
            "apps": apps,
            "dir": sink_dir,
        }
        with relay.nginx(sink_dir, conf, relay.OTHER_CPU, rtmp_port):
            bench = relay.Bench(
                ffmpeg=ffmpeg,
                source=source,
                sink=relay.Sink(rtmp_port, http_port),
                work=nodes.tmp,
                warmup=args.settle,
                window=args.seconds,
                expected_mbps=expected,
            )
            print(f"source {expected:.2f} Mb/s; a step is sustained at >= 80 % everywhere")
            capacity = {}
            for count in (1, 4):
                capacity[count] = 0
                for total in ladder:
                    rss_of = media[0] if count == 1 and total == 20 else None
                    ok, slowest, rss = sustained(nodes, api, media[:count], total, bench, rss_of)
                    extra = f", media node RSS {rss:.1f} MB" if rss_of else ""
                    print(
                        f"  {count} media node(s), {total} destinations: slowest "
                        f"{slowest:.2f} Mb/s -> {'sustained' if ok else 'NOT sustained'}{extra}",
                        flush=True,
                    )
                    if not ok:
                        break
                    capacity[count] = total
            print(
                f"capacity: 1 media node {capacity[1]} destinations, 4 media nodes "
                f"{capacity[4]} (ladder {args.ladder}; 0 = not even the first step)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="rss,status,capacity")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--settle", type=float, default=3.0, help="warm-up before a window")
    parser.add_argument("--relay-seconds", type=float, default=15.0, help="rss: relaying time")
    parser.add_argument("--repeat", type=int, default=2, help="status: runs of both layouts")
    parser.add_argument("--concurrency", type=int, default=8, help="status: per load process")
    parser.add_argument("--ladder", default="20,40,80,120", help="capacity: total destinations")
    args = parser.parse_args()
    runs = {"rss": run_rss, "status": run_status, "capacity": run_capacity}
    for mode in args.modes.split(","):
        print(f"== {mode}", flush=True)
        runs[mode](args)


if __name__ == "__main__":
    main()
