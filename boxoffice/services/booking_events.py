"""What a booking change sets in motion: emails, calendar events and webhooks.

The booking's own transaction writes one ``event`` row to the outbox (one INSERT,
nothing read), so the booking path stays fast. The worker then *fans it out* in
one transaction of its own: it marks the event row delivered and writes one row
per side effect (the customer's email, each connected calendar, each webhook
subscription), so each is delivered and retried on its own, in the order of the
booking's events. The payloads are plain JSON: ids and the values as they were.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from boxoffice.db.models import (
    Booking,
    CalendarConnection,
    Organization,
    Room,
    Session,
    User,
    WebhookSubscription,
)
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus
from boxoffice.services import crypto, links, outbox
from boxoffice.services.outbox import Claimed, Topic
from boxoffice.services.ports import CalendarAccess, CalendarEvent


class BookingEvent(StrEnum):
    CREATED = "booking.created"
    CONFIRMED = "booking.confirmed"
    CANCELLED = "booking.cancelled"
    RESCHEDULED = "booking.rescheduled"
    COMPLETED = "booking.completed"
    NO_SHOW = "booking.no_show"
    REMINDER = "booking.reminder"  # internal: the 24-hour reminder email, no webhook
    PAYMENT_SUCCEEDED = "payment.succeeded"
    # Money given back that no cancellation email announces: a payment that arrived
    # after its seat had gone.
    PAYMENT_REFUNDED = "payment.refunded"
    # A seat freed up and is held for the first customer on the session's waitlist.
    WAITLIST_OFFERED = "waitlist.offered"


# The events outside subscribers can ask for.
WEBHOOK_EVENTS = tuple(e.value for e in BookingEvent if e is not BookingEvent.REMINDER)

_EMAIL_KIND = {
    BookingEvent.CONFIRMED: "booking_confirmed",
    BookingEvent.RESCHEDULED: "booking_rescheduled",
    BookingEvent.CANCELLED: "booking_cancelled",
    BookingEvent.REMINDER: "booking_reminder",
    BookingEvent.PAYMENT_REFUNDED: "payment_refunded",
    BookingEvent.WAITLIST_OFFERED: "waitlist_offered",
}
_CALENDAR_EVENTS = {
    BookingEvent.CONFIRMED,
    BookingEvent.RESCHEDULED,
    BookingEvent.CANCELLED,
}


def calendar_uid(booking_id: uuid.UUID | str) -> str:
    """The UID of a booking's event in invites, feeds and connected calendars."""
    return f"booking-{booking_id}@boxoffice"


def is_own_uid(uid: str) -> bool:
    return uid.startswith("booking-") and uid.endswith("@boxoffice")


def event_row(
    booking: Booking,
    session: Session,
    events: list[BookingEvent],
    *,
    now: datetime,
    previous_status: str | None = None,
    refund_minor: int = 0,
    previous: Session | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The outbox row announcing these events of a booking, as column values."""
    event_id = event_id or uuid.uuid4()
    payload: dict[str, Any] = {
        "eventId": str(event_id),
        "types": [e.value for e in events],
        "bookingId": str(booking.id),
        "occurredAt": now.isoformat(),
        "status": booking.status,
        "previousStatus": previous_status,
        "startAt": session.start_at.isoformat(),
        "endAt": session.end_at.isoformat(),
        "sequence": booking.sequence,
        "refundMinor": refund_minor,
        "previousStartAt": previous.start_at.isoformat() if previous else None,
        "previousEndAt": previous.end_at.isoformat() if previous else None,
    }
    return outbox.row_values(
        org_id=booking.org_id,
        topic=Topic.EVENT,
        stream=f"booking:{booking.id}",
        dedupe_key=f"event:{event_id}",
        payload=payload,
        now=now,
    )


def record_once(
    db: Db,
    booking: Booking,
    session: Session,
    events: list[BookingEvent],
    *,
    now: datetime,
    event_id: uuid.UUID,
) -> bool:
    """Write the event row unless one with this (stable) id exists: for periodic jobs,
    so that two workers finding the same due booking write it once."""
    row = event_row(booking, session, events, now=now, event_id=event_id)
    return outbox.insert_unless_exists(db, row)


def fan_out(db: Db, row: Claimed, *, now: datetime, public_url: str, secret_key: str) -> int:
    """Turn a claimed event row into its side-effect rows; returns how many were written.

    Runs in one write transaction: the event row is marked delivered by the same
    commit that writes its children, so a crash leaves either both or neither.
    """
    if not outbox.claim_for_fan_out(db, row.id, now=now):
        return 0
    event = row.payload
    booking = db.execute(
        select(Booking)
        .options(joinedload(Booking.session).joinedload(Session.room).joinedload(Room.organization))
        .where(Booking.id == uuid.UUID(event["bookingId"]))
    ).scalar_one_or_none()
    if booking is None or booking.session is None:
        return 0
    session = booking.session
    types = [BookingEvent(t) for t in event["types"]]
    # Read once for all the event's types.
    connections = _calendar_connections(db, session) if _CALENDAR_EVENTS.intersection(types) else []
    subscriptions = _subscriptions(db, booking.org_id)
    written = 0
    for event_type in types:
        if _wants_email(event_type, event, booking):
            email = _email_payload(db, booking, session, event_type, event, public_url, secret_key)
            if email is not None:
                written += _child(
                    db, row, Topic.EMAIL, f"email:{booking.id}", event_type, email, now=now
                )
        if event_type in _CALENDAR_EVENTS:
            for connection_id in connections:
                payload: dict[str, Any] = {
                    "connectionId": str(connection_id),
                    "bookingId": str(booking.id),
                }
                written += _child(
                    db,
                    row,
                    Topic.CALENDAR,
                    f"calendar:{connection_id}:{booking.id}",
                    event_type,
                    payload,
                    now=now,
                    target=str(connection_id),
                )
        if event_type.value in WEBHOOK_EVENTS:
            for sub in (s for s in subscriptions if event_type.value in s.event_types):
                payload = {  # the body as of the event; signed when sent
                    "subscriptionId": str(sub.id),
                    "msgId": f"msg_{event['eventId']}_{event_type.value}",
                    "body": _webhook_body(booking, session, event_type, event),
                }
                written += _child(
                    db,
                    row,
                    Topic.WEBHOOK,
                    f"webhook:{sub.id}:{booking.id}",
                    event_type,
                    payload,
                    now=now,
                    target=str(sub.id),
                )
    return written


def _child(
    db: Db,
    row: Claimed,
    topic: Topic,
    stream: str,
    event_type: BookingEvent,
    payload: dict[str, Any],
    *,
    now: datetime,
    target: str = "",
) -> int:
    event_id = row.payload["eventId"]
    key = f"{topic.value}:{target}:{event_id}:{event_type.value}"
    inserted = outbox.enqueue(
        db,
        org_id=row.org_id,
        topic=topic,
        stream=stream,
        dedupe_key=key,
        payload=payload,
        now=now,
    )
    return int(inserted)


def _wants_email(event_type: BookingEvent, event: dict[str, Any], booking: Booking) -> bool:
    if event_type not in _EMAIL_KIND:
        return False
    if event_type is BookingEvent.REMINDER:
        return booking.status == BookingStatus.CONFIRMED.value  # not if cancelled meanwhile
    if event_type is BookingEvent.CANCELLED:
        # Nobody was told of a hold that was never confirmed; no need to cancel it.
        return event.get("previousStatus") == BookingStatus.CONFIRMED.value
    if event_type is BookingEvent.RESCHEDULED:
        return event.get("status") == BookingStatus.CONFIRMED.value
    return True


def _recipient(db: Db, booking: Booking) -> tuple[str, str | None] | None:
    if booking.customer_email:
        return booking.customer_email, booking.customer_name
    if booking.user_id is None:
        return None
    user = db.get(User, booking.user_id)
    if user is None:
        return None
    return user.email, user.name


def _email_payload(
    db: Db,
    booking: Booking,
    session: Session,
    event_type: BookingEvent,
    event: dict[str, Any],
    public_url: str,
    secret_key: str,
) -> dict[str, Any] | None:
    recipient = _recipient(db, booking)
    if recipient is None:
        return None
    room = session.room
    org = db.get(Organization, booking.org_id)
    return {
        "kind": _EMAIL_KIND[event_type],
        "bookingId": str(booking.id),
        "to": recipient[0],
        "customerName": recipient[1],
        "orgName": org.name if org else "",
        "orgTimezone": org.timezone if org else "UTC",
        "customerTimezone": booking.customer_timezone,
        "title": session.title or (room.name if room else "Booking"),
        "startAt": event["startAt"],
        "endAt": event["endAt"],
        "location": room.name if room else "",
        "sequence": event["sequence"],
        "priceMinor": booking.price_minor,
        "currency": booking.currency,
        "refundMinor": event.get("refundMinor", 0),
        "previousStartAt": event.get("previousStartAt"),
        "holdExpiresAt": booking.hold_expires_at.isoformat() if booking.hold_expires_at else None,
        "manageUrl": links.management_url(public_url, booking.id, secret=secret_key)
        if booking.customer_email
        else f"{public_url.rstrip('/')}/api/v1/bookings/{booking.id}",
    }


def _calendar_connections(db: Db, session: Session) -> list[uuid.UUID]:
    owners = []
    if session.room_id is not None:
        owners.append(CalendarConnection.room_id == session.room_id)
    if session.provider_id is not None:
        owners.append(CalendarConnection.provider_id == session.provider_id)
    if not owners:
        return []
    return list(
        db.execute(
            select(CalendarConnection.id).where(
                CalendarConnection.is_active.is_(True), or_(*owners)
            )
        ).scalars()
    )


def _subscriptions(db: Db, org_id: uuid.UUID) -> list[WebhookSubscription]:
    return list(
        db.execute(
            select(WebhookSubscription).where(
                WebhookSubscription.org_id == org_id, WebhookSubscription.is_active.is_(True)
            )
        ).scalars()
    )


def _webhook_body(
    booking: Booking, session: Session, event_type: BookingEvent, event: dict[str, Any]
) -> dict[str, Any]:
    """The Standard Webhooks body: ``{type, timestamp, data}``; amounts in minor units."""
    return {
        "type": event_type.value,
        "timestamp": event["occurredAt"],
        "data": {
            "id": str(booking.id),
            "organizationId": str(booking.org_id),
            "sessionId": str(session.id),
            "roomId": str(session.room_id) if session.room_id else None,
            "status": event["status"],
            "previousStatus": event.get("previousStatus"),
            "paymentStatus": booking.payment_status,
            "startAt": event["startAt"],
            "endAt": event["endAt"],
            "previousStartAt": event.get("previousStartAt"),
            "priceCents": booking.price_minor,
            "refundCents": event.get("refundMinor", 0),
            "currency": booking.currency,
            "customerEmail": booking.customer_email,
            "userId": str(booking.user_id) if booking.user_id else None,
        },
    }


@dataclass(frozen=True)
class CalendarTarget:
    """What a calendar row asks for now: put ``event``, or delete ``uid`` if it is None."""

    access: CalendarAccess
    uid: str
    event: CalendarEvent | None


def calendar_target(
    db: Db, connection_id: uuid.UUID, booking_id: uuid.UUID, *, secret_key: str, public_url: str
) -> CalendarTarget | None:
    """The calendar event a booking should have *now* (None: the connection is gone).

    Delivery is by state, not by replaying the change: whatever happened in
    between, the calendar ends up matching the booking.
    """
    connection = db.get(CalendarConnection, connection_id)
    if connection is None or not connection.is_active:
        return None
    access = CalendarAccess(
        url=connection.url,
        username=connection.username,
        password=(
            crypto.decrypt(secret_key, connection.password_encrypted)
            if connection.password_encrypted
            else None
        ),
    )
    booking = db.execute(
        select(Booking)
        .options(joinedload(Booking.session).joinedload(Session.room))
        .where(Booking.id == booking_id)
    ).scalar_one_or_none()
    uid = calendar_uid(booking_id)
    live = (BookingStatus.CONFIRMED.value, BookingStatus.COMPLETED.value)
    if booking is None or booking.session is None or booking.status not in live:
        return CalendarTarget(access=access, uid=uid, event=None)
    session = booking.session
    room = session.room
    event = CalendarEvent(
        uid=uid,
        summary=session.title or (room.name if room else "Booking"),
        start_at=session.start_at,
        end_at=session.end_at,
        sequence=booking.sequence,
        description=_calendar_description(db, booking),
        location=room.name if room else "",
        url=f"{public_url.rstrip('/')}/api/v1/bookings/{booking.id}",
    )
    return CalendarTarget(access=access, uid=uid, event=event)


def _calendar_description(db: Db, booking: Booking) -> str:
    recipient = _recipient(db, booking)
    who = f"{recipient[1] or ''} <{recipient[0]}>".strip() if recipient else "a customer"
    notes = f"\n\n{booking.notes}" if booking.notes else ""
    return f"Booked by {who}.{notes}"
