"""iCalendar documents: email invites (iTIP/iMIP), subscription feeds, single events for CalDAV.

Built with the ``icalendar`` package so escaping, folding and parameter quoting follow
RFC 5545. Instants are written in UTC, so no VTIMEZONE is needed. Nothing here reads the
clock: DTSTAMP is the caller's ``stamp``, which keeps the bytes reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import icalendar

from boxoffice.services.ports import CalendarEvent

PRODID = "-//Box Office//EN"
_METHODS = frozenset({"REQUEST", "CANCEL", "PUBLISH"})

__all__ = ["PRODID", "event_ics", "feed", "invite"]


def invite(
    event: CalendarEvent,
    *,
    method: str,
    organizer_email: str,
    organizer_name: str,
    attendee_email: str,
    attendee_name: str | None,
    cancelled: bool = False,
    stamp: datetime,
) -> bytes:
    """An iTIP message (METHOD REQUEST or CANCEL) for one attendee of ``event``."""
    method = method.upper()
    if method not in _METHODS:
        raise ValueError(f"Unsupported iTIP method {method!r}.")
    organizer = icalendar.vCalAddress.new(organizer_email, cn=organizer_name or None)
    attendee = icalendar.vCalAddress.new(
        attendee_email,
        cn=attendee_name or None,
        role="REQ-PARTICIPANT",
        partstat="NEEDS-ACTION",
        rsvp=False,
    )
    vevent = _vevent(event, stamp=stamp, status="CANCELLED" if cancelled else "CONFIRMED")
    vevent.add("ORGANIZER", organizer)
    vevent.add("ATTENDEE", attendee)
    return _bytes(_calendar([vevent], method=method))


def feed(name: str, events: Iterable[CalendarEvent], *, stamp: datetime) -> bytes:
    """A subscription feed (METHOD PUBLISH) named ``name`` with one VEVENT per event."""
    vevents = [_vevent(event, stamp=stamp, status="CONFIRMED") for event in events]
    calendar = _calendar(vevents, method="PUBLISH")
    calendar.add("X-WR-CALNAME", name)
    return _bytes(calendar)


def event_ics(event: CalendarEvent, *, stamp: datetime) -> bytes:
    """A calendar object resource with one VEVENT and no METHOD, for a CalDAV PUT."""
    return _bytes(_calendar([_vevent(event, stamp=stamp, status="CONFIRMED")], method=None))


def _calendar(vevents: list[icalendar.Event], *, method: str | None) -> icalendar.Calendar:
    # Calendar() rather than Calendar.new(): .new() adds a random calendar UID, which
    # would make the same input produce different bytes.
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    if method is not None:
        calendar.add("METHOD", method)
    for vevent in vevents:
        calendar.add_component(vevent)
    return calendar


def _vevent(event: CalendarEvent, *, stamp: datetime, status: str) -> icalendar.Event:
    start_at, end_at = _utc(event.start_at), _utc(event.end_at)
    if end_at <= start_at:
        raise ValueError(f"Event {event.uid!r} does not end after it starts.")
    vevent = icalendar.Event()
    vevent.add("UID", event.uid)
    vevent.add("SEQUENCE", event.sequence)
    vevent.add("DTSTAMP", _utc(stamp))
    vevent.add("DTSTART", start_at)
    vevent.add("DTEND", end_at)
    vevent.add("SUMMARY", event.summary)
    if event.description:
        vevent.add("DESCRIPTION", event.description)
    if event.location:
        vevent.add("LOCATION", event.location)
    if event.url:
        vevent.add("URL", event.url)
    vevent.add("STATUS", status)
    return vevent


def _bytes(calendar: icalendar.Calendar) -> bytes:
    data = calendar.to_ical()
    assert isinstance(data, bytes)
    return data


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"Naive datetime {instant.isoformat()} given; instants must be aware.")
    return instant.astimezone(UTC)
