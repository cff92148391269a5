"""Customer-facing rooms, timeslots and bookings."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from boxoffice.api.deps import CurrentCaller, Db, Gateway, Now
from boxoffice.api.routes.payments import payment_for
from boxoffice.api.schemas import (
    BookingIn,
    BookingOut,
    BookingPageOut,
    BookingStatusName,
    CancelIn,
    CancelOut,
    Day,
    PaymentOut,
    RescheduleIn,
    RoomOut,
    RoomType,
    TimeslotListOut,
    TimeslotOut,
    error_responses,
)
from boxoffice.domain.money import to_major
from boxoffice.observability import BOOKINGS_CREATED
from boxoffice.services import auth, bookings, payments, rooms, timeslots

router = APIRouter(
    prefix="/api/v1/bookings", tags=["bookings"], responses=error_responses(401, 403, 404, 409)
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key returns the first result, never a second booking",
    ),
]
Page = Annotated[int, Query(ge=1, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=bookings.MAX_PAGE_SIZE)]


@router.get("/rooms", response_model=list[RoomOut])
def list_rooms(
    db: Db,
    room_type: Annotated[RoomType | None, Query(alias="roomType")] = None,
    capacity: Annotated[int | None, Query(ge=1, le=10_000, description="At least")] = None,
    is_active: Annotated[bool, Query(alias="isActive")] = True,
    org: Annotated[
        str | None, Query(max_length=63, pattern=r"^[a-z0-9-]+$", description="Organisation slug")
    ] = None,
) -> list[RoomOut]:
    """Rooms, filtered by type, minimum capacity, active flag and organisation."""
    filters = rooms.RoomFilter(
        room_type=room_type, min_capacity=capacity, is_active=is_active, org_slug=org
    )
    with db.read() as s:
        return [RoomOut.of(r) for r in rooms.list_rooms(s, filters)]


@router.get("/rooms/{room_id}/timeslots", response_model=TimeslotListOut)
def list_timeslots(
    room_id: uuid.UUID,
    db: Db,
    now: Now,
    day: Annotated[Day | None, Query(alias="date", description="Local day, YYYY-MM-DD")] = None,
    days: Annotated[int | None, Query(ge=1, le=timeslots.MAX_LIST_DAYS)] = None,
    duration: Annotated[int | None, Query(ge=1, le=1440, description="Minutes")] = None,
    limit: Annotated[int, Query(ge=1, le=timeslots.MAX_LIST_LIMIT)] = 500,
) -> TimeslotListOut:
    """A room's timeslots on a local day (the organisation's time zone), or upcoming."""
    with db.read() as s:
        room, sessions, busy = timeslots.list_timeslots(
            s, room_id, day=day, days=days, duration_min=duration, now=now, limit=limit
        )
        return TimeslotListOut(
            room_id=room.id,
            timezone=room.organization.timezone,
            timeslots=[TimeslotOut.of(x, room, now, busy=x.id in busy) for x in sessions],
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BookingOut)
def create_booking(
    body: BookingIn,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    response: Response,
    gateway: Gateway,
    idempotency_key: IdempotencyKey = None,
) -> BookingOut:
    """Book a seat in a timeslot or a group session. Free seats are confirmed at once; priced ones
    stay pending, holding the seat until ``payment.holdExpiresAt``, until paid
    (``payment`` says how)."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        booking, is_new = bookings.create_booking(
            s,
            user_id=caller.user_id,
            timeslot_id=body.timeslot_id,
            session_id=body.session_id,
            room_id=body.room_id,
            notes=body.notes,
            idempotency_key=idempotency_key,
            now=now,
        )
        out = BookingOut.of(booking, now)
    if is_new:
        BOOKINGS_CREATED.inc()
    else:
        response.headers["Idempotent-Replayed"] = "true"
    out.payment = payment_for(db, gateway, booking.order_id, now=now)
    return out


@router.get("", response_model=BookingPageOut)
def list_my_bookings(
    caller: CurrentCaller,
    db: Db,
    now: Now,
    status_: Annotated[BookingStatusName | None, Query(alias="status")] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> BookingPageOut:
    """The caller's own bookings, latest session first."""
    filters = bookings.BookingFilter(status=status_, page=page, limit=limit)
    with db.read() as s:
        auth.require_active(s, caller.user_id)
        result = bookings.list_bookings(s, bookings.Owner(user_id=caller.user_id), filters)
        return BookingPageOut(
            items=[BookingOut.of(b, now) for b in result.items],
            page=result.page,
            limit=result.limit,
            total=result.total,
        )


@router.get("/{booking_id}", response_model=BookingOut)
def get_booking(booking_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now) -> BookingOut:
    """One of the caller's bookings, with its status history and, while it waits for
    its payment, how to pay."""
    with db.read() as s:
        auth.require_active(s, caller.user_id)
        booking = bookings.get_booking(s, booking_id, bookings.Owner(user_id=caller.user_id))
        out = BookingOut.of(booking, now, bookings.booking_history(s, booking))
        if booking.status == "pending":
            out.payment = PaymentOut.of(payments.payment_instructions(s, booking.order_id))
        return out


@router.put("/{booking_id}/cancel", response_model=CancelOut)
def cancel_booking(
    booking_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    body: CancelIn | None = None,
) -> CancelOut:
    """Cancel one's own booking; the refund follows the organisation's policy."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        booking, refund = bookings.cancel_booking(
            s,
            booking_id,
            bookings.Owner(user_id=caller.user_id),
            actor_id=caller.user_id,
            reason=(body.reason if body else "") or "cancelled by customer",
            by_organiser=False,
            now=now,
        )
        return CancelOut(
            booking=BookingOut.of(booking, now),
            refund_amount=to_major(refund, booking.currency),
            currency=booking.currency,
        )


@router.put("/{booking_id}/reschedule", response_model=BookingOut)
def reschedule_booking(
    booking_id: uuid.UUID, body: RescheduleIn, caller: CurrentCaller, db: Db, now: Now
) -> BookingOut:
    """Move one's own booking to another timeslot, atomically."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        booking = bookings.reschedule_booking(
            s,
            booking_id,
            bookings.Owner(user_id=caller.user_id),
            timeslot_id=body.timeslot_id,
            actor_id=caller.user_id,
            now=now,
        )
        return BookingOut.of(booking, now)
