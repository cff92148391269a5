"""Payments end to end through Stripe: the app built with the Stripe gateway, the real
SDK over HTTP against a local Stripe stub, real signed webhooks, a real worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from boxoffice.app import create_app
from boxoffice.db.models import (
    Booking,
    BookingStatusChange,
    Order,
    OutboxMessage,
    Payment,
    PaymentEvent,
    Refund,
)
from boxoffice.db.session import Database
from boxoffice.integrations.payments.stripe import StripeGateway
from boxoffice.services import payments
from boxoffice.services.ports import Adapters
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock, sent_mail
from tests.support.stripe_stub import (
    StripeStub,
    StubRequest,
    running_stripe_stub,
    signature_header,
    signed,
)

Shop = Callable[..., dict[str, Any]]

API_KEY = "sk_test_boxoffice"
WEBHOOK_SECRET = "whsec_test_boxoffice"
WEBHOOK = "/api/v1/payments/webhook/stripe"


@pytest.fixture
def stripe_stub() -> Iterator[StripeStub]:
    with running_stripe_stub() as stub:
        yield stub


@pytest.fixture
def settings(settings: Settings, stripe_stub: StripeStub) -> Settings:
    """The conftest settings with Stripe configured: the app starts with StripeGateway."""
    return settings.model_copy(
        update={
            "stripe_secret_key": API_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": stripe_stub.url,
        }
    )


@pytest.fixture
def gateway(stripe_stub: StripeStub) -> Iterator[StripeGateway]:
    """The worker's gateway: no SDK retries, so each attempt is one request to the stub."""
    made = StripeGateway(API_KEY, api_base=stripe_stub.url, timeout_s=5, max_network_retries=0)
    yield made
    made.close()


@pytest.fixture
def worker(
    settings: Settings, database: Database, adapters: Adapters, clock: Clock, gateway: StripeGateway
) -> Worker:
    return Worker(database, settings, replace(adapters, payments=gateway), clock=clock)


# --- helpers ----------------------------------------------------------------------------


def book(
    api: Api, customer: dict[str, str], slot_id: str, *, key: str | None = None
) -> dict[str, Any]:
    """Book a seat (with an Idempotency-Key when given); the 201 body."""
    headers = customer | ({"Idempotency-Key": key} if key else {})
    r = api.client.post("/api/v1/bookings", json={"timeslotId": slot_id}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def intent_of(stub: StripeStub, booking: dict[str, Any]) -> str:
    """The PaymentIntent behind a booking's clientSecret (``pi_..._secret_...``)."""
    secret = booking["payment"]["clientSecret"]
    assert secret, booking["payment"]
    pi_id = str(secret).split("_secret_")[0]
    assert stub.payment_intent(pi_id)["client_secret"] == secret
    return pi_id


def webhook(api: Api, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    """POST a webhook body as Stripe would; the status and the JSON answer."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    r = api.client.post(WEBHOOK, content=body, headers=headers)
    return r.status_code, r.json()


def deliver(api: Api, event: dict[str, Any]) -> str:
    """Send a correctly signed webhook (signed now, by the wall clock); its outcome."""
    status, answer = webhook(api, *signed(event, WEBHOOK_SECRET))
    assert status == 200, answer
    assert answer["received"] is True
    return str(answer["outcome"])


def pay(api: Api, stub: StripeStub, booking: dict[str, Any]) -> str:
    """The customer pays at Stripe and Stripe tells us; the webhook's outcome."""
    pi_id = intent_of(stub, booking)
    stub.succeed(pi_id)
    return deliver(api, stub.event("payment_intent.succeeded", pi_id))


def booked_count(api: Api, s: dict[str, Any], slot: int = 0) -> int:
    return int(api.timeslots(s["room"]["id"], date="2030-03-05")[slot]["bookedCount"])


def subjects(settings: Settings) -> list[str]:
    return [str(m["Subject"]).split(":")[0] for m in sent_mail(settings)]


def header(request: StubRequest, name: str) -> str | None:
    """A request header as the stub saw it, whatever its case."""
    found = {k.lower(): v for k, v in request.headers.items()}
    return found.get(name.lower())


def posts(stub: StripeStub, path: str) -> list[StubRequest]:
    return [r for r in stub.requests if (r.method, r.path) == ("POST", path)]


def state(database: Database) -> tuple[Any, ...]:
    """Everything a payment event can change, to show that one changed nothing."""
    with database.read() as db:
        return (
            sorted(db.execute(select(Booking.id, Booking.status, Booking.payment_status)).all()),
            sorted(db.execute(select(Order.id, Order.status, Order.refunded_minor)).all()),
            sorted(db.execute(select(Payment.id, Payment.status, Payment.refunded_minor)).all()),
            db.execute(select(func.count()).select_from(PaymentEvent)).scalar_one(),
            db.execute(select(func.count()).select_from(OutboxMessage)).scalar_one(),
            db.execute(select(func.count()).select_from(Refund)).scalar_one(),
        )


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, one thread each, released together by a barrier."""
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    return results


# --- starting a payment -------------------------------------------------------------------


def test_a_priced_booking_creates_a_payment_intent_once(
    api: Api, shop: Shop, stripe_stub: StripeStub
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"], key="book-1")
    payment = booking["payment"]
    assert (booking["status"], booking["paymentStatus"]) == ("pending", "pending")
    assert (payment["paymentRequired"], payment["amount"], payment["currency"]) == (
        True,
        30.0,
        "EUR",
    )
    assert (payment["checkoutUrl"], payment["error"]) == (None, None)

    [created] = posts(stripe_stub, "/v1/payment_intents")
    pi_id = intent_of(stripe_stub, booking)
    assert stripe_stub.payment_intent_ids() == [pi_id]
    assert (created.params["amount"], created.params["currency"]) == ("3000", "eur")
    assert created.params["metadata"] == {"orderId": booking["orderId"]}
    assert "transfer_data" not in created.params  # no connected account: a direct charge
    placed = api.order(customer, booking["orderId"])
    [row] = placed["payments"]
    assert (row["gateway"], row["gatewayRef"], row["status"]) == ("stripe", pi_id, "pending")
    assert header(created, "Idempotency-Key") == row["id"]

    again = api.client.post(
        "/api/v1/bookings",
        json={"timeslotId": s["slots"][0]["id"]},
        headers=customer | {"Idempotency-Key": "book-1"},
    )
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == booking["id"]
    assert again.json()["payment"]["clientSecret"] == payment["clientSecret"]
    assert stripe_stub.payment_intent_ids() == [pi_id]
    assert len(api.order(customer, booking["orderId"])["payments"]) == 1


def test_a_booking_made_while_stripe_is_down_gets_its_payment_on_retry(
    api: Api, shop: Shop, stripe_stub: StripeStub
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    stripe_stub.fail_next(3)  # the first try and both of the SDK's retries
    first = book(api, customer, s["slots"][0]["id"], key="book-2")
    assert first["status"] == "pending"
    assert first["payment"]["paymentRequired"] is True
    assert first["payment"]["clientSecret"] is None
    assert "500" in first["payment"]["error"]
    assert stripe_stub.payment_intent_ids() == []

    again = book(api, customer, s["slots"][0]["id"], key="book-2")
    assert (again["id"], again["payment"]["error"]) == (first["id"], None)
    pi_id = intent_of(stripe_stub, again)
    assert stripe_stub.payment_intent_ids() == [pi_id]
    # Every attempt asked Stripe with the same key: the payment row's id.
    attempts = posts(stripe_stub, "/v1/payment_intents")
    assert len(attempts) == 4
    assert {header(r, "Idempotency-Key") for r in attempts} == {
        api.order(customer, first["orderId"])["payments"][0]["id"]
    }
    assert booked_count(api, s) == 1


@pytest.mark.parametrize(
    ("tier", "price", "amount_minor", "fee_minor"),
    [
        ("builder", "10.10", 1010, 51),  # 5 % is 50.5 cents
        ("pro", "16.50", 1650, 50),  # 3 % is 49.5 cents
        ("center", "10.25", 1025, 21),  # 2 % is 20.5 cents
    ],
)
def test_a_connected_account_gets_a_destination_charge_less_the_commission(
    api: Api,
    shop: Shop,
    stripe_stub: StripeStub,
    tier: str,
    price: str,
    amount_minor: int,
    fee_minor: int,
) -> None:
    s = shop(hourly_rate=price)
    r = api.client.put(
        "/api/v1/admin/organization/payments",
        json={"paymentAccountId": "acct_1Test", "planTier": tier},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    assert (r.json()["gateway"], r.json()["planTier"]) == ("stripe", tier)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])

    [created] = posts(stripe_stub, "/v1/payment_intents")
    assert created.params["amount"] == str(amount_minor)
    assert created.params["transfer_data"] == {"destination": "acct_1Test"}
    assert created.params["application_fee_amount"] == str(fee_minor)
    intent = stripe_stub.payment_intent(intent_of(stripe_stub, booking))
    assert intent["application_fee_amount"] == fee_minor
    placed = api.order(customer, booking["orderId"])
    assert placed["commission"] == fee_minor / 100
    assert placed["payments"][0]["applicationFee"] == fee_minor / 100


def test_without_a_connected_account_a_test_key_makes_a_direct_charge(
    api: Api, shop: Shop, stripe_stub: StripeStub
) -> None:
    s = shop(hourly_rate=10.10)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    [created] = posts(stripe_stub, "/v1/payment_intents")
    assert created.params["amount"] == "1010"
    assert "transfer_data" not in created.params
    assert "application_fee_amount" not in created.params
    intent = stripe_stub.payment_intent(intent_of(stripe_stub, booking))
    assert (intent["transfer_data"], intent["application_fee_amount"]) == (None, None)
    placed = api.order(customer, booking["orderId"])
    assert placed["commission"] == 0.51  # the order still knows the tier's share
    assert placed["payments"][0]["applicationFee"] is None


# --- webhooks -----------------------------------------------------------------------------


def test_a_succeeded_webhook_confirms_and_the_worker_mails_once(
    api: Api, shop: Shop, stripe_stub: StripeStub, worker: Worker, settings: Settings
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    assert pay(api, stripe_stub, booking) == "confirmed"

    seen = api.booking(customer, booking["id"])
    assert (seen["status"], seen["paymentStatus"], seen["holdExpiresAt"]) == (
        "confirmed",
        "paid",
        None,
    )
    placed = api.order(customer, booking["orderId"])
    assert placed["status"] == "paid" and placed["paidAt"] is not None
    assert placed["payments"][0]["status"] == "succeeded"
    worker.drain()
    worker.drain()
    assert subjects(settings) == ["Booking confirmed"]


def test_a_payment_failed_webhook_cancels_and_frees_the_seat(
    api: Api, shop: Shop, stripe_stub: StripeStub
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    assert booked_count(api, s) == 1
    pi_id = intent_of(stripe_stub, booking)
    stripe_stub.fail(pi_id, "Your card has insufficient funds.")
    assert deliver(api, stripe_stub.event("payment_intent.payment_failed", pi_id)) == "failed"

    seen = api.booking(customer, booking["id"])
    assert seen["status"] == "cancelled"
    assert seen["statusHistory"][-1]["reason"] == "payment_failed"
    placed = api.order(customer, booking["orderId"])
    assert (placed["status"], placed["closedReason"]) == ("failed", "payment_failed")
    assert placed["payments"][0]["failureMessage"] == "Your card has insufficient funds."
    assert booked_count(api, s) == 0
    book(api, api.user(), s["slots"][0]["id"])  # the seat is on sale again


def test_charge_refunded_webhooks_record_partial_then_full_refunds(
    api: Api, shop: Shop, stripe_stub: StripeStub, gateway: StripeGateway
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    pay(api, stripe_stub, booking)
    pi_id = intent_of(stripe_stub, booking)

    # Refunds made at Stripe (the dashboard), which only the webhook tells us about.
    gateway.refund(pi_id, 1000, idempotency_key="dashboard-1")
    assert deliver(api, stripe_stub.event("charge.refunded", pi_id)) == "refund_recorded"
    placed = api.order(customer, booking["orderId"])
    assert (placed["status"], placed["refundedAmount"]) == ("partially_refunded", 10.0)
    assert placed["payments"][0]["refundedAmount"] == 10.0
    assert api.booking(customer, booking["id"])["paymentStatus"] == "paid"

    gateway.refund(pi_id, 2000, idempotency_key="dashboard-2")
    assert deliver(api, stripe_stub.event("charge.refunded", pi_id)) == "refund_recorded"
    placed = api.order(customer, booking["orderId"])
    assert (placed["status"], placed["refundedAmount"]) == ("refunded", 30.0)
    assert placed["bookings"][0]["paymentStatus"] == "refunded"
    assert placed["bookings"][0]["refundedAmount"] == 30.0


def test_bad_webhooks_are_refused_and_change_nothing(
    api: Api, shop: Shop, stripe_stub: StripeStub, database: Database
) -> None:
    s = shop(hourly_rate=30)
    booking = book(api, api.user(), s["slots"][0]["id"])
    pi_id = intent_of(stripe_stub, booking)
    stripe_stub.succeed(pi_id)
    event = stripe_stub.event("payment_intent.succeeded", pi_id)
    body, good = signed(event, WEBHOOK_SECRET)
    before = state(database)

    tampered = body.replace(pi_id.encode(), b"pi_somebodyElse000000000000")
    assert tampered != body
    stale = signed(event, WEBHOOK_SECRET, timestamp=int(time.time()) - 600)[1]
    refused = {
        "missing header": (body, None),
        "empty header": (body, ""),
        "tampered body": (tampered, good),
        "wrong secret": (body, signed(event, "whsec_someone_else")[1]),
        "stale timestamp": (body, stale),
        "not utf-8": (b"\xff\xfe" + body, good),
    }
    for case, (payload, signature) in refused.items():
        status, answer = webhook(api, payload, signature)
        assert status == 400, (case, answer)
        assert answer["error"]["code"] == "invalid_signature", case
        assert state(database) == before, case

    garbage = [
        b"this is not json",
        b'{"id": "evt_1", "type": "payment_intent.succeeded"}',
        b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": 7}}}',
        b'["payment_intent.succeeded"]',
    ]
    for payload in garbage:
        status, answer = webhook(api, payload, signature_header(payload, WEBHOOK_SECRET))
        assert status == 422, (payload, answer)
        assert answer["error"]["code"] == "invalid_input"
        assert state(database) == before, payload

    assert deliver(api, stripe_stub.event("payment_intent.created", pi_id)) == "ignored"
    unknown = stripe_stub.event("payment_intent.succeeded", pi_id) | {"id": "evt_unknownPi"}
    unknown["data"]["object"]["id"] = "pi_notOneOfOurs00000000000"
    assert deliver(api, unknown) == "unknown_payment"
    assert state(database) == before
    # The genuine delivery still works after all that.
    assert webhook(api, body, good) == (200, {"received": True, "outcome": "confirmed"})


def test_webhooks_are_refused_when_stripe_is_not_configured(
    settings: Settings, database: Database
) -> None:
    """Without a webhook secret nothing can be verified, so nothing is accepted."""
    unsigned = settings.model_copy(update={"stripe_webhook_secret": None})
    with TestClient(create_app(unsigned, database), raise_server_exceptions=False) as c:
        body, signature = signed({"id": "evt_1", "type": "x"}, WEBHOOK_SECRET)
        r = c.post(WEBHOOK, content=body, headers={"Stripe-Signature": signature})
    assert r.status_code == 404, r.text


def test_a_duplicate_event_and_a_stale_failure_change_nothing(
    api: Api, shop: Shop, stripe_stub: StripeStub, database: Database
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    pi_id = intent_of(stripe_stub, booking)
    # The first card is declined, the second one pays; Stripe delivers out of order.
    stripe_stub.fail(pi_id)
    declined = stripe_stub.event("payment_intent.payment_failed", pi_id)
    stripe_stub.succeed(pi_id)
    succeeded = stripe_stub.event("payment_intent.succeeded", pi_id)

    assert deliver(api, succeeded) == "confirmed"
    after = state(database)
    assert deliver(api, succeeded) == "duplicate"
    assert state(database) == after
    assert deliver(api, declined) == "stale"
    assert deliver(api, declined) == "duplicate"

    seen = api.booking(customer, booking["id"])
    assert (seen["status"], seen["paymentStatus"]) == ("confirmed", "paid")
    placed = api.order(customer, booking["orderId"])
    assert (placed["status"], placed["payments"][0]["status"]) == ("paid", "succeeded")
    with database.read() as db:
        outcomes = dict(db.execute(select(PaymentEvent.event_id, PaymentEvent.outcome)).all())
    assert outcomes == {succeeded["id"]: "confirmed", declined["id"]: "stale"}


# --- the race -----------------------------------------------------------------------------


def test_webhook_duplicate_and_reconciliation_racing_confirm_once(
    api: Api,
    shop: Shop,
    stripe_stub: StripeStub,
    database: Database,
    gateway: StripeGateway,
    worker: Worker,
    settings: Settings,
    clock: Clock,
) -> None:
    """Whoever wins (the webhook or the reconciliation), the others find the order
    confirmed already: one transition, one event row, one email per order."""
    s = shop(hourly_rate=30, max_bookings=5, capacity=5)
    customers = [api.user(f"racer{i}@example.com") for i in range(5)]
    for customer in customers:
        booking = book(api, customer, s["slots"][0]["id"])
        pi_id = intent_of(stripe_stub, booking)
        stripe_stub.succeed(pi_id)
        body, signature = signed(
            stripe_stub.event("payment_intent.succeeded", pi_id), WEBHOOK_SECRET
        )

        def reconcile() -> int:
            try:
                return payments.reconcile(
                    database,
                    gateway,
                    now=clock.now,
                    older_than=timedelta(0),
                    every=timedelta(0),
                )
            finally:
                gateway.close()  # the SDK's session of this thread

        send = partial(webhook, api, body, signature)
        first, duplicate, reconciled = race(send, send, reconcile)
        assert (first[0], duplicate[0]) == (200, 200), (first, duplicate)
        outcomes = sorted([first[1]["outcome"], duplicate[1]["outcome"]])
        assert outcomes in (["confirmed", "duplicate"], ["already_applied", "duplicate"])
        with database.read() as db:
            applied = db.execute(
                select(PaymentEvent.event_id, PaymentEvent.outcome).where(
                    PaymentEvent.payment_ref == pi_id
                )
            ).all()
            transitions = db.execute(
                select(func.count())
                .select_from(BookingStatusChange)
                .where(
                    BookingStatusChange.booking_id == uuid.UUID(booking["id"]),
                    BookingStatusChange.from_status == "pending",
                    BookingStatusChange.to_status == "confirmed",
                )
            ).scalar_one()
            events = db.execute(
                select(OutboxMessage.payload).where(OutboxMessage.topic == "event")
            ).scalars()
            confirmed = [
                e
                for e in events
                if e["bookingId"] == booking["id"] and "booking.confirmed" in e["types"]
            ]
        assert [o for _, o in applied].count("confirmed") == 1, applied
        assert len(applied) == 1 + reconciled, applied
        assert transitions == 1
        assert len(confirmed) == 1
        assert api.booking(customer, booking["id"])["status"] == "confirmed"

    worker.drain()
    messages = sent_mail(settings)
    assert [str(m["Subject"]).split(":")[0] for m in messages] == ["Booking confirmed"] * 5
    assert sorted(str(m["To"]) for m in messages) == [f"racer{i}@example.com" for i in range(5)]
    assert booked_count(api, s) == 5


# --- reconciliation -----------------------------------------------------------------------


def test_reconciliation_applies_what_stripe_knows_when_webhooks_are_lost(
    api: Api,
    shop: Shop,
    stripe_stub: StripeStub,
    worker: Worker,
    settings: Settings,
    clock: Clock,
) -> None:
    s = shop(hourly_rate=30, max_bookings=4)
    customers = [api.user() for _ in range(4)]
    paid, declined, abandoned, waiting = [book(api, c, s["slots"][0]["id"]) for c in customers]
    stripe_stub.succeed(intent_of(stripe_stub, paid))
    stripe_stub.fail(intent_of(stripe_stub, declined))
    stripe_stub.cancel(intent_of(stripe_stub, abandoned))

    def asked() -> int:
        return sum(1 for r in stripe_stub.requests if r.method == "GET")

    clock.advance(minutes=settings.payment_reconcile_after_min - 1)
    assert worker.run_periodic(force=True)["reconcile_payments"] == 0
    assert asked() == 0  # too early to suspect a lost webhook

    clock.advance(minutes=2)
    results = worker.run_periodic(force=True)
    assert (results["expire_holds"], results["reconcile_payments"]) == (0, 3)
    assert asked() == 4

    got = {
        name: api.booking(c, b["id"])
        for name, c, b in zip(
            ("paid", "declined", "abandoned", "waiting"),
            customers,
            (paid, declined, abandoned, waiting),
            strict=True,
        )
    }
    assert (got["paid"]["status"], got["paid"]["paymentStatus"]) == ("confirmed", "paid")
    assert got["declined"]["status"] == "cancelled"
    assert got["abandoned"]["status"] == "cancelled"
    assert got["waiting"]["status"] == "pending"
    assert api.order(customers[0], paid["orderId"])["status"] == "paid"
    failed = api.order(customers[1], declined["orderId"])
    assert (failed["status"], failed["payments"][0]["failureMessage"]) == (
        "failed",
        "Your card was declined.",
    )
    assert api.order(customers[2], abandoned["orderId"])["status"] == "failed"
    assert api.order(customers[3], waiting["orderId"])["status"] == "open"
    assert booked_count(api, s) == 2

    # Nothing is asked about again until the interval has passed; then the one still
    # pending and the two declined in the last hour (another card may yet pay them).
    worker.run_periodic(force=True)
    assert asked() == 4
    clock.advance(seconds=settings.payment_reconcile_interval_s)
    worker.run_periodic(force=True)
    assert asked() == 7
    worker.drain()
    assert subjects(settings) == ["Booking confirmed"]


def test_a_declined_payment_paid_with_another_card_is_found_without_its_webhook(
    api: Api, shop: Shop, stripe_stub: StripeStub, worker: Worker, settings: Settings, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    pi_id = intent_of(stripe_stub, booking)
    stripe_stub.fail(pi_id)
    assert deliver(api, stripe_stub.event("payment_intent.payment_failed", pi_id)) == "failed"
    assert api.booking(customer, booking["id"])["status"] == "cancelled"
    stripe_stub.succeed(pi_id)  # a second card, and its webhook is lost
    clock.advance(minutes=settings.payment_reconcile_after_min + 1)
    assert worker.run_periodic(force=True)["reconcile_payments"] == 1
    seen = api.booking(customer, booking["id"])
    assert (seen["status"], seen["paymentStatus"]) == ("confirmed", "paid")
    assert booked_count(api, s) == 1


def test_a_hold_whose_payment_went_through_is_confirmed_not_given_away(
    api: Api, shop: Shop, stripe_stub: StripeStub, worker: Worker, clock: Clock
) -> None:
    """Paid within the hold, webhook lost: the hold expiry asks Stripe first."""
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    stripe_stub.succeed(intent_of(stripe_stub, booking))
    clock.advance(minutes=16)
    assert worker.run_periodic(force=True)["expire_holds"] == 0
    history = [c["toStatus"] for c in api.booking(customer, booking["id"])["statusHistory"]]
    assert history == ["pending", "confirmed"]  # never cancelled in between


# --- refunds ------------------------------------------------------------------------------


def test_cancelling_a_paid_booking_refunds_at_stripe_once_despite_failures(
    api: Api,
    shop: Shop,
    stripe_stub: StripeStub,
    settings: Settings,
    database: Database,
    adapters: Adapters,
    gateway: StripeGateway,
    clock: Clock,
) -> None:
    quick = settings.model_copy(update={"worker_max_attempts": 2, "worker_backoff_base_s": 1})
    worker = Worker(database, quick, replace(adapters, payments=gateway), clock=clock)
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    pay(api, stripe_stub, booking)
    pi_id = intent_of(stripe_stub, booking)
    worker.drain()

    # 23 h before the start: the default policy refunds half.
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert r.json()["refundAmount"] == 15.0
    [refund] = api.order(customer, booking["orderId"])["refunds"]
    assert (refund["amount"], refund["status"]) == (15.0, "pending")

    stripe_stub.fail_next(4)
    for _ in range(4):  # past max attempts: a refund is retried, never dead
        worker.drain()
        clock.advance(hours=2)
    with database.read() as db:
        row = db.execute(select(OutboxMessage).where(OutboxMessage.topic == "refund")).scalar_one()
        assert (row.dead_at, row.delivered_at) == (None, None)
        assert row.attempts == 4 and "(500)" in (row.last_error or "")
    assert stripe_stub.refunds(pi_id) == []

    worker.drain()
    [made] = stripe_stub.refunds(pi_id)
    assert made["amount"] == 1500
    sent = posts(stripe_stub, "/v1/refunds")
    assert len(sent) == 5
    assert {header(x, "Idempotency-Key") for x in sent} == {refund["id"]}
    assert {(x.params["payment_intent"], x.params["amount"]) for x in sent} == {(pi_id, "1500")}
    done = api.order(customer, booking["orderId"])
    assert [(x["status"], x["amount"]) for x in done["refunds"]] == [("succeeded", 15.0)]
    assert (done["status"], done["refundedAmount"]) == ("partially_refunded", 15.0)
    with database.read() as db:
        assert db.execute(select(Refund.gateway_ref)).scalar_one() == made["id"]

    # Stripe's echo of our own refund counts once.
    assert deliver(api, stripe_stub.event("charge.refunded", pi_id)) == "refund_recorded"
    echoed = api.order(customer, booking["orderId"])
    assert (echoed["status"], echoed["refundedAmount"]) == ("partially_refunded", 15.0)
    worker.drain()
    assert len(stripe_stub.refunds(pi_id)) == 1


def test_a_success_after_the_hold_expired_and_the_seat_was_resold_is_refunded(
    api: Api,
    shop: Shop,
    stripe_stub: StripeStub,
    worker: Worker,
    settings: Settings,
    clock: Clock,
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    pi_id = intent_of(stripe_stub, booking)
    clock.advance(minutes=16)
    assert worker.run_periodic(force=True)["expire_holds"] == 1
    assert api.booking(customer, booking["id"])["status"] == "cancelled"
    buyer = api.user()
    other = book(api, buyer, s["slots"][0]["id"])  # the freed seat is sold again
    other_pi = intent_of(stripe_stub, other)

    stripe_stub.succeed(pi_id)  # the customer paid after all
    assert deliver(api, stripe_stub.event("payment_intent.succeeded", pi_id)) == "refunded_late"
    worker.drain()

    [refund] = stripe_stub.refunds(pi_id)
    assert refund["amount"] == 3000
    assert stripe_stub.refunds(other_pi) == []
    seen = api.booking(customer, booking["id"])
    assert seen["status"] == "cancelled"
    placed = api.order(customer, booking["orderId"])
    assert placed["status"] == "refunded"
    assert [(r["amount"], r["reason"], r["status"]) for r in placed["refunds"]] == [
        (30.0, "late_payment", "succeeded")
    ]
    assert booked_count(api, s) == 1  # never overbooked
    assert api.booking(buyer, other["id"])["status"] == "pending"
    messages = sent_mail(settings)
    assert subjects(settings) == ["Payment refunded"]
    body = messages[0].get_body(("plain",))
    assert body is not None
    assert "Refund: 30.00 EUR" in body.get_content()
