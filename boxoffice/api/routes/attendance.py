"""Attendance: the video room's webhooks, the organiser's check-ins and corrections,
who attended a session and how far each customer got through a course."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from boxoffice.api.attendance_schemas import (
    AttendanceActionOut,
    AttendanceCorrectionIn,
    AttendanceIn,
    BookingAttendanceOut,
    CourseProgressOut,
    SessionAttendanceOut,
    VideoWebhookAck,
)
from boxoffice.api.deps import AppSettings, CurrentCaller, Db, Now
from boxoffice.api.schemas import error_responses
from boxoffice.domain.errors import NotFound
from boxoffice.integrations.video import livekit
from boxoffice.services import attendance, auth, course_progress

router = APIRouter(tags=["attendance"], responses=error_responses(400, 401, 403, 404, 409))


async def _raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature covers these bytes."""
    return await request.body()


@router.post("/api/v1/attendance/webhook/livekit", response_model=VideoWebhookAck)
def livekit_webhook(
    body: Annotated[bytes, Depends(_raw_body)],
    db: Db,
    now: Now,
    settings: AppSettings,
    authorization: Annotated[str | None, Header()] = None,
) -> VideoWebhookAck:
    """LiveKit's room events. The signed token is checked first (missing, wrong key,
    expired or another body's is 400 and changes nothing); participant_joined and
    participant_left of a room ``session-<sessionId>`` whose participant identity is
    a booking id become stays, once per event id; anything else is acknowledged."""
    if not (settings.livekit_api_key and settings.livekit_api_secret):
        raise NotFound("LiveKit webhooks are not configured on this instance.")
    event = livekit.parse_webhook(
        body,
        authorization,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret,
        now=now,
    )
    if event is None:
        return VideoWebhookAck(received=True, outcome="ignored")
    with db.write() as s:
        outcome = attendance.apply_presence_event(s, event, now=now)
    return VideoWebhookAck(received=True, outcome=outcome)


@router.post("/api/v1/admin/sessions/{session_id}/attendance", response_model=AttendanceActionOut)
def mark_attendance(
    session_id: uuid.UUID, body: AttendanceIn, caller: CurrentCaller, db: Db, now: Now
) -> AttendanceActionOut:
    """Record that a booking's participant joined, left or was checked in (at ``at``,
    default now). A join while in, or a second check-in, changes nothing."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        outcome, item = attendance.mark_attendance(
            s,
            org_id=org.org_id,
            session_id=session_id,
            booking_id=body.booking_id,
            action=attendance.Action(body.action),
            at=body.at or now,
            now=now,
        )
        return AttendanceActionOut(outcome=outcome, attendance=BookingAttendanceOut.of(item))


@router.get("/api/v1/admin/sessions/{session_id}/attendance", response_model=SessionAttendanceOut)
def session_attendance(
    session_id: uuid.UUID, caller: CurrentCaller, db: Db
) -> SessionAttendanceOut:
    """Per booking: the stays, the check-in, the total time in the session, attended."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        view = attendance.session_attendance(s, org_id=org.org_id, session_id=session_id)
        return SessionAttendanceOut.of(view)


@router.put(
    "/api/v1/admin/sessions/{session_id}/attendance/{booking_id}",
    response_model=BookingAttendanceOut,
)
def correct_attendance(
    session_id: uuid.UUID,
    booking_id: uuid.UUID,
    body: AttendanceCorrectionIn,
    caller: CurrentCaller,
    db: Db,
    now: Now,
) -> BookingAttendanceOut:
    """Settle whether a participant attended: a check-in is added, or every record
    removed; once the session has ended the booking becomes completed or no_show."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        item = attendance.correct_attendance(
            s,
            org_id=org.org_id,
            session_id=session_id,
            booking_id=booking_id,
            attended=body.attended,
            actor_id=caller.user_id,
            reason=body.reason or "attendance corrected by organiser",
            now=now,
        )
        return BookingAttendanceOut.of(item)


@router.get("/api/v1/admin/courses/{course_id}/progress", response_model=CourseProgressOut)
def get_course_progress(course_id: uuid.UUID, caller: CurrentCaller, db: Db) -> CourseProgressOut:
    """Per enrolled customer: the course's sessions they attended out of those that
    have taken place."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        return CourseProgressOut.of(
            course_progress.course_progress(s, org_id=org.org_id, course_id=course_id)
        )
