"""Faults that must lose nothing (issue 4), with the real parts: an aiosmtpd relay that
goes away, a `boxoffice worker` process killed mid-batch, two workers on PostgreSQL,
a Radicale server that is down, and a delivery that dies and is retried.

Mail is counted by Message-ID: it is stable per outbox row, so the same row sent
twice shows up as the same id twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import caldav
import icalendar
import pytest
from sqlalchemy import select

from boxoffice.db.models import OutboxMessage
from boxoffice.db.session import Database
from boxoffice.integrations.mail.mime import message_id_header
from boxoffice.integrations.mail.smtp import SmtpMailer
from boxoffice.services import outbox
from boxoffice.services.booking_events import calendar_uid
from boxoffice.services.organizations import create_organization
from boxoffice.services.outbox import Topic
from boxoffice.services.ports import Adapters, Email
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker, message_id
from tests.conftest import Api, Clock
from tests.support.radicale_server import RadicaleServer
from tests.support.smtp_server import SmtpServer

Shop = Callable[..., dict[str, Any]]


# --- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """An outbox row as it stands, read in its own transaction."""

    id: int
    org_id: uuid.UUID
    topic: str
    stream: str
    dedupe_key: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None

    @property
    def is_pending(self) -> bool:
        return self.delivered_at is None and self.dead_at is None

    @property
    def mail_id(self) -> str:
        """The Message-ID header this (email) row is sent with, on every attempt."""
        return message_id_header(message_id(self.dedupe_key))


def rows(database: Database, topic: Topic | None = None) -> list[Row]:
    stmt = select(OutboxMessage).order_by(OutboxMessage.id)
    if topic is not None:
        stmt = stmt.where(OutboxMessage.topic == topic.value)
    with database.read() as s:
        return [
            Row(
                id=r.id,
                org_id=r.org_id,
                topic=r.topic,
                stream=r.stream,
                dedupe_key=r.dedupe_key,
                payload=r.payload,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at,
                last_error=r.last_error,
                created_at=r.created_at,
                delivered_at=r.delivered_at,
                dead_at=r.dead_at,
            )
            for r in s.execute(stmt).scalars()
        ]


def arrivals(server: SmtpServer) -> Counter[str]:
    """How many times each Message-ID reached the relay."""
    return Counter(str(m["Message-ID"]) for m in server.messages)


def mailer_to(server: SmtpServer, settings: Settings) -> SmtpMailer:
    return SmtpMailer(server.host, server.port, "none", None, None, 5.0, settings.mail_from)


def first_retry_window(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    """When a row failed once at ``now`` is due again: the base backoff +-50 %."""
    base = timedelta(seconds=settings.worker_backoff_base_s)
    return now + base * 0.5, now + base * 1.5


def book(api: Api, customer: dict[str, str], slot_id: str) -> dict[str, Any]:
    r = api.book(customer, slot_id)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "confirmed"
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    """A real SMTP relay that has gone away: started once (its port is taken), then stopped."""
    server = SmtpServer().start()
    server.stop()
    yield server
    server.stop()


# --- 1. the SMTP relay is down ---------------------------------------------------------------


def test_mail_waits_for_a_relay_that_is_down_and_goes_out_once_it_is_back(
    api: Api,
    shop: Shop,
    database: Database,
    settings: Settings,
    adapters: Adapters,
    clock: Clock,
    relay: SmtpServer,
) -> None:
    s = shop()
    customer = api.user()
    booked = [book(api, customer, slot["id"]) for slot in s["slots"]]
    assert len(booked) == 3
    cancelled = booked[0]["id"]
    r = api.client.put(f"/api/v1/bookings/{cancelled}/cancel", headers=customer)
    assert r.status_code == 200, r.text

    worker = Worker(
        database,
        settings,
        replace(adapters, mailer=mailer_to(relay, settings)),
        clock=clock,
    )
    # Every event fans out; the first mail of each booking fails; the cancellation
    # waits behind the confirmation of its own booking, untried.
    assert worker.drain() == 4 + 3
    failed_at = clock.now
    mails = rows(database, Topic.EMAIL)
    assert (
        sorted(m.payload["kind"] for m in mails)
        == ["booking_cancelled"] + ["booking_confirmed"] * 3
    )
    earliest, latest = first_retry_window(settings, failed_at)
    for m in mails:
        assert m.is_pending, m
        if m.payload["kind"] == "booking_confirmed":
            assert m.attempts == 1
            assert m.last_error is not None and "Cannot reach SMTP" in m.last_error
            assert m.last_error.endswith(f"{relay.host}:{relay.port}: Connection refused")
            assert earliest <= m.next_attempt_at <= latest
        else:
            assert (m.attempts, m.last_error) == (0, None)
    assert all(not e.is_pending for e in rows(database, Topic.EVENT))
    # Not hammered: nothing is due again until the backoff has passed.
    assert worker.drain() == 0

    relay.start()
    clock.now = latest + timedelta(seconds=1)
    assert worker.drain() == 4  # three confirmations, then the cancellation
    assert arrivals(relay) == Counter({m.mail_id: 1 for m in mails})
    assert all(
        m.delivered_at == clock.now and m.last_error is None for m in rows(database, Topic.EMAIL)
    )
    # The booking's own order survived the outage.
    mail_of = {m.mail_id: m for m in mails}
    theirs = [
        mail_of[str(msg["Message-ID"])].payload["kind"]
        for msg in relay.messages
        if mail_of[str(msg["Message-ID"])].payload["bookingId"] == cancelled
    ]
    assert theirs == ["booking_confirmed", "booking_cancelled"]
    with database.read() as db:
        backlog = outbox.backlog(db, now=clock.now)
    assert (backlog.pending, backlog.dead) == (0, 0)


# --- 2. the worker process is killed mid-batch -------------------------------------------------

BOOKINGS = 40
BATCH = 5
KILL_AFTER = 12  # mails received; the 3rd batch (mails 11-15) is then half sent
SLOW_S = 0.1  # the relay's pause before it accepts each message
LEASE_S = 2


def worker_env(database_url: str, settings: Settings, relay: SmtpServer) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BOXOFFICE_") and k != "DATABASE_URL"
    }
    # Not settings.database_url: Settings(database_url=...) is dropped (see the report).
    assert settings.secret_key is not None
    env |= {
        "BOXOFFICE_DATABASE_URL": database_url,
        "BOXOFFICE_SECRET_KEY": settings.secret_key,
        "BOXOFFICE_DATA_DIR": str(settings.data_dir),
        "BOXOFFICE_MAIL_BACKEND": "smtp",
        "BOXOFFICE_SMTP_HOST": relay.host,
        "BOXOFFICE_SMTP_PORT": str(relay.port),
        "BOXOFFICE_SMTP_SECURITY": "none",
        "BOXOFFICE_WORKER_BATCH": str(BATCH),
        "BOXOFFICE_WORKER_LEASE_S": str(LEASE_S),
        "BOXOFFICE_WORKER_POLL_S": "0.1",
    }
    return env


def test_a_killed_worker_loses_nothing_and_repeats_at_most_its_batch(
    api: Api,
    database: Database,
    database_url: str,
    settings: Settings,
    adapters: Adapters,
    clock: Clock,
    tmp_path: Path,
) -> None:
    # The worker process runs on the real clock, so the rows must be due in real time.
    clock.now = datetime.now(UTC).replace(microsecond=0)
    api.org("acme")
    admin = api.user(org="acme")
    room = api.room(admin)
    api.generate(
        admin, room["id"], slotDuration=15, workingHours={"start": "08:00", "end": "18:00"}
    )
    slots = api.timeslots(room["id"], date="2030-03-05")
    assert len(slots) == BOOKINGS
    customer = api.user()
    booking_ids = {book(api, customer, slot["id"])["id"] for slot in slots}

    log_path = tmp_path / "worker.log"
    with SmtpServer(delay_s=SLOW_S) as relay, log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "boxoffice.cli", "worker"],
            env=worker_env(database_url, settings, relay),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while len(relay.received) < KILL_AFTER:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=10) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        killed_at = datetime.now(UTC)
        before = arrivals(relay)

        mails = rows(database, Topic.EMAIL)
        assert all(not e.is_pending for e in rows(database, Topic.EVENT))
        assert {m.payload["bookingId"] for m in mails} == booking_ids
        assert len(mails) == BOOKINGS
        delivered = [m for m in mails if m.delivered_at is not None]
        in_flight = [m for m in mails if m.is_pending and m.attempts == 1]
        untouched = [m for m in mails if m.is_pending and m.attempts == 0]
        assert len(delivered) + len(in_flight) + len(untouched) == BOOKINGS  # none dead
        assert delivered and untouched, "the kill was meant to land mid-run"
        # Claimed but not recorded: still pending, leased, and never more than a batch.
        assert 1 <= len(in_flight) <= BATCH
        assert all(
            killed_at < m.next_attempt_at <= killed_at + timedelta(seconds=LEASE_S)
            for m in in_flight
        )
        # What was recorded delivered did arrive, once; nothing arrived unclaimed.
        assert all(before[m.mail_id] == 1 for m in delivered)
        assert set(before) <= {m.mail_id for m in delivered + in_flight}
        sent_in_flight = {m.mail_id for m in in_flight} & set(before)

        # A second worker (in-process, its clock pinned to the kill) leaves the leased
        # rows alone until the lease runs out, then delivers them too.
        relay.delay_s = 0
        second_clock = Clock()
        second_clock.now = killed_at
        second = Worker(
            database,
            settings.model_copy(update={"worker_batch": BATCH, "worker_lease_s": LEASE_S}),
            replace(adapters, mailer=mailer_to(relay, settings)),
            clock=second_clock,
        )
        assert second.drain() == len(untouched)
        assert {m.id for m in rows(database, Topic.EMAIL) if m.is_pending} == {
            m.id for m in in_flight
        }
        second_clock.advance(seconds=LEASE_S)
        assert second.drain() == len(in_flight)

        after = arrivals(relay)
    assert set(after) == {m.mail_id for m in mails}  # every booking's mail arrived
    duplicates = {mail for mail, n in after.items() if n > 1}
    assert duplicates == sent_in_flight
    assert max(after.values()) <= 2
    final = {m.id: m for m in rows(database, Topic.EMAIL)}
    assert all(m.delivered_at is not None for m in final.values())
    assert all(final[m.id].attempts == 2 for m in in_flight)
    print(
        f"\nkilled after {sum(before.values())} mails: {len(delivered)} rows recorded "
        f"delivered, {len(in_flight)} in flight ({len(sent_in_flight)} of them sent), "
        f"{len(untouched)} untouched; duplicates {len(duplicates)}"
    )


# --- 3. two workers on PostgreSQL --------------------------------------------------------------


class RecordingMailer:
    """A Mailer that keeps the Message-IDs it was given, a little slowly."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, email: Email) -> None:
        time.sleep(0.001)  # let the other worker in
        self.sent.append(email.message_id)


def email_payload(i: int) -> dict[str, Any]:
    return {
        "kind": "booking_confirmed",
        "bookingId": f"b-{i}",
        "to": f"customer{i}@example.org",
        "customerName": "Ann",
        "orgName": "Acme",
        "orgTimezone": "Europe/Madrid",
        "customerTimezone": None,
        "title": "Yoga",
        "startAt": "2030-03-05T08:00:00+00:00",
        "endAt": "2030-03-05T09:00:00+00:00",
        "location": "Studio 1",
        "sequence": 0,
        "priceMinor": 0,
        "currency": "EUR",
        "manageUrl": f"/api/v1/bookings/b-{i}",
    }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_on_postgresql_deliver_each_row_once(
    database: Database, settings: Settings, adapters: Adapters, clock: Clock
) -> None:
    count = 300
    with database.write() as s:
        org = create_organization(
            s, slug="acme", name="Acme", timezone="Europe/Madrid", currency="EUR"
        )
        for i in range(count):
            outbox.enqueue(
                s,
                org_id=org.id,
                topic=Topic.EMAIL,
                stream=f"email:b-{i}",
                dedupe_key=f"email::{i}",
                payload=email_payload(i),
                now=clock.now,
            )
    small_batches = settings.model_copy(update={"worker_batch": 10})
    mailers = [RecordingMailer(), RecordingMailer()]
    workers = [
        Worker(database, small_batches, replace(adapters, mailer=m), clock=clock) for m in mailers
    ]
    start = threading.Barrier(len(workers))
    claimed: list[int] = [0, 0]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(timeout=10)
            claimed[i] = workers[i].drain(max_rounds=1000)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    first, second = (set(m.sent) for m in mailers)
    assert len(first) == len(mailers[0].sent) and len(second) == len(mailers[1].sent)
    assert first and second, "both workers should have had a share"
    assert first.isdisjoint(second)
    assert first | second == {message_id(f"email::{i}") for i in range(count)}
    assert claimed == [len(first), len(second)]
    final = rows(database, Topic.EMAIL)
    assert all(r.delivered_at is not None and r.attempts == 1 for r in final)
    print(f"\ntwo workers: {len(first)} + {len(second)} rows, none twice")


# --- 4. the CalDAV server is unreachable -----------------------------------------------------

CAL_USER, CAL_PASSWORD = "room1", "s3cret"


def calendar_events(url: str) -> list[icalendar.Event]:
    with caldav.DAVClient(url=url, username=CAL_USER, password=CAL_PASSWORD, timeout=5) as client:
        resources = client.calendar(url=url).get_events()
        return [c for r in resources for c in r.get_icalendar_instance().walk("VEVENT")]


def test_an_unreachable_calendar_is_retried_and_the_booking_is_unaffected(
    api: Api,
    shop: Shop,
    database: Database,
    settings: Settings,
    worker: Worker,
    clock: Clock,
    tmp_path: Path,
) -> None:
    radicale = RadicaleServer(tmp_path / "radicale", users={CAL_USER: CAL_PASSWORD})
    try:
        radicale.start()
        calendar_url = radicale.make_calendar(CAL_USER, "room-1")
        radicale.stop()

        s = shop()
        r = api.client.post(
            "/api/v1/admin/calendar-connections",
            json={
                "roomId": s["room"]["id"],
                "url": calendar_url,
                "username": CAL_USER,
                "password": CAL_PASSWORD,
            },
            headers=s["admin"],
        )
        assert r.status_code == 201, r.text
        customer = api.user()
        booking = book(api, customer, s["slots"][1]["id"])

        assert worker.drain() == 1 + 2  # the event, then its email and calendar rows
        failed_at = clock.now
        [entry] = rows(database, Topic.CALENDAR)
        assert entry.payload == {"connectionId": r.json()["id"], "bookingId": booking["id"]}
        assert entry.is_pending and entry.attempts == 1
        assert entry.last_error is not None and f"127.0.0.1:{radicale.port}" in entry.last_error
        earliest, latest = first_retry_window(settings, failed_at)
        assert earliest <= entry.next_attempt_at <= latest
        [mail] = rows(database, Topic.EMAIL)
        assert mail.delivered_at is not None  # the other side effects do not wait
        assert worker.drain() == 0
        got = api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer)
        assert (got.status_code, got.json()["status"]) == (200, "confirmed")

        radicale.start()
        clock.now = latest + timedelta(seconds=1)
        assert worker.drain() == 1
        [entry] = rows(database, Topic.CALENDAR)
        assert (entry.delivered_at, entry.last_error, entry.attempts) == (clock.now, None, 2)
        [event] = calendar_events(calendar_url)
        assert str(event["UID"]) == calendar_uid(booking["id"])
        assert datetime.fromisoformat(s["slots"][1]["startTime"]) == event.DTSTART
    finally:
        radicale.stop()


# --- 5. a delivery that dies is visible, blocks nothing, and can be retried ------------------


def test_a_dead_mail_blocks_nothing_and_goes_out_once_when_retried(
    api: Api,
    shop: Shop,
    database: Database,
    settings: Settings,
    adapters: Adapters,
    clock: Clock,
    relay: SmtpServer,
) -> None:
    s = shop()
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    two_tries = settings.model_copy(update={"worker_max_attempts": 2})
    worker = Worker(
        database,
        two_tries,
        replace(adapters, mailer=mailer_to(relay, settings)),
        clock=clock,
    )
    assert worker.drain() == 2  # the event, then the failing confirmation
    clock.now = first_retry_window(settings, clock.now)[1] + timedelta(seconds=1)
    assert worker.drain() == 1
    [confirmation] = rows(database, Topic.EMAIL)
    assert (confirmation.attempts, confirmation.dead_at) == (2, clock.now)
    assert confirmation.last_error is not None and "Connection refused" in confirmation.last_error
    clock.advance(hours=1)  # far past any backoff, still before the session
    assert worker.drain() == 0  # dead rows stay put

    dead = api.client.get("/api/v1/admin/deliveries?state=dead", headers=s["admin"]).json()
    assert [(d["id"], d["topic"], d["attempts"]) for d in dead["items"]] == [
        (confirmation.id, "email", 2)
    ]

    # The relay is back; the booking's next mail is not stuck behind the dead one.
    relay.start()
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert worker.drain() == 2  # the event, then the cancellation
    [cancellation] = [m for m in rows(database, Topic.EMAIL) if m.id != confirmation.id]
    assert cancellation.payload["kind"] == "booking_cancelled"
    assert arrivals(relay) == Counter({cancellation.mail_id: 1})

    retried = api.client.post(
        f"/api/v1/admin/deliveries/{confirmation.id}/retry", headers=s["admin"]
    )
    assert retried.status_code == 200, retried.text
    assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
    assert worker.drain() == 1
    assert arrivals(relay) == Counter({cancellation.mail_id: 1, confirmation.mail_id: 1})
    with database.read() as db:
        backlog = outbox.backlog(db, now=clock.now)
    assert (backlog.pending, backlog.dead) == (0, 0)


def test_an_event_whose_booking_is_gone_does_not_hold_up_its_stream(
    api: Api, shop: Shop, database: Database, worker: Worker, clock: Clock
) -> None:
    """A stale event (its booking deleted meanwhile) is done with, not retried forever."""
    s = shop()
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    [event] = rows(database, Topic.EVENT)
    ghost = str(uuid.uuid4())
    with database.write() as db:
        outbox.enqueue(
            db,
            org_id=event.org_id,
            topic=Topic.EVENT,
            stream=event.stream,
            dedupe_key=f"event:{uuid.uuid4()}",
            payload=event.payload | {"bookingId": ghost, "eventId": str(uuid.uuid4())},
            now=clock.now,
        )
    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    # The stream: confirmed event, the stale one, the cancellation event.
    assert worker.drain() == 3 + 2
    events = rows(database, Topic.EVENT)
    assert len(events) == 3
    assert all(e.delivered_at is not None and e.attempts == 1 for e in events)
    kinds = [m.payload["kind"] for m in rows(database, Topic.EMAIL)]
    assert kinds == ["booking_confirmed", "booking_cancelled"]


class SlowMailer(RecordingMailer):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def send(self, email: Email) -> None:
        time.sleep(self.delay_s)
        self.sent.append(email.message_id)


def test_a_slow_batch_hands_back_what_it_cannot_send_within_half_the_lease(
    database: Database, settings: Settings, adapters: Adapters, clock: Clock
) -> None:
    """A batch never runs past its lease, so no other worker can claim rows it sends."""
    with database.write() as s:
        org = create_organization(s, slug="acme", name="Acme", timezone="UTC", currency="EUR")
        for i in range(6):
            outbox.enqueue(
                s,
                org_id=org.id,
                topic=Topic.EMAIL,
                stream=f"email:b-{i}",
                dedupe_key=f"email::{i}",
                payload=email_payload(i),
                now=clock.now,
            )
    short_lease = settings.model_copy(update={"worker_batch": 6, "worker_lease_s": 1})
    mailer = SlowMailer(0.3)  # 6 x 0.3 s would outlast the 1 s lease
    worker = Worker(database, short_lease, replace(adapters, mailer=mailer), clock=clock)
    assert worker.deliver_batch() == 6
    sent_first = len(mailer.sent)
    assert 1 <= sent_first < 6
    state = rows(database, Topic.EMAIL)
    assert sum(r.delivered_at is not None for r in state) == sent_first
    # The rest are due again at once, their untried attempt not counted.
    handed_back = [r for r in state if r.delivered_at is None]
    assert all(r.attempts == 0 and r.next_attempt_at <= clock.now for r in handed_back)
    worker.drain()
    assert sorted(mailer.sent) == sorted(message_id(f"email::{i}") for i in range(6))
