"""A provider's agenda: the sessions in a window, each with its bookings."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from boxoffice.db.models import Booking, Session
from boxoffice.db.session import Db
from boxoffice.domain.errors import InvalidInput
from boxoffice.services.providers import get_provider

MAX_AGENDA_DAYS = 62


@dataclass(frozen=True)
class AgendaEntry:
    session: Session
    bookings: list[Booking]


def provider_agenda(
    db: Db,
    org_id: uuid.UUID,
    provider_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    include_cancelled: bool = False,
) -> list[AgendaEntry]:
    """The provider's sessions starting in [``start``, ``end``), by start, with their
    bookings by creation; cancelled ones only with ``include_cancelled``."""
    if start.utcoffset() is None or end.utcoffset() is None:
        raise InvalidInput("from and to must carry a time zone offset.")
    if not start < end:
        raise InvalidInput(
            "'to' must be after 'from'.", {"from": start.isoformat(), "to": end.isoformat()}
        )
    if end - start > timedelta(days=MAX_AGENDA_DAYS):
        raise InvalidInput(
            f"An agenda spans at most {MAX_AGENDA_DAYS} days.",
            {"from": start.isoformat(), "to": end.isoformat()},
        )
    provider = get_provider(db, provider_id, org_id=org_id)
    stmt = (
        select(Session)
        .options(joinedload(Session.service), joinedload(Session.room))
        .where(
            Session.provider_id == provider.id,
            Session.start_at >= start,
            Session.start_at < end,
        )
        .order_by(Session.start_at, Session.id)
    )
    if not include_cancelled:
        stmt = stmt.where(Session.status != "canceled")
    sessions = list(db.execute(stmt).scalars())
    by_session: dict[uuid.UUID, list[Booking]] = defaultdict(list)
    if sessions:
        booking_stmt = (
            select(Booking)
            .where(Booking.session_id.in_([s.id for s in sessions]))
            .order_by(Booking.created_at, Booking.id)
        )
        if not include_cancelled:
            booking_stmt = booking_stmt.where(Booking.status != "cancelled")
        for booking in db.execute(booking_stmt).scalars():
            if booking.session_id is not None:
                by_session[booking.session_id].append(booking)
    return [AgendaEntry(s, by_session[s.id]) for s in sessions]
