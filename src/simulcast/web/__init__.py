"""The dashboard and the embeddable player: Jinja2 templates and static files.

Both directories are package data (``pip install .`` installs them). Static files are served by
content hash: :meth:`Assets.url` adds ``?v=<hash>``, and a request naming the current hash may be
cached for a year, so a new release is fetched at once and an unchanged file never again.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: where it is, its content hash and its media type."""

    path: Path
    version: str
    media_type: str


class Assets:
    """The static files, indexed once: only files found here are ever served (no path tricks)."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                name = path.relative_to(root).as_posix()
                media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if media_type.startswith("text/") or media_type.endswith("javascript"):
                    media_type += "; charset=utf-8"
                version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
                self._files[name] = Asset(path, version, media_type)

    def get(self, name: str) -> Asset | None:
        """The asset named ``name`` (a path under ``static/``), if it exists."""
        return self._files.get(name)

    def url(self, name: str) -> str:
        """The URL of a static file, with its content hash for long-lived caching."""
        asset = self._files[name]
        return f"/static/{name}?v={asset.version}"
