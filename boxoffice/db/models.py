"""The tables. Every organisation-owned row carries ``org_id``.

Money columns are integer minor units (``*_minor``) of the organisation's currency.
Instants are ``*_at`` columns of :class:`UTCDateTime`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from boxoffice.db.base import Base, UTCDateTime, new_id, utcnow


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=new_id)


def _org_id(*, index: bool = True) -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=index)


def _created_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime, default=utcnow)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = _id()
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    plan_tier: Mapped[str] = mapped_column(String(16), default="builder")
    payments_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_account_id: Mapped[str | None] = mapped_column(String(255))
    # [{"minHoursBefore": 24, "percent": 100}, ...]; None means the default policy.
    refund_policy: Mapped[list[dict[str, int]] | None] = mapped_column(JSON)
    hold_min: Mapped[int] = mapped_column(Integer, default=15)
    created_at: Mapped[datetime] = _created_at()


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _created_at()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("org_id", "user_id"),
        CheckConstraint("role IN ('owner', 'admin', 'staff', 'scanner')", name="role"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created_at()

    organization: Mapped[Organization] = relationship(lazy="joined")


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (
        CheckConstraint("capacity >= 1", name="capacity"),
        CheckConstraint("hourly_rate_minor >= 0", name="hourly_rate"),
        CheckConstraint(
            "room_type IN ('office', 'consultation', 'meeting', 'treatment')", name="room_type"
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    capacity: Mapped[int] = mapped_column(Integer)
    room_type: Mapped[str] = mapped_column(String(16))
    hourly_rate_minor: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # Secret of the room's ICS subscription feed; None until an admin asks for the feed.
    feed_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship(lazy="joined", innerjoin=True)


class Provider(Base):
    """A person whose time is booked: a therapist, a barber, a consultant."""

    __tablename__ = "providers"

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The account that manages this provider's own calendar, if any.
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    feed_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Service(Base):
    """What a provider offers: a 50-minute therapy session, a haircut, a consultation."""

    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("duration_min >= 5 AND duration_min <= 1440", name="duration"),
        CheckConstraint("price_minor >= 0", name="price"),
        CheckConstraint("capacity >= 1", name="capacity"),
        CheckConstraint(
            "buffer_before_min >= 0 AND buffer_after_min >= 0 AND min_notice_min >= 0",
            name="non_negative",
        ),
        CheckConstraint("max_days_ahead >= 1", name="horizon"),
        CheckConstraint("slot_step_min IS NULL OR slot_step_min >= 5", name="step"),
        CheckConstraint(
            "kind IN ('individual', 'workshop', 'course', 'package', 'bundle')", name="kind"
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="individual")
    duration_min: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    buffer_before_min: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_min: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_min: Mapped[int] = mapped_column(Integer, default=0)
    max_days_ahead: Mapped[int] = mapped_column(Integer, default=60)
    slot_step_min: Mapped[int | None] = mapped_column(Integer)  # None: the duration
    # The providers' schedule of this name; None: each provider's default schedule.
    schedule_name: Mapped[str | None] = mapped_column(String(100))
    # A room of this type must be free too (e.g. 'treatment'); None: no room.
    room_type: Mapped[str | None] = mapped_column(String(16))
    # Packages and bundles: how long the credits bought can be used, in days.
    validity_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PackageItem(Base):
    """What a package or bundle contains: ``quantity`` credits of another service
    (1 consultation + 3 massages; a bundle is one item, 10 classes)."""

    __tablename__ = "package_items"
    __table_args__ = (CheckConstraint("quantity >= 1 AND quantity <= 100", name="quantity"),)

    package_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    service_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("services.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    quantity: Mapped[int] = mapped_column(Integer)


class ServiceProvider(Base):
    """A service is offered by one or more providers."""

    __tablename__ = "service_providers"

    service_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    org_id: Mapped[uuid.UUID] = _org_id(index=False)


class Schedule(Base):
    """A provider's named weekly availability ("clinic", "online") in one time zone."""

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("provider_id", "name"),
        # One default schedule per provider.
        Index(
            "uq_schedules_default",
            "provider_id",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created_at()

    blocks: Mapped[list[AvailabilityBlock]] = relationship(
        order_by="(AvailabilityBlock.weekday, AvailabilityBlock.start_min)",
        cascade="all, delete-orphan",
    )


class AvailabilityBlock(Base):
    """Recurring weekly hours: weekday (0 = Monday), minutes from local midnight."""

    __tablename__ = "availability_blocks"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("start_min >= 0 AND end_min <= 1440 AND start_min < end_min", name="hours"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column(Integer)
    start_min: Mapped[int] = mapped_column(Integer)
    end_min: Mapped[int] = mapped_column(Integer)


class DatedAvailability(Base):
    """Hours on one local date, for all the provider's schedules or one: added to the
    day's weekly hours, or replacing them (``replace`` with 0-0 closes the day)."""

    __tablename__ = "dated_availability"
    __table_args__ = (
        CheckConstraint(
            "start_min >= 0 AND end_min <= 1440 AND start_min <= end_min", name="hours"
        ),
        Index("ix_dated_availability_provider_day", "provider_id", "day"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE")
    )
    day: Mapped[date] = mapped_column(Date)
    start_min: Mapped[int] = mapped_column(Integer)
    end_min: Mapped[int] = mapped_column(Integer)
    replace: Mapped[bool] = mapped_column(Boolean, default=False)


class TimeOff(Base):
    """A provider away: a vacation, a sick day, an afternoon."""

    __tablename__ = "time_off"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="time_order"),
        Index("ix_time_off_provider_start", "provider_id", "start_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = _created_at()


class Lead(Base):
    """Someone interested, not yet a client."""

    __tablename__ = "leads"
    __table_args__ = (
        CheckConstraint("status IN ('new', 'contacted', 'converted')", name="status"),
        Index("ix_leads_org_email", "org_id", "email"),
        # One open lead per address in an organisation.
        Index(
            "uq_leads_open_email",
            "org_id",
            "email",
            unique=True,
            postgresql_where=text("status <> 'converted'"),
            sqlite_where=text("status <> 'converted'"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    email: Mapped[str] = mapped_column(String(320))  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(100), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="new")
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clients.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Client(Base):
    """A customer of an organisation, one per email."""

    __tablename__ = "clients"
    __table_args__ = (UniqueConstraint("org_id", "email"),)

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    email: Mapped[str] = mapped_column(String(320))  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str | None] = mapped_column(String(40))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = _created_at()


class BookingSeries(Base):
    """Recurring appointments: every ``interval_weeks`` weeks, ``count`` times."""

    __tablename__ = "booking_series"

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    interval_weeks: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()


class Course(Base):
    """One run of a course: N sessions, enrolled in (and paid for) all at once."""

    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint("max_participants >= 1", name="max_participants"),
        CheckConstraint("price_minor >= 0", name="price"),
        CheckConstraint("status IN ('draft', 'scheduled', 'canceled')", name="status"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    service_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("services.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    timezone: Mapped[str] = mapped_column(String(64))
    max_participants: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    visibility: Mapped[str] = mapped_column(String(8), default="public")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Session(Base):
    """The one time container: a room timeslot, an appointment, a workshop, a class.

    ``booked_count`` counts the seats held by bookings; the conditional update that
    takes a seat and the CHECK below keep it within ``max_participants``.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="time_order"),
        CheckConstraint("max_participants >= 1", name="max_participants"),
        CheckConstraint(
            "booked_count >= 0 AND booked_count <= max_participants", name="booked_count"
        ),
        CheckConstraint(
            "status IN ('draft', 'scheduled', 'in_progress', 'completed', 'canceled')",
            name="status",
        ),
        CheckConstraint("visibility IN ('public', 'private')", name="visibility"),
        Index("ix_sessions_room_start", "room_id", "start_at"),
        Index("ix_sessions_org_start", "org_id", "start_at"),
        ExcludeConstraint(
            ("room_id", "="),
            (text("tstzrange(start_at, end_at)"), "&&"),
            name="ex_sessions_room_overlap",
            using="gist",
            where="room_id IS NOT NULL AND status <> 'canceled'",
        ).ddl_if(dialect="postgresql"),
        Index("ix_sessions_provider_start", "provider_id", "start_at"),
        ExcludeConstraint(
            ("provider_id", "="),
            (text("tstzrange(start_at, end_at)"), "&&"),
            name="ex_sessions_provider_overlap",
            using="gist",
            where="provider_id IS NOT NULL AND status <> 'canceled'",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    kind: Mapped[str] = mapped_column(String(16), default="timeslot")
    title: Mapped[str | None] = mapped_column(String(200))
    room_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("providers.id", ondelete="RESTRICT")
    )
    service_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("services.id", ondelete="RESTRICT"), index=True
    )
    # Buffers of the service at booking time: the provider is kept free around it.
    buffer_before_min: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    buffer_after_min: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    visibility: Mapped[str] = mapped_column(String(8), default="public")
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    max_participants: Mapped[int] = mapped_column(Integer, default=1)
    booked_count: Mapped[int] = mapped_column(Integer, default=0)
    price_minor: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    # A course's sessions, numbered from 1.
    course_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("courses.id", ondelete="CASCADE"), index=True
    )
    sequence_no: Mapped[int | None] = mapped_column(Integer)
    # When it really began and ended (in_progress, completed), if anyone said so.
    actual_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    actual_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A freed seat is offered to the first customer waiting.
    waitlist_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Confirmed bookings without attendance become no-shows when the session ends.
    track_attendance: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    room: Mapped[Room | None] = relationship()
    provider: Mapped[Provider | None] = relationship()
    service: Mapped[Service | None] = relationship()


class Booking(Base):
    """One seat in one session (or a draft without a session, for packages)."""

    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'pending', 'confirmed', 'cancelled', 'completed', 'no_show')",
            name="status",
        ),
        CheckConstraint(
            "payment_status IN ('pending', 'paid', 'refunded', 'not_required')",
            name="payment_status",
        ),
        CheckConstraint("price_minor >= 0 AND refunded_minor >= 0", name="amounts"),
        Index("ix_bookings_org_created", "org_id", "created_at"),
        Index("ix_bookings_user_created", "user_id", "created_at"),
        Index("ix_bookings_session", "session_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="RESTRICT")
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    series_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("booking_series.id", ondelete="SET NULL"), index=True
    )
    # A credit of a package or bundle (no session yet): what it may be used for, until when.
    service_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("services.id", ondelete="RESTRICT")
    )
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The order that pays for it; None for free bookings and those paid at the desk.
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    payment_status: Mapped[str] = mapped_column(String(16))
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0)
    notes: Mapped[str] = mapped_column(Text, default="")
    # Who to tell: set for bookings made without an account; else the user's own.
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(40))
    customer_timezone: Mapped[str | None] = mapped_column(String(64))
    # Calendar SEQUENCE of the booking's event: raised on every reschedule.
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    session: Mapped[Session | None] = relationship()
    history: Mapped[list[BookingStatusChange]] = relationship(
        order_by="BookingStatusChange.id", back_populates="booking"
    )


class BookingStatusChange(Base):
    """Who changed a booking's status, when, from what, to what and why."""

    __tablename__ = "booking_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[uuid.UUID] = _org_id()
    booking_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = _created_at()

    booking: Mapped[Booking] = relationship(back_populates="history")


class WaitlistEntry(Base):
    """A customer waiting for a seat in a full session. When a seat frees up the first
    one waiting is offered it: a pending booking that holds the seat until
    ``offered_until``."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('waiting', 'offered', 'accepted', 'expired', 'cancelled')", name="status"
        ),
        Index(
            "uq_waitlist_entries_live",
            "session_id",
            "user_id",
            unique=True,
            postgresql_where=text("status IN ('waiting', 'offered')"),
            sqlite_where=text("status IN ('waiting', 'offered')"),
        ),
        Index("ix_waitlist_entries_session_created", "session_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    booking_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL")
    )
    offered_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Attendance(Base):
    """One stay of a participant in a session: joined (a video room, the door, an
    organiser's check-in) and left. ``duration_s`` is set when they leave."""

    __tablename__ = "attendance"
    __table_args__ = (
        CheckConstraint("left_at IS NULL OR left_at >= joined_at", name="time_order"),
        CheckConstraint("source IN ('api', 'livekit', 'check_in')", name="source"),
        Index("ix_attendance_session_booking", "session_id", "booking_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    booking_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(16))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[int | None] = mapped_column(Integer)
    # The video service's id of the event that opened it, so a repeated webhook is one stay.
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = _created_at()


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` and the resource its first request created."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[uuid.UUID] = _id()
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    # Null while the first request is still in flight.
    resource_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = _created_at()


class OutboxMessage(Base):
    """A side effect to deliver, written in the transaction that caused it.

    Rows of one ``stream`` are delivered in ``id`` order. A claimed row has its
    ``next_attempt_at`` pushed one lease ahead, so a row whose worker died is due
    again once the lease has run out.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(
            "topic IN ('event', 'email', 'calendar', 'webhook', 'refund')", name="topic"
        ),
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND dead_at IS NULL"),
        ),
        Index(
            "ix_outbox_stream_pending",
            "stream",
            "id",
            postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND dead_at IS NULL"),
        ),
        Index("ix_outbox_org_created", "org_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    topic: Mapped[str] = mapped_column(String(16))
    stream: Mapped[str] = mapped_column(String(120))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookSubscription(Base):
    """An organisation's endpoint for automation events, signed per Standard Webhooks."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _created_at()


class CalendarConnection(Base):
    """A provider's or a room's CalDAV calendar; the password is encrypted."""

    __tablename__ = "calendar_connections"
    __table_args__ = (
        CheckConstraint("(provider_id IS NULL) <> (room_id IS NULL)", name="one_owner"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id()
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), index=True
    )
    room_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    username: Mapped[str | None] = mapped_column(String(320))
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class ExternalBusyTime(Base):
    """A busy interval read from a connected calendar; the slot engine subtracts it."""

    __tablename__ = "external_busy_times"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="time_order"),
        UniqueConstraint("connection_id", "uid", "start_at"),
        Index("ix_external_busy_provider_start", "provider_id", "start_at"),
        Index("ix_external_busy_room_start", "room_id", "start_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_connections.id", ondelete="CASCADE")
    )
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE")
    )
    room_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(500))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Order(Base):
    """What one payment pays for: one booking, a series, several tickets, a course.

    ``closed_reason`` says why an order that was never paid closed: payment_failed,
    payment_timeout (its hold ran out) or cancelled. A payment that arrives later is
    honoured only after the first two, when the seats are still free.
    """

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'paid', 'failed', 'cancelled', 'refunded', 'partially_refunded')",
            name="status",
        ),
        CheckConstraint(
            "total_minor >= 0 AND commission_minor >= 0 AND refunded_minor >= 0 "
            "AND refunded_minor <= total_minor",
            name="amounts",
        ),
        Index("ix_orders_org_created", "org_id", "created_at"),
        Index("ix_orders_user_created", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(24), default="open")
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    total_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # The platform's share by the organisation's plan tier; what was actually collected
    # is the payment's application fee (none on a test-mode direct charge).
    commission_minor: Mapped[int] = mapped_column(Integer, default=0)
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Payment(Base):
    """One attempt to collect an order's total through a gateway.

    ``gateway_ref`` is the gateway's id (a PaymentIntent); it is set once the gateway
    has answered. At most one payment of an order is pending at a time.
    """

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="status"),
        CheckConstraint(
            "amount_minor > 0 AND refunded_minor >= 0 AND refunded_minor <= amount_minor",
            name="amounts",
        ),
        UniqueConstraint("gateway", "gateway_ref"),
        Index(
            "uq_payments_one_pending",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_payments_pending_created",
            "created_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_ref: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # Connect: the organisation's account the money goes to, and the platform's fee.
    destination: Mapped[str | None] = mapped_column(String(255))
    application_fee_minor: Mapped[int | None] = mapped_column(Integer)
    client_secret: Mapped[str | None] = mapped_column(String(500))
    checkout_url: Mapped[str | None] = mapped_column(String(2000))
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0)
    failure_message: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Refund(Base):
    """Money going back: asked for in the transaction that decided it, sent by the
    worker through the outbox (retried until the gateway accepts it)."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    booking_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL")
    )
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL")
    )
    amount_minor: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    gateway_ref: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PaymentEvent(Base):
    """A gateway event received (webhook) or found (reconciliation); each id is
    processed once, in the transaction that applies it."""

    __tablename__ = "payment_events"

    gateway: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    payment_ref: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = _created_at()


class OfflineCharge(Base):
    """The offline gateway's own ledger: what an outside processor would keep."""

    __tablename__ = "offline_charges"

    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    order_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0)
    # Refunds by their idempotency key: {key: amount}.
    refunds: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    failure_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Event(Base):
    """Something many people come to with a ticket: a conference, a concert, a webinar.

    ``current_participants`` counts the tickets held (pending, active, used); the
    conditional UPDATE that sells tickets and the CHECK below keep it within
    ``max_participants``.
    """

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="time_order"),
        CheckConstraint("max_participants >= 1", name="max_participants"),
        CheckConstraint(
            "current_participants >= 0 AND current_participants <= max_participants",
            name="current_participants",
        ),
        CheckConstraint("ticket_price_minor >= 0", name="price"),
        CheckConstraint(
            "event_type IN ('conference', 'workshop', 'webinar', 'series', 'other')",
            name="event_type",
        ),
        CheckConstraint(
            "status IN ('draft', 'published', 'cancelled', 'completed')", name="status"
        ),
        Index("ix_events_org_start", "org_id", "start_at"),
        Index("ix_events_status_start", "status", "start_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    event_type: Mapped[str] = mapped_column(String(16), default="other")
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(500), default="")
    is_online: Mapped[bool] = mapped_column(Boolean, default=False)
    max_participants: Mapped[int] = mapped_column(Integer)
    current_participants: Mapped[int] = mapped_column(Integer, default=0)
    ticket_price_minor: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # One entry per ticket: a check-in marks it used (else people may go in and out).
    single_entry: Mapped[bool] = mapped_column(Boolean, default=True)
    image_url: Mapped[str | None] = mapped_column(String(2000))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TicketType(Base):
    """A kind of ticket to an event, with its own price, quota and sales window.

    ``sold_count`` counts its tickets held (pending, active, used), kept within
    ``quota`` by the selling UPDATE and the CHECK."""

    __tablename__ = "ticket_types"
    __table_args__ = (
        CheckConstraint("kind IN ('standard', 'vip', 'early_bird', 'group')", name="kind"),
        CheckConstraint("quota >= 1", name="quota"),
        CheckConstraint("sold_count >= 0 AND sold_count <= quota", name="sold_count"),
        CheckConstraint("price_minor >= 0", name="price"),
        CheckConstraint("max_per_order >= 1", name="max_per_order"),
        UniqueConstraint("event_id", "kind", name="uq_ticket_types_event_kind"),
        UniqueConstraint("event_id", "number", name="uq_ticket_types_event_number"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    # Its number within the event: what a ticket code carries.
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    price_minor: Mapped[int] = mapped_column(Integer)
    quota: Mapped[int] = mapped_column(Integer)
    sold_count: Mapped[int] = mapped_column(Integer, default=0)
    sales_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sales_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_per_order: Mapped[int] = mapped_column(Integer, default=10)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class EventKey(Base):
    """An event's Ed25519 key pair: the private key (encrypted) signs its tickets, the
    public one is published for scanners. Retired keys still verify the codes they
    signed until those are reissued."""

    __tablename__ = "event_keys"
    __table_args__ = (
        UniqueConstraint("event_id", "key_id"),
        CheckConstraint("key_id >= 0 AND key_id <= 255", name="key_id"),
        CheckConstraint("status IN ('active', 'retired')", name="status"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    key_id: Mapped[int] = mapped_column(Integer)
    public_key: Mapped[str] = mapped_column(String(100))
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = _created_at()
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Ticket(Base):
    """A signed, scannable admission to an event, bought in an order.

    Pending while its order waits for payment (it holds its place), then active with a
    code; used (checked in at a single-entry event), expired, cancelled or refunded.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'active', 'used', 'expired', 'cancelled', 'refunded')",
            name="status",
        ),
        CheckConstraint("price_minor >= 0 AND refunded_minor >= 0", name="amounts"),
        Index("ix_tickets_event_status", "event_id", "status"),
        Index("ix_tickets_user_created", "user_id", "created_at"),
        Index("ix_tickets_order", "order_id"),
        Index("ix_tickets_type", "ticket_type_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="RESTRICT"))
    ticket_type_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ticket_types.id", ondelete="RESTRICT")
    )
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    holder_name: Mapped[str | None] = mapped_column(String(200))
    holder_email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))
    is_paid: Mapped[bool] = mapped_column(Boolean, default=False)
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0)
    # The signed code (None until issued) and what it says.
    code: Mapped[str | None] = mapped_column(String(200), unique=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TicketRevocation(Base):
    """A ticket code no longer valid (the ticket changed or was cancelled), by the
    fingerprint of its claims; scanners download the list."""

    __tablename__ = "ticket_revocations"
    __table_args__ = (UniqueConstraint("event_id", "fingerprint"),)

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketScan(Base):
    """One scan at a door: what was shown, where, by whom, and what was decided.

    ``nonce`` is the scanner's id for the scan: a retried request (or a re-uploaded
    offline batch) with the same nonce is the same scan."""

    __tablename__ = "ticket_scans"
    __table_args__ = (
        CheckConstraint("scan_type IN ('check_in', 'check_out', 'access')", name="scan_type"),
        CheckConstraint("result IN ('accepted', 'refused')", name="result"),
        UniqueConstraint("event_id", "nonce"),
        Index("ix_ticket_scans_ticket_scanned", "ticket_id", "scanned_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE")
    )
    scan_type: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(String(200), default="")
    scanner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    device_id: Mapped[str | None] = mapped_column(String(100))
    nonce: Mapped[str] = mapped_column(String(100))
    result: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(300), default="")
    is_offline: Mapped[bool] = mapped_column(Boolean, default=False)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subscription(Base):
    """A member's plan at an organisation (a gym membership, a coworking pass): while
    active it gives access to the organisation's rooms, sessions and events."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'cancelled', 'expired')", name="status"),
        Index("ix_subscriptions_user_org", "user_id", "org_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org_id(index=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    plan: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
