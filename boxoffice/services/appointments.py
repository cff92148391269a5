"""Provider appointments: booking a slot race-free, and the customer's own link.

Booking locks the provider rows it may use (``SELECT ... FOR UPDATE`` on PostgreSQL;
SQLite's write transaction is already exclusive), re-runs the slot engine for the
requested start inside that transaction, and only then writes the session; the
PostgreSQL exclusion constraint on a provider's live sessions is the backstop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from boxoffice.db.models import Booking, BookingSeries, Organization, Provider, Service, Session
from boxoffice.db.session import Db
from boxoffice.domain import availability as engine
from boxoffice.domain.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SlotFull,
    SlotUnavailable,
)
from boxoffice.domain.payments import needs_payment
from boxoffice.domain.resources import first_free
from boxoffice.domain.timeslots import Interval
from boxoffice.services import idempotency, orders
from boxoffice.services.bookings import (
    MAX_NOTES,
    Customer,
    Owner,
    add_booking,
    cancel_booking,
    get_booking,
    record_move,
    release_seat,
    try_take_seat,
)
from boxoffice.services.clients import convert_lead_on_booking
from boxoffice.services.links import check_management_token
from boxoffice.services.organizations import check_timezone
from boxoffice.services.slots import (
    APPOINTMENT,
    LIVE,
    get_active_service,
    offering_providers,
    provider_facts,
    rooms_of_type,
    rules_of,
    schedule_timezone,
)

MAX_OCCURRENCES = 52
_LIVE_BOOKING = ("pending", "confirmed")


# --- booking -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recurrence:
    """The same local time every ``every_weeks`` weeks, ``count`` times; ``skip`` lists
    local dates left out on purpose. Every other date must be free, or nothing is booked."""

    every_weeks: int
    count: int
    skip: frozenset[date] = frozenset()


@dataclass(frozen=True)
class AppointmentRequest:
    service_id: uuid.UUID
    provider_id: uuid.UUID | None
    start_at: datetime
    customer: Customer
    notes: str = ""
    recurrence: Recurrence | None = None
    user_id: uuid.UUID | None = None


def occurrences(start_at: datetime, timezone: str, recurrence: Recurrence | None) -> list[datetime]:
    """The starts of a booking: one, or the same wall-clock time (in ``timezone``, the
    provider's) every N weeks."""
    if recurrence is None:
        return [start_at]
    if not 1 <= recurrence.every_weeks <= 52:
        raise InvalidInput("everyWeeks must be between 1 and 52.")
    if not 2 <= recurrence.count <= MAX_OCCURRENCES:
        raise InvalidInput(f"count must be between 2 and {MAX_OCCURRENCES}.")
    zone = ZoneInfo(timezone)
    local = start_at.astimezone(zone).replace(tzinfo=None)
    walls = [local + timedelta(weeks=k * recurrence.every_weeks) for k in range(recurrence.count)]
    unknown = recurrence.skip - {wall.date() for wall in walls}
    if unknown:
        raise InvalidInput(
            "skipDates names dates that are not in the series.",
            {"skipDates": sorted(d.isoformat() for d in unknown)},
        )
    starts = [
        wall.replace(tzinfo=zone).astimezone(UTC)
        for wall in walls
        if wall.date() not in recurrence.skip
    ]
    if not starts:
        raise InvalidInput("Every occurrence is skipped; nothing to book.")
    return starts


def book_appointment(
    db: Db, request: AppointmentRequest, *, idempotency_key: str | None, now: datetime
) -> tuple[list[Booking], bool]:
    """Book a service with a provider (or any free one) at a start, once or recurring.

    Returns the bookings (one per occurrence) and whether they are new; a retry with
    the same idempotency key returns the first request's bookings.
    """
    if len(request.notes) > MAX_NOTES:
        raise InvalidInput(f"notes can be at most {MAX_NOTES} characters.")
    if request.customer.timezone is not None:
        check_timezone(request.customer.timezone)
    service = get_active_service(db, request.service_id)
    scope = f"appointment:{service.org_id}"
    if idempotency_key is not None:
        first = idempotency.claim(
            db,
            scope=scope,
            key=idempotency_key,
            request_hash=idempotency.fingerprint(_fingerprint(request)),
            now=now,
        )
        if first is not None:
            return _bookings_of_request(db, first), False
    org = db.get(Organization, service.org_id)
    assert org is not None
    providers = offering_providers(db, service, request.provider_id, lock=True)
    if not providers:
        raise SlotUnavailable("Nobody offers this service at the moment.")
    starts = occurrences(
        request.start_at, _series_timezone(db, service, providers, org), request.recurrence
    )
    client = convert_lead_on_booking(
        db,
        org_id=org.id,
        email=request.customer.email,
        name=request.customer.name,
        phone=request.customer.phone,
        now=now,
    )
    series_id = None
    if request.recurrence is not None:
        series_id = _new_series(db, org.id, request.recurrence, now)
    rules = rules_of(service)
    order = None
    if needs_payment(service.price_minor, payments_enabled=org.payments_enabled):
        order = orders.open_order(
            db,
            org,
            total_minor=service.price_minor * len(starts),
            currency=service.currency,
            user_id=request.user_id,
            customer_email=request.customer.email,
            customer_name=request.customer.name,
            now=now,
        )
    booked: list[Booking] = []
    refused: list[dict[str, str]] = []
    for start_at in starts:
        session = _claim(db, service, rules, providers, start_at, now)
        if isinstance(session, str):
            refused.append({"startTime": start_at.isoformat(), "reason": session})
            continue
        booked.append(
            add_booking(
                db,
                session,
                currency=service.currency,
                notes=request.notes,
                now=now,
                user_id=request.user_id,
                actor_id=request.user_id,
                customer=request.customer,
                client_id=client.id,
                series_id=series_id,
                order=order,
            )
        )
    if refused:
        _refuse(refused, recurring=request.recurrence is not None)
    if idempotency_key is not None:
        idempotency.complete(
            db, scope=scope, key=idempotency_key, resource_type="booking", resource_id=booked[0].id
        )
    return booked, True


def _series_timezone(db: Db, service: Service, providers: list[Provider], org: Organization) -> str:
    """Where "the same time every week" is meant: the provider's schedule's time zone
    when one provider is asked for, else the organisation's."""
    if len(providers) == 1:
        return schedule_timezone(db, providers[0], service)
    return org.timezone


def _fingerprint(request: AppointmentRequest) -> dict[str, object]:
    return {
        "serviceId": request.service_id,
        "providerId": request.provider_id,
        "startTime": request.start_at.astimezone(UTC).isoformat(),
        "email": request.customer.email.lower(),
        "recurrence": None
        if request.recurrence is None
        else {
            "everyWeeks": request.recurrence.every_weeks,
            "count": request.recurrence.count,
            "skip": sorted(d.isoformat() for d in request.recurrence.skip),
        },
    }


def _refuse(refused: list[dict[str, str]], *, recurring: bool) -> None:
    details: dict[str, object] = {"occurrences": refused} if recurring else dict(refused[0])
    if all(r["reason"] == "fully_booked" for r in refused):
        raise SlotFull("Slot fully booked.", details)
    if recurring:
        raise SlotUnavailable(
            "Not every date of the series is free; skip those dates or choose another time.",
            details,
        )
    raise SlotUnavailable(f"This time cannot be booked ({refused[0]['reason']}).", details)


def _claim(
    db: Db,
    service: Service,
    rules: engine.SlotRules,
    providers: list[Provider],
    start_at: datetime,
    now: datetime,
) -> Session | str:
    """Take a seat at ``start_at`` with one of the (locked) providers: a new session, or a
    seat in the group session of the same service there. Returns why not otherwise."""
    window = Interval(start_at, start_at + timedelta(minutes=service.duration_min))
    reasons: dict[uuid.UUID, str] = {}
    for provider in providers:
        facts = provider_facts(db, provider, service, window)
        reason = engine.explain(
            facts.schedule,
            rules,
            start_at,
            now,
            occupied=facts.occupied,
            time_off=facts.time_off,
            external_busy=facts.busy,
        )
        if reason is None:
            reasons[provider.id] = ""
        else:
            reasons[provider.id] = reason
    free = [p for p in providers if reasons[p.id] == ""]
    if not free:
        order = (
            "too_soon",
            "too_far_ahead",
            "outside_hours",
            "not_on_grid",
            "time_off",
            "busy_in_calendar",
            "fully_booked",
        )
        return max(reasons.values(), key=order.index)
    # A seat in an existing group session first; else a fair pick among the free.
    for provider in free:
        group = _group_session(db, service, provider.id, window)
        if group is not None and try_take_seat(db, group):
            return group
    provider_id = engine.choose_provider(
        [p.id for p in free],
        _week_counts(db, [p.id for p in free], start_at),
        last_assigned=_last_assigned(db, service.id),
        order=[p.id for p in providers],
    )
    room_id = None
    if service.room_type is not None:
        room_id = first_free(rooms_of_type(db, service, window, lock=True), window)
        if room_id is None:
            return "fully_booked"
    session = Session(
        org_id=service.org_id,
        kind=APPOINTMENT,
        title=service.name,
        provider_id=provider_id,
        service_id=service.id,
        room_id=room_id,
        start_at=window.start_at,
        end_at=window.end_at,
        status="scheduled",
        visibility="private",
        is_open=True,
        max_participants=service.capacity,
        booked_count=1,
        price_minor=service.price_minor,
        buffer_before_min=service.buffer_before_min,
        buffer_after_min=service.buffer_after_min,
        created_at=now,
        updated_at=now,
    )
    db.add(session)
    db.flush()
    return session


def claim_slot(
    db: Db,
    service_id: uuid.UUID,
    *,
    provider_id: uuid.UUID | None,
    start_at: datetime,
    now: datetime,
) -> Session:
    """Take a seat at ``start_at`` with the provider (or any free one) for a booking that
    exists already, a package credit being scheduled: the same race-free path and
    checks as :func:`book_appointment`. Raises if the time cannot be booked; the caller
    points its booking at the session returned."""
    service = get_active_service(db, service_id)
    providers = offering_providers(db, service, provider_id, lock=True)
    if not providers:
        raise SlotUnavailable("Nobody offers this service at the moment.")
    session = _claim(db, service, rules_of(service), providers, start_at.astimezone(UTC), now)
    if isinstance(session, str):
        _refuse([{"startTime": start_at.isoformat(), "reason": session}], recurring=False)
    assert isinstance(session, Session)
    return session


def rebook(db: Db, booking: Booking, *, now: datetime) -> bool:
    """Take an appointment's time again for a booking cancelled for want of payment
    (its payment came late): the same provider and start if still free, through the
    same race-free path as booking. False if the time has gone."""
    old = ensure_appointment(booking)
    if old.service_id is None or old.provider_id is None or old.start_at <= now:
        return False
    service = db.get(Service, old.service_id)
    if service is None or not service.is_active:
        return False
    providers = offering_providers(db, service, None, lock=True)
    providers = [p for p in providers if p.id == old.provider_id]
    if not providers:
        return False
    session = _claim(db, service, rules_of(service), providers, old.start_at, now)
    if isinstance(session, str):
        return False
    booking.session = session
    booking.session_id = session.id
    return True


def _group_session(
    db: Db, service: Service, provider_id: uuid.UUID, window: Interval
) -> Session | None:
    if service.capacity <= 1:
        return None
    return db.execute(
        select(Session).where(
            Session.provider_id == provider_id,
            Session.service_id == service.id,
            Session.start_at == window.start_at,
            Session.end_at == window.end_at,
            Session.status == "scheduled",
        )
    ).scalar_one_or_none()


def _week_counts(db: Db, provider_ids: list[uuid.UUID], at: datetime) -> dict[uuid.UUID, int]:
    """Live appointments per provider in the (UTC, Monday-based) week of ``at``."""
    monday = (at - timedelta(days=at.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = db.execute(
        select(Session.provider_id, func.count())
        .where(
            Session.provider_id.in_(provider_ids),
            Session.status.in_(LIVE),
            Session.start_at >= monday,
            Session.start_at < monday + timedelta(days=7),
        )
        .group_by(Session.provider_id)
    ).all()
    return {row[0]: row[1] for row in rows if row[0] is not None}


def _last_assigned(db: Db, service_id: uuid.UUID) -> uuid.UUID | None:
    return db.execute(
        select(Session.provider_id)
        .where(Session.service_id == service_id, Session.kind == APPOINTMENT)
        .order_by(Session.created_at.desc(), Session.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _new_series(db: Db, org_id: uuid.UUID, recurrence: Recurrence, now: datetime) -> uuid.UUID:
    series = BookingSeries(
        org_id=org_id,
        interval_weeks=recurrence.every_weeks,
        count=recurrence.count,
        created_at=now,
    )
    db.add(series)
    db.flush()
    return series.id


def _bookings_of_request(db: Db, first_id: uuid.UUID) -> list[Booking]:
    first = db.get(Booking, first_id)
    if first is None:
        raise NotFound("Booking not found.", {"bookingId": str(first_id)})
    if first.series_id is None:
        return [get_booking(db, first.id, Owner(org_id=first.org_id))]
    ids = db.execute(
        select(Booking.id)
        .join(Booking.session)
        .where(Booking.series_id == first.series_id)
        .order_by(Session.start_at)
    ).scalars()
    return [get_booking(db, i, Owner(org_id=first.org_id)) for i in ids]


# --- the customer's management link ---------------------------------------------------------


def booking_for_token(
    db: Db, booking_id: uuid.UUID, token: str, *, secret: str, lock: bool = False
) -> Booking:
    """The booking a management token was issued for; Unauthorized for any other."""
    check_management_token(token, booking_id, secret=secret)
    booking = db.get(Booking, booking_id)
    if booking is None:
        raise NotFound("Booking not found.", {"bookingId": str(booking_id)})
    return get_booking(db, booking_id, Owner(org_id=booking.org_id), lock=lock)


def ensure_appointment(booking: Booking) -> Session:
    session = booking.session
    if session is None or session.kind != APPOINTMENT:
        raise Conflict("This booking is not a provider appointment.")
    return session


def cancel_appointment(
    db: Db,
    booking_id: uuid.UUID,
    token: str,
    *,
    secret: str,
    following: bool,
    now: datetime,
) -> list[tuple[Booking, int]]:
    """The customer cancels (by the refund policy); ``following`` also cancels the later
    live occurrences of its series. Returns each cancelled booking with its refund."""
    booking = booking_for_token(db, booking_id, token, secret=secret, lock=True)
    ids = [booking.id]
    if following and booking.series_id is not None:
        start_at = ensure_appointment(booking).start_at
        ids += [
            i
            for i in db.execute(
                select(Booking.id)
                .join(Booking.session)
                .where(
                    Booking.series_id == booking.series_id,
                    Booking.id != booking.id,
                    Booking.status.in_(("pending", "confirmed")),
                    Session.start_at > start_at,
                )
                .order_by(Session.start_at)
            ).scalars()
        ]
    owner = Owner(org_id=booking.org_id)
    cancelled = []
    for i in ids:
        # Locked one by one; a later date cancelled meanwhile is simply left as it is.
        if i != booking.id and get_booking(db, i, owner, lock=True).status not in _LIVE_BOOKING:
            continue
        cancelled.append(
            cancel_booking(
                db,
                i,
                owner,
                actor_id=None,
                reason="cancelled by the customer",
                by_organiser=False,
                now=now,
            )
        )
    return cancelled


def reschedule_appointment(
    db: Db,
    booking_id: uuid.UUID,
    token: str,
    *,
    secret: str,
    start_at: datetime,
    now: datetime,
) -> Booking:
    """The customer moves an appointment to another free start with the same provider."""
    booking = booking_for_token(db, booking_id, token, secret=secret, lock=True)
    old = ensure_appointment(booking)
    if booking.status not in ("pending", "confirmed"):
        raise Conflict(
            f"A {booking.status} booking cannot be rescheduled.", {"status": booking.status}
        )
    if now >= old.start_at:
        raise Conflict("The appointment has already started; it can no longer be moved.")
    if start_at == old.start_at:
        raise InvalidInput("The booking is already at that time.")
    assert old.service_id is not None and old.provider_id is not None
    service = db.get(Service, old.service_id)
    assert service is not None
    providers = offering_providers(db, service, old.provider_id, lock=True)
    # Free the old time first, so moving by less than the duration works.
    release_seat(db, old)
    db.flush()
    new = _claim(db, service, rules_of(service), providers, start_at.astimezone(UTC), now)
    if isinstance(new, str):
        _refuse([{"startTime": start_at.isoformat(), "reason": new}], recurring=False)
    assert isinstance(new, Session)
    record_move(db, booking, old, new, actor_id=None, now=now)
    return booking
