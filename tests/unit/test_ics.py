"""iCalendar documents: invites, feeds and CalDAV events, read back with icalendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest

from boxoffice.integrations.calendar import ics
from boxoffice.services.ports import CalendarEvent

STAMP = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
MADRID = ZoneInfo("Europe/Madrid")


def make_event(**overrides: object) -> CalendarEvent:
    values: dict[str, object] = {
        "uid": "booking-42@boxoffice",
        "summary": "Yoga; beginners, level 1",
        # 10:00 in Madrid on the day the clocks go forward.
        "start_at": datetime(2030, 3, 31, 10, 0, tzinfo=MADRID),
        "end_at": datetime(2030, 3, 31, 11, 0, tzinfo=MADRID),
        "sequence": 3,
        "description": "Bring a mat.\nArrive early.",
        "location": "Studio 1",
        "url": "https://example.org/b/42",
    }
    values.update(overrides)
    return CalendarEvent(**values)  # type: ignore[arg-type]


def invite(event: CalendarEvent, **overrides: object) -> icalendar.Calendar:
    kwargs: dict[str, object] = {
        "method": "REQUEST",
        "organizer_email": "bookings@example.org",
        "organizer_name": "Acme Studio",
        "attendee_email": "ann@example.org",
        "attendee_name": "Ann Lee",
        "stamp": STAMP,
    }
    kwargs.update(overrides)
    return icalendar.Calendar.from_ical(ics.invite(event, **kwargs))  # type: ignore[arg-type]


def utc_value(component: icalendar.Component, name: str) -> datetime:
    value = component.decoded(name)
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)
    return value


def test_request_invite() -> None:
    raw = ics.invite(
        make_event(),
        method="REQUEST",
        organizer_email="bookings@example.org",
        organizer_name="Acme Studio",
        attendee_email="ann@example.org",
        attendee_name="Ann Lee",
        stamp=STAMP,
    )
    assert b"DTSTART:20300331T080000Z" in raw  # UTC, no TZID, no VTIMEZONE needed
    assert b"VTIMEZONE" not in raw
    calendar = icalendar.Calendar.from_ical(raw)
    assert str(calendar["PRODID"]) == "-//Box Office//EN"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["METHOD"]) == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == "booking-42@boxoffice"
    assert event.decoded("SEQUENCE") == 3
    assert str(event["STATUS"]) == "CONFIRMED"
    assert utc_value(event, "DTSTART") == datetime(2030, 3, 31, 8, 0, tzinfo=UTC)
    assert utc_value(event, "DTEND") == datetime(2030, 3, 31, 9, 0, tzinfo=UTC)
    assert utc_value(event, "DTSTAMP") == STAMP
    assert str(event["SUMMARY"]) == "Yoga; beginners, level 1"
    assert str(event["DESCRIPTION"]) == "Bring a mat.\nArrive early."
    assert str(event["LOCATION"]) == "Studio 1"
    assert str(event["URL"]) == "https://example.org/b/42"
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:bookings@example.org"
    assert organizer.params["CN"] == "Acme Studio"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:ann@example.org"
    assert attendee.params["CN"] == "Ann Lee"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["RSVP"] == "FALSE"


def test_cancel_invite_keeps_uid_and_sequence() -> None:
    calendar = invite(make_event(sequence=4), method="CANCEL", cancelled=True)
    assert str(calendar["METHOD"]) == "CANCEL"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == "booking-42@boxoffice"
    assert event.decoded("SEQUENCE") == 4
    assert str(event["STATUS"]) == "CANCELLED"


def test_invite_is_deterministic_and_escapes_names() -> None:
    event = make_event()
    first = ics.invite(
        event,
        method="request",
        organizer_email="bookings@example.org",
        organizer_name='Acme, "the" studio',
        attendee_email="ann@example.org",
        attendee_name=None,
        stamp=STAMP,
    )
    second = ics.invite(
        event,
        method="REQUEST",
        organizer_email="bookings@example.org",
        organizer_name='Acme, "the" studio',
        attendee_email="ann@example.org",
        attendee_name=None,
        stamp=STAMP,
    )
    assert first == second
    [parsed] = icalendar.Calendar.from_ical(first).walk("VEVENT")
    assert parsed["ORGANIZER"].params["CN"] == 'Acme, "the" studio'
    assert "CN" not in parsed["ATTENDEE"].params


def test_optional_fields_are_left_out() -> None:
    calendar = invite(make_event(description="", location="", url=""))
    [event] = calendar.walk("VEVENT")
    for name in ("DESCRIPTION", "LOCATION", "URL"):
        assert name not in event


@pytest.mark.parametrize(
    ("overrides", "kwargs"),
    [
        ({"start_at": datetime(2030, 3, 31, 10, 0)}, {}),  # naive
        ({"end_at": datetime(2030, 3, 31, 9, 0, tzinfo=MADRID)}, {}),  # ends first
        ({}, {"method": "REPLY"}),
        ({}, {"stamp": datetime(2030, 1, 1)}),  # naive
    ],
)
def test_invalid_input_is_refused(overrides: dict[str, object], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        invite(make_event(**overrides), **kwargs)


def test_feed_has_one_event_each() -> None:
    events = [
        make_event(
            uid=f"booking-{n}@boxoffice",
            summary=f"Session {n}",
            start_at=datetime(2030, 10, 27, n, 0, tzinfo=UTC),
            end_at=datetime(2030, 10, 27, n, 30, tzinfo=UTC),
            sequence=n,
        )
        for n in range(3)
    ]
    other_offset = make_event(
        uid="booking-x@boxoffice",
        start_at=datetime(2030, 10, 27, 1, 30, tzinfo=timezone(timedelta(hours=-5))),
        end_at=datetime(2030, 10, 27, 2, 30, tzinfo=timezone(timedelta(hours=-5))),
    )
    raw = ics.feed("Acme: Studio 1", [*events, other_offset], stamp=STAMP)
    calendar = icalendar.Calendar.from_ical(raw)
    assert str(calendar["X-WR-CALNAME"]) == "Acme: Studio 1"
    assert calendar.get("METHOD") in (None, "PUBLISH")
    vevents = calendar.walk("VEVENT")
    assert [str(e["UID"]) for e in vevents] == [
        "booking-0@boxoffice",
        "booking-1@boxoffice",
        "booking-2@boxoffice",
        "booking-x@boxoffice",
    ]
    assert [e.decoded("SEQUENCE") for e in vevents[:3]] == [0, 1, 2]
    assert utc_value(vevents[3], "DTSTART") == datetime(2030, 10, 27, 6, 30, tzinfo=UTC)
    assert all("ATTENDEE" not in e for e in vevents)


def test_empty_feed() -> None:
    calendar = icalendar.Calendar.from_ical(ics.feed("Nothing", [], stamp=STAMP))
    assert calendar.walk("VEVENT") == []


def test_event_for_caldav_has_no_method() -> None:
    calendar = icalendar.Calendar.from_ical(ics.event_ics(make_event(), stamp=STAMP))
    assert "METHOD" not in calendar
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == "booking-42@boxoffice"
    assert utc_value(event, "DTSTART") == datetime(2030, 3, 31, 8, 0, tzinfo=UTC)
    assert "ORGANIZER" not in event
