"""Media and multivariant playlist rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import m3u8

from simulcast.codecs.hls import (
    PlaylistSegment,
    render_media_playlist,
    render_multivariant_playlist,
)

START = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_media_playlist_golden() -> None:
    segments = [
        PlaylistSegment("s10.m4s", 2.0205, program_date_time=START),
        PlaylistSegment("s11.m4s", 3.2, program_date_time=START + timedelta(seconds=2.0205)),
        PlaylistSegment(
            "s12.m4s",
            1.5,
            discontinuity=True,
            init_uri="init-2.mp4",
            program_date_time=datetime(2024, 5, 1, 14, 0, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
    ]
    text = render_media_playlist(segments, 2.0, 10, 3, "init-1.mp4", uri_suffix="?apiKey=k")
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-MEDIA-SEQUENCE:10\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init-1.mp4?apiKey=k"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z\n"
        "#EXTINF:2.021,\n"
        "s10.m4s?apiKey=k\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.143Z\n"
        "#EXTINF:3.200,\n"
        "s11.m4s?apiKey=k\n"
        "#EXT-X-DISCONTINUITY\n"
        '#EXT-X-MAP:URI="init-2.mp4?apiKey=k"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:10.000Z\n"
        "#EXTINF:1.500,\n"
        "s12.m4s?apiKey=k\n"
    )
    parsed = m3u8.loads(text)
    assert parsed.media_sequence == 10 and parsed.discontinuity_sequence == 3
    assert [s.uri for s in parsed.segments] == [
        "s10.m4s?apiKey=k",
        "s11.m4s?apiKey=k",
        "s12.m4s?apiKey=k",
    ]
    assert parsed.segments[2].discontinuity and not parsed.is_endlist


def test_target_duration_never_below_target_and_endlist() -> None:
    text = render_media_playlist(
        [PlaylistSegment("a.m4s", 2.0004)], 2.0, 0, 0, "init.mp4", ended=True
    )
    assert "#EXT-X-TARGETDURATION:2\n" in text and text.endswith("#EXT-X-ENDLIST\n")
    assert "#EXT-X-TARGETDURATION:6\n" in render_media_playlist([], 6.0, 0, 0, "init.mp4")


def test_multivariant_playlist() -> None:
    text = render_multivariant_playlist(
        "index.m3u8", 800_000, "avc1.42c00d,mp4a.40.2", (320, 240), 30.0, uri_suffix="?k=1"
    )
    parsed = m3u8.loads(text)
    assert parsed.is_variant
    stream = parsed.playlists[0]
    assert stream.uri == "index.m3u8?k=1"
    assert stream.stream_info.codecs == "avc1.42c00d,mp4a.40.2"
    assert stream.stream_info.resolution == (320, 240)
    assert stream.stream_info.bandwidth == 800_000
