"""Bodies of orders, payments and the organisation's payment settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from boxoffice.api.schemas import BookingStatusName, In, Out, PaymentStatusName
from boxoffice.db.models import Booking, Organization, Payment, Refund, Ticket
from boxoffice.domain.money import to_major
from boxoffice.services.orders import OrderView

OrderStatusName = Literal["open", "paid", "failed", "cancelled", "refunded", "partially_refunded"]
PlanTier = Literal["builder", "pro", "center"]


class OrderBookingOut(Out):
    id: uuid.UUID
    status: BookingStatusName
    payment_status: PaymentStatusName
    title: str | None
    start_time: datetime | None
    end_time: datetime | None
    price: float
    refunded_amount: float

    @classmethod
    def of(cls, booking: Booking) -> OrderBookingOut:
        session = booking.session
        return cls(
            id=booking.id,
            status=booking.status,  # type: ignore[arg-type]
            payment_status=booking.payment_status,  # type: ignore[arg-type]
            title=session.title if session else None,
            start_time=session.start_at if session else None,
            end_time=session.end_at if session else None,
            price=to_major(booking.price_minor, booking.currency),
            refunded_amount=to_major(booking.refunded_minor, booking.currency),
        )


class OrderTicketOut(Out):
    """A ticket of the order (``GET /api/v1/tickets/{id}`` has the rest)."""

    id: uuid.UUID
    event_id: uuid.UUID
    status: Literal["pending", "active", "used", "expired", "cancelled", "refunded"]
    is_paid: bool
    price: float
    refunded_amount: float

    @classmethod
    def of(cls, ticket: Ticket) -> OrderTicketOut:
        return cls(
            id=ticket.id,
            event_id=ticket.event_id,
            status=ticket.status,  # type: ignore[arg-type]
            is_paid=ticket.is_paid,
            price=to_major(ticket.price_minor, ticket.currency),
            refunded_amount=to_major(ticket.refunded_minor, ticket.currency),
        )


class OrderPaymentOut(Out):
    id: uuid.UUID
    gateway: str
    gateway_ref: str | None
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    amount: float
    refunded_amount: float
    application_fee: float | None = Field(description="The platform's commission, if any")
    failure_message: str | None
    created_at: datetime

    @classmethod
    def of(cls, p: Payment) -> OrderPaymentOut:
        return cls(
            id=p.id,
            gateway=p.gateway,
            gateway_ref=p.gateway_ref,
            status=p.status,  # type: ignore[arg-type]
            amount=to_major(p.amount_minor, p.currency),
            refunded_amount=to_major(p.refunded_minor, p.currency),
            application_fee=to_major(p.application_fee_minor, p.currency)
            if p.application_fee_minor is not None
            else None,
            failure_message=p.failure_message,
            created_at=p.created_at,
        )


class RefundOut(Out):
    id: uuid.UUID
    booking_id: uuid.UUID | None
    ticket_id: uuid.UUID | None = None
    amount: float
    reason: str
    status: Literal["pending", "succeeded", "failed"]
    error: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, r: Refund, currency: str) -> RefundOut:
        return cls(
            id=r.id,
            booking_id=r.booking_id,
            ticket_id=r.ticket_id,
            amount=to_major(r.amount_minor, currency),
            reason=r.reason,
            status=r.status,  # type: ignore[arg-type]
            error=r.last_error,
            created_at=r.created_at,
            completed_at=r.completed_at,
        )


class OrderOut(Out):
    id: uuid.UUID
    status: OrderStatusName
    closed_reason: str | None
    total: float
    refunded_amount: float
    commission: float
    currency: str
    hold_expires_at: datetime | None
    paid_at: datetime | None
    created_at: datetime
    bookings: list[OrderBookingOut]
    tickets: list[OrderTicketOut] = []
    payments: list[OrderPaymentOut]
    refunds: list[RefundOut]

    @classmethod
    def of(cls, view: OrderView) -> OrderOut:
        o = view.order
        return cls(
            id=o.id,
            status=o.status,  # type: ignore[arg-type]
            closed_reason=o.closed_reason,
            total=to_major(o.total_minor, o.currency),
            refunded_amount=to_major(o.refunded_minor, o.currency),
            commission=to_major(o.commission_minor, o.currency),
            currency=o.currency,
            hold_expires_at=o.hold_expires_at,
            paid_at=o.paid_at,
            created_at=o.created_at,
            bookings=[OrderBookingOut.of(b) for b in view.bookings],
            tickets=[OrderTicketOut.of(t) for t in view.tickets],
            payments=[OrderPaymentOut.of(p) for p in view.payments],
            refunds=[RefundOut.of(r, o.currency) for r in view.refunds],
        )


class PaymentSettingsIn(In):
    """Change what is given; leave the rest out."""

    payments_enabled: bool | None = None
    payment_account_id: str | None = Field(
        default=None, max_length=255, description="The connected Stripe account (acct_...)"
    )
    plan_tier: PlanTier | None = None
    hold_minutes: int | None = Field(default=None, ge=1, le=1440)


class PaymentSettingsOut(Out):
    payments_enabled: bool
    payment_account_id: str | None
    plan_tier: PlanTier
    commission_percent: int
    hold_minutes: int
    gateway: str

    @classmethod
    def of(cls, org: Organization, gateway: str, percent: int) -> PaymentSettingsOut:
        return cls(
            payments_enabled=org.payments_enabled,
            payment_account_id=org.payment_account_id,
            plan_tier=org.plan_tier,  # type: ignore[arg-type]
            commission_percent=percent,
            hold_minutes=org.hold_min,
            gateway=gateway,
        )
