"""Properties of the slot engine, checked against independent reference computations.

Every rule boundary, duration, step and buffer is a multiple of 5 minutes and every UTC
offset used here too, so checking availability every 5 minutes checks it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.domain.availability import (
    DatedAvailability,
    Occupied,
    Schedule,
    Slot,
    SlotRules,
    WeeklyBlock,
    compute_slots,
    explain,
    local_slots,
)
from boxoffice.domain.timeslots import Interval

PROPERTIES = settings(max_examples=100, deadline=None, derandomize=True)
FIVE = timedelta(minutes=5)
# Each zone with the days its clocks change in 2030, and an ordinary day.
ZONE_DAYS = {
    "UTC": [date(2030, 6, 12)],
    "Europe/Madrid": [date(2030, 3, 31), date(2030, 10, 27), date(2030, 6, 12)],
    "America/New_York": [date(2030, 3, 10), date(2030, 11, 3), date(2030, 6, 12)],
    "America/Santiago": [date(2030, 4, 7), date(2030, 9, 8), date(2030, 6, 12)],  # at midnight
    "Australia/Lord_Howe": [date(2030, 4, 7), date(2030, 10, 6), date(2030, 6, 12)],  # 30 min
    "Asia/Kathmandu": [date(2030, 6, 12)],  # +05:45
}
ZONES = list(ZONE_DAYS)


@dataclass(frozen=True)
class Case:
    schedule: Schedule
    rules: SlotRules
    window: Interval
    now: datetime
    busy: dict[str, Any]


def minutes(low: int, high: int) -> st.SearchStrategy[int]:
    """Multiples of 5 minutes in [low, high]."""
    return st.integers(low // 5, high // 5).map(lambda n: n * 5)


# Strategies are built once: building them per example costs more than the engine.
HOURS = st.tuples(
    st.sampled_from([0, 60, 90, 120, 150, 540, 1320, 1380]) | minutes(0, 1435),  # DST, night
    st.sampled_from([120, 240, 480, 1440]) | minutes(5, 720),
).map(lambda p: (p[0], min(1440, p[0] + p[1])))
WEEKLY = st.lists(st.tuples(st.just(-1) | st.integers(0, 6), HOURS), min_size=1, max_size=5)
DATED = st.lists(
    st.tuples(st.integers(-2, 3), HOURS, st.booleans(), st.booleans()),  # ..., replace, closed
    max_size=4,
)
NEAR = st.tuples(minutes(-600, 4 * 1440), minutes(5, 240))  # offset from the window, length
OCCUPIED = st.lists(
    st.tuples(
        NEAR,
        st.integers(0, 3),  # seats
        st.integers(1, 3),  # capacity
        st.sampled_from(["svc", "other", None]),
        st.sampled_from([(0, 0), (10, 0), (0, 15), (10, 15)]),
    ),
    max_size=5,
)
RULES = st.builds(
    SlotRules,
    duration_min=st.sampled_from([15, 25, 30, 45, 60, 90, 120]),
    step_min=st.sampled_from([None, 5, 10, 15, 30, 45, 60]),
    buffer_before_min=st.sampled_from([0, 0, 5, 15, 30]),
    buffer_after_min=st.sampled_from([0, 0, 10, 15, 30]),
    min_notice_min=st.just(0) | st.sampled_from([30, 120, 1440]),
    horizon_days=st.none() | st.sampled_from([0, 1, 3]),
    capacity=st.sampled_from([1, 1, 2, 3]),
    key=st.just("svc"),
)
JOINS = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 3), st.integers(1, 3), st.booleans()),
    max_size=2,
)


@st.composite
def cases(draw: st.DrawFn, zones: list[str] = ZONES, capacity: int | None = None) -> Case:
    zone_name = draw(st.sampled_from(zones))
    day = draw(st.sampled_from(ZONE_DAYS[zone_name]))
    weekly = [
        WeeklyBlock(d, *hours)
        for weekday, hours in draw(WEEKLY)
        for d in (range(7) if weekday < 0 else [weekday])  # -1: every day
    ]
    dated = [
        DatedAvailability.closed(day + timedelta(offset))
        if closed
        else DatedAvailability(day + timedelta(offset), *hours, replaces)
        for offset, hours, replaces, closed in draw(DATED)
    ]
    rules = draw(RULES)
    if capacity is not None:
        rules = replace(rules, capacity=capacity)
    local_start = datetime.combine(day - timedelta(1), time()) + timedelta(
        minutes=draw(minutes(0, 1435))
    )
    start_at = local_start.replace(tzinfo=ZoneInfo(zone_name)).astimezone(UTC)
    length = draw(st.sampled_from([1440, 2 * 1440, 3 * 1440]) | minutes(5, 3 * 1440))
    window = Interval(start_at, start_at + timedelta(minutes=length))
    now = start_at - timedelta(minutes=draw(st.sampled_from([0, 1440]) | minutes(-360, 1440)))

    def near(offset: int, length: int) -> Interval:
        return Interval(
            start_at + timedelta(minutes=offset), start_at + timedelta(minutes=offset + length)
        )

    occupied = [
        Occupied(near(*where), seats, cap, key, *buffers)
        for where, seats, cap, key, buffers in draw(OCCUPIED)
    ]
    busy = {
        "occupied": occupied,
        "time_off": [near(*where) for where in draw(st.lists(NEAR, max_size=2))],
        "external_busy": [near(*where) for where in draw(st.lists(NEAR, max_size=3))],
    }
    case = Case(Schedule(zone_name, tuple(weekly), tuple(dated)), rules, window, now, busy)
    # Sessions exactly on offered slots, so that joining a group session gets exercised.
    offered = run(case)
    for pick, seats, cap, same_service in draw(JOINS) if offered else []:
        slot = offered[pick % len(offered)]
        key = "svc" if same_service else "other"
        occupied.append(Occupied(Interval(slot.start_at, slot.end_at), seats, cap, key))
    return case


def run(case: Case, **changes: Any) -> list[Slot]:
    busy = {**case.busy, **changes}
    return compute_slots(case.schedule, case.rules, case.window, case.now, **busy)


# --- independent references ---------------------------------------------------------------


def day_hours(schedule: Schedule, day: date) -> list[tuple[int, int]]:
    """A local day's hours straight from the rules, unmerged."""
    entries = [d for d in schedule.dated if d.day == day]
    if any(d.replace for d in entries):
        hours = [(d.start_min, d.end_min) for d in entries if d.replace]
    else:
        hours = [(w.start_min, w.end_min) for w in schedule.weekly if w.weekday == day.weekday()]
    return hours + [(d.start_min, d.end_min) for d in entries if not d.replace]


def is_available(schedule: Schedule, instant: datetime) -> bool:
    """Whether the wall-clock time of ``instant`` falls inside that local day's hours."""
    local = instant.astimezone(ZoneInfo(schedule.timezone))
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in day_hours(schedule, local.date()))


def padded(rules: SlotRules, start_at: datetime, end_at: datetime) -> Interval:
    return Interval(
        start_at - timedelta(minutes=rules.buffer_before_min),
        end_at + timedelta(minutes=rules.buffer_after_min),
    )


def session_padded(o: Occupied) -> Interval:
    return Interval(
        o.interval.start_at - timedelta(minutes=o.buffer_before_min),
        o.interval.end_at + timedelta(minutes=o.buffer_after_min),
    )


def expected_seats(case: Case, start_at: datetime, end_at: datetime) -> int | None:
    """Seats a slot [start_at, end_at) offers given the busy inputs, by brute force."""
    slot = padded(case.rules, start_at, end_at)
    if any(slot.overlaps(i) for i in case.busy["time_off"] + case.busy["external_busy"]):
        return None
    occupied: list[Occupied] = case.busy["occupied"]
    sessions = [o for o in occupied if slot.overlaps(session_padded(o))]
    if not sessions:
        return case.rules.capacity
    o = sessions[0]
    if (
        len(sessions) == 1
        and o.key == case.rules.key
        and (o.interval.start_at, o.interval.end_at) == (start_at, end_at)
        and o.seats < o.capacity
    ):
        return o.capacity - o.seats
    return None


# --- properties ---------------------------------------------------------------------------


@PROPERTIES
@given(case=cases())
def test_slots_are_free_real_and_inside_availability(case: Case) -> None:
    result = run(case)
    zone = ZoneInfo(case.schedule.timezone)
    today = case.now.astimezone(zone).date()
    duration = timedelta(minutes=case.rules.duration_min)
    assert [s.start_at for s in result] == sorted({s.start_at for s in result})
    for s in result:
        assert s.start_at.tzinfo is UTC and s.end_at.tzinfo is UTC
        assert s.end_at - s.start_at == duration
        assert case.window.start_at <= s.start_at < case.window.end_at
        assert s.start_at >= case.now + timedelta(minutes=case.rules.min_notice_min)
        if case.rules.horizon_days is not None:
            days_ahead = (s.start_at.astimezone(zone).date() - today).days
            assert days_ahead <= case.rules.horizon_days
        instant = s.start_at
        while instant < s.end_at:
            assert is_available(case.schedule, instant), (s, instant)
            instant += FIVE
        assert s.seats_left == expected_seats(case, s.start_at, s.end_at)


@PROPERTIES
@given(case=cases(), display=st.sampled_from([*ZONES, "Asia/Tokyo", "Pacific/Chatham"]))
def test_the_display_zone_changes_labels_not_slots(case: Case, display: str) -> None:
    result = run(case)
    shown = local_slots(result, display)
    assert [s.slot for s in shown] == result
    for s in shown:
        assert s.local_start.utcoffset() == s.local_start.astimezone(ZoneInfo(display)).utcoffset()
        assert s.local_start.astimezone(UTC) == s.slot.start_at
        assert s.local_end.astimezone(UTC) == s.slot.end_at


@PROPERTIES
@given(case=cases(), probes=st.lists(minutes(0, 3 * 1440), max_size=12))
def test_explain_is_none_exactly_for_offered_slots(case: Case, probes: list[int]) -> None:
    result = run(case)
    offered = {s.start_at for s in result}

    def why(instant: datetime) -> str | None:
        return explain(case.schedule, case.rules, instant, case.now, **case.busy)

    for s in result:
        assert why(s.start_at) is None
    for offset in probes:
        instant = case.window.start_at + timedelta(minutes=offset)
        if instant < case.window.end_at:
            assert (why(instant) is None) == (instant in offered), instant


@PROPERTIES
@given(case=cases(), cut=minutes(0, 3 * 1440))
def test_the_window_only_filters_starts(case: Case, cut: int) -> None:
    middle = case.window.start_at + timedelta(minutes=cut)
    if not case.window.start_at < middle < case.window.end_at:
        return
    first = replace(case, window=Interval(case.window.start_at, middle))
    second = replace(case, window=Interval(middle, case.window.end_at))
    assert run(first) + run(second) == run(case)


@PROPERTIES
@given(case=cases(capacity=1), pick=st.integers(0, 10_000))
def test_a_returned_slot_can_be_booked_and_then_is_gone(case: Case, pick: int) -> None:
    result = run(case)
    if not result:
        return
    booked = result[pick % len(result)]
    session = Occupied(
        Interval(booked.start_at, booked.end_at),
        seats=1,
        capacity=1,
        key=case.rules.key,
        buffer_before_min=case.rules.buffer_before_min,
        buffer_after_min=case.rules.buffer_after_min,
    )
    after = run(case, occupied=[*case.busy["occupied"], session])
    taken = session_padded(session)
    assert booked not in after
    assert after == [
        s for s in result if not padded(case.rules, s.start_at, s.end_at).overlaps(taken)
    ]


@PROPERTIES
@given(case=cases(capacity=3), pick=st.integers(0, 10_000))
def test_a_group_slot_loses_one_seat_per_booking(case: Case, pick: int) -> None:
    free = [s for s in run(case) if s.seats_left == 3]
    if not free:
        return
    booked = free[pick % len(free)]
    session = Occupied(Interval(booked.start_at, booked.end_at), 1, 3, key=case.rules.key)
    after = run(case, occupied=[*case.busy["occupied"], session])
    assert replace(booked, seats_left=2) in after
    session = replace(session, seats=3)
    assert booked.start_at not in {s.start_at for s in run(case, occupied=[session])}


@PROPERTIES
@given(case=cases(zones=["UTC"]))
def test_in_utc_every_free_grid_start_is_offered(case: Case) -> None:
    """Completeness where wall clock and real time agree: a reference built minute by minute."""
    rules = case.rules
    step = timedelta(minutes=rules.step)
    duration = timedelta(minutes=rules.duration_min)
    horizon_end = None
    if rules.horizon_days is not None:
        horizon_end = datetime.combine(
            case.now.date() + timedelta(rules.horizon_days + 1), time(), UTC
        )
    expected: list[Slot] = []
    day = case.window.start_at.date() - timedelta(1)
    while day <= case.window.end_at.date():
        merged: list[list[int]] = []
        for start, end in sorted(day_hours(case.schedule, day)):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            block_end = datetime.combine(day, time(), UTC) + timedelta(minutes=end)
            instant = datetime.combine(day, time(), UTC) + timedelta(minutes=start)
            while instant < block_end:
                inside = all(
                    is_available(case.schedule, instant + k * FIVE)
                    for k in range(rules.duration_min // 5)
                )
                seats = expected_seats(case, instant, instant + duration)
                if (
                    inside
                    and seats is not None
                    and case.window.start_at <= instant < case.window.end_at
                    and instant >= case.now + timedelta(minutes=rules.min_notice_min)
                    and (horizon_end is None or instant < horizon_end)
                ):
                    expected.append(Slot(instant, instant + duration, seats))
                instant += step
        day += timedelta(1)
    assert run(case) == expected
