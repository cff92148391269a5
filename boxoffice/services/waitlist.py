"""Waitlists: customers waiting for a seat in a full session.

When a seat frees up (a cancellation, an expired hold, more seats) the worker offers
it to the first customer waiting: a pending booking that holds the seat for the
organisation's hold time, and an email. The customer accepts (a free seat is
confirmed; a priced one opens an order to pay) or lets the offer run out, and the
seat goes to the next one waiting.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Booking, Organization, Session, WaitlistEntry
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus
from boxoffice.domain.errors import Conflict, NotFound
from boxoffice.domain.payments import needs_payment
from boxoffice.domain.sessions import SessionStatus
from boxoffice.services import bookings, orders
from boxoffice.services.bookings import Owner

WAITING = "waiting"
OFFERED = "offered"
OFFER_EXPIRED = "offer_expired"
_LIVE = (BookingStatus.PENDING.value, BookingStatus.CONFIRMED.value)


def join(db: Db, session_id: uuid.UUID, *, user_id: uuid.UUID, now: datetime) -> WaitlistEntry:
    """Put the customer on a full session's waitlist."""
    session = bookings.get_group_session(db, session_id)
    if not session.waitlist_enabled or not session.is_open or session.visibility != "public":
        # (a course session closed to drop-ins is had by enrolling in the course)
        raise Conflict("This session has no waitlist.", {"sessionId": str(session_id)})
    if session.status != SessionStatus.SCHEDULED or session.start_at <= now:
        raise Conflict("This session is not taking bookings.", {"sessionId": str(session_id)})
    if session.booked_count < session.max_participants and not _anyone_waiting(db, session.id):
        raise Conflict("Seats are still free: book one instead.", {"sessionId": str(session_id)})
    has_seat = db.execute(
        select(Booking.id).where(
            Booking.session_id == session.id,
            Booking.user_id == user_id,
            Booking.status.in_(_LIVE),
        )
    ).first()
    if has_seat:
        raise Conflict("You already have a seat in this session.")
    if _live_entry(db, session.id, user_id) is not None:
        raise Conflict("You are already on this session's waitlist.")
    entry = WaitlistEntry(
        id=uuid.uuid4(),
        org_id=session.org_id,
        session_id=session.id,
        user_id=user_id,
        status=WAITING,
        created_at=now,
        updated_at=now,
    )
    db.add(entry)
    db.flush()  # the partial unique index refuses a concurrent second entry
    return entry


def _anyone_waiting(db: Db, session_id: uuid.UUID) -> bool:
    return bool(
        db.execute(
            select(
                exists().where(
                    WaitlistEntry.session_id == session_id,
                    WaitlistEntry.status.in_((WAITING, OFFERED)),
                )
            )
        ).scalar()
    )


def _live_entry(db: Db, session_id: uuid.UUID, user_id: uuid.UUID) -> WaitlistEntry | None:
    return db.execute(
        select(WaitlistEntry).where(
            WaitlistEntry.session_id == session_id,
            WaitlistEntry.user_id == user_id,
            WaitlistEntry.status.in_((WAITING, OFFERED)),
        )
    ).scalar_one_or_none()


def position(db: Db, entry: WaitlistEntry) -> int | None:
    """1 for the first one waiting; None once the entry no longer waits."""
    if entry.status != WAITING:
        return None
    ahead = db.execute(
        select(func.count()).where(
            WaitlistEntry.session_id == entry.session_id,
            WaitlistEntry.status == WAITING,
            # the order offers follow: by time, then id
            or_(
                WaitlistEntry.created_at < entry.created_at,
                and_(WaitlistEntry.created_at == entry.created_at, WaitlistEntry.id < entry.id),
            ),
        )
    ).scalar_one()
    return int(ahead) + 1


def get_entry(
    db: Db, entry_id: uuid.UUID, *, user_id: uuid.UUID, lock: bool = False
) -> WaitlistEntry:
    stmt = select(WaitlistEntry).where(
        WaitlistEntry.id == entry_id, WaitlistEntry.user_id == user_id
    )
    entry: WaitlistEntry | None = db.execute(
        for_update(db, stmt) if lock else stmt
    ).scalar_one_or_none()
    if entry is None:
        raise NotFound("Waitlist entry not found.", {"entryId": str(entry_id)})
    return entry


def my_entries(db: Db, *, user_id: uuid.UUID) -> list[WaitlistEntry]:
    return list(
        db.execute(
            select(WaitlistEntry)
            .where(WaitlistEntry.user_id == user_id)
            .order_by(WaitlistEntry.created_at.desc())
            .limit(100)
        ).scalars()
    )


def leave(db: Db, entry_id: uuid.UUID, *, user_id: uuid.UUID, now: datetime) -> WaitlistEntry:
    """Leave the waitlist; an offer not yet accepted is declined (its seat goes on)."""
    entry = get_entry(db, entry_id, user_id=user_id, lock=True)
    if entry.status not in (WAITING, OFFERED):
        raise Conflict(f"This waitlist entry is {entry.status}.")
    if entry.status == OFFERED and entry.booking_id is not None:
        _give_up_offer(db, entry, reason="offer declined", now=now)
    entry.status = "cancelled"
    entry.updated_at = now
    db.flush()
    return entry


def accept(db: Db, entry_id: uuid.UUID, *, user_id: uuid.UUID, now: datetime) -> Booking:
    """Take the seat offered: a free one is confirmed; a priced one waits for its
    payment (an order, held until the offer runs out)."""
    entry = get_entry(db, entry_id, user_id=user_id, lock=True)
    if entry.status != OFFERED or entry.booking_id is None:
        raise Conflict(f"This waitlist entry is {entry.status}; there is no seat on offer.")
    if entry.offered_until is not None and entry.offered_until <= now:
        raise Conflict("The offer has run out.", {"offeredUntil": entry.offered_until.isoformat()})
    booking = bookings.get_booking(db, entry.booking_id, Owner(user_id=user_id), lock=True)
    if booking.status != BookingStatus.PENDING:
        raise Conflict(f"The booking offered is {booking.status}.")
    org = db.get(Organization, booking.org_id)
    assert org is not None
    if needs_payment(booking.price_minor, payments_enabled=org.payments_enabled):
        order = orders.open_order(
            db,
            org,
            total_minor=booking.price_minor,
            currency=booking.currency,
            user_id=user_id,
            now=now,
        )
        order.hold_expires_at = entry.offered_until
        booking.order_id = order.id
        booking.hold_expires_at = entry.offered_until
    else:
        bookings.confirm_offer(db, booking, actor_id=user_id, now=now)
    entry.status = "accepted"
    entry.updated_at = now
    db.flush()
    return booking


def offer_free_seats(db: Db, *, now: datetime, limit: int = 50) -> int:
    """Offer each free seat of a session with a waitlist to the first one waiting."""
    candidates = db.execute(
        select(Session.id)
        .where(
            Session.waitlist_enabled.is_(True),
            Session.status == SessionStatus.SCHEDULED.value,
            Session.start_at > now,
            Session.booked_count < Session.max_participants,
            exists().where(WaitlistEntry.session_id == Session.id, WaitlistEntry.status == WAITING),
        )
        .limit(limit)
    ).scalars()
    offered = 0
    for session_id in list(candidates):
        offered += _offer(db, session_id, now=now)
    return offered


def _offer(db: Db, session_id: uuid.UUID, *, now: datetime) -> int:
    session = db.get(Session, session_id)
    assert session is not None
    org = db.get(Organization, session.org_id)
    assert org is not None
    offered = 0
    while True:
        waiting = db.execute(
            for_update(
                db,
                select(WaitlistEntry)
                .where(WaitlistEntry.session_id == session_id, WaitlistEntry.status == WAITING)
                .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
                .limit(1),
            )
        ).scalar_one_or_none()
        if waiting is None or not bookings.try_take_seat(db, session):
            return offered
        until = now + timedelta(minutes=org.hold_min)
        booking = bookings.add_booking(
            db,
            session,
            currency=org.currency,
            user_id=waiting.user_id,
            notes="",
            now=now,
            reason="offered from the waitlist",
            offer_until=until,
        )
        waiting.status = OFFERED
        waiting.booking_id = booking.id
        waiting.offered_until = until
        waiting.updated_at = now
        db.flush()
        offered += 1


def expire_offers(db: Db, *, now: datetime, limit: int = 100) -> int:
    """Offers that ran out: the held seat is released (and offered to the next)."""
    entries = list(
        db.execute(
            for_update(
                db,
                select(WaitlistEntry)
                .where(WaitlistEntry.status == OFFERED, WaitlistEntry.offered_until <= now)
                .order_by(WaitlistEntry.offered_until)
                .limit(limit),
            )
        ).scalars()
    )
    for entry in entries:
        _give_up_offer(db, entry, reason=OFFER_EXPIRED, now=now)
        entry.status = "expired"
        entry.updated_at = now
    db.flush()
    return len(entries)


def _give_up_offer(db: Db, entry: WaitlistEntry, *, reason: str, now: datetime) -> None:
    if entry.booking_id is None:
        return
    status = db.execute(select(Booking.status).where(Booking.id == entry.booking_id)).scalar()
    if status == BookingStatus.PENDING:
        bookings.cancel_booking(
            db,
            entry.booking_id,
            Owner(org_id=entry.org_id),
            actor_id=None,
            reason=reason,
            by_organiser=True,
            now=now,
        )
