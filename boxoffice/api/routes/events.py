"""Events: the public listing, and the organiser's events and ticket types."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from boxoffice.api.deps import CurrentCaller, Db, Now, SecretKey
from boxoffice.api.event_schemas import (
    EventDeleteOut,
    EventIn,
    EventKeyOut,
    EventOut,
    EventPageOut,
    EventPatch,
    EventStatus,
    EventType,
    TicketTypeIn,
    TicketTypeOut,
    TicketTypePatch,
)
from boxoffice.api.schemas import Instant, error_responses
from boxoffice.api.ticket_schemas import TicketOut, TicketPageOut, TicketStatusName
from boxoffice.db.models import Event
from boxoffice.db.session import Db as DbSession
from boxoffice.domain.money import to_minor
from boxoffice.services import auth, event_keys, events, tickets
from boxoffice.services.organizations import get_organization, get_organization_by_slug

router = APIRouter(tags=["events"], responses=error_responses(401, 403, 404, 409))
_ADMIN = "/api/v1/admin/events"
Page = Annotated[int, Query(ge=1, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=events.MAX_PAGE_SIZE)]

_RENAMES = {
    "start_date": "start_at",
    "end_date": "end_at",
    "metadata": "metadata_",
    "ticket_type": "kind",
    "sales_start": "sales_start_at",
    "sales_end": "sales_end_at",
}


def _values(given: dict[str, Any], currency: str) -> dict[str, Any]:
    """Service keyword arguments: model names, prices in minor units."""
    values = {_RENAMES.get(k, k): v for k, v in given.items()}
    for key in ("ticket_price", "price"):
        if key in values:
            price = values.pop(key)
            if price is not None:
                values[f"{key}_minor"] = to_minor(price, currency)
    return values


def _out(s: DbSession, event: Event, now: Any) -> EventOut:
    return EventOut.of(event, events.ticket_types(s, event.id), now)


# --- public -------------------------------------------------------------------------------


@router.get("/api/v1/events", response_model=EventPageOut)
def list_events(
    db: Db,
    now: Now,
    event_type: Annotated[EventType | None, Query(alias="type")] = None,
    start_date: Annotated[Instant | None, Query(alias="startDate", description="From")] = None,
    org: Annotated[str | None, Query(max_length=63, pattern=r"^[a-z0-9-]+$")] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> EventPageOut:
    """Published events, soonest first."""
    with db.read() as s:
        org_id = None
        if org is not None:
            org_id = get_organization_by_slug(s, org).id
        found = events.list_events(
            s,
            events.EventFilter(
                event_type=event_type, starts_from=start_date, org_id=org_id, page=page, limit=limit
            ),
        )
        return EventPageOut(
            items=[_out(s, e, now) for e in found.items],
            total=found.total,
            page=found.page,
            limit=found.limit,
        )


@router.get("/api/v1/events/{event_id}", response_model=EventOut)
def get_event(event_id: uuid.UUID, db: Db, now: Now) -> EventOut:
    """An event with its ticket types and what is left of each."""
    with db.read() as s:
        return _out(s, events.get_event(s, event_id), now)


# --- admin --------------------------------------------------------------------------------


@router.post(_ADMIN, status_code=status.HTTP_201_CREATED, response_model=EventOut)
def create_event(
    body: EventIn, caller: CurrentCaller, db: Db, now: Now, secret: SecretKey
) -> EventOut:
    """Create an event, with its ticket types; published at once if asked."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        currency = get_organization(s, org.org_id).currency
        given = body.model_dump(exclude={"ticket_types", "status"}, exclude_none=True)
        event = events.create_event(
            s,
            org_id=org.org_id,
            now=now,
            ticket_types=[
                _values(t.model_dump(exclude_none=True), currency) for t in body.ticket_types
            ],
            **_values(given, currency),
        )
        if body.status == "published":
            events.change_status(
                s, event.id, org_id=org.org_id, status="published", secret_key=secret, now=now
            )
        return _out(s, event, now)


@router.get(_ADMIN, response_model=EventPageOut)
def list_admin_events(
    caller: CurrentCaller,
    db: Db,
    now: Now,
    event_status: Annotated[EventStatus | None, Query(alias="status")] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> EventPageOut:
    """The organisation's events, drafts included."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        found = events.list_events(
            s,
            events.EventFilter(
                org_id=org.org_id,
                status=event_status,
                published_only=False,
                page=page,
                limit=limit,
            ),
        )
        return EventPageOut(
            items=[_out(s, e, now) for e in found.items],
            total=found.total,
            page=found.page,
            limit=found.limit,
        )


@router.get(f"{_ADMIN}/{{event_id}}", response_model=EventOut)
def get_admin_event(event_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now) -> EventOut:
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        return _out(s, events.get_event(s, event_id, org_id=org.org_id), now)


@router.put(f"{_ADMIN}/{{event_id}}", response_model=EventOut)
def update_event(
    event_id: uuid.UUID,
    body: EventPatch,
    caller: CurrentCaller,
    db: Db,
    now: Now,
    secret: SecretKey,
) -> EventOut:
    """Change the fields given. ``status``: published, completed, or cancelled (every
    ticket refunded in full, every holder told)."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        currency = get_organization(s, org.org_id).currency
        given = body.model_dump(exclude_unset=True, exclude={"status", "reason"})
        event = events.get_event(s, event_id, org_id=org.org_id)
        if given:
            event = events.update_event(
                s,
                event_id,
                org_id=org.org_id,
                actor_id=caller.user_id,
                secret_key=secret,
                now=now,
                **_values(given, currency),
            )
        if body.status == "cancelled":
            event = events.cancel_event(
                s,
                event_id,
                org_id=org.org_id,
                actor_id=caller.user_id,
                reason=body.reason,
                now=now,
            )
        elif body.status is not None:
            event = events.change_status(
                s, event_id, org_id=org.org_id, status=body.status, secret_key=secret, now=now
            )
        return _out(s, event, now)


@router.delete(f"{_ADMIN}/{{event_id}}", response_model=EventDeleteOut)
def delete_event(
    event_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now, response: Response
) -> EventDeleteOut:
    """Delete an event that sold no ticket; one with tickets is cancelled instead (its
    tickets refunded, their holders told)."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        if events.delete_event(s, event_id, org_id=org.org_id):
            return EventDeleteOut(deleted=True, event=None)
        event = events.cancel_event(
            s, event_id, org_id=org.org_id, actor_id=caller.user_id, reason="deleted", now=now
        )
        return EventDeleteOut(deleted=False, event=_out(s, event, now))


@router.post(f"{_ADMIN}/{{event_id}}/keys/rotate", response_model=list[EventKeyOut])
def rotate_key(
    event_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now, secret: SecretKey
) -> list[EventKeyOut]:
    """A new signing key for new codes; the former keys still verify the codes they
    signed (scanners should download the key list again)."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        event = events.lock_event(s, event_id, org_id=org.org_id)
        event_keys.create_key(s, event, secret_key=secret, now=now)
        return [
            EventKeyOut(
                key_id=k.key_id, public_key=k.public_key, status=k.status, created_at=k.created_at
            )
            for k in event_keys.published_keys(s, event.id)
        ]


@router.get(f"{_ADMIN}/{{event_id}}/tickets", response_model=TicketPageOut)
def list_event_tickets(
    event_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    ticket_status: Annotated[TicketStatusName | None, Query(alias="status")] = None,
    page: Page = 1,
    limit: Limit = 50,
) -> TicketPageOut:
    """The event's tickets, oldest first, with their holders."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        found, total = events.event_tickets(
            s, event_id, org_id=org.org_id, status=ticket_status, page=page, limit=limit
        )
        return TicketPageOut(
            items=[TicketOut.of(v) for v in tickets.views(s, found)],
            total=total,
            page=page,
            limit=limit,
        )


# --- ticket types -------------------------------------------------------------------------


@router.post(
    f"{_ADMIN}/{{event_id}}/ticket-types",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketTypeOut,
)
def add_ticket_type(
    event_id: uuid.UUID, body: TicketTypeIn, caller: CurrentCaller, db: Db, now: Now
) -> TicketTypeOut:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        event = events.get_event(s, event_id, org_id=org.org_id)
        ticket_type = events.add_ticket_type(
            s,
            event_id,
            org_id=org.org_id,
            now=now,
            **_values(body.model_dump(exclude_none=True), event.currency),
        )
        return TicketTypeOut.of(ticket_type, event, now)


@router.put(f"{_ADMIN}/{{event_id}}/ticket-types/{{ticket_type_id}}", response_model=TicketTypeOut)
def update_ticket_type(
    event_id: uuid.UUID,
    ticket_type_id: uuid.UUID,
    body: TicketTypePatch,
    caller: CurrentCaller,
    db: Db,
    now: Now,
) -> TicketTypeOut:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        event = events.get_event(s, event_id, org_id=org.org_id)
        ticket_type = events.update_ticket_type(
            s,
            event_id,
            ticket_type_id,
            org_id=org.org_id,
            now=now,
            **_values(body.model_dump(exclude_unset=True), event.currency),
        )
        return TicketTypeOut.of(ticket_type, event, now)


@router.delete(
    f"{_ADMIN}/{{event_id}}/ticket-types/{{ticket_type_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_ticket_type(
    event_id: uuid.UUID, ticket_type_id: uuid.UUID, caller: CurrentCaller, db: Db
) -> Response:
    """Delete a ticket type none of whose tickets were sold."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        events.delete_ticket_type(s, event_id, ticket_type_id, org_id=org.org_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
