"""The session timeline across publishers and the slate (pure: no sockets, no clock)."""

from __future__ import annotations

from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.media.slate import Slate, SlateParams
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import SWITCH_STEP_MS, Switcher, Takeover
from tests.support.media_units import audio, audio_header, video, video_header


def make() -> tuple[Switcher, list[MediaUnit], list[Takeover], list[str]]:
    stream = LiveStream(1, "s", gop_max_bytes=1 << 20, gop_max_seconds=10)
    takeovers: list[Takeover] = []
    switcher = Switcher(stream, on_params=lambda p: None, on_takeover=takeovers.append)
    kicked: list[str] = []
    out: list[MediaUnit] = []
    original = stream.publish

    def publish(unit: MediaUnit) -> None:
        original(unit)
        out.append(unit)

    stream.publish = publish  # type: ignore[method-assign]
    return switcher, out, takeovers, kicked


def test_first_publisher_keeps_its_timestamps_and_a_returning_one_is_rebased() -> None:
    switcher, out, takeovers, kicked = make()
    first = switcher.attach(lambda: kicked.append("first"))
    for unit in (video_header(), audio_header(), video(1000, key=True), audio(1010)):
        first.publish(unit)
    assert [u.timestamp for u in out] == [0, 0, 1000, 1010]
    assert switcher.detach(first)  # lost while on air

    # The slate continues the timeline with its own headers.
    slate_v = video_header(0, b"\x02")
    switcher.publish_slate(MediaUnit(Kind.VIDEO, 1043, slate_v.payload, sequence_header=True))
    switcher.publish_slate(video(1043, key=True))
    switcher.publish_slate(audio(1050))

    back = switcher.attach(lambda: kicked.append("back"))
    back.publish(video_header())
    back.publish(audio(5))  # before its first keyframe: dropped
    back.publish(video(20, key=True))
    back.publish(audio(25))
    assert takeovers == [Takeover(back, None)]
    tail = out[7:]
    start = 1050 + SWITCH_STEP_MS
    assert [(u.kind, u.timestamp, u.sequence_header) for u in tail] == [
        (Kind.VIDEO, start - 20, True),  # the live header again (the slate's differed)
        (Kind.VIDEO, start, False),
        (Kind.AUDIO, start + 5, False),
    ]
    switcher.publish_slate(video(9999))  # a late slate unit after the takeover: ignored
    assert len(out) == 10 and not kicked


def test_shift_keeps_the_old_publisher_on_air_until_the_new_keyframe() -> None:
    switcher, out, takeovers, kicked = make()
    old = switcher.attach(lambda: kicked.append("old"))
    old.publish(video_header())
    old.publish(video(0, key=True))
    new = switcher.attach(lambda: kicked.append("new"))
    new.publish(video_header())
    new.publish(video(500))  # not a keyframe: still the old one on air
    old.publish(video(33))
    new.publish(video(533, key=True))
    old.publish(video(66))  # replaced: ignored
    assert takeovers == [Takeover(new, old)]
    assert [u.timestamp for u in out] == [0, 0, 33, 33 + SWITCH_STEP_MS]
    assert not switcher.detach(old) and switcher.active is new


def test_media_that_would_go_back_in_time_is_dropped() -> None:
    switcher, out, _, _ = make()
    feed = switcher.attach(lambda: None)
    feed.publish(video(100, key=True))
    feed.publish(video(90))
    feed.publish(audio(50))
    assert [u.timestamp for u in out] == [100, 50]


def test_slate_loop_restarts_with_a_keyframe_and_times_each_track_exactly() -> None:
    params = SlateParams(320, 240, 30.0, 66, 13, 48000, 2)
    slate = Slate(params, b"vh", b"ah", (b"k", b"p1", b"p2"), (b"a",))
    units = slate.units(1000)
    first = [next(units) for _ in range(40)]
    videos = [u for u in first if u.kind == Kind.VIDEO]
    assert [u.keyframe for u in videos[:7]] == [True, False, False, True, False, False, True]
    assert [u.timestamp for u in videos[:4]] == [1000, 1033, 1067, 1100]
    stamps = [u.timestamp for u in first]
    assert stamps == sorted(stamps)
    audios = [u.timestamp for u in first if u.kind == Kind.AUDIO]
    assert audios[:3] == [1000, 1021, 1043]  # 1024 samples at 48 kHz = 21.33 ms
