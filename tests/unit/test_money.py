"""Money as integer minor units: conversion at the edge, percentages and proration."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.domain.errors import InvalidInput
from boxoffice.domain.money import MAX_MINOR, exponent, percent_of, prorate, to_major, to_minor


@pytest.mark.parametrize(
    ("currency", "decimals"),
    [("EUR", 2), ("usd", 2), ("JPY", 0), ("jpy", 0), ("KRW", 0), ("KWD", 3), ("bhd", 3)],
)
def test_exponent(currency: str, decimals: int) -> None:
    assert exponent(currency) == decimals


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("45", "EUR", 4500),
        ("45.5", "EUR", 4550),
        (45.5, "EUR", 4550),
        (0.1, "EUR", 10),
        (19.99, "EUR", 1999),
        (10, "EUR", 1000),
        (Decimal("0.01"), "EUR", 1),
        ("10.10", "EUR", 1010),
        ("10.100", "EUR", 1010),  # trailing zeros are not extra precision
        ("0", "eur", 0),
        ("1500", "JPY", 1500),
        (1500.0, "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("0.001", "kwd", 1),
        (12.5, "KWD", 12500),
    ],
)
def test_to_minor(amount: Decimal | float | int | str, currency: str, minor: int) -> None:
    result = to_minor(amount, currency)
    assert result == minor
    assert type(result) is int


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("10.001", "EUR"), (10.001, "EUR"), ("1.5", "JPY"), (0.5, "JPY"), ("0.0001", "KWD")],
)
def test_to_minor_refuses_more_decimals_than_the_currency_has(
    amount: str | float, currency: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        to_minor(amount, currency.lower())
    assert info.value.code == "invalid_input"
    assert info.value.message == (
        f"Amount {Decimal(str(amount))} has more decimals than {currency} allows."
    )
    assert info.value.details == {"amount": str(Decimal(str(amount))), "currency": currency}


@pytest.mark.parametrize(
    "amount",
    ["NaN", "Infinity", "-Infinity", "sNaN", float("nan"), float("inf"), float("-inf")],
)
def test_to_minor_refuses_non_finite_amounts(amount: str | float) -> None:
    with pytest.raises(InvalidInput, match="finite") as info:
        to_minor(amount, "EUR")
    assert info.value.details == {"amount": str(amount)}


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (4550, "EUR", 45.5),
        (1, "EUR", 0.01),
        (0, "EUR", 0.0),
        (1999, "eur", 19.99),
        (1500, "JPY", 1500.0),
        (1234, "KWD", 1.234),
        (1, "KWD", 0.001),
    ],
)
def test_to_major(minor: int, currency: str, major: float) -> None:
    result = to_major(minor, currency)
    assert result == major
    assert type(result) is float


@settings(max_examples=300, deadline=None)
@given(
    minor=st.integers(-MAX_MINOR, MAX_MINOR),
    currency=st.sampled_from(["EUR", "USD", "JPY", "KWD", "BHD"]),
)
def test_to_major_and_back_is_exact(minor: int, currency: str) -> None:
    assert to_minor(to_major(minor, currency), currency) == minor


@pytest.mark.parametrize(
    ("minor", "percent", "result"),
    [
        (499, 50, 249),  # 249.5 rounds down
        (4500, 100, 4500),
        (4500, 0, 0),
        (999, 33, 329),
        (1, 99, 0),
        (0, 50, 0),
    ],
)
def test_percent_of(minor: int, percent: int, result: int) -> None:
    assert percent_of(minor, percent) == result


@pytest.mark.parametrize("percent", [-1, 101, 1000])
def test_percent_of_refuses_percent_out_of_bounds(percent: int) -> None:
    with pytest.raises(InvalidInput) as info:
        percent_of(4500, percent)
    assert info.value.details == {"percent": percent}


@settings(max_examples=300, deadline=None)
@given(minor=st.integers(0, 10**15), percent=st.integers(0, 100))
def test_percent_of_is_the_exact_share_rounded_down(minor: int, percent: int) -> None:
    result = percent_of(minor, percent)
    exact = Fraction(minor * percent, 100)
    assert 0 <= result <= minor
    assert result <= exact < result + 1


@pytest.mark.parametrize(
    ("minor_per_hour", "minutes", "price"),
    [
        (4000, 90, 6000),
        (4000, 60, 4000),
        (1, 30, 1),  # 0.5 rounds up
        (1, 29, 0),
        (1, 31, 1),
        (1, 90, 2),  # 1.5 rounds up
        (1, 89, 1),
        (3, 10, 1),  # 0.5 rounds up
        (4550, 45, 3413),  # 3412.5 rounds up
        (4550, 5, 379),  # 379.17
        (0, 90, 0),
        (4000, 0, 0),
    ],
)
def test_prorate_rounds_half_up(minor_per_hour: int, minutes: int, price: int) -> None:
    assert prorate(minor_per_hour, minutes) == price


@settings(max_examples=300, deadline=None)
@given(minor_per_hour=st.integers(0, 10**9), minutes=st.integers(0, 24 * 60))
def test_prorate_is_the_exact_price_rounded_half_up(minor_per_hour: int, minutes: int) -> None:
    exact = Fraction(minor_per_hour * minutes, 60)
    assert prorate(minor_per_hour, minutes) == floor(exact + Fraction(1, 2))


# --- bounds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        # 31 significant digits: beyond the default decimal context (28) and any column.
        ("12345678901234567890123456789.01", "EUR", "too large"),
        ("1234567890123456789012345678.005", "EUR", "too large"),
        ("1e400", "EUR", "too large"),
        ("21474836.48", "EUR", "too large"),  # 2**31 minor units
        ("2147483.648", "KWD", "too large"),
        ("abc", "EUR", "must be a number"),
    ],
)
def test_to_minor_refuses_what_no_column_can_hold(amount: str, currency: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        to_minor(amount, currency)


def test_to_minor_is_exact_up_to_the_largest_amount() -> None:
    assert to_minor("21474836.47", "EUR") == MAX_MINOR
    assert to_minor("-21474836.47", "EUR") == -MAX_MINOR
    assert to_minor("2147483647", "JPY") == MAX_MINOR
