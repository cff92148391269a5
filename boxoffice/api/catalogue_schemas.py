"""Bodies of the catalogue API: providers, services, availability, leads and clients.

The conventions of :mod:`boxoffice.api.schemas` hold: camelCase, unknown fields
refused, money as a decimal number in the major unit beside its ``currency``,
durations in minutes, local hours as ``"HH:MM"`` strings (``"24:00"`` ends a day).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

from boxoffice.api.schemas import Day, In, Instant, Money, Name, Out, RoomType
from boxoffice.db.models import (
    Booking,
    Client,
    DatedAvailability,
    Lead,
    Provider,
    Schedule,
    Service,
    Session,
    TimeOff,
)
from boxoffice.domain.money import to_major
from boxoffice.services.offerings import PackageLine
from boxoffice.services.schedules import hhmm, mode_of

_HHMM = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$")


def _minutes(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError('a local time is a string "HH:MM"')
    match = _HHMM.match(value)
    if match is None:
        raise ValueError('a local time is "HH:MM" from "00:00" to "24:00"')
    hours, minutes = (int(g) for g in match.groups() if g is not None)
    return hours * 60 + minutes


# Minutes after local midnight, written "HH:MM".
LocalTime = Annotated[
    int,
    BeforeValidator(_minutes),
    WithJsonSchema({"type": "string", "pattern": _HHMM.pattern, "examples": ["09:00"]}),
]
Minutes = Annotated[int, Field(ge=0, le=1440, description="Minutes")]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)]
Zone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=5000)]
ScheduleName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
LeadStatusName = Literal["new", "contacted", "converted"]
ServiceKind = Literal["individual", "package", "bundle"]
ValidityDays = Annotated[int, Field(ge=1, le=3650, description="Days a purchase's credits last")]

# --- providers --------------------------------------------------------------------------


class ProviderIn(In):
    name: Name
    email: Email | None = None
    timezone: Zone | None = Field(default=None, description="IANA zone; default: the org's")
    is_active: bool = True
    user_id: uuid.UUID | None = Field(
        default=None, description="A member of the organisation who manages this calendar"
    )


class ProviderPatch(In):
    name: Name | None = None
    email: Email | None = None
    timezone: Zone | None = None
    is_active: bool | None = None
    user_id: uuid.UUID | None = None


class ProviderOut(Out):
    id: uuid.UUID
    name: str
    email: str | None
    timezone: str
    is_active: bool
    user_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: Provider) -> ProviderOut:
        return cls(
            id=p.id,
            name=p.name,
            email=p.email,
            timezone=p.timezone,
            is_active=p.is_active,
            user_id=p.user_id,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class ProviderDeleteOut(Out):
    deleted: bool
    provider: ProviderOut | None = Field(
        description="The deactivated provider when it had sessions"
    )


# --- services ---------------------------------------------------------------------------


class PackageItemIn(In):
    service_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=100)] = 1


PackageItems = Annotated[
    list[PackageItemIn],
    Field(
        max_length=20,
        description="A package's or bundle's contents (a bundle: exactly one item)",
    ),
]


class PackageItemOut(Out):
    service_id: uuid.UUID
    service_name: str
    quantity: int

    @classmethod
    def of(cls, line: PackageLine) -> PackageItemOut:
        return cls(
            service_id=line.service_id, service_name=line.service_name, quantity=line.quantity
        )


class ServiceIn(In):
    """A service booked with providers, or a package or bundle sold as credits of other
    services (``items`` and ``validityDays``, no providers)."""

    name: Name
    description: Text = ""
    kind: ServiceKind = "individual"
    duration: Annotated[int, Field(ge=5, le=1440, description="Minutes")] | None = Field(
        default=None, description="Minutes; required, except for a package (its longest item's)"
    )
    price: Money = Decimal(0)
    capacity: Annotated[int, Field(ge=1, le=1000, description="Seats at one time")] = 1
    is_active: bool = True
    buffer_before: Minutes = 0
    buffer_after: Minutes = 0
    minimum_notice: Annotated[int, Field(ge=0, le=365 * 1440, description="Minutes")] = 0
    max_days_ahead: Annotated[int, Field(ge=1, le=730)] = 60
    slot_step: Annotated[int, Field(ge=5, le=1440)] | None = Field(
        default=None, description="Minutes between slot starts; default: the duration"
    )
    schedule_name: ScheduleName | None = Field(
        default=None, description="The providers' schedule to use; default: each one's default"
    )
    room_type: RoomType | None = Field(default=None, description="A room of this type is needed")
    provider_ids: Annotated[list[uuid.UUID], Field(max_length=100)] = []
    items: PackageItems | None = None
    validity_days: ValidityDays | None = None


class ServicePatch(In):
    """The fields given change; ``null`` clears slotStep, scheduleName and roomType;
    ``items`` replaces a package's items."""

    name: Name | None = None
    description: Text | None = None
    duration: Annotated[int, Field(ge=5, le=1440)] | None = None
    price: Money | None = None
    capacity: Annotated[int, Field(ge=1, le=1000)] | None = None
    is_active: bool | None = None
    buffer_before: Minutes | None = None
    buffer_after: Minutes | None = None
    minimum_notice: Annotated[int, Field(ge=0, le=365 * 1440)] | None = None
    max_days_ahead: Annotated[int, Field(ge=1, le=730)] | None = None
    slot_step: Annotated[int, Field(ge=5, le=1440)] | None = None
    schedule_name: ScheduleName | None = None
    room_type: RoomType | None = None
    provider_ids: Annotated[list[uuid.UUID], Field(max_length=100)] | None = None
    items: PackageItems | None = None
    validity_days: ValidityDays | None = None


class ServiceOut(Out):
    id: uuid.UUID
    name: str
    description: str
    kind: str
    duration: int
    price: float
    currency: str
    capacity: int
    is_active: bool
    buffer_before: int
    buffer_after: int
    minimum_notice: int
    max_days_ahead: int
    slot_step: int | None
    schedule_name: str | None
    room_type: RoomType | None
    provider_ids: list[uuid.UUID]
    items: list[PackageItemOut] = Field(description="A package's or bundle's contents")
    validity_days: int | None = Field(description="A package's or bundle's credits last this long")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls, s: Service, provider_ids: list[uuid.UUID], items: Sequence[PackageLine] = ()
    ) -> ServiceOut:
        return cls(
            id=s.id,
            name=s.name,
            description=s.description,
            kind=s.kind,
            duration=s.duration_min,
            price=to_major(s.price_minor, s.currency),
            currency=s.currency,
            capacity=s.capacity,
            is_active=s.is_active,
            buffer_before=s.buffer_before_min,
            buffer_after=s.buffer_after_min,
            minimum_notice=s.min_notice_min,
            max_days_ahead=s.max_days_ahead,
            slot_step=s.slot_step_min,
            schedule_name=s.schedule_name,
            room_type=s.room_type,  # type: ignore[arg-type]
            provider_ids=provider_ids,
            items=[PackageItemOut.of(line) for line in items],
            validity_days=s.validity_days,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class ServiceDeleteOut(Out):
    deleted: bool
    service: ServiceOut | None = Field(description="The deactivated service when it had sessions")


# --- schedules, dated availability, time off ------------------------------------------


class BlockIn(In):
    weekday: Annotated[int, Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")]
    start: LocalTime
    end: LocalTime


class BlockOut(Out):
    weekday: int
    start: str
    end: str


class ScheduleIn(In):
    name: ScheduleName
    timezone: Zone | None = Field(default=None, description="IANA zone; default: the provider's")
    is_default: bool = False
    blocks: Annotated[list[BlockIn], Field(max_length=200)] = []


class SchedulePatch(In):
    """The fields given change; ``blocks`` replaces all of them."""

    name: ScheduleName | None = None
    timezone: Zone | None = None
    is_default: bool | None = None
    blocks: Annotated[list[BlockIn], Field(max_length=200)] | None = None


class ScheduleOut(Out):
    id: uuid.UUID
    provider_id: uuid.UUID
    name: str
    timezone: str
    is_default: bool
    blocks: list[BlockOut]
    created_at: datetime

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            id=s.id,
            provider_id=s.provider_id,
            name=s.name,
            timezone=s.timezone,
            is_default=s.is_default,
            blocks=[
                BlockOut(weekday=b.weekday, start=hhmm(b.start_min), end=hhmm(b.end_min))
                for b in s.blocks
            ],
            created_at=s.created_at,
        )


class DatedAvailabilityIn(In):
    day: Day = Field(alias="date")
    mode: Literal["add", "replace", "closed"] = "add"
    start: LocalTime | None = Field(default=None, description="Not for a closed day")
    end: LocalTime | None = None
    schedule_id: uuid.UUID | None = Field(
        default=None, description="Only this schedule; default: all the provider's"
    )


class DatedAvailabilityOut(Out):
    id: uuid.UUID
    provider_id: uuid.UUID
    schedule_id: uuid.UUID | None
    day: date = Field(alias="date")
    mode: Literal["add", "replace", "closed"]
    start: str | None
    end: str | None

    @classmethod
    def of(cls, d: DatedAvailability) -> DatedAvailabilityOut:
        mode = mode_of(d)
        closed = mode == "closed"
        return cls(
            id=d.id,
            provider_id=d.provider_id,
            schedule_id=d.schedule_id,
            day=d.day,
            mode=mode.value,
            start=None if closed else hhmm(d.start_min),
            end=None if closed else hhmm(d.end_min),
        )


class TimeOffIn(In):
    start_at: Instant
    end_at: Instant
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class TimeOffOut(Out):
    id: uuid.UUID
    provider_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, t: TimeOff) -> TimeOffOut:
        return cls(
            id=t.id,
            provider_id=t.provider_id,
            start_at=t.start_at,
            end_at=t.end_at,
            reason=t.reason,
            created_at=t.created_at,
        )


# --- agenda -----------------------------------------------------------------------------


class AgendaBookingOut(Out):
    id: uuid.UUID
    status: str
    payment_status: str
    price: float
    currency: str
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    client_id: uuid.UUID | None
    user_id: uuid.UUID | None
    notes: str
    created_at: datetime

    @classmethod
    def of(cls, b: Booking) -> AgendaBookingOut:
        return cls(
            id=b.id,
            status=b.status,
            payment_status=b.payment_status,
            price=to_major(b.price_minor, b.currency),
            currency=b.currency,
            customer_name=b.customer_name,
            customer_email=b.customer_email,
            customer_phone=b.customer_phone,
            client_id=b.client_id,
            user_id=b.user_id,
            notes=b.notes,
            created_at=b.created_at,
        )


class AgendaSessionOut(Out):
    id: uuid.UUID
    start_time: datetime
    end_time: datetime
    status: str
    title: str | None
    service_id: uuid.UUID | None
    service_name: str | None
    room_id: uuid.UUID | None
    max_participants: int
    booked_count: int
    bookings: list[AgendaBookingOut]

    @classmethod
    def of(cls, s: Session, bookings: list[Booking]) -> AgendaSessionOut:
        return cls(
            id=s.id,
            start_time=s.start_at,
            end_time=s.end_at,
            status=s.status,
            title=s.title,
            service_id=s.service_id,
            service_name=s.service.name if s.service else None,
            room_id=s.room_id,
            max_participants=s.max_participants,
            booked_count=s.booked_count,
            bookings=[AgendaBookingOut.of(b) for b in bookings],
        )


class AgendaOut(Out):
    provider_id: uuid.UUID
    timezone: str
    sessions: list[AgendaSessionOut]


# --- leads and clients ------------------------------------------------------------------


class LeadIn(In):
    email: Email
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    source: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    notes: Text = ""
    status: Literal["new", "contacted"] = "new"


class LeadPatch(In):
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    source: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    notes: Text | None = None
    status: LeadStatusName | None = Field(
        default=None, description="new <-> contacted; a lead converts by booking"
    )


class LeadOut(Out):
    id: uuid.UUID
    email: str
    name: str
    source: str
    notes: str
    status: LeadStatusName
    client_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, lead: Lead) -> LeadOut:
        return cls(
            id=lead.id,
            email=lead.email,
            name=lead.name,
            source=lead.source,
            notes=lead.notes,
            status=lead.status,  # type: ignore[arg-type]
            client_id=lead.client_id,
            created_at=lead.created_at,
            updated_at=lead.updated_at,
        )


class LeadPageOut(Out):
    items: list[LeadOut]
    total: int
    page: int
    limit: int


class ClientIn(In):
    email: Email
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None


class ClientOut(Out):
    id: uuid.UUID
    email: str
    name: str
    phone: str | None
    profile: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, c: Client) -> ClientOut:
        return cls(
            id=c.id,
            email=c.email,
            name=c.name,
            phone=c.phone,
            profile=c.profile,
            created_at=c.created_at,
        )


class ClientPageOut(Out):
    items: list[ClientOut]
    total: int
    page: int
    limit: int
