"""Tickets: sold without ever overselling, paid, cancelled, reissued and expired.

Every sale takes its places with two conditional UPDATEs, the ticket type's then the
event's (``_TAKE_TYPE_PLACES``, ``_TAKE_EVENT_PLACES``): each is the lock, the re-check
and the write at once, so the loser of a race gets a clear 409; the CHECK constraints
on both counts are the backstop. Concurrent buyers of one event queue for it just
before (``locking.queue_for``), as do the organiser's changes to the event
(``events.lock_event``). Every path that changes both counts touches them in that
order (ticket type, then event), after the order and the tickets (see
services.orders).

A ticket's code is signed when the ticket is created, with its event's active key, but
shown (API, email) only once the ticket is active: a pending ticket's code never leaves
the database, so a ticket released for want of payment needs no revocation and a late
payment can revive it without the instance secret (payments run where it is not known).
A code the customer has seen is revoked (its fingerprint listed) when the ticket is
cancelled or reissued.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, bindparam, exists, func, select, update

from boxoffice.db.locking import for_update, insert_if_absent, queue_for
from boxoffice.db.models import (
    Event,
    Order,
    Organization,
    Ticket,
    TicketRevocation,
    TicketType,
    User,
)
from boxoffice.db.session import Db
from boxoffice.domain.bookings import refund_amount
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound, SlotFull, SlotUnavailable
from boxoffice.domain.payments import ClosedReason, needs_payment
from boxoffice.domain.tickets import TicketClaims, claims_fingerprint, sign_ticket
from boxoffice.services import event_keys, idempotency, orders, outbox
from boxoffice.services.organizations import get_organization, refund_tiers
from boxoffice.services.outbox import Topic

# Doors open this long before the event starts: a code is valid from then.
DOORS_OPEN = timedelta(hours=2)
MAX_PAGE_SIZE = 100
# A ticket whose code the customer has been shown.
SHOWN = ("active", "used", "expired")
STATUSES = ("pending", "active", "used", "expired", "cancelled", "refunded")
_KIND_LABELS = {"standard": "standard", "vip": "VIP", "early_bird": "early-bird", "group": "group"}
_PURCHASE_NAMESPACE = uuid.UUID("3d0b5a4e-8f1c-4c7a-b2e9-6a1f0c9d7e52")

_TYPES = cast(Table, TicketType.__table__)
_EVENTS = cast(Table, Event.__table__)
_TAKE_TYPE_PLACES = (
    update(_TYPES)
    .where(_TYPES.c.id == bindparam("type"), _TYPES.c.sold_count + bindparam("n") <= _TYPES.c.quota)
    .values(sold_count=_TYPES.c.sold_count + bindparam("n"), updated_at=bindparam("now"))
    .returning(_TYPES.c.sold_count)
)
_TAKE_EVENT_PLACES = (
    update(_EVENTS)
    .where(
        _EVENTS.c.id == bindparam("event"),
        _EVENTS.c.current_participants + bindparam("n") <= _EVENTS.c.max_participants,
        _EVENTS.c.status == "published",
    )
    .values(
        current_participants=_EVENTS.c.current_participants + bindparam("n"),
        updated_at=bindparam("now"),
    )
    .returning(_EVENTS.c.current_participants)
)
# PostgreSQL: the two in one statement, the event's only if the ticket type's took.
_TYPE_TAKEN = _TAKE_TYPE_PLACES.cte("type_taken")
_EVENT_TAKEN = _TAKE_EVENT_PLACES.where(exists(select(_TYPE_TAKEN.c.sold_count))).cte("event_taken")
_TAKE_PLACES = select(
    select(_TYPE_TAKEN.c.sold_count).scalar_subquery(),
    select(_EVENT_TAKEN.c.current_participants).scalar_subquery(),
)


@dataclass(frozen=True)
class Holder:
    """Who a ticket is for, when not the buyer."""

    name: str
    email: str


@dataclass(frozen=True)
class Purchase:
    """The tickets of one purchase, and the order that waits for their payment (None
    when nothing is to be paid online). ``is_new`` False: a retried request's replay."""

    tickets: list[Ticket]
    order: Order | None
    is_new: bool
    event: Event
    ticket_type: TicketType

    def views(self) -> list[TicketView]:
        return [TicketView(t, self.event, self.ticket_type) for t in self.tickets]


@dataclass(frozen=True)
class TicketView:
    ticket: Ticket
    event: Event
    ticket_type: TicketType


@dataclass(frozen=True)
class Page:
    items: list[TicketView]
    total: int
    page: int
    limit: int


def kind_label(kind: str) -> str:
    return _KIND_LABELS.get(kind, kind)


# --- selling ---------------------------------------------------------------------------------


def purchase_tickets(
    db: Db,
    *,
    user_id: uuid.UUID,
    event_id: uuid.UUID,
    kind: str,
    quantity: int,
    holders: Sequence[Holder] = (),
    idempotency_key: str | None,
    secret_key: str,
    now: datetime,
) -> Purchase:
    """Buy ``quantity`` tickets of one type of a published event, on sale now.

    Priced tickets at an organisation that takes payments are pending, holding their
    places until the order's hold expires; any other ticket is active at once (a
    priced one unpaid, to be paid at the desk). A retry with the same idempotency key
    returns the first request's tickets.
    """
    if holders and len(holders) != quantity:
        raise InvalidInput(
            "Give one holder per ticket, or none.", {"quantity": quantity, "holders": len(holders)}
        )
    scope = f"tickets:{user_id}"
    purchase_id = uuid.uuid4()
    if idempotency_key is not None:
        request = {
            "eventId": event_id,
            "ticketType": kind,
            "quantity": quantity,
            "holders": [[h.name, h.email] for h in holders],
        }
        first = idempotency.claim(
            db,
            scope=scope,
            key=idempotency_key,
            request_hash=idempotency.fingerprint(request),
            now=now,
            resource=("tickets", purchase_id),
        )
        if first is not None:
            return _replay(db, first, quantity, user_id=user_id)
    event, ticket_type = _on_sale(db, event_id, kind, quantity, now=now)
    key = event_keys.signing_key(db, event.id, secret_key=secret_key)
    if key is None:
        raise Conflict(
            "This event cannot issue tickets yet (it has no signing key).",
            {"eventId": str(event.id)},
        )
    org = get_organization(db, event.org_id)
    total = ticket_type.price_minor * quantity
    order = None
    if needs_payment(total, payments_enabled=org.payments_enabled):
        order = orders.open_order(
            db, org, total_minor=total, currency=event.currency, user_id=user_id, now=now
        )
    valid_from, valid_until = validity(event)
    tickets = []
    for i in range(quantity):
        holder = holders[i] if holders else None
        ticket = Ticket(
            id=uuid.uuid5(purchase_id, str(i)),
            org_id=event.org_id,
            event_id=event.id,
            ticket_type_id=ticket_type.id,
            order_id=order.id if order else None,
            user_id=user_id,
            holder_name=holder.name if holder else None,
            holder_email=holder.email if holder else None,
            status="pending" if order else "active",
            is_paid=order is None and ticket_type.price_minor == 0,
            price_minor=ticket_type.price_minor,
            currency=event.currency,
            refunded_minor=0,
            revision=0,
            valid_from=valid_from,
            valid_until=valid_until,
            hold_expires_at=order.hold_expires_at if order else None,
            created_at=now,
            updated_at=now,
        )
        _sign(ticket, ticket_type.number, key)
        tickets.append(ticket)
    db.add_all(tickets)
    db.flush()
    if order is None:
        for ticket in tickets:
            _mail(db, "ticket_issued", ticket, event, ticket_type, org=org, now=now)
    # Last: from here the event's line and its counts' rows are held until the commit,
    # so everything else is done before (the rows above are invisible until then, and a
    # refusal rolls them back with the transaction).
    take_places(db, ticket_type, event, quantity, now=now)
    return Purchase(tickets, order, True, event, ticket_type)


def _replay(db: Db, purchase_id: uuid.UUID, quantity: int, *, user_id: uuid.UUID) -> Purchase:
    ids = [uuid.uuid5(purchase_id, str(i)) for i in range(quantity)]
    tickets = list(
        db.execute(
            select(Ticket).where(Ticket.id.in_(ids), Ticket.user_id == user_id).order_by(Ticket.id)
        ).scalars()
    )
    if not tickets:
        raise NotFound("The tickets of this request no longer exist.")
    tickets.sort(key=lambda t: ids.index(t.id))
    order_id = tickets[0].order_id
    order = db.get(Order, order_id) if order_id else None
    return Purchase(
        tickets, order, False, _event(db, tickets[0].event_id), _type(db, tickets[0].ticket_type_id)
    )


def _on_sale(
    db: Db, event_id: uuid.UUID, kind: str, quantity: int, *, now: datetime
) -> tuple[Event, TicketType]:
    """The event and its ticket type of ``kind``, if ``quantity`` of them may be bought now
    (not yet whether any are left: that is the UPDATE's to say)."""
    event = db.get(Event, event_id)
    if event is None or event.status == "draft":
        raise NotFound("Event not found.", {"eventId": str(event_id)})
    details: dict[str, Any] = {"eventId": str(event_id), "ticketType": kind}
    if event.status != "published":
        raise SlotUnavailable(f"This event is {event.status}; it sells no tickets.", details)
    if now >= event.end_at:
        raise SlotUnavailable("This event has ended.", details)
    ticket_type = db.execute(
        select(TicketType).where(TicketType.event_id == event_id, TicketType.kind == kind)
    ).scalar_one_or_none()
    label = kind_label(kind)
    if ticket_type is None:
        raise NotFound(f"This event has no {label} tickets.", details)
    if ticket_type.sales_start_at is not None and now < ticket_type.sales_start_at:
        raise SlotUnavailable(
            f"{label[0].upper()}{label[1:]} tickets are not on sale yet; sales open "
            f"{ticket_type.sales_start_at.isoformat()}.",
            details | {"salesStartAt": ticket_type.sales_start_at.isoformat()},
        )
    if ticket_type.sales_end_at is not None and now >= ticket_type.sales_end_at:
        raise SlotUnavailable(
            f"Sales of {label} tickets have ended.",
            details | {"salesEndAt": ticket_type.sales_end_at.isoformat()},
        )
    if not 1 <= quantity <= ticket_type.max_per_order:
        raise InvalidInput(
            f"An order holds 1 to {ticket_type.max_per_order} {label} tickets.",
            details | {"quantity": quantity, "maxPerOrder": ticket_type.max_per_order},
        )
    return event, ticket_type


def take_places(db: Db, ticket_type: TicketType, event: Event, n: int, *, now: datetime) -> None:
    """Take ``n`` places of the ticket type, then of the event, or raise SlotFull (the
    caller's transaction, or savepoint, undoes a half-taken pair). Sales of one event
    queue for it first (see ``locking.queue_for``)."""
    queue_for(db, event.id)
    # (Parameters named unlike any column: UPDATE would take those as values to set.)
    params = {"type": ticket_type.id, "event": event.id, "n": n, "now": now}
    if db.get_bind().dialect.name == "postgresql":
        # Both in one statement: what a sale does while it holds the event's place in
        # line is then one round trip and the commit.
        sold, taken = db.execute(_TAKE_PLACES, params).one()
    else:
        sold = db.execute(_TAKE_TYPE_PLACES, params).scalar_one_or_none()
        taken = None if sold is None else db.execute(_TAKE_EVENT_PLACES, params).scalar()
    label = kind_label(ticket_type.kind)
    details: dict[str, Any] = {"eventId": str(event.id), "ticketType": ticket_type.kind}
    if sold is None:
        current = db.execute(
            select(TicketType.sold_count, TicketType.quota).where(TicketType.id == ticket_type.id)
        ).one()
        left = max(0, current.quota - current.sold_count)
        raise SlotFull(
            _left_message(left, f"{label} tickets", f"{label} ticket"),
            details | {"available": left},
        )
    if taken is None:
        current_event = db.execute(
            select(Event.current_participants, Event.max_participants, Event.status).where(
                Event.id == event.id
            )
        ).one()
        if current_event.status != "published":
            raise SlotUnavailable(
                f"This event is {current_event.status}; it sells no tickets.", details
            )
        left = max(0, current_event.max_participants - current_event.current_participants)
        raise SlotFull(
            _left_message(left, "places at this event", "place at this event"),
            details | {"available": left},
        )


def _left_message(left: int, plural: str, singular: str) -> str:
    if left == 0:
        return f"Sold out: no {plural} are left."
    if left == 1:
        return f"Only 1 {singular} is left."
    return f"Only {left} {plural} are left."


# --- codes -------------------------------------------------------------------------------------


def validity(event: Event) -> tuple[datetime, datetime]:
    """A ticket's window: from the doors' opening to the event's end, whole seconds."""
    start = (event.start_at - DOORS_OPEN).replace(microsecond=0)
    end = event.end_at
    if end.microsecond:
        end = end.replace(microsecond=0) + timedelta(seconds=1)
    return start, end


def claims_of(ticket: Ticket, type_number: int) -> TicketClaims:
    return TicketClaims.issue(
        ticket_id=ticket.id,
        event_id=ticket.event_id,
        ticket_type=type_number,
        valid_from=ticket.valid_from,
        valid_until=ticket.valid_until,
        revision=ticket.revision,
    )


def _sign(ticket: Ticket, type_number: int, key: tuple[int, Ed25519PrivateKey]) -> None:
    key_id, private_key = key
    ticket.code = sign_ticket(claims_of(ticket, type_number), private_key, key_id)
    ticket.key_id = key_id


def issue_code(db: Db, ticket: Ticket, *, secret_key: str, now: datetime) -> None:
    """Sign the ticket's current claims (its window follows the event's times) with the
    event's active key; Conflict if the event has none."""
    event = _event(db, ticket.event_id)
    key = event_keys.signing_key(db, event.id, secret_key=secret_key)
    if key is None:
        raise Conflict("This event has no signing key.", {"eventId": str(event.id)})
    ticket.valid_from, ticket.valid_until = validity(event)
    _sign(ticket, _type(db, ticket.ticket_type_id).number, key)
    ticket.updated_at = now
    db.flush()


def reissue(
    db: Db,
    ticket_id: uuid.UUID,
    *,
    secret_key: str,
    now: datetime,
    reason: str = "reissued",
    actor_id: uuid.UUID | None = None,
) -> Ticket:
    """A changed ticket (its event moved, its key rotated): the old code is revoked and a
    new one issued at the next revision; an active ticket's holder gets it by email.
    ``actor_id`` is who changed it (not recorded yet: tickets keep no history)."""
    order_id = db.execute(
        select(Ticket.order_id).where(Ticket.id == ticket_id)
    ).scalar_one_or_none()
    if order_id is not None:
        orders.lock_order(db, order_id)  # the order first, as on every path
    ticket = _get(db, ticket_id, lock=True)
    if ticket.status not in ("pending", "active"):
        raise Conflict(f"A {ticket.status} ticket cannot be reissued.", {"status": ticket.status})
    if ticket.code is not None and ticket.status == "active":
        revoke(db, ticket, reason=reason, now=now)
    ticket.revision += 1
    issue_code(db, ticket, secret_key=secret_key, now=now)
    if ticket.status == "active":
        event = _event(db, ticket.event_id)
        _mail(db, "ticket_issued", ticket, event, _type(db, ticket.ticket_type_id), now=now)
    return ticket


def revoke(db: Db, ticket: Ticket, *, reason: str, now: datetime) -> None:
    """List the fingerprint of the ticket's current code (scanners refuse it)."""
    if ticket.code is None:
        return
    fingerprint = claims_fingerprint(claims_of(ticket, _type(db, ticket.ticket_type_id).number))
    insert_if_absent(
        db,
        cast(Table, TicketRevocation.__table__),
        {
            "id": uuid.uuid4(),
            "org_id": ticket.org_id,
            "event_id": ticket.event_id,
            "ticket_id": ticket.id,
            "fingerprint": fingerprint,
            "reason": reason[:64],
            "revoked_at": now,
        },
        ("event_id", "fingerprint"),
    )


def _is_revoked(db: Db, ticket_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    return set(
        db.execute(
            select(TicketRevocation.ticket_id).where(TicketRevocation.ticket_id.in_(ticket_ids))
        ).scalars()
    )


# --- payment -----------------------------------------------------------------------------------


def settle_paid_order(db: Db, order: Order, *, now: datetime) -> int | None:
    """An order's payment has arrived: its pending tickets become active and paid (their
    holders emailed), and those released for want of payment come back if their places
    are still free, all or none.

    Returns what to give back of the payment (tickets the customer cancelled while the
    order waited), or None when released tickets cannot come back: the caller refunds
    the whole payment. Caller holds the order lock.
    """
    tickets = list(
        db.execute(
            for_update(
                db, select(Ticket).where(Ticket.order_id == order.id).order_by(Ticket.id)
            ).execution_options(populate_existing=True)
        ).scalars()
    )
    if not tickets:
        return 0
    cancelled = [t for t in tickets if t.status == "cancelled"]
    revoked = _is_revoked(db, [t.id for t in cancelled]) if cancelled else set()
    released = [t for t in cancelled if t.id not in revoked]  # for want of payment
    if released and not _revive(db, released, now=now):
        return None
    events: dict[uuid.UUID, Event] = {}
    types: dict[uuid.UUID, TicketType] = {}
    for ticket in tickets:
        if ticket.status != "pending" and ticket not in released:
            continue
        ticket.status = "active"
        ticket.is_paid = True
        ticket.hold_expires_at = None
        ticket.cancelled_at = None
        ticket.updated_at = now
        event = events.get(ticket.event_id) or events.setdefault(
            ticket.event_id, _event(db, ticket.event_id)
        )
        ticket_type = types.get(ticket.ticket_type_id) or types.setdefault(
            ticket.ticket_type_id, _type(db, ticket.ticket_type_id)
        )
        _mail(db, "ticket_issued", ticket, event, ticket_type, now=now)
    db.flush()
    given_up: int = sum(t.price_minor for t in cancelled if t.id in revoked and not t.is_paid)
    return given_up


def _revive(db: Db, released: list[Ticket], *, now: datetime) -> bool:
    """Take the places of released tickets again (a savepoint: all or none)."""
    try:
        with db.begin_nested():
            counts = Counter((t.ticket_type_id, t.event_id) for t in released)
            for (type_id, event_id), n in sorted(counts.items(), key=lambda c: c[0][0].bytes):
                event = _event(db, event_id)
                if now >= event.end_at:
                    raise SlotUnavailable("The event has ended.")
                take_places(db, _type(db, type_id), event, n, now=now)
    except Conflict:
        return False
    return True


def refund_late_notice(db: Db, order: Order, refund_minor: int, *, now: datetime) -> bool:
    """Tell the buyer of a ticket order that their payment came too late and goes back
    whole; False if the order has no tickets."""
    ticket = db.execute(
        select(Ticket).where(Ticket.order_id == order.id).order_by(Ticket.id).limit(1)
    ).scalar_one_or_none()
    if ticket is None:
        return False
    event = _event(db, ticket.event_id)
    _mail(
        db,
        "ticket_cancelled",
        ticket,
        event,
        _type(db, ticket.ticket_type_id),
        now=now,
        refund_minor=refund_minor,
        reason="late_payment",
        to_buyer=True,
    )
    return True


# --- cancelling --------------------------------------------------------------------------------


def cancel_ticket(
    db: Db,
    ticket_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    by_organiser: bool,
    now: datetime,
    user_id: uuid.UUID | None = None,
) -> tuple[Ticket, int]:
    """Cancel a pending or active ticket: its place goes back on sale, its code is revoked
    and the refund due (minor units) is asked for and returned.

    A customer (``user_id``: only their own ticket) may cancel before the event starts
    and is refunded by the organisation's policy; an organiser's cancellation (the
    event is cancelled, say) refunds everything paid.
    """
    order_id = db.execute(
        select(Ticket.order_id).where(Ticket.id == ticket_id)
    ).scalar_one_or_none()
    if order_id is not None:
        orders.lock_order(db, order_id)  # the order first, as on every path
    ticket = _get(db, ticket_id, user_id=user_id, lock=True)
    if ticket.status not in ("pending", "active"):
        raise Conflict(f"A {ticket.status} ticket cannot be cancelled.", {"status": ticket.status})
    event = _event(db, ticket.event_id)
    if not by_organiser and now >= event.start_at:
        raise Conflict(
            "The event has already started; its tickets can no longer be cancelled.",
            {"startsAt": event.start_at.isoformat()},
        )
    org = get_organization(db, ticket.org_id)
    refund = refund_amount(
        paid_minor=ticket.price_minor if ticket.is_paid else 0,
        tiers=refund_tiers(org),
        starts_at=event.start_at,
        cancelled_at=now,
        by_organiser=by_organiser,
    )
    was = ticket.status
    revoke(db, ticket, reason="cancelled", now=now)
    ticket.status = "refunded" if refund > 0 else "cancelled"
    ticket.cancelled_at = now
    ticket.hold_expires_at = None
    ticket.refunded_minor = refund
    ticket.updated_at = now
    db.flush()
    orders.return_places(db, [(ticket.ticket_type_id, ticket.event_id)])
    if ticket.order_id is not None:
        if refund > 0:
            orders.request_refund(
                db, ticket.order_id, refund, reason="cancellation", ticket_id=ticket.id, now=now
            )
        elif was == "pending":
            orders.close_if_unpaid(db, ticket.order_id, ClosedReason.CANCELLED, now=now)
    if was == "active":
        ticket_type = _type(db, ticket.ticket_type_id)
        _mail(
            db,
            "ticket_cancelled",
            ticket,
            event,
            ticket_type,
            org=org,
            now=now,
            refund_minor=refund,
            reason="by_organiser" if by_organiser else "cancelled",
        )
    return ticket, refund


# --- reading -----------------------------------------------------------------------------------


def get_ticket(db: Db, ticket_id: uuid.UUID, *, user_id: uuid.UUID) -> TicketView:
    """One of the customer's tickets; anyone else's does not exist."""
    ticket = _get(db, ticket_id, user_id=user_id)
    return TicketView(ticket, _event(db, ticket.event_id), _type(db, ticket.ticket_type_id))


def views(db: Db, tickets: Sequence[Ticket]) -> list[TicketView]:
    """Tickets with their events and types."""
    ids = {t.ticket_type_id for t in tickets}
    rows = db.execute(
        select(TicketType, Event)
        .join(Event, Event.id == TicketType.event_id)
        .where(TicketType.id.in_(ids))
    ).all()
    found = {ticket_type.id: (ticket_type, event) for ticket_type, event in rows}
    return [TicketView(t, found[t.ticket_type_id][1], found[t.ticket_type_id][0]) for t in tickets]


def list_tickets(
    db: Db, *, user_id: uuid.UUID, status: str | None = None, page: int = 1, limit: int = 20
) -> Page:
    """A page of the customer's tickets, newest first."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", {"limit": limit})
    if page < 1:
        raise InvalidInput("page starts at 1.", {"page": page})
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"Unknown ticket status {status!r}.", {"status": status})
    stmt = select(Ticket).where(Ticket.user_id == user_id)
    if status is not None:
        stmt = stmt.where(Ticket.status == status)
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.execute(
        stmt.order_by(Ticket.created_at.desc(), Ticket.id).offset((page - 1) * limit).limit(limit)
    ).scalars()
    return Page(views(db, list(rows)), total, page, limit)


def _get(
    db: Db, ticket_id: uuid.UUID, *, user_id: uuid.UUID | None = None, lock: bool = False
) -> Ticket:
    stmt = select(Ticket).where(Ticket.id == ticket_id)
    if user_id is not None:
        stmt = stmt.where(Ticket.user_id == user_id)
    if lock:
        stmt = for_update(db, stmt).execution_options(populate_existing=True)
    ticket = db.execute(stmt).scalar_one_or_none()
    if ticket is None:
        raise NotFound("Ticket not found.", {"ticketId": str(ticket_id)})
    return ticket


def _event(db: Db, event_id: uuid.UUID) -> Event:
    event = db.get(Event, event_id)
    if event is None:
        raise NotFound("Event not found.", {"eventId": str(event_id)})
    return event


def _type(db: Db, type_id: uuid.UUID) -> TicketType:
    ticket_type = db.get(TicketType, type_id)
    if ticket_type is None:
        raise NotFound("Ticket type not found.", {"ticketTypeId": str(type_id)})
    return ticket_type


# --- emails ------------------------------------------------------------------------------------


def _mail(
    db: Db,
    kind: str,
    ticket: Ticket,
    event: Event,
    ticket_type: TicketType,
    *,
    now: datetime,
    org: Organization | None = None,
    refund_minor: int = 0,
    reason: str = "",
    to_buyer: bool = False,
) -> None:
    """The holder's email about the ticket, an outbox row in this transaction (once per
    ticket, kind and revision)."""
    org = org or get_organization(db, ticket.org_id)
    to = None if to_buyer else ticket.holder_email
    buyer_name = None
    if to is None and ticket.user_id is not None:
        user = db.get(User, ticket.user_id)
        if user is not None:
            to, buyer_name = user.email, user.name
    if to is None:
        return
    payload: dict[str, Any] = {
        "kind": kind,
        "ticketId": str(ticket.id),
        "to": to,
        "customerName": (None if to_buyer else ticket.holder_name) or buyer_name,
        "orgName": org.name,
        "orgTimezone": event.timezone or org.timezone,
        "title": event.name,
        "ticketType": ticket_type.name or kind_label(ticket_type.kind),
        "startAt": event.start_at.isoformat(),
        "endAt": event.end_at.isoformat(),
        "location": event.location,
        "priceMinor": ticket.price_minor,
        "currency": ticket.currency,
        "isPaid": ticket.is_paid,
        "refundMinor": refund_minor,
        "reason": reason,
    }
    if kind == "ticket_issued":
        payload["code"] = ticket.code
    outbox.enqueue(
        db,
        org_id=ticket.org_id,
        topic=Topic.EMAIL,
        stream=f"ticket:{ticket.id}",
        dedupe_key=f"ticket:{ticket.id}:{kind}:{ticket.revision}:{reason}",
        payload=payload,
        now=now,
    )
