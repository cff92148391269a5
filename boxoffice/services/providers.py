"""Providers: the people whose time is booked, and who may manage each one's calendar."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Membership, Organization, Provider, Session
from boxoffice.db.session import Db
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.services import auth
from boxoffice.services.organizations import check_timezone, get_organization


def get_provider(
    db: Db, provider_id: uuid.UUID, *, org_id: uuid.UUID, lock: bool = False
) -> Provider:
    """One of the organisation's providers; another organisation's is NotFound.

    With ``lock``, the provider's row stays locked until the transaction ends (the
    lock bookings of this provider take), so its calendar cannot change meanwhile.
    """
    stmt = select(Provider).where(Provider.id == provider_id, Provider.org_id == org_id)
    if lock:
        stmt = for_update(db, stmt).execution_options(populate_existing=True)
    provider = db.execute(stmt).scalar_one_or_none()
    if provider is None:
        raise NotFound("Provider not found.", {"providerId": str(provider_id)})
    return provider


def list_providers(db: Db, *, org_id: uuid.UUID, is_active: bool | None = None) -> list[Provider]:
    """The organisation's providers by name."""
    stmt = select(Provider).where(Provider.org_id == org_id).order_by(Provider.name, Provider.id)
    if is_active is not None:
        stmt = stmt.where(Provider.is_active == is_active)
    return list(db.execute(stmt).scalars())


def managed_provider(
    db: Db, user_id: uuid.UUID, provider_id: uuid.UUID, *, org_slug: str | None
) -> Provider:
    """The provider, if the user may manage its calendar: an owner or admin of its
    organisation, or the member linked to it as its ``user``.

    Another organisation's provider is NotFound to an admin and Forbidden to anyone else.
    """
    auth.active_user(db, user_id)
    provider = db.get(Provider, provider_id)
    if provider is not None and provider.user_id == user_id:
        own = select(Membership.id).where(
            Membership.org_id == provider.org_id, Membership.user_id == user_id
        )
        if org_slug is not None:
            own = own.join(Organization, Organization.id == Membership.org_id).where(
                Organization.slug == org_slug
            )
        if db.execute(own).first() is not None:
            return provider
    org = auth.admin_org(db, user_id, org_slug=org_slug)
    return get_provider(db, provider_id, org_id=org.org_id)


def _check_values(
    db: Db, org_id: uuid.UUID, values: dict[str, Any], provider_id: uuid.UUID | None
) -> None:
    if "name" in values:
        values["name"] = str(values["name"]).strip()
        if not values["name"]:
            raise InvalidInput("name cannot be empty.")
    if values.get("email") is not None:
        values["email"] = auth.normalise_email(values["email"])
    if "timezone" in values:
        check_timezone(values["timezone"])
    if values.get("user_id") is not None:
        _check_user(db, org_id, values["user_id"], provider_id)


def _check_user(
    db: Db, org_id: uuid.UUID, user_id: uuid.UUID, provider_id: uuid.UUID | None
) -> None:
    """The linked user must belong to the organisation and manage no other provider."""
    member = db.execute(
        select(Membership.id).where(Membership.org_id == org_id, Membership.user_id == user_id)
    ).first()
    if member is None:
        raise InvalidInput(
            "userId must be a member of this organisation.", {"userId": str(user_id)}
        )
    other = db.execute(
        select(Provider.id).where(
            Provider.org_id == org_id, Provider.user_id == user_id, Provider.id != provider_id
        )
    ).scalar()
    if other is not None:
        raise Conflict(
            "This user already manages another provider.",
            {"userId": str(user_id), "providerId": str(other)},
        )


def create_provider(db: Db, *, org_id: uuid.UUID, **values: Any) -> Provider:
    """Create a provider; ``values``: name, email, timezone (default: the organisation's),
    is_active, user_id (a member who then manages this provider's calendar)."""
    values.setdefault("timezone", get_organization(db, org_id).timezone)
    _check_values(db, org_id, values, None)
    provider = Provider(org_id=org_id, **values)
    db.add(provider)
    db.flush()
    return provider


def update_provider(
    db: Db, provider_id: uuid.UUID, *, org_id: uuid.UUID, **changes: Any
) -> Provider:
    """Change some of a provider's fields (the names of :func:`create_provider`)."""
    provider = get_provider(db, provider_id, org_id=org_id)
    _check_values(db, org_id, changes, provider.id)
    for name, value in changes.items():
        setattr(provider, name, value)
    db.flush()
    return provider


def delete_provider(db: Db, provider_id: uuid.UUID, *, org_id: uuid.UUID) -> Provider | None:
    """Delete a provider, or deactivate it if it has sessions.

    A provider with sessions keeps its history: it is deactivated and returned. One
    never booked is deleted with its schedules, availability and time off; None is
    returned.
    """
    # The provider lock is the one bookings take, so no session appears meanwhile.
    provider = get_provider(db, provider_id, org_id=org_id, lock=True)
    has_sessions = db.execute(
        select(exists().where(Session.provider_id == provider.id))
    ).scalar_one()
    if has_sessions:
        provider.is_active = False
        db.flush()
        return provider
    db.delete(provider)
    db.flush()
    return None
