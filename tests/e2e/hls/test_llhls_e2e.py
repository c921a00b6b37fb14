"""Low-latency HLS end to end: ffmpeg publishes (2 s keyframes, the wall clock burned in) to
``simulcast serve``; HTTP clients exercise parts, blocking reloads and delta updates, and the
embeddable player in headless Chromium measures its latency against a regular-HLS destination.

Latency is measured as ``Date.now()`` minus hls.js's ``playingDate`` (the playing position's
``EXT-X-PROGRAM-DATE-TIME``, stamped when the media reached the server): glass-to-glass latency
minus the publisher's own delay. The figures are printed (``-s``); only their order is asserted.
Runs in file order against one session; the stalled-publisher test must stay last.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import m3u8
import pytest

from tests.support import ServerProcess, make_server, publisher, wait_for
from tests.support.browser import ARGS, CHROMIUM, HAVE_CHROMIUM
from tests.support.hls import create_stream, metered_bytes

pytestmark = pytest.mark.media

SEGMENT_SECONDS = 2  # the server's default, with the publisher's 2 s keyframe interval
PART = re.compile(r'#EXT-X-PART:DURATION=[0-9.]+,URI="([^"?]+)[^"]*"')


@dataclass
class Session:
    server: ServerProcess
    publisher: subprocess.Popen[bytes]
    ll: dict[str, str]  # apiKey, playbackToken, id of the low-latency destination
    regular: dict[str, str]  # the same stream with lowLatency off

    def url(self, name: str = "index.m3u8", dest: dict[str, str] | None = None) -> str:
        return f"{self.server.base_url}/hls/{(dest or self.ll)['playbackToken']}/{name}"

    def get(self, name: str = "index.m3u8", **params: str | int) -> httpx.Response:
        query = {"apiKey": self.ll["apiKey"], **params}
        return httpx.get(self.url(name), params=query, timeout=30)


def last_part(text: str) -> tuple[int, int]:
    """(msn, part index) of the last part listed."""
    names = PART.findall(text)
    msn, part = names[-1].split("-")[1].removesuffix(".m4s").split(".")
    return int(msn), int(part)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    # A stalled publisher stays live for longer than a blocking request may wait (3 x 2 s).
    server = make_server(
        tmp_path_factory.mktemp("llhls"),
        rtmp_publish_stall_seconds="30",
        bandwidth_flush_seconds="1",  # the metering test waits for flushes
    )
    server.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        sk = server.create_account(sats=1_000_000)
        body = create_stream(
            server,
            sk,
            "LL-HLS",
            {"type": "self-hosted", "config": {"mode": "production"}},
            {"type": "self-hosted", "config": {"mode": "production", "lowLatency": False}},
            # No slate when the publisher stalls: the stalled-publisher test needs silence.
            protection={"enabled": False},
        )
        ll, regular = body["destinations"]
        shown = httpx.get(
            f"{server.base_url}/api/streams/{body['id']}", headers={"X-API-Key": sk}
        ).json()["destinations"]
        assert [d["lowLatency"] for d in shown] == [True, False]
        proc = publisher(server, body["streamKey"], 150, keyframe_seconds=2, clock=True)
        live = Session(server, proc, ll, regular)
        wait_for(
            lambda: "#EXT-X-PART:" in live.get().text and live.get().text.count("#EXTINF") >= 2,
            30,
            "a low-latency playlist",
        )
        yield live
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(10)
        server.stop()


def test_playlists_with_and_without_parts(session: Session) -> None:
    text = session.get().text
    parsed = m3u8.loads(text)
    assert parsed.server_control.can_block_reload == "YES"
    assert parsed.server_control.part_hold_back == pytest.approx(1.5, abs=0.1)
    assert parsed.part_inf.part_target == pytest.approx(0.5, abs=0.05)
    assert parsed.preload_hint.uri.endswith(f"?apiKey={session.ll['apiKey']}")
    assert all(s.program_date_time for s in parsed.segments if s.uri)
    independent = [p for s in parsed.segments for p in s.parts if p.independent == "YES"]
    assert independent
    # Every part is fetchable, with the viewer's key only, and is a CMAF fragment.
    part = httpx.get(f"{session.url()}/../{independent[-1].uri}")
    assert part.status_code == 200 and part.content[4:8] == b"moof"
    assert part.headers["cache-control"] == "public, max-age=31536000, immutable"
    name = independent[-1].uri.split("?")[0]
    assert httpx.get(session.url(name)).status_code == 401
    # The regular destination of the same stream: no parts, no blocking reload.
    regular = httpx.get(
        session.url(dest=session.regular), params={"apiKey": session.regular["apiKey"]}
    ).text
    assert "#EXT-X-PART" not in regular and "SERVER-CONTROL" not in regular
    assert regular.count("#EXTINF") >= 2


def test_blocking_reload_answers_when_the_next_part_exists(session: Session) -> None:
    delays = []
    for _ in range(6):
        msn, part = last_part(session.get().text)
        started = time.monotonic()
        answer = session.get(_HLS_msn=msn, _HLS_part=part + 1)
        delays.append(time.monotonic() - started)
        assert answer.status_code == 200, answer.text
        # The answer holds the asked part, or the segment ended and the next one began.
        assert last_part(answer.text) > (msn, part), answer.text
    # Each request was held, then answered within about one part (0.5 s) of being asked.
    assert max(delays) < 3 * SEGMENT_SECONDS
    print(f"\nblocking reloads answered after {[round(d, 2) for d in delays]} s")


def test_preload_hint_part_is_served_once_written(session: Session) -> None:
    hint = m3u8.loads(session.get().text).preload_hint.uri
    answer = httpx.get(f"{session.url()}/../{hint}", timeout=30)
    assert answer.status_code == 200 and answer.content[4:8] == b"moof"


def test_directives_too_far_ahead_or_malformed_are_400(session: Session) -> None:
    msn, part = last_part(session.get().text)
    for params in (
        {"_HLS_msn": msn + 5},
        {"_HLS_msn": msn, "_HLS_part": part + 20},
        {"_HLS_part": 0},
        {"_HLS_msn": "x"},
        {"_HLS_skip": "NO"},
    ):
        answer = session.get(**params)  # type: ignore[arg-type]
        assert answer.status_code == 400, (params, answer.text)
        assert "error" in answer.json()


def test_parts_and_blocking_playlists_are_metered_exactly(session: Session) -> None:
    def stored() -> int:
        return metered_bytes(session.server, session.ll["id"])

    time.sleep(2.5)  # earlier tests' counts reach the database (flushed every second here)
    before = stored()
    text = session.get().text
    served = len(text.encode())
    msn, part = last_part(text)
    blocked = session.get(_HLS_msn=msn, _HLS_part=part + 1)
    served += len(blocked.content)
    for name in PART.findall(blocked.text)[-3:]:
        served += len(session.get(name).content)
    wait_for(lambda: stored() - before == served, 10, f"{served} bytes metered")


def latencies(
    session: Session, dests: list[dict[str, str]], seconds: float
) -> list[tuple[list[float], int]]:
    """Play each of ``dests`` in the embeddable player, side by side in one browser (the same
    moments of the same stream): per destination, latency samples (s) and part requests made."""
    sync_api = pytest.importorskip("playwright.sync_api")
    parts = [0] * len(dests)

    def seen(index: int) -> Callable[[object], None]:
        def count(request: object) -> None:
            parts[index] += bool(re.search(r"-\d+\.\d+\.m4s", request.url))  # type: ignore[attr-defined]

        return count

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pages = []
            for index, dest in enumerate(dests):
                page = browser.new_page()
                page.on("request", seen(index))
                page.goto(f"{session.server.base_url}/player?apiKey={dest['apiKey']}")
                pages.append(page)
            for page in pages:
                page.wait_for_function(
                    "() => window.simulcastHls && window.simulcastHls.playingDate"
                    " && document.getElementById('video').currentTime > 0",
                    timeout=30_000,
                )
            pages[0].wait_for_timeout(5_000)  # settle at the player's distance from the edge
            samples: list[list[float]] = [[] for _ in dests]
            for _ in range(int(seconds * 2)):
                for page, got in zip(pages, samples, strict=True):
                    got.append(
                        page.evaluate("() => (Date.now() - window.simulcastHls.playingDate) / 1000")
                    )
                pages[0].wait_for_timeout(500)
        finally:
            browser.close()
    return list(zip(samples, parts, strict=True))


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="Debian chromium is not installed")
def test_player_uses_low_latency_mode(session: Session) -> None:
    (ll, ll_parts), (regular, regular_parts) = latencies(session, [session.ll, session.regular], 12)
    ll_median, regular_median = statistics.median(ll), statistics.median(regular)
    print(
        f"\nlatency (now - playingDate): LL-HLS median {ll_median:.2f} s "
        f"[{min(ll):.2f}..{max(ll):.2f}], {ll_parts} part requests; regular HLS median "
        f"{regular_median:.2f} s [{min(regular):.2f}..{max(regular):.2f}]"
    )
    assert ll_parts > 10 and regular_parts == 0
    assert ll_median < regular_median - 1


def test_delta_update_skips_old_segments(session: Session) -> None:
    # CAN-SKIP-UNTIL is six target durations: wait until the playlist is longer than that.
    skip_until = float(re.findall(r"CAN-SKIP-UNTIL=([0-9.]+)", session.get().text)[0])
    wait_for(
        lambda: session.get().text.count("#EXTINF") * SEGMENT_SECONDS >= skip_until + 6,
        60,
        f"{skip_until + 6} s of segments",
    )
    full = session.get().text
    delta = session.get(_HLS_skip="YES").text
    skipped = int(re.findall(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", delta)[0])
    assert skipped >= 2 and "#EXT-X-VERSION:9" in delta
    assert delta.count("#EXTINF") + skipped >= full.count("#EXTINF")
    assert len(delta) < len(full)


def test_stalled_publisher_answers_503(session: Session) -> None:
    os.kill(session.publisher.pid, signal.SIGSTOP)  # live, but no more media
    try:
        time.sleep(1)  # what was in flight arrives (no condition to poll: nothing changes)
        msn, part = last_part(session.get().text)
        started = time.monotonic()
        answer = session.get(_HLS_msn=msn, _HLS_part=part + 1)
        waited = time.monotonic() - started
    finally:
        os.kill(session.publisher.pid, signal.SIGCONT)
    assert answer.status_code == 503, answer.text
    assert waited >= 3 * SEGMENT_SECONDS - 0.5
