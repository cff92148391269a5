"""Room timeslots: sessions on a room, generated from working hours and listed by day."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.orm import joinedload

from boxoffice.db.locking import for_update
from boxoffice.db.models import Room, Session
from boxoffice.db.session import Db
from boxoffice.domain.errors import InvalidInput, NotFound
from boxoffice.domain.money import MAX_MINOR, prorate
from boxoffice.domain.resources import Bookings
from boxoffice.domain.sessions import SessionKind
from boxoffice.domain.timeslots import GenerationRequest, Interval, generate_slots, without_overlaps
from boxoffice.services import calendars
from boxoffice.services.rooms import get_room

MAX_LIST_LIMIT = 1000
MAX_LIST_DAYS = 62
# Bounds one write transaction (SQLite's single write lock is held while it runs).
MAX_SLOTS_PER_GENERATION = 20_000


@dataclass(frozen=True)
class GenerationResult:
    created: int
    skipped: int
    first_start_at: datetime | None
    last_end_at: datetime | None


TIMESLOT = SessionKind.TIMESLOT.value  # the Session kind of a room's slot


def is_bookable(
    session: Session,
    *,
    room: Room | None,
    now: datetime,
    busy: bool = False,
    enrolled: bool = False,
) -> bool:
    """Whether a customer can take a seat in this session now (``busy``: the room's
    calendar has something else then; ``enrolled``: a course enrolment's seat, which
    needs no opening for single bookings)."""
    return (
        not busy
        and (room is None or room.is_active)
        and (enrolled or session.is_open)
        and session.status == "scheduled"
        and session.visibility == "public"
        and session.booked_count < session.max_participants
        and session.start_at > now
    )


def local_day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """UTC instants where a local calendar day starts and ends (23 or 25 h on DST days)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def list_timeslots(
    db: Db,
    room_id: uuid.UUID,
    *,
    day: date | None,
    days: int | None,
    duration_min: int | None,
    now: datetime,
    limit: int = 500,
) -> tuple[Room, list[Session], set[uuid.UUID]]:
    """A room's live timeslots in time order, and those its calendar says it is busy for.

    The window is ``days`` local days (the organisation's time zone) from ``day``;
    without a day it runs from now for 14 days. ``duration_min`` keeps only timeslots
    of exactly that length.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}.", {"limit": limit})
    if days is not None and not 1 <= days <= MAX_LIST_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_LIST_DAYS}.", {"days": days})
    room = get_room(db, room_id)
    if day is not None:
        start, _ = local_day_bounds(day, room.organization.timezone)
        _, end = local_day_bounds(day + timedelta(days=(days or 1) - 1), room.organization.timezone)
    else:
        start, end = now, now + timedelta(days=days or 14)
    stmt = (
        select(Session)
        .where(
            Session.room_id == room.id,
            Session.kind == TIMESLOT,
            Session.start_at >= start,
            Session.start_at < end,
            Session.status != "canceled",
        )
        .order_by(Session.start_at)
    )
    if duration_min is None:
        found = list(db.execute(stmt.limit(limit)).scalars())
    else:
        span = timedelta(minutes=duration_min)
        found = [s for s in db.execute(stmt).scalars() if s.end_at - s.start_at == span]
        found = found[:limit]
    return room, found, busy_timeslots(db, room.id, found)


def busy_timeslots(db: Db, room_id: uuid.UUID, sessions: list[Session]) -> set[uuid.UUID]:
    """The timeslots overlapping the room's external busy times (its own calendar)."""
    if not sessions:
        return set()
    window = Interval(min(s.start_at for s in sessions), max(s.end_at for s in sessions))
    busy = Bookings.merged(calendars.busy_times(db, window, room_id=room_id))
    return {s.id for s in sessions if not busy.is_free(Interval(s.start_at, s.end_at))}


def get_timeslot(db: Db, timeslot_id: uuid.UUID) -> Session:
    """A room timeslot with its room and organisation, in one query."""
    session = db.get(Session, timeslot_id, options=[joinedload(Session.room)])
    if session is None or session.room_id is None or session.kind != TIMESLOT:
        raise NotFound("Timeslot not found.", {"timeslotId": str(timeslot_id)})
    return session


def generate_timeslots(
    db: Db,
    *,
    org_id: uuid.UUID,
    room_id: uuid.UUID,
    start_date: date,
    end_date: date,
    slot_min: int,
    day_start: time,
    day_end: time,
    weekdays: frozenset[int] | None,
    max_bookings: int,
    now: datetime,
) -> GenerationResult:
    """Create a room's timeslots over a date range, in the organisation's time zone.

    Slots that start in the past or overlap a live session of the room are skipped,
    so generating an overlapping range again creates no duplicates. The room row is
    locked so two generations for one room do not interleave.
    """
    room = get_room(db, room_id, org_id=org_id)
    db.execute(for_update(db, select(Room.id).where(Room.id == room.id)))
    if not 1 <= max_bookings <= room.capacity:
        raise InvalidInput(
            f"maxBookings must be between 1 and the room's capacity ({room.capacity}).",
            {"maxBookings": max_bookings, "capacity": room.capacity},
        )
    request = GenerationRequest(
        start_date=start_date,
        end_date=end_date,
        slot_min=slot_min,
        day_start=day_start,
        day_end=day_end,
        timezone=room.organization.timezone,
        weekdays=weekdays,
    )
    candidates = [slot for slot in generate_slots(request) if slot.start_at > now]
    if len(candidates) > MAX_SLOTS_PER_GENERATION:
        raise InvalidInput(
            f"That would create {len(candidates)} timeslots; generate at most "
            f"{MAX_SLOTS_PER_GENERATION} at once (a shorter range or longer slots).",
            {"timeslots": len(candidates)},
        )
    if not candidates:
        return GenerationResult(0, 0, None, None)
    taken = db.execute(
        select(Session.start_at, Session.end_at).where(
            Session.room_id == room.id,
            Session.status != "canceled",
            Session.end_at > candidates[0].start_at,
            Session.start_at < candidates[-1].end_at,
        )
    )
    fresh = without_overlaps(candidates, [Interval(s, e) for s, e in taken])
    price = prorate(room.hourly_rate_minor, slot_min)
    if price > MAX_MINOR:
        raise InvalidInput(
            "The price of one slot (hourly rate x duration) is too large.",
            {"slotDuration": slot_min},
        )
    if fresh:
        db.execute(
            insert(Session),
            [
                {
                    "id": uuid.uuid4(),
                    "org_id": room.org_id,
                    "kind": TIMESLOT,
                    "room_id": room.id,
                    "start_at": slot.start_at,
                    "end_at": slot.end_at,
                    "status": "scheduled",
                    "visibility": "public",
                    "is_open": True,
                    "max_participants": max_bookings,
                    "booked_count": 0,
                    "price_minor": price,
                    "created_at": now,
                    "updated_at": now,
                }
                for slot in fresh
            ],
        )
    return GenerationResult(
        created=len(fresh),
        skipped=len(candidates) - len(fresh),
        first_start_at=fresh[0].start_at if fresh else None,
        last_end_at=fresh[-1].end_at if fresh else None,
    )
