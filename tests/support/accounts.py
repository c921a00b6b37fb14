"""An account on a running ``simulcast serve`` driven through its API, and direct reads of the
server's SQLite database."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Self

import httpx

from tests.support import ServerProcess


def query(server: ServerProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the server's database directly (WAL lets us read while it writes)."""
    with closing(sqlite3.connect(server.data_dir / "simulcast.db", timeout=10)) as db:
        return db.execute(sql, args).fetchall()


def stored_bytes(data_dir: Path) -> bytes:
    """Every byte SQLite keeps for the database (main file and write-ahead log)."""
    return b"".join(p.read_bytes() for p in data_dir.glob("simulcast.db*"))


class ApiAccount:
    """A fresh account on the server (named ``<prefix>-<random>``) with its API client."""

    prefix = "acct"

    def __init__(self, server: ServerProcess, name: str, key: str) -> None:
        self.server = server
        self.name = name
        self.api = httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    @classmethod
    async def create(cls, server: ServerProcess, funds: int = 0) -> Self:
        """Create the account through the admin CLI, credited with ``funds`` sats."""
        name = f"{cls.prefix}-{secrets.token_hex(4)}"
        key = await asyncio.to_thread(server.create_account, name, None, funds)
        return cls(server, name, key)

    @property
    def id(self) -> int:
        return int(query(self.server, "SELECT id FROM accounts WHERE name = ?", self.name)[0][0])

    async def balance(self) -> int:
        return int((await self.api.get("/api/wallet/balance")).json()["balance"])
