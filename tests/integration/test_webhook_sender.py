"""HttpWebhookSender against a real HTTP receiver on loopback."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from boxoffice.integrations.webhooks import USER_AGENT, HttpWebhookSender
from boxoffice.services.ports import DeliveryError, WebhookMessage
from boxoffice.services.webhooks import new_secret
from tests.support.webhook_receiver import Receiver, running_receiver

BODY = json.dumps({"type": "booking.confirmed", "data": {"id": "b_1"}}).encode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def sender() -> Iterator[HttpWebhookSender]:
    sender = HttpWebhookSender(timeout_s=2.0)
    yield sender
    sender.close()


@pytest.fixture
def secret() -> str:
    return new_secret()


def message(url: str, secret: str, **overrides: Any) -> WebhookMessage:
    values: dict[str, Any] = {
        "url": url,
        "secret": secret,
        "msg_id": "msg_2fK9xWq",
        "timestamp": datetime.now(UTC),
        "body": BODY,
    }
    values.update(overrides)
    return WebhookMessage(**values)


def test_receiver_verifies_the_signature(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    sender.send(message(receiver.url, secret))

    [request] = receiver.requests
    assert request.body == BODY
    assert Webhook(secret).verify(request.body, request.headers) == json.loads(BODY)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT


def test_a_tampered_body_fails_verification(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    sender.send(message(receiver.url, secret))

    [request] = receiver.requests
    tampered = request.body.replace(b"b_1", b"b_2")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


def test_id_and_timestamp_headers_are_the_ones_given(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    at = datetime.now(UTC).replace(microsecond=750_000) - timedelta(seconds=30)
    sender.send(message(receiver.url, secret, msg_id="msg_outbox_42", timestamp=at))

    [request] = receiver.requests
    assert request.headers["webhook-id"] == "msg_outbox_42"
    assert request.headers["webhook-timestamp"] == str(int(at.timestamp()))  # floored
    Webhook(secret).verify(request.body, request.headers)


def test_a_non_utc_timestamp_is_signed_as_the_same_instant(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    at = datetime.now(timezone(timedelta(hours=2)))
    sender.send(message(receiver.url, secret, timestamp=at))

    [request] = receiver.requests
    assert request.headers["webhook-timestamp"] == str(int(at.timestamp()))
    Webhook(secret).verify(request.body, request.headers)


def test_extra_headers_are_sent_without_overriding_the_signature(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    extra = {"X-Event-Type": "booking.confirmed", "Webhook-Id": "forged"}
    sender.send(message(receiver.url, secret, headers=extra))

    [request] = receiver.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-event-type"] == "booking.confirmed"
    assert headers["webhook-id"] == "msg_2fK9xWq"
    Webhook(secret).verify(request.body, request.headers)


def test_a_500_is_a_delivery_error_with_the_status_and_a_short_body(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    receiver.status = 500
    receiver.answer_body = b"database on fire\n" + b"x" * 5000

    with pytest.raises(DeliveryError, match="500") as caught:
        sender.send(message(receiver.url, secret))

    text = str(caught.value)
    assert "database on fire" in text
    assert len(text) < 300


def test_a_410_is_a_delivery_error(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    receiver.status = 410

    with pytest.raises(DeliveryError, match="410"):
        sender.send(message(receiver.url, secret))


def test_a_redirect_is_not_followed(
    receiver: Receiver, sender: HttpWebhookSender, secret: str
) -> None:
    receiver.status = 302
    receiver.answer_headers = {"location": receiver.url + "/elsewhere"}

    with pytest.raises(DeliveryError, match="302"):
        sender.send(message(receiver.url, secret))

    assert [r.path for r in receiver.requests] == ["/hooks"]


def test_a_closed_port_is_a_delivery_error(sender: HttpWebhookSender, secret: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there now: the connection is refused.

    with pytest.raises(DeliveryError, match="ConnectError"):
        sender.send(message(f"http://127.0.0.1:{port}/hooks", secret))


def test_a_slow_receiver_is_a_delivery_error(receiver: Receiver, secret: str) -> None:
    receiver.delay_s = 5.0
    sender = HttpWebhookSender(timeout_s=0.2)
    try:
        with pytest.raises(DeliveryError, match="Timeout"):
            sender.send(message(receiver.url, secret))
    finally:
        sender.close()


def test_new_secret_is_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()

    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert first != second
