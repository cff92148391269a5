"""StripeGateway and parse_webhook: the real Stripe SDK over HTTP, against a local stub."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from boxoffice.domain.errors import InvalidInput, InvalidSignature
from boxoffice.integrations.payments.stripe import StripeGateway, parse_webhook
from boxoffice.services.ports import PaymentRefused, PaymentRequest, PaymentUnavailable
from tests.support.stripe_stub import StripeStub, running_stripe_stub, signature_header, signed

API_KEY = "sk_test_boxoffice"
SECRET = "whsec_test_boxoffice"


@pytest.fixture
def stub() -> Iterator[StripeStub]:
    with running_stripe_stub() as s:
        yield s


@pytest.fixture
def make_gateway(stub: StripeStub) -> Iterator[Callable[..., StripeGateway]]:
    """Gateways pointed at the stub, without retries unless asked; closed at teardown."""
    made: list[StripeGateway] = []

    def make(**overrides: Any) -> StripeGateway:
        values: dict[str, Any] = {
            "api_key": API_KEY,
            "api_base": stub.url,
            "timeout_s": 2.0,
            "max_network_retries": 0,
        }
        values.update(overrides)
        made.append(StripeGateway(**values))
        return made[-1]

    yield make
    for gateway in made:
        gateway.close()


@pytest.fixture
def gateway(make_gateway: Callable[..., StripeGateway]) -> StripeGateway:
    return make_gateway()


def payment_request(**overrides: Any) -> PaymentRequest:
    values: dict[str, Any] = {
        "order_id": "ord_7Hq2",
        "amount_minor": 2500,
        "currency": "EUR",
        "idempotency_key": "pay_01J9ZK4W",
        "description": "2 tickets: Spring Concert",
        "customer_email": "ada@example.org",
    }
    values.update(overrides)
    return PaymentRequest(**values)


@pytest.fixture
def paid(stub: StripeStub, gateway: StripeGateway) -> str:
    """The id of a PaymentIntent of 25.00 EUR that the customer has paid."""
    ref = gateway.create_payment(payment_request()).ref
    stub.succeed(ref)
    return ref


# --- create ---------------------------------------------------------------------------


def test_create_sends_the_payment_and_the_idempotency_key(
    stub: StripeStub, gateway: StripeGateway
) -> None:
    payment = gateway.create_payment(payment_request())

    [sent] = stub.requests
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.params == {
        "amount": "2500",
        "currency": "eur",
        "metadata": {"orderId": "ord_7Hq2"},
        "description": "2 tickets: Spring Concert",
        "receipt_email": "ada@example.org",
        "automatic_payment_methods": {"enabled": "true"},
    }
    assert sent.headers["Idempotency-Key"] == "pay_01J9ZK4W"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert payment.ref == stub.payment_intent_ids()[0]
    assert payment.status == "pending"
    assert (payment.amount_minor, payment.currency) == (2500, "EUR")
    assert payment.client_secret == stub.payment_intent(payment.ref)["client_secret"]
    assert payment.amount_refunded_minor == 0
    assert payment.failure_message is None


@pytest.mark.parametrize(
    ("api_key", "is_live"),
    [("sk_test_x", False), ("rk_test_x", False), ("sk_live_x", True), ("rk_live_x", True)],
)
def test_live_keys_make_a_live_gateway(api_key: str, is_live: bool) -> None:
    gateway = StripeGateway(api_key)

    assert (gateway.name, gateway.live) == ("stripe", is_live)


def test_create_leaves_out_what_is_not_given(stub: StripeStub, gateway: StripeGateway) -> None:
    gateway.create_payment(payment_request(description="", customer_email=None))

    assert "description" not in stub.requests[0].params
    assert "receipt_email" not in stub.requests[0].params


def test_the_same_idempotency_key_gives_one_payment_intent(
    stub: StripeStub, gateway: StripeGateway
) -> None:
    first = gateway.create_payment(payment_request())
    again = gateway.create_payment(payment_request())
    other = gateway.create_payment(payment_request(idempotency_key="pay_01J9ZK5X"))

    assert again == first
    assert other.ref != first.ref
    assert stub.payment_intent_ids() == [first.ref, other.ref]
    assert len(stub.requests) == 3  # the second ask reached Stripe and was replayed


def test_a_replayed_create_answers_what_was_answered_first(
    stub: StripeStub, gateway: StripeGateway
) -> None:
    first = gateway.create_payment(payment_request())
    stub.succeed(first.ref)

    again = gateway.create_payment(payment_request())

    assert (again.ref, again.status) == (first.ref, "pending")
    assert gateway.retrieve(first.ref).status == "succeeded"


def test_a_key_reused_with_other_values_is_refused(
    stub: StripeStub, gateway: StripeGateway
) -> None:
    gateway.create_payment(payment_request())

    with pytest.raises(PaymentRefused, match="same parameters"):
        gateway.create_payment(payment_request(amount_minor=9900))
    assert len(stub.payment_intent_ids()) == 1


@pytest.mark.parametrize(
    ("destination", "fee", "expected"),
    [
        (
            "acct_1Nv0FGQ9",
            250,
            {"transfer_data": {"destination": "acct_1Nv0FGQ9"}, "application_fee_amount": "250"},
        ),
        ("acct_1Nv0FGQ9", None, {"transfer_data": {"destination": "acct_1Nv0FGQ9"}}),
        (None, 250, {}),  # a direct charge: the platform keeps it all, no fee to take
        (None, None, {}),
    ],
)
def test_destination_and_fee_are_sent_only_when_given(
    stub: StripeStub,
    gateway: StripeGateway,
    destination: str | None,
    fee: int | None,
    expected: dict[str, Any],
) -> None:
    payment = gateway.create_payment(
        payment_request(destination=destination, application_fee_minor=fee)
    )

    params = stub.requests[0].params
    sent = {k: params[k] for k in ("transfer_data", "application_fee_amount") if k in params}
    assert sent == expected
    intent = stub.payment_intent(payment.ref)
    assert intent["transfer_data"] == expected.get("transfer_data")
    assert intent["application_fee_amount"] == (fee if destination else None)


# --- retrieve -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("happens", "status", "failure_message"),
    [
        (None, "pending", None),
        ("succeed", "succeeded", None),
        ("fail", "failed", "Your card was declined."),
        ("cancel", "cancelled", None),
    ],
)
def test_retrieve_maps_the_intent_status(
    stub: StripeStub,
    gateway: StripeGateway,
    happens: str | None,
    status: str,
    failure_message: str | None,
) -> None:
    ref = gateway.create_payment(payment_request()).ref
    if happens is not None:
        getattr(stub, happens)(ref)  # what the customer did on Stripe's page

    payment = gateway.retrieve(ref)

    assert (payment.ref, payment.status, payment.failure_message) == (
        ref,
        status,
        failure_message,
    )
    assert (payment.amount_minor, payment.currency) == (2500, "EUR")
    assert stub.requests[-1].method == "GET"
    assert stub.requests[-1].params == {"expand": ["latest_charge"]}


def test_retrieve_an_unknown_intent_is_refused(gateway: StripeGateway) -> None:
    with pytest.raises(PaymentRefused, match="No such payment_intent"):
        gateway.retrieve("pi_doesnotexist")


# --- refund ---------------------------------------------------------------------------


def test_refund_partly_then_the_rest(stub: StripeStub, gateway: StripeGateway, paid: str) -> None:
    first = gateway.refund(paid, 1000, idempotency_key="refund_1")
    assert gateway.retrieve(paid).amount_refunded_minor == 1000

    rest = gateway.refund(paid, 1500, idempotency_key="refund_2")

    assert first != rest
    assert [(r["id"], r["amount"]) for r in stub.refunds(paid)] == [(first, 1000), (rest, 1500)]
    assert gateway.retrieve(paid).amount_refunded_minor == 2500
    refund_request = stub.requests[1]
    assert refund_request.path == "/v1/refunds"
    assert refund_request.params == {"payment_intent": paid, "amount": "1000"}
    assert refund_request.headers["Idempotency-Key"] == "refund_1"


def test_refund_is_idempotent_by_key(stub: StripeStub, gateway: StripeGateway, paid: str) -> None:
    first = gateway.refund(paid, 2500, idempotency_key="refund_1")
    again = gateway.refund(paid, 2500, idempotency_key="refund_1")

    assert again == first
    assert len(stub.refunds(paid)) == 1


def test_refunding_more_than_is_left_is_refused(
    stub: StripeStub, gateway: StripeGateway, paid: str
) -> None:
    gateway.refund(paid, 2000, idempotency_key="refund_1")

    with pytest.raises(PaymentRefused, match="greater than unrefunded amount"):
        gateway.refund(paid, 1000, idempotency_key="refund_2")
    assert [r["amount"] for r in stub.refunds(paid)] == [2000]


def test_refunding_an_unpaid_intent_is_refused(stub: StripeStub, gateway: StripeGateway) -> None:
    ref = gateway.create_payment(payment_request()).ref

    with pytest.raises(PaymentRefused, match="successful charge"):
        gateway.refund(ref, 2500, idempotency_key="refund_1")
    assert stub.refunds(ref) == []


# --- failures -------------------------------------------------------------------------

CALLS: dict[str, Callable[[StripeGateway, str], object]] = {
    "create": lambda gateway, ref: gateway.create_payment(payment_request()),
    "retrieve": lambda gateway, ref: gateway.retrieve(ref),
    "refund": lambda gateway, ref: gateway.refund(ref, 100, idempotency_key="refund_1"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("status", [500, 503, 429, 409])
def test_a_server_error_rate_limit_or_lock_is_unavailable(
    stub: StripeStub,
    gateway: StripeGateway,
    paid: str,
    call: Callable[[StripeGateway, str], object],
    status: int,
) -> None:
    stub.fail_next(1, status=status)

    with pytest.raises(PaymentUnavailable, match=f"\\({status}\\)"):
        call(gateway, paid)
    assert stub.refunds(paid) == []
    call(gateway, paid)  # the next attempt goes through


def test_the_sdk_retries_a_server_error_with_the_same_key(
    stub: StripeStub, make_gateway: Callable[..., StripeGateway]
) -> None:
    gateway = make_gateway(max_network_retries=1)
    stub.fail_next(1)

    payment = gateway.create_payment(payment_request())

    assert [r.headers["Idempotency-Key"] for r in stub.requests] == ["pay_01J9ZK4W"] * 2
    assert stub.payment_intent_ids() == [payment.ref]


def test_a_wrong_api_key_is_refused(
    stub: StripeStub, make_gateway: Callable[..., StripeGateway]
) -> None:
    gateway = make_gateway(api_key="pk_test_publishable")

    with pytest.raises(PaymentRefused, match="Invalid API Key"):
        gateway.create_payment(payment_request())
    assert stub.payment_intent_ids() == []


def test_a_closed_port_is_unavailable_quickly(make_gateway: Callable[..., StripeGateway]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = make_gateway(api_base=f"http://127.0.0.1:{port}", timeout_s=1.0)

    started = time.monotonic()
    with pytest.raises(PaymentUnavailable, match="could not create a payment"):
        gateway.create_payment(payment_request())
    assert time.monotonic() - started < 1.0


# --- webhooks -------------------------------------------------------------------------


def test_webhook_payment_succeeded(stub: StripeStub, paid: str) -> None:
    body, header = signed(stub.event("payment_intent.succeeded", paid, event_id="evt_1"), SECRET)

    event = parse_webhook(body, header, SECRET)

    assert event is not None
    assert (event.id, event.kind, event.payment_ref) == ("evt_1", "succeeded", paid)
    assert event.amount_minor == 2500
    assert event.failure_message is None


def test_webhook_payment_failed(stub: StripeStub, gateway: StripeGateway) -> None:
    ref = gateway.create_payment(payment_request()).ref
    stub.fail(ref, "Your card was declined.")
    body, header = signed(stub.event("payment_intent.payment_failed", ref), SECRET)

    event = parse_webhook(body, header, SECRET)

    assert event is not None
    assert (event.kind, event.payment_ref) == ("failed", ref)
    assert event.failure_message == "Your card was declined."


def test_webhook_charge_refunded(stub: StripeStub, gateway: StripeGateway, paid: str) -> None:
    gateway.refund(paid, 1000, idempotency_key="refund_1")
    sent = stub.event("charge.refunded", paid)
    body, header = signed(sent, SECRET)

    event = parse_webhook(body, header, SECRET)

    assert event is not None
    assert (event.id, event.kind, event.payment_ref) == (sent["id"], "refunded", paid)
    assert (event.amount_minor, event.amount_refunded_minor) == (2500, 1000)


def test_webhook_of_another_type_is_ignored(stub: StripeStub, paid: str) -> None:
    body, header = signed(stub.event("payment_intent.created", paid), SECRET)

    assert parse_webhook(body, header, SECRET) is None


def test_webhook_refund_of_a_charge_without_intent_is_ignored(stub: StripeStub, paid: str) -> None:
    event = stub.event("charge.refunded", paid)
    event["data"]["object"]["payment_intent"] = None
    body, header = signed(event, SECRET)

    assert parse_webhook(body, header, SECRET) is None


@pytest.mark.parametrize("header", [None, ""])
def test_webhook_without_signature_is_refused(
    stub: StripeStub, paid: str, header: str | None
) -> None:
    body, _ = signed(stub.event("payment_intent.succeeded", paid), SECRET)

    with pytest.raises(InvalidSignature, match="missing"):
        parse_webhook(body, header, SECRET)


def test_webhook_with_a_tampered_body_is_refused(stub: StripeStub, paid: str) -> None:
    body, header = signed(stub.event("payment_intent.succeeded", paid), SECRET)
    tampered = body.replace(b'"amount_received": 2500', b'"amount_received": 1')
    assert tampered != body

    with pytest.raises(InvalidSignature, match="does not verify"):
        parse_webhook(tampered, header, SECRET)


def test_webhook_signed_with_another_secret_is_refused(stub: StripeStub, paid: str) -> None:
    body, header = signed(stub.event("payment_intent.succeeded", paid), "whsec_someone_else")

    with pytest.raises(InvalidSignature, match="does not verify"):
        parse_webhook(body, header, SECRET)


def test_webhook_with_a_garbled_header_is_refused(stub: StripeStub, paid: str) -> None:
    body, _ = signed(stub.event("payment_intent.succeeded", paid), SECRET)

    with pytest.raises(InvalidSignature, match="does not verify"):
        parse_webhook(body, "v1=deadbeef", SECRET)


@pytest.mark.parametrize(("age_s", "tolerance_s"), [(301, 300), (120, 60)])
def test_a_stale_webhook_is_refused(
    stub: StripeStub, paid: str, age_s: int, tolerance_s: int
) -> None:
    event = stub.event("payment_intent.succeeded", paid)
    body, header = signed(event, SECRET, timestamp=int(time.time()) - age_s)

    with pytest.raises(InvalidSignature, match="tolerance"):
        parse_webhook(body, header, SECRET, tolerance_s=tolerance_s)
    # The same age inside a wider window is fine: only the age was wrong.
    assert parse_webhook(body, header, SECRET, tolerance_s=age_s + 60) is not None


def test_a_zero_tolerance_is_not_accepted(stub: StripeStub, paid: str) -> None:
    body, header = signed(stub.event("payment_intent.succeeded", paid), SECRET)

    with pytest.raises(ValueError, match="positive"):
        parse_webhook(body, header, SECRET, tolerance_s=0)


def test_webhook_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="UTF-8"):
        parse_webhook(b"\xff\xfe{}", "t=1,v1=00", SECRET)


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"id": "evt_1", "object": "event"}',
        b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": "pi_1"}}',
        b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": 7}}}',
        b'{"id": "evt_1", "type": "charge.refunded", '
        b'"data": {"object": {"payment_intent": "pi_1", "amount": "2500"}}}',
    ],
    ids=["not-json", "a-list", "no-data", "object-is-text", "id-is-number", "amount-is-text"],
)
def test_a_correctly_signed_body_that_is_not_an_event_is_invalid_input(body: bytes) -> None:
    header = signature_header(body, SECRET)

    with pytest.raises(InvalidInput, match="not a Stripe event"):
        parse_webhook(body, header, SECRET)
