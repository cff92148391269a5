"""Timeslot generation: local working hours expanded to UTC instants per day."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, rrule

from boxoffice.domain.errors import InvalidInput

MAX_GENERATION_DAYS = 366
MAX_SLOT_MIN = 24 * 60


@dataclass(frozen=True)
class Interval:
    """A half-open interval ``[start_at, end_at)`` of UTC instants."""

    start_at: datetime
    end_at: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start_at < other.end_at and other.start_at < self.end_at

    @property
    def minutes(self) -> int:
        return int((self.end_at - self.start_at).total_seconds() // 60)


@dataclass(frozen=True)
class GenerationRequest:
    """What an admin asks for; dates and hours are local to ``timezone``.

    ``weekdays`` uses ISO numbering (1 = Monday ... 7 = Sunday); None means every day.
    """

    start_date: date
    end_date: date
    slot_min: int
    day_start: time
    day_end: time
    timezone: str
    weekdays: frozenset[int] | None = None

    def validate(self) -> None:
        if self.end_date < self.start_date:
            raise InvalidInput(
                "endDate is before startDate.",
                {"startDate": self.start_date.isoformat(), "endDate": self.end_date.isoformat()},
            )
        if (self.end_date - self.start_date).days >= MAX_GENERATION_DAYS:
            raise InvalidInput(
                f"At most {MAX_GENERATION_DAYS} days can be generated at once.",
                {"days": (self.end_date - self.start_date).days + 1},
            )
        if not 5 <= self.slot_min <= MAX_SLOT_MIN:
            raise InvalidInput(
                f"slotDuration must be between 5 and {MAX_SLOT_MIN} minutes.",
                {"slotDuration": self.slot_min},
            )
        if self.day_end <= self.day_start:
            raise InvalidInput(
                "workingHours.end must be after workingHours.start.",
                {"start": self.day_start.isoformat(), "end": self.day_end.isoformat()},
            )
        if self.weekdays is not None and not self.weekdays <= set(range(1, 8)):
            raise InvalidInput(
                "weekdays are ISO numbers from 1 (Monday) to 7 (Sunday).",
                {"weekdays": sorted(self.weekdays)},
            )


def generate_slots(request: GenerationRequest) -> Iterator[Interval]:
    """Yield back-to-back slots inside the working hours of each selected local day.

    Each slot is laid out in wall-clock time and converted to UTC on its own, so a
    day that changes to or from summer time keeps its local working hours: on a
    23-hour day no slot is invented, and a slot whose local times do not exist (the
    skipped hour) or are ambiguous (the repeated hour) is left out rather than shifted.
    """
    request.validate()
    zone = ZoneInfo(request.timezone)
    step = timedelta(minutes=request.slot_min)
    for day in rrule(DAILY, dtstart=request.start_date, until=request.end_date):
        if request.weekdays is not None and day.isoweekday() not in request.weekdays:
            continue
        local = datetime.combine(day.date(), request.day_start)
        day_end = datetime.combine(day.date(), request.day_end)
        while local + step <= day_end:
            start_at = _to_utc(local, zone)
            end_at = _to_utc(local + step, zone)
            if start_at is not None and end_at is not None and end_at - start_at == step:
                yield Interval(start_at, end_at)
            local += step


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime | None:
    """UTC instant of a wall-clock time, or None if it does not exist or is ambiguous."""
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early != late:
        return None  # skipped (spring forward) or repeated (fall back) wall-clock time
    return early


def without_overlaps(candidates: Iterable[Interval], taken: Iterable[Interval]) -> list[Interval]:
    """Candidates, in time order, that overlap none of ``taken``."""
    merged: list[Interval] = []
    for busy in sorted(taken, key=lambda i: i.start_at):
        if merged and busy.start_at <= merged[-1].end_at:
            last = merged.pop()
            busy = Interval(last.start_at, max(last.end_at, busy.end_at))
        merged.append(busy)
    starts = [b.start_at for b in merged]
    result: list[Interval] = []
    for slot in sorted(candidates, key=lambda i: i.start_at):
        # The only merged interval that can overlap is the last one starting before slot ends.
        k = bisect_left(starts, slot.end_at) - 1
        if k < 0 or not merged[k].overlaps(slot):
            result.append(slot)
    return result
