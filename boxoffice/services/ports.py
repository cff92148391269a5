"""The outside world as the services and the worker see it: small Protocols.

Concrete adapters live in ``boxoffice.integrations`` and are chosen once, at
start-up, from the settings. Values crossing these ports are plain and frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class DeliveryError(Exception):
    """A delivery failed in a way worth retrying (the far end is down, busy, or refused)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. 'text/calendar; method=REQUEST; charset="utf-8"'
    data: bytes


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str
    # Stable per outbox row, so a message sent again after a crash is recognisably the same.
    message_id: str
    attachments: tuple[Attachment, ...] = ()
    sender: str | None = None  # None: the configured mail_from


class Mailer(Protocol):
    def send(self, email: Email) -> None:
        """Hand the message to the relay (or folder); raise DeliveryError to retry."""


@dataclass(frozen=True)
class CalendarAccess:
    """Where a provider's or room's calendar lives and how to get in."""

    url: str
    username: str | None
    password: str | None


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    summary: str
    start_at: datetime
    end_at: datetime
    sequence: int = 0
    description: str = ""
    location: str = ""
    url: str = ""


@dataclass(frozen=True)
class BusyTime:
    """An interval when the calendar's owner is busy; ``uid`` names the source event."""

    uid: str
    start_at: datetime
    end_at: datetime


class Calendar(Protocol):
    def put_event(self, access: CalendarAccess, event: CalendarEvent) -> None:
        """Create or replace the event with this UID (idempotent)."""

    def delete_event(self, access: CalendarAccess, uid: str) -> None:
        """Delete the event with this UID; deleting one that is gone is not an error."""

    def busy_times(
        self, access: CalendarAccess, start_at: datetime, end_at: datetime
    ) -> list[BusyTime]:
        """Busy intervals overlapping [start_at, end_at), recurring events expanded."""


@dataclass(frozen=True)
class WebhookMessage:
    url: str
    secret: str  # Standard Webhooks secret, "whsec_..."
    msg_id: str  # the receiver's dedupe key
    timestamp: datetime
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class WebhookSender(Protocol):
    def send(self, message: WebhookMessage) -> None:
        """POST the signed body; a non-2xx answer or a network error is DeliveryError."""


@dataclass(frozen=True)
class Adapters:
    """The adapters an instance delivers through, chosen once at start-up."""

    mailer: Mailer
    calendar: Calendar
    webhooks: WebhookSender
