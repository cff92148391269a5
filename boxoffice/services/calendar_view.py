"""The organiser's calendar: every session of the organisation in a window, each with
the people holding a seat in it.

A busy organisation's month is thousands of sessions and tens of thousands of bookings.
Making, grouping and serialising one Python object per booking cost more than the
queries, so the database does that part. Two statements: the sessions with the names of
their provider, room and service; then one row per session with its bookings counted by
status and its attendees already written as JSON text (:func:`_attendee_json`, in the
shape of the API's ``CalendarAttendeeOut``). Ids come back as text (:class:`uuid_text`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from boxoffice.db.models import Booking, Provider, Room, Service, Session, User
from boxoffice.db.session import Db
from boxoffice.domain.bookings import SEAT_HOLDING, BookingStatus
from boxoffice.domain.sessions import SessionStatus
from boxoffice.services.organizations import get_organization
from boxoffice.services.slots import InvalidWindow

MAX_WINDOW_DAYS = 62
# No session lasts longer: organiser-made ones at most 7 days (``sessions.MAX_LENGTH``),
# timeslots and appointments a day. It bounds the index range of the overlap query.
LONGEST_SESSION = timedelta(days=7)

_SESSIONS = cast(Table, Session.__table__)
_BOOKINGS = cast(Table, Booking.__table__)
_PROVIDERS = cast(Table, Provider.__table__)
_ROOMS = cast(Table, Room.__table__)
_SERVICES = cast(Table, Service.__table__)
_USERS = cast(Table, User.__table__)

# A SELECT of any columns.
_Select = Select[*tuple[Any, ...]]

_HOLDING = sorted(s.value for s in SEAT_HOLDING)
# The statuses counted per session: those holding a seat, and the cancelled.
COUNTED = (
    BookingStatus.PENDING.value,
    BookingStatus.CONFIRMED.value,
    BookingStatus.COMPLETED.value,
    BookingStatus.NO_SHOW.value,
    BookingStatus.CANCELLED.value,
)


# --- SQL the two databases spell differently ----------------------------------------------


class uuid_text(FunctionElement[str]):
    """A UUID column as its canonical text (``8-4-4-4-12`` lower-case hex digits)."""

    type = String()
    inherit_cache = True


@compiles(uuid_text)
def _uuid_text(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(uuid_text, "sqlite")
def _uuid_text_sqlite(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores a UUID in SQLite as its 32 hex digits, without dashes.
    x = compiler.process(element.clauses, **kw)
    parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    return " || '-' || ".join(f"substr({x}, {start}, {length})" for start, length in parts)


class json_string(FunctionElement[str]):
    """A text value as a JSON string literal, quoted and escaped; NULL as ``null``."""

    type = String()
    inherit_cache = True


@compiles(json_string)
def _json_string(element: json_string, compiler: SQLCompiler, **kw: Any) -> str:
    return f"COALESCE(CAST(to_json({compiler.process(element.clauses, **kw)}) AS TEXT), 'null')"


@compiles(json_string, "sqlite")
def _json_string_sqlite(element: json_string, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_quote({compiler.process(element.clauses, **kw)})"


class joined_in_order(FunctionElement[str]):
    """An aggregate: the group's non-NULL texts joined by commas, in the order of the
    second and later arguments (``joined_in_order(text, *order_by)``)."""

    type = String()
    inherit_cache = True


@compiles(joined_in_order)
def _joined_in_order(element: joined_in_order, compiler: SQLCompiler, **kw: Any) -> str:
    text, *order = (compiler.process(c, **kw) for c in element.clauses)
    return f"string_agg({text}, ',' ORDER BY {', '.join(order)})"


@compiles(joined_in_order, "sqlite")
def _joined_in_order_sqlite(element: joined_in_order, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite before 3.44 has no ORDER BY in an aggregate: it joins the rows in the order
    # it reads them, which the caller sorts in a subquery (the tests check the order).
    text = compiler.process(next(iter(element.clauses)), **kw)
    return f"group_concat({text}, ',')"


# --- the calendar ---------------------------------------------------------------------------


@dataclass(slots=True)
class CalendarEntry:
    """One session of the calendar, ids as strings, with its bookings counted by status.

    ``attendees`` is the JSON text of the bookings holding a seat, oldest first: the
    objects of a JSON array without its brackets ("" for none)."""

    id: str
    kind: str
    title: str | None
    status: str
    start_at: datetime
    end_at: datetime
    provider_id: str | None
    provider_name: str | None
    room_id: str | None
    room_name: str | None
    service_id: str | None
    service_name: str | None
    course_id: str | None
    sequence_no: int | None
    max_participants: int
    booked_count: int
    pending: int = 0
    confirmed: int = 0
    completed: int = 0
    no_show: int = 0
    cancelled: int = 0
    attendees: str = ""


@dataclass(frozen=True)
class Calendar:
    start: datetime
    end: datetime
    timezone: str
    sessions: list[CalendarEntry]
    with_attendees: bool = True  # False: the entries' ``attendees`` were not read


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window as UTC instants, if it is one the calendar answers (InvalidWindow)."""
    if start.utcoffset() is None or end.utcoffset() is None:
        raise InvalidWindow("from and to need a UTC offset.")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    details = {"from": start.isoformat(), "to": end.isoformat()}
    if not start < end:
        raise InvalidWindow("'to' must be after 'from'.", details)
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidWindow(f"The calendar spans at most {MAX_WINDOW_DAYS} days.", details)
    return start, end


@dataclass(frozen=True)
class _Window:
    org_id: uuid.UUID
    start: datetime
    end: datetime
    provider_id: uuid.UUID | None
    room_id: uuid.UUID | None
    include_canceled: bool

    def sessions(self, stmt: _Select) -> _Select:
        """``stmt`` limited to the organisation's sessions overlapping the window."""
        s = _SESSIONS.c
        stmt = stmt.where(
            s.org_id == self.org_id,
            # The index range: a session overlapping the window starts at most
            # LONGEST_SESSION before it.
            s.start_at >= self.start - LONGEST_SESSION,
            s.start_at < self.end,
            s.end_at > self.start,
        )
        if not self.include_canceled:
            stmt = stmt.where(s.status != SessionStatus.CANCELED.value)
        if self.provider_id is not None:
            stmt = stmt.where(s.provider_id == self.provider_id)
        if self.room_id is not None:
            stmt = stmt.where(s.room_id == self.room_id)
        return stmt


def calendar(
    db: Db,
    org_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    provider_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    include_canceled: bool = False,
    with_attendees: bool = True,
) -> Calendar:
    """The organisation's sessions overlapping [start, end) (at most 62 days), by start,
    each with its booking counts and (``with_attendees``) its attendees; canceled
    sessions only with ``include_canceled``. A provider or room of another organisation
    matches nothing."""
    start, end = check_window(start, end)
    window = _Window(org_id, start, end, provider_id, room_id, include_canceled)
    s = _SESSIONS.c
    stmt = window.sessions(
        select(
            uuid_text(s.id),
            s.kind,
            s.title,
            s.status,
            s.start_at,
            s.end_at,
            uuid_text(s.provider_id),
            _PROVIDERS.c.name,
            uuid_text(s.room_id),
            _ROOMS.c.name,
            uuid_text(s.service_id),
            _SERVICES.c.name,
            uuid_text(s.course_id),
            s.sequence_no,
            s.max_participants,
            s.booked_count,
        )
        .select_from(_SESSIONS)
        .outerjoin(_PROVIDERS, _PROVIDERS.c.id == s.provider_id)
        .outerjoin(_ROOMS, _ROOMS.c.id == s.room_id)
        .outerjoin(_SERVICES, _SERVICES.c.id == s.service_id)
        .order_by(s.start_at, s.id)
    )
    entries = [CalendarEntry(*row) for row in db.execute(stmt).all()]
    if entries:
        # A second statement rather than a join with the first: under a generic plan
        # (psycopg prepares a statement run 5 times) PostgreSQL re-ran the aggregate for
        # every session of the join, seconds instead of milliseconds.
        by_id = {e.id: e for e in entries}
        booked = _attendees_by_session(window) if with_attendees else _counts_by_session(window)
        for session_id, *counts, attendees in db.execute(booked).all():
            entry = by_id[session_id]
            entry.pending, entry.confirmed, entry.completed, entry.no_show = counts[:4]
            entry.cancelled, entry.attendees = counts[4], attendees or ""
    timezone = get_organization(db, org_id).timezone
    return Calendar(start, end, timezone, entries, with_attendees=with_attendees)


def _counted(status: ColumnElement[str]) -> list[ColumnElement[int]]:
    return [func.count().filter(status == s).label(s) for s in COUNTED]


def _counts_by_session(window: _Window) -> _Select:
    """Per session of the window with bookings: its id, a count per status of
    :data:`COUNTED`, and NULL for its attendees."""
    b, s = _BOOKINGS.c, _SESSIONS.c
    stmt: _Select = window.sessions(
        select(uuid_text(b.session_id), *_counted(b.status), literal(None, String))
        .select_from(_BOOKINGS)
        .join(_SESSIONS, s.id == b.session_id)
        .where(b.status.in_(COUNTED))
        .group_by(b.session_id)
    )
    return stmt


def _attendees_by_session(window: _Window) -> _Select:
    """Per session of the window with bookings: its id, a count per status of
    :data:`COUNTED`, and its ``attendees`` (see :class:`CalendarEntry`)."""
    b, u, s = _BOOKINGS.c, _USERS.c, _SESSIONS.c
    # Sorted here so that the sort carries a few columns, not the JSON made of them, and
    # so that SQLite reads each session's bookings oldest first.
    rows = window.sessions(
        select(
            b.session_id,
            b.id,
            b.status,
            b.payment_status,
            func.coalesce(b.customer_name, u.name).label("name"),
            func.coalesce(b.customer_email, u.email).label("email"),
            b.created_at,
        )
        .select_from(_BOOKINGS)
        .join(_SESSIONS, s.id == b.session_id)
        .outerjoin(_USERS, u.id == b.user_id)
        .where(b.status.in_(COUNTED))
        .order_by(b.session_id, b.created_at, b.id)
    ).subquery("b")
    stmt: _Select = select(
        uuid_text(rows.c.session_id),
        *_counted(rows.c.status),
        joined_in_order(_attendee_json(rows.c), rows.c.created_at, rows.c.id).label("attendees"),
    ).group_by(rows.c.session_id)
    return stmt


def _attendee_json(row: Any) -> ColumnElement[str]:
    """A seat-holding booking as the JSON object of the API's ``CalendarAttendeeOut``
    (NULL for other bookings), from the columns of ``row``. Ids and statuses need no
    escaping (canonical UUIDs, and words the CHECK constraints allow); names and
    e-mails are escaped."""
    parts: list[ColumnElement[str]] = [
        literal('{"bookingId":"'),
        uuid_text(row.id),
        literal('","status":"'),
        row.status,
        literal('","paymentStatus":"'),
        row.payment_status,
        literal('","name":'),
        json_string(row.name),
        literal(',"email":'),
        json_string(row.email),
        literal("}"),
    ]
    text = parts[0]
    for part in parts[1:]:
        text = text.concat(part)
    return case((row.status.in_(_HOLDING), text), else_=None)
