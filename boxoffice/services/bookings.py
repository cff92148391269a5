"""Bookings: one seat in one session, taken, moved and released without ever overbooking.

Every seat change goes through :func:`take_seat` and :func:`release_seat`, which
adjust the session's ``booked_count`` with one conditional UPDATE. That statement
is the lock, the re-check and the write at once: on PostgreSQL it row-locks the
session, and it only succeeds while a seat is left, so concurrent requests queue
and the loser gets a clear 409. A CHECK constraint keeps the count within
``max_participants`` as the database's own backstop.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import Select, Table, and_, bindparam, case, func, insert, select, update
from sqlalchemy.orm import joinedload, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from boxoffice.db.locking import for_update
from boxoffice.db.models import Booking, BookingStatusChange, Order, Room, Session
from boxoffice.db.session import Db
from boxoffice.domain.bookings import (
    BookingStatus,
    PaymentStatus,
    check_transition,
    initial_status,
    refund_amount,
)
from boxoffice.domain.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SlotFull,
    SlotUnavailable,
)
from boxoffice.domain.payments import ClosedReason, needs_payment
from boxoffice.domain.sessions import GROUP_KINDS, SessionKind
from boxoffice.services import idempotency, orders, outbox
from boxoffice.services.booking_events import BookingEvent, event_row
from boxoffice.services.organizations import get_organization, refund_tiers
from boxoffice.services.timeslots import busy_timeslots, get_timeslot, is_bookable

MAX_PAGE_SIZE = 100
MAX_NOTES = 2000

# The statements of the booking hot path, built once on the tables (Core, not ORM
# bulk operations) so each request only binds its values.
_SESSIONS = cast(Table, Session.__table__)
_HAS_SEAT = (
    _SESSIONS.c.id == bindparam("session_id"),
    _SESSIONS.c.booked_count < _SESSIONS.c.max_participants,
    _SESSIONS.c.status == "scheduled",
)
# A customer's own seat: the session must be open for single bookings. An enrolment
# takes seats in every session of a course, open for drop-ins or not.
_TAKE_SEAT, _TAKE_ENROLLED_SEAT = (
    update(_SESSIONS)
    .where(*where)
    .values(booked_count=_SESSIONS.c.booked_count + 1)
    .returning(_SESSIONS.c.booked_count)
    for where in ((*_HAS_SEAT, _SESSIONS.c.is_open.is_(True)), _HAS_SEAT)
)
# One statement, so the row is updated (and its foreign keys checked) once: a second
# UPDATE for the status locked room and provider in the opposite order to a booking.
_RELEASE_SEAT = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("session_id"))
    .values(
        booked_count=_SESSIONS.c.booked_count - 1,
        # An appointment nobody holds any more is cancelled, which frees its provider
        # (and room) for others; a room's timeslot or a workshop stays on offer.
        status=case(
            (
                and_(_SESSIONS.c.booked_count == 1, _SESSIONS.c.kind == SessionKind.APPOINTMENT),
                "canceled",
            ),
            else_=_SESSIONS.c.status,
        ),
    )
    .returning(_SESSIONS.c.booked_count, _SESSIONS.c.status)
)
_INSERT_BOOKING = insert(cast(Table, Booking.__table__))
_HISTORY = cast(Table, BookingStatusChange.__table__)
_INSERT_STATUS_CHANGE = insert(_HISTORY)
_INSERT_EVENT = insert(outbox.OUTBOX)


def _bound(table: Table, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    return {name: bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in columns}


_INSERT_STATUS_CHANGE_AND_EVENT = (
    insert(outbox.OUTBOX)
    .values(_bound(outbox.OUTBOX, "e_", outbox.NEW_ROW_COLUMNS))
    .add_cte(
        insert(_HISTORY)
        .values(_bound(_HISTORY, "h_", [c.name for c in _HISTORY.c if c.name != "id"]))
        .cte("status_change")
    )
)


@dataclass(frozen=True)
class Owner:
    """Whose bookings a call may see: one customer's, or one organisation's."""

    user_id: uuid.UUID | None = None
    org_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.user_id is None and self.org_id is None:
            raise ValueError("an Owner names a customer or an organisation")

    def scope(self, stmt: Select[Booking]) -> Select[Booking]:
        if self.user_id is not None:
            stmt = stmt.where(Booking.user_id == self.user_id)
        if self.org_id is not None:
            stmt = stmt.where(Booking.org_id == self.org_id)
        return stmt


@dataclass(frozen=True)
class Customer:
    """Who booked, when there is no account: the one to tell."""

    name: str
    email: str
    phone: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class BookingFilter:
    status: str | None = None
    room_id: uuid.UUID | None = None
    starts_from: datetime | None = None
    starts_to: datetime | None = None
    page: int = 1
    limit: int = 20


@dataclass(frozen=True)
class Page:
    items: list[Booking]
    total: int
    page: int
    limit: int


def _load() -> Select[Booking]:
    return select(Booking).options(
        joinedload(Booking.session).joinedload(Session.room).joinedload(Room.organization)
    )


def get_booking(db: Db, booking_id: uuid.UUID, owner: Owner, *, lock: bool = False) -> Booking:
    """A booking the owner may see; anyone else's is NotFound, as if it did not exist."""
    if lock:
        # Lock the row alone first: a locking SELECT that also joins the session would,
        # after waiting out a concurrent reschedule, return the old join (no session).
        db.execute(for_update(db, owner.scope(select(Booking).where(Booking.id == booking_id))))
    stmt = owner.scope(_load().where(Booking.id == booking_id))
    booking = (
        db.execute(stmt.execution_options(populate_existing=True)).unique().scalar_one_or_none()
    )
    if booking is None:
        raise NotFound("Booking not found.", {"bookingId": str(booking_id)})
    return booking


def booking_history(db: Db, booking: Booking) -> list[BookingStatusChange]:
    stmt = (
        select(BookingStatusChange)
        .where(BookingStatusChange.booking_id == booking.id)
        .order_by(BookingStatusChange.id)
    )
    return list(db.execute(stmt).scalars())


def list_bookings(db: Db, owner: Owner, filters: BookingFilter) -> Page:
    """A page of the owner's bookings, newest session first."""
    if not 1 <= filters.limit <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_PAGE_SIZE}.", {"limit": filters.limit}
        )
    if filters.page < 1:
        raise InvalidInput("page starts at 1.", {"page": filters.page})
    if filters.starts_from and filters.starts_to and filters.starts_to < filters.starts_from:
        raise InvalidInput("'to' is before 'from'.")
    stmt = owner.scope(select(Booking).join(Booking.session))
    if filters.status is not None:
        stmt = stmt.where(Booking.status == BookingStatus(filters.status).value)
    if filters.room_id is not None:
        stmt = stmt.where(Session.room_id == filters.room_id)
    if filters.starts_from is not None:
        stmt = stmt.where(Session.start_at >= filters.starts_from)
    if filters.starts_to is not None:
        stmt = stmt.where(Session.start_at < filters.starts_to)
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    page_stmt = (
        stmt.options(joinedload(Booking.session).joinedload(Session.room))
        .order_by(Session.start_at.desc(), Booking.id)
        .offset((filters.page - 1) * filters.limit)
        .limit(filters.limit)
    )
    items = list(db.execute(page_stmt).unique().scalars())
    return Page(items=items, total=total, page=filters.page, limit=filters.limit)


def create_booking(
    db: Db,
    *,
    user_id: uuid.UUID,
    timeslot_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    notes: str,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Booking, bool]:
    """Book one seat for a customer: in a room timeslot, or in a group session (a
    workshop, or a course session open for drop-ins).

    Returns the booking and whether it is new; a retry with the same idempotency
    key returns the first request's booking and False.
    """
    if len(notes) > MAX_NOTES:
        raise InvalidInput(f"notes can be at most {MAX_NOTES} characters.")
    if (timeslot_id is None) == (session_id is None):
        raise InvalidInput("Name either a timeslotId or a sessionId.")
    scope = f"booking:{user_id}"
    if idempotency_key is not None:
        request = {"timeslotId": timeslot_id, "roomId": room_id, "notes": notes}
        if session_id is not None:
            request = {"sessionId": session_id, "notes": notes}
        first = idempotency.claim(
            db,
            scope=scope,
            key=idempotency_key,
            request_hash=idempotency.fingerprint(request),
            now=now,
        )
        if first is not None:
            return get_booking(db, first, Owner(user_id=user_id)), False
    if timeslot_id is not None:
        session = get_timeslot(db, timeslot_id)
        if room_id is not None and session.room_id != room_id:
            raise NotFound(
                "That timeslot does not belong to that room.",
                {"timeslotId": str(timeslot_id), "roomId": str(room_id)},
            )
    else:
        assert session_id is not None
        session = get_group_session(db, session_id)
    take_seat(db, session, now=now)
    org = get_organization(db, session.org_id)
    order = None
    if needs_payment(session.price_minor, payments_enabled=org.payments_enabled):
        order = orders.open_order(
            db,
            org,
            total_minor=session.price_minor,
            currency=org.currency,
            user_id=user_id,
            now=now,
        )
    booking = add_booking(
        db,
        session,
        currency=org.currency,
        user_id=user_id,
        notes=notes,
        actor_id=user_id,
        now=now,
        order=order,
    )
    if idempotency_key is not None:
        idempotency.complete(
            db, scope=scope, key=idempotency_key, resource_type="booking", resource_id=booking.id
        )
    return booking, True


def get_group_session(db: Db, session_id: uuid.UUID, *, org_id: uuid.UUID | None = None) -> Session:
    """A workshop or course session (with its room, if any); NotFound for any other
    kind, or for another organisation's when ``org_id`` is given."""
    session = db.get(Session, session_id, options=[joinedload(Session.room)])
    if (
        session is None
        or session.kind not in GROUP_KINDS
        or (org_id is not None and session.org_id != org_id)
    ):
        raise NotFound("Session not found.", {"sessionId": str(session_id)})
    return session


def add_booking(
    db: Db,
    session: Session,
    *,
    currency: str,
    notes: str,
    now: datetime,
    user_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    customer: Customer | None = None,
    client_id: uuid.UUID | None = None,
    series_id: uuid.UUID | None = None,
    order: Order | None = None,
    price_minor: int | None = None,
    charge_minor: int | None = None,
    reason: str = "booked",
    offer_until: datetime | None = None,
) -> Booking:
    """Record a booking of a seat the caller has just taken in ``session``, with its
    status history and its outbox event. Caller holds the seat (see :func:`take_seat`).

    With ``order`` the booking waits for that order's payment, holding its seat until
    the order's hold expires. ``price_minor`` is the booking's own price (by default
    the session's); ``charge_minor`` what the purchase it belongs to costs, when that
    is not its own price (a course's sessions are 0 each, the course's price is due).
    ``offer_until``: a seat offered from the waitlist, pending and held until then."""
    price = session.price_minor if price_minor is None else price_minor
    status, payment_status = initial_status(
        price if charge_minor is None else charge_minor,
        payment_required=order is not None or offer_until is not None,
    )
    if offer_until is not None and price == 0:
        payment_status = PaymentStatus.NOT_REQUIRED
    values = {
        "id": uuid.uuid4(),
        "org_id": session.org_id,
        "session_id": session.id,
        "user_id": user_id,
        "client_id": client_id,
        "series_id": series_id,
        "order_id": order.id if order else None,
        "status": status.value,
        "payment_status": payment_status.value,
        "price_minor": price,
        "currency": currency,
        "refunded_minor": 0,
        "notes": notes,
        "customer_name": customer.name if customer else None,
        "customer_email": customer.email if customer else None,
        "customer_phone": customer.phone if customer else None,
        "customer_timezone": customer.timezone if customer else None,
        "sequence": 0,
        "service_id": session.service_id,
        "valid_until": None,
        "reminded_at": None,
        "hold_expires_at": order.hold_expires_at if order else offer_until,
        "cancelled_at": None,
        "created_at": now,
        "updated_at": now,
    }
    # The hot path: one INSERT statement instead of a unit-of-work flush, then the
    # same values become the session's persistent object without reading them back.
    db.execute(_INSERT_BOOKING, values)
    booking = Booking(**values)
    make_transient_to_detached(booking)
    db.add(booking)
    set_committed_value(booking, "session", session)
    events = [BookingEvent.CREATED]
    if status is BookingStatus.CONFIRMED:
        events.append(BookingEvent.CONFIRMED)
    if offer_until is not None:
        events.append(BookingEvent.WAITLIST_OFFERED)
    _record(
        db,
        booking,
        None,
        status,
        actor_id=actor_id,
        reason=reason,
        now=now,
        event=event_row(booking, session, events, now=now),
    )
    return booking


def cancel_booking(
    db: Db,
    booking_id: uuid.UUID,
    owner: Owner,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    by_organiser: bool,
    now: datetime,
) -> tuple[Booking, int]:
    """Cancel a booking, release its seat and return the refund due in minor units.

    A customer may cancel only before the session starts, and is refunded by the
    organisation's policy; an organiser's cancellation refunds everything paid.
    """
    order_id = db.execute(
        select(Booking.order_id).where(Booking.id == booking_id)
    ).scalar_one_or_none()
    if order_id is not None:
        orders.lock_order(db, order_id)  # before the booking: see services.orders
    booking = get_booking(db, booking_id, owner, lock=True)
    session = _session_of(booking)
    if not by_organiser and now >= session.start_at:
        raise Conflict(
            "The session has already started; it can no longer be cancelled.",
            {"startsAt": session.start_at.isoformat()},
        )
    check_transition(
        BookingStatus(booking.status),
        BookingStatus.CANCELLED,
        starts_at=session.start_at,
        now=now,
    )
    paid = orders.paid_value(db, booking)
    refund = refund_amount(
        paid_minor=paid,
        tiers=refund_tiers(get_organization(db, booking.org_id)),
        starts_at=session.start_at,
        cancelled_at=now,
        by_organiser=by_organiser,
    )
    release_seat(db, session)
    booking.cancelled_at = now
    booking.hold_expires_at = None
    booking.refunded_minor = refund
    if refund > 0:
        booking.payment_status = PaymentStatus.REFUNDED.value
    _set_status(
        db,
        booking,
        BookingStatus.CANCELLED,
        actor_id=actor_id,
        reason=reason,
        now=now,
        session=session,
        events=[BookingEvent.CANCELLED],
        refund_minor=refund,
    )
    if booking.order_id is not None:
        if refund > 0:  # paid online: the money goes back the way it came
            orders.request_refund(
                db, booking.order_id, refund, reason="cancellation", booking_id=booking.id, now=now
            )
        else:
            closed = ClosedReason(reason) if reason in set(ClosedReason) else None
            orders.close_if_unpaid(db, booking.order_id, closed or ClosedReason.CANCELLED, now=now)
    db.flush()
    return booking, refund


def reschedule_booking(
    db: Db,
    booking_id: uuid.UUID,
    owner: Owner,
    *,
    timeslot_id: uuid.UUID,
    actor_id: uuid.UUID,
    now: datetime,
) -> Booking:
    """Move a booking to another timeslot: the new seat is taken and the old one
    released in one transaction, or nothing changes."""
    booking = get_booking(db, booking_id, owner, lock=True)
    old = _session_of(booking)
    if booking.status not in (BookingStatus.PENDING, BookingStatus.CONFIRMED):
        raise Conflict(
            f"A {booking.status} booking cannot be rescheduled.", {"status": booking.status}
        )
    if now >= old.start_at:
        raise Conflict("The session has already started; it can no longer be moved.")
    new = get_timeslot(db, timeslot_id)
    if new.id == old.id:
        raise InvalidInput("The booking is already in that timeslot.")
    if new.org_id != booking.org_id:
        raise NotFound("Timeslot not found.", {"timeslotId": str(timeslot_id)})
    if new.price_minor != booking.price_minor:
        raise Conflict(
            "The new timeslot has a different price; cancel and book it instead.",
            {"price": booking.price_minor, "newPrice": new.price_minor},
        )
    # Touch the two session rows in id order so crossing reschedules cannot deadlock.
    if new.id.bytes < old.id.bytes:
        take_seat(db, new, now=now)
        release_seat(db, old)
    else:
        release_seat(db, old)
        take_seat(db, new, now=now)
    record_move(db, booking, old, new, actor_id=actor_id, now=now)
    return booking


def record_move(
    db: Db,
    booking: Booking,
    old: Session,
    new: Session,
    *,
    actor_id: uuid.UUID | None,
    now: datetime,
) -> None:
    """Point a booking at its new session, with history and outbox event.

    Caller has already taken the seat in ``new`` and released the one in ``old``.
    """
    booking.session = new
    announce_move(db, booking, old, new, actor_id=actor_id, now=now)


def announce_move(
    db: Db,
    booking: Booking,
    old: Session,
    new: Session,
    *,
    actor_id: uuid.UUID | None,
    now: datetime,
) -> None:
    """A booking now at ``new``'s time (it moved, or its session did): the calendar
    event's next sequence, the reminder re-armed, the history row and the event."""
    booking.updated_at = now
    booking.sequence += 1
    booking.reminded_at = None  # a reminder for the new time, if it is far enough ahead
    _record(
        db,
        booking,
        BookingStatus(booking.status),
        BookingStatus(booking.status),
        actor_id=actor_id,
        reason=f"rescheduled from {old.start_at.isoformat()} to {new.start_at.isoformat()}",
        now=now,
        event=event_row(
            booking,
            new,
            [BookingEvent.RESCHEDULED],
            now=now,
            previous_status=booking.status,
            previous=old,
        ),
    )
    db.flush()


def change_status(
    db: Db,
    booking_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    status: BookingStatus | None,
    payment_status: PaymentStatus | None,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
) -> tuple[Booking, int]:
    """An organiser's status change; cancelling goes through :func:`cancel_booking`.

    ``payment_status`` may only record a payment taken outside Box Office
    (pending -> paid, e.g. cash at the desk). Returns the booking and any refund.
    """
    owner = Owner(org_id=org_id)
    if payment_status is not None:
        order_id = db.execute(
            select(Booking.order_id).where(Booking.id == booking_id)
        ).scalar_one_or_none()
        if order_id is not None:
            orders.lock_order(db, order_id)  # before the booking: see services.orders
        booking = get_booking(db, booking_id, owner, lock=True)
        if booking.status not in (BookingStatus.PENDING, BookingStatus.CONFIRMED):
            raise Conflict(
                f"A {booking.status} booking cannot be marked paid.",
                {"status": booking.status},
            )
        if (booking.payment_status, payment_status) != (PaymentStatus.PENDING, PaymentStatus.PAID):
            raise Conflict(
                f"paymentStatus cannot change from {booking.payment_status} "
                f"to {payment_status.value} by hand.",
                {"from": booking.payment_status, "to": payment_status.value},
            )
        if booking.order_id is not None and orders.pay_at_desk(db, booking.order_id, now=now):
            # The whole order is paid at the desk: its other bookings are confirmed too,
            # and an online payment that still arrives goes back.
            for other_id in orders.pending_bookings(db, booking.order_id):
                if other_id != booking.id:
                    other = get_booking(db, other_id, owner, lock=True)
                    confirm_paid(db, other, actor_id=actor_id, reason=reason, now=now)
        if booking.status == BookingStatus.PENDING and status in (None, BookingStatus.CONFIRMED):
            # paid is what a pending booking waited for
            confirm_paid(db, booking, actor_id=actor_id, reason=reason, now=now)
            return booking, 0
        booking.payment_status = PaymentStatus.PAID.value
        booking.hold_expires_at = None
        booking.updated_at = now
    if status is None:
        return get_booking(db, booking_id, owner), 0
    if status is BookingStatus.CANCELLED:
        return cancel_booking(
            db, booking_id, owner, actor_id=actor_id, reason=reason, by_organiser=True, now=now
        )
    booking = get_booking(db, booking_id, owner, lock=True)
    session = _session_of(booking)
    check_transition(BookingStatus(booking.status), status, starts_at=session.start_at, now=now)
    _set_status(
        db,
        booking,
        status,
        actor_id=actor_id,
        reason=reason,
        now=now,
        session=session,
        events=[e for e in [_STATUS_EVENTS.get(status)] if e is not None],
    )
    db.flush()
    return booking, 0


def confirm_paid(
    db: Db,
    booking: Booking,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
    events: Sequence[BookingEvent] = (BookingEvent.CONFIRMED,),
) -> None:
    """A pending booking's payment has arrived: confirmed and paid, its hold over."""
    session = _session_of(booking)
    check_transition(
        BookingStatus(booking.status), BookingStatus.CONFIRMED, starts_at=session.start_at, now=now
    )
    _confirm(
        db, booking, session, actor_id=actor_id, reason=reason, now=now, events=events, paid=True
    )


def confirm_offer(db: Db, booking: Booking, *, actor_id: uuid.UUID | None, now: datetime) -> None:
    """A seat offered from the waitlist, taken without an online payment: confirmed
    (a priced one is paid at the venue, as any booking there)."""
    session = _session_of(booking)
    check_transition(
        BookingStatus(booking.status), BookingStatus.CONFIRMED, starts_at=session.start_at, now=now
    )
    booking.hold_expires_at = None
    _set_status(
        db,
        booking,
        BookingStatus.CONFIRMED,
        actor_id=actor_id,
        reason="accepted the waitlist offer",
        now=now,
        session=session,
        events=(BookingEvent.CONFIRMED,),
    )
    db.flush()


def place_draft(
    db: Db,
    booking: Booking,
    session: Session,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
) -> None:
    """A draft (a package's credit) now holds the seat the caller took in ``session``:
    confirmed, and announced as a new booking."""
    check_transition(
        BookingStatus(booking.status), BookingStatus.CONFIRMED, starts_at=session.start_at, now=now
    )
    booking.session = session
    _confirm(
        db,
        booking,
        session,
        actor_id=actor_id,
        reason=reason,
        now=now,
        events=(BookingEvent.CREATED, BookingEvent.CONFIRMED),
    )


def revive_paid(db: Db, booking: Booking, *, reason: str, now: datetime) -> None:
    """A booking cancelled for want of payment whose payment came after all, and whose
    seat the caller has taken again: confirmed and paid.

    The one way back from cancelled; only the late-payment path takes it.
    """
    if booking.status != BookingStatus.CANCELLED:
        raise Conflict(f"A {booking.status} booking cannot be revived.")
    booking.cancelled_at = None
    booking.refunded_minor = 0
    _confirm(
        db,
        booking,
        _session_of(booking),
        paid=True,
        actor_id=None,
        reason=reason,
        now=now,
        events=(BookingEvent.CONFIRMED, BookingEvent.PAYMENT_SUCCEEDED),
    )


def _confirm(
    db: Db,
    booking: Booking,
    session: Session,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
    events: Sequence[BookingEvent],
    paid: bool = False,
) -> None:
    """Confirmed (and ``paid``), no longer held, with its history row and its outbox
    event."""
    if paid:
        booking.payment_status = PaymentStatus.PAID.value
    booking.hold_expires_at = None
    _set_status(
        db,
        booking,
        BookingStatus.CONFIRMED,
        actor_id=actor_id,
        reason=reason,
        now=now,
        session=session,
        events=events,
    )
    db.flush()


_STATUS_EVENTS = {
    BookingStatus.CONFIRMED: BookingEvent.CONFIRMED,
    BookingStatus.COMPLETED: BookingEvent.COMPLETED,
    BookingStatus.NO_SHOW: BookingEvent.NO_SHOW,
}


def _session_of(booking: Booking) -> Session:
    if booking.session is None:
        raise Conflict("This booking has not been scheduled yet.")
    return booking.session


def take_seat(db: Db, session: Session, *, now: datetime, enrolled: bool = False) -> None:
    """Take one seat in ``session`` or raise; the conditional UPDATE is the lock.

    ``enrolled``: a seat of a course enrolment, which needs no drop-in opening."""
    room = session.room
    if not is_bookable(session, room=room, now=now, enrolled=enrolled):
        _refuse(session, room, now, enrolled=enrolled)
    if session.kind == SessionKind.TIMESLOT and room and busy_timeslots(db, room.id, [session]):
        raise SlotUnavailable(
            "The room is taken at this time (its calendar).", {"timeslotId": str(session.id)}
        )
    if not try_take_seat(db, session, enrolled=enrolled):
        current = db.get(Session, session.id, populate_existing=True)
        if current is None:
            raise SlotUnavailable("This session no longer exists.", _ids(session))
        _refuse(current, room, now, enrolled=enrolled)


def _ids(session: Session) -> dict[str, str]:
    key = "timeslotId" if session.kind == SessionKind.TIMESLOT else "sessionId"
    return {key: str(session.id)}


def _refuse(session: Session, room: Room | None, now: datetime, *, enrolled: bool) -> NoReturn:
    details = _ids(session)
    what = "timeslot" if session.kind == SessionKind.TIMESLOT else "session"
    if room is not None and not room.is_active:
        raise SlotUnavailable("This room is not taking bookings.", details)
    if session.kind == SessionKind.COURSE and not (enrolled or session.is_open):
        raise SlotUnavailable(
            "This session is part of a course and takes no single bookings; enrol in the "
            "course instead.",
            details | {"courseId": str(session.course_id)},
        )
    if session.status != "scheduled" or not (enrolled or session.is_open):
        raise SlotUnavailable(f"This {what} is not open for booking.", details)
    if session.visibility != "public":
        raise SlotUnavailable(f"This {what} is not open for booking.", details)
    if session.start_at <= now:
        raise SlotUnavailable(f"This {what} has already started.", details)
    raise SlotFull(
        f"This {what} is fully booked.",
        {**details, "maxBookings": session.max_participants},
    )


def try_take_seat(db: Db, session: Session, *, enrolled: bool = False) -> bool:
    """Take one seat in an open, scheduled session if one is left; the UPDATE is the lock."""
    stmt = _TAKE_ENROLLED_SEAT if enrolled else _TAKE_SEAT
    count = db.execute(stmt, {"session_id": session.id}).scalar_one_or_none()
    if count is None:
        return False
    set_committed_value(session, "booked_count", count)
    return True


def release_seat(db: Db, session: Session) -> None:
    """Give a seat back (see ``_RELEASE_SEAT`` for what happens to an empty appointment)."""
    count, status = db.execute(_RELEASE_SEAT, {"session_id": session.id}).one()
    set_committed_value(session, "booked_count", count)
    set_committed_value(session, "status", status)


def _set_status(
    db: Db,
    booking: Booking,
    status: BookingStatus,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
    session: Session | None = None,
    events: Sequence[BookingEvent] = (),
    refund_minor: int = 0,
) -> None:
    """Change the status, with its history row and (if ``events``) its outbox event."""
    previous = BookingStatus(booking.status)
    booking.status = status.value
    booking.updated_at = now
    row = None
    if events and session is not None:
        row = event_row(
            booking,
            session,
            list(events),
            now=now,
            previous_status=previous.value,
            refund_minor=refund_minor,
        )
    _record(db, booking, previous, status, actor_id=actor_id, reason=reason, now=now, event=row)


def _record(
    db: Db,
    booking: Booking,
    previous: BookingStatus | None,
    status: BookingStatus,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
    event: dict[str, Any] | None = None,
) -> None:
    """The history row of a change and, with ``event``, its outbox row.

    On PostgreSQL both go in one statement (a data-modifying WITH), saving the
    booking path a round trip; SQLite runs in-process, two statements cost nothing.
    """
    history = {
        "org_id": booking.org_id,
        "booking_id": booking.id,
        "from_status": previous.value if previous else None,
        "to_status": status.value,
        "actor_id": actor_id,
        "reason": reason,
        "at": now,
    }
    if event is None:
        db.execute(_INSERT_STATUS_CHANGE, history)
    elif db.get_bind().dialect.name == "postgresql":
        db.execute(
            _INSERT_STATUS_CHANGE_AND_EVENT,
            {f"h_{k}": v for k, v in history.items()} | {f"e_{k}": v for k, v in event.items()},
        )
    else:
        db.execute(_INSERT_STATUS_CHANGE, history)
        db.execute(_INSERT_EVENT, event)
