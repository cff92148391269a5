"""Orders: what one payment pays for, and the refunds that give money back.

Lock order: every path that changes an order, its payments or its bookings locks
the order row first (``lock_order``), so a webhook, a cancellation, the hold expiry
and the refund worker queue on it instead of deadlocking.

An order is opened in the transaction that books its seats. Its refunds are asked
for in the transaction that decides them (a cancellation, a payment that came too
late) as a ``refund`` row plus an outbox row; the worker sends them to the gateway
and records the answer, retrying until the gateway accepts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update

from boxoffice.db.locking import for_update, queue_for
from boxoffice.db.models import (
    Booking,
    BookingStatusChange,
    Event,
    Order,
    Organization,
    Payment,
    Refund,
    Session,
    Ticket,
    TicketType,
)
from boxoffice.db.session import Db
from boxoffice.domain.bookings import PaymentStatus
from boxoffice.domain.errors import NotFound
from boxoffice.domain.money import even_share
from boxoffice.domain.payments import (
    ClosedReason,
    OrderStatus,
    PaymentState,
    RefundState,
    commission_minor,
    status_after_refund,
)
from boxoffice.services import outbox
from boxoffice.services.outbox import Topic

_LIVE = ("pending", "confirmed")


def open_order(
    db: Db,
    org: Organization,
    *,
    total_minor: int,
    currency: str,
    now: datetime,
    user_id: uuid.UUID | None = None,
    customer_email: str | None = None,
    customer_name: str | None = None,
) -> Order:
    """A new order waiting for its payment; its seats are held for the organisation's
    hold time."""
    order = Order(
        id=uuid.uuid4(),
        org_id=org.id,
        user_id=user_id,
        customer_email=customer_email,
        customer_name=customer_name,
        status=OrderStatus.OPEN.value,
        total_minor=total_minor,
        currency=currency,
        commission_minor=commission_minor(total_minor, org.plan_tier),
        refunded_minor=0,
        hold_expires_at=now + timedelta(minutes=org.hold_min),
        created_at=now,
        updated_at=now,
    )
    db.add(order)
    db.flush()
    return order


@dataclass(frozen=True)
class OrderView:
    order: Order
    bookings: list[Booking]
    payments: list[Payment]
    refunds: list[Refund]
    tickets: list[Ticket] = field(default_factory=list)


def get_order(
    db: Db, order_id: uuid.UUID, *, user_id: uuid.UUID, staff_of: Collection[uuid.UUID] = ()
) -> OrderView:
    """An order its customer may see, or the staff of its organisation; to anyone else
    it does not exist."""
    order = db.get(Order, order_id)
    visible = order is not None and (order.user_id == user_id or order.org_id in staff_of)
    if order is None or not visible:
        raise NotFound("Order not found.", {"orderId": str(order_id)})
    payments = list(
        db.execute(
            select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at)
        ).scalars()
    )
    refunds = list(
        db.execute(
            select(Refund)
            .where(Refund.payment_id.in_([p.id for p in payments]))
            .order_by(Refund.created_at)
        ).scalars()
    )
    tickets = list(
        db.execute(select(Ticket).where(Ticket.order_id == order_id).order_by(Ticket.id)).scalars()
    )
    return OrderView(order, order_bookings(db, order_id), payments, refunds, tickets)


def order_bookings(db: Db, order_id: uuid.UUID) -> list[Booking]:
    """An order's bookings in time order (unscheduled ones last)."""
    return list(
        db.execute(
            select(Booking)
            .outerjoin(Booking.session)
            .where(Booking.order_id == order_id)
            .order_by(Session.start_at.nulls_last(), Booking.id)
        ).scalars()
    )


def paid_value(db: Db, booking: Booking) -> int:
    """What a booking paid for is worth when it is refunded: its price; for a booking
    of a purchase whose bookings are priced 0 (a course's sessions), its even share of
    the order's total."""
    if booking.payment_status != PaymentStatus.PAID:
        return 0
    if booking.price_minor > 0 or booking.order_id is None:
        return booking.price_minor
    order = db.get(Order, booking.order_id)
    if order is None:
        return 0
    ids = list(
        db.execute(
            select(Booking.id).where(Booking.order_id == order.id).order_by(Booking.id)
        ).scalars()
    )
    return even_share(order.total_minor, len(ids), ids.index(booking.id))


def lock_order(db: Db, order_id: uuid.UUID) -> Order:
    order: Order | None = db.execute(
        for_update(db, select(Order).where(Order.id == order_id)).execution_options(
            populate_existing=True
        )
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("Order not found.", {"orderId": str(order_id)})
    return order


def pay_at_desk(db: Db, order_id: uuid.UUID, *, now: datetime) -> bool:
    """An open order paid outside Box Office (cash, card at the desk): paid, and its
    pending online payment called off. True if the order was open."""
    order = lock_order(db, order_id)
    if order.status != OrderStatus.OPEN:
        return False
    order.status = OrderStatus.PAID.value
    order.paid_at = now
    order.updated_at = now
    for payment in db.execute(
        select(Payment).where(
            Payment.order_id == order_id, Payment.status == PaymentState.PENDING.value
        )
    ).scalars():
        payment.status = PaymentState.CANCELLED.value
        payment.updated_at = now
    db.flush()
    return True


def pending_bookings(db: Db, order_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        db.execute(
            select(Booking.id)
            .where(Booking.order_id == order_id, Booking.status == "pending")
            .order_by(Booking.id)
        ).scalars()
    )


def lock_order_of_payment(db: Db, gateway: str, ref: str) -> tuple[Order, Payment] | None:
    """Lock the order a gateway's payment belongs to, and the payment: both, or None
    if the payment is unknown. One statement; both rows are locked so that PostgreSQL,
    after waiting for a concurrent change, reads both again (a row only joined would
    be seen as it was when the statement started)."""
    stmt = (
        select(Order, Payment)
        .join(Payment, Payment.order_id == Order.id)
        .where(Payment.gateway == gateway, Payment.gateway_ref == ref)
        .execution_options(populate_existing=True)
    )
    if db.get_bind().dialect.name == "postgresql":  # SQLite: the write lock is held
        stmt = stmt.with_for_update(of=[Order, Payment])
    row = db.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def close_if_unpaid(db: Db, order_id: uuid.UUID, reason: ClosedReason, *, now: datetime) -> None:
    """Close an open order once none of its bookings is live any more; a payment not
    yet started at the gateway is called off with it."""
    order = lock_order(db, order_id)
    if order.status != OrderStatus.OPEN:
        return
    live = db.execute(
        select(func.count())
        .select_from(Booking)
        .where(Booking.order_id == order_id, Booking.status.in_(_LIVE))
    ).scalar_one()
    if (
        live
        or not _credits_closed(db, order_id, reason, now=now)
        or not _tickets_closed(db, order_id, reason, now=now)
    ):
        return
    order.status = (
        OrderStatus.FAILED if reason is ClosedReason.PAYMENT_FAILED else OrderStatus.CANCELLED
    ).value
    order.closed_reason = reason.value
    order.updated_at = now
    for payment in db.execute(
        select(Payment).where(
            Payment.order_id == order_id,
            Payment.status == PaymentState.PENDING.value,
            Payment.gateway_ref.is_(None),
        )
    ).scalars():
        payment.status = PaymentState.CANCELLED.value
        payment.updated_at = now
    db.flush()


# --- packages: an order's credits (drafts without a session, see services.packages) ---


def _credits_closed(db: Db, order_id: uuid.UUID, reason: ClosedReason, *, now: datetime) -> bool:
    """An order about to close unpaid: its unused package credits are cancelled with it
    when it closes for want of payment (the payment failed, its hold ran out); any
    other closing waits until none is left, since they are still to be used (paid at
    the desk). True if the order may close."""
    credits = list(
        db.execute(
            for_update(
                db,
                select(Booking)
                .where(Booking.order_id == order_id, Booking.status == "draft")
                .order_by(Booking.id),
            ).execution_options(populate_existing=True)
        ).scalars()
    )
    if not credits:
        return True
    if reason not in (ClosedReason.PAYMENT_FAILED, ClosedReason.PAYMENT_TIMEOUT):
        return False
    for credit in credits:
        credit.status = "cancelled"
        credit.cancelled_at = now
        credit.updated_at = now
        db.add(
            BookingStatusChange(
                org_id=credit.org_id,
                booking_id=credit.id,
                from_status="draft",
                to_status="cancelled",
                actor_id=None,
                reason=reason.value,  # payments._succeeded revives them by this reason
                at=now,
            )
        )
    db.flush()
    return True


# --- events: an order's tickets (see services.tickets) ---------------------------------------

_TICKET_TYPES = cast(Table, TicketType.__table__)
_EVENTS = cast(Table, Event.__table__)
_RETURN_TYPE_PLACES = (
    update(_TICKET_TYPES)
    .where(_TICKET_TYPES.c.id == bindparam("type_id"))
    .values(sold_count=_TICKET_TYPES.c.sold_count - bindparam("n"))
)
_RETURN_EVENT_PLACES = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(current_participants=_EVENTS.c.current_participants - bindparam("n"))
)


def return_places(db: Db, places: Collection[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Put back on sale the places of tickets that no longer hold one, given as (ticket
    type id, event id) per ticket: in line for each event (``locking.queue_for``), then
    each ticket type's count, then each event's (the lock order of every path that
    changes both, in id order). Caller has just moved the tickets out of
    pending/active/used."""
    by_type = Counter(type_id for type_id, _ in places)
    by_event = Counter(event_id for _, event_id in places)
    for event_id in sorted(by_event, key=lambda i: i.bytes):
        queue_for(db, event_id)
    for type_id in sorted(by_type, key=lambda i: i.bytes):
        db.execute(_RETURN_TYPE_PLACES, {"type_id": type_id, "n": by_type[type_id]})
    for event_id in sorted(by_event, key=lambda i: i.bytes):
        db.execute(_RETURN_EVENT_PLACES, {"event_id": event_id, "n": by_event[event_id]})


def _tickets_closed(db: Db, order_id: uuid.UUID, reason: ClosedReason, *, now: datetime) -> bool:
    """An order about to close unpaid: its pending tickets are released (cancelled, their
    places back on sale) when it closes for want of payment; any other closing (a
    customer cancelling one ticket) waits until none is pending. Their codes are not
    revoked: never shown, and a late payment may revive them. True if the order may
    close."""
    pending = list(
        db.execute(
            for_update(
                db,
                select(Ticket)
                .where(Ticket.order_id == order_id, Ticket.status == "pending")
                .order_by(Ticket.id),
            ).execution_options(populate_existing=True)
        ).scalars()
    )
    if not pending:
        return True
    if reason not in (ClosedReason.PAYMENT_FAILED, ClosedReason.PAYMENT_TIMEOUT):
        return False
    for ticket in pending:
        ticket.status = "cancelled"
        ticket.cancelled_at = now
        ticket.hold_expires_at = None
        ticket.updated_at = now
    db.flush()
    return_places(db, [(t.ticket_type_id, t.event_id) for t in pending])
    return True


def request_refund(
    db: Db,
    order_id: uuid.UUID,
    amount_minor: int,
    *,
    reason: str,
    now: datetime,
    booking_id: uuid.UUID | None = None,
    ticket_id: uuid.UUID | None = None,
    payment: Payment | None = None,
) -> Refund | None:
    """Ask for ``amount_minor`` back from ``payment`` (by default the order's succeeded
    one); the worker sends it. Never more than is left to refund. None if nothing was
    paid online."""
    if payment is None:
        payment = db.execute(
            for_update(
                db,
                select(Payment)
                .where(Payment.order_id == order_id, Payment.status == PaymentState.SUCCEEDED.value)
                .order_by(Payment.created_at.desc())
                .limit(1),
            )
        ).scalar_one_or_none()
    if payment is None:
        return None
    promised = db.execute(
        select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
            Refund.payment_id == payment.id, Refund.status != RefundState.FAILED.value
        )
    ).scalar_one()
    amount = min(amount_minor, payment.amount_minor - max(promised, payment.refunded_minor))
    if amount <= 0:
        return None
    refund = Refund(
        id=uuid.uuid4(),
        org_id=payment.org_id,
        payment_id=payment.id,
        booking_id=booking_id,
        ticket_id=ticket_id,
        amount_minor=amount,
        reason=reason,
        status=RefundState.PENDING.value,
        created_at=now,
    )
    db.add(refund)
    db.flush()
    outbox.enqueue(
        db,
        org_id=payment.org_id,
        topic=Topic.REFUND,
        stream=f"refund:{payment.id}",
        dedupe_key=f"refund:{refund.id}",
        payload={"refundId": str(refund.id)},
        now=now,
    )
    return refund


DUPLICATE_PAYMENT = "duplicate_payment"


def _is_duplicate(db: Db, payment: Payment) -> bool:
    return (
        db.execute(
            select(Refund.id)
            .where(Refund.payment_id == payment.id, Refund.reason == DUPLICATE_PAYMENT)
            .limit(1)
        ).first()
        is not None
    )


@dataclass(frozen=True)
class RefundCall:
    """What the worker sends to the gateway for one refund row."""

    refund_id: uuid.UUID
    gateway: str
    payment_ref: str
    amount_minor: int


def refund_call(db: Db, refund_id: uuid.UUID) -> RefundCall | None:
    """The gateway call a pending refund still needs; None once it is settled."""
    row = db.execute(
        select(Refund, Payment)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Refund.id == refund_id)
    ).one_or_none()
    if row is None:
        return None
    refund, payment = row
    if refund.status != RefundState.PENDING or payment.gateway_ref is None:
        return None
    return RefundCall(refund.id, payment.gateway, payment.gateway_ref, refund.amount_minor)


def record_refund(
    db: Db, refund_id: uuid.UUID, *, gateway_ref: str | None, error: str | None, now: datetime
) -> None:
    """The gateway's answer: the refund went through (``gateway_ref``) or was refused
    for good (``error``). The order's refunded total and status follow."""
    order_id = db.execute(
        select(Payment.order_id)
        .join(Refund, Refund.payment_id == Payment.id)
        .where(Refund.id == refund_id)
    ).scalar_one_or_none()
    if order_id is None:
        return
    lock_order(db, order_id)  # the order first, as on every path
    refund = db.execute(
        for_update(db, select(Refund).where(Refund.id == refund_id)).execution_options(
            populate_existing=True
        )
    ).scalar_one_or_none()
    if refund is None or refund.status != RefundState.PENDING:
        return
    refund.completed_at = now
    if error is not None:
        refund.status = RefundState.FAILED.value
        refund.last_error = error[:2000]
        db.flush()
        return
    refund.status = RefundState.SUCCEEDED.value
    refund.gateway_ref = gateway_ref
    payment = db.execute(
        for_update(db, select(Payment).where(Payment.id == refund.payment_id))
    ).scalar_one()
    settled = db.execute(
        select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
            Refund.payment_id == payment.id, Refund.status == RefundState.SUCCEEDED.value
        )
    ).scalar_one()
    set_refunded_total(db, payment, settled, now=now)


def set_refunded_total(db: Db, payment: Payment, total_minor: int, *, now: datetime) -> None:
    """Record that ``total_minor`` of the payment has gone back, as a total: told twice
    or out of order (our own refund and the gateway's echo of it), it counts once."""
    total = min(payment.amount_minor, max(payment.refunded_minor, total_minor))
    if total == payment.refunded_minor:
        return
    payment.refunded_minor = total
    payment.updated_at = now
    if _is_duplicate(db, payment):
        db.flush()
        return  # a second payment of an order paid already: its refund is not the order's
    order = lock_order(db, payment.order_id)
    order.refunded_minor = min(order.total_minor, max(order.refunded_minor, total))
    if order.status in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED):
        order.status = status_after_refund(order.total_minor, order.refunded_minor).value
    elif order.refunded_minor >= order.total_minor:
        order.status = OrderStatus.REFUNDED.value  # a late payment, given back whole
    order.updated_at = now
    db.flush()
