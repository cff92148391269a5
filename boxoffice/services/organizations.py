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


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone, else refuse it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "Europe", a folder
        raise InvalidInput(f"Unknown time zone {name!r}.", {"timezone": name}) from exc
    return name


def create_organization(
    db: Db,
    *,
    slug: str,
    name: str,
    timezone: str,
    currency: str,
    plan_tier: str = "builder",
    refund_policy: list[RefundTier] | None = None,
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
