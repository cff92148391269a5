"""Attendance: who was in a session, when, and for how long.

A participant is a booking of the session. Each stay is one ``Attendance`` row,
opened by a join and closed by a leave (``duration_s = left_at - joined_at``);
someone who drops out and comes back has several stays, but never two open at
once. A check-in (the organiser saw them at the door) is a row of its own, with
no leave: it says "was there", not for how long. A booking attended if it has
any row, stay or check-in.

Writers lock the booking row first, so two deliveries of the same news, or a join
racing the worker's no-show decision, are applied one after the other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from sqlalchemy import delete, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Attendance, Booking, Session, User
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.domain.sessions import SessionStatus
from boxoffice.services.bookings import change_status

log = logging.getLogger("boxoffice.attendance")

# Bookings whose participant may be in the session: the seat is theirs and paid for
# (or free); completed and no-show ones too, so an organiser can still correct them.
ATTENDING = frozenset({BookingStatus.CONFIRMED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW})
# How far ahead of the server's clock a reported time may be (the client's clock).
MAX_CLOCK_SKEW = timedelta(minutes=5)


class Source(StrEnum):
    API = "api"  # an organiser (or their door system) through the API
    LIVEKIT = "livekit"  # the video room's webhooks
    CHECK_IN = "check_in"  # an organiser's check-in: present, duration unknown


class Action(StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    CHECK_IN = "check_in"


Outcome = Literal[
    "joined",  # a stay was opened
    "left",  # the open stay was closed
    "checked_in",
    "already_in",  # a join while a stay is open: nothing new
    "already_checked_in",
    "duplicate",  # this external event was applied before
    "not_in",  # a leave with no open stay that began before it
    "rejected",  # the booking cannot attend this session (webhooks only)
]


@dataclass(frozen=True)
class PresenceEvent:
    """A participant joined or left a session's room, as a video service tells it."""

    kind: Literal["join", "leave"]
    session_id: uuid.UUID
    booking_id: uuid.UUID
    at: datetime
    source: Source
    # The service's id of the event: the same event delivered twice is one stay.
    external_id: str | None = None


@dataclass(frozen=True)
class BookingAttendance:
    """One booking's record in one session."""

    booking: Booking
    customer_name: str | None
    customer_email: str | None
    stays: list[Attendance] = field(default_factory=list)
    checked_in_at: datetime | None = None

    @property
    def attended(self) -> bool:
        return bool(self.stays) or self.checked_in_at is not None

    @property
    def is_present(self) -> bool:
        """In the session now: a stay is open."""
        return any(s.left_at is None for s in self.stays)

    @property
    def total_duration_s(self) -> int:
        """Seconds in the session over the closed stays (an open one has no length yet)."""
        return sum(s.duration_s or 0 for s in self.stays)


@dataclass(frozen=True)
class SessionAttendance:
    session: Session
    items: list[BookingAttendance]

    @property
    def attended_count(self) -> int:
        return sum(1 for item in self.items if item.attended)


# --- recording ----------------------------------------------------------------------------


def mark_attendance(
    db: Db,
    *,
    org_id: uuid.UUID,
    session_id: uuid.UUID,
    booking_id: uuid.UUID,
    action: Action,
    at: datetime,
    now: datetime,
) -> tuple[Outcome, BookingAttendance]:
    """An organiser records a join, a leave or a check-in of a booking's participant.

    A leave with no open stay is refused (Conflict): the organiser can see the list.
    """
    at = at.astimezone(UTC)
    if at > now + MAX_CLOCK_SKEW:
        raise InvalidInput("'at' cannot be in the future.", {"at": at.isoformat()})
    session, booking = _participant(db, session_id, booking_id, org_id=org_id)
    outcome: Outcome
    if action is Action.JOIN:
        outcome = _arrive(db, session, booking, at=at, source=Source.API, external_id=None, now=now)
    elif action is Action.LEAVE:
        outcome = _leave(db, session, booking, at=at)
        if outcome == "not_in":
            raise Conflict(
                "This participant is not in the session: there is no open stay to leave.",
                {"bookingId": str(booking.id), "at": at.isoformat()},
            )
    else:
        outcome = _arrive(
            db, session, booking, at=at, source=Source.CHECK_IN, external_id=None, now=now
        )
    db.flush()
    return outcome, booking_attendance(db, session, booking)


def apply_presence_event(db: Db, event: PresenceEvent, *, now: datetime) -> Outcome:
    """Apply a video service's join or leave, once per event id.

    A participant who cannot attend (an unknown or cancelled booking, another
    session's) is "rejected" rather than refused: the service would only retry.
    """
    try:
        session, booking = _participant(db, event.session_id, event.booking_id, org_id=None)
    except (NotFound, Conflict) as exc:
        log.info(
            "attendance event rejected: %s",
            exc.message,
            extra={"sessionId": str(event.session_id), "bookingId": str(event.booking_id)},
        )
        return "rejected"
    if event.kind == "join":
        outcome = _arrive(
            db,
            session,
            booking,
            at=event.at,
            source=event.source,
            external_id=event.external_id,
            now=now,
        )
    else:
        outcome = _leave(db, session, booking, at=event.at)
    db.flush()
    return outcome


def _participant(
    db: Db, session_id: uuid.UUID, booking_id: uuid.UUID, *, org_id: uuid.UUID | None
) -> tuple[Session, Booking]:
    """The session and its booking, the booking row locked; refuse one that cannot attend."""
    session = _session(db, session_id, org_id=org_id)
    stmt = select(Booking).where(Booking.id == booking_id, Booking.org_id == session.org_id)
    booking = (
        db.execute(for_update(db, stmt).execution_options(populate_existing=True))
        .scalars()
        .one_or_none()
    )
    if booking is None:
        raise NotFound("Booking not found.", {"bookingId": str(booking_id)})
    if booking.session_id != session.id:
        raise NotFound(
            "That booking is not for this session.",
            {"bookingId": str(booking_id), "sessionId": str(session_id)},
        )
    if booking.status not in ATTENDING:
        raise Conflict(
            f"A {booking.status} booking cannot attend; only confirmed, completed and "
            "no-show bookings can.",
            {"bookingId": str(booking_id), "status": booking.status},
        )
    return session, booking


def _session(db: Db, session_id: uuid.UUID, *, org_id: uuid.UUID | None) -> Session:
    stmt = select(Session).where(Session.id == session_id)
    if org_id is not None:
        stmt = stmt.where(Session.org_id == org_id)
    session = db.execute(stmt).scalar_one_or_none()
    if session is None:
        raise NotFound("Session not found.", {"sessionId": str(session_id)})
    return session


def _records(db: Db, session: Session, booking: Booking) -> list[Attendance]:
    stmt = (
        select(Attendance)
        .where(Attendance.session_id == session.id, Attendance.booking_id == booking.id)
        .order_by(Attendance.joined_at, Attendance.created_at)
    )
    return list(db.execute(stmt).scalars())


def _open_stay(db: Db, session: Session, booking: Booking) -> Attendance | None:
    stmt = (
        select(Attendance)
        .where(
            Attendance.session_id == session.id,
            Attendance.booking_id == booking.id,
            Attendance.source != Source.CHECK_IN.value,
            Attendance.left_at.is_(None),
        )
        .order_by(Attendance.joined_at.desc())
        .limit(1)
    )
    return db.execute(stmt).scalar_one_or_none()


def _arrive(
    db: Db,
    session: Session,
    booking: Booking,
    *,
    at: datetime,
    source: Source,
    external_id: str | None,
    now: datetime,
) -> Outcome:
    """A join (a stay opens) or a check-in. Caller holds the booking's row lock."""
    if external_id is not None:
        seen = db.execute(select(Attendance.id).where(Attendance.external_id == external_id))
        if seen.first() is not None:
            return "duplicate"
    if source is Source.CHECK_IN:
        if any(r.source == Source.CHECK_IN for r in _records(db, session, booking)):
            return "already_checked_in"
    elif _open_stay(db, session, booking) is not None:
        return "already_in"
    db.add(
        Attendance(
            org_id=session.org_id,
            session_id=session.id,
            booking_id=booking.id,
            source=source.value,
            joined_at=at,
            external_id=external_id,
            created_at=now,
        )
    )
    return "checked_in" if source is Source.CHECK_IN else "joined"


def _leave(db: Db, session: Session, booking: Booking, *, at: datetime) -> Outcome:
    """Close the open stay, if it began at or before ``at``. Caller holds the row lock.

    The time test makes a leave delivered again after the participant rejoined leave
    the new stay alone; a leave that arrives before its join finds nothing to close.
    """
    stay = _open_stay(db, session, booking)
    if stay is None or stay.joined_at > at:
        return "not_in"
    stay.left_at = at
    stay.duration_s = int((at - stay.joined_at).total_seconds())
    return "left"


# --- corrections and outcomes --------------------------------------------------------------


def correct_attendance(
    db: Db,
    *,
    org_id: uuid.UUID,
    session_id: uuid.UUID,
    booking_id: uuid.UUID,
    attended: bool,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
) -> BookingAttendance:
    """An organiser settles whether a participant attended.

    Attended: a check-in is recorded unless some record exists. Not attended: every
    record of the booking in the session is removed (the organiser's word wins over
    the video room's). Once the session has ended the booking's outcome follows:
    completed or no-show, with its history and outbox event.
    """
    session, booking = _participant(db, session_id, booking_id, org_id=org_id)
    if now < session.start_at:
        raise Conflict(
            "Attendance can be corrected once the session has started.",
            {"startsAt": session.start_at.isoformat()},
        )
    if attended:
        if not _records(db, session, booking):
            at = min(now, session.end_at)
            _arrive(db, session, booking, at=at, source=Source.CHECK_IN, external_id=None, now=now)
    else:
        db.execute(
            delete(Attendance).where(
                Attendance.session_id == session.id, Attendance.booking_id == booking.id
            )
        )
    db.flush()
    ended = now >= session.end_at or session.status == SessionStatus.COMPLETED
    target = BookingStatus.COMPLETED if attended else BookingStatus.NO_SHOW
    if ended and booking.status != target:
        booking, _ = change_status(
            db,
            booking.id,
            org_id=booking.org_id,
            status=target,
            payment_status=None,
            actor_id=actor_id,
            reason=reason,
            now=now,
        )
    return booking_attendance(db, session, booking)


def attended_booking_ids(db: Db, booking_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of the bookings with any record (a stay or a check-in) in their session."""
    ids = list(booking_ids)
    if not ids:
        return set()
    stmt = (
        select(Attendance.booking_id)
        .join(
            Booking,
            (Booking.id == Attendance.booking_id) & (Booking.session_id == Attendance.session_id),
        )
        .where(Attendance.booking_id.in_(ids))
        .distinct()
    )
    return set(db.execute(stmt).scalars())


# --- reading ----------------------------------------------------------------------------


def booking_attendance(db: Db, session: Session, booking: Booking) -> BookingAttendance:
    name, email = booking.customer_name, booking.customer_email
    if booking.user_id is not None and (name is None or email is None):
        user = db.get(User, booking.user_id)
        if user is not None:
            name, email = name or user.name, email or user.email
    return _summary(booking, name, email, _records(db, session, booking))


def _summary(
    booking: Booking, name: str | None, email: str | None, records: list[Attendance]
) -> BookingAttendance:
    stays = [r for r in records if r.source != Source.CHECK_IN.value]
    check_ins = [r.joined_at for r in records if r.source == Source.CHECK_IN.value]
    return BookingAttendance(
        booking=booking,
        customer_name=name,
        customer_email=email,
        stays=stays,
        checked_in_at=min(check_ins) if check_ins else None,
    )


def session_attendance(db: Db, *, org_id: uuid.UUID, session_id: uuid.UUID) -> SessionAttendance:
    """Every booking of the session that can attend (or has a record), with its stays."""
    session = _session(db, session_id, org_id=org_id)
    records = list(
        db.execute(
            select(Attendance)
            .where(Attendance.session_id == session.id)
            .order_by(Attendance.joined_at, Attendance.created_at)
        ).scalars()
    )
    with_records = {r.booking_id for r in records}
    rows = db.execute(
        select(Booking, User.name, User.email)
        .outerjoin(User, User.id == Booking.user_id)
        .where(
            Booking.session_id == session.id,
            Booking.status.in_([s.value for s in ATTENDING]) | Booking.id.in_(with_records),
        )
        .order_by(Booking.created_at, Booking.id)
    ).all()
    by_booking: dict[uuid.UUID, list[Attendance]] = {}
    for record in records:
        by_booking.setdefault(record.booking_id, []).append(record)
    items = [
        _summary(
            booking,
            booking.customer_name or name,
            booking.customer_email or email,
            by_booking.get(booking.id, []),
        )
        for booking, name, email in rows
    ]
    return SessionAttendance(session=session, items=items)
