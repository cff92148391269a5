"""Bodies of ticket purchases and tickets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from boxoffice.api.payment_schemas import OrderOut
from boxoffice.api.schemas import In, Name, Out, PaymentOut
from boxoffice.domain.money import to_major
from boxoffice.services import tickets
from boxoffice.services.tickets import TicketView

TicketKind = Literal["standard", "vip", "early_bird", "group"]
TicketStatusName = Literal["pending", "active", "used", "expired", "cancelled", "refunded"]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
]


class HolderIn(In):
    name: Name
    email: Email


class TicketPurchaseIn(In):
    event_id: uuid.UUID
    ticket_type: TicketKind = Field(description="The ticket type's kind, e.g. 'vip'")
    quantity: Annotated[int, Field(ge=1, le=100, description="At most the type's maxPerOrder")]
    holders: list[HolderIn] | None = Field(
        default=None, max_length=100, description="One per ticket; none: the tickets are yours"
    )

    def holder_values(self) -> list[tickets.Holder]:
        return [tickets.Holder(h.name, h.email) for h in self.holders or []]


class TicketOut(Out):
    """A ticket. ``code`` (and the QR links) only once it is active: a pending ticket
    waits for its payment, a cancelled one has no valid code."""

    id: uuid.UUID
    event_id: uuid.UUID
    event_name: str
    start_time: datetime
    end_time: datetime
    location: str
    ticket_type: TicketKind
    ticket_type_name: str
    status: TicketStatusName
    is_paid: bool
    price: float
    refunded_amount: float
    currency: str
    holder_name: str | None
    holder_email: str | None
    order_id: uuid.UUID | None
    valid_from: datetime
    valid_until: datetime
    hold_expires_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime
    code: str | None
    qr_png_url: str | None
    qr_svg_url: str | None
    qr_svg: str | None = Field(default=None, description="The QR code as SVG text (one ticket)")

    @classmethod
    def of(cls, view: TicketView, *, qr_svg: str | None = None) -> TicketOut:
        t, event, ticket_type = view.ticket, view.event, view.ticket_type
        shown = t.status in tickets.SHOWN and t.code is not None
        base = f"/api/v1/tickets/{t.id}"
        return cls(
            id=t.id,
            event_id=t.event_id,
            event_name=event.name,
            start_time=event.start_at,
            end_time=event.end_at,
            location=event.location,
            ticket_type=ticket_type.kind,  # type: ignore[arg-type]
            ticket_type_name=ticket_type.name,
            status=t.status,  # type: ignore[arg-type]
            is_paid=t.is_paid,
            price=to_major(t.price_minor, t.currency),
            refunded_amount=to_major(t.refunded_minor, t.currency),
            currency=t.currency,
            holder_name=t.holder_name,
            holder_email=t.holder_email,
            order_id=t.order_id,
            valid_from=t.valid_from,
            valid_until=t.valid_until,
            hold_expires_at=t.hold_expires_at,
            cancelled_at=t.cancelled_at,
            created_at=t.created_at,
            code=t.code if shown else None,
            qr_png_url=f"{base}/qr.png" if shown else None,
            qr_svg_url=f"{base}/qr.svg" if shown else None,
            qr_svg=qr_svg if shown else None,
        )


class TicketPurchaseOut(Out):
    order: OrderOut | None = Field(description="None when nothing is paid online")
    tickets: list[TicketOut]
    payment: PaymentOut


class TicketPageOut(Out):
    items: list[TicketOut]
    page: int
    limit: int
    total: int


class TicketCancelOut(Out):
    ticket: TicketOut
    refund_amount: float
    currency: str
