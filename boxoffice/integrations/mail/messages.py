"""The customer's booking emails, rendered from the outbox payload the services write.

Payload (JSON)::

    {"kind": "booking_confirmed" | "booking_rescheduled" | "booking_cancelled"
             | "booking_reminder" | "payment_refunded",
     "bookingId": str, "to": str, "customerName": str | None, "orgName": str,
     "orgTimezone": IANA str, "customerTimezone": IANA str | None, "title": str,
     "startAt": ISO-8601 UTC str, "endAt": str, "location": str, "sequence": int,
     "priceMinor": int, "currency": "EUR", "refundMinor": int (cancelled and
     payment_refunded only),
     "previousStartAt": str | None (rescheduled only), "manageUrl": str | None}

Ticket mails (``ticket_issued``, ``ticket_cancelled``) have their own payload, see
:func:`render_ticket`.

Confirmed and rescheduled mails carry an iTIP REQUEST (one UID per booking, the
payload's sequence), cancelled ones a CANCEL. Reminders carry none: the customer's
calendar already holds the current invite, and a repeated REQUEST makes some clients
announce an "updated" event or re-add one the customer deliberately deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from boxoffice.domain.money import exponent, to_major
from boxoffice.integrations import qr
from boxoffice.integrations.calendar import ics
from boxoffice.services.ports import Attachment, CalendarEvent, Email

_TEMPLATES = Path(__file__).parent / "templates"

EN_DASH = "\u2013"  # for ranges like 10:00-11:00; escaped because ruff flags the literal
# English names, not strftime's %A/%B: those follow the process locale.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class _Kind:
    subject: str
    method: str | None  # iTIP method of the attached invite; None: no invite
    is_cancellation: bool = False
    tells_refund: bool = False


KINDS: Mapping[str, _Kind] = {
    "booking_confirmed": _Kind("Booking confirmed", "REQUEST"),
    "booking_rescheduled": _Kind("Booking moved", "REQUEST"),
    "booking_cancelled": _Kind(
        "Booking cancelled", "CANCEL", is_cancellation=True, tells_refund=True
    ),
    "booking_reminder": _Kind("Reminder", None),
    # A late payment refunded: no invite (the customer never got one for this booking).
    "payment_refunded": _Kind("Payment refunded", None, tells_refund=True),
    # A seat from the waitlist, held for a while: no invite until it is taken.
    "waitlist_offered": _Kind("A seat is free for you", None),
}


def render(
    payload: Mapping[str, Any],
    *,
    message_id: str,
    public_url: str,
    organizer_email: str,
    stamp: datetime,
) -> Email:
    """The email for one booking change; ValueError for an unknown kind or a bad payload.

    ``organizer_email`` may carry a display name ("Box Office <bookings@...>"); the
    organisation's name is used instead. ``stamp`` becomes the invite's DTSTAMP.
    """
    kind_name = payload.get("kind")
    if isinstance(kind_name, str) and kind_name in TICKET_KINDS:
        return render_ticket(payload, message_id=message_id, public_url=public_url)
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise ValueError(f"Unknown mail kind {kind_name!r}.")
    p = _Payload(payload)
    booking_id = p.text("bookingId")
    to = p.text("to")
    customer_name = p.optional_text("customerName")
    org_name = p.optional_text("orgName") or "Box Office"  # a booking with no organisation
    org_zone = p.zone("orgTimezone")
    customer_zone = p.zone("customerTimezone") if payload.get("customerTimezone") else None
    title = p.text("title")
    start_at, end_at = p.instant("startAt"), p.instant("endAt")
    if end_at <= start_at:
        raise ValueError("Payload endAt is not after startAt.")
    location = p.optional_text("location") or ""
    sequence = p.integer("sequence")
    currency = p.text("currency").upper()
    price_minor = p.integer("priceMinor")
    refund_minor = p.integer("refundMinor") if kind.tells_refund else 0
    previous = p.instant("previousStartAt") if payload.get("previousStartAt") else None
    manage_url = _absolute(p.optional_text("manageUrl"), public_url)

    subject = f"{kind.subject}: {title}, {_short(start_at, org_zone)}"
    context = {
        "subject": subject,
        "greeting": f"Hello {customer_name}," if customer_name else "Hello,",
        "org_name": org_name,
        "title": title,
        "when": when(start_at, end_at, org_zone, customer_zone),
        "previous_when": (
            # Only the start: the payload does not say how long the old slot was.
            when(previous, None, org_zone, customer_zone)
            if previous is not None and kind_name == "booking_rescheduled"
            else None
        ),
        "location": location,
        "price": money(price_minor, currency) if price_minor else None,
        "refund": money(refund_minor, currency) if refund_minor else None,
        "manage_url": manage_url,
        "public_url": public_url,
        "hold_until": (
            when(p.instant("holdExpiresAt"), None, org_zone, customer_zone)
            if payload.get("holdExpiresAt")
            else None
        ),
    }
    attachments: tuple[Attachment, ...] = ()
    if kind.method is not None:
        description = f"Booked with {org_name}."
        if manage_url:
            description += f"\nManage your booking: {manage_url}"
        event = CalendarEvent(
            uid=f"booking-{booking_id}@boxoffice",
            summary=title,
            start_at=start_at,
            end_at=end_at,
            sequence=sequence,
            description=description,
            location=location,
            url=manage_url or "",
        )
        organizer_address = parseaddr(organizer_email)[1]
        if "@" not in organizer_address:
            raise ValueError(f"Unusable organizer address {organizer_email!r}.")
        data = ics.invite(
            event,
            method=kind.method,
            organizer_email=organizer_address,
            organizer_name=org_name,
            attendee_email=to,
            attendee_name=customer_name,
            cancelled=kind.is_cancellation,
            stamp=stamp,
        )
        content_type = f'text/calendar; method={kind.method}; charset="utf-8"'
        attachments = (Attachment("invite.ics", content_type, data),)
    return Email(
        to=to,
        subject=subject,
        text=_environment().get_template(f"{kind_name}.txt").render(context),
        html=_environment().get_template(f"{kind_name}.html").render(context),
        message_id=message_id,
        attachments=attachments,
    )


# --- tickets -------------------------------------------------------------------------------

TICKET_KINDS: Mapping[str, str] = {
    "ticket_issued": "Your ticket",
    "ticket_cancelled": "Ticket cancelled",
}


def render_ticket(payload: Mapping[str, Any], *, message_id: str, public_url: str) -> Email:
    """A ticket's email. Payload (JSON)::

        {"kind": "ticket_issued" | "ticket_cancelled", "ticketId": str, "to": str,
         "customerName": str | None, "orgName": str, "orgTimezone": IANA str (the
         event's), "title": str (the event), "ticketType": str, "startAt": str,
         "endAt": str, "location": str, "priceMinor": int, "currency": str,
         "isPaid": bool, "refundMinor": int, "reason": str
         ("cancelled" | "by_organiser" | "late_payment" for cancelled ones),
         "code": str (issued only)}

    An issued ticket carries its code as text and as a QR code (PNG attachment).
    """
    kind_name = payload.get("kind")
    if not isinstance(kind_name, str) or kind_name not in TICKET_KINDS:
        raise ValueError(f"Unknown ticket mail kind {kind_name!r}.")
    p = _Payload(payload)
    ticket_id = p.text("ticketId")
    customer_name = p.optional_text("customerName")
    zone = p.zone("orgTimezone")
    title = p.text("title")
    start_at, end_at = p.instant("startAt"), p.instant("endAt")
    if end_at <= start_at:
        raise ValueError("Payload endAt is not after startAt.")
    currency = p.text("currency").upper()
    price_minor = p.integer("priceMinor")
    refund_minor = p.integer("refundMinor")
    code = p.text("code") if kind_name == "ticket_issued" else None
    subject = f"{TICKET_KINDS[kind_name]}: {title}, {_short(start_at, zone)}"
    context = {
        "subject": subject,
        "greeting": f"Hello {customer_name}," if customer_name else "Hello,",
        "org_name": p.optional_text("orgName") or "Box Office",
        "title": title,
        "ticket_type": p.optional_text("ticketType") or "",
        "when": when(start_at, end_at, zone),
        "previous_when": None,
        "location": p.optional_text("location") or "",
        "price": money(price_minor, currency) if price_minor else None,
        "pay_at_desk": bool(price_minor) and payload.get("isPaid") is False,
        "refund": money(refund_minor, currency) if refund_minor else None,
        "reason": p.optional_text("reason") or "",
        "code": code,
        "ticket_ref": ticket_id[:8].upper(),
        "manage_url": None,
        "public_url": public_url,
    }
    attachments: tuple[Attachment, ...] = ()
    if code is not None:
        attachments = (Attachment(f"ticket-{ticket_id[:8]}.png", "image/png", qr.qr_png(code)),)
    return Email(
        to=p.text("to"),
        subject=subject,
        text=_environment().get_template(f"{kind_name}.txt").render(context),
        html=_environment().get_template(f"{kind_name}.html").render(context),
        message_id=message_id,
        attachments=attachments,
    )


def money(minor: int, currency: str) -> str:
    """``1250, "EUR"`` -> ``"12.50 EUR"``; as many decimals as the currency has."""
    return f"{to_major(minor, currency):.{exponent(currency)}f} {currency.upper()}"


def when(
    start_at: datetime, end_at: datetime | None, zone: ZoneInfo, other: ZoneInfo | None = None
) -> str:
    """The interval (or, without ``end_at``, the start) in ``zone`` and, when the wall
    clock differs there, in ``other``.

    ``Tuesday 5 March 2030, 10:00-11:00 (Europe/Madrid) · 09:00-10:00 (Europe/London)``,
    with en dashes;
    the second part names its date only when that differs from the first's.
    """
    text = _span(start_at, end_at, zone, with_date=True)
    if other is not None:
        here, there = start_at.astimezone(zone), start_at.astimezone(other)
        if there.replace(tzinfo=None) != here.replace(tzinfo=None):
            same_day = there.date() == here.date()
            text += " · " + _span(start_at, end_at, other, with_date=not same_day)
    return text


def _span(start_at: datetime, end_at: datetime | None, zone: ZoneInfo, *, with_date: bool) -> str:
    start = start_at.astimezone(zone)
    if end_at is None:
        text = f"{_day(start)}, {start:%H:%M}" if with_date else f"{start:%H:%M}"
        return f"{text} ({zone.key})"
    end = end_at.astimezone(zone)
    # An event ending at midnight ends "at 24:00" of its day, not on the next one.
    last_day = (end - timedelta(microseconds=1)).date()
    if last_day == start.date():
        times = f"{start:%H:%M}{EN_DASH}{end:%H:%M}"
        text = f"{_day(start)}, {times}" if with_date else times
    else:
        text = f"{_day(start)}, {start:%H:%M} {EN_DASH} {_day(end)}, {end:%H:%M}"
    return f"{text} ({zone.key})"


def _day(local: datetime) -> str:
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def _short(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    return f"{_DAYS[local.weekday()][:3]} {local.day} {_MONTHS[local.month - 1][:3]} {local:%H:%M}"


def _absolute(url: str | None, public_url: str) -> str | None:
    if not url:
        return None
    if url.startswith(("https://", "http://")):
        return url
    return f"{public_url.rstrip('/')}/{url.lstrip('/')}"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class _Payload:
    """Typed reads from the JSON payload; anything malformed is a ValueError."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload

    def _get(self, key: str) -> Any:
        if key not in self._payload:
            raise ValueError(f"Mail payload lacks {key!r}.")
        return self._payload[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"Mail payload {key!r} must be a non-empty string.")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self._payload.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"Mail payload {key!r} must be a string or null.")
        return value or None

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Mail payload {key!r} must be a non-negative integer.")
        return value

    def instant(self, key: str) -> datetime:
        value = self.text(key)
        try:
            instant = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"Mail payload {key!r} is not an ISO-8601 instant.") from exc
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"Mail payload {key!r} has no UTC offset.")
        return instant

    def zone(self, key: str) -> ZoneInfo:
        value = self.text(key)
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"Mail payload {key!r} is not an IANA time zone.") from exc
