"""The webhook dispatcher: sends the outbox's pending deliveries, with retries, on every node.

Per webhook, deliveries go out one at a time in event order (strict FIFO: a delivery waiting for
its retry holds back the newer ones of the same webhook). Different webhooks are independent:
each webhook with due work gets its own task, so a slow or dead endpoint never delays another.

Several nodes may run a dispatcher on one database. A node *claims* the oldest pending delivery
of a webhook by pushing its ``next_attempt_ms`` past the send timeout (a lease) in a short
transaction (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL); the lease keeps the other
nodes, and the newer deliveries of that webhook, waiting. A node that dies mid-send leaves the
lease to expire and the delivery is sent again: at least once, always with the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast import __version__
from simulcast.control.db.models import Webhook, WebhookDelivery
from simulcast.control.services import webhooks
from simulcast.control.timeutil import now_ms
from simulcast.periodic import Periodic, backoff_delay, rescan_interval
from simulcast.settings import Settings

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("simulcast.webhooks")

USER_AGENT = f"Simulcast-Webhooks/{__version__}"
LEASE_MARGIN_MS = 30_000


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt this node owns: the delivery, where it goes, and the fencing attempt count."""

    delivery_id: str
    event: str
    body: str
    created_ms: int
    attempts: int
    url: str
    secret: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt got: a status code and (capped) body, or an error."""

    status_code: int | None = None
    response: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


def redact_url(text: str | None, url: str) -> str | None:
    """``text`` (an error message) with ``url``'s path and query replaced by ``...``."""
    if not text:
        return text
    parts = urlsplit(url)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    if secret.strip("/"):
        text = text.replace(url, f"{parts.scheme}://{parts.netloc}/...").replace(secret, "/...")
    return text


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Rewrite ``url`` to connect to ``address`` while the server still sees the original host.

    Returns the URL to request, the ``Host`` header, and the httpx extensions that keep TLS SNI
    and certificate verification on the original host name.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    ip = ipaddress.ip_address(address)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    host_header = host if ":" not in host else f"[{host}]"
    if parts.port:
        host_header += f":{parts.port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return target, {"Host": host_header}, {"sni_hostname": host}


class WebhookDispatcher:
    """Background sender of the webhook outbox (``start``/``stop``; ``notify`` after enqueue)."""

    def __init__(self, settings: Settings, db: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.db = db
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._workers: dict[int, asyncio.Task[None]] = {}
        # Every enqueue of this process wakes the dispatcher (notify), and a retry's time is
        # known from its row; on an API node of a fleet the media nodes' rows are polled for.
        self._rescan = rescan_interval(settings.role, settings.webhook_poll_seconds)
        self.job = Periodic("webhook-dispatch", self._schedule, self._rescan)
        self._client: httpx.AsyncClient | None = None

    def notify(self) -> None:
        """Something was enqueued (and committed): look at the outbox now."""
        self.job.wake()

    async def start(self) -> None:
        """Start the background loop."""
        self.job.start()

    async def stop(self) -> None:
        """Stop sending; attempts in flight are abandoned and their leases released."""
        await self.job.stop()
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http_client(self) -> httpx.AsyncClient:
        """The client, made at the first delivery: its transport (httpcore, h11, and trio when
        installed) costs ~6 MB resident, which a server with no webhooks never pays; httpx
        itself (~4 MB: it loads its command line's rich and pygments) is imported then too."""
        import httpx

        if self._client is None:
            # A pinned connection was verified for one host name; never reuse it for another.
            keepalive = 20 if self.settings.webhooks_allow_private else 0
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                limits=httpx.Limits(max_keepalive_connections=keepalive),
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    # --- the loop -----------------------------------------------------------------------------

    async def _schedule(self) -> float:
        """Start a worker per webhook whose oldest pending delivery is due; seconds to sleep."""
        wait = self._rescan
        now = now_ms()
        for webhook_id, next_ms in await self._heads():
            if webhook_id in self._workers:
                continue
            if next_ms <= now:
                self._workers[webhook_id] = asyncio.create_task(
                    self._drain(webhook_id), name=f"webhook-{webhook_id}"
                )
            else:
                wait = min(wait, (next_ms - now) / 1000)
        return max(wait, 0.01)

    async def _heads(self) -> list[tuple[int, int]]:
        """``(webhook id, next attempt ms)`` of each webhook's oldest pending delivery."""
        rank = (
            func.row_number()
            .over(
                partition_by=WebhookDelivery.webhook_id,
                order_by=(WebhookDelivery.created_ms, WebhookDelivery.id),
            )
            .label("rank")
        )
        pending = (
            select(WebhookDelivery.webhook_id, WebhookDelivery.next_attempt_ms, rank)
            .where(WebhookDelivery.status == "pending")
            .subquery()
        )
        async with self.db() as session:
            rows = await session.execute(
                select(pending.c.webhook_id, pending.c.next_attempt_ms).where(pending.c.rank == 1)
            )
            return [(int(w), int(n)) for w, n in rows.all()]

    async def _drain(self, webhook_id: int) -> None:
        """Send one webhook's due deliveries in order until none is due or one must wait."""
        try:
            while True:
                async with self._slots:  # claim only when able to send (the lease is short)
                    claim = await self._claim(webhook_id)
                    if claim is None:
                        return
                    try:
                        outcome = await self._send(claim)
                    except asyncio.CancelledError:
                        await self._release(claim)
                        raise
                if not await self._record(claim, outcome):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s: dispatching failed; trying again later", webhook_id)
            await asyncio.sleep(self.settings.webhook_poll_seconds)  # never spin on a fault
        finally:
            self._workers.pop(webhook_id, None)
            self.job.wake()

    # --- database steps -----------------------------------------------------------------------

    async def _claim(self, webhook_id: int) -> Claim | None:
        """Lease the webhook's oldest pending delivery if it is due and nobody holds it."""
        now = now_ms()
        async with self.db.begin() as session:
            head_id = await session.scalar(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == "pending"
                )
                .order_by(WebhookDelivery.created_ms, WebhookDelivery.id)
                .limit(1)
            )
            if head_id is None:
                return None
            row = await session.scalar(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.id == head_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_ms <= now,
                )
                .with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            hook = await session.get(Webhook, webhook_id)
            if hook is None or hook.deleted_ms is not None:
                row.status = "failed"
                row.last_error = "webhook deleted"
                return None
            row.attempts += 1
            row.next_attempt_ms = (
                now + int(self.settings.webhook_timeout_seconds * 1000) + LEASE_MARGIN_MS
            )
            return Claim(
                delivery_id=row.id,
                event=row.event,
                body=row.body,
                created_ms=row.created_ms,
                attempts=row.attempts,
                url=hook.url,
                secret=hook.secret,
            )

    async def _release(self, claim: Claim) -> None:
        """Give an abandoned attempt back so the next dispatcher sends it without waiting."""
        with contextlib.suppress(Exception):
            async with self.db.begin() as session:
                await session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == claim.delivery_id,
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.attempts == claim.attempts,
                    )
                    .values(next_attempt_ms=now_ms())
                )

    async def _record(self, claim: Claim, outcome: Outcome) -> bool:
        """Store an attempt's outcome; whether the webhook's next delivery may go now."""
        now = now_ms()
        values: dict[str, Any] = {
            "last_status_code": outcome.status_code,
            "last_response": outcome.response,
            "last_error": outcome.error,
        }
        if outcome.ok:
            values.update(status="delivered", delivered_ms=now)
        else:
            delay = backoff_delay(
                claim.attempts,
                self.settings.webhook_retry_base_seconds,
                self.settings.webhook_retry_max_seconds,
            )
            next_ms = now + int(delay * 1000)
            deadline = claim.created_ms + int(self.settings.webhook_max_age_seconds * 1000)
            if next_ms > deadline:
                values.update(status="failed")
            else:
                values.update(next_attempt_ms=next_ms)
        async with self.db.begin() as session:
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claim.delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.attempts == claim.attempts,
                )
                .values(**values)
            )
        if not outcome.ok:
            # The host only: a webhook URL's path and query are often its credentials.
            log.info(
                "webhook delivery %s to %s attempt %d: %s",
                claim.delivery_id,
                urlsplit(claim.url).hostname,
                claim.attempts,
                redact_url(outcome.error, claim.url) or f"HTTP {outcome.status_code}",
            )
        settled = "status" in values
        return settled and cast(CursorResult[Any], result).rowcount == 1

    # --- HTTP ---------------------------------------------------------------------------------

    async def _send(self, claim: Claim) -> Outcome:
        """One POST of the stored body, signed, to the (re-checked, pinned) target.

        The whole attempt (DNS, connect, send, response head, capped body) gets
        ``webhook_timeout_seconds``; a body still arriving then does not undo a 2xx.
        """
        client = self._http_client()
        import httpx  # loaded by _http_client

        body = claim.body.encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Simulcast-Event": claim.event,
            "X-Simulcast-Delivery": claim.delivery_id,
            "X-Simulcast-Timestamp": str(timestamp),
        }
        if claim.secret:
            headers["X-Simulcast-Signature"] = webhooks.sign(claim.secret, timestamp, body)
        timeout = self.settings.webhook_timeout_seconds
        deadline = asyncio.get_running_loop().time() + timeout
        url, extensions = claim.url, dict[str, Any]()
        try:
            async with asyncio.timeout_at(deadline):
                if not self.settings.webhooks_allow_private:
                    url, extensions = await self._pin(claim.url, headers)
                request = client.build_request(
                    "POST", url, content=body, headers=headers, extensions=extensions
                )
                response = await client.send(request, stream=True)
        except webhooks.WebhookError as exc:
            return Outcome(error=f"refused: {exc}")
        except TimeoutError:
            return Outcome(error=f"timed out after {timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}"[:500])
        try:
            text = await self._read_capped(response, deadline)
        finally:
            await response.aclose()
        return Outcome(status_code=response.status_code, response=text)

    async def _pin(self, url: str, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """Resolve and check the target now (DNS may have changed), and connect to that address."""
        _scheme, host, port = webhooks.check_url_shape(url, allow_http=True)
        addresses = await webhooks.resolve_target(host, port, allow_private=False)
        target, host_header, extensions = pinned_request(url, addresses[0])
        headers.update(host_header)
        return target, extensions

    async def _read_capped(self, response: httpx.Response, deadline: float) -> str:
        """Up to ``webhook_response_cap_bytes`` of the body, whatever arrives by ``deadline``."""
        import httpx  # loaded by _http_client

        cap = self.settings.webhook_response_cap_bytes
        received = bytearray()
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout_at(deadline):
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) >= cap:
                        break
        return bytes(received[:cap]).decode("utf-8", errors="replace")
