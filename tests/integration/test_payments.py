"""Payments end to end through the offline gateway: the HTTP API books, the checkout
page (or the CLI) pays or fails, a real worker delivers refunds and emails."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from boxoffice.cli import app as cli_app
from boxoffice.db.models import OfflineCharge, OutboxMessage, Payment, Refund
from boxoffice.db.session import Database
from boxoffice.integrations.payments.offline import OfflineGateway
from boxoffice.services.ports import Adapters, PaymentUnavailable
from boxoffice.settings import Settings, get_settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock, sent_mail
from tests.support.webhook_receiver import Receiver, running_receiver

Shop = Callable[..., dict[str, Any]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(status=200) as r:
        yield r


def pay(api: Api, booking: dict[str, Any], outcome: str = "succeed") -> str:
    """Press the checkout page's button; returns the page's text."""
    url = booking["payment"]["checkoutUrl"]
    path = url[url.index("/pay/") :]
    assert api.client.get(path).status_code == 200
    r = api.client.post(f"{path}/{outcome}")
    assert r.status_code == 200, r.text
    return r.text


def booked_count(api: Api, s: dict[str, Any]) -> int:
    return int(api.timeslots(s["room"]["id"], date="2030-03-05")[0]["bookedCount"])


def subjects(settings: Settings) -> list[str]:
    return [str(m["Subject"]).split(":")[0] for m in sent_mail(settings)]


def test_a_priced_booking_waits_for_payment_and_says_how_to_pay(
    api: Api, shop: Shop, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    payment = booking["payment"]
    assert (booking["status"], booking["paymentStatus"]) == ("pending", "pending")
    assert payment["paymentRequired"] is True
    assert (payment["amount"], payment["currency"]) == (30.0, "EUR")
    assert payment["checkoutUrl"].startswith("http://127.0.0.1:8000/pay/off_")
    assert payment["clientSecret"] is None
    hold = clock.now + timedelta(minutes=15)
    assert datetime.fromisoformat(payment["holdExpiresAt"]) == hold
    assert datetime.fromisoformat(booking["holdExpiresAt"]) == hold

    assert api.booking(customer, booking["id"])["payment"] == payment  # until paid
    seen = api.order(customer, booking["orderId"])
    assert (seen["status"], seen["total"], seen["commission"]) == ("open", 30.0, 1.5)
    assert [b["id"] for b in seen["bookings"]] == [booking["id"]]
    assert [(p["gateway"], p["status"]) for p in seen["payments"]] == [("offline", "pending")]
    assert api.order(s["admin"], booking["orderId"])["id"] == booking["orderId"]
    stranger = api.client.get(f"/api/v1/orders/{booking['orderId']}", headers=api.user())
    assert stranger.status_code == 404


def test_free_bookings_and_orgs_without_online_payments_need_no_payment(
    api: Api, shop: Shop
) -> None:
    free = shop(slug="free")
    booking = api.booked(api.user(), free["slots"][0]["id"])
    assert booking["payment"]["paymentRequired"] is False
    assert (booking["status"], booking["orderId"]) == ("confirmed", None)

    desk = shop(slug="desk", hourly_rate=30, payments_enabled=False)
    booking = api.booked(api.user(), desk["slots"][0]["id"])
    assert booking["payment"]["paymentRequired"] is False
    # Confirmed at once, to be paid at the venue (the desk marks it paid).
    assert (booking["status"], booking["paymentStatus"]) == ("confirmed", "pending")


def test_paying_at_the_checkout_confirms_and_mails_once(
    api: Api, shop: Shop, worker: Worker, settings: Settings, receiver: Receiver
) -> None:
    s = shop(hourly_rate=30)
    r = api.client.post(
        "/api/v1/admin/webhooks",
        json={"url": receiver.url, "eventTypes": ["payment.succeeded", "booking.confirmed"]},
        headers=s["admin"],
    )
    assert r.status_code == 201, r.text
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    assert "Your booking is confirmed" in pay(api, booking)

    seen = api.booking(customer, booking["id"])
    assert (seen["status"], seen["paymentStatus"], seen["holdExpiresAt"]) == (
        "confirmed",
        "paid",
        None,
    )
    assert api.order(customer, booking["orderId"])["status"] == "paid"
    # The page cannot pay twice.
    url = booking["payment"]["checkoutUrl"]
    assert api.client.post(url[url.index("/pay/") :] + "/succeed").status_code == 409
    worker.drain()
    assert subjects(settings) == ["Booking confirmed"]
    assert sorted(receiver.types) == ["booking.confirmed", "payment.succeeded"]


def test_a_declined_payment_cancels_and_frees_the_seat(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    assert booked_count(api, s) == 1
    assert "declined" in pay(api, booking, "fail")
    seen = api.booking(customer, booking["id"])
    assert seen["status"] == "cancelled"
    assert seen["statusHistory"][-1]["reason"] == "payment_failed"
    placed = api.order(customer, booking["orderId"])
    assert (placed["status"], placed["closedReason"]) == ("failed", "payment_failed")
    assert booked_count(api, s) == 0
    worker.drain()
    assert sent_mail(settings) == []  # never confirmed: nothing to tell


def test_a_late_payment_with_the_seat_still_free_confirms(
    api: Api, shop: Shop, worker: Worker, settings: Settings, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    clock.advance(minutes=16)
    assert worker.run_periodic(force=True)["expire_holds"] == 1
    assert api.booking(customer, booking["id"])["status"] == "cancelled"
    assert booked_count(api, s) == 0

    assert "Your booking is confirmed" in pay(api, booking)
    seen = api.booking(customer, booking["id"])
    assert (seen["status"], seen["paymentStatus"], seen["cancelledAt"]) == (
        "confirmed",
        "paid",
        None,
    )
    assert booked_count(api, s) == 1
    assert api.order(customer, booking["orderId"])["status"] == "paid"
    worker.drain()
    assert subjects(settings) == ["Booking confirmed"]


def test_a_late_payment_whose_seat_is_gone_is_refunded_and_the_customer_told(
    api: Api, shop: Shop, worker: Worker, settings: Settings, clock: Clock, database: Database
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    clock.advance(minutes=16)
    worker.run_periodic(force=True)
    other = api.booked(api.user(), s["slots"][0]["id"])  # the freed seat is sold again
    assert "refunded in full" in pay(api, booking)

    seen = api.booking(customer, booking["id"])
    assert seen["status"] == "cancelled"
    assert booked_count(api, s) == 1  # never overbooked
    worker.drain()
    placed = api.order(customer, booking["orderId"])
    assert placed["status"] == "refunded"
    assert [(r["amount"], r["reason"], r["status"]) for r in placed["refunds"]] == [
        (30.0, "late_payment", "succeeded")
    ]
    with database.read() as db:
        charge = db.execute(select(OfflineCharge)).scalars().all()
        refunded = {c.order_id: c.refunded_minor for c in charge}
    assert refunded[booking["orderId"]] == 3000
    assert refunded.get(other["orderId"], 0) == 0
    messages = sent_mail(settings)
    assert [str(m["Subject"]).split(":")[0] for m in messages] == ["Payment refunded"]
    body = messages[0].get_body(("plain",))
    assert body is not None
    assert "Refund: 30.00 EUR" in body.get_content()


def test_cancelling_a_paid_booking_refunds_through_the_gateway(
    api: Api, shop: Shop, worker: Worker, database: Database
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    pay(api, booking)
    # 23 h before the start: the default policy refunds half.
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert r.json()["refundAmount"] == 15.0
    pending = api.order(customer, booking["orderId"])
    assert [(x["amount"], x["status"]) for x in pending["refunds"]] == [(15.0, "pending")]
    worker.drain()
    done = api.order(customer, booking["orderId"])
    assert [(x["amount"], x["status"]) for x in done["refunds"]] == [(15.0, "succeeded")]
    sent = api.client.get(
        "/api/v1/admin/deliveries", params={"topic": "refund"}, headers=s["admin"]
    )
    assert sent.status_code == 200, sent.text
    assert [(d["topic"], d["state"]) for d in sent.json()["items"]] == [("refund", "delivered")]
    assert (done["status"], done["refundedAmount"]) == ("partially_refunded", 15.0)
    assert done["payments"][0]["refundedAmount"] == 15.0
    with database.read() as db:
        assert db.execute(select(OfflineCharge.refunded_minor)).scalar_one() == 1500


class _FlakyGateway(OfflineGateway):
    """Refunds fail while ``down`` is set, as a gateway that is unreachable."""

    down = True

    def refund(self, ref: str, amount_minor: int, *, idempotency_key: str) -> str:
        if self.down:
            raise PaymentUnavailable("connection refused")
        return super().refund(ref, amount_minor, idempotency_key=idempotency_key)


def test_a_refund_the_gateway_refuses_for_now_is_retried_until_it_succeeds(
    api: Api,
    shop: Shop,
    settings: Settings,
    database: Database,
    adapters: Adapters,
    clock: Clock,
) -> None:
    quick = settings.model_copy(update={"worker_max_attempts": 2, "worker_backoff_base_s": 1})
    flaky = _FlakyGateway(database, settings.public_url)
    worker = Worker(database, quick, replace(adapters, payments=flaky), clock=clock)
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    pay(api, booking)
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"status": "cancelled", "reason": "room flooded"},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["refundAmount"] == 30.0
    for _ in range(5):  # well past max attempts: a refund never dies
        worker.drain()
        clock.advance(hours=2)
    with database.read() as db:
        row = db.execute(select(OutboxMessage).where(OutboxMessage.topic == "refund")).scalar_one()
        assert (row.dead_at, row.delivered_at) == (None, None)
        assert row.attempts >= 5 and "connection refused" in (row.last_error or "")
        assert db.execute(select(Refund.status)).scalar_one() == "pending"
    flaky.down = False
    worker.drain()
    assert api.order(customer, booking["orderId"])["status"] == "refunded"


def test_the_cli_pays_or_fails_an_order(
    api: Api, shop: Shop, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    first = api.booked(customer, s["slots"][0]["id"])
    second = api.booked(customer, s["slots"][1]["id"])
    monkeypatch.setenv("BOXOFFICE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BOXOFFICE_DATABASE_URL", settings.sqlalchemy_url)
    monkeypatch.setenv("BOXOFFICE_SECRET_KEY", settings.resolved_secret_key())
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        done = runner.invoke(cli_app, ["payments", "succeed", first["orderId"]])
        assert done.exit_code == 0, done.output
        assert "confirmed" in done.output
        failed = runner.invoke(cli_app, ["payments", "fail", second["orderId"]])
        assert failed.exit_code == 0, failed.output
        assert api.booking(customer, second["id"])["status"] == "cancelled"
        # Another card, after the decline: the seat is still free, so it is booked again.
        retried = runner.invoke(cli_app, ["payments", "succeed", second["orderId"]])
        assert retried.exit_code == 0 and "revived" in retried.output, retried.output
        again = runner.invoke(cli_app, ["payments", "succeed", first["orderId"]])
        assert again.exit_code == 1 and "no offline payment to pay" in again.output
        bad = runner.invoke(cli_app, ["payments", "succeed", "not-an-id"])
        assert bad.exit_code == 1 and "not an order id" in bad.output
    finally:
        get_settings.cache_clear()
    assert api.booking(customer, first["id"])["status"] == "confirmed"
    assert api.booking(customer, second["id"])["status"] == "confirmed"


def massage(api: Api, admin: dict[str, str], price: float = 45) -> str:
    """A 60-minute service with one provider, Tuesdays 09:00-17:00 UTC; its id."""
    provider = api.client.post(
        "/api/v1/admin/providers", json={"name": "Ana", "timezone": "UTC"}, headers=admin
    ).json()
    service = api.client.post(
        "/api/v1/admin/services",
        json={"name": "Massage", "duration": 60, "price": price, "providerIds": [provider["id"]]},
        headers=admin,
    ).json()
    schedule = api.client.post(
        f"/api/v1/admin/providers/{provider['id']}/schedules",
        json={
            "name": "Week",
            "timezone": "UTC",
            "isDefault": True,
            "blocks": [{"weekday": 1, "start": "09:00", "end": "17:00"}],
        },
        headers=admin,
    )
    assert schedule.status_code == 201, schedule.text
    return str(service["id"])


def book_public(api: Api, service_id: str, **extra: Any) -> dict[str, Any]:
    r = api.client.post(
        "/api/v1/public/bookings",
        json={
            "serviceId": service_id,
            "startTime": "2030-03-05T10:00:00Z",
            "customer": {"name": "Eve", "email": "eve@example.com"},
        }
        | extra,
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_paid_appointment_through_the_public_api(
    api: Api, shop: Shop, database: Database
) -> None:
    """The public booking flow returns payment instructions with the booking, and the
    management link shows them until paid."""
    booked = book_public(api, massage(api, shop()["admin"]))
    assert booked["payment"]["paymentRequired"] is True
    assert booked["payment"]["amount"] == 45.0
    token = booked["booking"]["manageToken"]
    shown = api.client.get(
        f"/api/v1/public/bookings/{booked['booking']['id']}", params={"token": token}
    ).json()
    assert shown["payment"]["checkoutUrl"] == booked["payment"]["checkoutUrl"]
    pay(api, booked)
    shown = api.client.get(
        f"/api/v1/public/bookings/{booked['booking']['id']}", params={"token": token}
    ).json()
    assert (shown["status"], shown["paymentStatus"], shown["payment"]) == (
        "confirmed",
        "paid",
        None,
    )
    with database.read() as db:
        payment = db.execute(select(Payment)).scalar_one()
        assert (payment.status, payment.amount_minor) == ("succeeded", 4500)


def test_a_series_is_one_order_and_a_date_given_up_before_paying_goes_back(
    api: Api, shop: Shop, worker: Worker, clock: Clock
) -> None:
    s = shop()
    booked = book_public(api, massage(api, s["admin"]), recurrence={"everyWeeks": 1, "count": 3})
    dates = booked["bookings"]
    assert booked["payment"]["amount"] == 135.0  # 3 x 45, one order
    assert {b["orderId"] for b in dates} == {booked["payment"]["orderId"]}
    # The customer drops the last date before paying, then pays the order.
    last = dates[2]
    r = api.client.put(
        f"/api/v1/public/bookings/{last['id']}/cancel", params={"token": last["manageToken"]}
    )
    assert r.status_code == 200, r.text
    pay(api, booked)
    worker.drain()
    placed = api.order(s["admin"], booked["payment"]["orderId"])
    assert placed["status"] == "partially_refunded"
    assert [(b["status"], b["paymentStatus"]) for b in placed["bookings"]] == [
        ("confirmed", "paid"),
        ("confirmed", "paid"),
        ("cancelled", "pending"),
    ]
    assert [(x["amount"], x["reason"], x["status"]) for x in placed["refunds"]] == [
        (45.0, "cancelled_before_payment", "succeeded")
    ]


def test_a_late_payment_revives_only_what_expired(
    api: Api, shop: Shop, worker: Worker, clock: Clock
) -> None:
    s = shop()
    booked = book_public(api, massage(api, s["admin"]), recurrence={"everyWeeks": 1, "count": 2})
    second = booked["bookings"][1]
    r = api.client.put(
        f"/api/v1/public/bookings/{second['id']}/cancel",
        params={"token": second["manageToken"]},
    )
    assert r.status_code == 200, r.text
    clock.advance(minutes=16)
    assert worker.run_periodic(force=True)["expire_holds"] == 1
    assert "confirmed" in pay(api, booked)
    worker.drain()
    placed = api.order(s["admin"], booked["payment"]["orderId"])
    assert [b["status"] for b in placed["bookings"]] == ["confirmed", "cancelled"]
    assert [(x["amount"], x["reason"]) for x in placed["refunds"]] == [
        (45.0, "cancelled_before_payment")
    ]


def test_the_payment_settings_of_an_organisation(api: Api, shop: Shop) -> None:
    s = shop(payments_enabled=False)
    r = api.client.get("/api/v1/admin/organization/payments", headers=s["admin"])
    assert r.status_code == 200, r.text
    assert r.json() | {} == {
        "paymentsEnabled": False,
        "paymentAccountId": None,
        "planTier": "builder",
        "commissionPercent": 5,
        "holdMinutes": 15,
        "gateway": "offline",
    }
    r = api.client.put(
        "/api/v1/admin/organization/payments",
        json={
            "paymentsEnabled": True,
            "planTier": "center",
            "holdMinutes": 30,
            "paymentAccountId": "acct_1Abc",
        },
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["commissionPercent"], got["holdMinutes"], got["paymentAccountId"]) == (
        2,
        30,
        "acct_1Abc",
    )
    for bad in ({"paymentAccountId": "bank 123"}, {"holdMinutes": 0}, {"planTier": "gold"}):
        r = api.client.put("/api/v1/admin/organization/payments", json=bad, headers=s["admin"])
        assert r.status_code == 422, (bad, r.text)
    customer = api.client.put(
        "/api/v1/admin/organization/payments", json={"holdMinutes": 5}, headers=api.user()
    )
    assert customer.status_code == 403


def test_the_checkout_page_of_an_unknown_payment_is_404(api: Api) -> None:
    assert api.client.get("/pay/off_nothing").status_code == 404
    assert api.client.post("/pay/off_nothing/succeed").status_code == 409
    assert api.client.post("/pay/off_nothing/maybe").status_code == 422


def test_orders_keep_their_hold_time_from_the_organisation(
    api: Api, shop: Shop, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    r = api.client.put(
        "/api/v1/admin/organization/payments", json={"holdMinutes": 5}, headers=s["admin"]
    )
    assert r.status_code == 200, r.text
    booking = api.booked(api.user(), s["slots"][0]["id"])
    expected = (clock.now + timedelta(minutes=5)).astimezone(UTC)
    assert datetime.fromisoformat(booking["payment"]["holdExpiresAt"]) == expected
    assert uuid.UUID(booking["orderId"])


def test_paid_at_the_desk_the_online_payment_arriving_later_goes_back(
    api: Api, shop: Shop, worker: Worker, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"paymentStatus": "paid", "reason": "cash at the desk"},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["booking"]["status"] == "confirmed"
    placed = api.order(customer, booking["orderId"])
    assert placed["status"] == "paid"
    assert [p["status"] for p in placed["payments"]] == ["cancelled"]
    clock.advance(minutes=30)
    assert worker.run_periodic(force=True)["expire_holds"] == 0
    # The customer still pays the (offline) checkout they had open: it goes back whole.
    assert "already paid" in pay(api, booking)
    worker.drain()
    placed = api.order(customer, booking["orderId"])
    assert [(x["amount"], x["reason"], x["status"]) for x in placed["refunds"]] == [
        (30.0, "duplicate_payment", "succeeded")
    ]
    assert (placed["status"], placed["refundedAmount"]) == ("paid", 0.0)
    assert [(p["status"], p["refundedAmount"]) for p in placed["payments"]] == [("succeeded", 30.0)]
    assert api.booking(customer, booking["id"])["status"] == "confirmed"
