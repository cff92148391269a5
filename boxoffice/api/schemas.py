"""Request and response bodies. JSON names are camelCase; money is a decimal number
in the major unit with its ``currency`` beside it (``"price": 45.0, "currency": "EUR"``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from boxoffice.db.models import (
    Booking,
    BookingStatusChange,
    CalendarConnection,
    OutboxMessage,
    Room,
    Session,
    WebhookSubscription,
)
from boxoffice.domain.money import to_major
from boxoffice.services.booking_events import WEBHOOK_EVENTS
from boxoffice.services.outbox import state_of
from boxoffice.services.payments import PaymentInstructions
from boxoffice.services.timeslots import is_bookable

RoomType = Literal["office", "consultation", "meeting", "treatment"]
BookingStatusName = Literal["draft", "pending", "confirmed", "cancelled", "completed", "no_show"]
PaymentStatusName = Literal["pending", "paid", "refunded", "not_required"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Money = Annotated[Decimal, Field(ge=0, le=100_000, max_digits=12)]


def _no_nul(value: Any) -> Any:
    """Refuse NUL characters anywhere in a value: no database text column can hold them."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text cannot contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


def _calendar_day(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"dates must lie in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


def _calendar_instant(value: datetime) -> datetime:
    _calendar_day(value.date())
    return value


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("working hours are local wall-clock times, without an offset")
    if value.second or value.microsecond:
        raise ValueError("working hours are whole minutes (HH:MM)")
    return value


MIN_YEAR, MAX_YEAR = 2000, 2999
Day = Annotated[date, AfterValidator(_calendar_day)]
Instant = Annotated[AwareDatetime, AfterValidator(_calendar_instant)]
WallClock = Annotated[time, AfterValidator(_wall_clock)]


class In(BaseModel):
    """A request body: camelCase names, unknown fields refused, no NUL characters."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        return _no_nul(data)


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# --- auth -----------------------------------------------------------------------------


class RegisterIn(In):
    email: Annotated[str, StringConstraints(max_length=320)]
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)]
    name: Name


class TokenIn(In):
    email: Annotated[str, StringConstraints(max_length=320)]
    password: Annotated[str, StringConstraints(max_length=1024)]


class TokenOut(Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MembershipOut(Out):
    organization: str
    role: str


class UserOut(Out):
    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    memberships: list[MembershipOut] = []


# --- rooms ----------------------------------------------------------------------------


class RoomIn(In):
    name: Name
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    capacity: Annotated[int, Field(ge=1, le=10_000)]
    room_type: RoomType
    hourly_rate: Money = Decimal(0)
    is_active: bool = True
    metadata: dict[str, Any] = {}


class RoomPatch(In):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    capacity: Annotated[int, Field(ge=1, le=10_000)] | None = None
    room_type: RoomType | None = None
    hourly_rate: Money | None = None
    is_active: bool | None = None
    metadata: dict[str, Any] | None = None


class RoomOut(Out):
    id: uuid.UUID
    organization: str
    name: str
    description: str
    capacity: int
    room_type: RoomType
    hourly_rate: float
    currency: str
    timezone: str
    is_active: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, room: Room) -> RoomOut:
        org = room.organization
        return cls(
            id=room.id,
            organization=org.slug,
            name=room.name,
            description=room.description,
            capacity=room.capacity,
            room_type=room.room_type,  # type: ignore[arg-type]
            hourly_rate=to_major(room.hourly_rate_minor, org.currency),
            currency=org.currency,
            timezone=org.timezone,
            is_active=room.is_active,
            metadata=room.metadata_,
            created_at=room.created_at,
            updated_at=room.updated_at,
        )


class RoomDeleteOut(Out):
    deleted: bool
    room: RoomOut | None = Field(description="The deactivated room when it had bookings")


# --- timeslots ------------------------------------------------------------------------


class TimeslotOut(Out):
    id: uuid.UUID
    room_id: uuid.UUID
    start_time: datetime
    end_time: datetime
    is_available: bool
    price: float
    currency: str
    max_bookings: int
    booked_count: int
    available_spots: int

    @classmethod
    def of(cls, session: Session, room: Room, now: datetime, *, busy: bool = False) -> TimeslotOut:
        currency = room.organization.currency
        return cls(
            id=session.id,
            room_id=room.id,
            start_time=session.start_at,
            end_time=session.end_at,
            is_available=is_bookable(session, room=room, now=now, busy=busy),
            price=to_major(session.price_minor, currency),
            currency=currency,
            max_bookings=session.max_participants,
            booked_count=session.booked_count,
            available_spots=max(session.max_participants - session.booked_count, 0),
        )


class TimeslotListOut(Out):
    room_id: uuid.UUID
    timezone: str
    timeslots: list[TimeslotOut]


class WorkingHours(In):
    start: WallClock
    end: WallClock


class GenerateIn(In):
    room_id: uuid.UUID
    start_date: Day
    end_date: Day
    slot_duration: Annotated[int, Field(ge=5, le=1440, description="Minutes")]
    working_hours: WorkingHours
    weekdays: Annotated[list[Annotated[int, Field(ge=1, le=7)]], Field(max_length=7)] | None = (
        Field(default=None, description="ISO weekdays, 1 = Monday ... 7 = Sunday")
    )
    max_bookings: Annotated[int, Field(ge=1, le=10_000)] = 1


class GenerateOut(Out):
    created: int
    skipped: int
    first_start_time: datetime | None
    last_end_time: datetime | None


# --- bookings -------------------------------------------------------------------------


class BookingIn(In):
    """A seat in a room's timeslot (``timeslotId``) or in a group session (``sessionId``:
    a workshop, or a course session open for drop-ins)."""

    timeslot_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    notes: Annotated[str, StringConstraints(max_length=2000)] = ""

    @model_validator(mode="after")
    def _one_seat(self) -> BookingIn:
        if (self.timeslot_id is None) == (self.session_id is None):
            raise ValueError("give either timeslotId or sessionId")
        return self


class RescheduleIn(In):
    timeslot_id: uuid.UUID


class CancelIn(In):
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class StatusIn(In):
    status: BookingStatusName | None = None
    payment_status: Literal["paid"] | None = Field(
        default=None, description="Record a payment taken outside Box Office"
    )
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class StatusChangeOut(Out):
    from_status: str | None
    to_status: str
    actor_id: uuid.UUID | None
    reason: str
    at: datetime

    @classmethod
    def of(cls, change: BookingStatusChange) -> StatusChangeOut:
        return cls(
            from_status=change.from_status,
            to_status=change.to_status,
            actor_id=change.actor_id,
            reason=change.reason,
            at=change.at,
        )


class PaymentOut(Out):
    """What the client must do to pay: nothing (``paymentRequired`` false), or pay
    ``amount`` before ``holdExpiresAt`` with Stripe's ``clientSecret`` or at
    ``checkoutUrl`` (the offline gateway's page)."""

    payment_required: bool
    order_id: uuid.UUID | None
    amount: float
    currency: str | None
    hold_expires_at: datetime | None
    client_secret: str | None
    checkout_url: str | None
    error: str | None = Field(description="Why the payment could not be started (retry)")

    @classmethod
    def of(cls, p: PaymentInstructions) -> PaymentOut:
        return cls(
            payment_required=p.payment_required,
            order_id=p.order_id,
            amount=to_major(p.amount_minor, p.currency) if p.currency else 0.0,
            currency=p.currency,
            hold_expires_at=p.hold_expires_at,
            client_secret=p.client_secret,
            checkout_url=p.checkout_url,
            error=p.error,
        )


class SessionBriefOut(Out):
    id: uuid.UUID
    kind: str
    title: str | None
    start_at: datetime
    end_at: datetime
    status: str
    course_id: uuid.UUID | None
    sequence_no: int | None

    @classmethod
    def of(cls, session: Session) -> SessionBriefOut:
        return cls(
            id=session.id,
            kind=session.kind,
            title=session.title,
            start_at=session.start_at,
            end_at=session.end_at,
            status=session.status,
            course_id=session.course_id,
            sequence_no=session.sequence_no,
        )


class BookingOut(Out):
    id: uuid.UUID
    status: BookingStatusName
    payment_status: PaymentStatusName
    price: float
    refunded_amount: float
    currency: str
    notes: str
    user_id: uuid.UUID | None
    room_id: uuid.UUID | None
    timeslot_id: uuid.UUID | None
    room: RoomOut | None
    timeslot: TimeslotOut | None
    session_id: uuid.UUID | None
    session: SessionBriefOut | None
    service_id: uuid.UUID | None
    valid_until: datetime | None = Field(description="A package's credit: usable until then")
    hold_expires_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    order_id: uuid.UUID | None
    status_history: list[StatusChangeOut] | None = None
    payment: PaymentOut | None = Field(
        default=None, description="How to pay; in the response to the booking request"
    )

    @classmethod
    def of(
        cls,
        booking: Booking,
        now: datetime,
        history: list[BookingStatusChange] | None = None,
    ) -> BookingOut:
        session = booking.session
        room = session.room if session else None
        return cls(
            id=booking.id,
            status=booking.status,  # type: ignore[arg-type]
            payment_status=booking.payment_status,  # type: ignore[arg-type]
            price=to_major(booking.price_minor, booking.currency),
            refunded_amount=to_major(booking.refunded_minor, booking.currency),
            currency=booking.currency,
            notes=booking.notes,
            user_id=booking.user_id,
            room_id=room.id if room else None,
            timeslot_id=session.id if session else None,
            room=RoomOut.of(room) if room else None,
            timeslot=(
                TimeslotOut.of(session, room, now)
                if session and room and session.kind == "timeslot"
                else None
            ),
            session_id=session.id if session else None,
            session=SessionBriefOut.of(session) if session else None,
            service_id=booking.service_id,
            valid_until=booking.valid_until,
            hold_expires_at=booking.hold_expires_at,
            cancelled_at=booking.cancelled_at,
            created_at=booking.created_at,
            updated_at=booking.updated_at,
            order_id=booking.order_id,
            status_history=[StatusChangeOut.of(c) for c in history]
            if history is not None
            else None,
        )


class CancelOut(Out):
    booking: BookingOut
    refund_amount: float
    currency: str


class BookingPageOut(Out):
    items: list[BookingOut]
    page: int
    limit: int
    total: int


class ErrorDetail(Out):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(Out):
    """The one error shape of every 4xx and 5xx response."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {status: {"model": ErrorOut} for status in (400, 422, 503, *statuses)}


class HealthOut(Out):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]


# --- side effects: deliveries, webhooks, calendars ---------------------------------

DeliveryStateName = Literal["pending", "delivered", "dead"]
TopicName = Literal["event", "email", "calendar", "webhook", "refund"]  # outbox.Topic
WebhookEventName = Literal[WEBHOOK_EVENTS]  # type: ignore[valid-type]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)]


class DeliveryOut(Out):
    id: int
    topic: TopicName
    state: DeliveryStateName
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: OutboxMessage) -> DeliveryOut:
        return cls(
            id=row.id,
            topic=row.topic,  # type: ignore[arg-type]
            state=state_of(row).value,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            dead_at=row.dead_at,
            payload=row.payload,
        )


class DeliveryPageOut(Out):
    items: list[DeliveryOut]
    total: int
    page: int
    limit: int


class WebhookIn(In):
    url: Url
    event_types: Annotated[list[WebhookEventName], Field(min_length=1, max_length=20)]
    description: Annotated[str, StringConstraints(max_length=200)] = ""


class WebhookOut(Out):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, sub: WebhookSubscription) -> WebhookOut:
        return cls(
            id=sub.id,
            url=sub.url,
            event_types=sub.event_types,
            description=sub.description,
            is_active=sub.is_active,
            created_at=sub.created_at,
        )


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="Signing secret (Standard Webhooks); shown only now")


class CalendarConnectionIn(In):
    room_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    url: Url
    username: Annotated[str, StringConstraints(max_length=320)] | None = None
    password: Annotated[str, StringConstraints(max_length=1000)] | None = None


class CalendarConnectionOut(Out):
    id: uuid.UUID
    room_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    url: str
    username: str | None
    has_password: bool
    is_active: bool
    last_synced_at: datetime | None
    last_error: str | None
    created_at: datetime

    @classmethod
    def of(cls, c: CalendarConnection) -> CalendarConnectionOut:
        return cls(
            id=c.id,
            room_id=c.room_id,
            provider_id=c.provider_id,
            url=c.url,
            username=c.username,
            has_password=c.password_encrypted is not None,
            is_active=c.is_active,
            last_synced_at=c.last_synced_at,
            last_error=c.last_error,
            created_at=c.created_at,
        )


class FeedOut(Out):
    url: str = Field(description="Subscribe to this URL in any calendar app; keep it secret")
