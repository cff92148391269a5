"""Calendars: CalDAV connections of providers and rooms, their busy times, ICS feeds."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, delete, insert, or_, select, update
from sqlalchemy.orm import joinedload

from boxoffice.db.models import (
    Booking,
    CalendarConnection,
    ExternalBusyTime,
    Provider,
    Room,
    Session,
)
from boxoffice.db.session import Db
from boxoffice.domain.bookings import BookingStatus
from boxoffice.domain.errors import InvalidInput, NotFound, Unauthorized
from boxoffice.domain.timeslots import Interval
from boxoffice.services import crypto
from boxoffice.services.booking_events import calendar_uid, is_own_uid
from boxoffice.services.ports import BusyTime, CalendarAccess, CalendarEvent
from boxoffice.services.rooms import get_room

_BUSY = cast(Table, ExternalBusyTime.__table__)
FEED_PAST_DAYS = 30
FEED_FUTURE_DAYS = 365
MAX_FEED_EVENTS = 5000


def check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("url must be an http(s) URL of a calendar.", {"url": url})
    return url


def create_connection(
    db: Db,
    *,
    org_id: uuid.UUID,
    room_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    url: str,
    username: str | None,
    password: str | None,
    secret_key: str,
) -> CalendarConnection:
    """Connect a room's or a provider's CalDAV calendar; the password is stored encrypted."""
    if (room_id is None) == (provider_id is None):
        raise InvalidInput("Give exactly one of roomId and providerId.")
    if room_id is not None:
        get_room(db, room_id, org_id=org_id)
    if provider_id is not None:
        provider = db.get(Provider, provider_id)
        if provider is None or provider.org_id != org_id:
            raise NotFound("Provider not found.", {"providerId": str(provider_id)})
    connection = CalendarConnection(
        org_id=org_id,
        room_id=room_id,
        provider_id=provider_id,
        url=check_http_url(url),
        username=username,
        password_encrypted=crypto.encrypt(secret_key, password) if password else None,
    )
    db.add(connection)
    db.flush()
    return connection


def list_connections(db: Db, *, org_id: uuid.UUID) -> list[CalendarConnection]:
    stmt = (
        select(CalendarConnection)
        .where(CalendarConnection.org_id == org_id)
        .order_by(CalendarConnection.created_at, CalendarConnection.id)
    )
    return list(db.execute(stmt).scalars())


def delete_connection(db: Db, connection_id: uuid.UUID, *, org_id: uuid.UUID) -> None:
    """Disconnect; the busy times read from that calendar go with it."""
    connection = db.get(CalendarConnection, connection_id)
    if connection is None or connection.org_id != org_id:
        raise NotFound("Calendar connection not found.", {"connectionId": str(connection_id)})
    db.delete(connection)
    db.flush()


@dataclass(frozen=True)
class SyncJob:
    connection_id: uuid.UUID
    access: CalendarAccess


def claim_due_syncs(
    db: Db, *, now: datetime, interval_s: int, limit: int, secret_key: str
) -> list[SyncJob]:
    """Connections whose busy times are older than ``interval_s``, claimed for this worker.

    The conditional UPDATE is the claim: with two workers, each connection goes to one.
    """
    due_before = now - timedelta(seconds=interval_s)
    candidates = list(
        db.execute(
            select(CalendarConnection.id)
            .where(
                CalendarConnection.is_active.is_(True),
                or_(
                    CalendarConnection.last_synced_at.is_(None),
                    CalendarConnection.last_synced_at <= due_before,
                ),
            )
            .order_by(CalendarConnection.last_synced_at.nulls_first())
            .limit(limit)
        ).scalars()
    )
    jobs = []
    for connection_id in candidates:
        row = db.execute(
            update(CalendarConnection)
            .where(
                CalendarConnection.id == connection_id,
                or_(
                    CalendarConnection.last_synced_at.is_(None),
                    CalendarConnection.last_synced_at <= due_before,
                ),
            )
            .values(last_synced_at=now)
            .returning(
                CalendarConnection.url,
                CalendarConnection.username,
                CalendarConnection.password_encrypted,
            )
        ).first()
        if row is None:
            continue
        password = (
            crypto.decrypt(secret_key, row.password_encrypted) if row.password_encrypted else None
        )
        jobs.append(
            SyncJob(
                connection_id, CalendarAccess(url=row.url, username=row.username, password=password)
            )
        )
    return jobs


def store_busy_times(
    db: Db,
    connection_id: uuid.UUID,
    window: Interval,
    busy: list[BusyTime],
    *,
    now: datetime,
) -> int:
    """Replace the connection's busy times inside ``window`` by what the calendar said.

    Events Box Office wrote itself (its bookings) are left out: the bookings already
    occupy that time. Returns how many intervals were stored.
    """
    connection = db.get(CalendarConnection, connection_id)
    if connection is None:
        return 0
    db.execute(
        delete(ExternalBusyTime).where(
            ExternalBusyTime.connection_id == connection_id,
            ExternalBusyTime.start_at < window.end_at,
            ExternalBusyTime.end_at > window.start_at,
        )
    )
    seen: set[tuple[str, datetime]] = set()
    rows = []
    for item in busy:
        if (
            is_own_uid(item.uid)
            or item.end_at <= item.start_at
            or (item.uid, item.start_at) in seen
        ):
            continue
        seen.add((item.uid, item.start_at))
        rows.append(
            {
                "id": uuid.uuid4(),
                "org_id": connection.org_id,
                "connection_id": connection_id,
                "provider_id": connection.provider_id,
                "room_id": connection.room_id,
                "uid": item.uid[:500],
                "start_at": item.start_at,
                "end_at": item.end_at,
            }
        )
    if rows:
        db.execute(insert(_BUSY), rows)
    connection.last_error = None
    db.flush()
    return len(rows)


def record_sync_error(db: Db, connection_id: uuid.UUID, error: str) -> None:
    db.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id == connection_id)
        .values(last_error=error[:2000])
    )


def busy_times(
    db: Db,
    window: Interval,
    *,
    provider_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
) -> list[Interval]:
    """External busy intervals of a provider or a room overlapping ``window``, by start."""
    if (provider_id is None) == (room_id is None):
        raise ValueError("name exactly one of provider_id and room_id")
    if room_id is not None:
        return rooms_busy_times(db, window, [room_id])[room_id]
    return _busy(db, window, ExternalBusyTime.provider_id == provider_id)[0]


def rooms_busy_times(
    db: Db, window: Interval, room_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Interval]]:
    """External busy intervals of each room overlapping ``window``, in one query."""
    busy: dict[uuid.UUID, list[Interval]] = {room_id: [] for room_id in room_ids}
    if room_ids:
        rows, owners = _busy(db, window, ExternalBusyTime.room_id.in_(room_ids))
        for interval, room_id in zip(rows, owners, strict=True):
            busy[room_id].append(interval)
    return busy


def _busy(db: Db, window: Interval, owner: Any) -> tuple[list[Interval], list[Any]]:
    rows = db.execute(
        select(ExternalBusyTime.start_at, ExternalBusyTime.end_at, ExternalBusyTime.room_id)
        .where(
            owner,
            ExternalBusyTime.start_at < window.end_at,
            ExternalBusyTime.end_at > window.start_at,
        )
        .order_by(ExternalBusyTime.start_at)
    ).all()
    return [Interval(r.start_at, r.end_at) for r in rows], [r.room_id for r in rows]


# --- ICS subscription feeds -------------------------------------------------------

FeedOwner = Literal["rooms", "providers"]


def _feed_owner(db: Db, kind: FeedOwner, owner_id: uuid.UUID) -> Room | Provider | None:
    if kind == "rooms":
        return db.get(Room, owner_id)
    return db.get(Provider, owner_id)


def feed_token(
    db: Db, kind: FeedOwner, owner_id: uuid.UUID, *, org_id: uuid.UUID, rotate: bool
) -> str:
    """The secret of a room's or provider's feed, made on first use; ``rotate`` makes a
    new one and the old link stops working."""
    owner = _feed_owner(db, kind, owner_id)
    if owner is None or owner.org_id != org_id:
        raise NotFound("Not found.", {"id": str(owner_id)})
    if owner.feed_token is None or rotate:
        owner.feed_token = secrets.token_urlsafe(32)
        db.flush()
    return owner.feed_token


@dataclass(frozen=True)
class Feed:
    name: str
    events: list[CalendarEvent]


def feed(db: Db, kind: FeedOwner, owner_id: uuid.UUID, token: str, *, now: datetime) -> Feed:
    """A room's or provider's confirmed bookings from a month ago to a year ahead."""
    owner = _feed_owner(db, kind, owner_id)
    if (
        owner is None
        or owner.feed_token is None
        or not secrets.compare_digest(owner.feed_token.encode(), token.encode())
    ):
        # The same answer for a wrong token and an unknown owner: nothing to probe.
        raise Unauthorized("This calendar feed link is not valid.")
    whose = Session.room_id == owner_id if kind == "rooms" else Session.provider_id == owner_id
    rows = db.execute(
        select(Booking)
        .join(Booking.session)
        .options(joinedload(Booking.session).joinedload(Session.room))
        .where(
            whose,
            Booking.status.in_((BookingStatus.CONFIRMED.value, BookingStatus.COMPLETED.value)),
            Session.start_at >= now - timedelta(days=FEED_PAST_DAYS),
            Session.start_at < now + timedelta(days=FEED_FUTURE_DAYS),
        )
        .order_by(Session.start_at)
        .limit(MAX_FEED_EVENTS)
    ).scalars()
    events = []
    for booking in rows:
        session = booking.session
        assert session is not None
        room_name = session.room.name if session.room else ""
        events.append(
            CalendarEvent(
                uid=calendar_uid(booking.id),
                summary=session.title or room_name or "Booking",
                start_at=session.start_at,
                end_at=session.end_at,
                sequence=booking.sequence,
                location=room_name,
            )
        )
    return Feed(name=owner.name, events=events)
