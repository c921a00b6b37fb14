"""The plugin's files: every PHP file lints with ``php -l``, the block and readme carry what
WordPress reads, and the zip script packs the plugin folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.wordpress import PLUGIN

PHP_FILES = sorted(PLUGIN.rglob("*.php"))


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed (.ci/run)")
@pytest.mark.parametrize("path", PHP_FILES, ids=lambda p: str(p.relative_to(PLUGIN)))
def test_php_lint(path: Path) -> None:
    done = subprocess.run(["php", "-l", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_php_file_is_guarded_and_strict() -> None:
    assert len(PHP_FILES) >= 5
    for path in PHP_FILES:
        text = path.read_text()
        if path.name.endswith(".asset.php"):
            continue
        assert "declare(strict_types=1);" in text, path
        assert "defined( 'ABSPATH' )" in text or "WP_UNINSTALL_PLUGIN" in text, path


def test_headers_block_and_readme() -> None:
    main = (PLUGIN / "simulcast-player.php").read_text()
    for header in (
        "Requires at least: 6.1",
        "Requires PHP:      8.1",
        "License:           GPL-2.0-or-later",
    ):
        assert header in main
    block = json.loads((PLUGIN / "blocks/simulcast-player/block.json").read_text())
    assert block["name"] == "simulcast/player" and block["editorScript"] == "file:./editor.js"
    assert set(block["attributes"]) == {"apiKey", "height", "autoplay", "muted", "tips"}
    readme = (PLUGIN / "readme.txt").read_text()
    assert readme.startswith("=== Simulcast Player ===")
    for field in (
        "Requires at least: 6.1",
        "Requires PHP: 8.1",
        "Stable tag: 1.0.0",
        "License: GPL-2.0-or-later",
    ):
        assert field in readme
    for section in ("== Description ==", "== Installation ==", "== Changelog =="):
        assert section in readme
    assert re.search(r"Version:\s+1\.0\.0", main)


def test_zip_script_packs_the_plugin_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(REPO / "scripts/build-wordpress-zip.sh"), str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    archive = Path(done.stdout.strip())
    assert archive == tmp_path / "simulcast-player-1.0.0.zip"
    names = set(zipfile.ZipFile(archive).namelist())
    expected = {
        f"simulcast-player/{p.relative_to(PLUGIN)}" for p in PLUGIN.rglob("*") if p.is_file()
    }
    assert names == expected and "simulcast-player/simulcast-player.php" in names
