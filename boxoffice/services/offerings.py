"""Services offered: what a customer books with a provider (a haircut, a consultation).

Named ``offerings`` because "services" is the name of this layer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, exists, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Provider, Service, ServiceProvider, Session
from boxoffice.db.session import Db
from boxoffice.domain.errors import InvalidInput, NotFound
from boxoffice.services.organizations import get_organization
from boxoffice.services.rooms import check_room_type

MAX_CAPACITY = 1000
MAX_PROVIDERS = 100
# (low, high, name in messages) of each numeric field; minutes unless said otherwise.
BOUNDS: dict[str, tuple[int, int, str]] = {
    "duration_min": (5, 1440, "duration"),
    "slot_step_min": (5, 1440, "slotStep"),
    "capacity": (1, MAX_CAPACITY, "capacity"),
    "buffer_before_min": (0, 1440, "bufferBefore"),
    "buffer_after_min": (0, 1440, "bufferAfter"),
    "min_notice_min": (0, 365 * 1440, "minimumNotice"),
    "max_days_ahead": (1, 730, "maxDaysAhead"),
    "price_minor": (0, 2**31 - 1, "price"),
}


def get_service(db: Db, service_id: uuid.UUID, *, org_id: uuid.UUID) -> Service:
    """One of the organisation's services; another organisation's is NotFound."""
    service = db.get(Service, service_id)
    if service is None or service.org_id != org_id:
        raise NotFound("Service not found.", {"serviceId": str(service_id)})
    return service


def list_services(
    db: Db,
    *,
    org_id: uuid.UUID,
    is_active: bool | None = None,
    provider_id: uuid.UUID | None = None,
) -> list[Service]:
    """The organisation's services by name; optionally only those a provider offers."""
    stmt = select(Service).where(Service.org_id == org_id).order_by(Service.name, Service.id)
    if is_active is not None:
        stmt = stmt.where(Service.is_active == is_active)
    if provider_id is not None:
        stmt = stmt.join(ServiceProvider, ServiceProvider.service_id == Service.id).where(
            ServiceProvider.provider_id == provider_id
        )
    return list(db.execute(stmt).scalars())


def provider_ids_of(db: Db, service_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each service's providers, by the providers' names."""
    ids = list(service_ids)
    found: dict[uuid.UUID, list[uuid.UUID]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = db.execute(
        select(ServiceProvider.service_id, ServiceProvider.provider_id)
        .join(Provider, Provider.id == ServiceProvider.provider_id)
        .where(ServiceProvider.service_id.in_(ids))
        .order_by(Provider.name, Provider.id)
    )
    for service_id, provider_id in rows:
        found[service_id].append(provider_id)
    return found


def _check_values(values: dict[str, Any]) -> None:
    if "name" in values:
        values["name"] = str(values["name"]).strip()
        if not values["name"]:
            raise InvalidInput("name cannot be empty.")
    for key, (low, high, name) in BOUNDS.items():
        value = values.get(key)
        if value is not None and not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low} and {high}.", {name: value})
    if values.get("room_type") is not None:
        check_room_type(values["room_type"])
    if values.get("schedule_name") is not None:
        values["schedule_name"] = str(values["schedule_name"]).strip()
        if not 1 <= len(values["schedule_name"]) <= 100:
            raise InvalidInput("scheduleName must have 1 to 100 characters.")


def _set_providers(db: Db, service: Service, provider_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Make exactly these providers (all of the service's organisation) offer the service."""
    wanted = list(dict.fromkeys(provider_ids))
    if len(wanted) > MAX_PROVIDERS:
        raise InvalidInput(f"A service has at most {MAX_PROVIDERS} providers.")
    known = set(
        db.execute(
            select(Provider.id).where(Provider.org_id == service.org_id, Provider.id.in_(wanted))
        ).scalars()
    )
    unknown = [str(p) for p in wanted if p not in known]
    if unknown:
        raise InvalidInput(
            "providerIds names providers this organisation does not have.",
            {"providerIds": unknown},
        )
    db.execute(delete(ServiceProvider).where(ServiceProvider.service_id == service.id))
    db.add_all(
        ServiceProvider(service_id=service.id, provider_id=p, org_id=service.org_id) for p in wanted
    )
    db.flush()
    return wanted


def create_service(
    db: Db, *, org_id: uuid.UUID, provider_ids: Sequence[uuid.UUID] = (), **values: Any
) -> Service:
    """Create a service in the organisation's currency, offered by ``provider_ids``.

    ``values``: name, description, duration_min, price_minor, capacity, is_active,
    buffer_before_min, buffer_after_min, min_notice_min, max_days_ahead, slot_step_min
    (None: the duration), schedule_name (None: each provider's default schedule),
    room_type (None: no room needed).
    """
    _check_values(values)
    if "duration_min" not in values:
        raise InvalidInput("duration is required.")
    service = Service(org_id=org_id, currency=get_organization(db, org_id).currency, **values)
    db.add(service)
    db.flush()
    _set_providers(db, service, provider_ids)
    return service


def update_service(
    db: Db,
    service_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    provider_ids: Sequence[uuid.UUID] | None = None,
    **changes: Any,
) -> Service:
    """Change some of a service's fields (the names of :func:`create_service`); a list of
    ``provider_ids`` replaces the providers offering it. Booked sessions keep their terms."""
    service = get_service(db, service_id, org_id=org_id)
    _check_values(changes)
    for name, value in changes.items():
        setattr(service, name, value)
    db.flush()
    if provider_ids is not None:
        _set_providers(db, service, provider_ids)
    return service


def delete_service(db: Db, service_id: uuid.UUID, *, org_id: uuid.UUID) -> Service | None:
    """Delete a service never booked (None), or deactivate and return one with sessions."""
    service = get_service(db, service_id, org_id=org_id)
    db.execute(for_update(db, select(Service.id).where(Service.id == service.id)))
    has_sessions = db.execute(select(exists().where(Session.service_id == service.id))).scalar_one()
    if has_sessions:
        service.is_active = False
        db.flush()
        return service
    db.delete(service)
    db.flush()
    return None
