"""Booking lifecycle and the cancellation refund policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from boxoffice.domain.errors import IllegalTransition, InvalidInput
from boxoffice.domain.money import percent_of


class BookingStatus(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    REFUNDED = "refunded"
    NOT_REQUIRED = "not_required"


_TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    # A draft is a package's credit: scheduled, it is confirmed (the package is paid).
    BookingStatus.DRAFT: frozenset(
        {BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.CANCELLED}
    ),
    BookingStatus.PENDING: frozenset({BookingStatus.CONFIRMED, BookingStatus.CANCELLED}),
    BookingStatus.CONFIRMED: frozenset(
        {BookingStatus.CANCELLED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW}
    ),
    BookingStatus.CANCELLED: frozenset(),
    # An organiser corrects attendance either way once the session has taken place.
    BookingStatus.COMPLETED: frozenset({BookingStatus.NO_SHOW}),
    BookingStatus.NO_SHOW: frozenset({BookingStatus.COMPLETED}),
}

# Statuses in which a booking occupies its seat. Completed and no-show bookings keep
# it too: the session has happened and its count is history.
SEAT_HOLDING = frozenset(
    {BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW}
)

# Outcomes that can only be known once the session has started.
_AFTER_START = frozenset({BookingStatus.COMPLETED, BookingStatus.NO_SHOW})


def check_transition(
    current: BookingStatus, target: BookingStatus, *, starts_at: datetime, now: datetime
) -> None:
    """Refuse a status change the lifecycle does not allow."""
    if target not in _TRANSITIONS[current]:
        raise IllegalTransition(
            f"A {current.value} booking cannot become {target.value}.",
            {"from": current.value, "to": target.value},
        )
    if target in _AFTER_START and now < starts_at:
        raise IllegalTransition(
            f"A booking cannot become {target.value} before its session starts.",
            {"from": current.value, "to": target.value, "startsAt": starts_at.isoformat()},
        )


def initial_status(
    price_minor: int, *, payment_required: bool
) -> tuple[BookingStatus, PaymentStatus]:
    """Status of a new booking: one waiting for an online payment is pending (its seat
    held); a free one needs no payment; a priced one at an organisation that takes no
    payments online is confirmed and paid at the venue (the desk marks it paid)."""
    if payment_required:
        return BookingStatus.PENDING, PaymentStatus.PENDING
    if price_minor == 0:
        return BookingStatus.CONFIRMED, PaymentStatus.NOT_REQUIRED
    return BookingStatus.CONFIRMED, PaymentStatus.PENDING


@dataclass(frozen=True)
class RefundTier:
    """Cancelling at least ``min_hours_before`` the start refunds ``percent`` %."""

    min_hours_before: int
    percent: int


DEFAULT_REFUND_POLICY: tuple[RefundTier, ...] = (RefundTier(24, 100), RefundTier(6, 50))


def validate_policy(tiers: Sequence[RefundTier]) -> tuple[RefundTier, ...]:
    """Check a policy and return it ordered from the earliest cancellation.

    A later cancellation may never refund more than an earlier one, and no two
    tiers may share a bound (their order would decide the refund).
    """
    for tier in tiers:
        if tier.min_hours_before < 0 or not 0 <= tier.percent <= 100:
            raise InvalidInput(
                "Refund tiers need hours >= 0 and a percent from 0 to 100.",
                {"tier": {"minHoursBefore": tier.min_hours_before, "percent": tier.percent}},
            )
    ordered = tuple(sorted(tiers, key=lambda t: t.min_hours_before, reverse=True))
    for earlier, later in pairwise(ordered):
        if later.min_hours_before == earlier.min_hours_before or later.percent > earlier.percent:
            raise InvalidInput(
                "Refund tiers need distinct hours, and a later cancellation cannot refund more.",
                {
                    "tiers": [
                        {"minHoursBefore": t.min_hours_before, "percent": t.percent}
                        for t in (earlier, later)
                    ]
                },
            )
    return ordered


def refund_percent(
    tiers: Sequence[RefundTier], *, starts_at: datetime, cancelled_at: datetime
) -> int:
    """Percent refunded when cancelling at ``cancelled_at``; tier bounds are inclusive.

    With the default policy, cancelling exactly 24 h before the start refunds 100 %,
    exactly 6 h before refunds 50 %, and anything later refunds nothing.
    """
    notice = starts_at - cancelled_at
    for tier in validate_policy(tiers):
        if notice >= timedelta(hours=tier.min_hours_before):
            return tier.percent
    return 0


def refund_amount(
    *,
    paid_minor: int,
    tiers: Sequence[RefundTier],
    starts_at: datetime,
    cancelled_at: datetime,
    by_organiser: bool,
) -> int:
    """Minor units refunded for a cancellation.

    An organiser's cancellation refunds everything paid; a customer's follows the
    policy tiers, rounded down to a whole minor unit (see ``money.percent_of``).
    """
    if paid_minor <= 0:
        return 0
    if by_organiser:
        return paid_minor
    percent = refund_percent(tiers, starts_at=starts_at, cancelled_at=cancelled_at)
    return percent_of(paid_minor, percent)
