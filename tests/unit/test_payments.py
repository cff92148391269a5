"""The money rules of orders: commission by plan tier, when a payment is needed, and
an order's status as refunds come in."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boxoffice.api.schemas import TopicName
from boxoffice.domain.errors import InvalidInput
from boxoffice.domain.payments import (
    COMMISSION_PERCENT,
    OrderStatus,
    commission_minor,
    needs_payment,
    status_after_refund,
)
from boxoffice.services.outbox import Topic


@pytest.mark.parametrize(
    ("amount", "tier", "expected"),
    [
        (4500, "builder", 225),  # 5 % of 45.00
        (4500, "pro", 135),  # 3 %
        (4500, "center", 90),  # 2 %
        (1010, "builder", 51),  # 50.5 cents: halves round up
        (1009, "builder", 50),  # 50.45 cents: down
        (1050, "pro", 32),  # 31.5 cents: up
        (1025, "center", 21),  # 20.5 cents: up
        (1, "builder", 0),
        (10, "builder", 1),  # 0.5 cent: up
        (0, "pro", 0),
    ],
)
def test_commission_by_tier_rounds_half_up(amount: int, tier: str, expected: int) -> None:
    assert commission_minor(amount, tier) == expected


@given(st.integers(min_value=0, max_value=2**31 - 1), st.sampled_from(sorted(COMMISSION_PERCENT)))
def test_commission_is_the_nearest_minor_unit(amount: int, tier: str) -> None:
    exact = amount * COMMISSION_PERCENT[tier] / 100
    fee = commission_minor(amount, tier)
    assert abs(fee - exact) <= 0.5
    assert 0 <= fee <= amount


def test_commission_refuses_unknown_tiers_and_negative_amounts() -> None:
    with pytest.raises(InvalidInput):
        commission_minor(100, "gold")
    with pytest.raises(InvalidInput):
        commission_minor(-1, "pro")


@pytest.mark.parametrize(
    ("price", "enabled", "expected"),
    [(0, True, False), (0, False, False), (1, True, True), (4500, False, False)],
)
def test_a_payment_is_needed_for_a_price_where_payments_are_taken(
    price: int, enabled: bool, expected: bool
) -> None:
    assert needs_payment(price, payments_enabled=enabled) is expected


@pytest.mark.parametrize(
    ("refunded", "expected"),
    [
        (0, OrderStatus.PAID),
        (1, OrderStatus.PARTIALLY_REFUNDED),
        (2999, OrderStatus.PARTIALLY_REFUNDED),
        (3000, OrderStatus.REFUNDED),
    ],
)
def test_an_orders_status_after_refunds(refunded: int, expected: OrderStatus) -> None:
    assert status_after_refund(3000, refunded) is expected


def test_the_api_names_every_outbox_topic() -> None:
    assert set(get_args(TopicName)) == {t.value for t in Topic}
