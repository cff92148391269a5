"""Periodic jobs: each one a use case that is safe to run in two workers at once.

Every job claims its rows with a conditional UPDATE (or a SKIP LOCKED select on
PostgreSQL), so two workers finding the same due row act on it once; the outbox
rows they write carry stable ids as a second guard.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, select, update

from boxoffice.db.locking import for_update
from boxoffice.db.models import Booking, Order, Session, Ticket
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus, PaymentStatus
from boxoffice.domain.payments import ClosedReason, OrderStatus
from boxoffice.services import attendance, orders
from boxoffice.services.booking_events import BookingEvent, record_once
from boxoffice.services.bookings import Owner, cancel_booking, change_status

_BOOKINGS = cast(Table, Booking.__table__)
_SESSIONS = cast(Table, Session.__table__)
_TICKETS = cast(Table, Ticket.__table__)
_REMINDER_NAMESPACE = uuid.UUID("6f1c7f5e-2d4b-4c35-9a51-0b6f3d1e8a20")


def _skip_locked(db: Db, stmt: object) -> object:
    if db.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)  # type: ignore[attr-defined]
    return stmt


def expire_holds(db: Db, *, now: datetime, limit: int = 100) -> int:
    """Close the open orders whose hold has run out: their pending bookings are
    cancelled (reason payment_timeout) and their seats go back on sale. A booking
    already paid (at the desk, say) is left alone."""
    stmt = (
        select(Order.id, Order.org_id)
        .where(Order.status == OrderStatus.OPEN.value, Order.hold_expires_at <= now)
        .order_by(Order.hold_expires_at)
        .limit(limit)
    )
    rows = db.execute(_skip_locked(db, stmt)).all()  # type: ignore[call-overload]
    for order_id, org_id in rows:
        pending = db.execute(
            select(Booking.id)
            .where(
                Booking.order_id == order_id,
                Booking.status == BookingStatus.PENDING.value,
                Booking.payment_status == PaymentStatus.PENDING.value,
            )
            .order_by(Booking.id)
        ).scalars()
        for booking_id in list(pending):
            cancel_booking(
                db,
                booking_id,
                Owner(org_id=org_id),
                actor_id=None,
                reason=ClosedReason.PAYMENT_TIMEOUT.value,
                by_organiser=True,
                now=now,
            )
        orders.close_if_unpaid(db, order_id, ClosedReason.PAYMENT_TIMEOUT, now=now)
    return len(rows)


def send_reminders(db: Db, *, now: datetime, lead: timedelta, limit: int = 200) -> int:
    """Queue the reminder email of confirmed bookings starting within ``lead``, once each.

    A booking made (or moved) when its start was already closer than ``lead`` got
    its confirmation just now and no reminder.
    """
    candidates = db.execute(
        select(Booking.id, Booking.updated_at, Session.start_at)
        .join(Booking.session)
        .where(
            Booking.status == BookingStatus.CONFIRMED.value,
            Booking.reminded_at.is_(None),
            Session.start_at > now,
            Session.start_at <= now + lead,
        )
        .limit(limit)
    ).all()
    if not candidates:
        return 0
    # Every candidate is claimed, also those too recent for a reminder, so that the
    # next run does not look at them again.
    late = {c.id for c in candidates if c.updated_at > c.start_at - lead}
    claimed = list(
        db.execute(
            update(_BOOKINGS)
            .where(
                _BOOKINGS.c.id.in_([c.id for c in candidates]),
                _BOOKINGS.c.reminded_at.is_(None),
            )
            .values(reminded_at=now, updated_at=_BOOKINGS.c.updated_at)
            .returning(_BOOKINGS.c.id)
        ).scalars()
    )
    due = [booking_id for booking_id in claimed if booking_id not in late]
    bookings = db.execute(
        select(Booking).join(Booking.session).where(Booking.id.in_(due))
    ).scalars()
    for booking in bookings:
        session = booking.session
        assert session is not None
        stable = uuid.uuid5(_REMINDER_NAMESPACE, f"{booking.id}:{session.start_at.isoformat()}")
        record_once(db, booking, session, [BookingEvent.REMINDER], now=now, event_id=stable)
    return len(due)


def complete_sessions(db: Db, *, now: datetime, limit: int = 100) -> int:
    """Mark sessions that have ended completed, and settle their bookings (see
    :func:`settle_bookings`)."""
    stmt = (
        select(Session.id)
        .where(Session.end_at <= now, Session.status.in_(("scheduled", "in_progress")))
        .order_by(Session.end_at)
        .limit(limit)
    )
    ids = list(db.execute(_skip_locked(db, stmt)).scalars())  # type: ignore[call-overload]
    if not ids:
        return 0
    ended = list(
        db.execute(
            update(_SESSIONS)
            .where(_SESSIONS.c.id.in_(ids), _SESSIONS.c.status.in_(("scheduled", "in_progress")))
            .values(status="completed", updated_at=now)
            .returning(_SESSIONS.c.id)
        ).scalars()
    )
    settle_bookings(db, ended, now=now)
    return len(ended)


def settle_bookings(db: Db, session_ids: Sequence[uuid.UUID], *, now: datetime) -> int:
    """Give the confirmed bookings of sessions that have taken place their outcome:
    completed, or no_show in a session that tracks attendance when the booking has no
    record at all (no join, no check-in); an organiser can correct either. Returns
    how many bookings changed."""
    if not session_ids:
        return 0
    tracked = set(
        db.execute(
            select(Session.id).where(
                Session.id.in_(session_ids), Session.track_attendance.is_(True)
            )
        ).scalars()
    )
    # Locked before attendance is read: a join is recorded under the booking's lock, so
    # one racing this job is either seen here or waits and then finds the booking done.
    participants = list(
        db.execute(
            for_update(
                db,
                select(Booking)
                .where(
                    Booking.session_id.in_(session_ids),
                    Booking.status == BookingStatus.CONFIRMED.value,
                )
                .order_by(Booking.id),
            )
        ).scalars()
    )
    present = attendance.attended_booking_ids(
        db, [b.id for b in participants if b.session_id in tracked]
    )
    for booking in participants:
        no_show = booking.session_id in tracked and booking.id not in present
        change_status(
            db,
            booking.id,
            org_id=booking.org_id,
            status=BookingStatus.NO_SHOW if no_show else BookingStatus.COMPLETED,
            payment_status=None,
            actor_id=None,
            reason="no attendance" if no_show else "session ended",
            now=now,
        )
    return len(participants)


def expire_tickets(db: Db, *, now: datetime, limit: int = 500) -> int:
    """Active tickets past their window become expired, and stop counting as held.

    The conditional UPDATE claims each ticket once, so two workers running this at the
    same time expire it once (on PostgreSQL the candidates are picked SKIP LOCKED).
    """
    candidates = (
        select(Ticket.id)
        .where(Ticket.status == "active", Ticket.valid_until <= now)
        .order_by(Ticket.id)
        .limit(limit)
    )
    ids = list(db.execute(_skip_locked(db, candidates)).scalars())  # type: ignore[call-overload]
    if not ids:
        return 0
    expired = db.execute(
        update(_TICKETS)
        .where(_TICKETS.c.id.in_(ids), _TICKETS.c.status == "active")
        .values(status="expired", updated_at=now)
        .returning(_TICKETS.c.ticket_type_id, _TICKETS.c.event_id)
    ).all()
    orders.return_places(db, [(row[0], row[1]) for row in expired])
    return len(expired)
