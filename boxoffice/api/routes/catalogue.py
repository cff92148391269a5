"""The catalogue an organisation sells: providers and their services; leads and clients.

Owners and admins manage everything. A member linked to a provider (its ``userId``)
manages that provider's own calendar: see :mod:`boxoffice.api.routes.availability`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from boxoffice.api.catalogue_schemas import (
    ClientIn,
    ClientOut,
    ClientPageOut,
    LeadIn,
    LeadOut,
    LeadPageOut,
    LeadPatch,
    LeadStatusName,
    ProviderDeleteOut,
    ProviderIn,
    ProviderOut,
    ProviderPatch,
    ServiceDeleteOut,
    ServiceIn,
    ServiceOut,
    ServicePatch,
)
from boxoffice.api.deps import CurrentCaller, Db
from boxoffice.api.routes import availability
from boxoffice.api.routes.bookings import Limit, Page
from boxoffice.api.schemas import error_responses
from boxoffice.db.models import Service
from boxoffice.db.session import Db as Session
from boxoffice.domain.money import to_minor
from boxoffice.services import auth, clients, offerings, providers
from boxoffice.services.organizations import get_organization

router = APIRouter(
    prefix="/api/v1/admin", tags=["catalogue"], responses=error_responses(401, 403, 404, 409)
)
router.include_router(availability.router)

# Fields that may be set to null; every other field given as null is left as it is.
_NULLABLE = {"email", "user_id", "slot_step", "schedule_name", "room_type"}
_SERVICE_FIELDS = {
    "name": "name",
    "description": "description",
    "duration": "duration_min",
    "capacity": "capacity",
    "is_active": "is_active",
    "buffer_before": "buffer_before_min",
    "buffer_after": "buffer_after_min",
    "minimum_notice": "min_notice_min",
    "max_days_ahead": "max_days_ahead",
    "slot_step": "slot_step_min",
    "schedule_name": "schedule_name",
    "room_type": "room_type",
    "kind": "kind",
    "validity_days": "validity_days",
}


def _given(body: Any) -> dict[str, Any]:
    """The fields the body sets, without nulls where null means nothing."""
    given: dict[str, Any] = body.model_dump(exclude_unset=True)
    return {k: v for k, v in given.items() if v is not None or k in _NULLABLE}


def _service_values(
    s: Session, org_id: uuid.UUID, body: ServiceIn | ServicePatch
) -> dict[str, Any]:
    given = _given(body)
    values = {name: given[key] for key, name in _SERVICE_FIELDS.items() if key in given}
    if "price" in given:
        values["price_minor"] = to_minor(given["price"], get_organization(s, org_id).currency)
    return values


def _items(body: ServiceIn | ServicePatch) -> list[offerings.ItemSpec] | None:
    if body.items is None:
        return None
    return [offerings.ItemSpec(i.service_id, i.quantity) for i in body.items]


def _service_out(s: Session, service: Service) -> ServiceOut:
    return ServiceOut.of(
        service,
        offerings.provider_ids_of(s, [service.id])[service.id],
        offerings.items_of(s, [service.id])[service.id],
    )


# --- providers --------------------------------------------------------------------------


@router.post("/providers", status_code=status.HTTP_201_CREATED, response_model=ProviderOut)
def create_provider(body: ProviderIn, caller: CurrentCaller, db: Db) -> ProviderOut:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        values = _given(body)
        if values.get("timezone") is None:
            values.pop("timezone", None)
        return ProviderOut.of(providers.create_provider(s, org_id=org.org_id, **values))


@router.get("/providers", response_model=list[ProviderOut])
def list_providers(
    caller: CurrentCaller,
    db: Db,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
) -> list[ProviderOut]:
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        rows = providers.list_providers(s, org_id=org.org_id, is_active=is_active)
        return [ProviderOut.of(p) for p in rows]


@router.get("/providers/{provider_id}", response_model=ProviderOut)
def get_provider(provider_id: uuid.UUID, caller: CurrentCaller, db: Db) -> ProviderOut:
    """A provider, to its admins and to the member who manages it."""
    with db.read() as s:
        return ProviderOut.of(
            providers.managed_provider(s, caller.user_id, provider_id, org_slug=caller.org_slug)
        )


@router.put("/providers/{provider_id}", response_model=ProviderOut)
def update_provider(
    provider_id: uuid.UUID, body: ProviderPatch, caller: CurrentCaller, db: Db
) -> ProviderOut:
    """Change the fields given; the others stay. ``userId: null`` unlinks the member."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        provider = providers.update_provider(s, provider_id, org_id=org.org_id, **_given(body))
        return ProviderOut.of(provider)


@router.delete("/providers/{provider_id}", response_model=ProviderDeleteOut)
def delete_provider(provider_id: uuid.UUID, caller: CurrentCaller, db: Db) -> ProviderDeleteOut:
    """Delete a provider never booked; one with sessions is deactivated instead."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        kept = providers.delete_provider(s, provider_id, org_id=org.org_id)
        return ProviderDeleteOut(
            deleted=kept is None, provider=ProviderOut.of(kept) if kept else None
        )


# --- services ---------------------------------------------------------------------------


@router.post("/services", status_code=status.HTTP_201_CREATED, response_model=ServiceOut)
def create_service(body: ServiceIn, caller: CurrentCaller, db: Db) -> ServiceOut:
    """A service in the organisation's currency, offered by ``providerIds``; or a
    package (``kind: package``, a mix) or bundle (N of one service) with ``items``
    and ``validityDays``, which customers buy and then schedule credit by credit."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        service = offerings.create_service(
            s,
            org_id=org.org_id,
            provider_ids=body.provider_ids,
            items=_items(body),
            **_service_values(s, org.org_id, body),
        )
        return _service_out(s, service)


@router.get("/services", response_model=list[ServiceOut])
def list_services(
    caller: CurrentCaller,
    db: Db,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
    provider_id: Annotated[uuid.UUID | None, Query(alias="providerId")] = None,
) -> list[ServiceOut]:
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        rows = offerings.list_services(
            s, org_id=org.org_id, is_active=is_active, provider_id=provider_id
        )
        ids = offerings.provider_ids_of(s, [r.id for r in rows])
        items = offerings.items_of(s, [r.id for r in rows])
        return [ServiceOut.of(r, ids[r.id], items[r.id]) for r in rows]


@router.get("/services/{service_id}", response_model=ServiceOut)
def get_service(service_id: uuid.UUID, caller: CurrentCaller, db: Db) -> ServiceOut:
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        return _service_out(s, offerings.get_service(s, service_id, org_id=org.org_id))


@router.put("/services/{service_id}", response_model=ServiceOut)
def update_service(
    service_id: uuid.UUID, body: ServicePatch, caller: CurrentCaller, db: Db
) -> ServiceOut:
    """Change the fields given; ``providerIds`` replaces the providers offering it,
    ``items`` a package's items (credits bought already keep theirs)."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        service = offerings.update_service(
            s,
            service_id,
            org_id=org.org_id,
            provider_ids=body.provider_ids,
            items=_items(body),
            **_service_values(s, org.org_id, body),
        )
        return _service_out(s, service)


@router.delete("/services/{service_id}", response_model=ServiceDeleteOut)
def delete_service(service_id: uuid.UUID, caller: CurrentCaller, db: Db) -> ServiceDeleteOut:
    """Delete a service never booked; one in use (sessions, in a package, credits
    bought) is deactivated instead."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        kept = offerings.delete_service(s, service_id, org_id=org.org_id)
        return ServiceDeleteOut(
            deleted=kept is None, service=_service_out(s, kept) if kept else None
        )


# --- leads and clients ------------------------------------------------------------------


@router.post("/leads", status_code=status.HTTP_201_CREATED, response_model=LeadOut)
def create_lead(body: LeadIn, caller: CurrentCaller, db: Db) -> LeadOut:
    """Record someone interested; they become a client when they book with this e-mail."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        lead = clients.create_lead(
            s,
            org_id=org.org_id,
            email=body.email,
            name=body.name,
            source=body.source,
            notes=body.notes,
            status=body.status,
        )
        return LeadOut.of(lead)


@router.get("/leads", response_model=LeadPageOut)
def list_leads(
    caller: CurrentCaller,
    db: Db,
    status_: Annotated[LeadStatusName | None, Query(alias="status")] = None,
    email: Annotated[str | None, Query(max_length=320, description="Part of it")] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> LeadPageOut:
    """The organisation's leads, newest first."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        result = clients.list_leads(
            s, org_id=org.org_id, status=status_, email=email, page=page, limit=limit
        )
        return LeadPageOut(
            items=[LeadOut.of(x) for x in result.items],
            total=result.total,
            page=result.page,
            limit=result.limit,
        )


@router.put("/leads/{lead_id}", response_model=LeadOut)
def update_lead(lead_id: uuid.UUID, body: LeadPatch, caller: CurrentCaller, db: Db) -> LeadOut:
    """Change the fields given, e.g. ``{"status": "contacted"}``."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        return LeadOut.of(clients.update_lead(s, lead_id, org_id=org.org_id, **_given(body)))


@router.post("/clients", status_code=status.HTTP_201_CREATED, response_model=ClientOut)
def create_client(body: ClientIn, caller: CurrentCaller, db: Db) -> ClientOut:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        client = clients.create_client(
            s, org_id=org.org_id, email=body.email, name=body.name, phone=body.phone
        )
        return ClientOut.of(client)


@router.get("/clients", response_model=ClientPageOut)
def list_clients(
    caller: CurrentCaller,
    db: Db,
    email: Annotated[str | None, Query(max_length=320, description="Part of it")] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> ClientPageOut:
    """The organisation's clients by e-mail."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        result = clients.list_clients(s, org_id=org.org_id, email=email, page=page, limit=limit)
        return ClientPageOut(
            items=[ClientOut.of(c) for c in result.items],
            total=result.total,
            page=result.page,
            limit=result.limit,
        )
