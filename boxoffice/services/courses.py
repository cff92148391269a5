"""Courses: N sessions enrolled in, and paid for, all at once.

An enrolment takes a seat in every session of the course in one transaction, or
none: each seat is the same conditional UPDATE a single booking uses, taken in
session id order (so two enrolments cannot deadlock), and the first full session
rolls the whole request back. One order carries the course's price; the bookings
are priced 0 each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from boxoffice.db.models import Booking, Course, Order, Service, Session
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.domain.payments import needs_payment
from boxoffice.domain.sessions import SessionKind, SessionStatus
from boxoffice.services import bookings, idempotency, orders, sessions
from boxoffice.services.appointments import Recurrence, occurrences
from boxoffice.services.organizations import get_organization

MAX_SESSIONS = 52
_LIVE = (BookingStatus.PENDING.value, BookingStatus.CONFIRMED.value)


@dataclass(frozen=True)
class Dates:
    """A course's dates: the same local time every ``every_weeks`` weeks, ``count``
    times (from ``first_start_at``), or the ``starts`` given one by one."""

    duration: timedelta
    first_start_at: datetime | None = None
    every_weeks: int = 1
    count: int = 0
    starts: tuple[datetime, ...] = ()

    def expand(self, timezone: str) -> list[datetime]:
        if self.starts:
            if self.first_start_at is not None:
                raise InvalidInput("Give either the sessions' starts or a weekly schedule.")
            return sorted(self.starts)
        if self.first_start_at is None:
            raise InvalidInput("A course needs its sessions: starts or a weekly schedule.")
        return occurrences(
            self.first_start_at,
            timezone,
            Recurrence(every_weeks=self.every_weeks, count=self.count),
        )


@dataclass(frozen=True)
class Enrolment:
    course: Course
    bookings: list[Booking]
    order: Order | None


def get_course(db: Db, course_id: uuid.UUID, *, org_id: uuid.UUID | None = None) -> Course:
    course = db.get(Course, course_id)
    if course is None or (org_id is not None and course.org_id != org_id):
        raise NotFound("Course not found.", {"courseId": str(course_id)})
    return course


def course_sessions(db: Db, course_id: uuid.UUID) -> list[Session]:
    return list(
        db.execute(
            select(Session).where(Session.course_id == course_id).order_by(Session.sequence_no)
        ).scalars()
    )


def create_course(
    db: Db,
    *,
    org_id: uuid.UUID,
    dates: Dates,
    now: datetime,
    title: str,
    max_participants: int,
    price_minor: int = 0,
    timezone: str | None = None,
    service_id: uuid.UUID | None = None,
    description: str = "",
    visibility: str = "public",
    status: str = "scheduled",
    drop_in_price_minor: int | None = None,
    **session_values: Any,
) -> tuple[Course, list[Session]]:
    """A course and its sessions, numbered 1..N in time order. ``drop_in_price_minor``
    opens each session to single bookings at that price (None: enrolment only)."""
    org = get_organization(db, org_id)
    zone = timezone or org.timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput("Unknown time zone.", {"timezone": zone}) from exc
    if price_minor < 0 or (drop_in_price_minor or 0) < 0:
        raise InvalidInput("Prices cannot be negative.")
    if status not in (SessionStatus.DRAFT, SessionStatus.SCHEDULED):
        raise InvalidInput("A new course is draft or scheduled.", {"status": status})
    if service_id is not None:
        service = db.get(Service, service_id)
        if service is None or service.org_id != org_id:
            raise NotFound("Service not found.", {"serviceId": str(service_id)})
    starts = dates.expand(zone)
    if not 1 <= len(starts) <= MAX_SESSIONS:
        raise InvalidInput(f"A course has 1 to {MAX_SESSIONS} sessions.")
    if dates.duration <= timedelta(0):
        raise InvalidInput("durationMin must be positive.")
    course = Course(
        id=uuid.uuid4(),
        org_id=org_id,
        service_id=service_id,
        title=title,
        description=description,
        timezone=zone,
        max_participants=max_participants,
        price_minor=price_minor,
        currency=org.currency,
        status=status,
        visibility=visibility,
        created_at=now,
        updated_at=now,
    )
    db.add(course)
    db.flush()
    created = [
        sessions.create_session(
            db,
            org_id=org_id,
            kind=SessionKind.COURSE,
            now=now,
            title=f"{title} ({number}/{len(starts)})",
            description=description,
            start_at=start,
            end_at=start + dates.duration,
            max_participants=max_participants,
            price_minor=drop_in_price_minor or 0,
            is_open=drop_in_price_minor is not None,
            visibility=visibility,
            status=status,
            service_id=service_id,
            course_id=course.id,
            sequence_no=number,
            **session_values,
        )
        for number, start in enumerate(starts, start=1)
    ]
    return course, created


def enrol(
    db: Db,
    course_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    notes: str = "",
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Enrolment, bool]:
    """Enrol a customer: a seat in every session of the course, or nothing.

    Returns the enrolment and whether it is new (a retry with the same idempotency key
    returns the first one)."""
    scope = f"enrolment:{user_id}"
    if idempotency_key is not None:
        first = idempotency.claim(
            db,
            scope=scope,
            key=idempotency_key,
            request_hash=idempotency.fingerprint({"courseId": course_id, "notes": notes}),
            now=now,
        )
        if first is not None:
            return _enrolment_of(db, first), False
    course = get_course(db, course_id)
    parts = course_sessions(db, course.id)
    if course.status != SessionStatus.SCHEDULED or course.visibility != "public":
        raise Conflict("This course is not open for enrolment.", {"courseId": str(course.id)})
    if not parts or parts[0].start_at <= now:
        raise Conflict("This course has already started.", {"courseId": str(course.id)})
    if _enrolled(db, course.id, user_id):
        raise Conflict("You are already enrolled in this course.", {"courseId": str(course.id)})
    for session in sorted(parts, key=lambda s: s.id.bytes):  # one lock order for all
        bookings.take_seat(db, session, now=now, enrolled=True)
    org = get_organization(db, course.org_id)
    order = None
    if needs_payment(course.price_minor, payments_enabled=org.payments_enabled):
        order = orders.open_order(
            db, org, total_minor=course.price_minor, currency=course.currency, user_id=user_id,
            now=now,
        )  # fmt: skip
    made = [
        bookings.add_booking(
            db,
            session,
            currency=course.currency,
            user_id=user_id,
            actor_id=user_id,
            notes=notes,
            now=now,
            order=order,
            price_minor=0,
            charge_minor=course.price_minor,
            reason="enrolled",
        )
        for session in parts
    ]
    if idempotency_key is not None:
        idempotency.complete(
            db, scope=scope, key=idempotency_key, resource_type="enrolment", resource_id=made[0].id
        )
    return Enrolment(course, made, order), True


def _enrolled(db: Db, course_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return (
        db.execute(
            select(Booking.id)
            .join(Booking.session)
            .where(
                Session.course_id == course_id,
                Booking.user_id == user_id,
                Booking.status.in_(_LIVE),
                Booking.price_minor == 0,
            )
            .limit(1)
        ).scalar_one_or_none()
        is not None
    )


def _enrolment_of(db: Db, first_booking_id: uuid.UUID) -> Enrolment:
    first = db.get(Booking, first_booking_id)
    assert first is not None and first.session is not None and first.session.course_id
    course = get_course(db, first.session.course_id)
    made = list(
        db.execute(
            select(Booking)
            .join(Booking.session)
            .where(
                Session.course_id == course.id,
                Booking.user_id == first.user_id,
                Booking.created_at == first.created_at,
            )
            .order_by(Session.sequence_no)
        ).scalars()
    )
    order = db.get(Order, first.order_id) if first.order_id else None
    return Enrolment(course, made, order)


def cancel_course(
    db: Db, course_id: uuid.UUID, *, org_id: uuid.UUID, actor_id: uuid.UUID | None, reason: str,
    now: datetime,
) -> tuple[Course, int]:  # fmt: skip
    """Cancel a course: every session that has not ended is cancelled, and with it its
    bookings (refunded in full, each attendee told)."""
    course = get_course(db, course_id, org_id=org_id)
    if course.status == SessionStatus.CANCELED:
        raise Conflict("The course is already cancelled.")
    cancelled = 0
    for session in course_sessions(db, course.id):
        if session.status in (SessionStatus.DRAFT, SessionStatus.SCHEDULED):
            _, n = sessions.change_status(
                db,
                session.id,
                org_id=org_id,
                status=SessionStatus.CANCELED,
                actor_id=actor_id,
                reason=reason,
                now=now,
            )
            cancelled += n
    course.status = SessionStatus.CANCELED.value
    course.updated_at = now
    db.flush()
    return course, cancelled


def publish_course(db: Db, course_id: uuid.UUID, *, org_id: uuid.UUID, now: datetime) -> Course:
    """A draft course and its sessions scheduled: open for enrolment."""
    course = get_course(db, course_id, org_id=org_id)
    if course.status != SessionStatus.DRAFT:
        raise Conflict(f"A {course.status} course cannot be published.")
    for session in course_sessions(db, course.id):
        sessions.change_status(
            db,
            session.id,
            org_id=org_id,
            status=SessionStatus.SCHEDULED,
            actor_id=None,
            reason="course published",
            now=now,
        )
    course.status = SessionStatus.SCHEDULED.value
    course.updated_at = now
    db.flush()
    return course
