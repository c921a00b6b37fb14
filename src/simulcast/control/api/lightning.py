"""Lightning endpoints: connect a wallet over NWC, top up, auto top-up. All answer 503 naming
``SIMULCAST_OPERATOR_NWC_URI`` while the operator has no receiving wallet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError
from simulcast.control.schemas.common import ERRORS, Success, error_responses
from simulcast.control.schemas.lightning import (
    AutoTopupIn,
    AutoTopupOut,
    BudgetOut,
    NwcConnectIn,
    NwcConnectionOut,
    TopupIn,
    TopupOut,
)
from simulcast.control.services import lightning as svc
from simulcast.control.timeutil import now_ms
from simulcast.control.topups import Connected, Lightning, LightningUnavailable, TopupError
from simulcast.control.wallet_sweep import WalletRequestError

RESPONSES = {
    **ERRORS,
    **error_responses(
        {
            502: "The operator's wallet did not answer",
            503: "Lightning is not configured on this server",
        }
    ),
}
router = APIRouter(prefix="/api/wallet", tags=["Lightning"], responses=RESPONSES)

PaymentHash = Annotated[str, Path(pattern="^[0-9a-fA-F]{64}$", description="Payment hash (hex)")]


async def _lightning(request: Request) -> Lightning:
    lightning: Lightning = request.app.state.lightning
    if not lightning.available:
        raise ApiError(503, str(LightningUnavailable()), setting="SIMULCAST_OPERATOR_NWC_URI")
    return lightning


Ln = Annotated[Lightning, Depends(_lightning)]


def refused(exc: WalletRequestError) -> ApiError:
    """The HTTP answer to a top-up or tip request that cannot be honoured."""
    return ApiError(exc.status, str(exc), **exc.details())


def _connection_view(found: Connected) -> NwcConnectionOut:
    return NwcConnectionOut(
        alias=found.alias,
        methods=found.methods,
        notifications=found.notifications,
        walletPubkey=found.wallet_pubkey,
        balanceSats=found.balance_sats,
        budget=BudgetOut(**found.budget) if found.budget else None,
        connectedAt=found.connected_ms,
    )


@router.post("/nwc", response_model=NwcConnectionOut, summary="Connect a wallet (NWC)")
async def connect_wallet(body: NwcConnectIn, principal: Manager, ln: Ln) -> NwcConnectionOut:
    """Check a ``nostr+walletconnect://`` URI by asking the wallet for its info and balance,
    then store it encrypted at rest (replacing any earlier one). A malformed URI or a wallet
    that does not answer is a 400 naming the problem, and nothing is stored."""
    try:
        found = await ln.connect(account_id=principal.account_id, uri=body.uri)
    except TopupError as exc:
        raise refused(exc) from None
    return _connection_view(found)


@router.get("/nwc", response_model=NwcConnectionOut, summary="The connected wallet")
async def get_wallet(principal: Manager, ln: Ln) -> NwcConnectionOut:
    """The connected wallet's alias, methods and reported balance (never its secret)."""
    found = await ln.connection(account_id=principal.account_id)
    if found is None:
        raise ApiError(404, "No wallet connected")
    return _connection_view(found)


@router.delete("/nwc", response_model=Success, summary="Forget the connected wallet")
async def forget_wallet(principal: Manager, ln: Ln) -> Success:
    """Delete the stored connection (and the auto top-up rule that paid from it)."""
    if not await ln.forget(account_id=principal.account_id):
        raise ApiError(404, "No wallet connected")
    return Success()


@router.post("/topup", response_model=TopupOut, summary="Top up over Lightning")
async def create_topup(body: TopupIn, principal: Manager, ln: Ln) -> TopupOut:
    """An invoice of the operator's wallet that credits this wallet once paid (exactly once per
    payment hash). With ``payWithNwc`` the connected wallet pays it now: the answer is then
    ``paid``, or ``failed`` with the wallet's message in ``error``."""
    try:
        view = await ln.topup(
            account_id=principal.account_id, amount_sats=body.amountSats, pay=body.payWithNwc
        )
    except TopupError as exc:
        raise refused(exc) from None
    return TopupOut(**view)


@router.get("/topups/{paymentHash}", response_model=TopupOut, summary="A top-up's state")
async def get_topup(paymentHash: PaymentHash, principal: Manager, ln: Ln) -> TopupOut:
    """``pending``, ``paid``, ``expired`` or ``failed`` (a pending one is looked up first)."""
    try:
        view = await ln.status(account_id=principal.account_id, payment_hash=paymentHash)
    except TopupError as exc:
        raise refused(exc) from None
    return TopupOut(**view)


async def _auto_view(ctx: Ctx, account_id: int) -> AutoTopupOut:
    async with ctx.read() as session:
        rule = await svc.auto_rule(session, account_id=account_id)
        spent = await svc.auto_spent_last_day(session, account_id=account_id, now=now_ms())
    return AutoTopupOut(
        enabled=rule is not None,
        belowSats=rule.below_sats if rule else None,
        amountSats=rule.amount_sats if rule else None,
        maxPerDaySats=rule.max_per_day_sats if rule else None,
        spentLast24hSats=spent,
        lastFailure=rule.last_error if rule else None,
        lastFailureAt=rule.last_error_ms if rule else None,
    )


@router.get("/auto-topup", response_model=AutoTopupOut, summary="The auto top-up rule")
async def get_auto_topup(principal: Manager, ctx: Ctx, _ln: Ln) -> AutoTopupOut:
    """The rule, what it spent in the last 24 hours and its last failure."""
    return await _auto_view(ctx, principal.account_id)


@router.put("/auto-topup", response_model=AutoTopupOut, summary="Set the auto top-up rule")
async def put_auto_topup(body: AutoTopupIn, principal: Manager, ctx: Ctx, _ln: Ln) -> AutoTopupOut:
    """While a session runs and the balance is below ``belowSats``, the connected wallet pays
    ``amountSats`` (never more than ``maxPerDaySats`` in 24 hours). Failures send
    ``wallet.topup_failed`` and show here; the normal insufficient-funds stop applies."""
    if body.amountSats > body.maxPerDaySats:
        raise ApiError(400, "amountSats must not exceed maxPerDaySats", field="amountSats")
    async with ctx.db.begin() as session:
        if await svc.connection(session, account_id=principal.account_id) is None:
            raise ApiError(409, "Connect a wallet first (POST /api/wallet/nwc)")
        await svc.set_auto_rule(
            session,
            account_id=principal.account_id,
            below=body.belowSats,
            amount=body.amountSats,
            max_per_day=body.maxPerDaySats,
        )
    return await _auto_view(ctx, principal.account_id)


@router.delete("/auto-topup", response_model=Success, summary="Turn auto top-up off")
async def delete_auto_topup(principal: Manager, ctx: Ctx, _ln: Ln) -> Success:
    """Remove the rule."""
    async with ctx.db.begin() as session:
        await svc.clear_auto_rule(session, account_id=principal.account_id)
    return Success()
