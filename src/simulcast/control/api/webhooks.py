"""Webhook management endpoints (``sk_`` key or session token; ``pk_`` keys get 403)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from simulcast.control.api.deps import Ctx, Manager
from simulcast.control.api.errors import ApiError, found_or_404
from simulcast.control.db.models import Webhook, WebhookDelivery
from simulcast.control.schemas.common import ERRORS, Success
from simulcast.control.schemas.webhooks import (
    DeliveryOut,
    WebhookCreate,
    WebhookOut,
    WebhookTestQueued,
)
from simulcast.control.services import webhooks as svc
from simulcast.control.webhook_dispatcher import WebhookDispatcher

router = APIRouter(prefix="/api", tags=["Webhooks"], responses=ERRORS)

WebhookId = Annotated[int, Path(ge=1, le=2**53, description="Webhook ID")]


def get_dispatcher(request: Request) -> WebhookDispatcher:
    """The node's dispatcher, to wake after an enqueue commits."""
    dispatcher: WebhookDispatcher = request.app.state.webhook_dispatcher
    return dispatcher


Dispatcher = Annotated[WebhookDispatcher, Depends(get_dispatcher)]


def _view(hook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        events=list(hook.events),
        streamKeyId=hook.stream_id,
        hasSecret=bool(hook.secret),
        createdAt=hook.created_ms,
    )


def _delivery_view(row: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event=row.event,
        status=row.status,
        attempts=row.attempts,
        lastStatusCode=row.last_status_code,
        lastResponse=row.last_response,
        lastError=row.last_error,
        nextAttemptAt=row.next_attempt_ms if row.status == "pending" else None,
        createdAt=row.created_ms,
        deliveredAt=row.delivered_ms,
    )


async def _owned_webhook(session: AsyncSession, account_id: int, webhook_id: int) -> Webhook:
    """The account's webhook, or a 404 (another account's webhook is indistinguishable)."""
    hook = await svc.get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    return found_or_404(hook, "Webhook")


@router.get("/webhooks", response_model=list[WebhookOut], summary="List webhooks")
async def list_webhooks(principal: Manager, ctx: Ctx) -> list[WebhookOut]:
    """The account's webhooks (secrets are never returned; see ``hasSecret``)."""
    async with ctx.db() as session:
        rows = await svc.list_webhooks(session, account_id=principal.account_id)
    return [_view(hook) for hook in rows]


@router.post("/webhooks", response_model=WebhookOut, summary="Register a webhook")
async def create_webhook(body: WebhookCreate, principal: Manager, ctx: Ctx) -> WebhookOut:
    """Subscribe an HTTPS endpoint to events, optionally of one stream key only.

    Deliveries carry ``X-Simulcast-Signature`` when a ``secret`` is set. Targets that resolve to
    loopback, private, link-local or metadata addresses are refused.
    """
    settings = ctx.settings
    try:
        await svc.check_url(
            body.url,
            allow_http=settings.webhooks_allow_http,
            allow_private=settings.webhooks_allow_private,
        )
        async with ctx.db.begin() as session:
            hook = await svc.create_webhook(
                session,
                account_id=principal.account_id,
                url=body.url,
                events=body.events,
                secret=body.secret,
                stream_id=body.stream_key_id,
            )
    except svc.WebhookError as exc:
        raise ApiError(400, str(exc), field=exc.field) from None
    return _view(hook)


@router.delete("/webhooks/{id}", response_model=Success, summary="Remove a webhook")
async def delete_webhook(id: WebhookId, principal: Manager, ctx: Ctx) -> Success:
    """Remove a webhook; its undelivered events are marked failed."""
    async with ctx.db.begin() as session:
        hook = await _owned_webhook(session, principal.account_id, id)
        await svc.delete_webhook(session, webhook=hook)
    return Success()


@router.post("/webhooks/{id}/test", response_model=WebhookTestQueued, summary="Send a test.ping")
async def test_webhook(
    id: WebhookId, principal: Manager, ctx: Ctx, dispatcher: Dispatcher
) -> WebhookTestQueued:
    """Queue a ``test.ping`` to this webhook; follow it in the delivery log."""
    async with ctx.db.begin() as session:
        hook = await _owned_webhook(session, principal.account_id, id)
        delivery_id = await svc.enqueue_test(session, webhook=hook)
    dispatcher.notify()
    return WebhookTestQueued(deliveryId=delivery_id)


@router.get(
    "/webhooks/{id}/deliveries",
    response_model=list[DeliveryOut],
    summary="A webhook's delivery log",
)
async def list_deliveries(
    id: WebhookId,
    principal: Manager,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many, newest first")] = 50,
) -> list[DeliveryOut]:
    """Deliveries newest first: status, attempts, last response code and body, next attempt."""
    async with ctx.db() as session:
        hook = await _owned_webhook(session, principal.account_id, id)
        rows = await svc.list_deliveries(session, webhook_id=hook.id, limit=limit)
    return [_delivery_view(row) for row in rows]
