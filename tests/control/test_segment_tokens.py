"""Signed segment tokens: bound to one destination, expiring, verifiable across key rotation."""

from __future__ import annotations

from simulcast.control.api.hls import SegmentTokens
from simulcast.control.secretbox import SecretBox, new_key


def test_a_token_opens_its_destination_until_it_expires() -> None:
    tokens = SegmentTokens(SecretBox([new_key().encode()]), lifetime=300)
    now = 1_767_225_601.5
    token = tokens.issue(7, now)
    expires = int(token.split(".")[0])
    assert expires % 60 == 0 and now + 300 <= expires < now + 360
    assert tokens.valid(token, 7, now)
    assert tokens.valid(token, 7, expires)
    assert not tokens.valid(token, 7, expires + 1)
    assert not tokens.valid(token, 8, now)
    # Playlists served within the same minute share one token (one cached rendering).
    assert tokens.issue(7, now + 10) == token


def test_forged_tampered_and_foreign_tokens_are_refused() -> None:
    key = new_key().encode()
    tokens = SegmentTokens(SecretBox([key]), lifetime=300)
    token = tokens.issue(7, 1000.0)
    expires, signature = token.split(".")
    later = f"{int(expires) + 3600}.{signature}"
    assert not tokens.valid(later, 7, 1000.0)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert not tokens.valid(f"{expires}.{flipped}", 7, 1000.0)
    for junk in (
        "",
        ".",
        "x.y",
        f"{expires}.",
        f"{expires}.{signature}x",
        "9" * 13 + "." + signature,
    ):
        assert not tokens.valid(junk, 7, 1000.0)
    other_server = SegmentTokens(SecretBox([new_key().encode()]), lifetime=300)
    assert not other_server.valid(token, 7, 1000.0)
    # After a key rotation (NEW,OLD) tokens signed with the old key still verify.
    rotated = SegmentTokens(SecretBox([new_key().encode(), key]), lifetime=300)
    assert rotated.valid(token, 7, 1000.0)
