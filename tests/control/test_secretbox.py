"""The secret box: sealed values open with the key that sealed them, and only with it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from simulcast.control.secretbox import KEY_FILE, SecretBox, SecretBoxError, new_key
from simulcast.settings import Settings


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    box = SecretBox.from_settings(Settings(data_dir=tmp_path))
    sealed = box.seal("rtmp://live.twitch.tv/app/live_123")
    assert "live_123" not in sealed
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    again = SecretBox.from_settings(Settings(data_dir=tmp_path))
    assert again.open(sealed) == "rtmp://live.twitch.tv/app/live_123"


def test_rotation_opens_old_values_and_seals_with_the_new_key(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    sealed_old = SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=old)).seal("s")
    rotated = SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=f"{new},{old}"))
    assert rotated.open(sealed_old) == "s"
    only_new = SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=new))
    assert only_new.open(rotated.seal("t")) == "t"
    with pytest.raises(SecretBoxError):
        only_new.open(sealed_old)


def test_tampered_value_is_refused(tmp_path: Path) -> None:
    box = SecretBox([new_key().encode()])
    sealed = box.seal("secret")
    with pytest.raises(SecretBoxError):
        box.open(sealed[:-4] + "AAAA")
