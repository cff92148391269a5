"""Course progress: per enrolled customer, which of the course's sessions they
attended, and the completion rate (attended / completed sessions)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from boxoffice.db.models import Booking, Course, Session, User
from boxoffice.db.session import Db
from boxoffice.domain.errors import NotFound
from boxoffice.domain.sessions import SessionStatus
from boxoffice.services.attendance import ATTENDING, attended_booking_ids


@dataclass(frozen=True)
class CourseSessionProgress:
    session: Session
    booking: Booking
    attended: bool


@dataclass
class Participant:
    """One enrolled customer of a course: the bookings of one order (or one account,
    or one e-mail address when there is neither)."""

    key: str
    order_id: uuid.UUID | None
    user_id: uuid.UUID | None
    name: str | None
    email: str | None
    sessions: list[CourseSessionProgress] = field(default_factory=list)

    @property
    def completed_sessions(self) -> int:
        """Sessions of theirs that took place (status completed)."""
        return sum(1 for p in self.sessions if p.session.status == SessionStatus.COMPLETED)

    @property
    def attended_sessions(self) -> int:
        """Of the completed sessions, those they attended."""
        return sum(
            1 for p in self.sessions if p.attended and p.session.status == SessionStatus.COMPLETED
        )

    @property
    def completion_rate(self) -> float | None:
        """Attended / completed sessions; None while none has taken place."""
        if not self.completed_sessions:
            return None
        return round(self.attended_sessions / self.completed_sessions, 4)


@dataclass(frozen=True)
class CourseProgress:
    course: Course
    sessions: list[Session]
    participants: list[Participant]

    @property
    def completed_sessions(self) -> int:
        return sum(1 for s in self.sessions if s.status == SessionStatus.COMPLETED)


def course_progress(db: Db, *, org_id: uuid.UUID, course_id: uuid.UUID) -> CourseProgress:
    """Per enrolled customer of a course: which of its sessions they attended."""
    course = db.execute(
        select(Course).where(Course.id == course_id, Course.org_id == org_id)
    ).scalar_one_or_none()
    if course is None:
        raise NotFound("Course not found.", {"courseId": str(course_id)})
    sessions = list(
        db.execute(
            select(Session)
            .where(Session.course_id == course.id, Session.org_id == org_id)
            .order_by(Session.start_at, Session.id)
        ).scalars()
    )
    by_id = {s.id: s for s in sessions}
    rows = db.execute(
        select(Booking, User.name, User.email)
        .outerjoin(User, User.id == Booking.user_id)
        .where(
            Booking.session_id.in_(list(by_id)),
            Booking.status.in_([s.value for s in ATTENDING]),
        )
        .order_by(Booking.created_at, Booking.id)
    ).all()
    present = attended_booking_ids(db, [booking.id for booking, _, _ in rows])
    participants: dict[str, Participant] = {}
    for booking, user_name, user_email in rows:
        key = _owner_key(booking)
        participant = participants.get(key)
        if participant is None:
            participant = participants[key] = Participant(
                key=key,
                order_id=booking.order_id,
                user_id=booking.user_id,
                name=booking.customer_name or user_name,
                email=booking.customer_email or user_email,
            )
        assert booking.session_id is not None
        participant.sessions.append(
            CourseSessionProgress(
                session=by_id[booking.session_id], booking=booking, attended=booking.id in present
            )
        )
    order = {s.id: i for i, s in enumerate(sessions)}
    for participant in participants.values():
        participant.sessions.sort(key=lambda p: order[p.session.id])
    return CourseProgress(
        course=course, sessions=sessions, participants=list(participants.values())
    )


def _owner_key(booking: Booking) -> str:
    """Who enrolled: one order is one enrolment; else the account, else the address."""
    if booking.order_id is not None:
        return f"order:{booking.order_id}"
    if booking.user_id is not None:
        return f"user:{booking.user_id}"
    if booking.customer_email:
        return f"email:{booking.customer_email.strip().lower()}"
    return f"booking:{booking.id}"
