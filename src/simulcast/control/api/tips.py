"""Lightning tips: viewers tip with the public ``pk_`` key, the streamer's own wallet makes the
invoice, the player polls the tip's public status; the streamer sets the range and sees the tips."""

from __future__ import annotations

from fastapi import APIRouter, Request

from simulcast.control.api.deps import AnyKey, Ctx, Manager
from simulcast.control.api.errors import ApiError
from simulcast.control.api.identity import client_address, too_many
from simulcast.control.api.lightning import PaymentHash, refused
from simulcast.control.schemas.common import ERRORS, error_responses
from simulcast.control.schemas.tips import (
    TipIn,
    TipInvoiceOut,
    TipOfferOut,
    TipOut,
    TipSettingsIn,
    TipSettingsOut,
    TipStatusOut,
)
from simulcast.control.services import tips as svc
from simulcast.control.tips import Offer, TipError, Tips

RESPONSES = {
    **ERRORS,
    **error_responses(
        {
            409: "The streamer does not take tips now (`reason`)",
            502: "The streamer's wallet did not answer",
        }
    ),
}
router = APIRouter(tags=["Tips"], responses=RESPONSES)

PRESETS = (100, 500, 1000, 2100, 5000, 10_000, 21_000, 50_000, 100_000)


def _tips(request: Request) -> Tips:
    found: Tips = request.app.state.tips
    return found


def _presets(offer: Offer) -> list[int]:
    inside = [p for p in PRESETS if offer.min_sats <= p <= offer.max_sats][:4]
    return inside or [offer.min_sats]


@router.get("/api/public/tips/offer", response_model=TipOfferOut, summary="Can viewers tip?")
async def tip_offer(request: Request, principal: AnyKey) -> TipOfferOut:
    """Whether the streamer takes tips now (enabled, and a connected wallet that makes
    invoices), their range and suggested amounts. The player shows its button only when
    ``available``."""
    offer = await _tips(request).offer(account_id=principal.account_id)
    return TipOfferOut(
        available=offer.available,
        minSats=offer.min_sats,
        maxSats=offer.max_sats,
        presets=_presets(offer),
        reason=offer.reason,
        message=offer.message,
    )


@router.post("/api/public/tips", response_model=TipInvoiceOut, summary="Tip the streamer")
async def create_tip(body: TipIn, request: Request, principal: AnyKey, ctx: Ctx) -> TipInvoiceOut:
    """Ask the streamer's own connected wallet (NWC ``make_invoice``) for an invoice of
    ``amountSats``; pay it from any Lightning wallet. The money goes straight to the streamer.

    Limited per viewer address (``SIMULCAST_TIPS_PER_MINUTE``, then 429). An amount outside the
    streamer's range or a message over 280 characters or with markup is a 400 naming the field;
    a streamer who does not take tips now is a 409 with ``reason`` (``tips_disabled``,
    ``no_wallet``, ``wallet_cannot_invoice``)."""
    client = client_address(request)
    decision = await ctx.limiter.hit(f"tips:{client}", ctx.settings.tips_per_minute)
    if not decision.allowed:
        raise too_many(
            decision, f"Too many tips from this address. Maximum {decision.limit} a minute."
        )
    try:
        made = await _tips(request).create(
            account_id=principal.account_id,
            stream_id=principal.stream_id,
            amount_sats=body.amountSats,
            message=body.message,
        )
    except TipError as exc:
        raise refused(exc) from None
    return TipInvoiceOut(**made)


@router.get("/api/public/tips/{paymentHash}", response_model=TipStatusOut, summary="A tip's status")
async def tip_status(paymentHash: PaymentHash, request: Request) -> TipStatusOut:
    """``pending``, ``paid`` or ``expired``; no key needed (the payment hash is the viewer's
    secret). Answers for 10 minutes after the invoice expired or was paid, then 404. A pending
    tip is looked up on the streamer's wallet first."""
    found = await _tips(request).public_status(payment_hash=paymentHash.lower())
    if found is None:
        raise ApiError(404, "Tip not found")
    return TipStatusOut(**found)


@router.get("/api/wallet/tips", response_model=list[TipOut], summary="Tips received")
async def list_tips(principal: Manager, ctx: Ctx, limit: int = 50) -> list[TipOut]:
    """The account's tips, newest first (``paid`` ones reached the streamer's wallet). Our
    ledger never holds tip money: they do not appear in ``/api/wallet/ledger``."""
    if not 1 <= limit <= 500:
        raise ApiError(400, "limit must be between 1 and 500", field="limit")
    async with ctx.read() as session:
        rows = await svc.recent(session, account_id=principal.account_id, limit=limit)
    return [TipOut(**svc.view(r)) for r in rows]


async def _settings_view(request: Request, ctx: Ctx, account_id: int) -> TipSettingsOut:
    async with ctx.read() as session:
        policy = await svc.policy(session, account_id=account_id)
    offer = await _tips(request).offer(account_id=account_id)
    return TipSettingsOut(
        enabled=policy.enabled,
        minSats=policy.min_sats,
        maxSats=policy.max_sats,
        available=offer.available,
        reason=offer.reason,
        message=offer.message,
    )


@router.get("/api/wallet/tips/settings", response_model=TipSettingsOut, summary="Tip settings")
async def get_tip_settings(request: Request, principal: Manager, ctx: Ctx) -> TipSettingsOut:
    """Whether tips are on, the accepted range, and whether the wallet can take them now."""
    return await _settings_view(request, ctx, principal.account_id)


@router.put("/api/wallet/tips/settings", response_model=TipSettingsOut, summary="Set tip settings")
async def put_tip_settings(
    body: TipSettingsIn, request: Request, principal: Manager, ctx: Ctx
) -> TipSettingsOut:
    """Turn tips on or off and set the range (``minSats`` to ``maxSats``). One policy per
    account: tips go to the account's one connected wallet, whichever embed they came from."""
    if body.minSats > body.maxSats:
        raise ApiError(400, "minSats must not exceed maxSats", field="minSats")
    async with ctx.db.begin() as session:
        await svc.set_policy(
            session,
            account_id=principal.account_id,
            new=svc.Policy(body.enabled, body.minSats, body.maxSats),
        )
    return await _settings_view(request, ctx, principal.account_id)
