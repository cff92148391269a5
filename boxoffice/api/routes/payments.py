"""Orders, the Stripe webhook and the offline gateway's checkout page.

Whatever brings news of a payment (Stripe's webhook, the checkout page, the CLI)
hands it to ``payments.apply_event``: the same transitions, once per event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse

from boxoffice.api.deps import AppSettings, CurrentCaller, Db, Gateway, Now
from boxoffice.api.payment_schemas import OrderOut
from boxoffice.api.schemas import Out, PaymentOut, error_responses
from boxoffice.db.session import Database
from boxoffice.domain.errors import Conflict, NotFound
from boxoffice.integrations.mail.messages import money
from boxoffice.integrations.payments import stripe as stripe_gateway
from boxoffice.integrations.payments.offline import OfflineGateway
from boxoffice.services import auth, orders, payments
from boxoffice.services.payments import NO_PAYMENT
from boxoffice.services.ports import PaymentGateway, PaymentRefused
from boxoffice.web.pages import render

router = APIRouter(tags=["payments"], responses=error_responses(400, 401, 404))
checkout = APIRouter(include_in_schema=False)


def payment_for(
    database: Database, gateway: PaymentGateway, order_id: uuid.UUID | None, *, now: datetime
) -> PaymentOut:
    """The payment instructions of a booking request's order (started if need be)."""
    if order_id is None:
        return PaymentOut.of(NO_PAYMENT)
    return PaymentOut.of(payments.start_payment(database, gateway, order_id, now=now))


@router.get("/api/v1/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: uuid.UUID, caller: CurrentCaller, db: Db) -> OrderOut:
    """An order with its bookings, payments and refunds: for its customer and for the
    organisation's staff."""
    with db.read() as s:
        auth.active_user(s, caller.user_id)
        staff_of = [
            r.org_id for r in auth.org_roles(s, caller.user_id) if r.role in auth.DESK_ROLES
        ]
        return OrderOut.of(orders.get_order(s, order_id, user_id=caller.user_id, staff_of=staff_of))


class WebhookAck(Out):
    received: bool
    outcome: str


async def _raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature is over these bytes."""
    return await request.body()


@router.post("/api/v1/payments/webhook/stripe", response_model=WebhookAck)
def stripe_webhook(
    body: Annotated[bytes, Depends(_raw_body)],
    db: Db,
    now: Now,
    settings: AppSettings,
    gateway: Gateway,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    """Stripe's events: the signature is checked (missing, stale or tampered is 400 and
    changes nothing), each event id is applied once, other event types are
    acknowledged and ignored."""
    if gateway.name != "stripe" or not settings.stripe_webhook_secret:
        raise NotFound("Stripe webhooks are not configured on this instance.")
    event = stripe_gateway.parse_webhook(body, stripe_signature, settings.stripe_webhook_secret)
    if event is None:
        return WebhookAck(received=True, outcome="ignored")
    with db.write() as s:
        outcome = payments.apply_event(s, event, gateway=gateway.name, now=now)
    return WebhookAck(received=True, outcome=outcome)


# --- the offline gateway's checkout page ------------------------------------------------------

_RESULTS = {
    "confirmed": (
        True,
        "Payment received. Your booking is confirmed; a confirmation email is on its way.",
    ),
    "revived": (
        True,
        "Payment received. Your booking is confirmed; a confirmation email is on its way.",
    ),
    "refunded_late": (
        False,
        "Your payment arrived after your place was released and taken by someone else. "
        "It is being refunded in full.",
    ),
    "refunded_duplicate": (False, "This order was already paid; this payment is being refunded."),
    "failed": (False, "The card was declined. Your booking was released."),
}


def _offline(gateway: PaymentGateway) -> OfflineGateway:
    if not isinstance(gateway, OfflineGateway):
        raise NotFound("There is no offline checkout on this instance.")
    return gateway


def _page(gateway: OfflineGateway, ref: str, *, outcome: str | None = None) -> HTMLResponse:
    try:
        charge = gateway.retrieve(ref)
    except PaymentRefused as exc:
        raise NotFound("No such payment.", {"ref": ref}) from exc
    ok, message = _RESULTS.get(outcome or "", (True, None))
    if outcome is None and charge.status == "succeeded":
        ok, message = True, "This payment has been made."
    can_pay = charge.status in ("pending", "failed")
    html = render(
        "checkout.html",
        title="Checkout" if can_pay else "Payment",
        amount=money(charge.amount_minor, charge.currency),
        description="Pay to confirm your booking before its hold runs out.",
        message=message,
        ok=ok,
        can_pay=can_pay,
        can_fail=charge.status == "pending",
        pay_url=f"/pay/{ref}",
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@checkout.get("/pay/{ref}", response_class=HTMLResponse)
def checkout_page(ref: str, gateway: Gateway) -> HTMLResponse:
    return _page(_offline(gateway), ref)


@checkout.post("/pay/{ref}/{outcome}", response_class=HTMLResponse)
def checkout_decide(
    ref: str, outcome: Literal["succeed", "fail"], now: Now, gateway: Gateway
) -> HTMLResponse:
    """The customer pays, or their card is declined: the same transitions as Stripe's
    payment_intent.succeeded and payment_intent.payment_failed."""
    offline = _offline(gateway)
    try:
        result = offline.settle(ref, "succeeded" if outcome == "succeed" else "failed", now=now)
    except PaymentRefused as exc:
        raise Conflict(str(exc), {"ref": ref}) from exc
    return _page(offline, ref, outcome=result)
