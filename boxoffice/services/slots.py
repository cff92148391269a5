"""Slot search for provider appointments: a provider's free slots, from the rows of
the requested window only (indexed by provider and time), computed by the pure engine
in ``domain.availability``."""

from __future__ import annotations

import typing
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import (
    AvailabilityBlock,
    DatedAvailability,
    Provider,
    Room,
    Schedule,
    Service,
    ServiceProvider,
    Session,
    TimeOff,
)
from boxoffice.db.session import Db
from boxoffice.domain import availability as engine
from boxoffice.domain.errors import InvalidInput, InvalidQuery, NotFound
from boxoffice.domain.resources import Bookings, first_free
from boxoffice.domain.sessions import SessionKind
from boxoffice.domain.timeslots import Interval
from boxoffice.services import calendars

_SESSIONS = cast(Table, Session.__table__)

MAX_WINDOW_DAYS = 62
APPOINTMENT = SessionKind.APPOINTMENT.value  # the Session kind of a provider appointment
LIVE = ("scheduled", "in_progress")


class InvalidWindow(InvalidQuery):
    """A slot search window that is inverted, unbounded or too long (HTTP 400)."""

    code = "invalid_window"


@dataclass(frozen=True)
class OfferedSlot:
    start_at: datetime
    end_at: datetime
    seats_left: int
    provider_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class SlotSearch:
    service: Service
    slots: list[OfferedSlot]
    # For a requested time that is not offered: why (None when it is offered).
    explanation: str | None = None


# --- loading the facts ------------------------------------------------------------------


def get_active_service(db: Db, service_id: uuid.UUID) -> Service:
    service = db.get(Service, service_id)
    if service is None or not service.is_active:
        raise NotFound("Service not found.", {"serviceId": str(service_id)})
    return service


def offering_providers(
    db: Db, service: Service, provider_id: uuid.UUID | None, *, lock: bool = False
) -> list[Provider]:
    """The active providers offering ``service`` (just ``provider_id`` if given), by id."""
    stmt = (
        select(Provider)
        .join(ServiceProvider, ServiceProvider.provider_id == Provider.id)
        .where(ServiceProvider.service_id == service.id, Provider.is_active.is_(True))
        .order_by(Provider.id)
    )
    if provider_id is not None:
        stmt = stmt.where(Provider.id == provider_id)
    if lock:
        stmt = for_update(db, stmt, of=Provider)
    providers = list(db.execute(stmt).scalars())
    if provider_id is not None and not providers:
        raise NotFound(
            "This provider does not offer this service.",
            {"providerId": str(provider_id), "serviceId": str(service.id)},
        )
    return providers


def rules_of(service: Service) -> engine.SlotRules:
    return engine.SlotRules(
        duration_min=service.duration_min,
        step_min=service.slot_step_min,
        buffer_before_min=service.buffer_before_min,
        buffer_after_min=service.buffer_after_min,
        min_notice_min=service.min_notice_min,
        horizon_days=service.max_days_ahead,
        capacity=service.capacity,
        key=service.id,
    )


@dataclass(frozen=True)
class Facts:
    schedule: engine.Schedule
    occupied: list[engine.Occupied]
    time_off: list[Interval]
    busy: list[Interval]


def _schedule_of(db: Db, provider: Provider, service: Service) -> Schedule | None:
    """The provider's schedule the service uses: by name, else the default one."""
    stmt = select(Schedule).where(Schedule.provider_id == provider.id)
    if service.schedule_name is not None:
        stmt = stmt.where(Schedule.name == service.schedule_name)
    else:
        stmt = stmt.order_by(Schedule.is_default.desc(), Schedule.created_at).limit(1)
    return db.execute(stmt).scalars().first()


def schedule_timezone(db: Db, provider: Provider, service: Service) -> str:
    schedule = _schedule_of(db, provider, service)
    return schedule.timezone if schedule is not None else provider.timezone


def provider_facts(db: Db, provider: Provider, service: Service, window: Interval) -> Facts:
    """A provider's rows that can matter for slots starting inside ``window``."""
    schedule = _schedule_of(db, provider, service)
    if schedule is None:
        return Facts(engine.Schedule(provider.timezone), [], [], [])
    zone = ZoneInfo(schedule.timezone)
    # Wide enough for a slot's length and buffers on either side (each at most a day).
    reach = Interval(window.start_at - timedelta(days=2), window.end_at + timedelta(days=2))
    first_day = reach.start_at.astimezone(zone).date()
    last_day = reach.end_at.astimezone(zone).date()
    weekly = db.execute(
        select(
            AvailabilityBlock.weekday, AvailabilityBlock.start_min, AvailabilityBlock.end_min
        ).where(AvailabilityBlock.schedule_id == schedule.id)
    ).all()
    dated = db.execute(
        select(
            DatedAvailability.day,
            DatedAvailability.start_min,
            DatedAvailability.end_min,
            DatedAvailability.replace,
        ).where(
            DatedAvailability.provider_id == provider.id,
            (DatedAvailability.schedule_id.is_(None))
            | (DatedAvailability.schedule_id == schedule.id),
            DatedAvailability.day >= first_day,
            DatedAvailability.day <= last_day,
        )
    ).all()
    # Core columns of the table and positional rows: this is the one query whose size
    # grows with the provider's bookings, and ORM row handling would cost more than SQL.
    sessions = db.execute(
        select(
            _SESSIONS.c.start_at,
            _SESSIONS.c.end_at,
            _SESSIONS.c.booked_count,
            _SESSIONS.c.max_participants,
            _SESSIONS.c.service_id,
            _SESSIONS.c.buffer_before_min,
            _SESSIONS.c.buffer_after_min,
        )
        .where(
            _SESSIONS.c.provider_id == provider.id,
            _SESSIONS.c.status.in_(LIVE),
            _SESSIONS.c.start_at < reach.end_at,
            _SESSIONS.c.start_at >= reach.start_at - timedelta(days=1),
            _SESSIONS.c.end_at > reach.start_at,
        )
        .order_by(_SESSIONS.c.start_at)
    ).all()
    time_off = db.execute(
        select(TimeOff.start_at, TimeOff.end_at)
        .where(
            TimeOff.provider_id == provider.id,
            TimeOff.start_at < reach.end_at,
            TimeOff.end_at > reach.start_at,
        )
        .order_by(TimeOff.start_at)
    ).all()
    return Facts(
        schedule=engine.Schedule(
            schedule.timezone,
            tuple(engine.WeeklyBlock(*b) for b in weekly),
            tuple(engine.DatedAvailability(*d) for d in dated),
        ),
        occupied=[
            engine.Occupied(Interval(start, end), seats, capacity, key, before, after)
            for start, end, seats, capacity, key, before, after in sessions
        ],
        time_off=[Interval(t.start_at, t.end_at) for t in time_off],
        busy=calendars.busy_times(db, reach, provider_id=provider.id),
    )


def rooms_of_type(
    db: Db, service: Service, window: Interval, *, lock: bool
) -> dict[uuid.UUID, Bookings]:
    """Active rooms of the service's room type, each with its live sessions, by id."""
    stmt = (
        select(Room.id)
        .where(
            Room.org_id == service.org_id,
            Room.room_type == service.room_type,
            Room.is_active.is_(True),
        )
        .order_by(Room.id)
    )
    if lock:
        stmt = for_update(db, stmt)
    room_ids = list(db.execute(stmt).scalars())
    busy: dict[uuid.UUID, list[Interval]] = {room_id: [] for room_id in room_ids}
    if room_ids:
        rows = db.execute(
            select(Session.room_id, Session.start_at, Session.end_at).where(
                Session.room_id.in_(room_ids),
                Session.status.in_(LIVE),
                Session.start_at < window.end_at + timedelta(days=1),
                Session.end_at > window.start_at,
            )
        ).all()
        for row in rows:
            busy[row.room_id].append(Interval(row.start_at, row.end_at))
    # What the rooms' own calendars say, too.
    for room_id, intervals in calendars.rooms_busy_times(db, window, room_ids).items():
        busy[room_id] += intervals
    return {room_id: Bookings.merged(intervals) for room_id, intervals in busy.items()}


# --- the slot search ------------------------------------------------------------------------


def check_window(start: datetime, end: datetime) -> Interval:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidWindow("start and end need a UTC offset.")
    if not start < end:
        raise InvalidWindow(
            "end must be after start.", {"start": start.isoformat(), "end": end.isoformat()}
        )
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidWindow(
            f"A slot search spans at most {MAX_WINDOW_DAYS} days.",
            {"start": start.isoformat(), "end": end.isoformat()},
        )
    return Interval(start.astimezone(UTC), end.astimezone(UTC))


def search_slots(
    db: Db,
    service_id: uuid.UUID,
    *,
    provider_id: uuid.UUID | None,
    start: datetime,
    end: datetime,
    now: datetime,
    explain_at: datetime | None = None,
) -> SlotSearch:
    """The free slots of a service starting in [start, end): one provider's, or the union
    of all its providers' ("any provider"). With a service that needs a room, a slot is
    offered only while a room of that type is free too."""
    window = check_window(start, end)
    service = get_active_service(db, service_id)
    providers = offering_providers(db, service, provider_id)
    rules = rules_of(service)
    per_provider: dict[uuid.UUID, list[engine.Slot]] = {}
    facts_of: dict[uuid.UUID, Facts] = {}
    for provider in providers:
        facts = provider_facts(db, provider, service, window)
        facts_of[provider.id] = facts
        per_provider[provider.id] = engine.compute_slots(
            facts.schedule,
            rules,
            window,
            now,
            occupied=facts.occupied,
            time_off=facts.time_off,
            external_busy=facts.busy,
        )
    merged = engine.union_slots(per_provider)
    rooms = rooms_of_type(db, service, window, lock=False) if service.room_type else None
    slots = [
        OfferedSlot(s.start_at, s.end_at, s.seats_left, s.providers)
        for s in merged
        if rooms is None
        or _room_for(rooms, s.start_at, s.end_at, joining=s.seats_left < service.capacity)
    ]
    explanation = None
    if explain_at is not None:
        explanation = _explain(service, rules, providers, facts_of, explain_at, now, slots)
    return SlotSearch(service=service, slots=slots, explanation=explanation)


_REASON_ORDER = typing.get_args(engine.Reason)


def closest_reason(reasons: Sequence[str]) -> str:
    """Of several providers' reasons, the one that got furthest through the checks."""
    return max(reasons, key=_REASON_ORDER.index)


def _room_for(
    rooms: dict[uuid.UUID, Bookings], start_at: datetime, end_at: datetime, *, joining: bool
) -> bool:
    # A seat in an existing group session already has its room.
    return joining or first_free(rooms, Interval(start_at, end_at)) is not None


def _explain(
    service: Service,
    rules: engine.SlotRules,
    providers: list[Provider],
    facts_of: dict[uuid.UUID, Facts],
    at: datetime,
    now: datetime,
    offered: list[OfferedSlot],
) -> str | None:
    """Why ``at`` is not offered; with several providers, the reason of the one closest
    to offering it (by the engine's order of checks)."""
    if at.tzinfo is None:
        raise InvalidInput("The time to explain needs a UTC offset.")
    if any(s.start_at == at for s in offered):
        return None
    if not providers:
        return "outside_hours"
    reasons = []
    for provider in providers:
        facts = facts_of[provider.id]
        reason = engine.explain(
            facts.schedule,
            rules,
            at,
            now,
            occupied=facts.occupied,
            time_off=facts.time_off,
            external_busy=facts.busy,
        )
        # Free for the provider but left out: no room of the type was free.
        reasons.append(reason or "fully_booked")
    return closest_reason(reasons)


def get_public_provider(db: Db, provider_id: uuid.UUID) -> Provider:
    """An active provider, for the public booking pages."""
    provider = db.get(Provider, provider_id)
    if provider is None or not provider.is_active:
        raise NotFound("Provider not found.", {"providerId": str(provider_id)})
    return provider


def public_services(db: Db, provider_id: uuid.UUID) -> list[Service]:
    """The active services an active provider offers, by name."""
    get_public_provider(db, provider_id)
    return list(
        db.execute(
            select(Service)
            .join(ServiceProvider, ServiceProvider.service_id == Service.id)
            .where(ServiceProvider.provider_id == provider_id, Service.is_active.is_(True))
            .order_by(Service.name, Service.id)
        ).scalars()
    )
