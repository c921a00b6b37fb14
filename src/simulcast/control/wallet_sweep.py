"""What Lightning top-ups (:mod:`simulcast.control.topups`) and tips (:mod:`simulcast.control.tips`)
share: the same dependencies, and a sweep that looks invoices up every ``lightning_poll_seconds``
while any is unsettled, and at once when a wallet notifies a payment (a notification only wakes
it: the lookup decides) or an invoice is made. With none unsettled it waits for the next invoice
(in one process; a node of a fleet also looks every ``lightning_poll_seconds`` for invoices that
other API nodes made).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simulcast.control.nwc import WalletFactory
from simulcast.control.secretbox import SecretBox
from simulcast.periodic import Periodic, rescan_interval
from simulcast.settings import Settings


class WalletRequestError(Exception):
    """A top-up or tip request that cannot be honoured: the HTTP ``status``, and the ``field``
    at fault or a ``reason`` code for the answer's body."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.reason = reason

    def details(self) -> dict[str, Any]:
        """``field`` and ``reason``, those that are set, as members of the error body."""
        found = {"field": self.field, "reason": self.reason}
        return {name: value for name, value in found.items() if value}


class WalletSweep:
    """Base of a service whose invoices live on NWC wallets; subclasses define :meth:`sweep`
    (and their state in :meth:`_setup`) and name their sweep job (``sweep_name``)."""

    sweep_name = "wallet"

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        *,
        box: SecretBox,
        wallet_factory: WalletFactory,
        on_webhook_enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._box = box
        self._factory = wallet_factory
        self._notify = on_webhook_enqueued
        self._stopping = asyncio.Event()
        self._idle_rescan = rescan_interval(settings.role, settings.lightning_poll_seconds)
        self.job = Periodic(f"{self.sweep_name}-sweep", self._pass, settings.lightning_poll_seconds)
        self._setup()

    def _setup(self) -> None:
        """The subclass's own state, made once the shared dependencies are set."""

    async def sweep(self) -> int:
        """Look every unsettled invoice up once and record what the wallets say; how many
        were unsettled."""
        raise NotImplementedError

    async def _pass(self) -> float | None:
        return None if await self.sweep() else self._idle_rescan

    async def start(self) -> None:
        """Sweep every ``lightning_poll_seconds`` while invoices are unsettled, and at once
        when a wallet notifies a payment (:meth:`_payment_notified`) or an invoice is made
        (:meth:`_invoice_made`), until :meth:`stop`."""
        self.job.start()

    def _payment_notified(self, _payment_hash: str) -> None:
        self.job.wake()

    def _invoice_made(self) -> None:
        """An unsettled invoice was recorded (committed): sweep from now on."""
        self.job.wake()

    async def stop(self) -> None:
        """Stop the sweep after the pass in progress (subclasses then close their wallets)."""
        self._stopping.set()
        await self.job.stop()
