"""Benchmark self-hosted HLS: live-edge latency, and delivery throughput side by side with nginx.

1. Latency: ffmpeg publishes in real time (``-re``), so a frame at media time ``t`` leaves the
   publisher at ``T0 + t`` (``T0``: ffmpeg launch, which makes the figures conservative: they
   include ffmpeg's start, the RTMP handshake and x264's buffering). The playlist is polled every
   20 ms; for each new segment, ``first frame -> playable`` is ``appeared - (T0 + segment start)``
   (what a viewer at the very edge waits for the oldest frame of the newest segment) and
   ``last frame -> playable`` is ``appeared - (T0 + segment end)`` (the packager's own delay).
2. Delivery: ``wrk`` (pinned to CPU 1) pulls the playlist and the newest segments, alternating
   as players do, from ``simulcast serve`` (one worker, pinned to CPU 0) and then from nginx
   (one worker, pinned to CPU 0) serving the same files from the HLS directory.

    python -m bench.hls [--seconds 10] [--connections 64] [--segment-seconds 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import imageio_ffmpeg
import m3u8

from bench.api import LATENCY_UNITS
from tests.support import ServerProcess, free_port, make_server

SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""
NGINX_CONF = """
worker_processes 1;
error_log %(dir)s/error.log;
pid %(dir)s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { application/vnd.apple.mpegurl m3u8; video/mp4 mp4 m4s; }
  client_body_temp_path %(dir)s/tmp;
  proxy_temp_path %(dir)s/tmp;
  fastcgi_temp_path %(dir)s/tmp;
  uwsgi_temp_path %(dir)s/tmp;
  scgi_temp_path %(dir)s/tmp;
  server {
    listen 127.0.0.1:%(port)d;
    location /hls/ { alias %(root)s/; }
  }
}
"""


def publish(server: ServerProcess, stream_key: str, seconds: int) -> subprocess.Popen[bytes]:
    """ffmpeg publishing 720p30 H.264 (~3 Mb/s) + AAC in real time, pinned to CPU 1."""
    cmd = ["taskset", "-c", "1", imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i", "sine"]
    cmd += ["-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"]
    cmd += ["-b:v", "3M", "-g", "60", "-c:a", "aac", "-f", "flv", server.rtmp_url(stream_key)]
    return subprocess.Popen(cmd)


def measure_latency(
    playlist_url: str, launched: float, segments: int
) -> tuple[list[float], list[float]]:
    """(first frame -> playable, last frame -> playable) seconds for ``segments`` segments."""
    seen: dict[str, float] = {}
    firsts: list[float] = []
    lasts: list[float] = []
    media_start = 0.0
    with httpx.Client(timeout=5) as client:
        while len(firsts) < segments:
            response = client.get(playlist_url)
            now = time.time()
            if response.status_code == 200:
                for segment in m3u8.loads(response.text).segments:
                    if segment.uri in seen:
                        continue
                    seen[segment.uri] = now
                    if len(seen) == 1:
                        media_start = 0.0  # the first segment starts the media timeline
                    firsts.append(now - (launched + media_start))
                    media_start += segment.duration
                    lasts.append(now - (launched + media_start))
            time.sleep(0.02)
    return firsts, lasts


def run_wrk(base: str, paths: list[str], seconds: int, connections: int) -> tuple[float, float]:
    """Throughput (Gb/s) and p99 latency (ms) of wrk alternating over ``paths``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ", ".join(f'"{p}"' for p in paths))
    cmd = ["taskset", "-c", "1", "wrk", "-t", "1", "-c", str(connections)]
    cmd += ["-d", f"{seconds}s", "--latency", "-s", script.name, base]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    if "Non-2xx" in out:
        raise SystemExit(f"{base}: non-2xx responses\n{out}")
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert transfer is not None and p99 is not None, out
    gbps = float(transfer.group(1)) * SIZE_UNITS[transfer.group(2)] * 8 / 1e9
    return gbps, float(p99.group(1)) * LATENCY_UNITS[p99.group(2)]


def pin(pid: int, cpu: int) -> None:
    subprocess.run(["taskset", "-apc", str(cpu), str(pid)], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--latency-segments", type=int, default=10)
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # nginx workers drop privileges and must read the files
        server = make_server(
            Path(tmp),
            log_level="WARNING",
            hls_segment_seconds=str(args.segment_seconds),
            hls_memory_segments="64",
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
                            "config": {"mode": "production", "dvrWindowSeconds": 120},
                        }
                    ],
                },
            ).json()
            dest = created["destinations"][0]
            pk, token = dest["apiKey"], dest["playbackToken"]
            playlist_path = f"/hls/{token}/index.m3u8?apiKey={pk}"
            total = int(args.latency_segments * args.segment_seconds + args.seconds * 2 + 30)
            launched = time.time()
            publisher = publish(server, created["streamKey"], total)
            firsts, lasts = measure_latency(
                server.base_url + playlist_path, launched, args.latency_segments
            )

            text = httpx.get(server.base_url + playlist_path).text
            names = [s.uri.split("?")[0] for s in m3u8.loads(text).segments][-4:]
            paths: list[str] = []
            for name in names:
                paths += [playlist_path, f"/hls/{token}/{name}?apiKey={pk}"]
            run_wrk(server.base_url, paths, 2, args.connections)  # warm-up
            ours = run_wrk(server.base_url, paths, args.seconds, args.connections)

            # nginx serves the same files: the segments on disk and a copy of the playlist.
            channel_dir = next((server.data_dir / "hls").glob(f"{dest['id']}-*"))
            (channel_dir / "index.m3u8").write_text(text)
            nginx_dir = Path(tmp) / "nginx"
            (nginx_dir / "tmp").mkdir(parents=True)
            port = free_port()
            conf = nginx_dir / "nginx.conf"
            conf.write_text(NGINX_CONF % {"dir": nginx_dir, "port": port, "root": channel_dir})
            cmd = ["taskset", "-c", "0", "nginx", "-c", str(conf), "-p", str(nginx_dir)]
            nginx = subprocess.Popen([*cmd, "-g", "daemon off;"])
            try:
                time.sleep(0.5)
                static = [p.split("?")[0].replace(f"/hls/{token}/", "/hls/") for p in paths]
                nginx_base = f"http://127.0.0.1:{port}"
                run_wrk(nginx_base, static, 2, args.connections)
                theirs = run_wrk(nginx_base, static, args.seconds, args.connections)
            finally:
                nginx.terminate()
                nginx.wait()
            sizes = [len(httpx.get(server.base_url + p).content) for p in paths[1::2]]
        finally:
            if publisher is not None:
                publisher.terminate()
                publisher.wait()
            server.stop()

    print(f"segments: {args.segment_seconds:g} s target, 720p30 ~3 Mb/s, ffmpeg -re")
    print(f"{'live-edge latency (s)':34} {'median':>8} {'max':>8}")
    print(f"{'first frame -> playable':34} {statistics.median(firsts):8.2f} {max(firsts):8.2f}")
    print(f"{'last frame -> playable':34} {statistics.median(lasts):8.2f} {max(lasts):8.2f}")
    print()
    print(f"delivery: {args.connections} connections, playlist + newest {len(names)} segments")
    print(f"(segment sizes {min(sizes) // 1024}-{max(sizes) // 1024} KiB), {args.seconds} s each")
    print(f"{'server':34} {'Gb/s':>8} {'p99 ms':>8}")
    print(f"{'simulcast /hls (1 worker)':34} {ours[0]:8.2f} {ours[1]:8.2f}")
    print(f"{'nginx static (1 worker)':34} {theirs[0]:8.2f} {theirs[1]:8.2f}")
    print(f"simulcast/nginx throughput ratio: {ours[0] / theirs[0]:.2f}")


if __name__ == "__main__":
    main()
