"""Nostr Wallet Connect (NIP-47): the thin adapter between the control plane and a Lightning
wallet reached over Nostr relays.

Everything Nostr (keys, NIP-04/NIP-44 encryption, event signing and verification, relay
connections) is done by ``nostr-sdk``; this module only builds NIP-47 requests and matches their
answers. BOLT11 invoices are decoded with ``bolt11``. The rest of the server sees only
:class:`Wallet`, so services and tests can use any implementation of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

# nostr-sdk and bolt11 (~11 MB resident) are imported by the functions that use them, on first
# use: a server whose accounts never connect a wallet never loads them.
if TYPE_CHECKING:
    import nostr_sdk

log = logging.getLogger("simulcast.nwc")

SCHEME = "nostr+walletconnect"
RESEND_PAUSE_S = 0.5
InvoiceState = Literal["pending", "settled", "expired", "failed"]


class NwcUriError(ValueError):
    """A connection URI that is not a usable ``nostr+walletconnect://`` URI; says why."""


class NwcError(Exception):
    """A wallet request that failed: the wallet's own error, or no answer in time."""


@dataclass(frozen=True, slots=True)
class WalletInfo:
    """What ``get_info`` reports: the wallet's name, methods and notification types."""

    alias: str | None
    methods: tuple[str, ...]
    notifications: tuple[str, ...]
    network: str | None


@dataclass(frozen=True, slots=True)
class Budget:
    """What ``get_budget`` reports: the connection's spending budget, in sats."""

    used_sats: int
    total_sats: int
    renews_at_s: int | None
    renewal_period: str | None


@dataclass(frozen=True, slots=True)
class Invoice:
    """A BOLT11 invoice, with the fields the server relies on taken from the invoice itself."""

    bolt11: str
    payment_hash: str
    amount_sats: int
    expires_at_s: int


@dataclass(frozen=True, slots=True)
class InvoiceStatus:
    """What ``lookup_invoice`` says about an incoming payment."""

    payment_hash: str
    state: InvoiceState
    settled_at_s: int | None


class Wallet(Protocol):
    """The NIP-47 requests the server makes of a wallet."""

    async def get_info(self) -> WalletInfo:
        """The wallet's alias and supported methods."""
        ...

    async def get_balance_sats(self) -> int:
        """The wallet's spendable balance in sats."""
        ...

    async def get_budget(self) -> Budget | None:
        """The connection's spending budget (``None``: no budget set)."""
        ...

    async def make_invoice(self, *, amount_sats: int, description: str, expiry_s: int) -> Invoice:
        """A new invoice paying ``amount_sats`` to this wallet."""
        ...

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus:
        """The state of an invoice this wallet made."""
        ...

    async def pay_invoice(self, invoice: str) -> str:
        """Pay a BOLT11 invoice; the payment preimage (hex)."""
        ...

    async def close(self) -> None:
        """Disconnect from the relays."""
        ...

    def on_payment_received(self, callback: Callable[[str], None]) -> None:
        """Have ``callback(payment_hash)`` called when the wallet notifies a payment received
        (wallets that do not notify never call it)."""
        ...


WalletFactory = Callable[[str], Wallet]
"""Makes a :class:`Wallet` from a connection URI already checked by :func:`check_uri`."""


_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_uri(uri: str) -> str:
    """Validate a ``nostr+walletconnect://`` URI's form; the wallet's public key (hex).

    Raises :class:`NwcUriError` naming the problem: scheme, wallet key, relay, secret.
    """
    import nostr_sdk

    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        raise NwcUriError("uri is not a valid URI") from None
    if parts.scheme != SCHEME:
        raise NwcUriError(f"uri must start with {SCHEME}://")
    pubkey = (parts.netloc or parts.path.lstrip("/")).lower()
    if not _HEX64.fullmatch(pubkey):
        raise NwcUriError("uri must name the wallet's public key (64 hex characters)")
    query = parse_qs(parts.query)
    relays = query.get("relay", [])
    if not relays:
        raise NwcUriError("uri has no relay parameter")
    for relay in relays:
        if urlsplit(relay).scheme not in ("ws", "wss") or not urlsplit(relay).hostname:
            raise NwcUriError(f"uri relay {relay!r} is not a ws:// or wss:// URL")
    secrets = query.get("secret", [])
    if len(secrets) != 1 or not _HEX64.fullmatch(secrets[0].lower()):
        raise NwcUriError("uri must carry one secret (64 hex characters)")
    try:
        nostr_sdk.NostrWalletConnectUri.parse(uri.strip())
    except nostr_sdk.NostrSdkError:
        # The library's message may quote the URI, secret included: not repeated.
        raise NwcUriError("uri is not a valid wallet connect URI") from None
    return pubkey


def decode_invoice(invoice: str) -> Invoice:
    """The payment hash, amount and expiry of a BOLT11 invoice (its signature checked)."""
    import bolt11

    try:
        decoded = bolt11.decode(invoice)
    except Exception as exc:  # the decoder raises several types for malformed input
        raise NwcError(f"the wallet returned an invalid invoice: {exc}") from None
    if decoded.amount_msat is None:
        raise NwcError("the wallet returned an invoice without an amount")
    return Invoice(
        bolt11=invoice,
        payment_hash=str(decoded.payment_hash),
        amount_sats=int(decoded.amount_msat) // 1000,
        expires_at_s=int(decoded.date) + int(decoded.expiry or 3600),
    )


def preimage_matches(preimage: str, payment_hash: str) -> bool:
    """Whether ``preimage`` (hex) is the secret behind ``payment_hash``: proof of payment."""
    try:
        return hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash.lower()
    except ValueError:
        return False


INFO_KIND, REQUEST_KIND, RESPONSE_KIND = 13194, 23194, 23195
NOTIFICATION_KIND, NOTIFICATION_NIP44_KIND = 23196, 23197
INFO_TIMEOUT_S = 3.0
_STATES: dict[str, InvoiceState] = {
    "pending": "pending",
    "accepted": "pending",
    "settled": "settled",
    "expired": "expired",
    "failed": "failed",
}


class NostrWallet:
    """:class:`Wallet` over a ``nostr-sdk`` relay client; one connection per instance.

    nostr-sdk's own NWC client (0.45) takes the first response-kind event the relay hands it as
    the answer, trusting the relay to filter by request id; a relay that does not (broken or
    hostile) could answer a payment with another request's response. So requests are matched
    here: an answer counts only if its signature verifies, its author is the wallet and its
    ``e`` tag names the request. Signing and NIP-04/NIP-44 are nostr-sdk's.
    """

    def __init__(self, uri: str, *, timeout_s: float) -> None:
        import nostr_sdk

        parsed = nostr_sdk.NostrWalletConnectUri.parse(uri.strip())
        self._wallet = parsed.public_key()
        self._wallet_hex = str(self._wallet.to_hex())
        self._relays = list(parsed.relays())
        self._keys = nostr_sdk.Keys(parsed.secret())
        self._timeout = timeout_s
        self._client: nostr_sdk.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._on_payment: Callable[[str], None] | None = None
        self._nip44 = False
        self._closing: set[asyncio.Task[None]] = set()

    def on_payment_received(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(payment_hash)`` on the wallet's ``payment_received`` notifications
        (a hint to look the invoice up, never proof of payment)."""
        self._on_payment = callback

    async def _connected(self) -> nostr_sdk.Client:
        import nostr_sdk

        async with self._connecting:
            if self._client is not None:
                return self._client
            opts = nostr_sdk.RelayOptions().retry_interval(datetime.timedelta(seconds=1))
            client = nostr_sdk.ClientBuilder().build()
            for relay in self._relays:
                await client.add_relay(relay, opts=opts)
            await client.connect()
            # One subscription for every answer and notification this wallet sends us.
            answers = (
                nostr_sdk.Filter()
                .author(self._wallet)
                .kinds(
                    [
                        nostr_sdk.Kind(k)
                        for k in (RESPONSE_KIND, NOTIFICATION_KIND, NOTIFICATION_NIP44_KIND)
                    ]
                )
                .pubkey(self._keys.public_key())
                .since(nostr_sdk.Timestamp.from_secs(int(time.time()) - 60))
            )
            await client.subscribe(nostr_sdk.ReqTarget.auto([answers]))
            self._reader = asyncio.create_task(self._read(client, client.notifications()))
            self._nip44 = await self._offers_nip44(client)
            self._client = client
            return client

    async def _offers_nip44(self, client: nostr_sdk.Client) -> bool:
        """Whether the wallet's info event lists NIP-44 encryption (NIP-47 prefers it when
        offered; wallets that list nothing, or cannot be asked, get NIP-04)."""
        import nostr_sdk

        info = nostr_sdk.Filter().author(self._wallet).kind(nostr_sdk.Kind(INFO_KIND)).limit(1)
        try:
            events = await client.fetch_events(
                nostr_sdk.ReqTarget.auto([info]),
                timeout=datetime.timedelta(seconds=min(self._timeout, INFO_TIMEOUT_S)),
            )
        except nostr_sdk.NostrSdkError:
            return False
        for event in events:
            if not event.verify() or event.author().to_hex() != self._wallet_hex:
                continue
            for tag in event.tags():
                if tag.kind() == "encryption" and "nip44_v2" in " ".join(tag.to_vec()[1:]).split():
                    return True
        return False

    async def _read(
        self, client: nostr_sdk.Client, stream: nostr_sdk.ClientNotificationStream
    ) -> None:
        try:
            while True:
                note = await stream.next()
                if note is None:
                    break
                if note.is_new_event():
                    try:
                        self._received(note.event)
                    except Exception:
                        log.exception("ignored a wallet event that could not be read")
        finally:
            # Without a reader no answer can arrive: the next request connects anew.
            if self._forget(client):
                closing = asyncio.create_task(client.shutdown())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    def _received(self, event: nostr_sdk.Event) -> None:
        import nostr_sdk

        kind = event.kind().as_u16()
        if kind not in (RESPONSE_KIND, NOTIFICATION_KIND, NOTIFICATION_NIP44_KIND):
            return  # e.g. the info event, which the client's stream also carries
        if not event.verify() or event.author().to_hex() != self._wallet_hex:
            log.warning("ignored a wallet event with a bad signature or another author")
            return
        try:
            body = json.loads(self._decrypt(event.content()))
        except (nostr_sdk.NostrSdkError, ValueError):
            log.warning("ignored a wallet event that does not decrypt to JSON")
            return
        if not isinstance(body, dict):
            return
        if kind == RESPONSE_KIND:
            about = [t.content() for t in event.tags() if t.kind() == "e"]
            future = self._pending.get(about[0]) if len(about) == 1 else None
            if future is None or future.done():
                log.info("ignored a wallet response to no request of ours")
                return
            future.set_result(body)
        elif body.get("notification_type") == "payment_received" and self._on_payment:
            payment_hash = (body.get("notification") or {}).get("payment_hash")
            if isinstance(payment_hash, str):
                self._on_payment(payment_hash)

    def _decrypt(self, content: str) -> str:
        import nostr_sdk

        # NIP-04 payloads carry "?iv="; anything else is NIP-44.
        if "?iv=" in content:
            return str(nostr_sdk.nip04_decrypt(self._keys.secret_key(), self._wallet, content))
        return str(nostr_sdk.nip44_decrypt(self._keys.secret_key(), self._wallet, content))

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request and await its answer: the ``result``, or :class:`NwcError`.

        While the relay is unreachable the request is sent again (the same signed event, so a
        wallet sees one request) until the timeout.
        """
        import nostr_sdk

        client = await self._connected()
        text = json.dumps({"method": method, "params": params})
        tags = [nostr_sdk.Tag.public_key(self._wallet)]
        if self._nip44:
            content = nostr_sdk.nip44_encrypt(
                self._keys.secret_key(), self._wallet, text, nostr_sdk.Nip44Version.V2
            )
            tags.append(nostr_sdk.Tag.custom("encryption", ["nip44_v2"]))
        else:
            content = nostr_sdk.nip04_encrypt(self._keys.secret_key(), self._wallet, text)
        event = (
            nostr_sdk.EventBuilder(nostr_sdk.Kind(REQUEST_KIND), content)
            .tags(tags)
            .finalize(self._keys)
        )
        request_id = str(event.id().to_hex())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        deadline = time.monotonic() + self._timeout
        try:
            while True:
                try:
                    output = await client.send_event(event)
                    if output.success:
                        break
                except nostr_sdk.NostrSdkError as exc:
                    log.info("wallet request not sent yet: %s", exc)
                if time.monotonic() + RESEND_PAUSE_S > deadline:
                    raise NwcError(f"{method}: no relay took the request (timeout)")
                await asyncio.sleep(RESEND_PAUSE_S)
            try:
                body = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await self._reconnect_after_silence(client)
                raise NwcError(f"{method}: no response from the wallet (timeout)") from None
        finally:
            self._pending.pop(request_id, None)
        error = body.get("error")
        if error:
            code = error.get("code", "ERROR") if isinstance(error, dict) else "ERROR"
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise NwcError(f"{code}: {message}")
        result = body.get("result")
        if not isinstance(result, dict):
            raise NwcError(f"{method}: the wallet's response has no result")
        return result

    def _forget(self, client: nostr_sdk.Client) -> bool:
        """Stop using ``client`` if it is the current one; whether it was."""
        if self._client is not client:
            return False
        self._client = None
        return True

    async def _reconnect_after_silence(self, client: nostr_sdk.Client) -> None:
        """A request the relay took went unanswered. The wallet may be down, but our side of a
        relay restart may also have left a subscription that no longer delivers (answers are
        ephemeral events: one missed is gone), so the next request connects afresh."""
        async with self._connecting:
            if self._client is not client or self._reader is None:
                return  # another request already reconnected
            log.info(
                "no answer from the wallet in %.0f s: reconnecting to its relays", self._timeout
            )
            # The reader's end drops the client; under the lock no request can take it meanwhile.
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def get_info(self) -> WalletInfo:
        """``get_info``."""
        result = await self._request("get_info", {})
        return WalletInfo(
            alias=_str_or_none(result.get("alias")),
            methods=tuple(str(m) for m in result.get("methods") or ()),
            notifications=tuple(str(m) for m in result.get("notifications") or ()),
            network=_str_or_none(result.get("network")),
        )

    async def get_balance_sats(self) -> int:
        """``get_balance`` (the wallet answers in millisats)."""
        return _int(await self._request("get_balance", {}), "balance") // 1000

    async def get_budget(self) -> Budget | None:
        """``get_budget`` (millisats on the wire); ``None`` when the wallet sets no budget."""
        result = await self._request("get_budget", {})
        if "total_budget" not in result:
            return None
        renews = result.get("renews_at")
        period = result.get("renewal_period")
        return Budget(
            used_sats=_int(result, "used_budget") // 1000,
            total_sats=_int(result, "total_budget") // 1000,
            renews_at_s=renews if isinstance(renews, int) else None,
            renewal_period=str(period) if period else None,
        )

    async def make_invoice(self, *, amount_sats: int, description: str, expiry_s: int) -> Invoice:
        """``make_invoice``; the invoice's own amount and hash are checked against the request."""
        made = await self._request(
            "make_invoice",
            {"amount": amount_sats * 1000, "description": description, "expiry": expiry_s},
        )
        invoice = decode_invoice(str(made.get("invoice") or ""))
        if invoice.amount_sats != amount_sats:
            raise NwcError(
                f"the wallet made an invoice for {invoice.amount_sats} sats, not {amount_sats}"
            )
        claimed = made.get("payment_hash")
        if claimed and str(claimed).lower() != invoice.payment_hash:
            raise NwcError("the wallet's payment hash does not match its invoice")
        return invoice

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus:
        """``lookup_invoice`` by payment hash."""
        found = await self._request("lookup_invoice", {"payment_hash": payment_hash})
        settled_at = found.get("settled_at")
        state = _STATES.get(str(found.get("state") or "").lower())
        if state is None:  # wallets from before NIP-47 had "state": settled_at says it
            state = "settled" if settled_at else "pending"
        preimage = found.get("preimage")
        if state == "settled" and preimage and not preimage_matches(str(preimage), payment_hash):
            raise NwcError("the wallet reports a settlement whose preimage does not match")
        settled = int(settled_at) if isinstance(settled_at, int) else None
        return InvoiceStatus(payment_hash=payment_hash, state=state, settled_at_s=settled)

    async def pay_invoice(self, invoice: str) -> str:
        """``pay_invoice``; the preimage."""
        paid = await self._request("pay_invoice", {"invoice": invoice})
        return str(paid.get("preimage") or "")

    async def close(self) -> None:
        """Disconnect from the relays."""
        client, self._client = self._client, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if client is not None:
            await client.shutdown()
        await asyncio.gather(*self._closing, return_exceptions=True)


def nostr_wallet_factory(timeout_s: float) -> WalletFactory:
    """A factory of :class:`NostrWallet` with a request timeout."""
    return lambda uri: NostrWallet(uri, timeout_s=timeout_s)


def _str_or_none(value: object) -> str | None:
    return str(value) if value is not None else None


def _int(result: dict[str, Any], key: str) -> int:
    value = result.get(key)
    if not isinstance(value, int):
        raise NwcError(f"the wallet's response has no {key}")
    return value
