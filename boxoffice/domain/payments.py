"""Orders and their payments: when a payment is needed, the platform's commission,
and what an order's status becomes as money comes and goes."""

from __future__ import annotations

from enum import StrEnum

from boxoffice.domain.errors import InvalidInput


class OrderStatus(StrEnum):
    OPEN = "open"  # waiting for its payment
    PAID = "paid"
    FAILED = "failed"  # the payment was declined; its bookings were released
    CANCELLED = "cancelled"  # its hold ran out or its bookings were cancelled unpaid
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class ClosedReason(StrEnum):
    """Why an order closed unpaid."""

    PAYMENT_FAILED = "payment_failed"
    PAYMENT_TIMEOUT = "payment_timeout"
    CANCELLED = "cancelled"


# A payment that arrives after its order closed for one of these reasons is still
# wanted: the customer did not change their mind, the clock or the card did.
LATE_PAYMENT_WELCOME = frozenset({ClosedReason.PAYMENT_FAILED, ClosedReason.PAYMENT_TIMEOUT})


class PaymentState(StrEnum):
    """A payment row, as its gateway last told us."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RefundState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the gateway refused it for good; an admin has to look


# The platform's commission by the organisation's plan tier, in percent.
COMMISSION_PERCENT: dict[str, int] = {"builder": 5, "pro": 3, "center": 2}


def commission_minor(amount_minor: int, plan_tier: str) -> int:
    """The platform's share of a payment, in minor units.

    Rounded to the nearest minor unit, halves up: 5 % of 10.10 (0.505) is 0.51,
    5 % of 10.09 (0.5045) is 0.50. Stripe takes it as ``application_fee_amount``,
    which must be a whole number of minor units.
    """
    if plan_tier not in COMMISSION_PERCENT:
        raise InvalidInput(f"Unknown plan tier {plan_tier!r}.", {"plan": plan_tier})
    if amount_minor < 0:
        raise InvalidInput("An amount cannot be negative.", {"amount": amount_minor})
    return (amount_minor * COMMISSION_PERCENT[plan_tier] * 2 + 100) // 200


def needs_payment(price_minor: int, *, payments_enabled: bool) -> bool:
    """The design's rule: a priced booking at an organisation that takes payments
    waits for its payment; anything else is confirmed directly."""
    return price_minor > 0 and payments_enabled


def status_after_refund(total_minor: int, refunded_minor: int) -> OrderStatus:
    """A paid order's status once ``refunded_minor`` has gone back."""
    if refunded_minor <= 0:
        return OrderStatus.PAID
    if refunded_minor >= total_minor:
        return OrderStatus.REFUNDED
    return OrderStatus.PARTIALLY_REFUNDED
