"""Bodies of attendance: stays in a session, check-ins, corrections, course progress.

Durations are whole seconds (``...Seconds``); instants are ISO 8601 in UTC.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from boxoffice.api.schemas import BookingStatusName, In, Instant, Out
from boxoffice.api.session_schemas import SessionStatusName
from boxoffice.db.models import Attendance
from boxoffice.services.attendance import BookingAttendance, Outcome, SessionAttendance
from boxoffice.services.course_progress import CourseProgress, Participant

SourceName = Literal["api", "livekit", "check_in"]


class AttendanceIn(In):
    booking_id: uuid.UUID
    action: Literal["join", "leave", "check_in"]
    at: Instant | None = Field(default=None, description="When it happened; default now")


class AttendanceCorrectionIn(In):
    attended: bool
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class StayOut(Out):
    source: SourceName
    joined_at: datetime
    left_at: datetime | None
    duration_seconds: int | None = Field(description="Set once they have left")

    @classmethod
    def of(cls, row: Attendance) -> StayOut:
        return cls(
            source=row.source,  # type: ignore[arg-type]
            joined_at=row.joined_at,
            left_at=row.left_at,
            duration_seconds=row.duration_s,
        )


class BookingAttendanceOut(Out):
    booking_id: uuid.UUID
    status: BookingStatusName
    user_id: uuid.UUID | None
    customer_name: str | None
    customer_email: str | None
    attended: bool = Field(description="Any stay or a check-in")
    is_present: bool = Field(description="A stay is open now")
    checked_in_at: datetime | None
    total_duration_seconds: int = Field(description="Over the closed stays")
    stays: list[StayOut]

    @classmethod
    def of(cls, item: BookingAttendance) -> BookingAttendanceOut:
        booking = item.booking
        return cls(
            booking_id=booking.id,
            status=booking.status,  # type: ignore[arg-type]
            user_id=booking.user_id,
            customer_name=item.customer_name,
            customer_email=item.customer_email,
            attended=item.attended,
            is_present=item.is_present,
            checked_in_at=item.checked_in_at,
            total_duration_seconds=item.total_duration_s,
            stays=[StayOut.of(s) for s in item.stays],
        )


class AttendanceActionOut(Out):
    outcome: Outcome
    attendance: BookingAttendanceOut


class SessionAttendanceOut(Out):
    session_id: uuid.UUID
    title: str | None
    start_time: datetime
    end_time: datetime
    status: SessionStatusName
    track_attendance: bool
    attended_count: int
    items: list[BookingAttendanceOut]

    @classmethod
    def of(cls, view: SessionAttendance) -> SessionAttendanceOut:
        session = view.session
        return cls(
            session_id=session.id,
            title=session.title,
            start_time=session.start_at,
            end_time=session.end_at,
            status=session.status,  # type: ignore[arg-type]
            track_attendance=session.track_attendance,
            attended_count=view.attended_count,
            items=[BookingAttendanceOut.of(i) for i in view.items],
        )


class CourseSessionProgressOut(Out):
    session_id: uuid.UUID
    sequence_no: int | None
    start_time: datetime
    session_status: SessionStatusName
    booking_id: uuid.UUID
    booking_status: BookingStatusName
    attended: bool


class ParticipantProgressOut(Out):
    key: str = Field(description="order:<id>, user:<id> or email:<address>")
    order_id: uuid.UUID | None
    user_id: uuid.UUID | None
    customer_name: str | None
    customer_email: str | None
    enrolled_sessions: int
    completed_sessions: int = Field(description="Their sessions that have taken place")
    attended_sessions: int = Field(description="Of those, the ones they attended")
    completion_rate: float | None = Field(
        description="attendedSessions / completedSessions, 0 to 1; null before any took place"
    )
    sessions: list[CourseSessionProgressOut]

    @classmethod
    def of(cls, p: Participant) -> ParticipantProgressOut:
        return cls(
            key=p.key,
            order_id=p.order_id,
            user_id=p.user_id,
            customer_name=p.name,
            customer_email=p.email,
            enrolled_sessions=len(p.sessions),
            completed_sessions=p.completed_sessions,
            attended_sessions=p.attended_sessions,
            completion_rate=p.completion_rate,
            sessions=[
                CourseSessionProgressOut(
                    session_id=s.session.id,
                    sequence_no=s.session.sequence_no,
                    start_time=s.session.start_at,
                    session_status=s.session.status,  # type: ignore[arg-type]
                    booking_id=s.booking.id,
                    booking_status=s.booking.status,  # type: ignore[arg-type]
                    attended=s.attended,
                )
                for s in p.sessions
            ],
        )


class CourseProgressOut(Out):
    course_id: uuid.UUID
    title: str
    session_count: int
    completed_session_count: int
    participants: list[ParticipantProgressOut]

    @classmethod
    def of(cls, view: CourseProgress) -> CourseProgressOut:
        return cls(
            course_id=view.course.id,
            title=view.course.title,
            session_count=len(view.sessions),
            completed_session_count=view.completed_sessions,
            participants=[ParticipantProgressOut.of(p) for p in view.participants],
        )


class VideoWebhookAck(Out):
    received: bool
    outcome: Outcome | Literal["ignored"]
