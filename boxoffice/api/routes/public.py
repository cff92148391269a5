"""The public booking API: no account needed. A customer finds a provider's free
slots, books one, and manages it with the secret link the booking returns."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response, status

from boxoffice.api.deps import AppSettings, Db, Gateway, Now, SecretKey
from boxoffice.api.public_schemas import (
    AppointmentBookedOut,
    AppointmentCancelOut,
    AppointmentIn,
    AppointmentOut,
    ExplanationOut,
    ManagedAppointmentOut,
    ProviderPublicOut,
    RescheduleAppointmentIn,
    ServicePublicOut,
    SlotOut,
    SlotsOut,
)
from boxoffice.api.routes.bookings import IdempotencyKey
from boxoffice.api.routes.payments import payment_for
from boxoffice.api.schemas import Instant, PaymentOut, error_responses
from boxoffice.db.models import Booking
from boxoffice.domain.money import to_major
from boxoffice.observability import BOOKINGS_CREATED
from boxoffice.services import appointments, links, payments, slots
from boxoffice.services.bookings import Customer
from boxoffice.services.organizations import check_timezone

router = APIRouter(
    prefix="/api/v1/public", tags=["public"], responses=error_responses(401, 404, 409)
)
Token = Annotated[str, Query(min_length=1, max_length=1000, description="The booking's secret")]


@router.get("/providers/{provider_id}", response_model=ProviderPublicOut)
def get_provider(provider_id: uuid.UUID, db: Db) -> ProviderPublicOut:
    with db.read() as s:
        return ProviderPublicOut.of(slots.get_public_provider(s, provider_id))


@router.get("/providers/{provider_id}/services", response_model=list[ServicePublicOut])
def provider_services(provider_id: uuid.UUID, db: Db) -> list[ServicePublicOut]:
    """The provider's active services."""
    with db.read() as s:
        return [ServicePublicOut.of(x) for x in slots.public_services(s, provider_id)]


@router.get("/services/{service_id}/slots", response_model=SlotsOut)
def service_slots(
    service_id: uuid.UUID,
    db: Db,
    now: Now,
    start: Annotated[Instant, Query(description="Window start (UTC instant)")],
    end: Annotated[Instant, Query(description="Window end; at most 62 days after start")],
    provider_id: Annotated[
        uuid.UUID | None, Query(alias="providerId", description="Omit for any provider")
    ] = None,
    timezone: Annotated[str, Query(max_length=64, description="Display time zone")] = "UTC",
    explain: Annotated[bool, Query(description="Say why the time `at` is not offered")] = False,
    at: Annotated[Instant | None, Query(description="The time to explain")] = None,
) -> SlotsOut:
    """Free slots starting in [start, end), with local times in ``timezone``."""
    zone = ZoneInfo(check_timezone(timezone))
    with db.read() as s:
        result = slots.search_slots(
            s,
            service_id,
            provider_id=provider_id,
            start=start,
            end=end,
            now=now,
            explain_at=at if explain and at is not None else None,
        )
    explanation = None
    if explain and at is not None:
        explanation = ExplanationOut(
            at=at, offered=result.explanation is None, reason=result.explanation
        )
    return SlotsOut(
        service_id=service_id,
        timezone=timezone,
        slots=[SlotOut.of(x, zone) for x in result.slots],
        explanation=explanation,
    )


def _managed(booking: Booking, secret: str, public_url: str) -> ManagedAppointmentOut:
    token = links.management_token(booking.id, secret=secret)
    url = links.management_url(public_url, booking.id, secret=secret)
    return ManagedAppointmentOut(
        **AppointmentOut.of(booking).model_dump(), manage_token=token, manage_url=url
    )


@router.post("/bookings", status_code=status.HTTP_201_CREATED, response_model=AppointmentBookedOut)
def book(
    body: AppointmentIn,
    db: Db,
    now: Now,
    response: Response,
    settings: AppSettings,
    secret: SecretKey,
    gateway: Gateway,
    idempotency_key: IdempotencyKey = None,
) -> AppointmentBookedOut:
    """Book a service with a provider (or any free one). Confirmed at once when no
    payment is needed, else pending with its seat held until ``payment.holdExpiresAt``:
    ``payment`` says how to pay. A lost race is 409."""
    request = appointments.AppointmentRequest(
        service_id=body.service_id,
        provider_id=body.provider_id,
        start_at=body.start_time,
        customer=Customer(
            name=body.customer.name,
            email=str(body.customer.email),
            phone=body.customer.phone,
            timezone=body.timezone,
        ),
        notes=body.notes,
        recurrence=appointments.Recurrence(
            every_weeks=body.recurrence.every_weeks,
            count=body.recurrence.count,
            skip=frozenset(body.recurrence.skip_dates),
        )
        if body.recurrence
        else None,
    )
    with db.write() as s:
        booked, is_new = appointments.book_appointment(
            s, request, idempotency_key=idempotency_key, now=now
        )
        items = [_managed(b, secret, settings.public_url) for b in booked]
    if is_new:
        BOOKINGS_CREATED.inc(len(items))
    else:
        response.headers["Idempotent-Replayed"] = "true"
    payment = payment_for(db, gateway, booked[0].order_id, now=now)
    return AppointmentBookedOut(booking=items[0], bookings=items, payment=payment)


@router.get("/bookings/{booking_id}", response_model=AppointmentOut)
def get_booking(booking_id: uuid.UUID, token: Token, db: Db, secret: SecretKey) -> AppointmentOut:
    """The booking and, while it waits for its payment, how to pay."""
    with db.read() as s:
        booking = appointments.booking_for_token(s, booking_id, token, secret=secret)
        payment = None
        if booking.status == "pending" and booking.order_id is not None:
            payment = PaymentOut.of(payments.payment_instructions(s, booking.order_id))
        return AppointmentOut.of(booking, payment)


@router.put("/bookings/{booking_id}/cancel", response_model=AppointmentCancelOut)
def cancel(
    booking_id: uuid.UUID,
    token: Token,
    db: Db,
    now: Now,
    secret: SecretKey,
    scope: Annotated[
        Literal["this", "following"],
        Query(description="'following' also cancels the later dates of its series"),
    ] = "this",
) -> AppointmentCancelOut:
    """Cancel by the organisation's refund policy (until the appointment starts)."""
    with db.write() as s:
        cancelled = appointments.cancel_appointment(
            s, booking_id, token, secret=secret, following=scope == "following", now=now
        )
        currency = cancelled[0][0].currency
        return AppointmentCancelOut(
            bookings=[AppointmentOut.of(b) for b, _ in cancelled],
            refund_amount=to_major(sum(r for _, r in cancelled), currency),
            currency=currency,
        )


@router.put("/bookings/{booking_id}/reschedule", response_model=AppointmentOut)
def reschedule(
    booking_id: uuid.UUID,
    body: RescheduleAppointmentIn,
    token: Token,
    db: Db,
    now: Now,
    secret: SecretKey,
) -> AppointmentOut:
    """Move to another free start with the same provider, or nothing changes."""
    with db.write() as s:
        return AppointmentOut.of(
            appointments.reschedule_appointment(
                s, booking_id, token, secret=secret, start_at=body.start_time, now=now
            )
        )
