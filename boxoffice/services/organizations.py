"""Organisations and their settings."""

from __future__ import annotations

import re
import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from boxoffice.db.models import Organization
from boxoffice.db.session import Db
from boxoffice.domain.bookings import DEFAULT_REFUND_POLICY, RefundTier, validate_policy
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.domain.money import exponent

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
PLAN_TIERS = ("builder", "pro", "center")
_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone, else refuse it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "Europe", a folder
        raise InvalidInput(f"Unknown time zone {name!r}.", {"timezone": name}) from exc
    return name


def update_payment_settings(
    db: Db,
    org_id: uuid.UUID,
    *,
    live_gateway: bool,
    payments_enabled: bool | None = None,
    payment_account_id: str | None = None,
    plan_tier: str | None = None,
    hold_min: int | None = None,
) -> Organization:
    """Change how an organisation takes payments; only the values given change.

    ``payment_account_id`` "" disconnects the account. With a live gateway an
    organisation can only take payments once its own account is connected.
    """
    org = get_organization(db, org_id)
    if plan_tier is not None:
        if plan_tier not in PLAN_TIERS:
            raise InvalidInput(
                f"plan tier must be one of {', '.join(PLAN_TIERS)}.", {"plan": plan_tier}
            )
        org.plan_tier = plan_tier
    if payment_account_id is not None:
        account = payment_account_id.strip()
        if account and not _ACCOUNT.match(account):
            raise InvalidInput(
                "paymentAccountId must be a Stripe account id like acct_1A2b3C.",
                {"paymentAccountId": account},
            )
        org.payment_account_id = account or None
    if hold_min is not None:
        if not 1 <= hold_min <= 1440:
            raise InvalidInput("holdMinutes must be between 1 and 1440.", {"holdMinutes": hold_min})
        org.hold_min = hold_min
    if payments_enabled is not None:
        org.payments_enabled = payments_enabled
    if org.payments_enabled and live_gateway and not org.payment_account_id:
        raise InvalidInput(
            "Connect the organisation's Stripe account (paymentAccountId) before taking payments.",
            {"paymentsEnabled": True},
        )
    db.flush()
    return org


def create_organization(
    db: Db,
    *,
    slug: str,
    name: str,
    timezone: str,
    currency: str,
    plan_tier: str = "builder",
    refund_policy: list[RefundTier] | None = None,
    payments_enabled: bool = False,
) -> Organization:
    """Create an organisation; the slug is its public, URL-safe name."""
    if not _SLUG.match(slug):
        raise InvalidInput("slug must be lowercase letters, digits and dashes.", {"slug": slug})
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput("currency must be an ISO 4217 code.", {"currency": currency})
    if plan_tier not in PLAN_TIERS:
        raise InvalidInput(
            f"plan tier must be one of {', '.join(PLAN_TIERS)}.", {"plan": plan_tier}
        )
    exponent(currency)
    if db.execute(select(Organization.id).where(Organization.slug == slug)).first():
        raise Conflict(f"An organisation with slug {slug!r} exists.", {"slug": slug})
    policy = None
    if refund_policy is not None:
        policy = [
            {"minHoursBefore": t.min_hours_before, "percent": t.percent}
            for t in validate_policy(refund_policy)
        ]
    org = Organization(
        slug=slug,
        name=name,
        timezone=check_timezone(timezone),
        currency=currency.upper(),
        plan_tier=plan_tier,
        refund_policy=policy,
        payments_enabled=payments_enabled,
    )
    db.add(org)
    db.flush()
    return org


def get_organization(db: Db, org_id: uuid.UUID) -> Organization:
    org = db.get(Organization, org_id)
    if org is None:
        raise NotFound("Organisation not found.", {"orgId": str(org_id)})
    return org


def get_organization_by_slug(db: Db, slug: str) -> Organization:
    org = db.execute(select(Organization).where(Organization.slug == slug)).scalar_one_or_none()
    if org is None:
        raise NotFound(f"Organisation {slug!r} not found.", {"slug": slug})
    return org


def refund_tiers(org: Organization) -> tuple[RefundTier, ...]:
    """The organisation's cancellation policy, or the default one."""
    if org.refund_policy is None:
        return DEFAULT_REFUND_POLICY
    return tuple(RefundTier(t["minHoursBefore"], t["percent"]) for t in org.refund_policy)
