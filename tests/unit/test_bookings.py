"""Booking lifecycle (status state machine) and the cancellation refund policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.domain.bookings import (
    DEFAULT_REFUND_POLICY,
    SEAT_HOLDING,
    BookingStatus,
    PaymentStatus,
    RefundTier,
    check_transition,
    initial_status,
    refund_amount,
    refund_percent,
    validate_policy,
)
from boxoffice.domain.errors import IllegalTransition, InvalidInput

S = BookingStatus
STARTS_AT = datetime(2030, 3, 5, 9, 0, tzinfo=UTC)
BEFORE_START = STARTS_AT - timedelta(hours=1)
AFTER_START = STARTS_AT + timedelta(hours=1)

# The lifecycle, written out independently of the module's table.
ALLOWED = [
    (S.DRAFT, S.PENDING),
    (S.DRAFT, S.CANCELLED),
    (S.DRAFT, S.CONFIRMED),
    (S.PENDING, S.CONFIRMED),
    (S.PENDING, S.CANCELLED),
    (S.CONFIRMED, S.CANCELLED),
    (S.CONFIRMED, S.COMPLETED),
    (S.CONFIRMED, S.NO_SHOW),
    (S.COMPLETED, S.NO_SHOW),
    (S.NO_SHOW, S.COMPLETED),
]
DISALLOWED = [pair for pair in product(S, S) if pair not in ALLOWED]


def _ids(pair: tuple[BookingStatus, BookingStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


# --- state machine ----------------------------------------------------------------------


def test_the_tables_cover_every_pair_of_statuses() -> None:
    assert len(ALLOWED) + len(DISALLOWED) == len(S) ** 2 == 36


@pytest.mark.parametrize("pair", ALLOWED, ids=_ids)
def test_allowed_transition_passes_once_the_session_has_started(
    pair: tuple[BookingStatus, BookingStatus],
) -> None:
    current, target = pair
    check_transition(current, target, starts_at=STARTS_AT, now=AFTER_START)


@pytest.mark.parametrize(
    "pair",
    [p for p in ALLOWED if p[1] not in {S.COMPLETED, S.NO_SHOW}],
    ids=_ids,
)
def test_transition_that_does_not_need_the_session_passes_before_it(
    pair: tuple[BookingStatus, BookingStatus],
) -> None:
    current, target = pair
    check_transition(current, target, starts_at=STARTS_AT, now=BEFORE_START)


@pytest.mark.parametrize("now", [BEFORE_START, AFTER_START], ids=["before-start", "after-start"])
@pytest.mark.parametrize("pair", DISALLOWED, ids=_ids)
def test_disallowed_transition_is_refused_naming_both_states(
    pair: tuple[BookingStatus, BookingStatus], now: datetime
) -> None:
    current, target = pair
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target, starts_at=STARTS_AT, now=now)
    assert info.value.code == "illegal_transition"
    assert info.value.message == f"A {current.value} booking cannot become {target.value}."
    assert str(info.value) == info.value.message
    assert info.value.details == {"from": current.value, "to": target.value}


def test_cancelled_booking_cannot_be_confirmed() -> None:
    with pytest.raises(IllegalTransition, match=r"^A cancelled booking cannot become confirmed\.$"):
        check_transition(S.CANCELLED, S.CONFIRMED, starts_at=STARTS_AT, now=BEFORE_START)


@pytest.mark.parametrize("target", [S.COMPLETED, S.NO_SHOW])
@pytest.mark.parametrize(
    "now",
    [STARTS_AT - timedelta(days=3), STARTS_AT - timedelta(seconds=1)],
    ids=["days-before", "1s-before"],
)
def test_outcome_is_refused_before_the_session_starts(target: BookingStatus, now: datetime) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(S.CONFIRMED, target, starts_at=STARTS_AT, now=now)
    assert info.value.message == (
        f"A booking cannot become {target.value} before its session starts."
    )
    assert info.value.details == {
        "from": "confirmed",
        "to": target.value,
        "startsAt": STARTS_AT.isoformat(),
    }


@pytest.mark.parametrize("target", [S.COMPLETED, S.NO_SHOW])
def test_outcome_is_allowed_from_the_exact_start(target: BookingStatus) -> None:
    check_transition(S.CONFIRMED, target, starts_at=STARTS_AT, now=STARTS_AT)


@pytest.mark.parametrize(
    ("price_minor", "payment_required", "expected"),
    [
        (0, False, (S.CONFIRMED, PaymentStatus.NOT_REQUIRED)),
        (1, True, (S.PENDING, PaymentStatus.PENDING)),
        (4500, True, (S.PENDING, PaymentStatus.PENDING)),
        # Priced, but the organisation takes no payments online: paid at the venue.
        (4500, False, (S.CONFIRMED, PaymentStatus.PENDING)),
    ],
)
def test_initial_status(
    price_minor: int, payment_required: bool, expected: tuple[BookingStatus, PaymentStatus]
) -> None:
    assert initial_status(price_minor, payment_required=payment_required) == expected


def test_seat_holding_statuses() -> None:
    assert {S.PENDING, S.CONFIRMED, S.COMPLETED, S.NO_SHOW} == SEAT_HOLDING
    assert S.DRAFT not in SEAT_HOLDING
    assert S.CANCELLED not in SEAT_HOLDING


# --- refund policy ------------------------------------------------------------------------


def _before(**delta: float) -> datetime:
    return STARTS_AT - timedelta(**delta)


DEFAULT_TIER_CASES = [
    pytest.param(_before(days=30), 100, id="30d-before"),
    pytest.param(_before(hours=24, seconds=1), 100, id="24h+1s-before"),
    pytest.param(_before(hours=24), 100, id="exactly-24h-before"),
    pytest.param(_before(hours=24) + timedelta(seconds=1), 50, id="24h-1s-before"),
    pytest.param(_before(hours=12), 50, id="12h-before"),
    pytest.param(_before(hours=6), 50, id="exactly-6h-before"),
    pytest.param(_before(hours=6) + timedelta(seconds=1), 0, id="6h-1s-before"),
    pytest.param(_before(minutes=1), 0, id="1min-before"),
    pytest.param(STARTS_AT, 0, id="at-start"),
    pytest.param(STARTS_AT + timedelta(hours=1), 0, id="after-start"),
]


@pytest.mark.parametrize(("cancelled_at", "percent"), DEFAULT_TIER_CASES)
def test_default_policy_tiers(cancelled_at: datetime, percent: int) -> None:
    assert (
        refund_percent(DEFAULT_REFUND_POLICY, starts_at=STARTS_AT, cancelled_at=cancelled_at)
        == percent
    )
    refund = refund_amount(
        paid_minor=4500,
        tiers=DEFAULT_REFUND_POLICY,
        starts_at=STARTS_AT,
        cancelled_at=cancelled_at,
        by_organiser=False,
    )
    assert refund == 4500 * percent // 100


@pytest.mark.parametrize(
    "cancelled_at",
    [_before(days=2), _before(hours=1), STARTS_AT, STARTS_AT + timedelta(days=1)],
    ids=["2d-before", "1h-before", "at-start", "after-start"],
)
@pytest.mark.parametrize("tiers", [DEFAULT_REFUND_POLICY, ()], ids=["default", "no-refunds"])
def test_organiser_cancellation_refunds_everything(
    cancelled_at: datetime, tiers: tuple[RefundTier, ...]
) -> None:
    refund = refund_amount(
        paid_minor=4599,
        tiers=tiers,
        starts_at=STARTS_AT,
        cancelled_at=cancelled_at,
        by_organiser=True,
    )
    assert refund == 4599


@pytest.mark.parametrize("paid_minor", [0, -100])
@pytest.mark.parametrize("by_organiser", [False, True])
def test_nothing_paid_refunds_nothing(paid_minor: int, by_organiser: bool) -> None:
    refund = refund_amount(
        paid_minor=paid_minor,
        tiers=DEFAULT_REFUND_POLICY,
        starts_at=STARTS_AT,
        cancelled_at=_before(days=7),
        by_organiser=by_organiser,
    )
    assert refund == 0


UNSORTED = (RefundTier(6, 25), RefundTier(72, 100), RefundTier(24, 75))


@pytest.mark.parametrize(
    ("tiers", "cancelled_at", "percent"),
    [
        pytest.param(UNSORTED, _before(hours=100), 100, id="unsorted-100h"),
        pytest.param(UNSORTED, _before(hours=72), 100, id="unsorted-72h"),
        pytest.param(UNSORTED, _before(hours=71), 75, id="unsorted-71h"),
        pytest.param(UNSORTED, _before(hours=24), 75, id="unsorted-24h"),
        pytest.param(UNSORTED, _before(hours=23), 25, id="unsorted-23h"),
        pytest.param(UNSORTED, _before(hours=6), 25, id="unsorted-6h"),
        pytest.param(UNSORTED, _before(hours=5), 0, id="unsorted-5h"),
        pytest.param((RefundTier(0, 10),), STARTS_AT, 10, id="zero-hours-at-start"),
        pytest.param(
            (RefundTier(0, 10),), STARTS_AT + timedelta(seconds=1), 0, id="zero-hours-after"
        ),
        pytest.param((), _before(days=30), 0, id="empty-policy"),
        pytest.param((RefundTier(48, 0),), _before(days=30), 0, id="zero-percent-tier"),
    ],
)
def test_custom_tiers(tiers: tuple[RefundTier, ...], cancelled_at: datetime, percent: int) -> None:
    assert refund_percent(tiers, starts_at=STARTS_AT, cancelled_at=cancelled_at) == percent


def test_validate_policy_orders_tiers_from_the_earliest_cancellation() -> None:
    assert validate_policy(UNSORTED) == (
        RefundTier(72, 100),
        RefundTier(24, 75),
        RefundTier(6, 25),
    )
    assert validate_policy([]) == ()


@pytest.mark.parametrize(
    "tier",
    [RefundTier(-1, 50), RefundTier(24, -1), RefundTier(24, 101), RefundTier(-5, 200)],
    ids=["negative-hours", "negative-percent", "over-100-percent", "both"],
)
def test_invalid_tier_is_rejected(tier: RefundTier) -> None:
    expected = {"tier": {"minHoursBefore": tier.min_hours_before, "percent": tier.percent}}
    with pytest.raises(InvalidInput) as info:
        validate_policy([RefundTier(48, 100), tier])
    assert info.value.code == "invalid_input"
    assert info.value.details == expected
    # A policy is checked again wherever it is applied.
    with pytest.raises(InvalidInput):
        refund_percent([tier], starts_at=STARTS_AT, cancelled_at=_before(days=3))


@pytest.mark.parametrize("tier", [RefundTier(0, 0), RefundTier(0, 100), RefundTier(10_000, 1)])
def test_boundary_tiers_are_valid(tier: RefundTier) -> None:
    assert validate_policy([tier]) == (tier,)


@pytest.mark.parametrize(
    ("paid_minor", "cancelled_at", "refund"),
    [
        pytest.param(499, _before(hours=12), 249, id="half-of-4.99-rounds-down"),
        pytest.param(1, _before(hours=12), 0, id="half-of-1-cent"),
        pytest.param(999, _before(hours=12), 499, id="half-of-9.99"),
        pytest.param(499, _before(days=2), 499, id="full-refund-unrounded"),
    ],
)
def test_refund_is_rounded_down_to_a_minor_unit(
    paid_minor: int, cancelled_at: datetime, refund: int
) -> None:
    assert (
        refund_amount(
            paid_minor=paid_minor,
            tiers=DEFAULT_REFUND_POLICY,
            starts_at=STARTS_AT,
            cancelled_at=cancelled_at,
            by_organiser=False,
        )
        == refund
    )


def test_odd_percent_rounds_down() -> None:
    refund = refund_amount(
        paid_minor=999,
        tiers=[RefundTier(1, 33)],
        starts_at=STARTS_AT,
        cancelled_at=_before(hours=2),
        by_organiser=False,
    )
    assert refund == 329  # 329.67


@st.composite
def monotone_policies(draw: st.DrawFn) -> tuple[RefundTier, ...]:
    """Sensible policies (earlier cancellation never refunds less), in any order."""
    hours = draw(st.lists(st.integers(0, 24 * 30), unique=True, max_size=5))
    percents = draw(
        st.lists(st.integers(0, 100), min_size=len(hours), max_size=len(hours)).map(sorted)
    )
    tiers = [RefundTier(h, p) for h, p in zip(sorted(hours), percents, strict=True)]
    return tuple(draw(st.permutations(tiers)))


policies = st.one_of(st.just(DEFAULT_REFUND_POLICY), monotone_policies())
notice_s = st.integers(-2 * 86_400, 40 * 86_400)  # seconds before the start; < 0 is after


@settings(max_examples=300, deadline=None)
@given(
    paid_minor=st.integers(0, 10**12),
    tiers=policies,
    earlier=notice_s,
    later=notice_s,
)
def test_refund_is_bounded_and_never_grows_as_cancellation_moves_later(
    paid_minor: int, tiers: tuple[RefundTier, ...], earlier: int, later: int
) -> None:
    earlier, later = max(earlier, later), min(earlier, later)

    def refund(notice: int) -> int:
        return refund_amount(
            paid_minor=paid_minor,
            tiers=tiers,
            starts_at=STARTS_AT,
            cancelled_at=STARTS_AT - timedelta(seconds=notice),
            by_organiser=False,
        )

    first, second = refund(earlier), refund(later)
    assert 0 <= second <= first <= paid_minor
    percent = refund_percent(
        tiers, starts_at=STARTS_AT, cancelled_at=STARTS_AT - timedelta(seconds=earlier)
    )
    assert first == paid_minor * percent // 100


# --- policies that would refund more for a later cancellation --------------------------


@pytest.mark.parametrize(
    "tiers",
    [
        pytest.param((RefundTier(48, 10), RefundTier(24, 100)), id="later-tier-refunds-more"),
        pytest.param((RefundTier(24, 100), RefundTier(24, 50)), id="two-tiers-same-hours"),
    ],
)
def test_validate_policy_rejects_policies_where_a_later_cancellation_refunds_more(
    tiers: tuple[RefundTier, ...],
) -> None:
    """Else cancelling 30 h before the start would refund 100 % but 50 h before only
    10 % (first case), and with two tiers at the same hours the refund would depend on
    the order the admin listed them (second case)."""
    with pytest.raises(InvalidInput):
        validate_policy(tiers)


def test_an_owner_always_scopes_to_someone() -> None:
    from boxoffice.services.bookings import Owner

    with pytest.raises(ValueError, match="names a customer or an organisation"):
        Owner()
