"""Self-hosted playback end to end: ffmpeg publishes to ``simulcast serve``; viewers use HTTP.

Runs in file order against one live session (see ``conftest.py``); the last test ends the
publish and reconnects, so it must stay last.
"""

from __future__ import annotations

import time

import av
import httpx
import m3u8
import pytest

from tests.support.hls import (
    PUBLISH_SECONDS,
    SEGMENT_SECONDS,
    WINDOW_SECONDS,
    Live,
    complete,
    metered_bytes,
)

pytestmark = pytest.mark.media


def playlist(live: Live, pk: str | None = None, **params: str) -> httpx.Response:
    query = {"apiKey": pk or live.production.pk, **params}
    return httpx.get(live.production.url(live.base), params=query)


def test_status_reports_ready_playlist(live: Live) -> None:
    status = live.wait_ready()
    assert status["isLive"] is True and status["hlsReady"] is True
    assert status["playbackToken"] == live.production.token
    assert status["hlsUrl"] == live.production.url(live.base) + f"?apiKey={live.production.pk}"
    dvr = status["dvr"]
    assert isinstance(dvr, dict) and dvr["enabled"] is True and dvr["windowSeconds"] >= 2
    assert dvr["availableFrom"] <= time.time()

    response = httpx.get(str(status["hlsUrl"]), headers={"Origin": "https://viewer.example"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["access-control-allow-origin"] == "*"
    parsed = m3u8.loads(response.text, uri=str(status["hlsUrl"]))
    assert parsed.is_endlist is False and parsed.version == 7
    assert len(complete(parsed)) >= 2
    assert all(s.uri.endswith(f"?apiKey={live.production.pk}") for s in complete(parsed))
    assert all(s.program_date_time is not None for s in complete(parsed))

    segment = httpx.get(complete(parsed)[-1].absolute_uri)
    assert segment.status_code == 200
    assert segment.headers["content-type"] == "video/mp4"
    assert segment.headers["cache-control"] == "public, max-age=31536000, immutable"
    init = httpx.get(complete(parsed)[-1].init_section.absolute_uri)
    assert init.status_code == 200 and init.content[4:8] == b"ftyp"

    preflight = httpx.options(
        str(status["hlsUrl"]),
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_key_query_name_is_kept_in_uris(live: Live) -> None:
    response = httpx.get(live.production.url(live.base), params={"key": live.production.pk})
    assert response.status_code == 200
    assert f".m4s?key={live.production.pk}" in response.text
    # An account-wide key in a header is never written into URIs.
    by_sk = httpx.get(
        live.production.url(live.base), headers={"Authorization": f"Bearer {live.sk}"}
    )
    assert by_sk.status_code == 200 and "?" not in by_sk.text.replace("#EXT", "")


def test_pyav_decodes_seconds_of_the_stream(live: Live) -> None:
    url = str(live.status(live.production.pk)["hlsUrl"])
    with av.open(url, timeout=10) as container:
        stream = container.streams.video[0]
        first: float | None = None
        for frame in container.decode(stream):
            assert frame.time is not None
            first = frame.time if first is None else first
            if frame.time - first >= 3.0:
                break
        else:
            pytest.fail("the stream ended before 3 s were decoded")
    assert (frame.width, frame.height) == (320, 240)


def test_ranges_and_head(live: Live) -> None:
    parsed = m3u8.loads(playlist(live).text, uri=live.production.url(live.base))
    url = complete(parsed)[-1].absolute_uri
    whole = httpx.get(url).content
    part = httpx.get(url, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == whole[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole)}"
    tail = httpx.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == whole[-50:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(whole)}"
    assert "error" in beyond.json()
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole))
    assert head.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/hls/{token}/..%2F..%2Fsimulcast.db", 404),
        ("/hls/{token}/../../simulcast.db", 404),
        ("/hls/{token}/index.m3u8%00.m4s", 404),
        ("/hls/..%2F{token}/index.m3u8", 404),
        ("/hls/{token}/deadbeef-1.ts", 404),
        ("/hls/{token}/deadbeef-99999.m4s", 404),
        ("/hls/AAAAAAAAAAAAAAAAAAAAAAAA/index.m3u8", 404),
        ("/hls/a/index.m3u8", 404),
    ],
)
def test_bad_paths_are_4xx(live: Live, path: str, status: int) -> None:
    url = live.base + path.format(token=live.production.token)
    response = httpx.get(url, params={"apiKey": live.production.pk})
    assert response.status_code == status
    assert "error" in response.json()


def test_credentials_are_checked(live: Live) -> None:
    url = live.production.url(live.base)
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, params={"apiKey": "pk_nope"}).status_code == 401
    stranger = httpx.get(url, params={"apiKey": live.stranger_pk})
    assert stranger.status_code == 403 and "error" in stranger.json()
    # The testing destination's key is for that destination only.
    assert httpx.get(url, params={"apiKey": live.testing.pk}).status_code == 403
    assert httpx.get(url, headers={"X-API-Key": live.production.pk}).status_code == 200
    huge = httpx.get(url, params={"apiKey": live.production.pk, "x": "a" * 4000})
    assert huge.status_code in (400, 414)


def test_bandwidth_is_metered_exactly(live: Live) -> None:
    def stored() -> int:
        return metered_bytes(live.server, live.production.destination_id)

    time.sleep(2.5)  # earlier tests' counts reach the database (flushed every second here)
    before = stored()
    status_before = live.status(live.production.pk)["bandwidth"]
    assert isinstance(status_before, dict)
    served = 0
    first = playlist(live).text
    served += len(first.encode())
    parsed = m3u8.loads(first, uri=live.production.url(live.base))
    segment_url = complete(parsed)[-1].absolute_uri
    with httpx.Client() as client:
        served += len(
            client.get(
                live.production.url(live.base), params={"apiKey": live.production.pk}
            ).content
        )
        served += len(client.get(segment_url, headers={"Range": "bytes=0-99"}).content)
        client.head(segment_url)  # HEAD sends no body: 0 bytes
        size = len(client.get(segment_url).content)
        served += size
        # Enough for 0.01 GB, so the status endpoint's two decimals move before any flush.
        for _ in range(10_000_000 // size + 1):
            served += len(client.get(segment_url).content)
    status_now = live.status(live.production.pk)["bandwidth"]
    assert isinstance(status_now, dict)
    assert float(str(status_now["usedGB"])) >= float(str(status_before["usedGB"])) + 0.01
    deadline = time.monotonic() + 7
    while stored() - before != served and time.monotonic() < deadline:
        time.sleep(0.25)
    assert stored() - before == served
    usage = httpx.get(
        f"{live.base}/api/bandwidth/usage", headers={"Authorization": f"Bearer {live.sk}"}
    ).json()
    assert usage["totalGB"] >= 0.01


def test_testing_mode_is_limited_per_destination(live: Live) -> None:
    url = live.testing.url(live.base)
    codes = [httpx.get(url, params={"apiKey": live.testing.pk}).status_code for _ in range(60)]
    assert codes.count(200) == 60, codes
    refused = httpx.get(url, params={"apiKey": live.testing.pk})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "error" in refused.json() and refused.json()["retryAfter"] >= 1
    # Production mode has no request limit.
    assert all(playlist(live).status_code == 200 for _ in range(80))


def test_dvr_window_on_disk(live: Live) -> None:
    assert live.publisher is not None
    while (
        live.publisher.poll() is None
        and live.status(live.production.pk)["dvr"]["windowSeconds"] < WINDOW_SECONDS - 1
    ):  # type: ignore[index]
        time.sleep(0.5)
    time.sleep(6)  # well past the window: old segments must be gone
    dvr = live.status(live.production.pk)["dvr"]
    assert isinstance(dvr, dict)
    assert WINDOW_SECONDS - 2 <= dvr["windowSeconds"] <= WINDOW_SECONDS
    parsed = m3u8.loads(playlist(live).text)
    assert sum(s.duration for s in complete(parsed)) <= WINDOW_SECONDS + 0.5
    hls_root = live.server.data_dir / "hls"
    on_disk = list(hls_root.glob(f"{live.production.destination_id}-*/*.m4s"))
    # The window plus the few segments retired in the last 2 s + 1 s of deletion grace.
    grace = int((2 * SEGMENT_SECONDS + 1) / SEGMENT_SECONDS) + 1
    assert len(complete(parsed)) <= len(on_disk) <= len(complete(parsed)) + grace
    live_only = list(hls_root.glob(f"{live.testing.destination_id}-*/*.m4s"))
    assert len(live_only) <= 6 + grace


def test_reconnect_within_window_continues_with_discontinuity(live: Live) -> None:
    assert live.publisher is not None
    before = m3u8.loads(playlist(live).text)
    live.publisher.terminate()
    live.publisher.wait(10)
    live.wait_offline()
    offline = playlist(live)
    assert offline.status_code == 404 and offline.json()["error"]
    assert live.status(live.production.pk)["hlsUrl"] is None

    live.publisher = live.publish(PUBLISH_SECONDS)
    live.wait_ready()
    deadline = time.monotonic() + 10
    after = m3u8.loads(playlist(live).text)
    while not any(s.discontinuity for s in after.segments) and time.monotonic() < deadline:
        time.sleep(0.25)
        after = m3u8.loads(playlist(live).text)
    assert any(s.discontinuity for s in after.segments), playlist(live).text
    assert after.media_sequence >= before.media_sequence
    names = {s.uri for s in before.segments}
    first_new = next(s for s in after.segments if s.discontinuity)
    assert first_new.uri not in names
