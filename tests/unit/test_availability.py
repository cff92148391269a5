"""The slot engine: availability minus busy times, by tables of cases, and across DST."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from boxoffice.domain.availability import (
    MAX_WINDOW_DAYS,
    AnyProviderSlot,
    DatedAvailability,
    Occupied,
    Schedule,
    Slot,
    SlotRules,
    WeeklyBlock,
    choose_provider,
    compute_slots,
    explain,
    local_slots,
    union_slots,
)
from boxoffice.domain.errors import InvalidInput, SlotUnavailable
from boxoffice.domain.timeslots import Interval

TUESDAY = date(2030, 3, 5)
NOW = datetime(2030, 3, 1, tzinfo=UTC)


def hm(text: str) -> int:
    """Minutes after midnight of 'HH:MM'."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def at(text: str, day: date = TUESDAY, timezone: str = "UTC") -> datetime:
    """The UTC instant of a local 'HH:MM' on ``day``."""
    local = datetime.combine(day, time()) + timedelta(minutes=hm(text))
    return local.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def iv(start: str, end: str, day: date = TUESDAY) -> Interval:
    return Interval(at(start, day), at(end, day))


def weekly(*blocks: str, weekday: int = TUESDAY.weekday()) -> tuple[WeeklyBlock, ...]:
    """Weekly blocks from 'HH:MM-HH:MM' strings, on one weekday."""
    return tuple(WeeklyBlock(weekday, hm(b[:5]), hm(b[6:])) for b in blocks)


def schedule(*blocks: str, timezone: str = "UTC", dated: Any = ()) -> Schedule:
    return Schedule(timezone, weekly(*blocks), tuple(dated))


def local_day(day: date, timezone: str) -> Interval:
    zone = ZoneInfo(timezone)
    return Interval(
        datetime.combine(day, time(), zone).astimezone(UTC),
        datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC),
    )


def hhmm_offset(instant: datetime) -> str:
    """'HH:MM+hh:mm': a wall-clock time with its UTC offset."""
    return instant.strftime("%H:%M") + instant.isoformat()[-6:]


def starts(slots: list[Slot], timezone: str = "UTC") -> list[str]:
    zone = ZoneInfo(timezone)
    return [s.start_at.astimezone(zone).strftime("%H:%M") for s in slots]


def day_slots(
    sched: Schedule,
    rules: SlotRules,
    day: date = TUESDAY,
    now: datetime = NOW,
    **busy: Any,
) -> list[Slot]:
    return compute_slots(sched, rules, local_day(day, sched.timezone), now, **busy)


# --- availability: weekly blocks and dated hours --------------------------------------------


def dated(start: str, end: str, replace: bool, day: date = TUESDAY) -> DatedAvailability:
    return DatedAvailability(day, hm(start), hm(end), replace)


@pytest.mark.parametrize(
    ("sched", "rules", "expected"),
    [
        pytest.param(
            schedule("09:00-12:00"), SlotRules(60), ["09:00", "10:00", "11:00"], id="basic-day"
        ),
        pytest.param(
            schedule("09:00-12:00"),
            SlotRules(60, step_min=30),
            ["09:00", "09:30", "10:00", "10:30", "11:00"],
            id="step-shorter-than-duration",
        ),
        pytest.param(
            schedule("09:00-12:00"),
            SlotRules(30, step_min=45),
            ["09:00", "09:45", "10:30", "11:15"],
            id="step-longer-than-duration",
        ),
        pytest.param(
            schedule("09:00-11:00", "13:00-15:00"),
            SlotRules(60),
            ["09:00", "10:00", "13:00", "14:00"],
            id="several-blocks",
        ),
        pytest.param(
            schedule("13:00-15:00", "09:00-11:00"),
            SlotRules(60),
            ["09:00", "10:00", "13:00", "14:00"],
            id="blocks-in-any-order",
        ),
        pytest.param(
            schedule("09:00-11:00", "10:00-12:00"),
            SlotRules(60),
            ["09:00", "10:00", "11:00"],
            id="overlapping-blocks-merge",
        ),
        pytest.param(
            schedule("09:00-10:30", "10:30-12:00"),
            SlotRules(60),
            ["09:00", "10:00", "11:00"],
            id="touching-blocks-merge-and-keep-one-grid",
        ),
        pytest.param(schedule("09:00-09:45"), SlotRules(60), [], id="block-shorter-than-duration"),
        pytest.param(
            schedule("09:10-10:40"),
            SlotRules(30),
            ["09:10", "09:40", "10:10"],
            id="grid-anchored-at-block-start",
        ),
        pytest.param(
            Schedule("UTC", weekly("09:00-12:00", weekday=2)), SlotRules(60), [], id="other-weekday"
        ),
        pytest.param(
            schedule("09:00-11:00", dated=[dated("14:00", "16:00", replace=False)]),
            SlotRules(60),
            ["09:00", "10:00", "14:00", "15:00"],
            id="dated-adds-hours",
        ),
        pytest.param(
            schedule("09:00-11:00", dated=[dated("10:00", "12:00", replace=False)]),
            SlotRules(60),
            ["09:00", "10:00", "11:00"],
            id="dated-add-overlapping-weekly-merges",
        ),
        pytest.param(
            schedule("09:00-11:00", dated=[dated("13:00", "15:00", replace=True)]),
            SlotRules(60),
            ["13:00", "14:00"],
            id="dated-replaces-weekly",
        ),
        pytest.param(
            schedule(
                "09:00-11:00",
                dated=[dated("13:00", "14:00", replace=True), dated("16:00", "17:00", True)],
            ),
            SlotRules(60),
            ["13:00", "16:00"],
            id="several-replace-entries",
        ),
        pytest.param(
            schedule(
                "09:00-11:00",
                dated=[dated("13:00", "14:00", replace=True), dated("16:00", "17:00", False)],
            ),
            SlotRules(60),
            ["13:00", "16:00"],
            id="replace-and-add",
        ),
        pytest.param(
            schedule("09:00-11:00", dated=[DatedAvailability.closed(TUESDAY)]),
            SlotRules(60),
            [],
            id="closed-day",
        ),
        pytest.param(
            schedule(
                "09:00-11:00",
                dated=[DatedAvailability.closed(TUESDAY), dated("18:00", "19:00", False)],
            ),
            SlotRules(60),
            ["18:00"],
            id="closed-day-with-added-hours",
        ),
        pytest.param(
            schedule("09:00-11:00", dated=[DatedAvailability.closed(TUESDAY + timedelta(7))]),
            SlotRules(60),
            ["09:00", "10:00"],
            id="closed-another-day",
        ),
        pytest.param(
            Schedule("UTC", dated=(dated("09:00", "10:00", replace=False),)),
            SlotRules(60),
            ["09:00"],
            id="dated-hours-without-weekly",
        ),
    ],
)
def test_availability(sched: Schedule, rules: SlotRules, expected: list[str]) -> None:
    result = day_slots(sched, rules)
    assert starts(result) == expected
    assert all(s.end_at - s.start_at == timedelta(minutes=rules.duration_min) for s in result)
    assert all(s.seats_left == 1 for s in result)


def test_blocks_touching_at_midnight_make_one_night() -> None:
    monday = TUESDAY - timedelta(days=1)
    night = Schedule(
        "UTC",
        (WeeklyBlock(monday.weekday(), hm("22:00"), 1440), WeeklyBlock(TUESDAY.weekday(), 0, 120)),
    )
    window = Interval(at("00:00", monday), at("00:00", TUESDAY + timedelta(1)))
    result = compute_slots(night, SlotRules(90, step_min=60), window, NOW)
    assert [(s.start_at, s.end_at) for s in result] == [
        (at("22:00", monday), at("23:30", monday)),
        (at("23:00", monday), at("00:30")),
        (at("00:00"), at("01:30")),
    ]


def test_slots_start_inside_the_window_and_the_grid_ignores_it() -> None:
    sched, rules = schedule("09:00-13:00"), SlotRules(60, step_min=30)
    window = Interval(at("10:15"), at("11:30"))
    assert starts(compute_slots(sched, rules, window, NOW)) == ["10:30", "11:00"]
    whole = day_slots(sched, rules)
    halves = compute_slots(sched, rules, Interval(at("00:00"), at("10:45")), NOW)
    halves += compute_slots(sched, rules, Interval(at("10:45"), at("23:59")), NOW)
    assert halves == whole


# --- busy times, buffers, notice, horizon ---------------------------------------------------


def occ(start: str, end: str, **kwargs: Any) -> Occupied:
    return Occupied(iv(start, end), **kwargs)


@pytest.mark.parametrize(
    ("rules", "busy", "expected"),
    [
        pytest.param(SlotRules(60), {}, ["09:00", "10:00", "11:00", "12:00", "13:00"], id="free"),
        pytest.param(
            SlotRules(60),
            {"time_off": [iv("10:30", "11:30")]},
            ["09:00", "12:00", "13:00"],
            id="time-off-partial-day",
        ),
        pytest.param(
            SlotRules(60),
            {"time_off": [Interval(at("00:00"), at("00:00", TUESDAY + timedelta(3)))]},
            [],
            id="time-off-whole-days",
        ),
        pytest.param(
            SlotRules(60),
            {"external_busy": [iv("09:00", "09:01")]},
            ["10:00", "11:00", "12:00", "13:00"],
            id="external-busy-one-minute",
        ),
        pytest.param(
            SlotRules(60),
            {"external_busy": [iv("08:00", "09:00"), iv("14:00", "15:00")]},
            ["09:00", "10:00", "11:00", "12:00", "13:00"],
            id="external-busy-touching-is-free",
        ),
        pytest.param(
            SlotRules(60),
            {"occupied": [occ("10:00", "11:00")]},
            ["09:00", "11:00", "12:00", "13:00"],
            id="booked",
        ),
        pytest.param(
            SlotRules(60, step_min=30),
            {"occupied": [occ("10:00", "11:00")]},
            ["09:00", "11:00", "11:30", "12:00", "12:30", "13:00"],
            id="booked-step-30",
        ),
        pytest.param(
            SlotRules(60, step_min=30, buffer_after_min=30),
            {"occupied": [occ("11:00", "12:00")]},
            ["09:00", "09:30", "12:00", "12:30", "13:00"],
            id="buffer-after-the-new-slot",
        ),
        pytest.param(
            SlotRules(60, step_min=30),
            {"occupied": [occ("11:00", "12:00", buffer_after_min=30)]},
            ["09:00", "09:30", "10:00", "12:30", "13:00"],
            id="buffer-after-the-booked-session",
        ),
        pytest.param(
            SlotRules(60, step_min=30, buffer_before_min=30),
            {"occupied": [occ("11:00", "12:00", buffer_after_min=30)]},
            ["09:00", "09:30", "10:00", "13:00"],
            id="buffers-add-up",
        ),
        pytest.param(
            SlotRules(60, step_min=60, buffer_before_min=15, buffer_after_min=15),
            {},
            ["09:00", "10:00", "11:00", "12:00", "13:00"],
            id="buffers-may-lie-outside-hours",
        ),
        pytest.param(
            SlotRules(60, step_min=30, buffer_after_min=15),
            {"time_off": [iv("12:00", "14:00")]},
            ["09:00", "09:30", "10:00", "10:30"],
            id="buffer-against-time-off",
        ),
        pytest.param(
            SlotRules(60, buffer_before_min=15),
            {"external_busy": [iv("08:00", "09:00")]},
            ["10:00", "11:00", "12:00", "13:00"],
            id="buffer-against-calendar",
        ),
        pytest.param(
            SlotRules(60),
            {
                "occupied": [occ("09:00", "10:00"), occ("11:00", "12:00")],
                "external_busy": [iv("12:30", "12:45")],
            },
            ["10:00", "13:00"],
            id="everything-together",
        ),
    ],
)
def test_busy_times(rules: SlotRules, busy: dict[str, Any], expected: list[str]) -> None:
    assert starts(day_slots(schedule("09:00-14:00"), rules, **busy)) == expected


@pytest.mark.parametrize(
    ("now", "rules", "expected"),
    [
        pytest.param(at("09:10"), SlotRules(60), ["10:00", "11:00", "12:00"], id="past"),
        pytest.param(at("10:00"), SlotRules(60), ["10:00", "11:00", "12:00"], id="starting-now"),
        pytest.param(
            at("09:10"), SlotRules(60, min_notice_min=60), ["11:00", "12:00"], id="notice"
        ),
        pytest.param(
            at("09:00"), SlotRules(60, min_notice_min=60), ["10:00", "11:00", "12:00"], id="exact"
        ),
        pytest.param(
            at("09:00", TUESDAY - timedelta(1)),
            SlotRules(60, min_notice_min=24 * 60 + 90),
            ["11:00", "12:00"],
            id="notice-over-a-day",
        ),
        pytest.param(at("23:59"), SlotRules(60), [], id="day-over"),
    ],
)
def test_past_and_minimum_notice(now: datetime, rules: SlotRules, expected: list[str]) -> None:
    assert starts(day_slots(schedule("09:00-13:00"), rules, now=now)) == expected


NEW_YORK = "America/New_York"


@pytest.mark.parametrize(
    ("now", "horizon_days", "open_days"),
    [
        # Saturday 22:00 in New York is already Sunday in UTC: the horizon counts local days.
        pytest.param(at("22:00", date(2030, 3, 2), NEW_YORK), 2, 2, id="local-today"),
        pytest.param(at("22:00", date(2030, 3, 2), NEW_YORK), 3, 3, id="last-day-whole"),
        pytest.param(at("08:00", date(2030, 3, 3), NEW_YORK), 0, 1, id="today-only"),
        pytest.param(at("08:00", date(2030, 3, 3), NEW_YORK), None, 7, id="no-horizon"),
    ],
)
def test_horizon_counts_whole_local_days(
    now: datetime, horizon_days: int | None, open_days: int
) -> None:
    every_day = Schedule(
        NEW_YORK, tuple(WeeklyBlock(d, hm("09:00"), hm("12:00")) for d in range(7))
    )
    window = Interval(now, now + timedelta(days=7))
    result = compute_slots(every_day, SlotRules(180, horizon_days=horizon_days), window, now)
    assert len(result) == open_days


# --- capacity and group sessions -----------------------------------------------------------


YOGA = SlotRules(60, capacity=5, key="yoga")


@pytest.mark.parametrize(
    ("rules", "busy", "expected"),
    [
        pytest.param(YOGA, {}, [("09:00", 5), ("10:00", 5), ("11:00", 5)], id="no-session-yet"),
        pytest.param(
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=3, capacity=5, key="yoga")]},
            [("09:00", 5), ("10:00", 2), ("11:00", 5)],
            id="join-the-session",
        ),
        pytest.param(
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=3, capacity=10, key="yoga")]},
            [("09:00", 5), ("10:00", 7), ("11:00", 5)],
            id="session-capacity-wins",
        ),
        pytest.param(
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=0, capacity=5, key="yoga")]},
            [("09:00", 5), ("10:00", 5), ("11:00", 5)],
            id="empty-session",
        ),
        pytest.param(
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=5, capacity=5, key="yoga")]},
            [("09:00", 5), ("11:00", 5)],
            id="session-full",
        ),
        pytest.param(
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=1, capacity=5, key="pilates")]},
            [("09:00", 5), ("11:00", 5)],
            id="another-service",
        ),
        pytest.param(
            SlotRules(60, step_min=30, capacity=5, key="yoga"),
            {"occupied": [occ("10:00", "11:00", seats=1, capacity=5, key="yoga")]},
            [("09:00", 5), ("10:00", 4), ("11:00", 5)],
            id="overlapping-but-not-equal-blocks",
        ),
        pytest.param(
            YOGA,
            {
                "occupied": [
                    occ("10:00", "11:00", seats=1, capacity=5, key="yoga"),
                    occ("10:30", "10:45", key="pilates"),
                ]
            },
            [("09:00", 5), ("11:00", 5)],
            id="session-plus-another-booking",
        ),
        pytest.param(
            SlotRules(60, capacity=5, key="yoga", buffer_after_min=15),
            {"occupied": [occ("10:00", "11:00", seats=1, capacity=5, key="yoga")]},
            [("10:00", 4), ("11:00", 5)],
            id="buffered-session-blocks-its-neighbours",
        ),
        pytest.param(
            YOGA,
            {
                "occupied": [occ("10:00", "11:00", seats=1, capacity=5, key="yoga")],
                "external_busy": [iv("10:15", "10:30")],
            },
            [("09:00", 5), ("11:00", 5)],
            id="calendar-busy-over-a-session",
        ),
        pytest.param(
            SlotRules(60, capacity=5),
            {"occupied": [occ("10:00", "11:00", seats=1, capacity=5)]},
            [("09:00", 5), ("11:00", 5)],
            id="no-key-no-joining",
        ),
    ],
)
def test_capacity(rules: SlotRules, busy: dict[str, Any], expected: list[tuple[str, int]]) -> None:
    result = day_slots(schedule("09:00-12:00"), rules, **busy)
    assert list(zip(starts(result), [s.seats_left for s in result], strict=True)) == expected


# --- DST: rules are expanded per local day ---------------------------------------------------

MADRID = "Europe/Madrid"
EVERY_DAY_9_TO_5 = Schedule(
    MADRID, tuple(WeeklyBlock(d, hm("09:00"), hm("17:00")) for d in range(7))
)


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [
        pytest.param(date(2030, 3, 30), 8, id="saturday-before-spring-forward"),
        pytest.param(date(2030, 3, 31), 7, id="spring-forward-sunday"),
        pytest.param(date(2030, 4, 1), 7, id="monday-after-spring-forward"),
        pytest.param(date(2030, 10, 26), 7, id="saturday-before-fall-back"),
        pytest.param(date(2030, 10, 27), 8, id="fall-back-sunday"),
        pytest.param(date(2030, 10, 28), 8, id="monday-after-fall-back"),
    ],
)
def test_working_hours_keep_their_local_times_across_dst(day: date, utc_hour: int) -> None:
    result = day_slots(EVERY_DAY_9_TO_5, SlotRules(60), day=day)
    assert starts(result, MADRID) == [f"{h:02}:00" for h in range(9, 17)]
    assert result[0].start_at == datetime.combine(day, time(utc_hour), UTC)
    assert all(s.end_at - s.start_at == timedelta(hours=1) for s in result)


@pytest.mark.parametrize(
    ("day", "block", "rules", "expected"),
    [
        pytest.param(
            date(2030, 3, 31),
            "01:00-04:00",
            SlotRules(30),
            ["01:00+01:00", "01:30+01:00", "03:00+02:00", "03:30+02:00"],
            id="skipped-hour-is-not-invented",
        ),
        pytest.param(
            date(2030, 3, 31),
            "01:00-04:00",
            SlotRules(60, step_min=30),
            ["01:00+01:00", "01:30+01:00", "03:00+02:00"],
            id="slots-over-the-gap-last-real-hours",
        ),
        pytest.param(
            date(2030, 3, 31),
            "02:30-05:00",
            SlotRules(60),
            ["03:00+02:00", "04:00+02:00"],
            id="start-in-the-gap-is-the-transition",
        ),
        pytest.param(
            date(2030, 3, 31), "02:00-02:45", SlotRules(15), [], id="block-inside-the-gap"
        ),
        pytest.param(
            date(2030, 3, 31),
            "00:00-02:30",
            SlotRules(60),
            ["00:00+01:00", "01:00+01:00"],
            id="end-in-the-gap-is-the-transition",
        ),
        pytest.param(
            date(2030, 10, 27),
            "01:00-04:00",
            SlotRules(60),
            ["01:00+02:00", "02:00+02:00", "02:00+01:00", "03:00+01:00"],
            id="repeated-hour-is-worked-twice",
        ),
        pytest.param(
            date(2030, 10, 27),
            "02:30-05:00",
            SlotRules(60, step_min=30),
            ["02:30+01:00", "03:00+01:00", "03:30+01:00", "04:00+01:00"],
            id="start-in-the-repeated-hour-is-the-later-one",
        ),
        pytest.param(
            date(2030, 10, 27),
            "00:00-02:30",
            SlotRules(60, step_min=30),
            ["00:00+02:00", "00:30+02:00", "01:00+02:00", "01:30+02:00"],
            id="end-in-the-repeated-hour-is-the-earlier-one",
        ),
    ],
)
def test_night_blocks_on_dst_days(
    day: date, block: str, rules: SlotRules, expected: list[str]
) -> None:
    sched = Schedule(MADRID, weekly(block, weekday=day.weekday()))
    result = day_slots(sched, rules, day=day)
    zone = ZoneInfo(MADRID)
    assert [hhmm_offset(s.start_at.astimezone(zone)) for s in result] == expected
    assert all(s.end_at - s.start_at == timedelta(minutes=rules.duration_min) for s in result)
    assert len({s.start_at for s in result}) == len(result)


@pytest.mark.parametrize(
    ("timezone", "change_day"),
    [
        pytest.param(MADRID, date(2030, 3, 31), id="madrid-spring"),
        pytest.param(MADRID, date(2030, 10, 27), id="madrid-fall"),
        pytest.param(NEW_YORK, date(2030, 3, 10), id="new-york-spring"),
        pytest.param(NEW_YORK, date(2030, 11, 3), id="new-york-fall"),
        pytest.param("America/Santiago", date(2030, 4, 7), id="santiago-midnight-fall"),
        pytest.param("America/Santiago", date(2030, 9, 8), id="santiago-midnight-spring"),
        pytest.param("Australia/Lord_Howe", date(2030, 4, 7), id="lord-howe-half-hour-fall"),
        pytest.param("Australia/Lord_Howe", date(2030, 10, 6), id="lord-howe-half-hour-spring"),
    ],
)
@pytest.mark.parametrize("step_min", [15, 25, 45])
def test_night_shift_across_a_transition(timezone: str, change_day: date, step_min: int) -> None:
    """22:00-06:00 every night: real lengths, distinct instants, wall times inside the rules."""
    sched = Schedule(
        timezone,
        tuple(WeeklyBlock(d, *hours) for d in range(7) for hours in ((0, 360), (1320, 1440))),
    )
    window = Interval(
        at("00:00", change_day - timedelta(2)), at("00:00", change_day + timedelta(2))
    )
    result = compute_slots(sched, SlotRules(45, step_min=step_min), window, NOW)
    assert result
    assert all(s.end_at - s.start_at == timedelta(minutes=45) for s in result)
    assert not [start for start, n in Counter(s.start_at for s in result).items() if n > 1]
    zone = ZoneInfo(timezone)
    for slot in result:
        for minute in range(45):
            local = (slot.start_at + timedelta(minutes=minute)).astimezone(zone)
            assert local.hour >= 22 or local.hour < 6, (slot, minute)


def test_a_group_session_given_in_local_time_in_the_repeated_hour_can_be_joined() -> None:
    fall_back = date(2030, 10, 27)
    sched = Schedule(MADRID, weekly("01:00-04:00", weekday=fall_back.weekday()))
    second_two_am = datetime(2030, 10, 27, 2, tzinfo=ZoneInfo(MADRID), fold=1)
    session = Occupied(
        Interval(second_two_am, second_two_am + timedelta(hours=1)), 2, 5, key="yoga"
    )
    result = day_slots(sched, YOGA, day=fall_back, occupied=[session])
    assert [
        (hhmm_offset(s.start_at.astimezone(ZoneInfo(MADRID))), s.seats_left) for s in result
    ] == [
        ("01:00+02:00", 5),
        ("02:00+02:00", 5),
        ("02:00+01:00", 3),
        ("03:00+01:00", 5),
    ]


# --- explain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "now", "rules", "busy", "reason"),
    [
        pytest.param(at("10:00"), NOW, SlotRules(60, step_min=30), {}, None, id="offered"),
        pytest.param(
            at("10:00").astimezone(ZoneInfo(NEW_YORK)),
            NOW,
            SlotRules(60, step_min=30),
            {},
            None,
            id="offered-asked-in-another-zone",
        ),
        pytest.param(at("10:15"), NOW, SlotRules(60, 30), {}, "not_on_grid", id="off-grid"),
        pytest.param(
            at("10:00") + timedelta(seconds=30), NOW, SlotRules(60), {}, "not_on_grid", id="secs"
        ),
        pytest.param(at("12:30"), NOW, SlotRules(60, 30), {}, "outside_hours", id="runs-late"),
        pytest.param(at("08:00"), NOW, SlotRules(60), {}, "outside_hours", id="too-early"),
        pytest.param(
            at("10:00", TUESDAY + timedelta(1)), NOW, SlotRules(60), {}, "outside_hours", id="wed"
        ),
        pytest.param(at("10:00"), at("11:00"), SlotRules(60), {}, "too_soon", id="past"),
        pytest.param(at("08:00"), at("11:00"), SlotRules(60), {}, "too_soon", id="past-first"),
        pytest.param(
            at("10:00"), at("09:30"), SlotRules(60, min_notice_min=60), {}, "too_soon", id="notice"
        ),
        pytest.param(
            at("10:00"), NOW, SlotRules(60, horizon_days=2), {}, "too_far_ahead", id="horizon"
        ),
        pytest.param(
            at("08:00"), NOW, SlotRules(60, horizon_days=2), {}, "too_far_ahead", id="far-first"
        ),
        pytest.param(
            at("10:00"), NOW, SlotRules(60, horizon_days=4), {}, None, id="last-horizon-day"
        ),
        pytest.param(
            at("10:00"),
            NOW,
            SlotRules(60),
            {"time_off": [iv("10:30", "11:00")], "external_busy": [iv("10:00", "11:00")]},
            "time_off",
            id="time-off-first",
        ),
        pytest.param(
            at("10:00"),
            NOW,
            SlotRules(60),
            {"external_busy": [iv("10:59", "11:00")], "occupied": [occ("10:00", "11:00")]},
            "busy_in_calendar",
            id="calendar-before-bookings",
        ),
        pytest.param(
            at("10:00"),
            NOW,
            SlotRules(60, buffer_after_min=30),
            {"external_busy": [iv("11:00", "11:15")]},
            "busy_in_calendar",
            id="buffer-reaches-calendar",
        ),
        pytest.param(
            at("10:00"), NOW, SlotRules(60), {"occupied": [occ("10:30", "11:30")]}, "fully_booked"
        ),
        pytest.param(
            at("10:00"),
            NOW,
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=5, capacity=5, key="yoga")]},
            "fully_booked",
            id="group-full",
        ),
        pytest.param(
            at("10:00"),
            NOW,
            YOGA,
            {"occupied": [occ("10:00", "11:00", seats=4, capacity=5, key="yoga")]},
            None,
            id="group-last-seat",
        ),
    ],
)
def test_explain(
    when: datetime, now: datetime, rules: SlotRules, busy: dict[str, Any], reason: str | None
) -> None:
    sched = schedule("09:00-13:00")
    assert explain(sched, rules, when, now, **busy) == reason
    offered = compute_slots(sched, rules, Interval(when, when + timedelta(minutes=1)), now, **busy)
    assert (reason is None) == (when in {s.start_at for s in offered})


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sched",
    [
        pytest.param(Schedule("Mars/Olympus"), id="unknown-zone"),
        pytest.param(Schedule(""), id="empty-zone"),
        pytest.param(Schedule("../etc/passwd"), id="path-zone"),
        pytest.param(Schedule("UTC", (WeeklyBlock(7, 0, 60),)), id="weekday-7"),
        pytest.param(Schedule("UTC", (WeeklyBlock(-1, 0, 60),)), id="weekday-negative"),
        pytest.param(Schedule("UTC", (WeeklyBlock(0, 600, 600),)), id="empty-block"),
        pytest.param(Schedule("UTC", (WeeklyBlock(0, 700, 600),)), id="inverted-block"),
        pytest.param(Schedule("UTC", (WeeklyBlock(0, 600, 1441),)), id="past-midnight"),
        pytest.param(Schedule("UTC", (WeeklyBlock(0, -1, 60),)), id="before-midnight"),
        pytest.param(
            Schedule("UTC", dated=(DatedAvailability(TUESDAY, 600, 600),)), id="empty-dated"
        ),
        pytest.param(
            Schedule("UTC", dated=(DatedAvailability(TUESDAY, 0, 0),)), id="closed-must-replace"
        ),
        pytest.param(
            Schedule("UTC", dated=(DatedAvailability(TUESDAY, 900, 1500, True),)), id="dated-late"
        ),
    ],
)
def test_invalid_schedule(sched: Schedule) -> None:
    with pytest.raises(InvalidInput):
        sched.validate()
    with pytest.raises(InvalidInput):
        compute_slots(sched, SlotRules(60), local_day(TUESDAY, "UTC"), NOW)
    with pytest.raises(InvalidInput):
        explain(sched, SlotRules(60), at("10:00"), NOW)


@pytest.mark.parametrize(
    "rules",
    [
        SlotRules(0),
        SlotRules(1441),
        SlotRules(60, step_min=0),
        SlotRules(60, buffer_before_min=-1),
        SlotRules(60, buffer_after_min=-5),
        SlotRules(60, min_notice_min=-1),
        SlotRules(60, horizon_days=-1),
        SlotRules(60, capacity=0),
    ],
)
def test_invalid_rules(rules: SlotRules) -> None:
    with pytest.raises(InvalidInput):
        day_slots(schedule("09:00-12:00"), rules)


@pytest.mark.parametrize(
    ("window", "now"),
    [
        pytest.param(Interval(at("12:00"), at("09:00")), NOW, id="inverted"),
        pytest.param(Interval(at("12:00"), at("12:00")), NOW, id="empty"),
        pytest.param(
            Interval(at("00:00"), at("00:00") + timedelta(days=MAX_WINDOW_DAYS + 1)), NOW, id="long"
        ),
        pytest.param(Interval(at("00:00"), at("12:00")), NOW.replace(tzinfo=None), id="naive-now"),
        pytest.param(
            Interval(at("00:00").replace(tzinfo=None), at("12:00")), NOW, id="naive-window"
        ),
    ],
)
def test_invalid_window(window: Interval, now: datetime) -> None:
    with pytest.raises(InvalidInput):
        compute_slots(schedule("09:00-12:00"), SlotRules(60), window, now)


def test_explain_refuses_naive_instants() -> None:
    with pytest.raises(InvalidInput):
        explain(schedule("09:00-12:00"), SlotRules(60), at("10:00").replace(tzinfo=None), NOW)


# --- display ---------------------------------------------------------------------------------


def test_local_slots_show_the_same_instants_in_any_zone() -> None:
    result = day_slots(
        Schedule(MADRID, weekly("01:00-04:00", weekday=6)), SlotRules(60), date(2030, 10, 27)
    )
    in_madrid = local_slots(result, MADRID)
    in_new_york = local_slots(result, NEW_YORK)
    assert [hhmm_offset(s.local_start) for s in in_madrid] == [
        "01:00+02:00",
        "02:00+02:00",
        "02:00+01:00",
        "03:00+01:00",
    ]
    assert [s.local_start.strftime("%H:%M") for s in in_new_york] == [
        "19:00",
        "20:00",
        "21:00",
        "22:00",
    ]
    assert [s.slot for s in in_madrid] == [s.slot for s in in_new_york] == result
    for shown in in_madrid + in_new_york:
        # astimezone: an aware time in a repeated hour never equals one of another zone
        assert shown.local_start.astimezone(UTC) == shown.slot.start_at
        assert shown.local_end.astimezone(UTC) == shown.slot.end_at
    with pytest.raises(InvalidInput):
        local_slots(result, "Nowhere/Land")


# --- any provider ----------------------------------------------------------------------------


def slot(start: str, end: str, seats: int = 1) -> Slot:
    return Slot(at(start), at(end), seats)


def test_union_slots_keeps_which_providers_are_free() -> None:
    merged = union_slots(
        {
            "ana": [slot("09:00", "10:00"), slot("10:00", "11:00")],
            "bo": [slot("11:00", "12:00"), slot("10:00", "11:00", 3), slot("10:00", "10:30")],
            "cy": [],
        }
    )
    assert merged == [
        AnyProviderSlot(at("09:00"), at("10:00"), 1, ("ana",)),
        AnyProviderSlot(at("10:00"), at("10:30"), 1, ("bo",)),
        AnyProviderSlot(at("10:00"), at("11:00"), 3, ("ana", "bo")),
        AnyProviderSlot(at("11:00"), at("12:00"), 1, ("bo",)),
    ]
    assert union_slots({}) == []


@pytest.mark.parametrize(
    ("free", "counts", "last", "order", "chosen"),
    [
        pytest.param(["a", "b", "c"], {"a": 2, "b": 1, "c": 3}, None, None, "b", id="fewest"),
        pytest.param(["a", "b", "c"], {"a": 2, "b": 1, "c": 3}, "b", None, "b", id="fewest-wins"),
        pytest.param(["a", "b", "c"], {}, None, None, "a", id="first-ever"),
        pytest.param(["a", "b", "c"], {}, "a", None, "b", id="next"),
        pytest.param(["a", "b", "c"], {}, "c", None, "a", id="wraps"),
        pytest.param(["a", "b", "c"], {}, "z", None, "a", id="unknown-last"),
        pytest.param(["a", "c"], {}, "b", ["a", "b", "c", "d"], "c", id="last-not-free"),
        pytest.param(["a", "c"], {}, "c", ["a", "b", "c", "d"], "a", id="order-wraps"),
        pytest.param(["c", "a"], {"c": 1}, "d", ["a", "b", "c", "d"], "a", id="fewest-then-ring"),
        pytest.param(["x"], {}, "a", ["a"], "x", id="not-in-order"),
    ],
)
def test_choose_provider(
    free: list[str], counts: dict[str, int], last: str | None, order: list[str] | None, chosen: str
) -> None:
    assert choose_provider(free, counts, last, order) == chosen


def test_choose_provider_spreads_bookings_evenly() -> None:
    counts: Counter[str] = Counter()
    last: str | None = None
    for _ in range(9):
        last = choose_provider(["a", "b", "c"], counts, last)
        counts[last] += 1
    assert counts == {"a": 3, "b": 3, "c": 3}


def test_choose_provider_needs_someone_free() -> None:
    with pytest.raises(SlotUnavailable):
        choose_provider([], {}, None)
