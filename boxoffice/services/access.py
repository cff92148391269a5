"""Access control: may this user go into this room, session or event now, and why; and
the subscriptions (memberships of a gym, a coworking pass) that open every door of an
organisation.

Three ways in, tried in this order: an active subscription at the resource's
organisation; for a room or a session, a confirmed booking of a session (in that room)
happening now, doors opening ``MARGIN`` before its start and closing ``MARGIN`` after its
end; for an event, an active or used, paid ticket of the user valid now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, or_, select

from boxoffice.db.models import Booking, Event, Room, Session, Subscription, Ticket, User
from boxoffice.db.session import Db
from boxoffice.domain.errors import IllegalTransition, InvalidInput, NotFound
from boxoffice.services.auth import normalise_email

MARGIN = timedelta(minutes=15)
ACTIVE, CANCELLED, EXPIRED = "active", "cancelled", "expired"


class ResourceType(StrEnum):
    ROOM = "room"
    SESSION = "session"
    EVENT = "event"


class Via(StrEnum):
    SUBSCRIPTION = "subscription"
    BOOKING = "booking"
    TICKET = "ticket"


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    via: Via | None
    reason: str


def _subscription(db: Db, user_id: uuid.UUID, org_id: uuid.UUID, now: datetime) -> str | None:
    """The plan of the user's subscription at the organisation in force now, if any."""
    plan: str | None = db.execute(
        select(Subscription.plan)
        .where(
            Subscription.user_id == user_id,
            Subscription.org_id == org_id,
            Subscription.status == ACTIVE,
            Subscription.starts_at <= now,
            or_(Subscription.ends_at.is_(None), Subscription.ends_at > now),
        )
        .order_by(Subscription.starts_at)
        .limit(1)
    ).scalar()
    return plan


def _booking_now(
    db: Db, user_id: uuid.UUID, now: datetime, *where: ColumnElement[bool]
) -> Session | None:
    session: Session | None = db.execute(
        select(Session)
        .join(Booking, Booking.session_id == Session.id)
        .where(
            Booking.user_id == user_id,
            Booking.status == "confirmed",
            Session.status != "canceled",
            Session.start_at <= now + MARGIN,
            Session.end_at > now - MARGIN,
            *where,
        )
        .order_by(Session.start_at)
        .limit(1)
    ).scalar()
    return session


def _denied(reason: str) -> AccessDecision:
    return AccessDecision(False, None, reason)


def check_user_access(
    db: Db,
    user_id: uuid.UUID,
    resource_type: ResourceType,
    resource_id: uuid.UUID,
    now: datetime,
) -> AccessDecision:
    """Whether the user may enter the resource now, by which right, or why not."""
    if resource_type == ResourceType.ROOM:
        room = db.get(Room, resource_id)
        if room is None:
            raise NotFound("Room not found.", {"roomId": str(resource_id)})
        if not room.is_active:
            return _denied("The room is closed.")
        plan = _subscription(db, user_id, room.org_id, now)
        if plan is not None:
            return AccessDecision(True, Via.SUBSCRIPTION, f"Active subscription: {plan}.")
        session = _booking_now(db, user_id, now, Session.room_id == room.id)
        if session is not None:
            return AccessDecision(True, Via.BOOKING, "Confirmed booking of a session now.")
        return _denied("No active subscription and no booking in this room now.")
    if resource_type == ResourceType.SESSION:
        target = db.get(Session, resource_id)
        if target is None:
            raise NotFound("Session not found.", {"sessionId": str(resource_id)})
        if target.status == "canceled":
            return _denied("The session is cancelled.")
        plan = _subscription(db, user_id, target.org_id, now)
        if plan is not None:
            return AccessDecision(True, Via.SUBSCRIPTION, f"Active subscription: {plan}.")
        if _booking_now(db, user_id, now, Session.id == target.id) is not None:
            return AccessDecision(True, Via.BOOKING, "Confirmed booking of this session.")
        return _denied("No active subscription and no booking of this session now.")
    event = db.get(Event, resource_id)
    if event is None:
        raise NotFound("Event not found.", {"eventId": str(resource_id)})
    if event.status == "cancelled":
        return _denied("The event is cancelled.")
    plan = _subscription(db, user_id, event.org_id, now)
    if plan is not None:
        return AccessDecision(True, Via.SUBSCRIPTION, f"Active subscription: {plan}.")
    ticket = db.execute(
        select(Ticket.id)
        .where(
            Ticket.user_id == user_id,
            Ticket.event_id == event.id,
            Ticket.status.in_(("active", "used")),
            Ticket.is_paid.is_(True),
            Ticket.valid_from <= now,
            Ticket.valid_until > now,
        )
        .limit(1)
    ).first()
    if ticket is not None:
        return AccessDecision(True, Via.TICKET, "Valid ticket for this event.")
    return _denied("No active subscription and no ticket valid now for this event.")


# --- subscriptions ------------------------------------------------------------------------


def create_subscription(
    db: Db,
    *,
    org_id: uuid.UUID,
    user_id: uuid.UUID | None,
    user_email: str | None,
    plan: str,
    starts_at: datetime,
    ends_at: datetime | None,
    now: datetime,
) -> tuple[Subscription, str]:
    """A user's subscription at the organisation (found by id or e-mail), and the e-mail."""
    if (user_id is None) == (user_email is None):
        raise InvalidInput("Name the subscriber with userId or userEmail (one of them).")
    if user_id is not None:
        user = db.get(User, user_id)
    else:
        assert user_email is not None
        email = normalise_email(user_email)
        user = db.execute(select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        raise NotFound("No account with this id or e-mail.", {"user": str(user_id or user_email)})
    plan = plan.strip()
    if not plan:
        raise InvalidInput("The plan cannot be empty.")
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidInput("A subscription must end after it starts.")
    row = Subscription(
        org_id=org_id,
        user_id=user.id,
        plan=plan,
        status=ACTIVE,
        starts_at=starts_at,
        ends_at=ends_at,
        created_at=now,
    )
    db.add(row)
    db.flush()
    return row, user.email


def list_subscriptions(db: Db, *, org_id: uuid.UUID) -> list[tuple[Subscription, str]]:
    """The organisation's subscriptions with their subscriber's e-mail, newest first."""
    rows = db.execute(
        select(Subscription, User.email)
        .join(User, User.id == Subscription.user_id)
        .where(Subscription.org_id == org_id)
        .order_by(Subscription.created_at.desc(), Subscription.id)
    ).all()
    return [(s, email) for s, email in rows]


def cancel_subscription(
    db: Db, *, org_id: uuid.UUID, subscription_id: uuid.UUID
) -> tuple[Subscription, str]:
    """End an active subscription now; cancelling twice is refused."""
    row = db.execute(
        select(Subscription, User.email)
        .join(User, User.id == Subscription.user_id)
        .where(Subscription.id == subscription_id, Subscription.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound("Subscription not found.", {"subscriptionId": str(subscription_id)})
    subscription, email = row
    if subscription.status != ACTIVE:
        raise IllegalTransition(
            f"The subscription is {subscription.status}.", {"status": subscription.status}
        )
    subscription.status = CANCELLED
    db.flush()
    return subscription, email
