"""Webhooks: subscriptions, the durable outbox, payload signing, and the target-address guard.

An event is written as one :class:`WebhookDelivery` row per matching webhook, in the caller's
transaction, so it commits (or not) with the state change that caused it. The body is serialized
once, here, and sent byte for byte on every attempt; the dispatcher only reads the outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.db.models import (
    LiveSession,
    Stream,
    Webhook,
    WebhookDelivery,
)
from simulcast.control.services import ledger
from simulcast.control.timeutil import now_ms

KNOWN_EVENTS = frozenset(
    {
        "stream.started",
        "stream.ended",
        "recording.ready",
        "test.ping",
        "stream.disconnected",
        "stream.resumed",
        "destination.failed",
        "wallet.credited",
        "wallet.topup_failed",
        # v1 dialect (V1.md, Webhooks)
        "instance.running",
        "instance.stopped",
        "input.disconnected",
        "input.resumed",
        "input.low_bitrate",
        "failover.activated",
        "failover.recovered",
        "tip.received",
    }
)
MAX_WEBHOOKS_PER_ACCOUNT = 50

# Cloud metadata endpoints, named even where a broader rule (link-local, ULA) already covers them.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookError(Exception):
    """A webhook request that cannot be honoured; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# --- URL safety -------------------------------------------------------------------------------


# IPv6 forms that carry an IPv4 address: judged by that address (NAT64 to 127.0.0.1 is
# loopback, whatever Python's is_global says of 64:ff9b::/96).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible (and :: / ::1)
_REFUSED_V6 = (
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64: translates to anything inside
    ipaddress.ip_network("fec0::/10"),  # deprecated site-local
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if any (mapped, translated, compatible,
    NAT64, 6to4, Teredo client)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _TRANSLATED or ip in _COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def forbidden_address(ip: IPAddress) -> bool:
    """Whether a target address is off limits: anything not globally routable, or metadata.

    Covers loopback, RFC 1918 / ULA private, link-local, site-local, CGNAT, multicast,
    unspecified and reserved ranges; an IPv6 address that embeds an IPv4 one (IPv4-mapped,
    -translated, -compatible, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo) is judged by
    the IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _REFUSED_V6):
            return True
        v4 = embedded_ipv4(ip)
        if v4 is not None:
            return forbidden_address(v4)
    return ip in METADATA_ADDRESSES or not ip.is_global or ip.is_multicast


def check_url_shape(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """Validate a webhook URL's form; its ``(scheme, host, port)``. Raises :class:`WebhookError`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError("url is not a valid URL", field="url") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        hint = "" if allow_http else " (SIMULCAST_WEBHOOKS_ALLOW_HTTP=true allows http://)"
        raise WebhookError("url must use https" + (" or http" if allow_http else hint), field="url")
    if not parts.hostname:
        raise WebhookError("url must have a host", field="url")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("url must not contain credentials", field="url")
    if parts.fragment:
        raise WebhookError("url must not contain a fragment", field="url")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve_target(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to, refusing forbidden ones unless ``allow_private``.

    Every resolved address must be allowed (a name that mixes public and private answers is
    refused). Raises :class:`WebhookError` (field ``url``).
    """
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            raise WebhookError(f"url host {host!r} does not resolve", field="url") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not allow_private:
        for ip in addresses:
            if forbidden_address(ip):
                raise WebhookError(
                    f"url host {host!r} resolves to a private or reserved address ({ip}); "
                    "set SIMULCAST_WEBHOOKS_ALLOW_PRIVATE=true to allow such targets "
                    "(local development only)",
                    field="url",
                )
    return list(dict.fromkeys(str(ip) for ip in addresses))


async def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Validate a webhook URL for creation: form, scheme, and (unless allowed) its addresses."""
    _scheme, host, port = check_url_shape(url, allow_http=allow_http)
    if not allow_private:
        await resolve_target(host, port, allow_private=False)


# --- Signing ----------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` (API.md, Webhooks)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def new_delivery_id() -> str:
    """A delivery id: sortable by creation on one node (nanosecond prefix), then random."""
    return f"dlv_{time.time_ns():016x}{secrets.token_hex(8)}"


def once_delivery_id(once: str, webhook_id: int, created_ms: int) -> str:
    """The delivery id of an event for one webhook, the same whenever it is made again from
    the same ``once`` key (shaped as :func:`new_delivery_id`, by the event's time)."""
    digest = hashlib.sha256(f"{once}:{webhook_id}".encode()).hexdigest()[:16]
    return f"dlv_{created_ms * 1_000_000:016x}{digest}"


# --- Subscriptions ----------------------------------------------------------------------------


def check_events(events: Sequence[str]) -> list[str]:
    """The distinct subscribed events, in order; raises unless a non-empty set of known ones."""
    if not events:
        raise WebhookError("events must name at least one event", field="events")
    unknown = [e for e in events if e not in KNOWN_EVENTS]
    if unknown:
        raise WebhookError(
            f"unknown event {unknown[0]!r}; known events: {', '.join(sorted(KNOWN_EVENTS))}",
            field="events",
        )
    return list(dict.fromkeys(events))


async def create_webhook(
    session: AsyncSession,
    *,
    account_id: int,
    url: str,
    events: Sequence[str],
    secret: str | None,
    stream_id: int | None,
) -> Webhook:
    """Subscribe ``url`` to ``events`` (optionally of one stream of the account).

    The URL's safety is checked by the caller with :func:`check_url` before the transaction.
    """
    chosen = check_events(events)
    if stream_id is not None:
        owner = await session.scalar(
            select(Stream.account_id).where(Stream.id == stream_id, Stream.deleted_ms.is_(None))
        )
        if owner != account_id:
            raise WebhookError(
                f"stream_key_id {stream_id} is not a stream of this account", field="stream_key_id"
            )
    count = await session.scalar(
        select(func.count(Webhook.id)).where(
            Webhook.account_id == account_id, Webhook.deleted_ms.is_(None)
        )
    )
    if (count or 0) >= MAX_WEBHOOKS_PER_ACCOUNT:
        raise WebhookError(
            f"an account may have at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks", field="url"
        )
    hook = Webhook(
        account_id=account_id,
        url=url,
        events=chosen,
        secret=secret or None,
        stream_id=stream_id,
        created_ms=now_ms(),
    )
    session.add(hook)
    await session.flush()
    return hook


async def list_webhooks(session: AsyncSession, *, account_id: int) -> Sequence[Webhook]:
    """The account's live webhooks, oldest first."""
    rows = await session.scalars(
        select(Webhook)
        .where(Webhook.account_id == account_id, Webhook.deleted_ms.is_(None))
        .order_by(Webhook.id)
    )
    return rows.all()


async def get_webhook(session: AsyncSession, *, account_id: int, webhook_id: int) -> Webhook | None:
    """One live webhook of the account."""
    return await session.scalar(
        select(Webhook).where(
            Webhook.id == webhook_id,
            Webhook.account_id == account_id,
            Webhook.deleted_ms.is_(None),
        )
    )


async def delete_webhook(session: AsyncSession, *, webhook: Webhook) -> None:
    """Delete a webhook; its undelivered events are marked failed (kept in the log)."""
    now = now_ms()
    webhook.deleted_ms = now
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="webhook deleted")
    )


async def list_deliveries(
    session: AsyncSession, *, webhook_id: int, limit: int
) -> Sequence[WebhookDelivery]:
    """A webhook's deliveries, newest first."""
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_ms.desc(), WebhookDelivery.id.desc())
        .limit(limit)
    )
    return rows.all()


# --- The outbox -------------------------------------------------------------------------------


def _delivery(
    webhook_id: int, event: str, data: Mapping[str, Any], created_ms: int, once: str | None = None
) -> WebhookDelivery:
    if once is None:
        delivery_id = new_delivery_id()
    else:
        delivery_id = once_delivery_id(once, webhook_id, created_ms)
    body = json.dumps(
        {"id": delivery_id, "event": event, "createdAt": created_ms, "data": dict(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return WebhookDelivery(
        id=delivery_id,
        webhook_id=webhook_id,
        event=event,
        body=body,
        status="pending",
        attempts=0,
        created_ms=created_ms,
        next_attempt_ms=now_ms(),
    )


async def enqueue_event(
    session: AsyncSession,
    *,
    account_id: int,
    stream_id: int | None,
    event: str,
    data: Mapping[str, Any],
    created_ms: int | None = None,
    once: str | None = None,
) -> list[str]:
    """Write one delivery per webhook of the account subscribed to ``event`` (and, if the
    webhook is bound to a stream, for that stream); their ids. The caller commits, then should
    wake the dispatcher (``WebhookDispatcher.notify``).

    ``once``: a key the caller passes on every try of a transaction it may run again (the
    database went away while committing: did it commit?). The deliveries then get the same ids
    on each try, so a try after one that did commit fails on their primary key
    (``IntegrityError``) instead of queueing the event twice."""
    if event not in KNOWN_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    created = created_ms if created_ms is not None else now_ms()
    ids = []
    for hook in await list_webhooks(session, account_id=account_id):
        if event not in hook.events:
            continue
        if hook.stream_id is not None and hook.stream_id != stream_id:
            continue
        row = _delivery(hook.id, event, data, created, once)
        session.add(row)
        ids.append(row.id)
    if ids:
        await session.flush()
    return ids


async def enqueue_test(session: AsyncSession, *, webhook: Webhook) -> str:
    """Queue a ``test.ping`` for one webhook (whatever it subscribes to); the delivery id."""
    row = _delivery(
        webhook.id,
        "test.ping",
        {"webhookId": webhook.id, "message": "Test event from Simulcast"},
        now_ms(),
    )
    session.add(row)
    await session.flush()
    return row.id


# --- Event payloads ---------------------------------------------------------------------------


def stream_started_data(*, live: LiveSession, stream: Stream) -> dict[str, Any]:
    """``stream.started`` data."""
    return {
        "sessionId": live.session_id,
        "streamKeyId": stream.id,
        "label": stream.label,
        "startedAt": live.started_ms,
    }


async def enqueue_stream_ended(
    session: AsyncSession, *, live: LiveSession, created_ms: int | None
) -> None:
    """Queue the ``stream.ended`` deliveries of a session that ended (normally, or found open
    after a crash); the caller commits them with the session's end."""
    await enqueue_event(
        session,
        account_id=live.account_id,
        stream_id=live.stream_id,
        event="stream.ended",
        data=await stream_ended_data(session, live=live),
        created_ms=created_ms,
    )


async def stream_ended_data(session: AsyncSession, *, live: LiveSession) -> dict[str, Any]:
    """``stream.ended`` data, with duration, the session's total charges and the end reason."""
    stream = await session.get(Stream, live.stream_id)
    assert stream is not None, "a session's stream row is never removed"
    cost = (await ledger.charged_by_session(session, session_pks=[live.id])).get(live.id, 0)
    ended = live.ended_ms if live.ended_ms is not None else now_ms()
    return {
        **stream_started_data(live=live, stream=stream),
        "endedAt": ended,
        "durationSeconds": max(0, ended - live.started_ms) // 1000,
        "totalCostSats": cost,
        "reason": live.end_reason,
    }
