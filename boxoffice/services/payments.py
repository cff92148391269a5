"""Payments: starting one at the gateway, and applying what the gateway says.

Every gateway event goes through :func:`apply_event`, whoever brings it: a Stripe
webhook, the offline checkout page, ``boxoffice payments succeed|fail``, or the
reconciliation job that asks the gateway about payments pending too long. So they
all drive the same transitions. An event id is applied once (``payment_events``,
inserted in the transaction that applies it); a transition happens once (the
payment row is locked and its status checked), so a webhook, its duplicate and the
reconciliation racing for one order confirm it once and send one email.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.orm import joinedload

from boxoffice.db.locking import for_update, insert_if_absent
from boxoffice.db.models import (
    Booking,
    BookingStatusChange,
    Order,
    Organization,
    Payment,
    PaymentEvent,
)
from boxoffice.db.session import Database, Db
from boxoffice.domain.bookings import BookingStatus, PaymentStatus
from boxoffice.domain.errors import Conflict, NotFound
from boxoffice.domain.payments import (
    LATE_PAYMENT_WELCOME,
    ClosedReason,
    OrderStatus,
    PaymentState,
)
from boxoffice.services import appointments, orders, outbox, packages, tickets
from boxoffice.services.booking_events import BookingEvent, event_row
from boxoffice.services.bookings import (
    Owner,
    cancel_booking,
    confirm_paid,
    revive_paid,
    take_seat,
)
from boxoffice.services.ports import (
    GatewayEvent,
    PaymentGateway,
    PaymentRefused,
    PaymentRequest,
    PaymentUnavailable,
)
from boxoffice.services.slots import APPOINTMENT

log = logging.getLogger("boxoffice.payments")

_PAYMENT_EVENTS = cast(Table, PaymentEvent.__table__)
_LATE_REFUND_NAMESPACE = uuid.UUID("0b8f3c52-6a0e-4f4e-9d7a-3c1e2f5a9b61")
# Reconciliation stops asking about a payment this long after it was started, and
# about a declined one sooner: a customer tries another card within minutes.
RECONCILE_FOR = timedelta(days=2)
RETRY_WINDOW = timedelta(hours=1)


# --- starting a payment -------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentInstructions:
    """What the client must do after booking: nothing, or pay ``amount_minor`` before
    ``hold_expires_at`` with the Stripe ``client_secret`` or at ``checkout_url``.

    ``error`` says why the payment could not be started (the gateway is down); asking
    again (the same request with its Idempotency-Key) tries again.
    """

    payment_required: bool
    order_id: uuid.UUID | None = None
    amount_minor: int = 0
    currency: str | None = None
    hold_expires_at: datetime | None = None
    client_secret: str | None = None
    checkout_url: str | None = None
    error: str | None = None


NO_PAYMENT = PaymentInstructions(payment_required=False)


def start_payment(
    database: Database, gateway: PaymentGateway, order_id: uuid.UUID, *, now: datetime
) -> PaymentInstructions:
    """Have the gateway start collecting an open order's total, once.

    Three short steps, no transaction held across the network: record a pending
    payment, ask the gateway (idempotent by the payment's id, so a retry finds the
    same payment there), record its answer.
    """
    with database.write() as db:
        order = orders.lock_order(db, order_id)
        if order.status != OrderStatus.OPEN:
            return _instructions(order, None)
        payment = _pending_payment(db, order)
        if payment is None:
            org = db.get(Organization, order.org_id)
            assert org is not None
            try:
                payment = _new_payment(db, org, order, gateway, now=now)
            except PaymentRefused as exc:
                return _instructions(order, None, error=str(exc))
        if payment.gateway_ref is not None:
            return _instructions(order, payment)
        request = PaymentRequest(
            order_id=str(order.id),
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            idempotency_key=str(payment.id),
            description=f"Order {order.id}",
            customer_email=order.customer_email,
            destination=payment.destination,
            application_fee_minor=payment.application_fee_minor,
        )
        payment_id = payment.id
    try:
        started = gateway.create_payment(request)
    except (PaymentUnavailable, PaymentRefused) as exc:
        log.warning("starting payment %s failed: %s", payment_id, exc)
        with database.read() as db:
            unlocked = db.get(Order, order_id)
            assert unlocked is not None
            return _instructions(unlocked, None, error=str(exc))
    with database.write() as db:
        db.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.gateway_ref.is_(None))
            .values(
                gateway_ref=started.ref,
                client_secret=started.client_secret,
                checkout_url=started.checkout_url,
                updated_at=now,
            )
        )
        payment = db.get(Payment, payment_id, populate_existing=True)
        current = db.get(Order, order_id, populate_existing=True)
        assert current is not None
        return _instructions(current, payment)


def payment_instructions(db: Db, order_id: uuid.UUID | None) -> PaymentInstructions:
    """The instructions as they stand, without calling the gateway."""
    if order_id is None:
        return NO_PAYMENT
    order = db.get(Order, order_id)
    if order is None:
        return NO_PAYMENT
    return _instructions(order, _pending_payment(db, order))


def _instructions(
    order: Order, payment: Payment | None, *, error: str | None = None
) -> PaymentInstructions:
    if order.status != OrderStatus.OPEN:
        closed = None if order.status == OrderStatus.PAID else f"The order is {order.status}."
        return PaymentInstructions(
            payment_required=False,
            order_id=order.id,
            amount_minor=order.total_minor,
            currency=order.currency,
            error=error or closed,
        )
    return PaymentInstructions(
        payment_required=True,
        order_id=order.id,
        amount_minor=order.total_minor,
        currency=order.currency,
        hold_expires_at=order.hold_expires_at,
        client_secret=payment.client_secret if payment else None,
        checkout_url=payment.checkout_url if payment else None,
        error=error,
    )


def _pending_payment(db: Db, order: Order) -> Payment | None:
    return db.execute(
        select(Payment).where(
            Payment.order_id == order.id, Payment.status == PaymentState.PENDING.value
        )
    ).scalar_one_or_none()


def _new_payment(
    db: Db, org: Organization, order: Order, gateway: PaymentGateway, *, now: datetime
) -> Payment:
    """A pending payment of the whole order, on the organisation's terms.

    With a connected account the money goes there less the commission (Stripe
    Connect: destination charge + application fee). Without one the platform
    charges directly, which only a test key allows: in production an organisation
    must connect its account before it can take payments.
    """
    destination, fee = None, None
    if org.payment_account_id:
        destination, fee = org.payment_account_id, order.commission_minor
    elif gateway.live:
        raise PaymentRefused(
            "This organisation has not connected its payment account yet; "
            "it cannot take payments online."
        )
    payment = Payment(
        id=uuid.uuid4(),
        org_id=order.org_id,
        order_id=order.id,
        gateway=gateway.name,
        status=PaymentState.PENDING.value,
        amount_minor=order.total_minor,
        currency=order.currency,
        destination=destination,
        application_fee_minor=fee,
        refunded_minor=0,
        created_at=now,
        updated_at=now,
    )
    db.add(payment)
    db.flush()
    return payment


# --- applying what the gateway says ---------------------------------------------------------


def apply_event(db: Db, event: GatewayEvent, *, gateway: str, now: datetime) -> str:
    """Apply one gateway event, once; returns what it did (for logs and tests).

    Out-of-order events are harmless: a failure reported after the success is
    stale and ignored; refunds are recorded as totals.
    """
    # Every path locks an order before its payments and bookings (no deadlocks), and
    # every change of a payment happens under its order's lock: a duplicate delivery
    # waits here, then finds the payment already changed.
    found = orders.lock_order_of_payment(db, gateway, event.payment_ref)
    if found is None:
        # Not one of ours (another platform on the account): acknowledged, unrecorded.
        log.info("payment event %s for unknown payment %s", event.id, event.payment_ref)
        return "unknown_payment"
    order, payment = found
    if event.kind == "succeeded":
        outcome = _succeeded(db, order, payment, now=now)
    elif event.kind == "failed":
        outcome = _failed(db, order, payment, event.failure_message, now=now)
    elif event.kind == "refunded":
        outcome = _refunded(db, order, payment, event.amount_refunded_minor, now=now)
    else:
        outcome = "ignored"
    # Recorded last, in the same transaction. Each transition above is guarded by the
    # state it starts from, so an event seen before changed nothing this time.
    first = insert_if_absent(
        db,
        _PAYMENT_EVENTS,
        {
            "gateway": gateway,
            "event_id": event.id,
            "kind": event.kind,
            "payment_ref": event.payment_ref,
            "outcome": outcome,
            "received_at": now,
        },
        ["gateway", "event_id"],
    )
    if not first:
        outcome = "duplicate"
    log.info("payment event %s (%s) for %s: %s", event.id, event.kind, event.payment_ref, outcome)
    return outcome


def _succeeded(db: Db, order: Order, payment: Payment, *, now: datetime) -> str:
    if payment.status == PaymentState.SUCCEEDED:
        return "already_applied"
    payment.status = PaymentState.SUCCEEDED.value
    payment.failure_message = None
    payment.updated_at = now
    was_open = order.status == OrderStatus.OPEN
    late_but_welcome = order.status in (
        OrderStatus.FAILED,
        OrderStatus.CANCELLED,
    ) and order.closed_reason in {r.value for r in LATE_PAYMENT_WELCOME}
    if not (was_open or late_but_welcome):
        if order.status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
            _refund_late(db, order, payment, now=now)  # the customer had cancelled
            return "refunded_late"
        # The order was already paid (at the desk, or by another payment): this one
        # goes back whole.
        orders.request_refund(
            db,
            order.id,
            payment.amount_minor,
            reason=orders.DUPLICATE_PAYMENT,
            now=now,
            payment=payment,
        )
        return "refunded_duplicate"
    bookings = _order_bookings(db, order)
    # Package credits (drafts, no session): paid, and still drafts to be scheduled; any
    # cancelled for want of payment come back too (they hold no seat to lose).
    credits = [b for b in bookings if b.session_id is None and b.valid_until is not None]
    if credits:
        packages.pay_credits(db, credits, now=now)
        bookings = [b for b in bookings if b not in credits]
    expired = _cancelled_for_want_of_payment(db, bookings)
    if expired and not _revive(db, expired, now=now):
        _refund_late(db, order, payment, now=now)
        return "refunded_late"
    # An event order's tickets: active and paid, those released for want of payment back
    # if their places are free (else the payment goes back whole).
    tickets_given_up = tickets.settle_paid_order(db, order, now=now)
    if tickets_given_up is None:
        _refund_late(db, order, payment, now=now)
        return "refunded_late"
    for booking in bookings:
        if booking.status == BookingStatus.PENDING:
            confirm_paid(
                db,
                booking,
                actor_id=None,
                reason="paid",
                now=now,
                events=(BookingEvent.CONFIRMED, BookingEvent.PAYMENT_SUCCEEDED),
            )
    # What the customer cancelled themselves while the order waited goes back.
    given_up = sum(b.price_minor for b in bookings if b.status == BookingStatus.CANCELLED)
    given_up += tickets_given_up
    if given_up:
        orders.request_refund(
            db, order.id, given_up, reason="cancelled_before_payment", now=now, payment=payment
        )
    order.status = OrderStatus.PAID.value
    order.closed_reason = None
    order.paid_at = now
    order.updated_at = now
    db.flush()
    return "confirmed" if was_open else "revived"


def _failed(db: Db, order: Order, payment: Payment, message: str | None, *, now: datetime) -> str:
    if payment.status != PaymentState.PENDING:
        return "stale"  # it succeeded (or failed) already; a late report changes nothing
    payment.status = PaymentState.FAILED.value
    payment.failure_message = message
    payment.updated_at = now
    if order.status != OrderStatus.OPEN:
        return "failed"
    owner = Owner(org_id=order.org_id)
    for booking in _order_bookings(db, order):
        if booking.status == BookingStatus.PENDING:
            cancel_booking(
                db,
                booking.id,
                owner,
                actor_id=None,
                reason=ClosedReason.PAYMENT_FAILED.value,
                by_organiser=True,
                now=now,
            )
    # Its package credits (drafts) are cancelled with it (see orders.close_if_unpaid).
    orders.close_if_unpaid(db, order.id, ClosedReason.PAYMENT_FAILED, now=now)
    return "failed"


def _refunded(db: Db, order: Order, payment: Payment, total_refunded: int, *, now: datetime) -> str:
    orders.set_refunded_total(db, payment, total_refunded, now=now)
    if payment.refunded_minor >= payment.amount_minor:
        for booking in _order_bookings(db, order):
            if booking.payment_status == PaymentStatus.PAID:
                booking.payment_status = PaymentStatus.REFUNDED.value
                booking.refunded_minor = booking.price_minor
                booking.updated_at = now
    db.flush()
    return "refund_recorded"


def _order_bookings(db: Db, order: Order) -> list[Booking]:
    """The order's bookings with their sessions, locked (in id order, as every path
    locks bookings).

    The lock is taken on the bookings alone, then they are read with their sessions:
    a locking statement that joined the session would, after waiting out a concurrent
    reschedule, return the session the booking had before.
    """
    lock = select(Booking.id).where(Booking.order_id == order.id).order_by(Booking.id)
    db.execute(for_update(db, lock))
    stmt = (
        select(Booking)
        .options(joinedload(Booking.session))
        .where(Booking.order_id == order.id)
        .order_by(Booking.id)
        .execution_options(populate_existing=True)
    )
    return list(db.execute(stmt).unique().scalars())


class _SeatGone(Exception):
    pass


def _cancelled_for_want_of_payment(db: Db, bookings: list[Booking]) -> list[Booking]:
    """The bookings cancelled because their payment failed or their hold ran out (not
    those the customer or the organiser cancelled)."""
    cancelled = {b.id: b for b in bookings if b.status == BookingStatus.CANCELLED}
    if not cancelled:
        return []
    ids = set(
        db.execute(
            select(BookingStatusChange.booking_id).where(
                BookingStatusChange.booking_id.in_(list(cancelled)),
                BookingStatusChange.to_status == BookingStatus.CANCELLED.value,
                BookingStatusChange.reason.in_([r.value for r in LATE_PAYMENT_WELCOME]),
            )
        ).scalars()
    )
    return [b for i, b in cancelled.items() if i in ids]


def _revive(db: Db, bookings: list[Booking], *, now: datetime) -> bool:
    """Take the seats of these bookings again, all or none (a savepoint), and confirm
    them as paid."""
    try:
        with db.begin_nested():
            for booking in bookings:
                if not _retake_seat(db, booking, now=now):
                    raise _SeatGone
                revive_paid(db, booking, reason="paid after its hold ran out", now=now)
    except _SeatGone:
        return False
    return True


def _retake_seat(db: Db, booking: Booking, *, now: datetime) -> bool:
    session = booking.session
    if session is None or session.start_at <= now:
        return False
    if session.kind == APPOINTMENT:
        return appointments.rebook(db, booking, now=now)
    try:
        take_seat(db, session, now=now)
    except Conflict:
        return False
    return True


def _refund_late(db: Db, order: Order, payment: Payment, *, now: datetime) -> None:
    """Give a payment back whole: its seats are gone (or the customer had cancelled);
    the customer is told by email."""
    refund = orders.request_refund(
        db, order.id, payment.amount_minor, reason="late_payment", now=now, payment=payment
    )
    if refund is not None and tickets.refund_late_notice(db, order, refund.amount_minor, now=now):
        return
    bookings = orders.order_bookings(db, order.id)
    if refund is None or not bookings or bookings[0].session is None:
        return
    first = bookings[0]
    assert first.session is not None
    row = event_row(
        first,
        first.session,
        [BookingEvent.PAYMENT_REFUNDED],
        now=now,
        refund_minor=refund.amount_minor,
        event_id=uuid.uuid5(_LATE_REFUND_NAMESPACE, str(refund.id)),
    )
    outbox.insert_unless_exists(db, row)


# --- reconciliation and refunds, for the worker ---------------------------------------------


def payments_to_check(
    db: Db,
    *,
    gateway: str,
    now: datetime,
    older_than: timedelta,
    every: timedelta,
    limit: int = 50,
) -> list[str]:
    """Claim the payments to ask the gateway about, none asked within ``every``:

    - pending ones started more than ``older_than`` ago (their webhook may be lost);
    - declined ones in the hour after they started: the customer may pay with another
      card on the same payment, and that webhook may be lost too.

    Returns their gateway refs.
    """
    pending = and_(
        Payment.status == PaymentState.PENDING.value,
        Payment.created_at <= now - older_than,
        Payment.created_at > now - RECONCILE_FOR,
    )
    declined = and_(
        Payment.status == PaymentState.FAILED.value,
        Payment.created_at > now - RETRY_WINDOW,
    )
    return _claim_refs(
        db,
        and_(
            Payment.gateway == gateway,
            or_(Payment.last_checked_at.is_(None), Payment.last_checked_at <= now - every),
            or_(pending, declined),
        ),
        now=now,
        limit=limit,
    )


def payments_of_expired_holds(db: Db, *, gateway: str, now: datetime, limit: int = 50) -> list[str]:
    """The pending payments of open orders whose hold has run out: asked once more
    before the hold expiry gives their seats away."""
    return _claim_refs(
        db,
        and_(
            Payment.gateway == gateway,
            Payment.status == PaymentState.PENDING.value,
            Payment.order_id.in_(
                select(Order.id).where(
                    Order.status == OrderStatus.OPEN.value, Order.hold_expires_at <= now
                )
            ),
        ),
        now=now,
        limit=limit,
    )


def _claim_refs(db: Db, where: ColumnElement[bool], *, now: datetime, limit: int) -> list[str]:
    stmt = (
        select(Payment.id, Payment.gateway_ref)
        .where(where, Payment.gateway_ref.is_not(None))
        .order_by(Payment.created_at)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = db.execute(stmt).all()
    if rows:
        db.execute(
            update(Payment).where(Payment.id.in_([r.id for r in rows])).values(last_checked_at=now)
        )
    return [r.gateway_ref for r in rows if r.gateway_ref is not None]


_SETTLED = {"succeeded": "succeeded", "failed": "failed", "cancelled": "failed"}


def reconcile(
    database: Database,
    gateway: PaymentGateway,
    *,
    now: datetime,
    older_than: timedelta,
    every: timedelta,
) -> int:
    """Ask the gateway about payments pending too long and apply what has settled, as
    the webhook would have: a lost webhook never leaves a booking stuck in pending."""
    with database.write() as db:
        refs = payments_to_check(
            db, gateway=gateway.name, now=now, older_than=older_than, every=every
        )
    return _settle(database, gateway, refs, now=now)


def check_expired_holds(database: Database, gateway: PaymentGateway, *, now: datetime) -> int:
    """Before expiring holds: a hold whose payment went through (its webhook lost or
    late) is confirmed, not given away."""
    with database.write() as db:
        refs = payments_of_expired_holds(db, gateway=gateway.name, now=now)
    return _settle(database, gateway, refs, now=now)


def _settle(database: Database, gateway: PaymentGateway, refs: list[str], *, now: datetime) -> int:
    """Apply what the gateway says of each payment, as its webhook would; returns how
    many had settled."""
    settled = 0
    for ref in refs:
        try:
            state = gateway.retrieve(ref)
        except (PaymentUnavailable, PaymentRefused) as exc:
            log.warning("asking the gateway about payment %s failed: %s", ref, exc)
            continue
        kind = _SETTLED.get(state.status)
        if kind is None:
            continue
        event = GatewayEvent(
            id=f"reconcile:{ref}:{kind}",
            kind=kind,
            payment_ref=ref,
            amount_minor=state.amount_minor,
            failure_message=state.failure_message,
        )
        with database.write() as db:
            apply_event(db, event, gateway=gateway.name, now=now)
        settled += 1
    return settled


def send_refund(
    database: Database, gateway: PaymentGateway, refund_id: uuid.UUID, *, now: datetime
) -> None:
    """Send one refund to the gateway and record the answer. A gateway that is down
    raises PaymentUnavailable, so the outbox retries; a refusal is recorded for good."""
    with database.read() as db:
        call = orders.refund_call(db, refund_id)
    if call is None:
        return
    if call.gateway != gateway.name:
        raise PaymentUnavailable(
            f"This refund belongs to the {call.gateway} gateway, which is not configured."
        )
    try:
        ref = gateway.refund(call.payment_ref, call.amount_minor, idempotency_key=str(refund_id))
    except PaymentRefused as exc:
        with database.write() as db:
            orders.record_refund(db, refund_id, gateway_ref=None, error=str(exc), now=now)
        return
    with database.write() as db:
        orders.record_refund(db, refund_id, gateway_ref=ref, error=None, now=now)


def payable_ref(db: Db, order_id: uuid.UUID, *, gateway: str) -> str:
    """The gateway ref of an order's payment the customer can still pay: waiting, or
    declined (another card may be tried)."""
    ref = db.execute(
        select(Payment.gateway_ref)
        .where(
            Payment.order_id == order_id,
            Payment.gateway == gateway,
            Payment.status.in_((PaymentState.PENDING.value, PaymentState.FAILED.value)),
            Payment.gateway_ref.is_not(None),
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if ref is None:
        raise NotFound(
            f"Order {order_id} has no {gateway} payment to pay.", {"orderId": str(order_id)}
        )
    return ref
