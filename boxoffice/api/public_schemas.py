"""Bodies of the public booking API (no account needed): providers, services, slots,
appointments and the customer's management link."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import EmailStr, Field, StringConstraints

from boxoffice.api.schemas import (
    BookingStatusName,
    In,
    Instant,
    Name,
    Out,
    PaymentOut,
    PaymentStatusName,
)
from boxoffice.db.models import Booking, Provider, Service
from boxoffice.domain.money import to_major
from boxoffice.services.slots import OfferedSlot

TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ProviderPublicOut(Out):
    id: uuid.UUID
    name: str
    timezone: str

    @classmethod
    def of(cls, provider: Provider) -> ProviderPublicOut:
        return cls(id=provider.id, name=provider.name, timezone=provider.timezone)


class ServicePublicOut(Out):
    id: uuid.UUID
    name: str
    description: str
    duration_min: int
    price: float
    currency: str
    capacity: int
    requires_room: bool

    @classmethod
    def of(cls, service: Service) -> ServicePublicOut:
        return cls(
            id=service.id,
            name=service.name,
            description=service.description,
            duration_min=service.duration_min,
            price=to_major(service.price_minor, service.currency),
            currency=service.currency,
            capacity=service.capacity,
            requires_room=service.room_type is not None,
        )


class SlotOut(Out):
    start_time: datetime
    end_time: datetime
    local_start: datetime = Field(description="The start in the requested time zone")
    local_end: datetime
    seats_left: int
    provider_ids: list[uuid.UUID]

    @classmethod
    def of(cls, slot: OfferedSlot, zone: ZoneInfo) -> SlotOut:
        return cls(
            start_time=slot.start_at,
            end_time=slot.end_at,
            local_start=slot.start_at.astimezone(zone),
            local_end=slot.end_at.astimezone(zone),
            seats_left=slot.seats_left,
            provider_ids=list(slot.provider_ids),
        )


class ExplanationOut(Out):
    at: datetime
    offered: bool
    reason: str | None = Field(
        description="too_soon, too_far_ahead, outside_hours, not_on_grid, time_off, "
        "busy_in_calendar or fully_booked; null when the time is offered"
    )


class SlotsOut(Out):
    service_id: uuid.UUID
    timezone: str
    slots: list[SlotOut]
    explanation: ExplanationOut | None = None


class CustomerIn(In):
    name: Name
    email: EmailStr
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None


class RecurrenceIn(In):
    every_weeks: Annotated[int, Field(ge=1, le=52)] = 1
    count: Annotated[int, Field(ge=2, le=52)]
    skip_dates: Annotated[list[date], Field(max_length=52)] = Field(
        default_factory=list, description="Local dates left out; every other date must be free"
    )


class AppointmentIn(In):
    service_id: uuid.UUID
    provider_id: uuid.UUID | None = Field(
        default=None, description="Omit to book any free provider of the service"
    )
    start_time: Instant
    timezone: TimeZoneName | None = Field(default=None, description="The customer's time zone")
    customer: CustomerIn
    notes: Annotated[str, StringConstraints(max_length=2000)] = ""
    recurrence: RecurrenceIn | None = None


class RescheduleAppointmentIn(In):
    start_time: Instant


class AppointmentOut(Out):
    id: uuid.UUID
    status: BookingStatusName
    payment_status: PaymentStatusName
    service_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    room_id: uuid.UUID | None
    series_id: uuid.UUID | None
    start_time: datetime | None
    end_time: datetime | None
    price: float
    refunded_amount: float
    currency: str
    customer_name: str | None
    customer_email: str | None
    notes: str
    hold_expires_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime
    order_id: uuid.UUID | None
    payment: PaymentOut | None = Field(
        default=None, description="How to pay, while the booking waits for its payment"
    )

    @classmethod
    def of(cls, booking: Booking, payment: PaymentOut | None = None) -> AppointmentOut:
        session = booking.session
        return cls(
            id=booking.id,
            status=booking.status,  # type: ignore[arg-type]
            payment_status=booking.payment_status,  # type: ignore[arg-type]
            service_id=session.service_id if session else None,
            provider_id=session.provider_id if session else None,
            room_id=session.room_id if session else None,
            series_id=booking.series_id,
            start_time=session.start_at if session else None,
            end_time=session.end_at if session else None,
            price=to_major(booking.price_minor, booking.currency),
            refunded_amount=to_major(booking.refunded_minor, booking.currency),
            currency=booking.currency,
            customer_name=booking.customer_name,
            customer_email=booking.customer_email,
            notes=booking.notes,
            hold_expires_at=booking.hold_expires_at,
            cancelled_at=booking.cancelled_at,
            created_at=booking.created_at,
            order_id=booking.order_id,
            payment=payment,
        )


class ManagedAppointmentOut(AppointmentOut):
    manage_token: str = Field(description="Lets its holder view, cancel or move this booking")
    manage_url: str


class AppointmentBookedOut(Out):
    booking: ManagedAppointmentOut = Field(description="The (first) booking")
    bookings: list[ManagedAppointmentOut] = Field(description="Every occurrence, in time order")
    payment: PaymentOut = Field(description="What to do to pay for them all (one order)")


class AppointmentCancelOut(Out):
    bookings: list[AppointmentOut]
    refund_amount: float
    currency: str
