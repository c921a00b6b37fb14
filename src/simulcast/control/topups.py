"""Lightning top-ups end to end: the wallet requests around the database work of
:mod:`simulcast.control.services.lightning`.

Wallet requests take seconds, so none runs inside a database transaction: each step commits on
its own (the invoice is recorded before anyone can pay it, the credit commits with its webhook).
Every path that learns of a payment (the payer's preimage, a lookup, the sweep after a restart)
ends in :func:`lightning.settle`, which credits once per payment hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from simulcast.control.nwc import (
    NwcError,
    NwcUriError,
    Wallet,
    check_uri,
    preimage_matches,
)
from simulcast.control.secretbox import SecretBoxError
from simulcast.control.services import ledger, lightning
from simulcast.control.timeutil import now_ms
from simulcast.control.wallet_sweep import WalletRequestError, WalletSweep

log = logging.getLogger("simulcast.lightning")

OPERATOR_SETTING = "SIMULCAST_OPERATOR_NWC_URI"
AUTO_RETRY_SECONDS = 60.0
"""After an automatic top-up failed, the account's next automatic attempt waits this long (a
wallet that refuses would otherwise be asked, and a webhook sent, on every meter tick)."""


LATE_LOOKUP_SECONDS = 60.0
"""An expired top-up (paid late, or never) is looked up at most this often by the sweep."""


class LightningUnavailable(Exception):
    """The operator has no receiving wallet configured."""

    def __init__(self) -> None:
        super().__init__(f"Lightning is not configured on this server: set {OPERATOR_SETTING}")


class TopupError(WalletRequestError):
    """A top-up request that cannot be honoured: ``status`` and ``field`` for the HTTP answer."""


@dataclass(frozen=True, slots=True)
class Connected:
    """A stored wallet connection as shown to its owner (never the URI)."""

    alias: str | None
    methods: list[str]
    notifications: list[str]
    wallet_pubkey: str
    balance_sats: int | None
    budget: dict[str, Any] | None
    connected_ms: int


class Lightning(WalletSweep):
    """Top-ups for one server: made by the API, kept funded by the meter, swept by :meth:`run`."""

    sweep_name = "lightning"

    def _setup(self) -> None:
        uri = self._settings.operator_nwc_uri
        self._operator: Wallet | None = None
        if uri is not None:
            try:
                check_uri(uri.get_secret_value())
            except NwcUriError as exc:
                raise ValueError(f"{OPERATOR_SETTING}: {exc}") from None
            self._operator = self._factory(uri.get_secret_value().strip())
        self._locks: dict[int, asyncio.Lock] = {}
        self._auto_tasks: dict[int, asyncio.Task[bool]] = {}
        self._auto_paused_until: dict[int, float] = {}
        self._late_checked: dict[str, float] = {}
        """When each expired top-up was last looked up (they are looked up less often)."""
        if self._operator is not None:
            # A payment notification only wakes the sweep: the lookup decides.
            self._operator.on_payment_received(self._payment_notified)

    @property
    def available(self) -> bool:
        """Whether the operator's receiving wallet is configured."""
        return self._operator is not None

    def _operator_wallet(self) -> Wallet:
        if self._operator is None:
            raise LightningUnavailable()
        return self._operator

    # --- Connections ---------------------------------------------------------------------------

    async def connect(self, *, account_id: int, uri: str) -> Connected:
        """Check a wallet URI by asking the wallet (``get_info``, ``get_balance``), then store it
        sealed. Nothing is stored unless the wallet answered."""
        self._operator_wallet()
        try:
            pubkey = check_uri(uri)
        except NwcUriError as exc:
            raise TopupError(400, str(exc), field="uri") from None
        wallet = self._factory(uri.strip())
        try:
            info = await wallet.get_info()
            balance = await wallet.get_balance_sats() if "get_balance" in info.methods else None
            budget = await wallet.get_budget() if "get_budget" in info.methods else None
        except NwcError as exc:
            raise TopupError(400, f"uri: the wallet did not answer: {exc}", field="uri") from None
        finally:
            await wallet.close()
        if "pay_invoice" not in info.methods:
            raise TopupError(400, "uri: the wallet does not offer pay_invoice", field="uri")
        async with self._db.begin() as session:
            row = await lightning.save_connection(
                session,
                account_id=account_id,
                sealed_uri=self._box.seal(uri.strip()),
                wallet_pubkey=pubkey,
                info=info,
                balance_sats=balance,
                budget=budget,
            )
            return _connected(row)

    async def connection(self, *, account_id: int) -> Connected | None:
        """The account's stored connection, if any."""
        self._operator_wallet()
        async with self._db() as session:
            row = await lightning.connection(session, account_id=account_id)
            return _connected(row) if row is not None else None

    async def forget(self, *, account_id: int) -> bool:
        """Forget the account's connection; whether there was one."""
        self._operator_wallet()
        async with self._db.begin() as session:
            return await lightning.forget_connection(session, account_id=account_id)

    # --- Top-ups -------------------------------------------------------------------------------

    async def topup(
        self, *, account_id: int, amount_sats: int, pay: bool, source: str = "manual"
    ) -> dict[str, Any]:
        """Make an invoice on the operator's wallet for the account; with ``pay``, have the
        account's connected wallet pay it. The top-up as :func:`lightning.topup_view` shows it."""
        operator = self._operator_wallet()
        if amount_sats < 1 or amount_sats > self._settings.lightning_max_topup_sats:
            raise TopupError(
                400,
                f"amountSats must be between 1 and {self._settings.lightning_max_topup_sats}",
                field="amountSats",
            )
        payer_uri = await self._payer_uri(account_id) if pay else None
        try:
            invoice = await operator.make_invoice(
                amount_sats=amount_sats,
                description=f"Simulcast top-up, account {account_id}",
                expiry_s=self._settings.lightning_invoice_expiry_seconds,
            )
        except NwcError as exc:
            log.warning("operator wallet could not make an invoice: %s", exc)
            if source != "manual":
                await self._failed_without_invoice(account_id, amount_sats, source, str(exc))
            raise TopupError(
                502, f"The operator's wallet could not make an invoice: {exc}"
            ) from None
        async with self._db.begin() as session:
            row = await lightning.record_topup(
                session, account_id=account_id, invoice=invoice, source=source
            )
            view = lightning.topup_view(row)
        self._invoice_made()
        if payer_uri is not None:
            await self._pay(payer_uri, invoice.payment_hash, invoice.bolt11)
            view = await self.status(account_id=account_id, payment_hash=invoice.payment_hash)
        return view

    async def status(self, *, account_id: int, payment_hash: str) -> dict[str, Any]:
        """A top-up of the account; a pending one is looked up first (so a payment made a
        moment ago shows as ``paid``)."""
        operator = self._operator_wallet()
        async with self._db() as session:
            row = await lightning.topup(session, payment_hash=payment_hash, account_id=account_id)
            if row is None:
                raise TopupError(404, "Top-up not found")
            view = lightning.topup_view(row)
        if view["status"] in ("pending", "expired"):
            with contextlib.suppress(NwcError):
                await self._check(operator, payment_hash, view["expiresAt"])
            async with self._db() as session:
                row = await lightning.topup(session, payment_hash=payment_hash)
                assert row is not None
                view = lightning.topup_view(row)
        return view

    async def _payer_uri(self, account_id: int) -> str:
        async with self._db() as session:
            row = await lightning.connection(session, account_id=account_id)
        if row is None:
            raise TopupError(
                409, "payWithNwc: no wallet connected (POST /api/wallet/nwc)", field="payWithNwc"
            )
        try:
            return self._box.open(row.sealed_uri)
        except SecretBoxError:
            raise TopupError(
                409,
                "payWithNwc: the stored wallet connection cannot be opened with this server's "
                "key; connect the wallet again",
                field="payWithNwc",
            ) from None

    async def _pay(self, payer_uri: str, payment_hash: str, invoice: str) -> None:
        """Have the payer's wallet pay, then settle, or fail with the wallet's message.

        A request that got no answer (a relay dropped mid-request) may still have paid: the
        operator's wallet is asked before the payment is retried once, and a second payment of
        one invoice is impossible on Lightning (the payment hash is single-use). An invoice whose
        fate stays unknown remains pending for the sweep.
        """
        wallet = self._factory(payer_uri)
        operator = self._operator_wallet()
        error: NwcError | None = None
        try:
            for _attempt in range(2):
                try:
                    preimage = await wallet.pay_invoice(invoice)
                except NwcError as exc:
                    error = exc
                else:
                    if preimage_matches(preimage, payment_hash):
                        await self._settle(payment_hash)
                        return
                    error = NwcError("the wallet's preimage does not match the invoice")
                try:
                    if await self._check(operator, payment_hash, None) == "paid":
                        return
                except NwcError:
                    log.warning("lookup of %s failed; the sweep retries it", payment_hash)
                    return
                if not _no_answer(error):
                    break
        finally:
            await wallet.close()
        assert error is not None
        async with self._db.begin() as session:
            failed = await lightning.fail(session, payment_hash=payment_hash, message=str(error))
        if failed:
            self._notify()

    async def _settle(self, payment_hash: str) -> None:
        async with self._db.begin() as session:
            credited = await lightning.settle(session, payment_hash=payment_hash)
        if credited:
            log.info("top-up %s credited", payment_hash)
            self._notify()

    async def _check(self, operator: Wallet, payment_hash: str, expires_ms: int | None) -> str:
        """Look a top-up up on the operator's wallet and record what it says; the new status."""
        found = await operator.lookup_invoice(payment_hash)
        if found.state == "settled":
            await self._settle(payment_hash)
            return "paid"
        if found.state in ("expired", "failed") or (
            expires_ms is not None and expires_ms < now_ms()
        ):
            async with self._db.begin() as session:
                await lightning.expire(session, payment_hash=payment_hash)
            return "expired"
        return "pending"

    async def _failed_without_invoice(
        self, account_id: int, amount: int, source: str, message: str
    ) -> None:
        async with self._db.begin() as session:
            await lightning.topup_failed_before_invoice(
                session, account_id=account_id, amount_sats=amount, source=source, message=message
            )
        self._notify()

    # --- Keeping wallets funded ----------------------------------------------------------------

    async def ensure_funds(self, *, account_id: int, sats: int, source: str = "fee") -> bool:
        """Make sure the account's wallet holds ``sats``, paying the shortfall from its
        connected wallet (at least its auto top-up amount, within its daily cap). Whether the
        wallet now holds ``sats``. Charge the fee afterwards, in the caller's transaction."""
        if self._operator is None:
            return await self._balance(account_id) >= sats
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            async with self._db() as session:
                balance = await ledger.balance(session, account_id=account_id)
                if balance >= sats:
                    return True
                if await lightning.connection(session, account_id=account_id) is None:
                    return False
                rule = await lightning.auto_rule(session, account_id=account_id)
                amount = max(sats - balance, rule.amount_sats if rule else 0)
                spent = await lightning.auto_spent_last_day(
                    session, account_id=account_id, now=now_ms()
                )
            if rule is not None and spent + amount > rule.max_per_day_sats:
                await self._failed_without_invoice(
                    account_id,
                    amount,
                    source,
                    f"daily auto top-up cap reached ({spent} of {rule.max_per_day_sats} sats "
                    "in the last 24 hours)",
                )
                return False
            try:
                await self.topup(account_id=account_id, amount_sats=amount, pay=True, source=source)
            except TopupError as exc:
                log.warning("top-up of account %s failed: %s", account_id, exc)
            return await self._balance(account_id) >= sats

    def keep_funded(self, account_id: int) -> None:
        """Start an automatic top-up in the background when the account's balance is below its
        rule's ``belowSats`` (the meter calls this for every live account it meters)."""
        if self._operator is None or self._stopping.is_set():
            return
        task = self._auto_tasks.get(account_id)
        if task is not None and not task.done():
            return
        if self._auto_paused_until.get(account_id, 0.0) > time.monotonic():
            return
        self._auto_tasks[account_id] = asyncio.create_task(
            self._auto(account_id), name=f"auto-topup-{account_id}"
        )

    async def rescue(self, account_id: int) -> bool:
        """The meter found a minute the wallet cannot pay: finish (or make) an automatic top-up
        now; whether one was credited. An account whose last automatic top-up failed is not
        retried before its pause ends."""
        if self._operator is None:
            return False
        before = await self._balance(account_id)
        task = self._auto_tasks.get(account_id)
        if task is None or task.done():
            self.keep_funded(account_id)
            task = self._auto_tasks.get(account_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        return await self._balance(account_id) > before

    async def _auto(self, account_id: int) -> bool:
        try:
            async with self._db() as session:
                rule = await lightning.auto_rule(session, account_id=account_id)
                balance = await ledger.balance(session, account_id=account_id)
            if rule is None or balance >= rule.below_sats:
                return False
            funded = await self.ensure_funds(
                account_id=account_id, sats=rule.below_sats, source="auto"
            )
            if not funded:
                self._auto_paused_until[account_id] = time.monotonic() + AUTO_RETRY_SECONDS
            return funded
        except Exception:
            log.exception("automatic top-up of account %s failed", account_id)
            self._auto_paused_until[account_id] = time.monotonic() + AUTO_RETRY_SECONDS
            return False

    async def _balance(self, account_id: int) -> int:
        async with self._db() as session:
            return await ledger.balance(session, account_id=account_id)

    # --- The sweep -----------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Look up every unsettled top-up (also those a restart left behind, and expired ones
        within the late-payment window) and credit the paid ones; how many were unsettled."""
        operator = self._operator_wallet()
        now = now_ms()
        async with self._db() as session:
            rows = await lightning.unsettled(
                session, now=now, late_ms=self._settings.lightning_late_payment_seconds * 1000
            )
            pending = [(r.payment_hash, r.expires_ms) for r in rows]
        late_pause = max(LATE_LOOKUP_SECONDS, self._settings.lightning_poll_seconds)
        clock = time.monotonic()
        self._late_checked = {h: t for h, t in self._late_checked.items() if t > clock - late_pause}
        for payment_hash, expires_ms in pending:
            if self._stopping.is_set():
                break
            if expires_ms < now:
                if payment_hash in self._late_checked:
                    continue
                self._late_checked[payment_hash] = clock
            try:
                await self._check(operator, payment_hash, expires_ms)
            except NwcError as exc:
                log.warning("lookup of top-up %s failed: %s", payment_hash, exc)
        return len(pending)

    async def start(self) -> None:
        """Sweep as :meth:`WalletSweep.start` says, only with an operator's wallet (whose
        payment notifications wake the sweep)."""
        if self._operator is not None:
            await super().start()

    async def stop(self) -> None:
        """Stop the sweep and automatic top-ups; disconnect the operator's wallet."""
        await super().stop()
        tasks = [t for t in self._auto_tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._operator is not None:
            await self._operator.close()


def _connected(row: Any) -> Connected:
    return Connected(
        alias=row.alias,
        methods=list(row.methods),
        notifications=list(row.notifications),
        wallet_pubkey=row.wallet_pubkey,
        balance_sats=row.balance_sats,
        budget=row.budget,
        connected_ms=row.created_ms,
    )


def _no_answer(error: NwcError | None) -> bool:
    """Whether a request failed for want of an answer (so it may be retried), not because the
    wallet said no."""
    text = str(error).lower()
    return "not received" in text or "timeout" in text or "timed out" in text
