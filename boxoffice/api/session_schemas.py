"""Bodies of the group-session API: workshops, courses, enrolments and waitlists."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from boxoffice.api.schemas import BookingOut, In, Instant, Out, PaymentOut
from boxoffice.db.models import Booking, Course, Session, WaitlistEntry
from boxoffice.domain.money import to_major

Title = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Reason = Annotated[str, StringConstraints(max_length=500)]
Seats = Annotated[int, Field(ge=1, le=10_000)]
Price = Annotated[float, Field(ge=0, le=1_000_000)]
SessionStatusName = Literal["draft", "scheduled", "in_progress", "completed", "canceled"]
Visibility = Literal["public", "private"]


class SessionIn(In):
    title: Title
    description: Description = ""
    start_at: Instant
    end_at: Instant
    max_participants: Seats
    price: Price = 0
    visibility: Visibility = "public"
    status: Literal["draft", "scheduled"] = "scheduled"
    service_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    waitlist_enabled: bool = False
    track_attendance: bool = Field(
        default=True, description="Confirmed attendees who never join become no-shows"
    )


class SessionPatch(In):
    """The fields to change; moving a session with attendees tells each of them."""

    title: Title | None = None
    description: Description | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    max_participants: Seats | None = None
    price: Price | None = None
    visibility: Visibility | None = None
    provider_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    waitlist_enabled: bool | None = None
    track_attendance: bool | None = None


class SessionStatusIn(In):
    status: SessionStatusName
    reason: Reason = ""


class SessionOut(Out):
    id: uuid.UUID
    kind: str
    title: str | None
    description: str
    status: SessionStatusName
    visibility: Visibility
    start_at: datetime
    end_at: datetime
    actual_start_at: datetime | None
    actual_end_at: datetime | None
    max_participants: int
    booked_count: int
    available_spots: int
    price: float
    currency: str
    service_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    room_id: uuid.UUID | None
    course_id: uuid.UUID | None
    sequence_no: int | None
    waitlist_enabled: bool
    track_attendance: bool
    open_for_single_bookings: bool

    @classmethod
    def of(cls, session: Session, currency: str) -> SessionOut:
        return cls(
            id=session.id,
            kind=session.kind,
            title=session.title,
            description=session.description,
            status=session.status,  # type: ignore[arg-type]
            visibility=session.visibility,  # type: ignore[arg-type]
            start_at=session.start_at,
            end_at=session.end_at,
            actual_start_at=session.actual_start_at,
            actual_end_at=session.actual_end_at,
            max_participants=session.max_participants,
            booked_count=session.booked_count,
            available_spots=max(session.max_participants - session.booked_count, 0),
            price=to_major(session.price_minor, currency),
            currency=currency,
            service_id=session.service_id,
            provider_id=session.provider_id,
            room_id=session.room_id,
            course_id=session.course_id,
            sequence_no=session.sequence_no,
            waitlist_enabled=session.waitlist_enabled,
            track_attendance=session.track_attendance,
            open_for_single_bookings=session.is_open,
        )


class AttendeeOut(Out):
    booking_id: uuid.UUID
    status: str
    payment_status: str
    user_id: uuid.UUID | None
    name: str | None
    email: str | None
    order_id: uuid.UUID | None

    @classmethod
    def of(cls, booking: Booking) -> AttendeeOut:
        return cls(
            booking_id=booking.id,
            status=booking.status,
            payment_status=booking.payment_status,
            user_id=booking.user_id,
            name=booking.customer_name,
            email=booking.customer_email,
            order_id=booking.order_id,
        )


class SessionDetailOut(SessionOut):
    attendees: list[AttendeeOut] = []


class SessionListOut(Out):
    sessions: list[SessionOut]


class SessionStatusOut(Out):
    session: SessionOut
    cancelled_bookings: int


class WeeklySchedule(In):
    first_start_at: Instant
    every_weeks: Annotated[int, Field(ge=1, le=52)] = 1
    count: Annotated[int, Field(ge=2, le=52)]


class CourseIn(In):
    """A course and its sessions: a weekly ``schedule`` (the same local time in the
    course's time zone, across daylight-saving changes) or the ``starts`` one by one."""

    title: Title
    description: Description = ""
    service_id: uuid.UUID | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    max_participants: Seats
    price: Price = 0
    drop_in_price: Price | None = Field(
        default=None, description="Open each session to single bookings at this price"
    )
    visibility: Visibility = "public"
    status: Literal["draft", "scheduled"] = "scheduled"
    provider_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    waitlist_enabled: bool = False
    duration_min: Annotated[int, Field(ge=5, le=24 * 60)]
    schedule: WeeklySchedule | None = None
    starts: Annotated[list[Instant], Field(min_length=1, max_length=52)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> CourseIn:
        if (self.schedule is None) == (self.starts is None):
            raise ValueError("give either schedule or starts")
        return self


class CourseStatusIn(In):
    status: Literal["scheduled", "canceled"]
    reason: Reason = ""


class CourseOut(Out):
    id: uuid.UUID
    title: str
    description: str
    timezone: str
    status: str
    visibility: Visibility
    max_participants: int
    available_spots: int
    price: float
    currency: str
    service_id: uuid.UUID | None
    sessions: list[SessionOut]

    @classmethod
    def of(cls, course: Course, sessions: list[Session]) -> CourseOut:
        live = [s for s in sessions if s.status != "canceled"]
        return cls(
            id=course.id,
            title=course.title,
            description=course.description,
            timezone=course.timezone,
            status=course.status,
            visibility=course.visibility,  # type: ignore[arg-type]
            max_participants=course.max_participants,
            available_spots=min(
                (max(s.max_participants - s.booked_count, 0) for s in live), default=0
            ),
            price=to_major(course.price_minor, course.currency),
            currency=course.currency,
            service_id=course.service_id,
            sessions=[SessionOut.of(s, course.currency) for s in sessions],
        )


class EnrolIn(In):
    notes: Annotated[str, StringConstraints(max_length=2000)] = ""


class EnrolmentOut(Out):
    course_id: uuid.UUID
    order_id: uuid.UUID | None
    bookings: list[BookingOut]
    payment: PaymentOut | None = None


class WaitlistEntryOut(Out):
    id: uuid.UUID
    session_id: uuid.UUID
    status: str
    position: int | None = Field(description="1 for the first one waiting")
    booking_id: uuid.UUID | None
    offered_until: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, entry: WaitlistEntry, position: int | None) -> WaitlistEntryOut:
        return cls(
            id=entry.id,
            session_id=entry.session_id,
            status=entry.status,
            position=position,
            booking_id=entry.booking_id,
            offered_until=entry.offered_until,
            created_at=entry.created_at,
        )


class WaitlistOut(Out):
    entries: list[WaitlistEntryOut]
