"""Side effects end to end: the HTTP API writes the outbox, a real worker delivers it
through the real adapters (.eml files, HTTP webhooks to a loopback receiver)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import icalendar
import pytest
import standardwebhooks.webhooks
from sqlalchemy import select
from standardwebhooks import Webhook
from typer.testing import CliRunner

from boxoffice.cli import app as cli_app
from boxoffice.db.models import OutboxMessage, Session
from boxoffice.db.session import Database
from boxoffice.services.ports import Adapters
from boxoffice.settings import Settings, get_settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock, sent_mail
from tests.support.webhook_receiver import Receiver, Recorded, running_receiver

Shop = Callable[..., dict[str, Any]]
DASH = "\u2013"
# The first slot of the shop: 2030-03-05 09:00-10:00 in Madrid (UTC+1).
SLOT0_START = datetime(2030, 3, 5, 8, 0, tzinfo=UTC)


# --- webhooks ---------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(status=200) as r:
        yield r


def verify(secret: str, hook: Recorded, at: datetime) -> Any:
    """``Webhook(secret).verify`` as a receiver whose clock reads ``at`` would run it.

    The worker signs with its own (test) clock, in 2030; verify() refuses timestamps
    more than five minutes from its ``datetime.now``.
    """

    class _At(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return at.astimezone(tz)

    original = standardwebhooks.webhooks.datetime
    standardwebhooks.webhooks.datetime = _At  # type: ignore[misc]
    try:
        return Webhook(secret).verify(hook.body, hook.headers)
    finally:
        standardwebhooks.webhooks.datetime = original  # type: ignore[misc]


def subscribe(api: Api, admin: dict[str, str], url: str, *types: str) -> dict[str, Any]:
    r = api.client.post(
        "/api/v1/admin/webhooks", json={"url": url, "eventTypes": list(types)}, headers=admin
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliveries(api: Api, admin: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = api.client.get("/api/v1/admin/deliveries", params=params | {"limit": 100}, headers=admin)
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda d: d["id"])  # type: ignore[no-any-return]


# --- mail helpers -----------------------------------------------------------------------------


def invite_calendar(message: EmailMessage) -> icalendar.Calendar:
    [part] = [p for p in message.iter_attachments() if p.get_filename() == "invite.ics"]
    return icalendar.Calendar.from_ical(part.get_payload(decode=True))


def invite(message: EmailMessage) -> icalendar.Event:
    """The one VEVENT of the message's invite.ics."""
    [event] = invite_calendar(message).walk("VEVENT")
    return event


def method(message: EmailMessage) -> str:
    """The iTIP method of the message's invite.ics."""
    return str(invite_calendar(message)["METHOD"])


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return body.get_content()  # type: ignore[no-any-return]


def subjects(settings: Settings) -> list[str]:
    return [str(m["Subject"]) for m in sent_mail(settings)]


# --- emails -----------------------------------------------------------------------------------


def test_confirmed_booking_mails_one_invite(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    s = shop()
    customer = api.user("ann@example.com")
    booking = api.booked(customer, s["slots"][0]["id"])

    assert worker.drain() > 0
    [mail] = sent_mail(settings)
    assert mail["To"] == "ann@example.com"
    assert str(mail["Subject"]).startswith("Booking confirmed: ")
    event = invite(mail)
    assert method(mail) == "REQUEST"
    assert str(event["UID"]) == f"booking-{booking['id']}@boxoffice"
    assert event["SEQUENCE"] == 0
    assert event["DTSTART"].dt == SLOT0_START
    assert event["DTEND"].dt == SLOT0_START + timedelta(hours=1)
    # Shown in the organisation's time zone; the invite itself is in UTC.
    assert f"Tuesday 5 March 2030, 09:00{DASH}10:00 (Europe/Madrid)" in text_of(mail)

    assert worker.drain() == 0
    assert len(sent_mail(settings)) == 1


def test_reschedule_mails_the_same_uid_with_a_higher_sequence(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    s = shop()
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    worker.drain()
    r = api.client.put(
        f"/api/v1/bookings/{booking['id']}/reschedule",
        json={"timeslotId": s["slots"][2]["id"]},
        headers=customer,
    )
    assert r.status_code == 200, r.text
    worker.drain()

    confirmed, moved = sent_mail(settings)
    assert str(moved["Subject"]).startswith("Booking moved: ")
    assert "has moved to a new time" in text_of(moved)
    assert f"Tuesday 5 March 2030, 11:00{DASH}12:00 (Europe/Madrid)" in text_of(moved)
    assert "Was:   Tuesday 5 March 2030, 09:00 (Europe/Madrid)" in text_of(moved)
    first, second = invite(confirmed), invite(moved)
    assert method(moved) == "REQUEST"
    assert str(second["UID"]) == str(first["UID"]) == f"booking-{booking['id']}@boxoffice"
    assert (first["SEQUENCE"], second["SEQUENCE"]) == (0, 1)
    assert second["DTSTART"].dt == SLOT0_START + timedelta(hours=2)


def test_cancelling_a_paid_booking_mails_a_cancel_with_the_refund(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    assert booking["status"] == "pending"
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"status": "confirmed", "paymentStatus": "paid", "reason": "paid at the desk"},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    worker.drain()
    assert subjects(settings)[0].startswith("Booking confirmed: ")

    # 23 h before the start: the default policy refunds half.
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert r.json()["refundAmount"] == 15.0
    worker.drain()

    confirmed, cancelled = sent_mail(settings)
    assert str(cancelled["Subject"]).startswith("Booking cancelled: ")
    event = invite(cancelled)
    assert method(cancelled) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == str(invite(confirmed)["UID"])
    assert "Refund: 15.00 EUR" in text_of(cancelled)
    assert "You will receive a refund of 15.00 EUR." in text_of(cancelled)


def test_a_pending_booking_cancelled_is_not_mailed(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    """_wants_email: a cancellation is mailed only when the booking had been confirmed."""
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert worker.drain() > 0
    assert sent_mail(settings) == []
    assert deliveries(api, s["admin"], topic="email") == []


def test_a_refund_of_a_desk_payment_is_mailed(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"paymentStatus": "paid"},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.json()["refundAmount"] == 15.0
    worker.drain()
    assert any("Refund: 15.00 EUR" in text_of(m) for m in sent_mail(settings))


def test_a_bookings_rows_go_out_in_order_and_once(
    api: Api, shop: Shop, worker: Worker, settings: Settings
) -> None:
    s = shop()
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    url = f"/api/v1/bookings/{booking['id']}"
    moved = api.client.put(
        f"{url}/reschedule", json={"timeslotId": s["slots"][1]["id"]}, headers=customer
    )
    assert moved.status_code == 200, moved.text
    assert api.client.put(f"{url}/cancel", headers=customer).status_code == 200

    # One event row per change; a booking's rows are handed out one at a time.
    assert worker.deliver_batch() == 1
    events = deliveries(api, s["admin"], topic="event")
    assert [e["state"] for e in events] == ["delivered", "pending", "pending"]
    worker.drain()

    mails = sent_mail(settings)
    assert [str(m["Subject"]).split(":")[0] for m in mails] == [
        "Booking confirmed",
        "Booking moved",
        "Booking cancelled",
    ]
    assert [method(m) for m in mails] == ["REQUEST", "REQUEST", "CANCEL"]
    assert [invite(m)["SEQUENCE"] for m in mails] == [0, 1, 1]
    emails = deliveries(api, s["admin"], topic="email")
    assert [e["payload"]["kind"] for e in emails] == [
        "booking_confirmed",
        "booking_rescheduled",
        "booking_cancelled",
    ]
    assert all(e["state"] == "delivered" and e["attempts"] == 1 for e in emails)

    assert worker.drain() == 0
    assert len(sent_mail(settings)) == 3


# --- webhooks ---------------------------------------------------------------------------------


def test_webhooks_are_signed_and_only_the_subscribed_types_sent(
    api: Api, shop: Shop, worker: Worker, receiver: Receiver, clock: Clock
) -> None:
    s = shop()
    created = subscribe(api, s["admin"], receiver.url, "booking.created", "booking.cancelled")
    secret = created["secret"]
    assert secret.startswith("whsec_")
    listed = api.client.get("/api/v1/admin/webhooks", headers=s["admin"]).json()
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert listed[0]["eventTypes"] == ["booking.cancelled", "booking.created"]

    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    worker.drain()

    # booking.confirmed (written with booking.created) is not subscribed: not sent.
    assert receiver.types == ["booking.created", "booking.cancelled"]
    for hook in receiver.requests:
        assert verify(secret, hook, clock.now) == hook.json
        assert hook.headers["webhook-id"].startswith("msg_")
        assert hook.json["data"]["id"] == booking["id"]
        assert set(hook.json) == {"type", "timestamp", "data"}
    cancelled = receiver.requests[1].json["data"]
    assert (cancelled["status"], cancelled["previousStatus"]) == ("cancelled", "confirmed")
    assert cancelled["startAt"].startswith("2030-03-05T08:00:00")
    # Another secret does not verify.
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(
            subscribe(api, s["admin"], receiver.url, "booking.created")["secret"],
            receiver.requests[0],
            clock.now,
        )

    assert worker.drain() == 0
    assert len(receiver.requests) == 2


def test_a_failing_webhook_backs_off_dies_and_is_retried_by_hand(
    api: Api, shop: Shop, worker: Worker, receiver: Receiver, clock: Clock, settings: Settings
) -> None:
    s = shop()
    receiver.status = 500
    secret = subscribe(api, s["admin"], receiver.url, "booking.created")["secret"]
    api.booked(api.user(), s["slots"][0]["id"])

    limit = settings.worker_max_attempts
    for attempt in range(1, limit + 1):
        worker.drain()
        assert len(receiver.requests) == attempt
        [row] = deliveries(api, s["admin"], topic="webhook")
        assert row["attempts"] == attempt
        assert "answered 500" in row["lastError"]
        if attempt == limit:
            assert row["state"] == "dead"
            break
        assert row["state"] == "pending"
        due = datetime.fromisoformat(row["nextAttemptAt"])
        # Exponential from worker_backoff_base_s with +-50 % jitter, capped.
        base = min(
            settings.worker_backoff_max_s, settings.worker_backoff_base_s * 2 ** (attempt - 1)
        )
        wait = (due - clock.now).total_seconds()
        assert base * 0.5 <= wait <= min(base * 1.5, settings.worker_backoff_max_s)
        clock.now = due - timedelta(seconds=1)
        assert worker.drain() == 0  # not due yet
        clock.now = due

    [dead] = deliveries(api, s["admin"], state="dead")
    assert dead["topic"] == "webhook" and dead["deadAt"] is not None

    # Another organisation's admin sees none of it.
    api.org("other")
    stranger = api.user(org="other")
    assert deliveries(api, stranger) == []
    r = api.client.post(f"/api/v1/admin/deliveries/{dead['id']}/retry", headers=stranger)
    assert r.status_code == 404

    # Only a dead row can be retried.
    [event] = deliveries(api, s["admin"], topic="event")
    r = api.client.post(f"/api/v1/admin/deliveries/{event['id']}/retry", headers=s["admin"])
    assert r.status_code == 409

    receiver.status = 200
    r = api.client.post(f"/api/v1/admin/deliveries/{dead['id']}/retry", headers=s["admin"])
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["attempts"]) == ("pending", 0)
    worker.drain()
    assert len(receiver.requests) == limit + 1
    assert verify(secret, receiver.requests[-1], clock.now)["type"] == "booking.created"
    [row] = deliveries(api, s["admin"], topic="webhook")
    assert (row["state"], row["lastError"]) == ("delivered", None)
    r = api.client.post(f"/api/v1/admin/deliveries/{dead['id']}/retry", headers=s["admin"])
    assert r.status_code == 409


def test_deleting_a_subscription_drops_its_queued_deliveries(
    api: Api, shop: Shop, worker: Worker, receiver: Receiver
) -> None:
    s = shop()
    sub = subscribe(api, s["admin"], receiver.url, "booking.created")
    api.booked(api.user(), s["slots"][0]["id"])
    worker.deliver_batch()  # the event is fanned out; its webhook row waits
    [queued] = deliveries(api, s["admin"], topic="webhook")
    assert queued["state"] == "pending"

    r = api.client.delete(f"/api/v1/admin/webhooks/{sub['id']}", headers=s["admin"])
    assert r.status_code == 204
    worker.drain()
    assert receiver.requests == []
    [row] = deliveries(api, s["admin"], topic="webhook")
    assert row["state"] == "delivered"


def test_webhook_subscriptions_are_validated_and_for_admins(api: Api, shop: Shop) -> None:
    s = shop()
    url = "/api/v1/admin/webhooks"
    r = api.client.post(
        url,
        json={"url": "http://127.0.0.1/x", "eventTypes": ["booking.exploded"]},
        headers=s["admin"],
    )
    assert r.status_code == 422
    r = api.client.post(
        url,
        json={"url": "ftp://example.org/hook", "eventTypes": ["booking.created"]},
        headers=s["admin"],
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
    r = api.client.post(
        url, json={"url": "http://127.0.0.1/x", "eventTypes": []}, headers=s["admin"]
    )
    assert r.status_code == 422

    staff = api.user(org="acme", role="staff")
    body = {"url": "http://127.0.0.1/x", "eventTypes": ["booking.created"]}
    assert api.client.post(url, json=body, headers=staff).status_code == 403
    assert api.client.get(url, headers=staff).status_code == 403
    assert api.client.get("/api/v1/admin/deliveries", headers=staff).status_code == 403
    assert api.client.get(url, headers=s["admin"]).json() == []


# --- periodic jobs ----------------------------------------------------------------------------


def later_slots(api: Api, s: dict[str, Any], day: str) -> list[dict[str, Any]]:
    api.generate(s["admin"], s["room"]["id"], startDate=day, endDate=day)
    return api.timeslots(s["room"]["id"], date=day)


def reminders(settings: Settings) -> list[EmailMessage]:
    return [m for m in sent_mail(settings) if str(m["Subject"]).startswith("Reminder: ")]


def test_one_reminder_a_day_before_even_with_two_workers(
    api: Api,
    shop: Shop,
    worker: Worker,
    settings: Settings,
    database: Database,
    adapters: Adapters,
    clock: Clock,
) -> None:
    s = shop()
    slot = later_slots(api, s, "2030-03-08")[0]  # Friday 09:00 Madrid, 08:00Z
    api.booked(api.user(), slot["id"])
    worker.run_periodic(force=True)
    worker.drain()
    assert subjects(settings)[0].startswith("Booking confirmed: ")
    assert reminders(settings) == []

    clock.now = datetime(2030, 3, 7, 9, 0, tzinfo=UTC)  # 23 h before
    other = Worker(database, settings, adapters, clock=clock)
    results: list[dict[str, int]] = []
    start = threading.Barrier(2)

    def run(w: Worker) -> None:
        start.wait()
        results.append(w.run_periodic(force=True))

    threads = [threading.Thread(target=run, args=(w,)) for w in (worker, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["send_reminders"] for r in results) == [0, 1]
    worker.run_periodic(force=True)
    worker.drain()
    other.drain()
    clock.advance(hours=12)
    other.run_periodic(force=True)
    worker.drain()

    [reminder] = reminders(settings)
    assert f"Friday 8 March 2030, 09:00{DASH}10:00 (Europe/Madrid)" in text_of(reminder)
    assert not list(reminder.iter_attachments())  # the invite is already in the calendar
    assert len(sent_mail(settings)) == 2


def test_a_booking_made_two_hours_ahead_gets_no_reminder(
    api: Api, shop: Shop, worker: Worker, settings: Settings, clock: Clock
) -> None:
    s = shop()
    clock.now = SLOT0_START - timedelta(hours=2)
    api.booked(api.user(), s["slots"][0]["id"])
    assert worker.run_periodic(force=True)["send_reminders"] == 0
    worker.drain()
    clock.advance(hours=1)
    worker.run_periodic(force=True)
    worker.drain()
    assert len(sent_mail(settings)) == 1
    assert reminders(settings) == []


def test_a_rescheduled_booking_is_reminded_of_its_new_time(
    api: Api, shop: Shop, worker: Worker, settings: Settings, clock: Clock
) -> None:
    s = shop()
    first = later_slots(api, s, "2030-03-07")[0]  # Thursday 09:00 Madrid
    second = later_slots(api, s, "2030-03-13")[1]  # Wednesday 10:00 Madrid
    customer = api.user()
    booking = api.booked(customer, first["id"])
    clock.now = datetime(2030, 3, 6, 9, 0, tzinfo=UTC)
    assert worker.run_periodic(force=True)["send_reminders"] == 1
    worker.drain()
    assert len(reminders(settings)) == 1

    r = api.client.put(
        f"/api/v1/bookings/{booking['id']}/reschedule",
        json={"timeslotId": second["id"]},
        headers=customer,
    )
    assert r.status_code == 200, r.text
    assert worker.run_periodic(force=True)["send_reminders"] == 0  # a week ahead
    clock.now = datetime(2030, 3, 12, 10, 0, tzinfo=UTC)
    assert worker.run_periodic(force=True)["send_reminders"] == 1
    worker.drain()

    old, new = reminders(settings)
    assert f"Thursday 7 March 2030, 09:00{DASH}10:00" in text_of(old)
    assert f"Wednesday 13 March 2030, 10:00{DASH}11:00 (Europe/Madrid)" in text_of(new)


def test_an_expired_hold_is_cancelled_and_frees_its_seat(
    api: Api, shop: Shop, worker: Worker, settings: Settings, database: Database, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    slot = s["slots"][0]
    customer = api.user()
    booking = api.booked(customer, slot["id"])
    hold = datetime.fromisoformat(booking["holdExpiresAt"])
    assert (booking["status"], hold) == ("pending", clock.now + timedelta(minutes=15))
    clock.advance(minutes=14)
    assert worker.run_periodic(force=True)["expire_holds"] == 0
    assert api.timeslots(s["room"]["id"], date="2030-03-05")[0]["bookedCount"] == 1

    clock.advance(minutes=1)  # the hold ends
    assert worker.run_periodic(force=True)["expire_holds"] == 1
    assert worker.run_periodic(force=True)["expire_holds"] == 0

    detail = api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer).json()
    assert detail["status"] == "cancelled"
    assert detail["statusHistory"][-1]["reason"] == "payment_timeout"
    listed = api.timeslots(s["room"]["id"], date="2030-03-05")[0]
    assert (listed["bookedCount"], listed["availableSpots"], listed["isAvailable"]) == (0, 1, True)
    assert api.book(api.user(), slot["id"]).status_code == 201
    worker.drain()
    assert sent_mail(settings) == []  # never confirmed, so nothing to cancel


def test_a_hold_paid_at_the_desk_does_not_expire(
    api: Api, shop: Shop, worker: Worker, database: Database, clock: Clock
) -> None:
    s = shop(hourly_rate=30)
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    assert booking["holdExpiresAt"] is not None
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"paymentStatus": "paid", "reason": "cash at the desk"},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    clock.advance(minutes=20)
    worker.run_periodic(force=True)
    detail = api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer).json()
    assert (detail["status"], detail["paymentStatus"]) != ("cancelled", "refunded")


def test_ended_sessions_complete_their_bookings(
    api: Api, shop: Shop, worker: Worker, receiver: Receiver, database: Database, clock: Clock
) -> None:
    s = shop()
    secret = subscribe(api, s["admin"], receiver.url, "booking.completed")["secret"]
    customer = api.user()
    booking = api.booked(customer, s["slots"][0]["id"])
    assert worker.run_periodic(force=True)["complete_sessions"] == 0

    clock.now = SLOT0_START + timedelta(hours=1, minutes=30)  # the first slot has ended
    assert worker.run_periodic(force=True)["complete_sessions"] == 1
    assert worker.run_periodic(force=True)["complete_sessions"] == 0
    with database.read() as db:
        statuses = dict(db.execute(select(Session.start_at, Session.status)).all())
    assert statuses[SLOT0_START] == "completed"
    assert statuses[SLOT0_START + timedelta(hours=1)] == "scheduled"
    detail = api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer).json()
    assert detail["status"] == "completed"

    worker.drain()
    [hook] = receiver.requests
    body = verify(secret, hook, clock.now)
    assert body["type"] == "booking.completed"
    assert (body["data"]["status"], body["data"]["previousStatus"]) == ("completed", "confirmed")


# --- what operators see -----------------------------------------------------------------------


def sample(text: str, name: str) -> float:
    """A sample's value in the Prometheus text (0 if the series is not there yet)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_bookings_conflicts_and_the_backlog(
    api: Api, shop: Shop, clock: Clock
) -> None:
    s = shop()
    before = api.client.get("/metrics").text
    api.booked(api.user(), s["slots"][0]["id"])
    full = api.book(api.user(), s["slots"][0]["id"])
    assert full.status_code == 409
    clock.advance(seconds=90)

    r = api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text
    for name in ("boxoffice_bookings_created_total", 'boxoffice_conflicts_total{code="slot_full"}'):
        assert sample(after, name) == sample(before, name) + 1, name
    assert sample(after, 'boxoffice_outbox_backlog{due="all"}') == 1  # the booking's event
    assert sample(after, 'boxoffice_outbox_backlog{due="now"}') == 1
    assert sample(after, "boxoffice_outbox_oldest_pending_age_seconds") == 90
    assert "boxoffice_outbox_dead 0.0" in after


def test_responses_carry_a_request_id(api: Api) -> None:
    mine = api.client.get("/api/v1/bookings/rooms", headers={"X-Request-Id": "trace-42.a:b"})
    assert mine.headers["X-Request-Id"] == "trace-42.a:b"
    fresh = api.client.get("/api/v1/bookings/rooms")
    bad = api.client.get("/api/v1/bookings/rooms", headers={"X-Request-Id": "no spaces <please>"})
    assert len({fresh.headers["X-Request-Id"], bad.headers["X-Request-Id"]}) == 2
    assert bad.headers["X-Request-Id"] != "no spaces <please>"
    assert len(bad.headers["X-Request-Id"]) == 32


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, database_url: str
) -> Iterator[CliRunner]:
    monkeypatch.setenv("BOXOFFICE_DATABASE_URL", database_url)
    monkeypatch.setenv("BOXOFFICE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_shows_the_backlog_and_retries_a_dead_row(
    api: Api,
    shop: Shop,
    receiver: Receiver,
    settings: Settings,
    database: Database,
    adapters: Adapters,
    clock: Clock,
    cli: CliRunner,
) -> None:
    s = shop()
    receiver.status = 503
    subscribe(api, s["admin"], receiver.url, "booking.created")
    api.booked(api.user(), s["slots"][0]["id"])
    impatient = Worker(
        database, settings.model_copy(update={"worker_max_attempts": 1}), adapters, clock=clock
    )
    impatient.drain()
    api.booked(api.user(), s["slots"][1]["id"])  # one event left pending
    [dead] = deliveries(api, s["admin"], state="dead")

    listing = cli.invoke(cli_app, ["outbox"])
    assert listing.exit_code == 0, listing.output
    assert listing.output.startswith(
        "pending 1 (due now 0, oldest from 2030-03-04 09:00:00Z), dead 1"
    )
    lines = {int(line.split()[0]): line for line in listing.output.splitlines()[1:]}
    assert "webhook" in lines[dead["id"]] and "dead" in lines[dead["id"]]
    assert "answered 503" in lines[dead["id"]]
    only_dead = cli.invoke(cli_app, ["outbox", "--state", "dead"])
    assert only_dead.output.splitlines()[1:] == [lines[dead["id"]]]

    retried = cli.invoke(cli_app, ["outbox", "retry", str(dead["id"])])
    assert retried.exit_code == 0, retried.output
    assert f"Delivery {dead['id']} is due again." in retried.output
    with database.read() as db:
        row = db.get(OutboxMessage, dead["id"])
        assert row is not None and (row.dead_at, row.attempts) == (None, 0)
    again = cli.invoke(cli_app, ["outbox", "retry", str(dead["id"])])
    assert again.exit_code == 1
    assert "Only a dead delivery can be retried" in again.output
    missing = cli.invoke(cli_app, ["outbox", "retry", "999999"])
    assert missing.exit_code == 1

    receiver.status = 200
    impatient.drain()
    assert receiver.types == ["booking.created"] * 3
    assert cli.invoke(cli_app, ["outbox"]).output.startswith("pending 0 (due now 0), dead 0")
