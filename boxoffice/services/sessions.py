"""Group sessions: the workshops and course sessions an organiser creates, schedules,
runs and cancels. Customers take seats in them through ``services.bookings``.

Cancelling a session cancels each of its bookings as an organiser's cancellation
(everything paid goes back, each attendee is told through the outbox).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from boxoffice.db.locking import for_update
from boxoffice.db.models import Booking, Provider, Room, Service, Session, WaitlistEntry
from boxoffice.db.session import Db
from boxoffice.domain.bookings import SEAT_HOLDING, BookingStatus
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.domain.sessions import (
    GROUP_KINDS,
    LIVE,
    SessionKind,
    SessionStatus,
    check_session_transition,
)
from boxoffice.services import bookings, jobs
from boxoffice.services.bookings import Owner

MAX_PARTICIPANTS = 10_000
MAX_LENGTH = timedelta(days=7)
MAX_LIST_DAYS = 62
_SEATED = tuple(s.value for s in SEAT_HOLDING)
_LIVE_BOOKINGS = (BookingStatus.PENDING.value, BookingStatus.CONFIRMED.value)


@dataclass(frozen=True)
class SessionFilter:
    starts_from: datetime
    starts_to: datetime
    org_id: uuid.UUID | None = None
    service_id: uuid.UUID | None = None
    kind: str | None = None
    status: str | None = None
    public_only: bool = False


def get_session(db: Db, session_id: uuid.UUID, *, org_id: uuid.UUID | None = None) -> Session:
    """A workshop or course session; NotFound for another organisation's."""
    return bookings.get_group_session(db, session_id, org_id=org_id)


def _lock(db: Db, session_id: uuid.UUID, org_id: uuid.UUID) -> Session:
    db.execute(for_update(db, select(Session.id).where(Session.id == session_id)))
    session = db.get(Session, session_id, populate_existing=True)
    if session is None or session.kind not in GROUP_KINDS or session.org_id != org_id:
        raise NotFound("Session not found.", {"sessionId": str(session_id)})
    return session


def list_sessions(db: Db, filters: SessionFilter) -> list[Session]:
    """Group sessions starting in the window, in time order."""
    if filters.starts_to <= filters.starts_from:
        raise InvalidInput("'to' must be after 'from'.")
    if filters.starts_to - filters.starts_from > timedelta(days=MAX_LIST_DAYS):
        raise InvalidInput(f"The window can be at most {MAX_LIST_DAYS} days.")
    stmt = (
        select(Session)
        .options(joinedload(Session.room), joinedload(Session.provider))
        .where(
            Session.kind.in_([k.value for k in GROUP_KINDS]),
            Session.start_at >= filters.starts_from,
            Session.start_at < filters.starts_to,
        )
        .order_by(Session.start_at, Session.id)
    )
    if filters.org_id is not None:
        stmt = stmt.where(Session.org_id == filters.org_id)
    if filters.service_id is not None:
        stmt = stmt.where(Session.service_id == filters.service_id)
    if filters.kind is not None:
        stmt = stmt.where(Session.kind == SessionKind(filters.kind).value)
    if filters.status is not None:
        stmt = stmt.where(Session.status == SessionStatus(filters.status).value)
    if filters.public_only:
        stmt = stmt.where(
            Session.visibility == "public",
            Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.IN_PROGRESS.value]),
        )
    return list(db.execute(stmt).scalars())


def attendees(db: Db, session_id: uuid.UUID) -> list[Booking]:
    """The bookings holding a seat in the session, in booking order."""
    return list(
        db.execute(
            select(Booking)
            .where(Booking.session_id == session_id, Booking.status.in_(_SEATED))
            .order_by(Booking.created_at, Booking.id)
        ).scalars()
    )


def create_session(
    db: Db,
    *,
    org_id: uuid.UUID,
    kind: SessionKind = SessionKind.WORKSHOP,
    now: datetime,
    **values: Any,
) -> Session:
    """A new workshop (or, from ``services.courses``, a course session)."""
    values = {
        "status": SessionStatus.SCHEDULED.value,
        "visibility": "public",
        "description": "",
        "price_minor": 0,
        "waitlist_enabled": False,
        "track_attendance": True,
    } | values
    if values["status"] not in (SessionStatus.DRAFT, SessionStatus.SCHEDULED):
        raise InvalidInput("A new session is draft or scheduled.", {"status": values["status"]})
    session = Session(
        id=uuid.uuid4(),
        org_id=org_id,
        kind=kind.value,
        booked_count=0,
        is_open=kind == SessionKind.WORKSHOP,
        created_at=now,
        updated_at=now,
    )
    _apply(db, session, values, now=now, new=True)
    db.add(session)
    db.flush()
    return session


def update_session(
    db: Db,
    session_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    now: datetime,
    **values: Any,
) -> Session:
    """Change a session's details; moving one with attendees tells each of them."""
    session = _lock(db, session_id, org_id)
    if SessionStatus(session.status) not in LIVE:
        raise Conflict(f"A {session.status} session cannot be changed.")
    old_start, old_end = session.start_at, session.end_at
    _apply(db, session, values, now=now, new=False)
    db.flush()
    if (session.start_at, session.end_at) != (old_start, old_end):
        _announce_move(db, session, old_start, old_end, actor_id=actor_id, now=now)
    return session


def _apply(db: Db, session: Session, values: dict[str, Any], *, now: datetime, new: bool) -> None:
    unknown = set(values) - {
        "title", "description", "start_at", "end_at", "max_participants", "price_minor",
        "visibility", "provider_id", "room_id", "service_id", "waitlist_enabled",
        "track_attendance", "status", "is_open", "course_id", "sequence_no",
    }  # fmt: skip
    if unknown:
        raise TypeError(f"unknown session fields: {sorted(unknown)}")
    if "title" in values and not str(values["title"]).strip():
        raise InvalidInput("title cannot be empty.")
    for name, value in values.items():
        setattr(session, name, value)
    if session.end_at <= session.start_at:
        raise InvalidInput("endAt must be after startAt.")
    if session.end_at - session.start_at > MAX_LENGTH:
        raise InvalidInput("A session can last at most 7 days.")
    moved = new or "start_at" in values
    if moved and session.start_at <= now:
        raise InvalidInput(
            "A session must start in the future.", {"startAt": str(session.start_at)}
        )
    if not 1 <= session.max_participants <= MAX_PARTICIPANTS:
        raise InvalidInput(f"maxParticipants must be between 1 and {MAX_PARTICIPANTS}.")
    if session.max_participants < session.booked_count:
        raise Conflict(
            f"{session.booked_count} seats are taken; maxParticipants cannot be lower.",
            {"bookedCount": session.booked_count},
        )
    if session.price_minor < 0:
        raise InvalidInput("price cannot be negative.")
    if session.visibility not in ("public", "private"):
        raise InvalidInput("visibility is public or private.")
    if session.service_id is not None:
        service = db.get(Service, session.service_id)
        if service is None or service.org_id != session.org_id:
            raise NotFound("Service not found.", {"serviceId": str(session.service_id)})
        if service.kind in ("package", "bundle"):
            raise InvalidInput("A session cannot be of a package or bundle service.")
    if session.provider_id is not None:
        provider = db.get(Provider, session.provider_id)
        if provider is None or provider.org_id != session.org_id:
            raise NotFound("Provider not found.", {"providerId": str(session.provider_id)})
    if session.room_id is not None:
        room = db.get(Room, session.room_id)
        if room is None or room.org_id != session.org_id:
            raise NotFound("Room not found.", {"roomId": str(session.room_id)})
        if session.max_participants > room.capacity:
            raise InvalidInput(
                f"The room holds {room.capacity}; maxParticipants cannot be more.",
                {"capacity": room.capacity},
            )
    _check_free(db, session)


def _check_free(db: Db, session: Session) -> None:
    """The provider and the room must have nothing else then (PostgreSQL's exclusion
    constraints refuse a concurrent overlap too)."""
    for column, owner in ((Session.provider_id, "provider"), (Session.room_id, "room")):
        owner_id = getattr(session, column.key)
        if owner_id is None:
            continue
        clash = db.execute(
            select(Session.id)
            .where(
                column == owner_id,
                Session.id != session.id,
                Session.status != SessionStatus.CANCELED.value,
                Session.start_at < session.end_at,
                Session.end_at > session.start_at,
            )
            .limit(1)
        ).scalar_one_or_none()
        if clash is not None:
            raise Conflict(
                f"The {owner} has another session at this time.",
                {f"{owner}Id": str(owner_id), "sessionId": str(clash)},
            )


def _announce_move(
    db: Db,
    session: Session,
    old_start: datetime,
    old_end: datetime,
    *,
    actor_id: uuid.UUID | None,
    now: datetime,
) -> None:
    previous = Session(start_at=old_start, end_at=old_end)  # for the event only; never added
    for booking in _live_bookings(db, session.id):
        bookings.announce_move(db, booking, previous, session, actor_id=actor_id, now=now)


def _live_bookings(db: Db, session_id: uuid.UUID) -> list[Booking]:
    ids = select(Booking.id).where(
        Booking.session_id == session_id, Booking.status.in_(_LIVE_BOOKINGS)
    )
    db.execute(for_update(db, ids.order_by(Booking.id)))
    return list(
        db.execute(
            select(Booking)
            .where(Booking.id.in_(ids))
            .order_by(Booking.id)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def change_status(
    db: Db,
    session_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    status: SessionStatus,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
) -> tuple[Session, int]:
    """Drive a session through its lifecycle; returns it and how many bookings a
    cancellation cancelled."""
    session = _lock(db, session_id, org_id)
    check_session_transition(SessionStatus(session.status), status)
    cancelled = 0
    if status is SessionStatus.IN_PROGRESS:
        session.actual_start_at = now
    elif status is SessionStatus.COMPLETED:
        session.actual_end_at = now
    elif status is SessionStatus.CANCELED:
        cancelled = _cancel_bookings(db, session, actor_id=actor_id, reason=reason, now=now)
    session.status = status.value
    session.updated_at = now
    db.flush()
    if status is SessionStatus.COMPLETED:
        jobs.settle_bookings(db, [session.id], now=now)
    return session, cancelled


def _cancel_bookings(
    db: Db, session: Session, *, actor_id: uuid.UUID | None, reason: str, now: datetime
) -> int:
    """Cancel every live booking as the organiser's cancellation (paid is refunded in
    full) and close the waitlist."""
    why = f"session canceled: {reason}" if reason else "session canceled"
    ids = [b.id for b in _live_bookings(db, session.id)]
    for booking_id in ids:
        bookings.cancel_booking(
            db,
            booking_id,
            Owner(org_id=session.org_id),
            actor_id=actor_id,
            reason=why,
            by_organiser=True,
            now=now,
        )
    for entry in db.execute(
        select(WaitlistEntry).where(
            WaitlistEntry.session_id == session.id,
            WaitlistEntry.status.in_(("waiting", "offered")),
        )
    ).scalars():
        entry.status = "cancelled"
        entry.updated_at = now
    return len(ids)
