"""Packages and bundles: buying one, the customer's credits, scheduling a credit.

A package (1 consultation + 3 massages) or bundle (a 10-class pass) is a service an
admin defines with ``items`` and ``validityDays`` (see the catalogue). Buying it
opens one order and writes one draft booking per credit; each is scheduled later,
before it expires, into a session of its service or a provider slot.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from boxoffice.api.deps import CurrentCaller, Db, Gateway, Now
from boxoffice.api.package_schemas import CreditOut, CreditsOut, PurchaseOut, ScheduleIn
from boxoffice.api.payment_schemas import OrderOut
from boxoffice.api.routes.bookings import IdempotencyKey
from boxoffice.api.routes.payments import payment_for
from boxoffice.api.schemas import error_responses
from boxoffice.services import auth, orders, packages
from boxoffice.services.bookings import MAX_PAGE_SIZE

router = APIRouter(tags=["packages"], responses=error_responses(401, 404, 409))


@router.post(
    "/api/v1/services/{service_id}/purchase",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOut,
)
def purchase(
    service_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    response: Response,
    gateway: Gateway,
    idempotency_key: IdempotencyKey = None,
) -> PurchaseOut:
    """Buy a package or bundle: one order of its price, one credit per unit, each to be
    scheduled before ``validUntil``. A free purchase, or one at an organisation that
    takes no payments online (paid at the desk), can be used at once; otherwise
    ``payment`` says how to pay, and the credits can be scheduled once it is paid."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        order, is_new = packages.purchase_package(
            s,
            user_id=caller.user_id,
            service_id=service_id,
            idempotency_key=idempotency_key,
            now=now,
        )
        order_id, to_pay = order.id, order.id if packages.awaits_payment(order) else None
    if not is_new:
        response.headers["Idempotent-Replayed"] = "true"
    payment = payment_for(db, gateway, to_pay, now=now)
    with db.read() as s:
        view = orders.get_order(s, order_id, user_id=caller.user_id)
        credits = packages.credits_of_order(s, order_id, now=now)
        return PurchaseOut(
            order=OrderOut.of(view), credits=[CreditOut.of(c) for c in credits], payment=payment
        )


@router.get("/api/v1/credits", response_model=CreditsOut)
def list_credits(
    caller: CurrentCaller,
    db: Db,
    now: Now,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> CreditsOut:
    """The caller's credits: those usable now by service (``unused``), and their
    purchases, newest first, each with all its credits (unused, awaiting payment, used
    with their session, expired...)."""
    with db.read() as s:
        auth.require_active(s, caller.user_id)
        return CreditsOut.of(
            packages.list_credits(s, user_id=caller.user_id, now=now, page=page, limit=limit)
        )


@router.put("/api/v1/bookings/{booking_id}/schedule", response_model=CreditOut)
def schedule_credit(
    booking_id: uuid.UUID, body: ScheduleIn, caller: CurrentCaller, db: Db, now: Now
) -> CreditOut:
    """Use one of the caller's unused credits: a seat in a session of its service
    (``sessionId``) or a provider slot (``startAt``, ``providerId``), before the credit
    expires. It becomes a confirmed booking. 409 if the credit is used, expired or not
    paid yet, or the session is of another service or full."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        credit = packages.schedule_credit(
            s, booking_id, user_id=caller.user_id, target=body.target(), now=now
        )
        return CreditOut.of(credit)
