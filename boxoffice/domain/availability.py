"""The slot engine: a provider's free appointment slots, computed from plain values.

Available slots = availability (weekly blocks + dated hours) - time off - external busy
times - existing sessions (respecting capacity) - buffers - the past and the minimum
notice - beyond the horizon. No I/O and no clock: ``now`` is a parameter. Every instant
in or out is timezone-aware; outputs are UTC.

Semantics, in one place:

* **Local days.** Rules are expanded per local day of the schedule's time zone. A day's
  hours are its weekly blocks, or, when the day has a ``replace`` entry, the replace
  entries' hours instead; ``add`` entries are added either way. A replace entry with
  ``start_min == end_min == 0`` (``DatedAvailability.closed``) closes the day. Blocks of
  a day that overlap or touch are merged.
* **Wall clock to UTC.** A block boundary that does not exist (the skipped hour) is the
  instant of the transition; one that happens twice (the repeated hour) is the later
  occurrence for a start and the earlier one for an end. So every instant of a block has
  a wall-clock time inside the block's hours, and nothing is invented: on Madrid's
  spring-forward day 01:00-04:00 is two real hours; on the fall-back day it is four.
* **Grid.** Slots start every ``step_min`` real minutes from the start of each day's
  block, while the start lies in that block; a slot lasts ``duration_min`` real minutes
  and must lie inside availability, where blocks that touch (22:00-24:00 and the next
  day's 00:00-06:00) count as one. The grid of a block does not depend on bookings or on
  the window, so booking one slot never shifts the others.
* **Buffers.** A slot padded by the rules' buffers ``[start - before, end + after)`` must
  not overlap time off, external busy times, or an occupied session padded by the
  buffers it was booked with. Buffers never overlap each other, so between two
  appointments there is at least the first one's ``after`` plus the second one's
  ``before``. A buffer may lie outside working hours.
* **Capacity.** Any overlap with an occupied session blocks a slot, except the exact
  session of the same ``key`` (e.g. service id) that still has seats: that slot is offered
  with its remaining seats. A free slot offers ``rules.capacity`` seats.
* **Notice and horizon.** ``start_at >= now + min_notice_min``, and the slot's local date
  is at most ``horizon_days`` after today's local date (the whole last day is bookable).
* **Window.** ``compute_slots`` returns the slots whose ``start_at`` lies in the window.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

from boxoffice.domain.errors import InvalidInput, SlotUnavailable
from boxoffice.domain.timeslots import Interval

DAY_MIN = 24 * 60
MAX_WINDOW_DAYS = 366

Reason = Literal[
    "too_soon",
    "too_far_ahead",
    "outside_hours",
    "not_on_grid",
    "time_off",
    "busy_in_calendar",
    "fully_booked",
]
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class WeeklyBlock:
    """Recurring hours: ``weekday`` 0 = Monday, minutes from local midnight, end <= 1440."""

    weekday: int
    start_min: int
    end_min: int


@dataclass(frozen=True)
class DatedAvailability:
    """Hours on one local date: ``replace`` replaces the day's weekly hours, else adds to them."""

    day: date
    start_min: int
    end_min: int
    replace: bool = False

    @classmethod
    def closed(cls, day: date) -> DatedAvailability:
        """A replace entry without hours: the day is closed (unless something is added)."""
        return cls(day, 0, 0, replace=True)

    @property
    def is_closed(self) -> bool:
        return self.replace and self.start_min == self.end_min == 0


@dataclass(frozen=True)
class Schedule:
    timezone: str
    weekly: tuple[WeeklyBlock, ...] = ()
    dated: tuple[DatedAvailability, ...] = ()

    def validate(self) -> ZoneInfo:
        """Raise InvalidInput on an unknown zone or impossible hours; return the zone."""
        zone = _zone(self.timezone)
        for block in self.weekly:
            if not 0 <= block.weekday <= 6:
                raise InvalidInput(
                    "weekday is 0 (Monday) to 6 (Sunday).", {"weekday": block.weekday}
                )
            _check_hours(block.start_min, block.end_min)
        for entry in self.dated:
            if not entry.is_closed:
                _check_hours(entry.start_min, entry.end_min)
        return zone


@dataclass(frozen=True)
class SlotRules:
    """A service's booking rules; ``step_min`` None means back to back (= duration).

    ``horizon_days`` None means no limit; ``key`` identifies the service so that a group
    session of the same service can be joined.
    """

    duration_min: int
    step_min: int | None = None
    buffer_before_min: int = 0
    buffer_after_min: int = 0
    min_notice_min: int = 0
    horizon_days: int | None = None
    capacity: int = 1
    key: object | None = None

    def validate(self) -> None:
        bounds = {
            "duration_min": (self.duration_min, 1, DAY_MIN),
            "step_min": (self.step, 1, DAY_MIN),
            "buffer_before_min": (self.buffer_before_min, 0, DAY_MIN),
            "buffer_after_min": (self.buffer_after_min, 0, DAY_MIN),
            "min_notice_min": (self.min_notice_min, 0, 10 * 366 * DAY_MIN),
            "horizon_days": (0 if self.horizon_days is None else self.horizon_days, 0, 10 * 366),
            "capacity": (self.capacity, 1, 1_000_000),
        }
        for name, (value, low, high) in bounds.items():
            if not low <= value <= high:
                raise InvalidInput(f"{name} must be between {low} and {high}.", {name: value})

    @property
    def step(self) -> int:
        return self.duration_min if self.step_min is None else self.step_min


@dataclass(frozen=True)
class Occupied:
    """An existing session of the provider with ``seats`` taken (pending or confirmed).

    The interval is the session itself (non-empty); its buffers are those it was booked with.
    """

    interval: Interval
    seats: int = 1
    capacity: int = 1
    key: object | None = None
    buffer_before_min: int = 0
    buffer_after_min: int = 0


@dataclass(frozen=True, order=True)
class Slot:
    start_at: datetime
    end_at: datetime
    seats_left: int


@dataclass(frozen=True)
class LocalSlot:
    """A slot with its start and end shown in a display time zone (aware datetimes)."""

    slot: Slot
    local_start: datetime
    local_end: datetime


@dataclass(frozen=True)
class AnyProviderSlot(Generic[K]):
    """A slot of the "any provider" list: which providers are free, and the most seats
    any one of them offers (one booking goes to one provider)."""

    start_at: datetime
    end_at: datetime
    seats_left: int
    providers: tuple[K, ...]


def compute_slots(
    schedule: Schedule,
    rules: SlotRules,
    window: Interval,
    now: datetime,
    *,
    occupied: Sequence[Occupied] = (),
    time_off: Iterable[Interval] = (),
    external_busy: Iterable[Interval] = (),
) -> list[Slot]:
    """The free slots starting inside ``window``, in time order (see the module docstring).

    Cost is O((slots + busy) log busy): busy inputs are sorted once and bisected; the sort
    is linear when ``occupied`` comes in start order, as an index on start returns it.
    """
    _aware(now, "now")
    _aware(window.start_at, "start")
    _aware(window.end_at, "end")
    if not window.start_at < window.end_at:
        raise InvalidInput("end must be after start.", _window_details(window))
    if window.end_at - window.start_at > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidInput(
            f"A window spans at most {MAX_WINDOW_DAYS} days.", _window_details(window)
        )
    engine = _Engine(schedule, rules, window.start_at, window.end_at, now)
    engine.load(occupied, time_off, external_busy)
    low = max(window.start_at, engine.earliest)
    high = window.end_at if engine.horizon_end is None else min(window.end_at, engine.horizon_end)
    slots: list[Slot] = []
    step, duration = engine.step, engine.duration
    for block in engine.blocks:
        first, last = max(block.start_at, low), min(block.end_at, high)
        if first >= last:
            continue
        # On the block's grid, not too soon, not too far ahead: what check() tests first.
        start = block.start_at + step * -((block.start_at - first) // step)
        while start < last:
            end = start + duration
            if not engine.fits(start, end):
                break  # later starts of this block end later still
            reason, seats_left = engine.busy(start, end)
            if reason is None:
                slots.append(Slot(start, end, seats_left))
            start += step
    return slots


def explain(
    schedule: Schedule,
    rules: SlotRules,
    at: datetime,
    now: datetime,
    *,
    occupied: Sequence[Occupied] = (),
    time_off: Iterable[Interval] = (),
    external_busy: Iterable[Interval] = (),
) -> Reason | None:
    """None when a slot starting ``at`` is offered, else why not.

    Checked in this order, the first that applies wins: too_soon (the past or within
    the minimum notice), too_far_ahead, outside_hours (the slot does not fit in
    availability), not_on_grid, time_off, busy_in_calendar, fully_booked.
    """
    _aware(now, "now")
    _aware(at, "at")
    at = at.astimezone(UTC)
    engine = _Engine(schedule, rules, at, at, now)
    engine.load(occupied, time_off, external_busy)
    return engine.check(at)[0]


def local_slots(slots: Iterable[Slot], display_tz: str) -> list[LocalSlot]:
    """The same slots, with local start and end in ``display_tz``."""
    zone = _zone(display_tz)
    return [LocalSlot(s, s.start_at.astimezone(zone), s.end_at.astimezone(zone)) for s in slots]


def union_slots(per_provider: Mapping[K, Iterable[Slot]]) -> list[AnyProviderSlot[K]]:
    """Slots offered by at least one provider, merged by (start, end), in time order.

    ``providers`` keeps the mapping's order.
    """
    merged: dict[tuple[datetime, datetime], tuple[int, list[K]]] = {}
    for provider, slots in per_provider.items():
        for slot in slots:
            seats, providers = merged.get((slot.start_at, slot.end_at), (0, []))
            if provider not in providers:
                providers.append(provider)
            merged[(slot.start_at, slot.end_at)] = (max(seats, slot.seats_left), providers)
    return [
        AnyProviderSlot(start_at, end_at, seats, tuple(providers))
        for (start_at, end_at), (seats, providers) in sorted(merged.items(), key=lambda i: i[0])
    ]


def choose_provider(
    free: Sequence[K],
    week_counts: Mapping[K, int],
    last_assigned: K | None = None,
    order: Sequence[K] | None = None,
) -> K:
    """The free provider with the fewest bookings that week; ties go round-robin.

    ``order`` is the stable order of all the service's providers (default: ``free`` as
    given). Among the tied, the first one after ``last_assigned`` in that order, cyclically,
    wins; from the start of the order when ``last_assigned`` is None or not in it.
    """
    if not free:
        raise SlotUnavailable("No provider is free at this time.")
    fewest = min(week_counts.get(p, 0) for p in free)
    tied = [p for p in free if week_counts.get(p, 0) == fewest]
    ring = list(free if order is None else order)
    after = ring.index(last_assigned) + 1 if last_assigned in ring else 0
    for provider in ring[after:] + ring[:after]:
        if provider in tied:
            return provider
    return tied[0]  # tied providers missing from ``order``


# --- the engine ---------------------------------------------------------------------------


class _Sorted:
    """Intervals as sorted starts and sorted ends, so overlaps are counted in O(log n).

    The intervals count as padded by ``before``/``after``; instead of padding each one,
    a query is widened: padded [s - b, e + a) overlaps [qs, qe) iff [s, e) overlaps
    [qs - a, qe + b).
    """

    def __init__(self, intervals: Sequence[Interval], before_min: int = 0, after_min: int = 0):
        # One real sort (linear when the caller passes intervals in start order); the ends,
        # taken in start order, are then nearly sorted and sort almost for free.
        ordered = sorted(intervals, key=attrgetter("start_at"))
        self.starts = [i.start_at for i in ordered]
        self.ends = [i.end_at for i in ordered]
        self.ends.sort()
        self.before = timedelta(minutes=before_min)
        self.after = timedelta(minutes=after_min)

    def count(self, start: datetime, end: datetime) -> int:
        # Intervals that end at or before the query start also start before its end.
        ending_before = bisect_right(self.ends, start - self.after)
        return bisect_left(self.starts, end + self.before) - ending_before


class _Engine:
    """Availability blocks around an instant range, and the busy inputs, ready to query."""

    def __init__(
        self, schedule: Schedule, rules: SlotRules, first: datetime, last: datetime, now: datetime
    ) -> None:
        rules.validate()
        self.zone = schedule.validate()
        self.rules = rules
        self.duration = timedelta(minutes=rules.duration_min)
        self.step = timedelta(minutes=rules.step)
        self.before = timedelta(minutes=rules.buffer_before_min)
        self.after = timedelta(minutes=rules.buffer_after_min)
        self.earliest = now + timedelta(minutes=rules.min_notice_min)
        self.horizon_end: datetime | None = None
        if rules.horizon_days is not None:
            last_day = now.astimezone(self.zone).date() + timedelta(days=rules.horizon_days)
            self.horizon_end = _end_instant(_midnight(last_day + timedelta(days=1)), self.zone)
        # A slot starts in its own day's block and ends at most a day (25 hours, or a
        # skipped calendar day) later, so two days after the last start suffice.
        self.blocks = _expand(
            schedule,
            self.zone,
            first.astimezone(self.zone).date() - timedelta(days=1),
            last.astimezone(self.zone).date() + timedelta(days=2),
        )
        self.block_starts = [b.start_at for b in self.blocks]
        available = _merge_touching(self.blocks)
        self.available_starts = [a.start_at for a in available]
        self.available_ends = [a.end_at for a in available]

    def load(
        self,
        occupied: Sequence[Occupied],
        time_off: Iterable[Interval],
        external_busy: Iterable[Interval],
    ) -> None:
        self.time_off = _Sorted(list(time_off))
        self.external = _Sorted(list(external_busy))
        buffers = {(o.buffer_before_min, o.buffer_after_min) for o in occupied}
        if len(buffers) == 1:  # the common case: no grouping
            self.occupied = [_Sorted([o.interval for o in occupied], *buffers.pop())]
        else:
            groups: dict[tuple[int, int], list[Interval]] = {b: [] for b in buffers}
            for o in occupied:
                groups[(o.buffer_before_min, o.buffer_after_min)].append(o.interval)
            self.occupied = [_Sorted(group, *b) for b, group in groups.items()]
        key = self.rules.key
        self.joinable: dict[tuple[datetime, datetime], Occupied] = {}
        if key is not None:
            # Only sessions with a seat left can be joined (usually none: appointments of
            # one seat are full). In UTC: aware datetimes of other zones in a repeated hour
            # never compare equal.
            self.joinable = {
                (o.interval.start_at.astimezone(UTC), o.interval.end_at.astimezone(UTC)): o
                for o in occupied
                if o.seats < o.capacity and o.key == key
            }

    def check(self, start: datetime) -> tuple[Reason | None, int]:
        """Why a slot starting at ``start`` is not offered (None if it is), and its seats."""
        if start < self.earliest:
            return "too_soon", 0
        if self.horizon_end is not None and start >= self.horizon_end:
            return "too_far_ahead", 0
        end = start + self.duration
        if not self.fits(start, end):
            return "outside_hours", 0
        # Blocks that touch are merged into one available interval, so start is in a block.
        block_start = self.block_starts[bisect_right(self.block_starts, start) - 1]
        if (start - block_start) % self.step:
            return "not_on_grid", 0
        return self.busy(start, end)

    def fits(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) lies inside availability."""
        k = bisect_right(self.available_starts, start) - 1
        return k >= 0 and end <= self.available_ends[k]

    def busy(self, start: datetime, end: datetime) -> tuple[Reason | None, int]:
        """What keeps the slot [start, end), padded by the buffers, busy; else its seats."""
        padded_start, padded_end = start - self.before, end + self.after
        if self.time_off.count(padded_start, padded_end):
            return "time_off", 0
        if self.external.count(padded_start, padded_end):
            return "busy_in_calendar", 0
        taken = 0
        for group in self.occupied:
            taken += group.count(padded_start, padded_end)
        if not taken:
            return None, self.rules.capacity
        session = self.joinable.get((start, end))
        if taken == 1 and session is not None and session.seats < session.capacity:
            return None, session.capacity - session.seats
        return "fully_booked", 0


def _expand(schedule: Schedule, zone: ZoneInfo, first: date, last: date) -> list[Interval]:
    """Each local day's merged blocks from ``first`` to ``last``, as UTC intervals."""
    weekly: dict[int, list[tuple[int, int]]] = {}
    for w in schedule.weekly:
        weekly.setdefault(w.weekday, []).append((w.start_min, w.end_min))
    dated: dict[date, list[DatedAvailability]] = {}
    for d in schedule.dated:
        if first <= d.day <= last:
            dated.setdefault(d.day, []).append(d)
    blocks: list[Interval] = []
    day = first
    while day <= last:
        entries = dated.get(day, [])
        if any(e.replace for e in entries):
            hours = [(e.start_min, e.end_min) for e in entries if e.replace and not e.is_closed]
        else:
            hours = list(weekly.get(day.weekday(), []))
        hours += [(e.start_min, e.end_min) for e in entries if not e.replace]
        midnight = _midnight(day)
        for start_min, end_min in _merge_minutes(hours):
            start_at = _start_instant(midnight + timedelta(minutes=start_min), zone)
            end_at = _end_instant(midnight + timedelta(minutes=end_min), zone)
            if start_at < end_at:  # a block inside a skipped or repeated hour may vanish
                blocks.append(Interval(start_at, end_at))
        day += timedelta(days=1)
    return blocks


def _merge_minutes(hours: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(hours):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _merge_touching(blocks: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for block in blocks:  # sorted and disjoint
        if merged and block.start_at <= merged[-1].end_at:
            merged[-1] = Interval(merged[-1].start_at, max(merged[-1].end_at, block.end_at))
        else:
            merged.append(block)
    return merged


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def _start_instant(local: datetime, zone: ZoneInfo) -> datetime:
    """A block start: the later occurrence of a repeated time; the transition if skipped."""
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return late if early <= late else _transition(late, early, zone)


def _end_instant(local: datetime, zone: ZoneInfo) -> datetime:
    """A block end: the earlier occurrence of a repeated time; the transition if skipped."""
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return early if early <= late else _transition(late, early, zone)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after ``before`` with ``after``'s UTC offset (to the second)."""
    offset = after.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + timedelta(seconds=(after - before) // timedelta(seconds=2))
        if middle.astimezone(zone).utcoffset() == offset:
            after = middle
        else:
            before = middle
    return after


def _check_hours(start_min: int, end_min: int) -> None:
    if not 0 <= start_min < end_min <= DAY_MIN:
        raise InvalidInput(
            "Hours must satisfy 0 <= start < end <= 1440 minutes after local midnight.",
            {"startMin": start_min, "endMin": end_min},
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise InvalidInput("Unknown time zone.", {"timezone": name}) from exc


def _window_details(window: Interval) -> dict[str, str]:
    return {"start": window.start_at.isoformat(), "end": window.end_at.isoformat()}


def _aware(instant: datetime, name: str) -> None:
    if instant.utcoffset() is None:
        raise InvalidInput(f"{name} must carry a time zone.", {name: instant.isoformat()})
