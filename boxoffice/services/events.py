"""Events and their ticket types: what organisers create, publish, change and cancel.

Selling tickets is ``services.tickets``; this module owns the event's own lifecycle:
draft -> published -> completed, or -> cancelled (every ticket refunded in full and
its holder told). An event with tickets is never deleted, only cancelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, exists, func, select, update

from boxoffice.db.locking import for_update, queue_for
from boxoffice.db.models import Event, EventKey, Ticket, TicketType
from boxoffice.db.session import Db
from boxoffice.domain.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from boxoffice.services import event_keys, tickets
from boxoffice.services.organizations import get_organization

EVENT_TYPES = ("conference", "workshop", "webinar", "series", "other")
TICKET_KINDS = ("standard", "vip", "early_bird", "group")
MAX_PARTICIPANTS = 1_000_000
MAX_LENGTH = timedelta(days=60)
MAX_PAGE_SIZE = 100
_LIVE_TICKETS = ("pending", "active", "used")

_TRANSITIONS = {
    "draft": {"published", "cancelled"},
    "published": {"cancelled", "completed"},
    "cancelled": set(),
    "completed": set(),
}
_EVENT_FIELDS = {
    "name", "description", "event_type", "start_at", "end_at", "timezone", "location",
    "is_online", "max_participants", "ticket_price_minor", "image_url", "metadata_",
    "single_entry",
}  # fmt: skip
_TYPE_FIELDS = {
    "kind", "name", "price_minor", "quota", "sales_start_at", "sales_end_at", "max_per_order",
}  # fmt: skip


@dataclass(frozen=True)
class EventFilter:
    event_type: str | None = None
    starts_from: datetime | None = None
    org_id: uuid.UUID | None = None
    status: str | None = None
    published_only: bool = True
    page: int = 1
    limit: int = 20


@dataclass(frozen=True)
class EventPage:
    items: list[Event]
    total: int
    page: int
    limit: int


# --- reading ------------------------------------------------------------------------------


def get_event(db: Db, event_id: uuid.UUID, *, org_id: uuid.UUID | None = None) -> Event:
    """An event; with ``org_id`` only that organisation's, else only a published (or
    past) one: a draft does not exist for the public."""
    event = db.get(Event, event_id)
    visible = event is not None and (
        event.org_id == org_id if org_id is not None else event.status != "draft"
    )
    if event is None or not visible:
        raise NotFound("Event not found.", {"eventId": str(event_id)})
    return event


def list_events(db: Db, filters: EventFilter) -> EventPage:
    if not 1 <= filters.limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
    stmt = select(Event)
    if filters.published_only:
        stmt = stmt.where(Event.status == "published")
    elif filters.status is not None:
        stmt = stmt.where(Event.status == filters.status)
    if filters.org_id is not None:
        stmt = stmt.where(Event.org_id == filters.org_id)
    if filters.event_type is not None:
        stmt = stmt.where(Event.event_type == _check_type(filters.event_type))
    if filters.starts_from is not None:
        stmt = stmt.where(Event.start_at >= filters.starts_from)
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = db.execute(
        stmt.order_by(Event.start_at, Event.id)
        .offset((filters.page - 1) * filters.limit)
        .limit(filters.limit)
    ).scalars()
    return EventPage(list(items), total, filters.page, filters.limit)


def ticket_types(db: Db, event_id: uuid.UUID) -> list[TicketType]:
    return list(
        db.execute(
            select(TicketType).where(TicketType.event_id == event_id).order_by(TicketType.number)
        ).scalars()
    )


def event_tickets(
    db: Db,
    event_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    status: str | None = None,
    page: int = 1,
    limit: int = 50,
) -> tuple[list[Ticket], int]:
    """An event's tickets for its organiser, oldest first."""
    get_event(db, event_id, org_id=org_id)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
    stmt = select(Ticket).where(Ticket.event_id == event_id)
    if status is not None:
        stmt = stmt.where(Ticket.status == status)
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = db.execute(
        stmt.order_by(Ticket.created_at, Ticket.id).offset((page - 1) * limit).limit(limit)
    ).scalars()
    return list(items), total


# --- events -------------------------------------------------------------------------------


def create_event(
    db: Db,
    *,
    org_id: uuid.UUID,
    now: datetime,
    ticket_types: list[dict[str, Any]] | None = None,
    **values: Any,
) -> Event:
    """A new event (a draft unless published at once, which needs a ticket type)."""
    org = get_organization(db, org_id)
    status = values.pop("status", "draft")
    event = Event(
        id=uuid.uuid4(),
        org_id=org_id,
        currency=org.currency,
        timezone=org.timezone,
        status="draft",
        current_participants=0,
        description="",
        event_type="other",
        location="",
        is_online=False,
        ticket_price_minor=0,
        single_entry=True,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    _apply(event, values, now=now, new=True)
    db.add(event)
    db.flush()
    for fields in ticket_types or []:
        add_ticket_type(db, event.id, org_id=org_id, now=now, **fields)
    if status != "draft":
        change_status(db, event.id, org_id=org_id, status=status, secret_key=None, now=now)
    return event


def _check_type(event_type: str) -> str:
    if event_type not in EVENT_TYPES:
        raise InvalidInput(f"eventType must be one of {', '.join(EVENT_TYPES)}.")
    return event_type


def _apply(event: Event, values: dict[str, Any], *, now: datetime, new: bool) -> None:
    unknown = set(values) - _EVENT_FIELDS
    if unknown:
        raise TypeError(f"unknown event fields: {sorted(unknown)}")
    for name, value in values.items():
        setattr(event, name, value)
    if not (event.name or "").strip():
        raise InvalidInput("name cannot be empty.")
    _check_type(event.event_type)
    try:
        ZoneInfo(event.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput("Unknown time zone.", {"timezone": event.timezone}) from exc
    if event.end_at <= event.start_at:
        raise InvalidInput("endDate must be after startDate.")
    if event.end_at - event.start_at > MAX_LENGTH:
        raise InvalidInput("An event can last at most 60 days.")
    if (new or "start_at" in values) and event.start_at <= now:
        raise InvalidInput("An event must start in the future.")
    if not 1 <= event.max_participants <= MAX_PARTICIPANTS:
        raise InvalidInput(f"maxParticipants must be between 1 and {MAX_PARTICIPANTS}.")
    if event.max_participants < event.current_participants:
        raise Conflict(
            f"{event.current_participants} tickets are sold; maxParticipants cannot be lower.",
            {"currentParticipants": event.current_participants},
        )
    if event.ticket_price_minor < 0:
        raise InvalidInput("ticketPrice cannot be negative.")


def lock_event(db: Db, event_id: uuid.UUID, *, org_id: uuid.UUID) -> Event:
    """The event, locked for a change by its organiser. In line with its sales first
    (``locking.queue_for``), and a lock that lets sales in progress keep the event's
    row referred to (``keep_key``): a cancellation otherwise waits for a sale that waits
    for it (a deadlock)."""
    queue_for(db, event_id)
    db.execute(for_update(db, select(Event.id).where(Event.id == event_id), keep_key=True))
    event = db.get(Event, event_id, populate_existing=True)
    if event is None or event.org_id != org_id:
        raise NotFound("Event not found.", {"eventId": str(event_id)})
    return event


def update_event(
    db: Db,
    event_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    secret_key: str,
    now: datetime,
    **values: Any,
) -> Event:
    """Change an event's details. New dates reissue every active ticket (their codes
    carry the validity window; the old codes are revoked) and tell each holder."""
    event = lock_event(db, event_id, org_id=org_id)
    if event.status in ("cancelled", "completed"):
        raise Conflict(f"A {event.status} event cannot be changed.")
    before = (event.start_at, event.end_at)
    _apply(event, values, now=now, new=False)
    event.updated_at = now
    db.flush()
    if (event.start_at, event.end_at) != before:
        for ticket_id in live_ticket_ids(db, event.id):
            tickets.reissue(
                db, ticket_id, secret_key=secret_key, reason="event moved", actor_id=actor_id,
                now=now,
            )  # fmt: skip
    return event


def cancel_event(
    db: Db,
    event_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    reason: str,
    now: datetime,
) -> Event:
    """Cancel an event: every ticket is cancelled and refunded in full, its code
    revoked, its holder told."""
    event = change_status(db, event_id, org_id=org_id, status="cancelled", secret_key=None, now=now)
    for ticket_id in live_ticket_ids(db, event.id):
        tickets.cancel_ticket(
            db,
            ticket_id,
            actor_id=actor_id,
            reason=f"event cancelled: {reason}" if reason else "event cancelled",
            by_organiser=True,
            now=now,
        )
    db.flush()
    db.refresh(event)  # the places given back were counted by UPDATE statements
    return event


def change_status(
    db: Db,
    event_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    status: str,
    secret_key: str | None,
    now: datetime,
) -> Event:
    """Publish (its first signing key is made then), complete, or mark cancelled; the
    caller cancels the tickets of a cancelled event (see ``cancel_event``)."""
    event = lock_event(db, event_id, org_id=org_id)
    if status not in _TRANSITIONS.get(event.status, set()):
        raise IllegalTransition(
            f"A {event.status} event cannot become {status}.", {"from": event.status, "to": status}
        )
    if status == "published":
        if not ticket_types(db, event.id):
            raise Conflict("Add a ticket type before publishing the event.")
        if event.start_at <= now:
            raise Conflict("The event has already started.")
        if not db.execute(select(exists().where(EventKey.event_id == event.id))).scalar():
            event_keys.create_key(db, event, secret_key=secret_key or _no_key(), now=now)
    if status == "completed" and event.end_at > now:
        raise Conflict("The event has not ended yet.")
    event.status = status
    event.updated_at = now
    db.flush()
    return event


def _no_key() -> str:
    raise InvalidInput("Publishing needs the instance secret to store the event's key.")


def live_ticket_ids(db: Db, event_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        db.execute(
            select(Ticket.id)
            .where(Ticket.event_id == event_id, Ticket.status.in_(_LIVE_TICKETS))
            .order_by(Ticket.id)
        ).scalars()
    )


def has_tickets(db: Db, event_id: uuid.UUID) -> bool:
    return bool(db.execute(select(exists().where(Ticket.event_id == event_id))).scalar())


def delete_event(db: Db, event_id: uuid.UUID, *, org_id: uuid.UUID) -> bool:
    """Delete an event that never sold a ticket; False (nothing done) if it has tickets:
    the caller cancels it instead."""
    lock_event(db, event_id, org_id=org_id)
    if has_tickets(db, event_id):
        return False
    db.execute(delete(Event).where(Event.id == event_id))
    return True


def complete_events(db: Db, *, now: datetime, limit: int = 100) -> int:
    """Published events that have ended become completed (a periodic job; the
    conditional UPDATE makes two workers act once)."""
    ended = select(Event.id).where(Event.status == "published", Event.end_at <= now).limit(limit)
    result = db.execute(
        update(Event)
        .where(Event.id.in_(ended), Event.status == "published")
        .values(status="completed", updated_at=now)
        .returning(Event.id)
    )
    return len(result.all())


# --- ticket types -------------------------------------------------------------------------


def _check_ticket_type(ticket_type: TicketType) -> None:
    if ticket_type.kind not in TICKET_KINDS:
        raise InvalidInput(f"ticketType must be one of {', '.join(TICKET_KINDS)}.")
    if not (ticket_type.name or "").strip():
        raise InvalidInput("name cannot be empty.")
    if ticket_type.price_minor < 0:
        raise InvalidInput("price cannot be negative.")
    if not 1 <= ticket_type.quota <= MAX_PARTICIPANTS:
        raise InvalidInput("quota must be at least 1.")
    if ticket_type.quota < ticket_type.sold_count:
        raise Conflict(
            f"{ticket_type.sold_count} tickets of this type are sold; the quota cannot be lower.",
            {"soldCount": ticket_type.sold_count},
        )
    if not 1 <= ticket_type.max_per_order <= 100:
        raise InvalidInput("maxPerOrder must be between 1 and 100.")
    start, end = ticket_type.sales_start_at, ticket_type.sales_end_at
    if start is not None and end is not None and end <= start:
        raise InvalidInput("salesEnd must be after salesStart.")


def add_ticket_type(
    db: Db, event_id: uuid.UUID, *, org_id: uuid.UUID, now: datetime, **values: Any
) -> TicketType:
    """A new kind of ticket for the event (one per kind)."""
    event = lock_event(db, event_id, org_id=org_id)
    if event.status in ("cancelled", "completed"):
        raise Conflict(f"A {event.status} event takes no new ticket types.")
    unknown = set(values) - _TYPE_FIELDS
    if unknown:
        raise TypeError(f"unknown ticket type fields: {sorted(unknown)}")
    if any(t.kind == values.get("kind") for t in ticket_types(db, event.id)):
        raise Conflict(f"The event already has a {values.get('kind')} ticket type.")
    number = db.execute(
        select(func.coalesce(func.max(TicketType.number), 0)).where(TicketType.event_id == event.id)
    ).scalar_one()
    defaults = {"max_per_order": 10, "price_minor": event.ticket_price_minor}
    ticket_type = TicketType(
        id=uuid.uuid4(),
        org_id=org_id,
        event_id=event.id,
        number=number + 1,
        sold_count=0,
        created_at=now,
        updated_at=now,
        **(defaults | values),
    )
    _check_ticket_type(ticket_type)
    db.add(ticket_type)
    db.flush()
    return ticket_type


def update_ticket_type(
    db: Db,
    event_id: uuid.UUID,
    ticket_type_id: uuid.UUID,
    *,
    org_id: uuid.UUID,
    now: datetime,
    **values: Any,
) -> TicketType:
    """Change a ticket type (its kind stays: codes carry its number)."""
    ticket_type = _lock_type(db, event_id, ticket_type_id, org_id=org_id)
    unknown = set(values) - (_TYPE_FIELDS - {"kind"})
    if unknown:
        raise TypeError(f"unknown ticket type fields: {sorted(unknown)}")
    for name, value in values.items():
        setattr(ticket_type, name, value)
    _check_ticket_type(ticket_type)
    ticket_type.updated_at = now
    db.flush()
    return ticket_type


def delete_ticket_type(
    db: Db, event_id: uuid.UUID, ticket_type_id: uuid.UUID, *, org_id: uuid.UUID
) -> None:
    ticket_type = _lock_type(db, event_id, ticket_type_id, org_id=org_id)
    if db.execute(select(exists().where(Ticket.ticket_type_id == ticket_type.id))).scalar():
        raise Conflict("Tickets of this type were sold; set its quota or sales end instead.")
    db.delete(ticket_type)
    db.flush()


def _lock_type(
    db: Db, event_id: uuid.UUID, ticket_type_id: uuid.UUID, *, org_id: uuid.UUID
) -> TicketType:
    get_event(db, event_id, org_id=org_id)
    # The type row alone: selling locks the type, then the event.
    ticket_type: TicketType | None = db.execute(
        for_update(
            db,
            select(TicketType).where(
                TicketType.id == ticket_type_id, TicketType.event_id == event_id
            ),
        ).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if ticket_type is None:
        raise NotFound("Ticket type not found.", {"ticketTypeId": str(ticket_type_id)})
    return ticket_type
