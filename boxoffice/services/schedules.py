"""A provider's availability: named weekly schedules, hours on dates, time off.

Every write locks the provider's row first (the lock bookings of the provider take),
so a booking never checks a calendar that is half changed, and two writers cannot
both make "the first schedule" the default.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from boxoffice.db.models import AvailabilityBlock, DatedAvailability, Provider, Schedule, TimeOff
from boxoffice.db.session import Db
from boxoffice.domain import availability
from boxoffice.domain.availability import WeeklyBlock
from boxoffice.domain.errors import Conflict, DomainError, InvalidInput, NotFound
from boxoffice.services.organizations import check_timezone
from boxoffice.services.providers import get_provider

MAX_BLOCKS = 200
MAX_NAME = 100
MAX_TIME_OFF_DAYS = 366
MAX_REASON = 200
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Mode(StrEnum):
    """How hours on a date combine with the weekly ones."""

    ADD = "add"
    REPLACE = "replace"
    CLOSED = "closed"


def mode_of(entry: DatedAvailability) -> Mode:
    """The mode an entry was made with (a closed day is stored as replace 0-0)."""
    if not entry.replace:
        return Mode.ADD
    return Mode.CLOSED if entry.start_min == entry.end_min == 0 else Mode.REPLACE


def hhmm(minutes: int) -> str:
    """Minutes after local midnight as "HH:MM" (1440 is "24:00")."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _lock(db: Db, provider: Provider) -> None:
    get_provider(db, provider.id, org_id=provider.org_id, lock=True)


# --- weekly schedules -----------------------------------------------------------------


def list_schedules(db: Db, provider: Provider) -> list[Schedule]:
    """The provider's schedules, the default first, then by name."""
    stmt = (
        select(Schedule)
        .options(selectinload(Schedule.blocks))
        .where(Schedule.provider_id == provider.id)
        .order_by(Schedule.is_default.desc(), Schedule.name, Schedule.id)
    )
    return list(db.execute(stmt).scalars())


def get_schedule(db: Db, provider: Provider, schedule_id: uuid.UUID) -> Schedule:
    """One of the provider's schedules; any other is NotFound."""
    schedule = db.get(Schedule, schedule_id)
    if schedule is None or schedule.provider_id != provider.id:
        raise NotFound("Schedule not found.", {"scheduleId": str(schedule_id)})
    return schedule


def _check_name(db: Db, provider: Provider, name: str, schedule_id: uuid.UUID | None) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"name must have 1 to {MAX_NAME} characters.")
    taken = db.execute(
        select(Schedule.id).where(
            Schedule.provider_id == provider.id, Schedule.name == name, Schedule.id != schedule_id
        )
    ).first()
    if taken is not None:
        raise Conflict(f"This provider already has a schedule named {name!r}.", {"name": name})
    return name


def _check_blocks(timezone: str, blocks: Sequence[WeeklyBlock]) -> None:
    """Refuse an unknown zone or a block not inside a day, naming the block."""
    check_timezone(timezone)
    if len(blocks) > MAX_BLOCKS:
        raise InvalidInput(f"A schedule has at most {MAX_BLOCKS} blocks.")
    for i, block in enumerate(blocks):
        try:
            availability.Schedule(timezone, weekly=(block,)).validate()
        except DomainError as exc:
            day = WEEKDAYS[block.weekday] if 0 <= block.weekday <= 6 else str(block.weekday)
            raise InvalidInput(
                f"blocks[{i}] ({day} {hhmm(block.start_min)}-{hhmm(block.end_min)}): "
                "weekday must be 0 (Monday) to 6 (Sunday) and the end after the start, "
                "within the day (00:00 to 24:00).",
                {"block": i, "weekday": block.weekday},
            ) from exc


def _blocks(provider: Provider, blocks: Sequence[WeeklyBlock]) -> list[AvailabilityBlock]:
    return [
        AvailabilityBlock(
            org_id=provider.org_id, weekday=b.weekday, start_min=b.start_min, end_min=b.end_min
        )
        for b in blocks
    ]


def _make_default(db: Db, provider: Provider, schedule: Schedule) -> None:
    # Unset the old default first: the database allows one default per provider.
    for other in list_schedules(db, provider):
        if other.id != schedule.id:
            other.is_default = False
    db.flush()
    schedule.is_default = True
    db.flush()


def create_schedule(
    db: Db,
    provider: Provider,
    *,
    name: str,
    timezone: str | None = None,
    is_default: bool = False,
    blocks: Sequence[WeeklyBlock] = (),
) -> Schedule:
    """Add a schedule (time zone default: the provider's); the first one is the default."""
    _lock(db, provider)
    timezone = timezone or provider.timezone
    name = _check_name(db, provider, name, None)
    _check_blocks(timezone, blocks)
    first = not db.execute(select(Schedule.id).where(Schedule.provider_id == provider.id)).first()
    schedule = Schedule(
        org_id=provider.org_id,
        provider_id=provider.id,
        name=name,
        timezone=timezone,
        is_default=False,
        blocks=_blocks(provider, blocks),
    )
    db.add(schedule)
    db.flush()
    if first or is_default:
        _make_default(db, provider, schedule)
        db.flush()
    return schedule


def update_schedule(
    db: Db,
    provider: Provider,
    schedule_id: uuid.UUID,
    *,
    name: str | None = None,
    timezone: str | None = None,
    is_default: bool | None = None,
    blocks: Sequence[WeeklyBlock] | None = None,
) -> Schedule:
    """Change what is given; ``blocks`` replaces all the schedule's blocks.

    A schedule becomes the default by setting ``is_default``; the default cannot be
    unset, only replaced, so a provider with schedules always has exactly one.
    """
    _lock(db, provider)
    schedule = get_schedule(db, provider, schedule_id)
    if is_default is False and schedule.is_default:
        raise InvalidInput(
            "A provider always has one default schedule: make another one the default instead."
        )
    if name is not None:
        schedule.name = _check_name(db, provider, name, schedule.id)
    new_zone = timezone or schedule.timezone
    if timezone is not None or blocks is not None:
        current = [WeeklyBlock(b.weekday, b.start_min, b.end_min) for b in schedule.blocks]
        _check_blocks(new_zone, current if blocks is None else blocks)
    schedule.timezone = new_zone
    if blocks is not None:
        schedule.blocks = _blocks(provider, blocks)
    if is_default:
        _make_default(db, provider, schedule)
    db.flush()
    return schedule


def delete_schedule(db: Db, provider: Provider, schedule_id: uuid.UUID) -> None:
    """Delete a schedule with its blocks and dated hours; if it was the default, the
    oldest remaining schedule becomes the default."""
    _lock(db, provider)
    schedule = get_schedule(db, provider, schedule_id)
    was_default = schedule.is_default
    db.delete(schedule)
    db.flush()
    if was_default:
        heir = db.execute(
            select(Schedule)
            .where(Schedule.provider_id == provider.id)
            .order_by(Schedule.created_at, Schedule.id)
            .limit(1)
        ).scalar_one_or_none()
        if heir is not None:
            heir.is_default = True
            db.flush()


# --- hours on dates -------------------------------------------------------------------


def add_dated_availability(
    db: Db,
    provider: Provider,
    *,
    day: date,
    mode: Mode,
    start_min: int | None = None,
    end_min: int | None = None,
    schedule_id: uuid.UUID | None = None,
) -> DatedAvailability:
    """Hours on one local date, for all the provider's schedules or one of them.

    ``add`` adds hours to the day, ``replace`` replaces the day's weekly hours,
    ``closed`` closes the day (it takes no hours).
    """
    _lock(db, provider)
    if schedule_id is not None:
        get_schedule(db, provider, schedule_id)
    if mode is Mode.CLOSED:
        if start_min is not None or end_min is not None:
            raise InvalidInput("A closed day takes no start or end.")
        entry = availability.DatedAvailability.closed(day)
    else:
        if start_min is None or end_min is None:
            raise InvalidInput(f"Hours to {mode.value} need a start and an end.")
        entry = availability.DatedAvailability(
            day, start_min, end_min, replace=mode is Mode.REPLACE
        )
    try:
        availability.Schedule("UTC", dated=(entry,)).validate()
    except DomainError as exc:
        raise InvalidInput(
            f"The end ({hhmm(entry.end_min)}) must be after the start "
            f"({hhmm(entry.start_min)}), within the day (00:00 to 24:00).",
            {"start": hhmm(entry.start_min), "end": hhmm(entry.end_min)},
        ) from exc
    row = DatedAvailability(
        org_id=provider.org_id,
        provider_id=provider.id,
        schedule_id=schedule_id,
        day=day,
        start_min=entry.start_min,
        end_min=entry.end_min,
        replace=entry.replace,
    )
    db.add(row)
    db.flush()
    return row


def list_dated_availability(
    db: Db, provider: Provider, *, start: date | None = None, end: date | None = None
) -> list[DatedAvailability]:
    """The provider's hours on dates from ``start`` to ``end`` (both included), by date."""
    stmt = (
        select(DatedAvailability)
        .where(DatedAvailability.provider_id == provider.id)
        .order_by(DatedAvailability.day, DatedAvailability.start_min, DatedAvailability.id)
    )
    if start is not None:
        stmt = stmt.where(DatedAvailability.day >= start)
    if end is not None:
        stmt = stmt.where(DatedAvailability.day <= end)
    return list(db.execute(stmt).scalars())


def delete_dated_availability(db: Db, provider: Provider, entry_id: uuid.UUID) -> None:
    """Remove one of the provider's dated entries."""
    _lock(db, provider)
    entry = db.get(DatedAvailability, entry_id)
    if entry is None or entry.provider_id != provider.id:
        raise NotFound("Dated availability not found.", {"id": str(entry_id)})
    db.delete(entry)
    db.flush()


# --- time off -------------------------------------------------------------------------


def add_time_off(
    db: Db, provider: Provider, *, start_at: datetime, end_at: datetime, reason: str = ""
) -> TimeOff:
    """The provider is away from ``start_at`` to ``end_at`` (instants); bookings already
    made in that time stand, new ones are not offered."""
    _lock(db, provider)
    if start_at.utcoffset() is None or end_at.utcoffset() is None:
        raise InvalidInput("startAt and endAt must carry a time zone offset.")
    if end_at <= start_at:
        raise InvalidInput(
            "endAt must be after startAt.",
            {"startAt": start_at.isoformat(), "endAt": end_at.isoformat()},
        )
    if end_at - start_at > timedelta(days=MAX_TIME_OFF_DAYS):
        raise InvalidInput(f"Time off lasts at most {MAX_TIME_OFF_DAYS} days; add another.")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason has at most {MAX_REASON} characters.")
    row = TimeOff(
        org_id=provider.org_id,
        provider_id=provider.id,
        start_at=start_at.astimezone(UTC),
        end_at=end_at.astimezone(UTC),
        reason=reason,
    )
    db.add(row)
    db.flush()
    return row


def list_time_off(
    db: Db, provider: Provider, *, start: datetime | None = None, end: datetime | None = None
) -> list[TimeOff]:
    """The provider's time off overlapping [``start``, ``end``), by start."""
    if start is not None and end is not None and end < start:
        raise InvalidInput("'to' is before 'from'.")
    stmt = (
        select(TimeOff)
        .where(TimeOff.provider_id == provider.id)
        .order_by(TimeOff.start_at, TimeOff.id)
    )
    if start is not None:
        stmt = stmt.where(TimeOff.end_at > start)
    if end is not None:
        stmt = stmt.where(TimeOff.start_at < end)
    return list(db.execute(stmt).scalars())


def delete_time_off(db: Db, provider: Provider, time_off_id: uuid.UUID) -> None:
    """Remove one of the provider's time off entries."""
    _lock(db, provider)
    row = db.get(TimeOff, time_off_id)
    if row is None or row.provider_id != provider.id:
        raise NotFound("Time off not found.", {"id": str(time_off_id)})
    db.delete(row)
    db.flush()
