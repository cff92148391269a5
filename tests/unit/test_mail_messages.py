"""Booking emails rendered from outbox payloads: text, HTML, subject and the invite."""

# The expected texts use en dashes (U+2013) in time ranges on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from boxoffice.integrations.mail.messages import KINDS, money, render, when
from boxoffice.services.ports import Email

STAMP = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
KIND_NAMES = sorted(KINDS)


def payload(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "booking_confirmed",
        "bookingId": "7f1c0a52-0000-4000-8000-000000000001",
        "to": "ann@example.org",
        "customerName": "Ann Lee",
        "orgName": "Acme Studio",
        "orgTimezone": "Europe/Madrid",
        "customerTimezone": "America/New_York",
        "title": "Yoga",
        # 31 March 2030: Madrid has just moved to CEST (UTC+2), New York is on EDT (UTC-4).
        "startAt": "2030-03-31T08:00:00Z",
        "endAt": "2030-03-31T09:00:00+00:00",
        "location": "Studio 1",
        "sequence": 0,
        "priceMinor": 2500,
        "currency": "EUR",
        "refundMinor": 0,
        "previousStartAt": None,
        "manageUrl": "https://book.example.org/b/7f1c?token=a&b=c",
    }
    values.update(overrides)
    return values


def rendered(**overrides: Any) -> Email:
    return render(
        payload(**overrides),
        message_id="outbox-1@boxoffice",
        public_url="https://book.example.org",
        organizer_email="Box Office <bookings@example.org>",
        stamp=STAMP,
    )


def invite_of(email: Email) -> icalendar.Calendar:
    [attachment] = email.attachments
    assert attachment.filename == "invite.ics"
    return icalendar.Calendar.from_ical(attachment.data)


MADRID_AND_NEW_YORK = (
    "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid) · 04:00–05:00 (America/New_York)"
)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_kind_renders(kind: str) -> None:
    email = rendered(kind=kind, refundMinor=1250 if kind == "booking_cancelled" else 0)
    assert email.to == "ann@example.org"
    assert email.message_id == "outbox-1@boxoffice"
    assert email.sender is None
    assert "Yoga" in email.subject
    assert email.subject.endswith(", Sun 31 Mar 10:00")
    for body in (email.text, email.html):
        assert "Hello Ann Lee," in body
        assert "Acme Studio" in body
        assert MADRID_AND_NEW_YORK in body
        assert "Studio 1" in body
    assert "https://book.example.org/b/7f1c?token=a&b=c" in email.text
    assert 'href="https://book.example.org/b/7f1c?token=a&amp;b=c"' in email.html
    assert email.html.lstrip().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("booking_confirmed", "Booking confirmed: Yoga, Sun 31 Mar 10:00"),
        ("booking_rescheduled", "Booking moved: Yoga, Sun 31 Mar 10:00"),
        ("booking_cancelled", "Booking cancelled: Yoga, Sun 31 Mar 10:00"),
        ("booking_reminder", "Reminder: Yoga, Sun 31 Mar 10:00"),
    ],
)
def test_subjects(kind: str, subject: str) -> None:
    assert rendered(kind=kind).subject == subject


@pytest.mark.parametrize(
    ("kind", "method", "status"),
    [
        ("booking_confirmed", "REQUEST", "CONFIRMED"),
        ("booking_rescheduled", "REQUEST", "CONFIRMED"),
        ("booking_cancelled", "CANCEL", "CANCELLED"),
    ],
)
def test_invite_matches_the_kind(kind: str, method: str, status: str) -> None:
    email = rendered(kind=kind, sequence=2)
    [attachment] = email.attachments
    assert attachment.content_type == f'text/calendar; method={method}; charset="utf-8"'
    calendar = invite_of(email)
    assert str(calendar["METHOD"]) == method
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == "booking-7f1c0a52-0000-4000-8000-000000000001@boxoffice"
    assert event.decoded("SEQUENCE") == 2
    assert str(event["STATUS"]) == status
    assert event.decoded("DTSTART") == datetime(2030, 3, 31, 8, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2030, 3, 31, 9, 0, tzinfo=UTC)
    assert event.decoded("DTSTAMP") == STAMP
    assert str(event["ATTENDEE"]) == "mailto:ann@example.org"
    assert str(event["ORGANIZER"]) == "mailto:bookings@example.org"
    assert event["ORGANIZER"].params["CN"] == "Acme Studio"


def test_reschedule_keeps_the_uid_and_raises_the_sequence() -> None:
    first = invite_of(rendered(kind="booking_confirmed", sequence=0)).walk("VEVENT")[0]
    moved_email = rendered(
        kind="booking_rescheduled",
        sequence=1,
        startAt="2030-04-02T15:00:00Z",
        endAt="2030-04-02T16:00:00Z",
        previousStartAt="2030-03-31T08:00:00Z",
    )
    moved = invite_of(moved_email).walk("VEVENT")[0]
    assert str(moved["UID"]) == str(first["UID"])
    assert moved.decoded("SEQUENCE") > first.decoded("SEQUENCE")
    assert moved_email.subject == "Booking moved: Yoga, Tue 2 Apr 17:00"
    for body in (moved_email.text, moved_email.html):
        assert "Tuesday 2 April 2030, 17:00–18:00 (Europe/Madrid) · 11:00–12:00" in body
        assert "Sunday 31 March 2030, 10:00 (Europe/Madrid) · 04:00 (America/New_York)" in body


def test_reminder_has_no_attachment() -> None:
    assert rendered(kind="booking_reminder").attachments == ()


def test_cancellation_shows_the_refund() -> None:
    email = rendered(kind="booking_cancelled", refundMinor=1250, sequence=1)
    for body in (email.text, email.html):
        assert "12.50 EUR" in body
        assert "refund" in body.lower()


def test_cancellation_without_refund() -> None:
    email = rendered(kind="booking_cancelled", refundMinor=0)
    assert "No refund is due" in email.text
    assert "Refund:" not in email.text


def test_price_uses_the_currency_exponent() -> None:
    assert "Price: 1500 JPY" in rendered(priceMinor=1500, currency="JPY").text
    assert "Price: 1.234 KWD" in rendered(priceMinor=1234, currency="KWD").text
    assert "Price:" not in rendered(priceMinor=0).text


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, "EUR", "12.50 EUR"),
        (5, "eur", "0.05 EUR"),
        (0, "EUR", "0.00 EUR"),
        (700, "JPY", "700 JPY"),
    ],
)
def test_money(minor: int, currency: str, text: str) -> None:
    assert money(minor, currency) == text


def test_html_escapes_and_text_does_not() -> None:
    email = rendered(title="<script>alert(1)</script> & Co", customerName="<b>Ann</b>")
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in email.html
    assert "Hello &lt;b&gt;Ann&lt;/b&gt;," in email.html
    assert "<script>alert(1)</script> & Co" in email.text
    assert email.subject.startswith("Booking confirmed: <script>alert(1)</script> & Co, ")


@pytest.mark.parametrize(
    ("customer_zone", "expected"),
    [
        (None, "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid)"),
        ("Europe/Madrid", "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid)"),
        # Same wall clock under another name: no second, identical line.
        ("Europe/Paris", "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid)"),
        (
            "Europe/London",
            "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid) · 09:00–10:00 (Europe/London)",
        ),
        ("America/New_York", MADRID_AND_NEW_YORK),
        # Still on daylight time there (NZDT, UTC+13) until 7 April.
        (
            "Pacific/Auckland",
            "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid) · 21:00–22:00 (Pacific/Auckland)",
        ),
        # On another date there: the second part names its own.
        (
            "Pacific/Honolulu",
            "Sunday 31 March 2030, 10:00–11:00 (Europe/Madrid)"
            " · Saturday 30 March 2030, 22:00–23:00 (Pacific/Honolulu)",
        ),
    ],
)
def test_times_in_both_zones(customer_zone: str | None, expected: str) -> None:
    email = rendered(customerTimezone=customer_zone)
    assert f"When:  {expected}\n" in email.text


def test_when_across_midnight_and_ending_at_midnight() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    start = datetime(2030, 3, 30, 23, 0, tzinfo=madrid)
    assert (
        when(start, datetime(2030, 3, 31, 1, 0, tzinfo=madrid), madrid)
        == "Saturday 30 March 2030, 23:00 – Sunday 31 March 2030, 01:00 (Europe/Madrid)"
    )
    assert (
        when(start, datetime(2030, 3, 31, 0, 0, tzinfo=madrid), madrid)
        == "Saturday 30 March 2030, 23:00–00:00 (Europe/Madrid)"
    )


def test_customer_name_may_be_missing_and_link_relative() -> None:
    email = rendered(customerName=None, manageUrl="/b/7f1c", customerTimezone=None)
    assert email.text.startswith("Hello,\n")
    assert "https://book.example.org/b/7f1c" in email.text
    [event] = invite_of(email).walk("VEVENT")
    assert "CN" not in event["ATTENDEE"].params
    assert str(event["URL"]) == "https://book.example.org/b/7f1c"


def test_no_manage_link() -> None:
    email = rendered(manageUrl=None)
    assert "Manage your booking" not in email.text
    assert "Manage your booking" not in email.html


def test_rendering_is_deterministic() -> None:
    assert rendered(kind="booking_cancelled", refundMinor=100) == rendered(
        kind="booking_cancelled", refundMinor=100
    )


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown mail kind"):
        rendered(kind="booking_exploded")
    with pytest.raises(ValueError, match="Unknown mail kind"):
        render(
            {},
            message_id="x",
            public_url="https://book.example.org",
            organizer_email="bookings@example.org",
            stamp=STAMP,
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"startAt": "2030-03-31T08:00:00"},  # no offset
        {"startAt": "yesterday"},
        {"endAt": "2030-03-31T07:00:00Z"},  # before the start
        {"orgTimezone": "Mars/Olympus_Mons"},
        {"customerTimezone": "../../etc/passwd"},
        {"sequence": "1"},
        {"priceMinor": -1},
        {"to": ""},
    ],
)
def test_malformed_payload_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        rendered(**overrides)
