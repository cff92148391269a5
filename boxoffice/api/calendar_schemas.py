"""The organiser's calendar: ``GET /api/v1/calendar``.

These models document the response (OpenAPI) and let tests check it; the route does
not build them. A month is thousands of sessions and tens of thousands of attendees,
so :func:`calendar_json` writes the same shape straight from the service's rows.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from boxoffice.api.schemas import BookingStatusName, Out, PaymentStatusName
from boxoffice.services.calendar_view import Calendar, CalendarEntry

try:
    import orjson
except ImportError:  # the standard library writes the same JSON, about 4x slower
    orjson = None  # type: ignore[assignment]

SessionKindName = Literal["timeslot", "appointment", "workshop", "course"]
SessionStatusName = Literal["draft", "scheduled", "in_progress", "completed", "canceled"]


class CalendarAttendeeOut(Out):
    """A booking holding a seat (pending, confirmed, completed or no-show)."""

    booking_id: uuid.UUID
    status: BookingStatusName
    payment_status: PaymentStatusName
    name: str | None = Field(description="The booking's customer name, else the account's")
    email: str | None = Field(description="The booking's customer e-mail, else the account's")


class CalendarCountsOut(Out):
    """The session's bookings by status (drafts are not counted)."""

    pending: int
    confirmed: int
    completed: int
    no_show: int
    cancelled: int


class CalendarSessionOut(Out):
    id: uuid.UUID
    kind: SessionKindName
    title: str | None
    status: SessionStatusName
    start_at: datetime
    end_at: datetime
    provider_id: uuid.UUID | None
    provider_name: str | None
    room_id: uuid.UUID | None
    room_name: str | None
    service_id: uuid.UUID | None
    service_name: str | None
    course_id: uuid.UUID | None = Field(description="Set for the sessions of a course")
    sequence_no: int | None = Field(description="A course session's number, from 1")
    max_participants: int
    booked_count: int = Field(description="Seats held (pending, confirmed, completed, no-show)")
    counts: CalendarCountsOut
    attendees: list[CalendarAttendeeOut] | None = Field(
        description="Oldest booking first; null when asked for with includeAttendees=false"
    )


class CalendarOut(Out):
    """The organisation's sessions overlapping [from, to), by start time."""

    from_: datetime = Field(alias="from")
    to: datetime
    timezone: str = Field(description="The organisation's time zone (IANA)")
    sessions: list[CalendarSessionOut]


def _session(e: CalendarEntry) -> dict[str, Any]:
    """The session's fields but its attendees, which are JSON text already."""
    return {
        "id": e.id,
        "kind": e.kind,
        "title": e.title,
        "status": e.status,
        "startAt": e.start_at,
        "endAt": e.end_at,
        "providerId": e.provider_id,
        "providerName": e.provider_name,
        "roomId": e.room_id,
        "roomName": e.room_name,
        "serviceId": e.service_id,
        "serviceName": e.service_name,
        "courseId": e.course_id,
        "sequenceNo": e.sequence_no,
        "maxParticipants": e.max_participants,
        "bookedCount": e.booked_count,
        "counts": {
            "pending": e.pending,
            "confirmed": e.confirmed,
            "completed": e.completed,
            "noShow": e.no_show,
            "cancelled": e.cancelled,
        },
    }


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: dict[str, Any]) -> bytes:
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    return json.dumps(value, default=_iso, separators=(",", ":")).encode()


def calendar_json(view: Calendar) -> bytes:
    """The JSON of :class:`CalendarOut` for ``view``, instants in UTC with ``Z`` as
    Pydantic writes them. Each object is closed by hand to splice in what follows it:
    the sessions, and each session's attendees, which the database wrote as JSON."""
    if view.with_attendees:
        sessions = [
            _dumps(_session(e))[:-1] + b',"attendees":[' + e.attendees.encode() + b"]}"
            for e in view.sessions
        ]
    else:
        sessions = [_dumps(_session(e))[:-1] + b',"attendees":null}' for e in view.sessions]
    head = _dumps({"from": view.start, "to": view.end, "timezone": view.timezone})[:-1]
    return head + b',"sessions":[' + b",".join(sessions) + b"]}"
