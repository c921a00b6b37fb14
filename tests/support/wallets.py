"""NIP-47 wallet services for the tests, speaking the real protocol over a real relay.

A :class:`LightningNetwork` stands in for the payment network: it knows every invoice any test
wallet made (real BOLT11, signed with the wallet's node key) and moves millisats from payer to
payee when one is paid, once. Each :class:`WalletService` is a NIP-47 wallet: it publishes its
info event, answers encrypted requests (kind 23194) from its authorized client key with signed,
encrypted responses (kind 23195) tagged with the request id, and sends ``payment_received``
notifications (kind 23196) to its client. Faults are switches on the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import bolt11
import nostr_sdk as n
import websockets
from bolt11 import MilliSatoshi, Tag, TagChar, Tags

REQUEST, RESPONSE, NOTIFICATION, INFO = 23194, 23195, 23196, 13194
SUBSCRIPTION = "nwc-requests"
METHODS = [
    "get_info",
    "get_balance",
    "get_budget",
    "make_invoice",
    "lookup_invoice",
    "pay_invoice",
]


@dataclass
class Payable:
    """One invoice on the network."""

    payee: WalletService
    amount_msat: int
    preimage: str
    invoice: str
    expires_at: int
    created_at: int
    settled_at: int | None = None


@dataclass
class LightningNetwork:
    """Every test wallet's invoices, by payment hash; payments move balances exactly once."""

    invoices: dict[str, Payable] = field(default_factory=dict)
    payments: list[tuple[str, str, int]] = field(default_factory=list)
    """``(payer alias, payment hash, msat)`` of every payment made."""

    def pay(self, payer: WalletService, invoice: str) -> str:
        """Pay ``invoice`` from ``payer``; the preimage. Raises ``PaymentError`` (code, message)."""
        decoded = bolt11.decode(invoice)
        target = self.invoices.get(decoded.payment_hash)
        if target is None:
            raise PaymentError("NOT_FOUND", "no route to this invoice")
        if target.settled_at is not None:
            raise PaymentError("OTHER", "invoice already paid")
        if payer.balance_msat < target.amount_msat:
            raise PaymentError("INSUFFICIENT_BALANCE", "not enough sats in the wallet")
        payer.balance_msat -= target.amount_msat
        target.payee.balance_msat += target.amount_msat
        target.settled_at = int(time.time())
        self.payments.append((payer.alias, decoded.payment_hash, target.amount_msat))
        target.payee.paid.append(decoded.payment_hash)
        return target.preimage


class PaymentError(Exception):
    """A NIP-47 error: ``code`` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class WalletService:
    """A NIP-47 wallet service on one relay, for one client key (its connection URI's secret)."""

    def __init__(
        self,
        network: LightningNetwork,
        relay_url: str,
        *,
        alias: str,
        balance_sats: int,
        nip44: bool = False,
        methods: list[str] | None = None,
    ) -> None:
        self.network = network
        self.methods = METHODS if methods is None else methods
        """The methods advertised (info event, get_info); the others are still answered."""
        self.relay_url = relay_url
        self.alias = alias
        self.balance_msat = balance_sats * 1000
        self.keys = n.Keys.generate()
        self.client_keys = n.Keys.generate()
        self.node_key = os.urandom(32).hex()
        self.paid: list[str] = []
        self.requests: list[str] = []
        """Methods asked, in order."""
        self.nip44 = nip44
        """Advertise NIP-44 in the info event (requests in either scheme are answered)."""
        self.encryptions: set[str] = set()
        """The schemes requests arrived in."""
        self.refuse_payments: str | None = None
        """When set, ``pay_invoice`` answers this error message."""
        self.forge_first = False
        """Before each real response, publish one with a forged signature and one tagged for
        another request, both with a wrong answer."""
        self.hold_pay_response: asyncio.Event | None = None
        """When set, a payment is made at once but its response waits for this event."""
        self.pay_received = asyncio.Event()
        self._client: n.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._resubscriber: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def pubkey(self) -> str:
        return str(self.keys.public_key().to_hex())

    @property
    def balance_sats(self) -> int:
        return self.balance_msat // 1000

    def uri(self, relay_url: str | None = None) -> str:
        """The connection URI a client of this wallet uses."""
        return (
            f"nostr+walletconnect://{self.pubkey}?relay={relay_url or self.relay_url}"
            f"&secret={self.client_keys.secret_key().to_hex()}"
        )

    async def start(self) -> None:
        """Connect, publish the info event, and serve requests."""
        opts = n.RelayOptions().retry_interval(datetime.timedelta(seconds=0.2))
        client = n.ClientBuilder().build()
        await client.add_relay(n.RelayUrl.parse(self.relay_url), opts=opts)
        await client.connect()
        self._client = client
        flt = n.Filter().kind(n.Kind(REQUEST)).pubkey(self.keys.public_key())
        await client.subscribe(n.ReqTarget.auto([flt]), id=SUBSCRIPTION)
        tags = [n.Tag.custom("notifications", ["payment_received"])]
        if self.nip44:
            tags.append(n.Tag.custom("encryption", ["nip44_v2 nip04"]))
        info = n.EventBuilder(n.Kind(INFO), " ".join(self.methods) + " notifications").tags(tags)
        await client.send_event(info.finalize(self.keys))
        self._task = asyncio.create_task(self._serve(client.notifications()))
        self._resubscriber = asyncio.create_task(self._keep_subscribed(client, flt))

    async def _keep_subscribed(self, client: n.Client, flt: n.Filter) -> None:
        """Send the request subscription again every second under the same id (a relay
        replaces it), so a subscription lost in a relay restart on the wallet's side is back
        within a second: requests are ephemeral, and the test is about the server's side."""
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await client.subscribe(n.ReqTarget.auto([flt]), id=SUBSCRIPTION)

    async def stop(self) -> None:
        for task in (self._task, self._resubscriber):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._client is not None:
            await self._client.shutdown()

    async def _serve(self, stream: n.ClientNotificationStream) -> None:
        while True:
            note = await stream.next()
            if note is None:
                return
            if not note.is_new_event() or note.event.kind().as_u16() != REQUEST:
                continue
            # Each request on its own task: a held payment must not stall the lookups.
            task = asyncio.create_task(self._handle(note.event))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, request: n.Event) -> None:
        if request.author().to_hex() != self.client_keys.public_key().to_hex():
            return  # not our client: a NIP-47 wallet ignores it
        nip44 = any(t.to_vec()[:2] == ["encryption", "nip44_v2"] for t in request.tags())
        if nip44:
            plain = n.nip44_decrypt(self.keys.secret_key(), request.author(), request.content())
        else:
            plain = n.nip04_decrypt(self.keys.secret_key(), request.author(), request.content())
        self.encryptions.add("nip44" if nip44 else "nip04")
        body = json.loads(plain)
        method, params = body["method"], body.get("params", {})
        self.requests.append(method)
        try:
            result = await self._answer(method, params)
            reply: dict[str, Any] = {"result_type": method, "result": result}
        except PaymentError as exc:
            reply = {"result_type": method, "error": {"code": exc.code, "message": str(exc)}}
        if method == "pay_invoice" and self.hold_pay_response is not None:
            self.pay_received.set()
            await self.hold_pay_response.wait()
        if self.forge_first:
            await self._forgeries(request, method, nip44)
        await self._send(request, reply, nip44)

    async def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        if method == "get_info":
            return {
                "alias": self.alias,
                "methods": self.methods,
                "notifications": ["payment_received"],
                "network": "regtest",
                "pubkey": self.pubkey,
            }
        if method == "get_balance":
            return {"balance": self.balance_msat}
        if method == "get_budget":
            spent = sum(msat for payer, _, msat in self.network.payments if payer == self.alias)
            return {
                "used_budget": spent,
                "total_budget": 100_000_000,
                "renews_at": now + 86400,
                "renewal_period": "daily",
            }
        if method == "make_invoice":
            preimage = os.urandom(32)
            payment_hash = hashlib.sha256(preimage).hexdigest()
            expiry = int(params.get("expiry") or 3600)
            tags = Tags(
                [
                    Tag(TagChar.payment_hash, payment_hash),
                    Tag(TagChar.payment_secret, os.urandom(32).hex()),
                    Tag(TagChar.description, params.get("description") or ""),
                    Tag(TagChar.expire_time, expiry),
                ]
            )
            invoice = bolt11.encode(
                bolt11.Bolt11(
                    currency="bcrt",
                    date=now,
                    tags=tags,
                    amount_msat=MilliSatoshi(int(params["amount"])),
                ),
                self.node_key,
            )
            self.network.invoices[payment_hash] = Payable(
                payee=self,
                amount_msat=int(params["amount"]),
                preimage=preimage.hex(),
                invoice=invoice,
                expires_at=now + expiry,
                created_at=now,
            )
            return {
                "type": "incoming",
                "invoice": invoice,
                "payment_hash": payment_hash,
                "amount": int(params["amount"]),
                "created_at": now,
                "expires_at": now + expiry,
            }
        if method == "lookup_invoice":
            found = self.network.invoices.get(params.get("payment_hash", ""))
            if found is None or found.payee is not self:
                raise PaymentError("NOT_FOUND", "invoice not found")
            if found.settled_at is not None:
                state = "settled"
            elif found.expires_at < now:
                state = "expired"
            else:
                state = "pending"
            result = {
                "type": "incoming",
                "state": state,
                "invoice": found.invoice,
                "payment_hash": params["payment_hash"],
                "amount": found.amount_msat,
                "fees_paid": 0,
                "created_at": found.created_at,
                "expires_at": found.expires_at,
            }
            if found.settled_at is not None:
                result["settled_at"] = found.settled_at
                result["preimage"] = found.preimage
            return result
        if method == "pay_invoice":
            if self.refuse_payments is not None:
                raise PaymentError("RESTRICTED", self.refuse_payments)
            preimage = self.network.pay(self, params["invoice"])
            payee = self.network.invoices[bolt11.decode(params["invoice"]).payment_hash].payee
            await payee.notify_received(params["invoice"])
            return {"preimage": preimage, "fees_paid": 0}
        raise PaymentError("NOT_IMPLEMENTED", f"{method} is not supported")

    async def notify_received(self, invoice: str) -> None:
        """Send the ``payment_received`` notification to this wallet's client."""
        decoded = bolt11.decode(invoice)
        found = self.network.invoices[decoded.payment_hash]
        note = {
            "notification_type": "payment_received",
            "notification": {
                "type": "incoming",
                "invoice": invoice,
                "payment_hash": decoded.payment_hash,
                "amount": found.amount_msat,
                "fees_paid": 0,
                "created_at": found.created_at,
                "settled_at": found.settled_at,
                "preimage": found.preimage,
            },
        }
        content = n.nip04_encrypt(
            self.keys.secret_key(), self.client_keys.public_key(), json.dumps(note)
        )
        event = (
            n.EventBuilder(n.Kind(NOTIFICATION), content)
            .tags([n.Tag.public_key(self.client_keys.public_key())])
            .finalize(self.keys)
        )
        assert self._client is not None
        with contextlib.suppress(Exception):
            await self._client.send_event(event)

    def _response(
        self, request: n.Event, reply: dict[str, Any], nip44: bool, *, about: n.EventId
    ) -> n.Event:
        text = json.dumps(reply)
        if nip44:
            content = n.nip44_encrypt(
                self.keys.secret_key(), request.author(), text, n.Nip44Version.V2
            )
        else:
            content = n.nip04_encrypt(self.keys.secret_key(), request.author(), text)
        tags = [n.Tag.event(about), n.Tag.public_key(request.author())]
        return n.EventBuilder(n.Kind(RESPONSE), content).tags(tags).finalize(self.keys)

    async def _send(self, request: n.Event, reply: dict[str, Any], nip44: bool) -> None:
        assert self._client is not None
        event = self._response(request, reply, nip44, about=request.id())
        # The relay may be restarting: keep trying until it takes the event.
        for _ in range(100):
            try:
                await self._client.send_event(event)
                return
            except Exception:
                await asyncio.sleep(0.1)

    async def _forgeries(self, request: n.Event, method: str, nip44: bool) -> None:
        """A response with a valid-looking but forged signature, and a validly signed one for
        another request: both claim a payment succeeded / a huge balance."""
        wrong = {
            "result_type": method,
            "result": {"balance": 10**12, "preimage": "00" * 32, "alias": "forged"},
        }
        forged = json.loads(self._response(request, wrong, nip44, about=request.id()).as_json())
        forged["sig"] = forged["sig"][:-4] + ("0000" if forged["sig"][-4:] != "0000" else "1111")
        other = n.EventBuilder(n.Kind(1), "another request").finalize(self.client_keys)
        misdirected = self._response(request, wrong, nip44, about=other.id())
        # Straight onto the relay's socket: the Nostr client refuses to send a forged event.
        async with websockets.connect(self.relay_url) as raw:
            for event in (forged, json.loads(misdirected.as_json())):
                await raw.send(json.dumps(["EVENT", event]))
                await raw.recv()
