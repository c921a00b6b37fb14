"""Lightning tips, non-custodial: the streamer's own connected wallet (the NWC connection of
:mod:`simulcast.control.topups`) makes the invoice, the viewer pays it, and the streamer's wallet
tells us it was paid (a ``payment_received`` notification wakes the sweep; ``lookup_invoice``
decides). The operator's wallet and our ledger are never involved.

Wallet requests take seconds, so none runs inside a database transaction.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from simulcast.control.nwc import NwcError, Wallet
from simulcast.control.secretbox import SecretBoxError
from simulcast.control.services import lightning, tips
from simulcast.control.timeutil import now_ms
from simulcast.control.wallet_sweep import WalletRequestError, WalletSweep

log = logging.getLogger("simulcast.tips")

STATUS_VISIBLE_MS = 600_000
"""The public status of a tip answers until this long after its invoice expired (or was paid)."""
LOOKUP_PAUSE_S = 1.0
"""A public status request looks a pending tip up at most this often (viewers poll it)."""
LATE_PAYMENT_MS = 3_600_000
"""How long after expiry the sweep still looks a tip up (a payment in flight may land late)."""


class TipError(WalletRequestError):
    """A tip request that cannot be honoured: ``status``, and ``field`` or ``reason``."""


@dataclass(frozen=True, slots=True)
class Offer:
    """Whether viewers of an account can tip now, and within which range; ``reason`` (a code)
    and ``message`` say why not."""

    available: bool
    min_sats: int
    max_sats: int
    reason: str | None
    message: str | None


class Tips(WalletSweep):
    """Tip invoices on streamers' wallets, their settlement, and the sweep that finds payments."""

    sweep_name = "tip"

    def _setup(self) -> None:
        self._wallets: dict[int, tuple[str, Wallet]] = {}
        """Open connections to streamers' wallets by account, with the sealed URI they came from
        (kept open so their payment notifications reach us; replaced when the URI changes)."""
        self._looked_up: dict[str, float] = {}

    async def offer(self, *, account_id: int) -> Offer:
        """Whether the account takes tips now: enabled, a wallet connected that offers
        ``make_invoice`` and ``lookup_invoice``."""
        async with self._db() as session:
            policy = await tips.policy(session, account_id=account_id)
            conn = await lightning.connection(session, account_id=account_id)

        def refused(reason: str, message: str) -> Offer:
            return Offer(False, policy.min_sats, policy.max_sats, reason, message)

        if not policy.enabled:
            return refused("tips_disabled", "The streamer has not turned tips on")
        if conn is None:
            return refused("no_wallet", "The streamer has no wallet connected")
        missing = [m for m in ("make_invoice", "lookup_invoice") if m not in conn.methods]
        if missing:
            return refused(
                "wallet_cannot_invoice",
                f"The streamer's wallet cannot make invoices (it does not offer {missing[0]})",
            )
        return Offer(True, policy.min_sats, policy.max_sats, None, None)

    async def create(
        self, *, account_id: int, stream_id: int | None, amount_sats: int, message: str | None
    ) -> dict[str, Any]:
        """An invoice of the streamer's wallet for a viewer's tip: ``{paymentHash, invoice,
        amountSats, expiresAt, status}``."""
        try:
            text = tips.check_message(message)
        except tips.TipInputError as exc:
            raise TipError(400, str(exc), field=exc.field) from None
        offer = await self.offer(account_id=account_id)
        if not offer.available:
            assert offer.message is not None
            raise TipError(409, offer.message, reason=offer.reason)
        try:
            tips.check_amount(tips.Policy(True, offer.min_sats, offer.max_sats), amount_sats)
        except tips.TipInputError as exc:
            raise TipError(400, str(exc), field=exc.field) from None
        wallet = await self._wallet(account_id)
        if wallet is None:
            raise TipError(
                409,
                "The streamer's wallet connection cannot be opened; they must connect it again",
                reason="no_wallet",
            )
        description = _description(text)
        try:
            invoice = await wallet.make_invoice(
                amount_sats=amount_sats,
                description=description,
                expiry_s=self._settings.lightning_invoice_expiry_seconds,
            )
        except NwcError as exc:
            log.warning("wallet of account %s could not make a tip invoice: %s", account_id, exc)
            raise TipError(
                502, "The streamer's wallet did not make an invoice; try again later"
            ) from None
        if invoice.amount_sats != amount_sats:
            raise TipError(502, "The streamer's wallet made an invoice for another amount")
        async with self._db.begin() as session:
            row = await tips.record(
                session,
                account_id=account_id,
                stream_id=stream_id,
                invoice=invoice,
                message=text,
            )
            made = _public(row.payment_hash, row.amount_sats, row.status, row.expires_ms) | {
                "invoice": row.invoice
            }
        self._invoice_made()
        return made

    async def public_status(self, *, payment_hash: str) -> dict[str, Any] | None:
        """What the viewer's player may know of a tip (``None`` once it is gone or too old).
        A pending tip is looked up on the streamer's wallet first, at most once a second."""
        async with self._db() as session:
            row = await tips.get(session, payment_hash=payment_hash)
            if row is None:
                return None
            account_id, status = row.account_id, row.status
            until = max(row.expires_ms, row.paid_ms or 0) + STATUS_VISIBLE_MS
        if until < now_ms():
            return None
        clock = time.monotonic()
        if status != "paid" and self._looked_up.get(payment_hash, 0.0) < clock - LOOKUP_PAUSE_S:
            self._looked_up[payment_hash] = clock
            with contextlib.suppress(NwcError):
                await self._check(account_id, row.payment_hash, row.expires_ms)
        async with self._db() as session:
            row = await tips.get(session, payment_hash=payment_hash)
            assert row is not None
            return _public(row.payment_hash, row.amount_sats, row.status, row.expires_ms)

    async def _wallet(self, account_id: int) -> Wallet | None:
        async with self._db() as session:
            conn = await lightning.connection(session, account_id=account_id)
        cached = self._wallets.get(account_id)
        if conn is None:
            if cached is not None:
                del self._wallets[account_id]
                await cached[1].close()
            return None
        if cached is not None and cached[0] == conn.sealed_uri:
            return cached[1]
        try:
            uri = self._box.open(conn.sealed_uri)
        except SecretBoxError:
            return None
        wallet = self._factory(uri)
        wallet.on_payment_received(self._payment_notified)
        self._wallets[account_id] = (conn.sealed_uri, wallet)
        if cached is not None:
            await cached[1].close()
        return wallet

    async def _check(self, account_id: int, payment_hash: str, expires_ms: int) -> None:
        """Ask the streamer's wallet about one tip and record the answer."""
        wallet = await self._wallet(account_id)
        if wallet is None:
            return
        found = await wallet.lookup_invoice(payment_hash)
        if found.state == "settled":
            async with self._db.begin() as session:
                paid = await tips.mark_paid(session, payment_hash=payment_hash)
            if paid:
                log.info("tip %s paid to account %s", payment_hash, account_id)
                self._notify()
        elif found.state in ("expired", "failed") or expires_ms < now_ms():
            async with self._db.begin() as session:
                await tips.mark_expired(session, payment_hash=payment_hash)

    async def sweep(self) -> int:
        """Look up every tip not yet seen paid (also after a restart, and for an hour after its
        invoice expired); how many there were."""
        async with self._db() as session:
            rows = await tips.unsettled(session, now=now_ms(), late_ms=LATE_PAYMENT_MS)
            pending = [(r.account_id, r.payment_hash, r.expires_ms) for r in rows]
        now, clock = now_ms(), time.monotonic()
        for account_id, payment_hash, expires_ms in pending:
            if self._stopping.is_set():
                break
            # An expired invoice can still be paid (a payment in flight), but rarely: look it
            # up once a minute, not on every sweep.
            if expires_ms < now and self._looked_up.get(payment_hash, 0.0) > clock - 60:
                continue
            self._looked_up[payment_hash] = clock
            try:
                await self._check(account_id, payment_hash, expires_ms)
            except NwcError as exc:
                log.warning("lookup of tip %s failed: %s", payment_hash, exc)
        self._looked_up = {h: t for h, t in self._looked_up.items() if t > clock - 120}
        return len(pending)

    async def stop(self) -> None:
        """Stop the sweep and disconnect from the streamers' wallets."""
        await super().stop()
        for _sealed, wallet in self._wallets.values():
            with contextlib.suppress(Exception):
                await wallet.close()
        self._wallets.clear()


INVOICE_DESCRIPTION_BYTES = 600
"""BOLT11 caps a description at 639 bytes: a 280-character message of emoji would not fit."""


def _description(message: str | None) -> str:
    """The invoice's description: the viewer's message, cut to what an invoice can hold."""
    if not message:
        return "Tip for the stream"
    raw = f"Tip: {message}".encode()
    return raw[:INVOICE_DESCRIPTION_BYTES].decode(errors="ignore")


def _public(payment_hash: str, amount: int, status: str, expires_ms: int) -> dict[str, Any]:
    return {
        "paymentHash": payment_hash,
        "amountSats": amount,
        "status": status,
        "expiresAt": expires_ms,
    }
