"""Tickets to events: buying them, showing them (code and QR), cancelling them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from boxoffice.api.deps import CurrentCaller, Db, Gateway, Now, SecretKey
from boxoffice.api.payment_schemas import OrderOut
from boxoffice.api.routes.payments import payment_for
from boxoffice.api.schemas import CancelIn, PaymentOut, error_responses
from boxoffice.api.ticket_schemas import (
    TicketCancelOut,
    TicketOut,
    TicketPageOut,
    TicketPurchaseIn,
    TicketPurchaseOut,
    TicketStatusName,
)
from boxoffice.db.session import Database
from boxoffice.domain.errors import Conflict
from boxoffice.domain.money import to_major
from boxoffice.integrations import qr
from boxoffice.services import auth, tickets
from boxoffice.services.orders import OrderView
from boxoffice.services.payments import NO_PAYMENT

router = APIRouter(
    prefix="/api/v1/tickets", tags=["tickets"], responses=error_responses(401, 404, 409)
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key returns the first purchase, never a second one",
    ),
]


@router.post("/purchase", status_code=status.HTTP_201_CREATED, response_model=TicketPurchaseOut)
def purchase_tickets(
    body: TicketPurchaseIn,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    response: Response,
    gateway: Gateway,
    secret_key: SecretKey,
    idempotency_key: IdempotencyKey = None,
) -> TicketPurchaseOut:
    """Buy tickets of one type of a published event. Free tickets (and any ticket at an
    organisation that takes no online payments) are active at once; priced ones stay
    pending, holding their places until ``payment.holdExpiresAt``, until paid."""
    with db.write() as s:
        auth.active_user(s, caller.user_id)  # loaded: the tickets' emails address the buyer
        purchase = tickets.purchase_tickets(
            s,
            user_id=caller.user_id,
            event_id=body.event_id,
            kind=body.ticket_type,
            quantity=body.quantity,
            holders=body.holder_values(),
            idempotency_key=idempotency_key,
            secret_key=secret_key,
            now=now,
        )
    # Built after the commit (the rows stay loaded): not while the ticket type is locked.
    order = purchase.order
    out = TicketPurchaseOut(
        order=OrderOut.of(OrderView(order, [], [], [], purchase.tickets)) if order else None,
        tickets=[TicketOut.of(v) for v in purchase.views()],
        payment=PaymentOut.of(NO_PAYMENT),
    )
    if not purchase.is_new:
        response.headers["Idempotent-Replayed"] = "true"
    if order is not None:
        out.payment = payment_for(db, gateway, order.id, now=now)
    return out


@router.get("", response_model=TicketPageOut)
def list_my_tickets(
    caller: CurrentCaller,
    db: Db,
    status_: Annotated[TicketStatusName | None, Query(alias="status")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=tickets.MAX_PAGE_SIZE)] = 20,
) -> TicketPageOut:
    """The caller's tickets, newest first."""
    with db.read() as s:
        auth.require_active(s, caller.user_id)
        result = tickets.list_tickets(
            s, user_id=caller.user_id, status=status_, page=page, limit=limit
        )
        return TicketPageOut(
            items=[TicketOut.of(v) for v in result.items],
            page=result.page,
            limit=result.limit,
            total=result.total,
        )


@router.get("/{ticket_id}", response_model=TicketOut)
def get_ticket(ticket_id: uuid.UUID, caller: CurrentCaller, db: Db) -> TicketOut:
    """One of the caller's tickets; once active, with its code and its QR code as SVG."""
    with db.read() as s:
        auth.require_active(s, caller.user_id)
        view = tickets.get_ticket(s, ticket_id, user_id=caller.user_id)
        code = view.ticket.code if view.ticket.status in tickets.SHOWN else None
        return TicketOut.of(view, qr_svg=qr.qr_svg(code, title="Ticket") if code else None)


def _code(database: Database, ticket_id: uuid.UUID, user_id: uuid.UUID) -> str:
    with database.read() as s:
        auth.require_active(s, user_id)
        ticket = tickets.get_ticket(s, ticket_id, user_id=user_id).ticket
        if ticket.status not in tickets.SHOWN or ticket.code is None:
            raise Conflict(
                "This ticket has no code to show: it waits for its payment."
                if ticket.status == "pending"
                else f"This ticket is {ticket.status}; its code is no longer valid.",
                {"status": ticket.status},
            )
        return ticket.code


_PRIVATE = {"Cache-Control": "private, no-store"}


@router.get("/{ticket_id}/qr.png", response_class=Response)
def ticket_qr_png(ticket_id: uuid.UUID, caller: CurrentCaller, db: Db) -> Response:
    """The ticket's QR code as a PNG image."""
    png = qr.qr_png(_code(db, ticket_id, caller.user_id))
    return Response(png, media_type="image/png", headers=_PRIVATE)


@router.get("/{ticket_id}/qr.svg", response_class=Response)
def ticket_qr_svg(ticket_id: uuid.UUID, caller: CurrentCaller, db: Db) -> Response:
    """The ticket's QR code as an SVG image."""
    svg = qr.qr_svg(_code(db, ticket_id, caller.user_id))
    return Response(svg, media_type="image/svg+xml", headers=_PRIVATE)


@router.put("/{ticket_id}/cancel", response_model=TicketCancelOut)
def cancel_ticket(
    ticket_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    body: CancelIn | None = None,
) -> TicketCancelOut:
    """Cancel one's own ticket before the event starts: its code is revoked, its place
    goes back on sale, and the refund follows the organisation's policy."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        ticket, refund = tickets.cancel_ticket(
            s,
            ticket_id,
            actor_id=caller.user_id,
            reason=(body.reason if body else "") or "cancelled by customer",
            by_organiser=False,
            now=now,
            user_id=caller.user_id,
        )
        view = tickets.views(s, [ticket])[0]
        return TicketCancelOut(
            ticket=TicketOut.of(view),
            refund_amount=to_major(refund, ticket.currency),
            currency=ticket.currency,
        )
