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


class PaymentUnavailable(DeliveryError):
    """The payment gateway could not be reached or refused for now; try again later."""


class PaymentRefused(Exception):
    """The gateway refused the request for good (bad account, amount, key): no retry helps."""


@dataclass(frozen=True)
class PaymentRequest:
    """Ask the gateway to collect ``amount_minor`` for one order.

    ``idempotency_key`` is the payment row's id: asking twice gives the same payment.
    With ``destination`` (a connected account) the money goes there, less
    ``application_fee_minor`` for the platform.
    """

    order_id: str
    amount_minor: int
    currency: str  # ISO 4217, upper case
    idempotency_key: str
    description: str = ""
    customer_email: str | None = None
    destination: str | None = None
    application_fee_minor: int | None = None


@dataclass(frozen=True)
class GatewayPayment:
    """A payment as the gateway sees it now.

    ``status`` is one of pending (waiting for the customer), succeeded, failed
    (the last attempt was declined) or cancelled.
    """

    ref: str  # the gateway's id: a PaymentIntent id, an offline payment id
    status: str
    amount_minor: int
    currency: str
    amount_refunded_minor: int = 0
    client_secret: str | None = None  # Stripe: for the client to confirm the payment
    checkout_url: str | None = None  # offline: the page where the customer pays
    failure_message: str | None = None


@dataclass(frozen=True)
class GatewayEvent:
    """Something the gateway tells us about a payment, by webhook or when asked.

    ``kind`` is succeeded, failed or refunded; ``id`` is the gateway's event id,
    processed once. ``amount_refunded_minor`` is the total refunded so far.
    """

    id: str
    kind: str
    payment_ref: str
    amount_minor: int = 0
    amount_refunded_minor: int = 0
    failure_message: str | None = None


class PaymentGateway(Protocol):
    name: str  # "stripe" or "offline"
    # Real money moves (a live Stripe key): an organisation must have connected its
    # own account; the platform never charges directly for it.
    live: bool

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        """Start collecting a payment (idempotent by ``request.idempotency_key``)."""

    def retrieve(self, ref: str) -> GatewayPayment:
        """The payment's state now (for reconciliation)."""

    def refund(self, ref: str, amount_minor: int, *, idempotency_key: str) -> str:
        """Refund part or all of a succeeded payment; returns the gateway's refund id.

        Idempotent by ``idempotency_key``: a retried refund is not refunded twice.
        Raise PaymentUnavailable to retry later, PaymentRefused if it can never work.
        """


@dataclass(frozen=True)
class Adapters:
    """The adapters an instance delivers through, chosen once at start-up."""

    mailer: Mailer
    calendar: Calendar
    webhooks: WebhookSender
    payments: PaymentGateway
