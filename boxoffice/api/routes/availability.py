"""A provider's calendar: weekly schedules, hours on dates, time off and the agenda.

Mounted under ``/api/v1/admin`` by :mod:`boxoffice.api.routes.catalogue`. The
organisation's owners and admins, and the member linked to the provider, may use it.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from boxoffice.api.catalogue_schemas import (
    AgendaOut,
    AgendaSessionOut,
    BlockIn,
    DatedAvailabilityIn,
    DatedAvailabilityOut,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    TimeOffIn,
    TimeOffOut,
)
from boxoffice.api.deps import CurrentCaller, Db
from boxoffice.api.schemas import Day, Instant, error_responses
from boxoffice.domain.availability import WeeklyBlock
from boxoffice.services import agenda, schedules
from boxoffice.services.providers import managed_provider

router = APIRouter(tags=["availability"], responses=error_responses(401, 403, 404, 409))
_NO_CONTENT = status.HTTP_204_NO_CONTENT


def _weekly(blocks: list[BlockIn]) -> list[WeeklyBlock]:
    return [WeeklyBlock(b.weekday, b.start, b.end) for b in blocks]


# --- schedules --------------------------------------------------------------------------


@router.post(
    "/providers/{provider_id}/schedules",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
)
def create_schedule(
    provider_id: uuid.UUID, body: ScheduleIn, caller: CurrentCaller, db: Db
) -> ScheduleOut:
    """A named weekly schedule; the provider's first one is its default."""
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        schedule = schedules.create_schedule(
            s,
            provider,
            name=body.name,
            timezone=body.timezone,
            is_default=body.is_default,
            blocks=_weekly(body.blocks),
        )
        return ScheduleOut.of(schedule)


@router.get("/providers/{provider_id}/schedules", response_model=list[ScheduleOut])
def list_schedules(provider_id: uuid.UUID, caller: CurrentCaller, db: Db) -> list[ScheduleOut]:
    """The provider's schedules, the default first."""
    with db.read() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        return [ScheduleOut.of(x) for x in schedules.list_schedules(s, provider)]


@router.put("/providers/{provider_id}/schedules/{schedule_id}", response_model=ScheduleOut)
def update_schedule(
    provider_id: uuid.UUID,
    schedule_id: uuid.UUID,
    body: SchedulePatch,
    caller: CurrentCaller,
    db: Db,
) -> ScheduleOut:
    """Change the fields given; ``blocks`` replaces them all; ``isDefault: true`` makes
    this the default (the previous default stops being one)."""
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        schedule = schedules.update_schedule(
            s,
            provider,
            schedule_id,
            name=body.name,
            timezone=body.timezone,
            is_default=body.is_default,
            blocks=_weekly(body.blocks) if body.blocks is not None else None,
        )
        return ScheduleOut.of(schedule)


@router.delete("/providers/{provider_id}/schedules/{schedule_id}", status_code=_NO_CONTENT)
def delete_schedule(
    provider_id: uuid.UUID, schedule_id: uuid.UUID, caller: CurrentCaller, db: Db
) -> Response:
    """Delete a schedule; when it was the default, the oldest other one becomes it."""
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        schedules.delete_schedule(s, provider, schedule_id)
    return Response(status_code=_NO_CONTENT)


# --- hours on dates ---------------------------------------------------------------------


@router.post(
    "/providers/{provider_id}/dated-availability",
    status_code=status.HTTP_201_CREATED,
    response_model=DatedAvailabilityOut,
)
def add_dated_availability(
    provider_id: uuid.UUID, body: DatedAvailabilityIn, caller: CurrentCaller, db: Db
) -> DatedAvailabilityOut:
    """Hours on one local date: ``add`` to the weekly hours, ``replace`` them, or
    ``closed``; for all the provider's schedules or one (``scheduleId``)."""
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        entry = schedules.add_dated_availability(
            s,
            provider,
            day=body.day,
            mode=schedules.Mode(body.mode),
            start_min=body.start,
            end_min=body.end,
            schedule_id=body.schedule_id,
        )
        return DatedAvailabilityOut.of(entry)


@router.get(
    "/providers/{provider_id}/dated-availability", response_model=list[DatedAvailabilityOut]
)
def list_dated_availability(
    provider_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    start: Annotated[Day | None, Query(alias="from")] = None,
    end: Annotated[Day | None, Query(alias="to", description="Included")] = None,
) -> list[DatedAvailabilityOut]:
    with db.read() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        rows = schedules.list_dated_availability(s, provider, start=start, end=end)
        return [DatedAvailabilityOut.of(d) for d in rows]


@router.delete("/providers/{provider_id}/dated-availability/{entry_id}", status_code=_NO_CONTENT)
def delete_dated_availability(
    provider_id: uuid.UUID, entry_id: uuid.UUID, caller: CurrentCaller, db: Db
) -> Response:
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        schedules.delete_dated_availability(s, provider, entry_id)
    return Response(status_code=_NO_CONTENT)


# --- time off ---------------------------------------------------------------------------


@router.post(
    "/providers/{provider_id}/time-off",
    status_code=status.HTTP_201_CREATED,
    response_model=TimeOffOut,
)
def add_time_off(
    provider_id: uuid.UUID, body: TimeOffIn, caller: CurrentCaller, db: Db
) -> TimeOffOut:
    """The provider is away between two instants; bookings already made stand."""
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        row = schedules.add_time_off(
            s, provider, start_at=body.start_at, end_at=body.end_at, reason=body.reason
        )
        return TimeOffOut.of(row)


@router.get("/providers/{provider_id}/time-off", response_model=list[TimeOffOut])
def list_time_off(
    provider_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    start: Annotated[Instant | None, Query(alias="from")] = None,
    end: Annotated[Instant | None, Query(alias="to")] = None,
) -> list[TimeOffOut]:
    """The provider's time off overlapping [from, to) (ISO 8601 with offset)."""
    with db.read() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        rows = schedules.list_time_off(s, provider, start=start, end=end)
        return [TimeOffOut.of(t) for t in rows]


@router.delete("/providers/{provider_id}/time-off/{time_off_id}", status_code=_NO_CONTENT)
def delete_time_off(
    provider_id: uuid.UUID, time_off_id: uuid.UUID, caller: CurrentCaller, db: Db
) -> Response:
    with db.write() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        schedules.delete_time_off(s, provider, time_off_id)
    return Response(status_code=_NO_CONTENT)


# --- agenda -----------------------------------------------------------------------------


@router.get("/providers/{provider_id}/agenda", response_model=AgendaOut)
def provider_agenda(
    provider_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    start: Annotated[Instant, Query(alias="from")],
    end: Annotated[Instant, Query(alias="to")],
    include_cancelled: Annotated[bool, Query(alias="includeCancelled")] = False,
) -> AgendaOut:
    """The provider's sessions starting in [from, to) (at most 62 days), with bookings."""
    with db.read() as s:
        provider = managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        entries = agenda.provider_agenda(
            s, provider.org_id, provider.id, start, end, include_cancelled=include_cancelled
        )
        return AgendaOut(
            provider_id=provider.id,
            timezone=provider.timezone,
            sessions=[AgendaSessionOut.of(e.session, e.bookings) for e in entries],
        )
