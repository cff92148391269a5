"""Generation of local working-hour slots into UTC instants, across DST changes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.domain.errors import InvalidInput
from boxoffice.domain.timeslots import (
    MAX_GENERATION_DAYS,
    MAX_SLOT_MIN,
    GenerationRequest,
    Interval,
    generate_slots,
)


def utc(y: int, m: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=UTC)


def request(
    timezone: str = "UTC",
    first: date = date(2030, 3, 5),
    last: date | None = None,
    start: time = time(9),
    end: time = time(17),
    slot_min: int = 60,
    weekdays: frozenset[int] | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        start_date=first,
        end_date=last or first,
        slot_min=slot_min,
        day_start=start,
        day_end=end,
        timezone=timezone,
        weekdays=weekdays,
    )


def slots(**kwargs: Any) -> list[Interval]:
    return list(generate_slots(request(**kwargs)))


def local(instant: datetime, timezone: str) -> datetime:
    """Naive wall-clock time of a UTC instant in ``timezone``."""
    return instant.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)


def wall(intervals: list[Interval], timezone: str) -> list[tuple[str, str]]:
    """Slots as local 'HH:MM' pairs, the way a person reads them."""
    return [
        (local(i.start_at, timezone).strftime("%H:%M"), local(i.end_at, timezone).strftime("%H:%M"))
        for i in intervals
    ]


# --- plain days ---------------------------------------------------------------------------


def test_back_to_back_slots_inside_working_hours() -> None:
    result = slots(timezone="UTC", start=time(9), end=time(12), slot_min=60)
    assert result == [
        Interval(utc(2030, 3, 5, 9), utc(2030, 3, 5, 10)),
        Interval(utc(2030, 3, 5, 10), utc(2030, 3, 5, 11)),
        Interval(utc(2030, 3, 5, 11), utc(2030, 3, 5, 12)),
    ]
    assert all(i.minutes == 60 for i in result)


@pytest.mark.parametrize(
    ("start", "end", "slot_min", "count"),
    [
        (time(9), time(17), 60, 8),
        (time(9), time(17), 90, 5),  # the 16:30 slot would end after 17:00
        (time(9), time(17), 480, 1),
        (time(9), time(17), 481, 0),
        (time(9, 15), time(9, 45), 15, 2),
        (time(0), time(23, 59), 5, 287),
        (time(0), time(23, 59), 1440, 0),
    ],
)
def test_slot_count_per_day(start: time, end: time, slot_min: int, count: int) -> None:
    assert len(slots(start=start, end=end, slot_min=slot_min)) == count


def test_kolkata_has_a_half_hour_offset_and_no_dst() -> None:
    result = slots(timezone="Asia/Kolkata", start=time(9), end=time(10, 30), slot_min=45)
    assert result == [
        Interval(utc(2030, 3, 5, 3, 30), utc(2030, 3, 5, 4, 15)),
        Interval(utc(2030, 3, 5, 4, 15), utc(2030, 3, 5, 5)),
    ]


# --- DST days with ordinary working hours ----------------------------------------------------

DST_CHANGES = [
    # zone, the change day, UTC hour of 09:00 the day before, UTC hour of 09:00 on the day
    pytest.param("Europe/Madrid", date(2030, 3, 31), 8, 7, id="madrid-spring-forward"),
    pytest.param("Europe/Madrid", date(2030, 10, 27), 7, 8, id="madrid-fall-back"),
    pytest.param("America/New_York", date(2030, 3, 10), 14, 13, id="new-york-spring-forward"),
    pytest.param("America/New_York", date(2030, 11, 3), 13, 14, id="new-york-fall-back"),
]


@pytest.mark.parametrize(("timezone", "change_day", "hour_before", "hour_on"), DST_CHANGES)
def test_working_hours_keep_their_local_time_across_a_dst_change(
    timezone: str, change_day: date, hour_before: int, hour_on: int
) -> None:
    day_before, day_after = change_day - timedelta(days=1), change_day + timedelta(days=1)
    result = slots(timezone=timezone, first=day_before, last=day_after, slot_min=60)

    per_day = Counter(local(i.start_at, timezone).date() for i in result)
    assert per_day == {day_before: 8, change_day: 8, day_after: 8}
    hours = [f"{h:02}:00" for h in range(9, 18)]
    assert wall(result, timezone) == list(pairwise(hours)) * 3

    def first_of(day: date) -> datetime:
        return min(i.start_at for i in result if local(i.start_at, timezone).date() == day)

    # The UTC instants move by one hour across the change, and stay moved.
    assert first_of(day_before) == utc(
        day_before.year, day_before.month, day_before.day, hour_before
    )
    assert first_of(change_day) == utc(change_day.year, change_day.month, change_day.day, hour_on)
    assert first_of(day_after) == utc(day_after.year, day_after.month, day_after.day, hour_on)
    assert all(i.end_at - i.start_at == timedelta(hours=1) for i in result)


# --- the night of the change ------------------------------------------------------------------

NIGHTS = [
    # zone, day, working hours, slot minutes, expected local slots, expected UTC starts
    pytest.param(
        "Europe/Madrid",
        date(2030, 3, 31),
        (time(1), time(4)),
        60,
        [("03:00", "04:00")],
        [utc(2030, 3, 31, 1)],
        id="madrid-spring-60",
    ),
    pytest.param(
        "Europe/Madrid",
        date(2030, 3, 31),
        (time(1), time(4)),
        30,
        [("01:00", "01:30"), ("03:00", "03:30"), ("03:30", "04:00")],
        [utc(2030, 3, 31, 0), utc(2030, 3, 31, 1), utc(2030, 3, 31, 1, 30)],
        id="madrid-spring-30",
    ),
    pytest.param(
        "America/New_York",
        date(2030, 3, 10),
        (time(1), time(4)),
        60,
        [("03:00", "04:00")],
        [utc(2030, 3, 10, 7)],
        id="new-york-spring-60",
    ),
    pytest.param(
        "Europe/Madrid",
        date(2030, 10, 27),
        (time(1), time(4)),
        60,
        [("03:00", "04:00")],
        [utc(2030, 10, 27, 2)],
        id="madrid-fall-60",
    ),
    pytest.param(
        "Europe/Madrid",
        date(2030, 10, 27),
        (time(1), time(4)),
        30,
        [("01:00", "01:30"), ("03:00", "03:30"), ("03:30", "04:00")],
        [utc(2030, 10, 26, 23), utc(2030, 10, 27, 2), utc(2030, 10, 27, 2, 30)],
        id="madrid-fall-30",
    ),
    pytest.param(
        "America/New_York",
        date(2030, 11, 3),
        (time(0), time(4)),
        60,
        [("02:00", "03:00"), ("03:00", "04:00")],
        [utc(2030, 11, 3, 7), utc(2030, 11, 3, 8)],
        id="new-york-fall-60",
    ),
    pytest.param(
        "Europe/Madrid",
        date(2030, 3, 31),
        (time(1, 30), time(5, 30)),
        120,
        [("03:30", "05:30")],  # 01:30-03:30 lasts one real hour: left out, not shifted
        [utc(2030, 3, 31, 1, 30)],
        id="madrid-spring-slot-across-the-gap",
    ),
    pytest.param(
        "Europe/Madrid",
        date(2030, 10, 27),
        (time(0), time(4)),
        240,
        [],  # 00:00-04:00 lasts five real hours
        [],
        id="madrid-fall-slot-across-the-repeat",
    ),
]


@pytest.mark.parametrize(
    ("timezone", "day", "hours", "slot_min", "expected_wall", "expected_utc"), NIGHTS
)
def test_night_of_the_change_has_no_invented_shifted_or_duplicate_slot(
    timezone: str,
    day: date,
    hours: tuple[time, time],
    slot_min: int,
    expected_wall: list[tuple[str, str]],
    expected_utc: list[datetime],
) -> None:
    result = slots(timezone=timezone, first=day, start=hours[0], end=hours[1], slot_min=slot_min)
    assert wall(result, timezone) == expected_wall
    assert [i.start_at for i in result] == expected_utc
    step = timedelta(minutes=slot_min)
    assert all(i.end_at - i.start_at == step for i in result)
    # None shifted: the wall clock shows exactly one slot length, on the working-hours grid.
    for i in result:
        start = local(i.start_at, timezone)
        assert local(i.end_at, timezone) - start == step
        assert (start - datetime.combine(day, hours[0])) % step == timedelta(0)
    # No duplicate: each local start appears once.
    starts = [local(i.start_at, timezone) for i in result]
    assert len(set(starts)) == len(starts)


@pytest.mark.parametrize(
    ("timezone", "day", "skipped_or_repeated"),
    [
        ("Europe/Madrid", date(2030, 3, 31), 2),
        ("Europe/Madrid", date(2030, 10, 27), 2),
        ("America/New_York", date(2030, 3, 10), 2),
        ("America/New_York", date(2030, 11, 3), 1),
    ],
)
def test_no_slot_starts_in_the_skipped_or_repeated_hour(
    timezone: str, day: date, skipped_or_repeated: int
) -> None:
    result = slots(timezone=timezone, first=day, start=time(0), end=time(6), slot_min=15)
    assert result, "the hours around the change still have slots"
    assert all(local(i.start_at, timezone).hour != skipped_or_repeated for i in result)
    assert all(local(i.end_at, timezone).hour != skipped_or_repeated for i in result)


def test_lord_howe_half_hour_dst_keeps_local_hours() -> None:
    # Lord Howe moves its clocks by 30 minutes: 02:00 -> 02:30 on 2030-10-06.
    result = slots(
        timezone="Australia/Lord_Howe",
        first=date(2030, 10, 5),
        last=date(2030, 10, 7),
        slot_min=60,
    )
    assert len(result) == 24
    assert {local(i.start_at, "Australia/Lord_Howe").time() for i in result} == {
        time(h) for h in range(9, 17)
    }
    tz = "Australia/Lord_Howe"
    firsts = [
        min(i.start_at for i in result if local(i.start_at, tz).date() == day)
        for day in (date(2030, 10, 5), date(2030, 10, 6), date(2030, 10, 7))
    ]
    # 09:00 is 22:30 UTC the day before at +10:30, and 22:00 UTC at +11:00.
    assert firsts == [utc(2030, 10, 4, 22, 30), utc(2030, 10, 5, 22), utc(2030, 10, 6, 22)]


# --- weekdays -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weekdays", "days"),
    [
        (None, [4, 5, 6, 7, 8, 9, 10]),
        (frozenset({1, 3, 5}), [4, 6, 8]),
        (frozenset({6, 7}), [9, 10]),
        (frozenset({7}), [10]),
        (frozenset({1, 2, 3, 4, 5, 6, 7}), [4, 5, 6, 7, 8, 9, 10]),
        (frozenset(), []),
    ],
)
def test_weekdays_filter_uses_iso_numbers(weekdays: frozenset[int] | None, days: list[int]) -> None:
    # 2030-03-04 is a Monday and 2030-03-10 a Sunday.
    result = slots(
        first=date(2030, 3, 4),
        last=date(2030, 3, 10),
        start=time(9),
        end=time(10),
        weekdays=weekdays,
    )
    assert [i.start_at for i in result] == [utc(2030, 3, d, 9) for d in days]


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message", "details"),
    [
        pytest.param(
            {"first": date(2030, 3, 5), "last": date(2030, 3, 4)},
            "endDate is before startDate.",
            {"startDate": "2030-03-05", "endDate": "2030-03-04"},
            id="end-before-start",
        ),
        pytest.param(
            {"first": date(2030, 1, 1), "last": date(2031, 1, 2)},
            f"At most {MAX_GENERATION_DAYS} days can be generated at once.",
            {"days": 367},
            id="too-many-days",
        ),
        pytest.param(
            {"slot_min": 4},
            f"slotDuration must be between 5 and {MAX_SLOT_MIN} minutes.",
            {"slotDuration": 4},
            id="slot-too-short",
        ),
        pytest.param(
            {"slot_min": 0},
            f"slotDuration must be between 5 and {MAX_SLOT_MIN} minutes.",
            {"slotDuration": 0},
            id="slot-zero",
        ),
        pytest.param(
            {"slot_min": MAX_SLOT_MIN + 1},
            f"slotDuration must be between 5 and {MAX_SLOT_MIN} minutes.",
            {"slotDuration": MAX_SLOT_MIN + 1},
            id="slot-too-long",
        ),
        pytest.param(
            {"start": time(17), "end": time(9)},
            "workingHours.end must be after workingHours.start.",
            {"start": "17:00:00", "end": "09:00:00"},
            id="end-hour-before-start-hour",
        ),
        pytest.param(
            {"start": time(9), "end": time(9)},
            "workingHours.end must be after workingHours.start.",
            {"start": "09:00:00", "end": "09:00:00"},
            id="empty-working-hours",
        ),
        pytest.param(
            {"weekdays": frozenset({0, 1})},
            "weekdays are ISO numbers from 1 (Monday) to 7 (Sunday).",
            {"weekdays": [0, 1]},
            id="weekday-zero",
        ),
        pytest.param(
            {"weekdays": frozenset({8, 1})},
            "weekdays are ISO numbers from 1 (Monday) to 7 (Sunday).",
            {"weekdays": [1, 8]},
            id="weekday-eight",
        ),
    ],
)
def test_invalid_request_is_refused(
    changes: dict[str, Any], message: str, details: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput) as info:
        slots(**changes)
    assert info.value.code == "invalid_input"
    assert info.value.message == message
    assert info.value.details == details


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"first": date(2030, 1, 1), "last": date(2030, 12, 31)}, id="365-days"),
        pytest.param({"first": date(2030, 1, 1), "last": date(2031, 1, 1)}, id="366-days"),
        pytest.param({"slot_min": 5}, id="shortest-slot"),
        pytest.param({"slot_min": MAX_SLOT_MIN}, id="longest-slot"),
        pytest.param({"start": time(0), "end": time(23, 59, 59)}, id="whole-day"),
        pytest.param({"weekdays": frozenset({1, 7})}, id="iso-weekdays"),
    ],
)
def test_boundary_request_is_valid(changes: dict[str, Any]) -> None:
    request(**changes).validate()


# --- property -----------------------------------------------------------------------------

# The day before each 2030 change of the clocks, so date ranges often cross one.
DAYS_BEFORE_CHANGES = {
    "Europe/Madrid": [date(2030, 3, 30), date(2030, 10, 26)],
    "America/New_York": [date(2030, 3, 9), date(2030, 11, 2)],
    "Australia/Lord_Howe": [date(2030, 4, 6), date(2030, 10, 5)],  # 30-minute change
    "Asia/Kolkata": [],
    "UTC": [],
}
LAST_DAY = date(2030, 12, 31)


@st.composite
def generation_requests(draw: st.DrawFn) -> GenerationRequest:
    timezone = draw(st.sampled_from(sorted(DAYS_BEFORE_CHANGES)))
    any_day = st.dates(date(2030, 1, 1), LAST_DAY)
    near_change = st.sampled_from(DAYS_BEFORE_CHANGES[timezone] or [LAST_DAY])
    first = draw(any_day | near_change)
    last = min(first + timedelta(days=draw(st.integers(0, 10))), LAST_DAY)
    # Often start at night, so the working hours take in the hours the clocks change.
    start_min = draw(st.integers(0, 3 * 60) | st.integers(0, 24 * 60 - 2))
    end_min = draw(st.integers(start_min + 1, 24 * 60 - 1))
    slot_min = draw(
        st.sampled_from([5, 15, 30, 45, 60, 90, 120, 150])
        | st.integers(5, 300)
        | st.integers(5, MAX_SLOT_MIN)
    )
    return GenerationRequest(
        start_date=first,
        end_date=last,
        slot_min=slot_min,
        day_start=time(start_min // 60, start_min % 60),
        day_end=time(end_min // 60, end_min % 60),
        timezone=timezone,
        weekdays=draw(st.none() | st.frozensets(st.integers(1, 7))),
    )


def _instants(wall_time: datetime, zone: ZoneInfo, offsets: set[timedelta]) -> set[datetime]:
    """Every UTC instant the zone shows as ``wall_time``, found without ``fold``."""
    found = set()
    for offset in offsets:
        instant = (wall_time - offset).replace(tzinfo=UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall_time:
            found.add(instant)
    return found


def _reference(req: GenerationRequest) -> list[Interval]:
    """Slots whose local start and end each name exactly one instant, one slot apart."""
    zone = ZoneInfo(req.timezone)
    step = timedelta(minutes=req.slot_min)
    expected = []
    day = req.start_date
    while day <= req.end_date:
        if req.weekdays is None or day.isoweekday() in req.weekdays:
            offsets = {
                datetime.combine(d, time(0), tzinfo=zone).replace(fold=fold).utcoffset()
                for d in (day, day + timedelta(days=1))
                for fold in (0, 1)
            }
            wall_time = datetime.combine(day, req.day_start)
            while wall_time + step <= datetime.combine(day, req.day_end):
                starts = _instants(wall_time, zone, offsets)
                ends = _instants(wall_time + step, zone, offsets)
                if len(starts) == len(ends) == 1:
                    (start_at,), (end_at,) = starts, ends
                    if end_at - start_at == step:
                        expected.append(Interval(start_at, end_at))
                wall_time += step
        day += timedelta(days=1)
    return expected


@settings(max_examples=400, deadline=None)
@given(req=generation_requests())
def test_generated_slots_are_exact_sorted_and_inside_local_working_hours(
    req: GenerationRequest,
) -> None:
    result = list(generate_slots(req))
    zone = ZoneInfo(req.timezone)
    step = timedelta(minutes=req.slot_min)

    for slot in result:
        assert slot.start_at.utcoffset() == timedelta(0)
        assert slot.end_at - slot.start_at == step
        start = slot.start_at.astimezone(zone).replace(tzinfo=None)
        day = start.date()
        assert req.start_date <= day <= req.end_date
        assert req.weekdays is None or day.isoweekday() in req.weekdays
        assert req.day_start <= start.time()
        assert start + step <= datetime.combine(day, req.day_end)
        # On the working-hours grid, and the wall clock shows one slot length (not shifted).
        assert (start - datetime.combine(day, req.day_start)) % step == timedelta(0)
        assert slot.end_at.astimezone(zone).replace(tzinfo=None) == start + step

    for before, after in pairwise(result):
        assert before.end_at <= after.start_at
    assert len({s.start_at for s in result}) == len(result)

    # On a day without a change every grid slot is there; overall, exactly the reference.
    days = (
        req.start_date + timedelta(days=n) for n in range((req.end_date - req.start_date).days + 1)
    )
    selected = [d for d in days if req.weekdays is None or d.isoweekday() in req.weekdays]
    per_day = Counter(s.start_at.astimezone(zone).date() for s in result)
    assert set(per_day) <= set(selected)
    full = (
        datetime.combine(req.start_date, req.day_end)
        - datetime.combine(req.start_date, req.day_start)
    ) // step
    for day in selected:
        midnight = datetime.combine(day, time(0), tzinfo=zone)
        next_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        if next_midnight.astimezone(UTC) - midnight.astimezone(UTC) == timedelta(days=1):
            assert per_day[day] == full
        else:
            assert per_day[day] <= full
    assert result == _reference(req)
