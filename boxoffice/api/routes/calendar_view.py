"""Routes: the organiser's calendar, every session of the organisation in a window."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from boxoffice.api.calendar_schemas import CalendarOut, calendar_json
from boxoffice.api.deps import CurrentCaller, Db
from boxoffice.api.schemas import Instant, error_responses
from boxoffice.services import auth, calendar_view

router = APIRouter(prefix="/api/v1", tags=["calendar"], responses=error_responses(401, 403))


@router.get("/calendar", response_model=CalendarOut)
def get_calendar(
    caller: CurrentCaller,
    db: Db,
    start: Annotated[Instant, Query(alias="from", description="ISO 8601 instant with offset")],
    end: Annotated[Instant, Query(alias="to", description="Exclusive; at most 62 days after")],
    provider_id: Annotated[uuid.UUID | None, Query(alias="providerId")] = None,
    room_id: Annotated[uuid.UUID | None, Query(alias="roomId")] = None,
    include_canceled: Annotated[
        bool, Query(alias="includeCanceled", description="List canceled sessions too")
    ] = False,
    include_attendees: Annotated[
        bool,
        Query(
            alias="includeAttendees",
            description="false: counts only, each session's attendees null (a lighter month)",
        ),
    ] = True,
) -> Response:
    """The organisation's sessions overlapping [from, to), by start time, each with its
    booking counts and the bookings holding a seat. For owners, admins and staff.

    A providerId or roomId of another organisation matches no session (an empty list,
    not 404). Canceled sessions are left out unless includeCanceled=true. With
    includeAttendees=false each session has its counts but null attendees.
    """
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        view = calendar_view.calendar(
            s,
            org.org_id,
            start,
            end,
            provider_id=provider_id,
            room_id=room_id,
            include_canceled=include_canceled,
            with_attendees=include_attendees,
        )
    # Written straight to JSON: validating a month's worth of CalendarOut would cost more
    # than reading it (returning a Response skips the response_model).
    return Response(calendar_json(view), media_type="application/json")
