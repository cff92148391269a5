"""Group sessions: workshops and courses (admin), the public listings, enrolment and
waitlists."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from boxoffice.api.deps import CurrentCaller, Db, Gateway, Now
from boxoffice.api.routes.bookings import IdempotencyKey
from boxoffice.api.routes.payments import payment_for
from boxoffice.api.schemas import BookingOut, Instant, error_responses
from boxoffice.api.session_schemas import (
    AttendeeOut,
    CourseIn,
    CourseOut,
    CourseStatusIn,
    EnrolIn,
    EnrolmentOut,
    SessionDetailOut,
    SessionIn,
    SessionListOut,
    SessionOut,
    SessionPatch,
    SessionStatusIn,
    SessionStatusName,
    WaitlistEntryOut,
    WaitlistOut,
)
from boxoffice.db.session import Db as DbSession
from boxoffice.domain.errors import NotFound
from boxoffice.domain.money import to_minor
from boxoffice.domain.sessions import SessionStatus
from boxoffice.observability import BOOKINGS_CREATED
from boxoffice.services import auth, courses, sessions, waitlist
from boxoffice.services.organizations import get_organization, get_organization_by_slug

router = APIRouter(tags=["sessions"], responses=error_responses(401, 403, 404, 409))

_ADMIN = "/api/v1/admin"
OrgSlug = Annotated[
    str | None, Query(max_length=63, pattern=r"^[a-z0-9-]+$", description="Organisation slug")
]


def _currency(s: DbSession, org_id: uuid.UUID) -> str:
    return get_organization(s, org_id).currency


def _session_values(
    body: SessionIn | SessionPatch | CourseIn, currency: str, *, exclude: set[str] | None = None
) -> dict[str, Any]:
    """Service keyword arguments for the fields the body sets (prices in minor units)."""
    given = body.model_dump(exclude_unset=not isinstance(body, SessionIn), exclude=exclude)
    if "price" in given:
        price = given.pop("price")
        if price is not None:
            given["price_minor"] = to_minor(price, currency)
    return {k: v for k, v in given.items() if v is not None or k in ("provider_id", "room_id")}


def _detail(s: DbSession, session: Any, currency: str) -> SessionDetailOut:
    out = SessionOut.of(session, currency).model_dump()
    return SessionDetailOut(
        **out, attendees=[AttendeeOut.of(b) for b in sessions.attendees(s, session.id)]
    )


# --- admin: workshops --------------------------------------------------------------------


@router.post(f"{_ADMIN}/sessions", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
def create_session(body: SessionIn, caller: CurrentCaller, db: Db, now: Now) -> SessionOut:
    """Create a workshop: a session with N seats customers book one by one."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        currency = _currency(s, org.org_id)
        session = sessions.create_session(
            s, org_id=org.org_id, now=now, **_session_values(body, currency)
        )
        return SessionOut.of(session, currency)


@router.get(f"{_ADMIN}/sessions", response_model=SessionListOut)
def list_admin_sessions(
    caller: CurrentCaller,
    db: Db,
    starts_from: Annotated[Instant, Query(alias="from")],
    starts_to: Annotated[Instant, Query(alias="to")],
    kind: Annotated[str | None, Query(pattern="^(workshop|course)$")] = None,
    session_status: Annotated[SessionStatusName | None, Query(alias="status")] = None,
) -> SessionListOut:
    """The organisation's workshops and course sessions starting in the window."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        filters = sessions.SessionFilter(
            starts_from=starts_from,
            starts_to=starts_to,
            org_id=org.org_id,
            kind=kind,
            status=session_status,
        )
        currency = _currency(s, org.org_id)
        return SessionListOut(
            sessions=[SessionOut.of(x, currency) for x in sessions.list_sessions(s, filters)]
        )


@router.get(f"{_ADMIN}/sessions/{{session_id}}", response_model=SessionDetailOut)
def get_admin_session(session_id: uuid.UUID, caller: CurrentCaller, db: Db) -> SessionDetailOut:
    """A session with everyone holding a seat."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        session = sessions.get_session(s, session_id, org_id=org.org_id)
        return _detail(s, session, _currency(s, org.org_id))


@router.put(f"{_ADMIN}/sessions/{{session_id}}", response_model=SessionOut)
def update_session(
    session_id: uuid.UUID, body: SessionPatch, caller: CurrentCaller, db: Db, now: Now
) -> SessionOut:
    """Change the fields given; attendees of a session that moves are told."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        currency = _currency(s, org.org_id)
        session = sessions.update_session(
            s,
            session_id,
            org_id=org.org_id,
            actor_id=caller.user_id,
            now=now,
            **_session_values(body, currency),
        )
        return SessionOut.of(session, currency)


@router.put(f"{_ADMIN}/sessions/{{session_id}}/status", response_model=SessionDetailOut)
def change_session_status(
    session_id: uuid.UUID, body: SessionStatusIn, caller: CurrentCaller, db: Db, now: Now
) -> SessionDetailOut:
    """draft -> scheduled -> in_progress -> completed, or -> canceled: cancelling refunds
    every booking in full and tells each attendee."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        session, _ = sessions.change_status(
            s,
            session_id,
            org_id=org.org_id,
            status=SessionStatus(body.status),
            actor_id=caller.user_id,
            reason=body.reason,
            now=now,
        )
        return _detail(s, session, _currency(s, org.org_id))


# --- admin: courses ----------------------------------------------------------------------


@router.post(f"{_ADMIN}/courses", status_code=status.HTTP_201_CREATED, response_model=CourseOut)
def create_course(body: CourseIn, caller: CurrentCaller, db: Db, now: Now) -> CourseOut:
    """Create a course and its sessions, numbered in time order."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        currency = _currency(s, org.org_id)
        dates = courses.Dates(
            duration=timedelta(minutes=body.duration_min),
            first_start_at=body.schedule.first_start_at if body.schedule else None,
            every_weeks=body.schedule.every_weeks if body.schedule else 1,
            count=body.schedule.count if body.schedule else 0,
            starts=tuple(body.starts or ()),
        )
        values = _session_values(
            body, currency, exclude={"duration_min", "schedule", "starts", "drop_in_price"}
        )
        course, made = courses.create_course(
            s,
            org_id=org.org_id,
            dates=dates,
            now=now,
            drop_in_price_minor=(
                to_minor(body.drop_in_price, currency) if body.drop_in_price is not None else None
            ),
            **values,
        )
        return CourseOut.of(course, made)


@router.put(f"{_ADMIN}/courses/{{course_id}}/status", response_model=CourseOut)
def change_course_status(
    course_id: uuid.UUID, body: CourseStatusIn, caller: CurrentCaller, db: Db, now: Now
) -> CourseOut:
    """Publish a draft course, or cancel one: its sessions still to come are cancelled,
    their bookings refunded in full and every attendee told."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        if body.status == "canceled":
            course, _ = courses.cancel_course(
                s,
                course_id,
                org_id=org.org_id,
                actor_id=caller.user_id,
                reason=body.reason,
                now=now,
            )
        else:
            course = courses.publish_course(s, course_id, org_id=org.org_id, now=now)
        return CourseOut.of(course, courses.course_sessions(s, course.id))


# --- public ------------------------------------------------------------------------------


@router.get("/api/v1/sessions", response_model=SessionListOut)
def list_sessions(
    db: Db,
    org: Annotated[str, Query(max_length=63, pattern=r"^[a-z0-9-]+$")],
    starts_from: Annotated[Instant, Query(alias="from")],
    starts_to: Annotated[Instant, Query(alias="to")],
    service_id: Annotated[uuid.UUID | None, Query(alias="serviceId")] = None,
    kind: Annotated[str | None, Query(pattern="^(workshop|course)$")] = None,
) -> SessionListOut:
    """An organisation's public workshops and course sessions starting in the window."""
    with db.read() as s:
        organization = get_organization_by_slug(s, org)
        filters = sessions.SessionFilter(
            starts_from=starts_from,
            starts_to=starts_to,
            org_id=organization.id,
            service_id=service_id,
            kind=kind,
            public_only=True,
        )
        return SessionListOut(
            sessions=[
                SessionOut.of(x, organization.currency) for x in sessions.list_sessions(s, filters)
            ]
        )


@router.get("/api/v1/sessions/{session_id}", response_model=SessionOut)
def get_session(session_id: uuid.UUID, db: Db) -> SessionOut:
    """A public session and its free seats."""
    with db.read() as s:
        session = sessions.get_session(s, session_id)
        if session.visibility != "public" or session.status == SessionStatus.DRAFT:
            raise NotFound("Session not found.", {"sessionId": str(session_id)})
        return SessionOut.of(session, _currency(s, session.org_id))


@router.get("/api/v1/courses/{course_id}", response_model=CourseOut)
def get_course(course_id: uuid.UUID, db: Db) -> CourseOut:
    """A public course with its sessions and the seats left (in every session)."""
    with db.read() as s:
        course = courses.get_course(s, course_id)
        if course.visibility != "public" or course.status == SessionStatus.DRAFT:
            raise NotFound("Course not found.", {"courseId": str(course_id)})
        return CourseOut.of(course, courses.course_sessions(s, course.id))


@router.post(
    "/api/v1/courses/{course_id}/enroll",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrolmentOut,
)
def enrol(
    course_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    response: Response,
    gateway: Gateway,
    idempotency_key: IdempotencyKey = None,
    body: EnrolIn | None = None,
) -> EnrolmentOut:
    """Enrol in a course: a seat in every session, or none (409 naming the full
    session). One order carries the course's price; ``payment`` says how to pay."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        enrolment, is_new = courses.enrol(
            s,
            course_id,
            user_id=caller.user_id,
            notes=body.notes if body else "",
            idempotency_key=idempotency_key,
            now=now,
        )
        out = EnrolmentOut(
            course_id=enrolment.course.id,
            order_id=enrolment.order.id if enrolment.order else None,
            bookings=[BookingOut.of(b, now) for b in enrolment.bookings],
        )
    if is_new:
        BOOKINGS_CREATED.inc(len(out.bookings))
    else:
        response.headers["Idempotent-Replayed"] = "true"
    out.payment = payment_for(db, gateway, out.order_id, now=now)
    return out


# --- waitlists ---------------------------------------------------------------------------


@router.post(
    "/api/v1/sessions/{session_id}/waitlist",
    status_code=status.HTTP_201_CREATED,
    response_model=WaitlistEntryOut,
)
def join_waitlist(
    session_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now
) -> WaitlistEntryOut:
    """Wait for a seat in a full session; the first one waiting is offered each seat
    that frees up (by email), held for the organisation's hold time."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        entry = waitlist.join(s, session_id, user_id=caller.user_id, now=now)
        return WaitlistEntryOut.of(entry, waitlist.position(s, entry))


@router.get("/api/v1/waitlist", response_model=WaitlistOut)
def my_waitlist(caller: CurrentCaller, db: Db) -> WaitlistOut:
    """The caller's waitlist entries, newest first."""
    with db.read() as s:
        auth.active_user(s, caller.user_id)
        return WaitlistOut(
            entries=[
                WaitlistEntryOut.of(e, waitlist.position(s, e))
                for e in waitlist.my_entries(s, user_id=caller.user_id)
            ]
        )


@router.post("/api/v1/waitlist/{entry_id}/accept", response_model=BookingOut)
def accept_offer(
    entry_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now, gateway: Gateway
) -> BookingOut:
    """Take the seat offered: free, it is confirmed; priced, ``payment`` says how to pay
    before the offer runs out."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        booking = waitlist.accept(s, entry_id, user_id=caller.user_id, now=now)
        out = BookingOut.of(booking, now)
    out.payment = payment_for(db, gateway, booking.order_id, now=now)
    return out


@router.delete("/api/v1/waitlist/{entry_id}", response_model=WaitlistEntryOut)
def leave_waitlist(
    entry_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now
) -> WaitlistEntryOut:
    """Leave the waitlist; a seat on offer goes to the next one waiting."""
    with db.write() as s:
        auth.require_active(s, caller.user_id)
        entry = waitlist.leave(s, entry_id, user_id=caller.user_id, now=now)
        return WaitlistEntryOut.of(entry, None)
