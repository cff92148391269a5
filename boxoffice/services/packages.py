"""Packages and bundles: bought once, then used credit by credit.

Buying a package (1 consultation + 3 massages) or a bundle (a 10-class pass) opens
one order and writes one *credit* per unit: a draft booking of the item's service,
without a session, priced 0 (the order carries the price), usable until
``valid_until``. The customer schedules each credit later, into a group session of
its service or a provider slot; only then does it take a seat, and it becomes a
confirmed booking like any other (history row, outbox event, emails, calendars).

When credits can be used follows the rule of single bookings
(``domain.payments.needs_payment``, ``domain.bookings.initial_status``):

- a free package: at once (payment ``not_required``; its order is paid, total 0);
- a priced one at an organisation taking payments online: once its order is paid
  (``payments._succeeded`` marks them paid); a failed or expired payment cancels
  them with the order (``orders.close_if_unpaid``);
- a priced one at an organisation without online payments: at once, to be paid at
  the desk (payment ``pending``, as any booking there). Its order stays open without
  a hold, so the hold expiry never closes it: an order without a hold is how a
  credit tells it never waited for an online payment.

Scheduling locks the order, then the credit (the lock order of every path), so two
requests scheduling one credit cannot both succeed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, func, insert, or_, select, update
from sqlalchemy.orm import joinedload

from boxoffice.db.models import Booking, BookingStatusChange, Order, PackageItem, Service, Session
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus, PaymentStatus, initial_status
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.domain.payments import LATE_PAYMENT_WELCOME, OrderStatus, needs_payment
from boxoffice.services import appointments, idempotency, orders
from boxoffice.services.bookings import MAX_PAGE_SIZE, Owner, get_booking, place_draft, take_seat
from boxoffice.services.offerings import PACKAGE_KINDS
from boxoffice.services.organizations import get_organization
from boxoffice.services.slots import get_active_service

_BOOKINGS = cast(Table, Booking.__table__)
_HISTORY = cast(Table, BookingStatusChange.__table__)
EXPIRED = "expired"  # the history reason of a credit not used in time


class CreditExpired(Conflict):
    code = "credit_expired"


class CreditNotPaid(Conflict):
    code = "credit_not_paid"


class CreditNotUsable(Conflict):
    """Not an unused credit any more: scheduled, cancelled, refunded, or no credit."""

    code = "credit_not_usable"


class WrongService(Conflict):
    code = "credit_wrong_service"


class CreditState(StrEnum):
    UNUSED = "unused"  # can be scheduled now
    AWAITING_PAYMENT = "awaiting_payment"  # its order's online payment has not arrived
    USED = "used"  # scheduled: a booking in a session
    EXPIRED = "expired"  # not scheduled before valid_until
    REFUNDED = "refunded"  # its purchase was refunded
    CANCELLED = "cancelled"  # never paid, or scheduled and then cancelled


@dataclass(frozen=True)
class Credit:
    booking: Booking
    service_name: str
    state: CreditState


@dataclass(frozen=True)
class PurchaseCredits:
    order: Order
    credits: list[Credit]


@dataclass(frozen=True)
class UnusedCredits:
    """The credits of one service the customer can schedule now."""

    service_id: uuid.UUID
    service_name: str
    count: int
    next_expiry: datetime


@dataclass(frozen=True)
class CreditsPage:
    unused: list[UnusedCredits]
    purchases: list[PurchaseCredits]
    total: int
    page: int
    limit: int


@dataclass(frozen=True)
class SessionTarget:
    """Schedule into this group session of the credit's service."""

    session_id: uuid.UUID


@dataclass(frozen=True)
class SlotTarget:
    """Schedule a 1-on-1 appointment at ``start_at``, with the provider or any free one."""

    start_at: datetime
    provider_id: uuid.UUID | None = None


# --- the rules --------------------------------------------------------------------------


def awaits_payment(order: Order) -> bool:
    """Whether an order waits for its online payment (the only kind with a hold)."""
    return order.status == OrderStatus.OPEN and order.hold_expires_at is not None


def _settled(booking: Booking, order: Order | None) -> bool:
    """Whether a credit's purchase allows using it: paid, free, or paid at the desk."""
    if booking.payment_status in (PaymentStatus.PAID, PaymentStatus.NOT_REQUIRED):
        return True
    return booking.payment_status == PaymentStatus.PENDING and (
        order is None or order.hold_expires_at is None
    )


# The same rule in SQL, for a query joining the credit's order.
_SETTLED: ColumnElement[bool] = or_(
    Booking.payment_status.in_((PaymentStatus.PAID.value, PaymentStatus.NOT_REQUIRED.value)),
    and_(Booking.payment_status == PaymentStatus.PENDING.value, Order.hold_expires_at.is_(None)),
)


def credit_state(booking: Booking, order: Order | None, *, now: datetime) -> CreditState:
    if booking.status == BookingStatus.DRAFT:
        if booking.valid_until is not None and booking.valid_until <= now:
            return CreditState.EXPIRED
        if booking.payment_status == PaymentStatus.REFUNDED:
            return CreditState.REFUNDED
        if not _settled(booking, order):
            return CreditState.AWAITING_PAYMENT
        return CreditState.UNUSED
    if booking.status == BookingStatus.CANCELLED:
        # expire_credits cancels a credit at or after its validity, payments long before.
        expired = (
            booking.session_id is None
            and booking.cancelled_at is not None
            and booking.valid_until is not None
            and booking.cancelled_at >= booking.valid_until
        )
        return CreditState.EXPIRED if expired else CreditState.CANCELLED
    return CreditState.USED


# --- buying -----------------------------------------------------------------------------


def purchase_package(
    db: Db,
    *,
    user_id: uuid.UUID,
    service_id: uuid.UUID,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Order, bool]:
    """Buy a package or bundle: one order of its price and one draft booking per credit.

    Returns the order and whether it is new; a retry with the same idempotency key
    returns the first request's order and False.
    """
    scope = f"purchase:{user_id}"
    if idempotency_key is not None:
        first = idempotency.claim(
            db,
            scope=scope,
            key=idempotency_key,
            request_hash=idempotency.fingerprint({"serviceId": service_id}),
            now=now,
        )
        if first is not None:
            done = db.get(Order, first)
            if done is None:
                raise NotFound("Order not found.", {"orderId": str(first)})
            return done, False
    package = get_active_service(db, service_id)
    details: dict[str, Any] = {"serviceId": str(package.id), "kind": package.kind}
    if package.kind not in PACKAGE_KINDS:
        raise Conflict("This service is not a package or bundle; book it instead.", details)
    contents = list(
        db.execute(
            select(Service, PackageItem.quantity)
            .join(PackageItem, PackageItem.service_id == Service.id)
            .where(PackageItem.package_id == package.id)
            .order_by(Service.name, Service.id)
        ).all()
    )
    if not contents or package.validity_days is None:
        raise Conflict("This package has no contents or validity; it cannot be bought.", details)
    gone = [str(s.id) for s, _ in contents if not s.is_active]
    if gone:
        raise Conflict(
            "This package contains services no longer offered; it cannot be bought now.",
            details | {"serviceIds": gone},
        )
    org = get_organization(db, package.org_id)
    online = needs_payment(package.price_minor, payments_enabled=org.payments_enabled)
    _, payment_status = initial_status(package.price_minor, payment_required=online)
    order = orders.open_order(
        db,
        org,
        total_minor=package.price_minor,
        currency=package.currency,
        user_id=user_id,
        now=now,
    )
    if not online:
        order.hold_expires_at = None  # nothing to wait for (see the module's docstring)
        if package.price_minor == 0:
            order.status = OrderStatus.PAID.value
            order.paid_at = now
    valid_until = now + timedelta(days=package.validity_days)
    for service, quantity in contents:
        for _ in range(quantity):
            credit = Booking(
                id=uuid.uuid4(),
                org_id=package.org_id,
                user_id=user_id,
                service_id=service.id,
                valid_until=valid_until,
                order_id=order.id,
                status=BookingStatus.DRAFT.value,
                payment_status=payment_status.value,
                price_minor=0,
                currency=package.currency,
                refunded_minor=0,
                notes="",
                sequence=0,
                created_at=now,
                updated_at=now,
            )
            db.add(credit)
            _history(db, credit, None, BookingStatus.DRAFT, f"bought: {package.name}", user_id, now)
    db.flush()
    if idempotency_key is not None:
        idempotency.complete(
            db, scope=scope, key=idempotency_key, resource_type="order", resource_id=order.id
        )
    return order, True


def _history(
    db: Db,
    booking: Booking,
    previous: BookingStatus | None,
    status: BookingStatus,
    reason: str,
    actor_id: uuid.UUID | None,
    now: datetime,
) -> None:
    db.add(
        BookingStatusChange(
            org_id=booking.org_id,
            booking_id=booking.id,
            from_status=previous.value if previous else None,
            to_status=status.value,
            actor_id=actor_id,
            reason=reason,
            at=now,
        )
    )


# --- what the customer holds ------------------------------------------------------------


def _credits(db: Db, *where: ColumnElement[bool]) -> list[tuple[Booking, str, Order]]:
    return list(
        db.execute(
            select(Booking, Service.name, Order)
            .join(Service, Service.id == Booking.service_id)
            .join(Order, Order.id == Booking.order_id)
            .options(joinedload(Booking.session))
            .where(Booking.valid_until.is_not(None), *where)
            .order_by(Service.name, Booking.id)
        ).all()
    )


def credits_of_order(db: Db, order_id: uuid.UUID, *, now: datetime) -> list[Credit]:
    """The credits one purchase wrote."""
    return [
        Credit(b, name, credit_state(b, order, now=now))
        for b, name, order in _credits(db, Booking.order_id == order_id)
    ]


def list_credits(
    db: Db, *, user_id: uuid.UUID, now: datetime, page: int = 1, limit: int = 20
) -> CreditsPage:
    """The customer's credits: those usable now by service, and a page of their
    purchases (newest first), each with all its credits, used or not."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", {"limit": limit})
    if page < 1:
        raise InvalidInput("page starts at 1.", {"page": page})
    mine = and_(Booking.user_id == user_id, Booking.valid_until.is_not(None))
    unused = [
        UnusedCredits(service_id, name, count, next_expiry)
        for service_id, name, count, next_expiry in db.execute(
            select(Booking.service_id, Service.name, func.count(), func.min(Booking.valid_until))
            .join(Service, Service.id == Booking.service_id)
            .join(Order, Order.id == Booking.order_id)
            .where(
                mine,
                Booking.status == BookingStatus.DRAFT.value,
                Booking.valid_until > now,
                _SETTLED,
            )
            .group_by(Booking.service_id, Service.name)
            .order_by(Service.name, Booking.service_id)
        ).all()
        if service_id is not None and next_expiry is not None  # never None: joined, filtered
    ]
    bought = select(Booking.order_id).where(mine).distinct()
    total = db.execute(select(func.count()).select_from(bought.subquery())).scalar_one()
    order_ids = list(
        db.execute(
            select(Order.id)
            .where(Order.id.in_(bought))
            .order_by(Order.created_at.desc(), Order.id)
            .offset((page - 1) * limit)
            .limit(limit)
        ).scalars()
    )
    grouped: dict[uuid.UUID, list[Credit]] = {i: [] for i in order_ids}
    found: dict[uuid.UUID, Order] = {}
    for b, name, order in _credits(db, mine, Booking.order_id.in_(order_ids)):
        found[order.id] = order
        grouped[order.id].append(Credit(b, name, credit_state(b, order, now=now)))
    purchases = [PurchaseCredits(found[i], grouped[i]) for i in order_ids if i in found]
    return CreditsPage(unused=unused, purchases=purchases, total=total, page=page, limit=limit)


# --- scheduling a credit ----------------------------------------------------------------


def schedule_credit(
    db: Db,
    booking_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    target: SessionTarget | SlotTarget,
    now: datetime,
) -> Credit:
    """Use one of the customer's unused credits: take a seat in a session of its
    service, or a provider slot, before it expires; it becomes a confirmed booking."""
    order_id = db.execute(
        select(Booking.order_id).where(Booking.id == booking_id, Booking.user_id == user_id)
    ).scalar_one_or_none()
    # The order first, then the credit, as on every path (see services.orders).
    order = orders.lock_order(db, order_id) if order_id is not None else None
    booking = get_booking(db, booking_id, Owner(user_id=user_id), lock=True)
    service_id, valid_until = _check_usable(booking, order, now=now)
    if isinstance(target, SessionTarget):
        session = _take_session_seat(db, booking, target.session_id, valid_until, now=now)
    else:
        if target.start_at >= valid_until:
            raise CreditExpired(
                "That time is after this credit expires.",
                {"startAt": target.start_at.isoformat(), "validUntil": valid_until.isoformat()},
            )
        session = appointments.claim_slot(
            db, service_id, provider_id=target.provider_id, start_at=target.start_at, now=now
        )
    _confirm(db, booking, session, order, actor_id=user_id, now=now)
    service = db.get(Service, service_id)
    assert service is not None
    return Credit(booking, service.name, CreditState.USED)


def _check_usable(
    booking: Booking, order: Order | None, *, now: datetime
) -> tuple[uuid.UUID, datetime]:
    details: dict[str, Any] = {"bookingId": str(booking.id), "status": booking.status}
    if booking.valid_until is None or booking.service_id is None:
        raise CreditNotUsable("This booking is not a package credit.", details)
    if booking.status != BookingStatus.DRAFT:
        raise CreditNotUsable(
            f"This credit is {booking.status}; only an unused credit can be scheduled.",
            details,
        )
    details["validUntil"] = booking.valid_until.isoformat()
    if booking.valid_until <= now:
        raise CreditExpired("This credit has expired.", details)
    if booking.payment_status == PaymentStatus.REFUNDED:
        raise CreditNotUsable("This purchase was refunded; its credits cannot be used.", details)
    if not _settled(booking, order):
        raise CreditNotPaid(
            "This purchase has not been paid yet; its credits can be scheduled once the "
            "payment has arrived.",
            details | {"orderId": str(booking.order_id)},
        )
    return booking.service_id, booking.valid_until


def _take_session_seat(
    db: Db, booking: Booking, session_id: uuid.UUID, valid_until: datetime, *, now: datetime
) -> Session:
    session = db.get(Session, session_id, options=[joinedload(Session.room)])
    if session is None or session.org_id != booking.org_id:
        raise NotFound("Session not found.", {"sessionId": str(session_id)})
    details: dict[str, Any] = {"sessionId": str(session.id)}
    if session.service_id != booking.service_id:
        raise WrongService(
            "This session is not of the service this credit is for.",
            details | {"serviceId": str(booking.service_id)},
        )
    if session.start_at >= valid_until:
        raise CreditExpired(
            "This session starts after the credit expires.",
            details
            | {"startAt": session.start_at.isoformat(), "validUntil": valid_until.isoformat()},
        )
    take_seat(db, session, now=now)
    return session


def _confirm(
    db: Db,
    booking: Booking,
    session: Session,
    order: Order | None,
    *,
    actor_id: uuid.UUID,
    now: datetime,
) -> None:
    """The credit now holds its seat (the caller took it): confirmed, announced as a
    new booking (the outside world hears of a booking once it has a time)."""
    if (
        booking.payment_status == PaymentStatus.PENDING
        and order
        and order.status == OrderStatus.PAID
    ):
        booking.payment_status = PaymentStatus.PAID.value  # paid at the desk meanwhile
    place_draft(
        db,
        booking,
        session,
        actor_id=actor_id,
        reason=f"scheduled for {session.start_at.isoformat()}",
        now=now,
    )


# --- for payments and the worker -------------------------------------------------------


def pay_credits(db: Db, credits: list[Booking], *, now: datetime) -> None:
    """An order's payment has arrived: its credits are paid and stay drafts, to be
    scheduled; those cancelled for want of payment (it came late) are drafts again.
    Caller holds the order's lock and the credits'."""
    cancelled = [c.id for c in credits if c.status == BookingStatus.CANCELLED]
    revivable = set()
    if cancelled:
        revivable = set(
            db.execute(
                select(BookingStatusChange.booking_id).where(
                    BookingStatusChange.booking_id.in_(cancelled),
                    BookingStatusChange.to_status == BookingStatus.CANCELLED.value,
                    BookingStatusChange.reason.in_([r.value for r in LATE_PAYMENT_WELCOME]),
                )
            ).scalars()
        )
    for credit in credits:
        if credit.status == BookingStatus.DRAFT:
            previous, reason = BookingStatus.DRAFT, "paid"
        elif credit.id in revivable:
            previous, reason = BookingStatus.CANCELLED, "paid after its hold ran out"
            credit.status = BookingStatus.DRAFT.value
            credit.cancelled_at = None
        else:
            continue
        credit.payment_status = PaymentStatus.PAID.value
        credit.updated_at = now
        _history(db, credit, previous, BookingStatus.DRAFT, reason, None, now)
    db.flush()


def expire_credits(db: Db, *, now: datetime, limit: int = 500) -> int:
    """Cancel unused credits whose validity has run out (history reason ``expired``);
    a periodic job, safe in two workers at once. Returns how many expired."""
    due = (
        select(_BOOKINGS.c.id)
        .where(
            _BOOKINGS.c.status == BookingStatus.DRAFT.value,
            _BOOKINGS.c.valid_until.is_not(None),
            _BOOKINGS.c.valid_until <= now,
        )
        .order_by(_BOOKINGS.c.valid_until)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    expired = db.execute(
        update(_BOOKINGS)
        .where(_BOOKINGS.c.id.in_(due), _BOOKINGS.c.status == BookingStatus.DRAFT.value)
        .values(status=BookingStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
        .returning(_BOOKINGS.c.id, _BOOKINGS.c.org_id)
    ).all()
    if expired:
        db.execute(
            insert(_HISTORY),
            [
                {
                    "org_id": org_id,
                    "booking_id": booking_id,
                    "from_status": BookingStatus.DRAFT.value,
                    "to_status": BookingStatus.CANCELLED.value,
                    "actor_id": None,
                    "reason": EXPIRED,
                    "at": now,
                }
                for booking_id, org_id in expired
            ],
        )
    return len(expired)
