"""Money as integer minor units of an ISO 4217 currency.

The API shows amounts as decimal numbers (``"price": 45.0``); storage and all
arithmetic use integer minor units (cents). Conversion happens only at the API
edge, through :func:`to_minor` and :func:`to_major`.
"""

from __future__ import annotations

from decimal import MAX_PREC, Context, Decimal, InvalidOperation

from boxoffice.domain.errors import InvalidInput

# Currencies whose minor unit is not 1/100 (ISO 4217; the ones Stripe supports).
_ZERO_DECIMAL = "BIF CLP DJF GNF ISK JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMAL = "BHD JOD KWD OMR TND"
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DECIMAL.split(), 0),
    **dict.fromkeys(_THREE_DECIMAL.split(), 3),
}


# Larger amounts are refused as input errors: their minor units would not fit the
# database's 32-bit integer columns.
MAX_MINOR = 2**31 - 1
_MAX_MAJOR = 10**12  # bounds the digits, so the conversion below is exact


def exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit (2 for EUR, 0 for JPY)."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: Decimal | float | int | str, currency: str) -> int:
    """Convert a major-unit amount to integer minor units, exactly.

    Refuses amounts with more decimals than the currency has, rather than
    rounding a price silently.
    """
    try:
        value = Decimal(str(amount))
    except InvalidOperation as exc:
        raise InvalidInput("Amount must be a number.", {"amount": str(amount)}) from exc
    if not value.is_finite():
        raise InvalidInput("Amount must be a finite number.", {"amount": str(amount)})
    too_large = InvalidInput("Amount is too large.", {"amount": str(value)})
    if abs(value) >= _MAX_MAJOR:
        raise too_large
    scaled = value.scaleb(exponent(currency), context=Context(prec=MAX_PREC))
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"Amount {value} has more decimals than {currency.upper()} allows.",
            {"amount": str(value), "currency": currency.upper()},
        )
    if abs(scaled) > MAX_MINOR:
        raise too_large
    return int(scaled)


def to_major(minor: int, currency: str) -> float:
    """Convert integer minor units to a major-unit number for JSON."""
    return float(Decimal(minor).scaleb(-exponent(currency)))


def percent_of(minor: int, percent: int) -> int:
    """``percent`` % of ``minor``, rounded down to a whole minor unit.

    Rounding down means a percentage-based amount (a refund, a fee share) never
    exceeds its exact value: 50 % of 4.99 is 2.49.
    """
    if not 0 <= percent <= 100:
        raise InvalidInput("Percent must be between 0 and 100.", {"percent": percent})
    return minor * percent // 100


def prorate(minor_per_hour: int, minutes: int) -> int:
    """Price of ``minutes`` at an hourly rate, rounded half up to a minor unit."""
    return (minor_per_hour * minutes * 2 + 60) // 120


def even_share(total_minor: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total_minor`` split into ``parts`` as evenly as minor units
    allow: the first ``total % parts`` parts carry one unit more, so the parts add up."""
    if parts < 1 or not 0 <= index < parts:
        raise ValueError("index must be within 0 .. parts - 1")
    base, extra = divmod(total_minor, parts)
    return base + (1 if index < extra else 0)
