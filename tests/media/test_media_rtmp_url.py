"""How push URLs split into app and stream key."""

from __future__ import annotations

import pytest

from simulcast.codecs.rtmp.url import InvalidRtmpUrl, parse_rtmp_url


@pytest.mark.parametrize(
    ("url", "host", "port", "app", "key", "tc_url"),
    [
        (
            "rtmp://live.twitch.tv/app/live_123_abc",
            "live.twitch.tv", 1935, "app", "live_123_abc", "rtmp://live.twitch.tv:1935/app",
        ),
        (
            "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl",
            "a.rtmp.youtube.com", 1935, "live2", "abcd-efgh-ijkl",
            "rtmp://a.rtmp.youtube.com:1935/live2",
        ),
        (
            "rtmps://fa723fc1b171.global-contribute.live-video.net:443/app/sk_us-west_X",
            "fa723fc1b171.global-contribute.live-video.net", 443, "app", "sk_us-west_X",
            "rtmps://fa723fc1b171.global-contribute.live-video.net:443/app",
        ),
        ("rtmp://host/app/inst/key", "host", 1935, "app/inst", "key", "rtmp://host:1935/app/inst"),
        (
            "rtmps://live-api-s.facebook.com/rtmp/FB-1-0?s_bl=1&s_sw=0",
            "live-api-s.facebook.com", 443, "rtmp", "FB-1-0?s_bl=1&s_sw=0",
            "rtmps://live-api-s.facebook.com:443/rtmp",
        ),
        ("RTMP://127.0.0.1:19350/live/k/", "127.0.0.1", 19350, "live", "k", None),
        ("rtmp://[::1]:1935/live/k", "::1", 1935, "live", "k", "rtmp://[::1]:1935/live"),
    ],
)  # fmt: skip
def test_split(url: str, host: str, port: int, app: str, key: str, tc_url: str | None) -> None:
    target = parse_rtmp_url(url)
    assert (target.host, target.port, target.app, target.stream_key) == (host, port, app, key)
    assert target.tls == url.lower().startswith("rtmps")
    if tc_url is not None:
        assert target.tc_url == tc_url


@pytest.mark.parametrize(
    "url", ["http://host/app/key", "rtmp://host/key", "rtmp:///app/key", "rtmp://host:99999/a/k"]
)
def test_unusable_urls_fail_permanently(url: str) -> None:
    with pytest.raises(InvalidRtmpUrl):
        parse_rtmp_url(url)
