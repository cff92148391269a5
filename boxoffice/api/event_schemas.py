"""Bodies of the events API: events and their ticket types."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from boxoffice.api.schemas import In, Instant, Out
from boxoffice.db.models import Event, TicketType
from boxoffice.domain.money import to_major

EventType = Literal["conference", "workshop", "webinar", "series", "other"]
EventStatus = Literal["draft", "published", "cancelled", "completed"]
TicketKind = Literal["standard", "vip", "early_bird", "group"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Price = Annotated[float, Field(ge=0, le=1_000_000)]
Count = Annotated[int, Field(ge=1, le=1_000_000)]


class TicketTypeIn(In):
    ticket_type: TicketKind
    name: Name
    price: Price | None = Field(default=None, description="Default: the event's ticketPrice")
    quota: Count
    sales_start: Instant | None = None
    sales_end: Instant | None = None
    max_per_order: Annotated[int, Field(ge=1, le=100)] = 10


class TicketTypePatch(In):
    name: Name | None = None
    price: Price | None = None
    quota: Count | None = None
    sales_start: Instant | None = None
    sales_end: Instant | None = None
    max_per_order: Annotated[int, Field(ge=1, le=100)] | None = None


class EventIn(In):
    name: Name
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    event_type: EventType = "other"
    start_date: Instant
    end_date: Instant
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    location: Annotated[str, StringConstraints(max_length=500)] = ""
    is_online: bool = False
    max_participants: Count
    ticket_price: Price = 0
    status: Literal["draft", "published"] = "draft"
    image_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    single_entry: bool = Field(default=True, description="A check-in uses the ticket up")
    ticket_types: Annotated[list[TicketTypeIn], Field(max_length=4)] = []


class EventPatch(In):
    """The fields to change; ``status`` publishes, completes or cancels (cancelling
    refunds every ticket and tells its holder). New dates reissue every ticket's code."""

    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    event_type: EventType | None = None
    start_date: Instant | None = None
    end_date: Instant | None = None
    location: Annotated[str, StringConstraints(max_length=500)] | None = None
    is_online: bool | None = None
    max_participants: Count | None = None
    ticket_price: Price | None = None
    status: Literal["published", "cancelled", "completed"] | None = None
    image_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    metadata: dict[str, Any] | None = None
    single_entry: bool | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class TicketTypeOut(Out):
    id: uuid.UUID
    ticket_type: TicketKind
    name: str
    price: float
    currency: str
    quota: int
    sold: int
    available: int
    sales_start: datetime | None
    sales_end: datetime | None
    max_per_order: int
    on_sale: bool

    @classmethod
    def of(cls, t: TicketType, event: Event, now: datetime) -> TicketTypeOut:
        left = max(
            min(t.quota - t.sold_count, event.max_participants - event.current_participants), 0
        )
        on_sale = (
            event.status == "published"
            and (t.sales_start_at is None or t.sales_start_at <= now)
            and (t.sales_end_at is None or now < t.sales_end_at)
            and now < event.end_at
            and left > 0
        )
        return cls(
            id=t.id,
            ticket_type=t.kind,  # type: ignore[arg-type]
            name=t.name,
            price=to_major(t.price_minor, event.currency),
            currency=event.currency,
            quota=t.quota,
            sold=t.sold_count,
            available=left,
            sales_start=t.sales_start_at,
            sales_end=t.sales_end_at,
            max_per_order=t.max_per_order,
            on_sale=on_sale,
        )


class EventOut(Out):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    description: str
    event_type: EventType
    start_date: datetime
    end_date: datetime
    timezone: str
    location: str
    is_online: bool
    max_participants: int
    current_participants: int
    ticket_price: float
    currency: str
    status: EventStatus
    image_url: str | None
    metadata: dict[str, Any]
    single_entry: bool
    ticket_types: list[TicketTypeOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, event: Event, types: list[TicketType], now: datetime) -> EventOut:
        return cls(
            id=event.id,
            organization_id=event.org_id,
            name=event.name,
            description=event.description,
            event_type=event.event_type,  # type: ignore[arg-type]
            start_date=event.start_at,
            end_date=event.end_at,
            timezone=event.timezone,
            location=event.location,
            is_online=event.is_online,
            max_participants=event.max_participants,
            current_participants=event.current_participants,
            ticket_price=to_major(event.ticket_price_minor, event.currency),
            currency=event.currency,
            status=event.status,  # type: ignore[arg-type]
            image_url=event.image_url,
            metadata=event.metadata_,
            single_entry=event.single_entry,
            ticket_types=[TicketTypeOut.of(t, event, now) for t in types],
            created_at=event.created_at,
            updated_at=event.updated_at,
        )


class EventPageOut(Out):
    items: list[EventOut]
    total: int
    page: int
    limit: int


class EventDeleteOut(Out):
    deleted: bool
    event: EventOut | None = Field(description="The cancelled event, when it had tickets")


class EventKeyOut(Out):
    key_id: int
    public_key: str
    status: str
    created_at: datetime
