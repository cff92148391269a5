"""Services offered: what a customer books with a provider (a haircut, a consultation),
and the packages and bundles that sell several of them at once.

Named ``offerings`` because "services" is the name of this layer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, or_, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Booking, PackageItem, Provider, Service, ServiceProvider, Session
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
    "validity_days": (1, 3650, "validityDays"),
}
KINDS = frozenset({"individual", "workshop", "course", "package", "bundle"})
# Sold as credits of other services, scheduled later: 1 consultation + 3 massages (a
# package), or N of one service (a bundle, e.g. a 10-class pass).
PACKAGE_KINDS = frozenset({"package", "bundle"})
MAX_PACKAGE_ITEMS = 20
MAX_ITEM_QUANTITY = 100
# Credits (draft bookings) one purchase writes at most.
MAX_PACKAGE_CREDITS = 200


@dataclass(frozen=True)
class ItemSpec:
    """A package item as an admin asks for it: ``quantity`` credits of a service."""

    service_id: uuid.UUID
    quantity: int


@dataclass(frozen=True)
class PackageLine:
    """A package item as stored, with its service's name."""

    service_id: uuid.UUID
    service_name: str
    quantity: int


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


def items_of(db: Db, package_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[PackageLine]]:
    """Each package's items by the item services' names (empty for other services)."""
    ids = list(package_ids)
    found: dict[uuid.UUID, list[PackageLine]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = db.execute(
        select(PackageItem.package_id, PackageItem.service_id, Service.name, PackageItem.quantity)
        .join(Service, Service.id == PackageItem.service_id)
        .where(PackageItem.package_id.in_(ids))
        .order_by(Service.name, Service.id)
    )
    for package_id, service_id, name, quantity in rows:
        found[package_id].append(PackageLine(service_id, name, quantity))
    return found


def _check_items(
    db: Db, org_id: uuid.UUID, kind: str, items: Sequence[ItemSpec] | None
) -> list[Service]:
    """Refuse a package's items unless they are active, bookable services of the
    organisation, each named once; returns those services."""
    if not items:
        raise InvalidInput(f"A {kind} needs items: [{{serviceId, quantity}}].", {"kind": kind})
    if kind == "bundle" and len(items) != 1:
        raise InvalidInput(
            "A bundle holds exactly one item (N of one service); use a package for a mix.",
            {"items": len(items)},
        )
    if len(items) > MAX_PACKAGE_ITEMS:
        raise InvalidInput(f"A package has at most {MAX_PACKAGE_ITEMS} items.")
    for item in items:
        if not 1 <= item.quantity <= MAX_ITEM_QUANTITY:
            raise InvalidInput(
                f"quantity must be between 1 and {MAX_ITEM_QUANTITY}.",
                {"serviceId": str(item.service_id), "quantity": item.quantity},
            )
    if sum(item.quantity for item in items) > MAX_PACKAGE_CREDITS:
        raise InvalidInput(f"A package holds at most {MAX_PACKAGE_CREDITS} credits in all.")
    ids = [item.service_id for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidInput("items names a service twice; give its quantity once.")
    services = {
        s.id: s
        for s in db.execute(
            select(Service).where(Service.org_id == org_id, Service.id.in_(ids))
        ).scalars()
    }
    unknown = [str(i) for i in ids if i not in services]
    if unknown:
        raise InvalidInput(
            "items names services this organisation does not have.", {"serviceIds": unknown}
        )
    nested = [str(s.id) for s in services.values() if s.kind in PACKAGE_KINDS]
    if nested:
        raise InvalidInput(
            "A package cannot contain packages or bundles; name the services themselves.",
            {"serviceIds": nested},
        )
    inactive = [str(s.id) for s in services.values() if not s.is_active]
    if inactive:
        raise InvalidInput("items names inactive services.", {"serviceIds": inactive})
    return [services[i] for i in ids]


def _set_items(db: Db, package: Service, items: Sequence[ItemSpec]) -> None:
    db.execute(delete(PackageItem).where(PackageItem.package_id == package.id))
    db.add_all(
        PackageItem(
            package_id=package.id,
            service_id=item.service_id,
            org_id=package.org_id,
            quantity=item.quantity,
        )
        for item in items
    )
    db.flush()


def _refuse_package_fields(
    kind: str, items: Sequence[ItemSpec] | None, values: dict[str, Any]
) -> None:
    if items is not None:
        raise InvalidInput(
            "items are only for a package or bundle service.", {"kind": kind, "items": "given"}
        )
    if values.get("validity_days") is not None:
        raise InvalidInput("validityDays is only for a package or bundle service.", {"kind": kind})


def create_service(
    db: Db,
    *,
    org_id: uuid.UUID,
    provider_ids: Sequence[uuid.UUID] = (),
    items: Sequence[ItemSpec] | None = None,
    **values: Any,
) -> Service:
    """Create a service in the organisation's currency, offered by ``provider_ids``.

    ``values``: name, description, kind, duration_min, price_minor, capacity, is_active,
    buffer_before_min, buffer_after_min, min_notice_min, max_days_ahead, slot_step_min
    (None: the duration), schedule_name (None: each provider's default schedule),
    room_type (None: no room needed), validity_days.

    A package or bundle is sold, not booked: it needs ``items`` (a bundle exactly one)
    and ``validity_days``, has no providers, and its duration defaults to its longest
    item's.
    """
    _check_values(values)
    kind = values.setdefault("kind", "individual")
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(sorted(KINDS))}.", {"kind": kind})
    if kind in PACKAGE_KINDS:
        contents = _check_items(db, org_id, kind, items)
        if values.get("validity_days") is None:
            raise InvalidInput(f"validityDays is required for a {kind}.", {"kind": kind})
        if provider_ids:
            raise InvalidInput(
                "A package has no providers; its items' services have.", {"kind": kind}
            )
        values.setdefault("duration_min", max(s.duration_min for s in contents))
    else:
        _refuse_package_fields(kind, items, values)
    if "duration_min" not in values:
        raise InvalidInput("duration is required.")
    service = Service(org_id=org_id, currency=get_organization(db, org_id).currency, **values)
    db.add(service)
    db.flush()
    if kind in PACKAGE_KINDS:
        assert items is not None
        _set_items(db, service, items)
    _set_providers(db, service, provider_ids)
    return service


def update_service(
    db: Db,
    service_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    provider_ids: Sequence[uuid.UUID] | None = None,
    items: Sequence[ItemSpec] | None = None,
    **changes: Any,
) -> Service:
    """Change some of a service's fields (the names of :func:`create_service`); a list of
    ``provider_ids`` replaces the providers offering it, a list of ``items`` a package's
    items. Booked sessions keep their terms; credits already bought keep theirs."""
    service = get_service(db, service_id, org_id=org_id)
    _check_values(changes)
    if changes.get("kind", service.kind) != service.kind:
        raise InvalidInput("A service's kind cannot change.", {"kind": service.kind})
    if service.kind in PACKAGE_KINDS:
        if items is not None:
            _check_items(db, org_id, service.kind, items)
        if "validity_days" in changes and changes["validity_days"] is None:
            raise InvalidInput(f"validityDays is required for a {service.kind}.")
        if provider_ids:
            raise InvalidInput("A package has no providers; its items' services have.")
    else:
        _refuse_package_fields(service.kind, items, changes)
    for name, value in changes.items():
        setattr(service, name, value)
    db.flush()
    if items is not None:
        _set_items(db, service, items)
    if provider_ids is not None:
        _set_providers(db, service, provider_ids)
    return service


def delete_service(db: Db, service_id: uuid.UUID, *, org_id: uuid.UUID) -> Service | None:
    """Delete a service never booked (None), or deactivate and return one in use: with
    sessions, in a package, or with credits bought."""
    service = get_service(db, service_id, org_id=org_id)
    db.execute(for_update(db, select(Service.id).where(Service.id == service.id)))
    in_use = db.execute(
        select(
            or_(
                exists().where(Session.service_id == service.id),
                exists().where(PackageItem.service_id == service.id),
                exists().where(Booking.service_id == service.id),
            )
        )
    ).scalar_one()
    if in_use:
        service.is_active = False
        db.flush()
        return service
    db.delete(service)
    db.flush()
    return None
