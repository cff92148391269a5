"""Bodies of packages and bundles: a purchase, the customer's credits, scheduling one.

The conventions of :mod:`boxoffice.api.schemas` hold: camelCase, unknown fields
refused, money as a decimal number in the major unit beside its ``currency``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from boxoffice.api.payment_schemas import OrderOut, OrderStatusName
from boxoffice.api.schemas import (
    BookingStatusName,
    In,
    Instant,
    Out,
    PaymentOut,
    PaymentStatusName,
)
from boxoffice.db.models import Session
from boxoffice.domain.money import to_major
from boxoffice.services.packages import (
    Credit,
    CreditsPage,
    PurchaseCredits,
    SessionTarget,
    SlotTarget,
    UnusedCredits,
)

CreditStateName = Literal["unused", "awaiting_payment", "used", "expired", "refunded", "cancelled"]


class CreditSessionOut(Out):
    id: uuid.UUID
    kind: str
    title: str | None
    start_time: datetime
    end_time: datetime
    status: str
    provider_id: uuid.UUID | None
    room_id: uuid.UUID | None

    @classmethod
    def of(cls, s: Session) -> CreditSessionOut:
        return cls(
            id=s.id,
            kind=s.kind,
            title=s.title,
            start_time=s.start_at,
            end_time=s.end_at,
            status=s.status,
            provider_id=s.provider_id,
            room_id=s.room_id,
        )


class CreditOut(Out):
    """One credit of a purchase: a booking without a session until it is scheduled
    (``PUT /api/v1/bookings/{id}/schedule``)."""

    id: uuid.UUID = Field(description="The credit's booking id")
    order_id: uuid.UUID | None
    service_id: uuid.UUID | None = Field(description="What the credit may be used for")
    service_name: str
    state: CreditStateName = Field(
        description="unused (can be scheduled now), awaiting_payment, used (scheduled), "
        "expired, refunded or cancelled"
    )
    status: BookingStatusName
    payment_status: PaymentStatusName
    valid_until: datetime | None = Field(description="Schedule it into a session starting before")
    session: CreditSessionOut | None = Field(description="Where it was used")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Credit) -> CreditOut:
        b = c.booking
        return cls(
            id=b.id,
            order_id=b.order_id,
            service_id=b.service_id,
            service_name=c.service_name,
            state=c.state.value,
            status=b.status,  # type: ignore[arg-type]
            payment_status=b.payment_status,  # type: ignore[arg-type]
            valid_until=b.valid_until,
            session=CreditSessionOut.of(b.session) if b.session else None,
            created_at=b.created_at,
            updated_at=b.updated_at,
        )


class PurchaseOut(Out):
    """A purchase: its order (with every booking it wrote), its credits, and how to pay
    (``payment.paymentRequired`` false: nothing to pay online)."""

    order: OrderOut
    credits: list[CreditOut]
    payment: PaymentOut


class UnusedCreditsOut(Out):
    service_id: uuid.UUID
    service_name: str
    count: int
    next_expiry: datetime = Field(description="When the first of them expires")

    @classmethod
    def of(cls, u: UnusedCredits) -> UnusedCreditsOut:
        return cls(
            service_id=u.service_id,
            service_name=u.service_name,
            count=u.count,
            next_expiry=u.next_expiry,
        )


class PurchaseCreditsOut(Out):
    order_id: uuid.UUID
    order_status: OrderStatusName
    total: float
    currency: str
    purchased_at: datetime
    credits: list[CreditOut]

    @classmethod
    def of(cls, p: PurchaseCredits) -> PurchaseCreditsOut:
        o = p.order
        return cls(
            order_id=o.id,
            order_status=o.status,  # type: ignore[arg-type]
            total=to_major(o.total_minor, o.currency),
            currency=o.currency,
            purchased_at=o.created_at,
            credits=[CreditOut.of(c) for c in p.credits],
        )


class CreditsOut(Out):
    unused: list[UnusedCreditsOut] = Field(description="What can be scheduled now, by service")
    purchases: list[PurchaseCreditsOut] = Field(description="A page of purchases, newest first")
    total: int = Field(description="Purchases in all")
    page: int
    limit: int

    @classmethod
    def of(cls, p: CreditsPage) -> CreditsOut:
        return cls(
            unused=[UnusedCreditsOut.of(u) for u in p.unused],
            purchases=[PurchaseCreditsOut.of(x) for x in p.purchases],
            total=p.total,
            page=p.page,
            limit=p.limit,
        )


class ScheduleIn(In):
    """Either ``sessionId`` (a group session of the credit's service) or ``startAt``
    (a provider slot; ``providerId`` to choose one, else any free one)."""

    session_id: uuid.UUID | None = None
    start_at: Instant | None = None
    provider_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ScheduleIn:
        if (self.session_id is None) == (self.start_at is None):
            raise ValueError("give either sessionId or startAt")
        if self.provider_id is not None and self.start_at is None:
            raise ValueError("providerId goes with startAt")
        return self

    def target(self) -> SessionTarget | SlotTarget:
        if self.session_id is not None:
            return SessionTarget(self.session_id)
        assert self.start_at is not None
        return SlotTarget(self.start_at, self.provider_id)
