"""Organisation administration: rooms, timeslot generation and bookings."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from boxoffice.api.deps import CurrentCaller, Db, Gateway, Now
from boxoffice.api.payment_schemas import PaymentSettingsIn, PaymentSettingsOut
from boxoffice.api.routes.bookings import Limit, Page
from boxoffice.api.schemas import (
    BookingOut,
    BookingPageOut,
    BookingStatusName,
    CancelOut,
    GenerateIn,
    GenerateOut,
    Instant,
    RoomDeleteOut,
    RoomIn,
    RoomOut,
    RoomPatch,
    StatusIn,
    error_responses,
)
from boxoffice.db.session import Db as Session
from boxoffice.domain.bookings import BookingStatus, PaymentStatus
from boxoffice.domain.money import to_major, to_minor
from boxoffice.domain.payments import COMMISSION_PERCENT
from boxoffice.services import auth, bookings, organizations, rooms, timeslots
from boxoffice.services.organizations import get_organization

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=error_responses(401, 403, 404, 409)
)


def _room_values(s: Session, org_id: uuid.UUID, body: RoomIn | RoomPatch) -> dict[str, Any]:
    """Service keyword arguments for the fields the body sets."""
    given = body.model_dump(exclude_unset=True)
    values: dict[str, Any] = {
        name: given[key]
        for key, name in (
            ("name", "name"),
            ("description", "description"),
            ("capacity", "capacity"),
            ("room_type", "room_type"),
            ("is_active", "is_active"),
            ("metadata", "metadata_"),
        )
        if key in given and given[key] is not None
    }
    if given.get("hourly_rate") is not None:
        currency = get_organization(s, org_id).currency
        values["hourly_rate_minor"] = to_minor(given["hourly_rate"], currency)
    return values


@router.post("/rooms", status_code=status.HTTP_201_CREATED, response_model=RoomOut)
def create_room(body: RoomIn, caller: CurrentCaller, db: Db) -> RoomOut:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        room = rooms.create_room(s, org_id=org.org_id, **_room_values(s, org.org_id, body))
        return RoomOut.of(room)


@router.put("/rooms/{room_id}", response_model=RoomOut)
def update_room(room_id: uuid.UUID, body: RoomPatch, caller: CurrentCaller, db: Db) -> RoomOut:
    """Change the fields given; the others stay."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        room = rooms.update_room(s, room_id, org_id=org.org_id, **_room_values(s, org.org_id, body))
        return RoomOut.of(room)


@router.delete("/rooms/{room_id}", response_model=RoomDeleteOut)
def delete_room(room_id: uuid.UUID, caller: CurrentCaller, db: Db) -> RoomDeleteOut:
    """Delete a room never booked; a room with bookings is deactivated instead."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        kept = rooms.delete_room(s, room_id, org_id=org.org_id)
        return RoomDeleteOut(deleted=kept is None, room=RoomOut.of(kept) if kept else None)


@router.post("/timeslots/generate", status_code=status.HTTP_201_CREATED, response_model=GenerateOut)
def generate_timeslots(body: GenerateIn, caller: CurrentCaller, db: Db, now: Now) -> GenerateOut:
    """Create a room's timeslots for working hours over a date range, in the
    organisation's time zone. Slots overlapping existing ones are skipped."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        result = timeslots.generate_timeslots(
            s,
            org_id=org.org_id,
            room_id=body.room_id,
            start_date=body.start_date,
            end_date=body.end_date,
            slot_min=body.slot_duration,
            day_start=body.working_hours.start,
            day_end=body.working_hours.end,
            weekdays=frozenset(body.weekdays) if body.weekdays is not None else None,
            max_bookings=body.max_bookings,
            now=now,
        )
        return GenerateOut(
            created=result.created,
            skipped=result.skipped,
            first_start_time=result.first_start_at,
            last_end_time=result.last_end_at,
        )


@router.get("/bookings", response_model=BookingPageOut)
def list_bookings(
    caller: CurrentCaller,
    db: Db,
    now: Now,
    status_: Annotated[BookingStatusName | None, Query(alias="status")] = None,
    room_id: Annotated[uuid.UUID | None, Query(alias="roomId")] = None,
    starts_from: Annotated[Instant | None, Query(alias="from")] = None,
    starts_to: Annotated[Instant | None, Query(alias="to")] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> BookingPageOut:
    """The organisation's bookings; from/to bound the session start (ISO 8601 with offset)."""
    filters = bookings.BookingFilter(
        status=status_,
        room_id=room_id,
        starts_from=starts_from,
        starts_to=starts_to,
        page=page,
        limit=limit,
    )
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        result = bookings.list_bookings(s, bookings.Owner(org_id=org.org_id), filters)
        return BookingPageOut(
            items=[BookingOut.of(b, now) for b in result.items],
            page=result.page,
            limit=result.limit,
            total=result.total,
        )


@router.put("/bookings/{booking_id}/status", response_model=CancelOut)
def change_status(
    booking_id: uuid.UUID, body: StatusIn, caller: CurrentCaller, db: Db, now: Now
) -> CancelOut:
    """Move a booking through its lifecycle, or record a payment taken at the desk."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        booking, refund = bookings.change_status(
            s,
            booking_id,
            org_id=org.org_id,
            status=BookingStatus(body.status) if body.status else None,
            payment_status=PaymentStatus(body.payment_status) if body.payment_status else None,
            actor_id=caller.user_id,
            reason=body.reason or "changed by organiser",
            now=now,
        )
        return CancelOut(
            booking=BookingOut.of(booking, now, bookings.booking_history(s, booking)),
            refund_amount=to_major(refund, booking.currency),
            currency=booking.currency,
        )


@router.get("/organization/payments", response_model=PaymentSettingsOut)
def get_payment_settings(caller: CurrentCaller, db: Db, gateway: Gateway) -> PaymentSettingsOut:
    """How the organisation takes payments, and the platform's commission on them."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        row = get_organization(s, org.org_id)
        return PaymentSettingsOut.of(row, gateway.name, COMMISSION_PERCENT[row.plan_tier])


@router.put("/organization/payments", response_model=PaymentSettingsOut)
def update_payment_settings(
    body: PaymentSettingsIn, caller: CurrentCaller, db: Db, gateway: Gateway
) -> PaymentSettingsOut:
    """Take payments online (or not), connect the Stripe account, change the plan
    tier or the hold time of unpaid bookings."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        row = organizations.update_payment_settings(
            s,
            org.org_id,
            live_gateway=gateway.live,
            payments_enabled=body.payments_enabled,
            payment_account_id=body.payment_account_id,
            plan_tier=body.plan_tier,
            hold_min=body.hold_minutes,
        )
        return PaymentSettingsOut.of(row, gateway.name, COMMISSION_PERCENT[row.plan_tier])
