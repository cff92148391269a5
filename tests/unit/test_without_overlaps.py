"""Leaving out candidate slots that overlap taken intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.domain.timeslots import Interval, without_overlaps

BASE = datetime(2030, 3, 5, 9, 0, tzinfo=UTC)


def iv(start_min: int, end_min: int) -> Interval:
    """An interval given in minutes after BASE."""
    return Interval(BASE + timedelta(minutes=start_min), BASE + timedelta(minutes=end_min))


def test_overlaps_is_half_open() -> None:
    assert iv(0, 60).overlaps(iv(30, 90))
    assert iv(0, 60).overlaps(iv(0, 60))
    assert not iv(0, 60).overlaps(iv(60, 120))
    assert not iv(60, 120).overlaps(iv(0, 60))
    assert iv(0, 60).minutes == 60


@pytest.mark.parametrize(
    ("candidates", "taken", "kept"),
    [
        pytest.param([iv(0, 60), iv(60, 120)], [], [iv(0, 60), iv(60, 120)], id="nothing-taken"),
        pytest.param([], [iv(0, 60)], [], id="no-candidates"),
        pytest.param([iv(60, 120)], [iv(0, 60), iv(120, 180)], [iv(60, 120)], id="touching-both"),
        pytest.param([iv(60, 120)], [iv(30, 90)], [], id="overlaps-the-start"),
        pytest.param([iv(60, 120)], [iv(90, 150)], [], id="overlaps-the-end"),
        pytest.param([iv(60, 120)], [iv(70, 80)], [], id="contains-taken"),
        pytest.param([iv(60, 120)], [iv(0, 600)], [], id="inside-taken"),
        pytest.param([iv(60, 120)], [iv(60, 120)], [], id="equal"),
        pytest.param([iv(60, 120)], [iv(119, 200)], [], id="one-minute-overlap"),
        pytest.param(
            [iv(30, 90), iv(120, 180)],
            [iv(0, 60), iv(60, 120)],
            [iv(120, 180)],
            id="touching-taken-merged",
        ),
        pytest.param(
            [iv(200, 250), iv(300, 360)],
            [iv(0, 300), iv(10, 20)],
            [iv(300, 360)],
            id="long-taken-outlasts-a-later-short-one",
        ),
        pytest.param(
            [iv(200, 250)],
            [iv(10, 20), iv(0, 300), iv(250, 260)],
            [],
            id="taken-unsorted",
        ),
        pytest.param(
            [iv(240, 300), iv(0, 60), iv(120, 180), iv(60, 120)],
            [iv(100, 130)],
            [iv(0, 60), iv(240, 300)],
            id="candidates-unsorted-result-sorted",
        ),
        pytest.param(
            [iv(0, 60), iv(0, 60), iv(0, 30)],
            [iv(60, 90)],
            [iv(0, 60), iv(0, 60), iv(0, 30)],
            id="duplicate-candidates-kept",
        ),
        pytest.param(
            [iv(0, 60), iv(60, 120), iv(120, 180), iv(180, 240)],
            [iv(70, 80), iv(200, 210)],
            [iv(0, 60), iv(120, 180)],
            id="gaps-between-taken",
        ),
        pytest.param(
            [iv(0, 30), iv(100, 130), iv(500, 530)],
            [iv(40, 50), iv(60, 70), iv(80, 90)],
            [iv(0, 30), iv(100, 130), iv(500, 530)],
            id="all-in-gaps",
        ),
    ],
)
def test_without_overlaps(
    candidates: list[Interval], taken: list[Interval], kept: list[Interval]
) -> None:
    assert without_overlaps(candidates, taken) == kept


def test_accepts_any_iterables() -> None:
    candidates = (iv(m, m + 30) for m in range(0, 180, 30))
    taken = iter([iv(40, 50)])
    assert without_overlaps(candidates, taken) == [
        iv(0, 30),
        iv(60, 90),
        iv(90, 120),
        iv(120, 150),
        iv(150, 180),
    ]


def brute_force(candidates: list[Interval], taken: list[Interval]) -> list[Interval]:
    """The O(n*m) reference: keep what overlaps nothing, in time order."""
    free = [c for c in candidates if not any(c.overlaps(t) for t in taken)]
    return sorted(free, key=lambda i: i.start_at)


intervals = st.builds(
    lambda start, length: iv(start, start + length),
    st.integers(0, 24 * 60),
    st.integers(1, 240),
)


@settings(max_examples=500, deadline=None)
@given(
    candidates=st.lists(intervals, max_size=30),
    taken=st.lists(intervals, max_size=15),
)
def test_without_overlaps_is_exact(candidates: list[Interval], taken: list[Interval]) -> None:
    result = without_overlaps(candidates, taken)
    for slot in result:
        assert not any(slot.overlaps(t) for t in taken)
    left_out = list(candidates)
    for slot in result:
        left_out.remove(slot)
    for slot in left_out:
        assert any(slot.overlaps(t) for t in taken)
    assert result == brute_force(candidates, taken)
