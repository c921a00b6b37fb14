"""Secrets at rest and in logs (issue 20): stream keys found by digest and sealed, platform keys
and webhook secrets sealed, migration 0006 converts existing rows, webhook URLs stay out of the
log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from simulcast.control.db.models import Account, Destination, Stream, Webhook
from simulcast.control.db.session import (
    alembic_config,
    create_engine,
    session_factory,
    upgrade_schema,
)
from simulcast.control.secretbox import new_key
from simulcast.control.services import secrets, streams
from simulcast.settings import Settings
from tests.support import free_port, make_server
from tests.support.accounts import stored_bytes
from tests.support.webhook_receiver import Receiver

KEY = "0123456789abcdef0123456789abcdef"
PLATFORM_URL = "rtmp://live.twitch.tv/app/live_123456_PlatformSecretKey"
HOOK_SECRET = "whsec_NeverInTheDatabase"


async def test_migration_seals_existing_rows(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    engine = create_engine(settings)

    def to_0001(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")

    async with engine.begin() as conn:
        await conn.run_sync(to_0001)
        # Rows as the server before this change wrote them: all in plain text.
        for sql in (
            "INSERT INTO accounts (id, name, is_admin, created_ms) VALUES (1, 'a', false, 0)",
            "INSERT INTO streams (id, account_id, stream_key, label, settings, created_ms) "
            f"VALUES (1, 1, '{KEY}', 'l', '{{}}', 0)",
            "INSERT INTO destinations (id, stream_id, account_id, type, platform, url, enabled,"
            f" config, created_ms) VALUES (1, 1, 1, 'rtmp', 'Twitch', '{PLATFORM_URL}', true,"
            " '{}', 0)",
            "INSERT INTO destinations (id, stream_id, account_id, type, platform, url, enabled,"
            " config, created_ms) VALUES (2, 1, 1, 'self-hosted', 'Self-Hosted', '', true,"
            " '{}', 0)",
            "INSERT INTO webhooks (id, account_id, url, events, secret, created_ms) "
            f"VALUES (1, 1, 'https://h.example/x', '[]', '{HOOK_SECRET}', 0)",
        ):
            await conn.execute(sa.text(sql))
    await upgrade_schema(engine)

    async with engine.connect() as conn:
        raw = [
            *(await conn.execute(sa.text("SELECT stream_key, stream_key_digest FROM streams"))),
            *(await conn.execute(sa.text("SELECT url FROM destinations"))),
            *(await conn.execute(sa.text("SELECT secret FROM webhooks"))),
        ]
    text = repr(raw)
    assert KEY not in text and "PlatformSecretKey" not in text and HOOK_SECRET not in text
    async with session_factory(engine)() as session:
        stream = await streams.stream_by_key(session, stream_key=KEY)
        assert stream is not None and stream.stream_key == KEY  # the owner still reads it
        assert await streams.stream_by_key(session, stream_key=KEY[:-1] + "0") is None
        dest = await session.get(Destination, 1)
        assert dest is not None and dest.url == PLATFORM_URL
        empty = await session.get(Destination, 2)
        assert empty is not None and empty.url == ""
        hook = await session.get(Webhook, 1)
        assert hook is not None and hook.secret == HOOK_SECRET
        # New rows: sealed on write, the digest kept by the model.
        session.add(Stream(id=2, account_id=1, stream_key="f" * 32, label="n", created_ms=1))
        await session.commit()
        assert await streams.stream_by_key(session, stream_key="f" * 32) is not None
    await engine.dispose()
    if not database_url:
        data = stored_bytes(tmp_path)
        assert KEY.encode() not in data and b"PlatformSecretKey" not in data
        assert HOOK_SECRET.encode() not in data and b"f" * 32 not in data


async def test_server_keeps_secrets_out_of_its_database_and_log(tmp_path: Path) -> None:
    server = make_server(tmp_path, webhooks_allow_http="true", webhooks_allow_private="true")
    server.start()
    try:
        sk = server.create_account()
        async with (
            Receiver() as receiver,
            httpx.AsyncClient(
                base_url=server.base_url, headers={"X-API-Key": sk}, timeout=10
            ) as api,
        ):
            created = (await api.post("/api/streams", json={"label": "s"})).json()
            stream_key = created["streamKey"]
            r = await api.post(
                f"/api/streams/{created['id']}/destinations",
                json={"type": "rtmp", "config": {"url": PLATFORM_URL}},
            )
            assert r.status_code in (200, 201), r.text
            # The owner can still read the key.
            listed = (await api.get("/api/streams")).json()
            assert any(s.get("streamKey") == stream_key for s in listed), listed
            closed = free_port()  # nothing listens: the delivery fails and is logged
            urls = [
                receiver.url + "?token=query-token-secret",
                f"http://127.0.0.1:{closed}/hooks/path-token-secret?token=query-token-secret",
            ]
            for url in urls:
                hook = await api.post(
                    "/api/webhooks",
                    json={"url": url, "events": ["stream.started"], "secret": HOOK_SECRET},
                )
                assert hook.status_code in (200, 201), hook.text
                r = await api.post(f"/api/webhooks/{hook.json()['id']}/test")
                assert r.status_code in (200, 201, 202), r.text
            async with asyncio.timeout(20):
                await receiver.arrived.wait()
                while "attempt" not in server.log():  # noqa: ASYNC110 -- another process
                    await asyncio.sleep(0.1)
    finally:
        server.stop()
    log = server.log()
    assert "127.0.0.1" in log  # the host is named
    assert "token-secret" not in log and HOOK_SECRET not in log and stream_key not in log
    data = stored_bytes(tmp_path)
    assert stream_key.encode() not in data
    assert b"PlatformSecretKey" not in data and HOOK_SECRET.encode() not in data


async def test_key_rotation_and_reseal(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    url = f"sqlite+aiosqlite:///{tmp_path / 'rot.db'}"

    def engine_with(keys: str) -> Any:
        return create_engine(Settings(data_dir=tmp_path, database_url=url, secret_key=keys))

    engine = engine_with(old)
    await upgrade_schema(engine)
    async with session_factory(engine).begin() as session:
        session.add(Account(id=1, name="a", is_admin=False, created_ms=0))
        session.add(Stream(id=1, account_id=1, stream_key=KEY, label="l", created_ms=0))
    await engine.dispose()
    # NEW,OLD: the old seals still open; reseal rewrites them with the new key.
    engine = engine_with(f"{new},{old}")
    async with session_factory(engine).begin() as session:
        assert await secrets.reseal_all(session) == 1
    await engine.dispose()
    engine = engine_with(new)  # the old key is gone
    async with session_factory(engine)() as session:
        stream = await streams.stream_by_key(session, stream_key=KEY)
        assert stream is not None and stream.stream_key == KEY
    await engine.dispose()
