"""Benchmark low-latency HLS: 1000 viewers blocked on one stream's next part.

A ``simulcast serve`` (pinned to CPU 0, ``DEBUG`` logging so the channel logs each part the
moment it becomes available, on the server's clock) packages a 720p30 publish (ffmpeg ``-re``,
2 s GOP, CPU 1). A separate client process (CPU 1, one asyncio loop, raw HTTP/1.1 over
keep-alive connections) runs ``--viewers`` viewers; each asks for the part its last playlist's
``EXT-X-PRELOAD-HINT`` names (``_HLS_msn``/``_HLS_part``, with ``_HLS_skip=YES`` as hls.js does)
and, answered, asks for the next one. Viewers do not download the parts: the figure is the
blocking-reload path itself.

Part delivery delay = the client's clock when an answer's last byte arrived minus the server
log's timestamp of that part (one machine, one clock), counted only for requests sent before the
part existed (truly held ones). Reported: p50/p99/max over all of them, the answers per part,
and the server's CPU over the window (on-CPU time of its threads from ``/proc``).

    python -m bench.llhls [--viewers 1000] [--seconds 20] [--part-target 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.hls import pin, publish
from tests.support import make_server

HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[0-9a-f]{8}-(\d+)\.(\d+)\.m4s')
AVAILABLE = re.compile(r"^(\S+ \S+) DEBUG simulcast\.outputs\.hls: hls \S+ part (\d+)\.(\d+) ")


async def viewer(
    host: str, port: int, path: str, until: float, records: list[tuple[int, int, float, float]]
) -> None:
    """One viewer's loop of blocking reloads; appends (msn, part, sent, answered) per answer."""
    reader, writer = await asyncio.open_connection(host, port)
    query = ""
    try:
        while time.time() < until:
            sent = time.time()
            writer.write(f"GET {path}{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1"))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            body = await reader.readexactly(length)
            answered = time.time()
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"viewer got {head.splitlines()[0]!r}: {body[:200]!r}")
            if query:
                msn, part = (int(v) for v in re.findall(rb"=(\d+)", query.encode())[:2])
                records.append((msn, part, sent, answered))
            hint = HINT.search(body)
            assert hint is not None, body[-300:]
            query = f"&_HLS_msn={int(hint[1])}&_HLS_part={int(hint[2])}&_HLS_skip=YES"
    finally:
        writer.close()


async def clients(base: str, path: str, viewers: int, seconds: float) -> None:
    """The client process: ``viewers`` viewers for ``seconds``; records as JSON on stdout."""
    url = httpx.URL(base)
    until = time.time() + seconds
    records: list[tuple[int, int, float, float]] = []
    await asyncio.gather(
        *(viewer(url.host, url.port or 80, path, until, records) for _ in range(viewers))
    )
    json.dump(records, sys.stdout)


def available_times(log: str) -> dict[tuple[int, int], float]:
    """(msn, part) -> unix time the server logged it available."""
    result = {}
    for line in log.splitlines():
        match = AVAILABLE.match(line)
        if match:
            moment = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            result[(int(match[2]), int(match[3]))] = moment
    return result


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(on-CPU, waiting to run) seconds of every thread of ``pid`` so far (schedstat, ns)."""
    running = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
            running, waiting = running + int(fields[0]), waiting + int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return running / 1e9, waiting / 1e9


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--part-target", type=float, default=0.5)
    parser.add_argument("--client", nargs=2, metavar=("BASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(clients(args.client[0], args.client[1], args.viewers, args.seconds))
        return
    if not shutil.which("taskset"):
        raise SystemExit("taskset is required")
    with tempfile.TemporaryDirectory() as tmp:
        server = make_server(
            Path(tmp),
            log_level="DEBUG",
            hls_part_target_seconds=str(args.part_target),
        )
        server.start()
        assert server.proc is not None
        pin(server.proc.pid, 0)
        publisher: subprocess.Popen[bytes] | None = None
        try:
            sk = server.create_account()
            created = httpx.post(
                server.base_url + "/api/streams",
                headers={"Authorization": f"Bearer {sk}"},
                json={
                    "label": "bench",
                    "destinations": [
                        {
                            "type": "self-hosted",
                            "config": {"mode": "production", "dvrWindowSeconds": 60},
                        }
                    ],
                },
            ).json()
            dest = created["destinations"][0]
            path = f"/hls/{dest['playbackToken']}/index.m3u8?apiKey={dest['apiKey']}"
            publisher = publish(server, created["streamKey"], int(args.seconds + 60))
            deadline = time.monotonic() + 30
            while "#EXT-X-PRELOAD-HINT" not in httpx.get(server.base_url + path).text:
                if time.monotonic() > deadline:
                    raise SystemExit("no low-latency playlist:\n" + server.log()[-2000:])
                time.sleep(0.2)
            cpu_before, wall_before = cpu_seconds(server.proc.pid), time.monotonic()
            client = subprocess.run(
                [
                    *("taskset", "-c", "1", sys.executable, "-m", "bench.llhls"),
                    *("--viewers", str(args.viewers), "--seconds", str(args.seconds)),
                    *("--client", server.base_url, path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            cpu_after, wall = cpu_seconds(server.proc.pid), time.monotonic() - wall_before
            cpu = (cpu_after[0] - cpu_before[0]) / wall
            runnable = (cpu_after[1] - cpu_before[1]) / wall
            records = json.loads(client.stdout)
            available = available_times(server.log())
        finally:
            if publisher is not None:
                publisher.terminate()
                publisher.wait()
            server.stop()

    delays = []
    per_part: dict[tuple[int, int], int] = {}
    for msn, part, sent, answered in records:
        made = available.get((msn, part))
        if made is None or sent >= made:
            continue  # asked after the part existed: answered at once, not a held request
        delays.append((answered - made) * 1000)
        per_part[(msn, part)] = per_part.get((msn, part), 0) + 1
    if not delays:
        raise SystemExit("no held request was answered")
    print(
        f"{args.viewers} viewers, blocking reload with _HLS_skip=YES, part target "
        f"{args.part_target} s, 720p30 ~3 Mb/s 2 s GOP, {args.seconds:g} s"
    )
    print(f"answers: {len(records)}, held then answered: {len(delays)} over {len(per_part)} parts")
    print(f"(median {statistics.median(per_part.values()):.0f} viewers per part)")
    print(f"{'part delivery delay (ms)':28} {'p50':>8} {'p99':>8} {'max':>8}")
    print(
        f"{'available -> answered':28} {percentile(delays, 0.5):8.1f} "
        f"{percentile(delays, 0.99):8.1f} {max(delays):8.1f}"
    )
    print(
        f"server during the window: on CPU {cpu * 100:.0f} % of one core, waiting for a CPU "
        f"{runnable * 100:.0f} %; {len(records) / args.seconds:.0f} answers/s, "
        f"{cpu * args.seconds / len(records) * 1000:.2f} ms CPU per answer"
    )


if __name__ == "__main__":
    main()
