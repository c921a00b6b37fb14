"""Benchmark processing instances: CPU per instance vs the same job as one plain ffmpeg command.

    python -m bench.processing [--seconds 15] [--warmup 5] [--jobs encode720,dual1080,player720]

Jobs (each one instance, LIVE, every output to a throwaway ``ffmpeg -listen`` receiver):

- ``encode720``: a 720p30 publish -> ``outputstream`` with ``encoding`` 1280x720 at 2500 kb/s.
  Plain: ``ffmpeg -re -i source -vf scale,format -c:v libx264 ... -f flv rtmp://receiver``.
- ``dual1080``: a 2640x1280 Dual HD publish -> a ``horizontal`` (1920x1080) and a ``vertical``
  (720x1280) output. Plain: one ffmpeg with ``-filter_complex split,crop,crop`` and two outputs.
- ``overlay720``: a 720p30 publish -> ``htmloverlay`` (a scorebug page on loopback) ->
  output (4500 kb/s). Plain: the same overlay as a still PNG (ffmpeg cannot render HTML), so
  Chromium's CPU is simulcast's extra.
- ``player720``: a ``videoplayer`` looping a 720p H.264/AAC MP4 (copied). Plain: ``ffmpeg -re
  -stream_loop -1 -i clip.mp4 -c copy -f flv rtmp://receiver``.

Simulcast's CPU is the engine's (this process, ``time.process_time``) plus every process it
started (ffmpeg workers, Chromium; ``/proc/PID/stat``), over a window after ``--warmup``; the
publisher (``-c copy``) and the receivers are not counted, nor is the plain command's file
reading counted out of it. Reported: CPU as % of one core, output frames per second (per output)
and CPU ms per output frame (the fair figure when a loaded machine keeps a job below real time).
The machine may be shared: these are CPU times, not wall-clock speeds, but a loaded machine still
inflates them somewhat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import imageio_ffmpeg

from simulcast.engine import ElementSpec, InstanceSpec
from simulcast.media.processing import KEYFRAME_SECONDS
from simulcast.node import media_engine
from simulcast.settings import Settings
from tests.support import free_port
from tests.support.media import Authorizer

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
KEY = "c" * 32
TICK = os.sysconf("SC_CLK_TCK")
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high"]


def ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])


def cbr(kbps: int) -> list[str]:
    """The rate control and tuning the processing stage uses, for the plain command."""
    return [
        "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps * 2}k",
        "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
        "-tune", "zerolatency",
        "-x264-params", f"keyint={KEYFRAME_SECONDS * 60}:scenecut=0:nal-hrd=cbr",
        "-c:a", "aac", "-b:a", "128k",
    ]  # fmt: skip


def make_source(work: Path, name: str, size: str, container: str) -> Path:
    """20 s of noisy test pattern at 30 fps + a tone, H.264 (2 s GOP) + AAC, cached."""
    path = work / f"{name}.{container}"
    if not path.exists():
        subprocess.run(
            [
                FFMPEG,
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={size}:rate=30,noise=alls=12:allf=t",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "20",
                "-pix_fmt",
                "yuv420p",
                *X264,
                "-b:v",
                "6000k",
                "-g",
                "60",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                str(path),
            ],
            check=True,
        )
    return path


def descendants(root: int) -> list[int]:
    """Every live process below ``root``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


OVERLAY_PAGE = (
    "<html><body style='margin:0;background:transparent;font:48px sans-serif;color:#fff'>"
    "<div style='position:absolute;left:40px;bottom:40px;padding:16px;background:#c00c'>"
    "HOME 2 - 1 AWAY</div></body></html>"
)


@contextlib.asynccontextmanager
async def overlay_site() -> AsyncIterator[str]:
    """A scorebug page served on loopback (``http.server``); yields its URL."""
    site = Path(tempfile.mkdtemp(prefix="bench-overlay-"))
    (site / "bug.html").write_text(OVERLAY_PAGE)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(site),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{port}/bug.html"
    finally:
        proc.kill()
        await proc.wait()


def overlay_png(work: Path) -> Path:
    """The plain command's overlay: a still PNG of about the page's box (ffmpeg cannot render
    HTML, so the comparison leaves the browser out)."""
    path = work / "bug.png"
    if not path.exists():
        subprocess.run(
            [
                FFMPEG,
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "color=c=0xcc0000@0.8:size=1280x720,format=rgba",
                "-frames:v",
                "1",
                str(path),
            ],
            check=True,
        )
    return path


@contextlib.asynccontextmanager
async def receivers(
    count: int,
) -> AsyncIterator[tuple[list[str], list[asyncio.subprocess.Process]]]:
    """``count`` RTMP URLs, each an ``ffmpeg -listen`` that discards what it gets."""
    procs, urls = [], []
    for _ in range(count):
        url = f"rtmp://127.0.0.1:{free_port()}/app/k"
        procs.append(
            await asyncio.create_subprocess_exec(
                FFMPEG,
                "-hide_banner",
                "-loglevel",
                "error",
                "-listen",
                "1",
                "-i",
                url,
                "-c",
                "copy",
                "-f",
                "null",
                "-",
                stdin=subprocess.DEVNULL,
            )
        )
        urls.append(url)
    await asyncio.sleep(0.5)
    try:
        yield urls, procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def command_name(pid: int) -> str:
    """The process's name (``ffmpeg-linux-x86_64-v9...`` shows as ``ffmpeg``)."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    return "ffmpeg" if name.startswith("ffmpeg") else name


async def window(
    pids: Sequence[int], seconds: float, own: bool, parts: dict[str, float] | None = None
) -> float:
    """CPU seconds of ``pids`` (and of this process when ``own``) over ``seconds``; ``parts``
    gets them by process name (``engine`` for this process)."""
    start = {p: ticks(p) for p in pids}
    start_own = time.process_time()
    await asyncio.sleep(seconds)
    used_own = time.process_time() - start_own if own else 0.0
    used = 0.0
    for pid, before in start.items():
        cpu = (ticks(pid) - before) / TICK
        used += cpu
        if parts is not None:
            name = command_name(pid)
            parts[name] = parts.get(name, 0.0) + cpu
    if parts is not None and own:
        parts["engine"] = used_own
    return used + used_own


async def run_simulcast(job: str, source: Path, args: argparse.Namespace) -> tuple[float, float]:
    """One instance of ``job`` on an in-process engine: (CPU seconds, output fps)."""
    settings = Settings(rtmp_host="127.0.0.1", rtmp_port=0, overlays_allow_private=True)
    engine = media_engine(settings, Authorizer())
    await engine.start()
    outputs = 2 if job == "dual1080" else 1
    publisher = None
    try:
        async with receivers(outputs) as (urls, receiver_procs), overlay_site() as page:
            dests = {f"d{i}": url for i, url in enumerate(urls)}
            elements = simulcast_graph(job, source, page)
            keys = {"inputstream-1": KEY} if job != "player720" else {}
            await engine.start_instance(InstanceSpec("bench", 1, elements, keys, dests))
            await engine.set_outputs("bench", True, None)
            if job != "player720":
                publisher = await asyncio.create_subprocess_exec(
                    FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                    "-i", str(source), "-c", "copy", "-f", "flv",
                    f"rtmp://127.0.0.1:{engine.ingest.port}/inputstream-1/{KEY}",
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            await asyncio.sleep(args.warmup)
            inst = engine._instances._running["bench"]
            workers = [
                e.worker
                for e in (*inst.processing.values(), *inst.elements.values())
                if getattr(e, "worker", None) is not None
            ]
            # Every process this one started (ffmpeg workers, Chromium) but the test rig's.
            rig = {p.pid for p in (publisher, *receiver_procs) if p is not None}
            pids = [p for p in descendants(os.getpid()) if p not in rig]
            frames_before = sum(w.frames_out for w in workers)
            parts: dict[str, float] = {}
            cpu = await window(pids, args.seconds, own=True, parts=parts)
            by_process = ", ".join(
                f"{name} {used / args.seconds * 100:.1f}%"
                for name, used in sorted(parts.items(), key=lambda kv: -kv[1])
            )
            print(f"  {job} simulcast CPU by process (% core): {by_process}", flush=True)
            fps = (sum(w.frames_out for w in workers) - frames_before) / args.seconds / outputs
    finally:
        if publisher is not None:
            publisher.kill()
            await publisher.wait()
        await engine.close()
    return cpu, fps


def simulcast_graph(job: str, source: Path, page: str) -> list[ElementSpec]:
    """The configuration of ``job`` (``page``: the overlay's URL)."""
    if job == "overlay720":
        return [
            ElementSpec("inputstream-1", "inputstream", {}),
            ElementSpec("htmloverlay-1", "htmloverlay", {"url": page}, ["inputstream-1"]),
            ElementSpec("outputstream-1", "outputstream", out("d0"), ["htmloverlay-1"]),
        ]
    if job == "player720":
        player = ElementSpec("videoplayer-1", "videoplayer", {"file": str(source)})
        return [player, ElementSpec("outputstream-1", "outputstream", out("d0"), ["videoplayer-1"])]
    if job == "encode720":
        encoding = {"width": 1280, "height": 720, "videoBitrateKbps": 2500}
        return [
            ElementSpec("inputstream-1", "inputstream", {}),
            ElementSpec(
                "outputstream-1", "outputstream", out("d0", encoding=encoding), ["inputstream-1"]
            ),
        ]
    encoding = {"videoBitrateKbps": 4500}
    return [
        ElementSpec("inputstream-1", "inputstream", {"format": "dualhd-2640"}),
        ElementSpec(
            "outputstream-1",
            "outputstream",
            out("d0", format="horizontal", encoding=encoding),
            ["inputstream-1"],
        ),
        ElementSpec(
            "outputstream-2",
            "outputstream",
            out("d1", format="vertical", encoding=encoding),
            ["inputstream-1"],
        ),
    ]


def out(dest: str, **settings: Any) -> dict[str, Any]:
    return {"destinations": [dest], **settings}


async def run_plain(job: str, source: Path, args: argparse.Namespace) -> tuple[float, float]:
    """The same job as one ffmpeg command: (CPU seconds, output fps from its progress)."""
    outputs = 2 if job == "dual1080" else 1
    async with receivers(outputs) as (urls, _):
        head = [FFMPEG, "-hide_banner", "-loglevel", "error", "-progress", "pipe:1", "-re"]
        head += ["-stream_loop", "-1", "-i", str(source)]
        if job == "player720":
            cmd = [*head, "-c", "copy", "-f", "flv", urls[0]]
        elif job == "overlay720":
            png = overlay_png(source.parent)
            cmd = [*head, "-re", "-loop", "1", "-framerate", "10", "-i", str(png)]
            cmd += ["-filter_complex", "[0:v][1:v]overlay=0:0,format=yuv420p[v]"]
            cmd += ["-map", "[v]", "-map", "0:a", *X264, *cbr(4500), "-f", "flv", urls[0]]
        elif job == "encode720":
            cmd = [*head, "-vf", "scale=1280:720,format=yuv420p", *X264, *cbr(2500)]
            cmd += ["-f", "flv", urls[0]]
        else:
            graph = (
                "[0:v]split=2[a][b];[a]crop=1920:1080:0:0,format=yuv420p[h];"
                "[b]crop=720:1280:1920:0,format=yuv420p[v]"
            )
            cmd = [*head, "-filter_complex", graph]
            cmd += ["-map", "[h]", "-map", "0:a", *X264, *cbr(4500), "-f", "flv", urls[0]]
            cmd += ["-map", "[v]", "-map", "0:a", *X264, *cbr(4500), "-f", "flv", urls[1]]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        progress: dict[str, str] = {}

        async def read() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                key, _, value = line.decode().strip().partition("=")
                progress[key] = value

        reader = asyncio.create_task(read())
        try:
            await asyncio.sleep(args.warmup)
            frames_before = int(progress.get("frame", "0"))
            cpu = await window([proc.pid], args.seconds, own=False)
            fps = (int(progress.get("frame", "0")) - frames_before) / args.seconds
        finally:
            proc.kill()
            await proc.wait()
            reader.cancel()
    return cpu, fps


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--jobs", default="overlay720,encode720,dual1080,player720")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "simulcast-bench-processing"
    work.mkdir(exist_ok=True)
    sources = {
        "encode720": make_source(work, "src720", "1280x720", "flv"),
        "overlay720": make_source(work, "src720", "1280x720", "flv"),
        "dual1080": make_source(work, "dualhd2640", "2640x1280", "flv"),
        "player720": make_source(work, "clip720", "1280x720", "mp4"),
    }
    print(f"{'job':<10} {'system':<9} {'CPU % core':>10} {'out fps':>8} {'CPU ms/frame':>12}")
    for job in args.jobs.split(","):
        rows = []
        for system, run in (("simulcast", run_simulcast), ("ffmpeg", run_plain)):
            cpu, fps = await run(job, sources[job], args)
            pct = cpu / args.seconds * 100
            outputs = 2 if job == "dual1080" else 1
            per_frame = cpu * 1000 / (fps * outputs * args.seconds) if fps else float("inf")
            rows.append((pct, per_frame))
            print(f"{job:<10} {system:<9} {pct:>10.1f} {fps:>8.1f} {per_frame:>12.1f}", flush=True)
        ratio = rows[0][0] / rows[1][0] if rows[1][0] > 0 else float("inf")
        per_frame_ratio = rows[0][1] / rows[1][1] if rows[1][1] > 0 else float("inf")
        print(f"{job:<10} ratio     {ratio:>9.2f}x {'':>8} {per_frame_ratio:>11.2f}x", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
