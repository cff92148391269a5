"""Adversarial tests of provider appointments.

A seeded storm of concurrent bookings (one provider, any provider, a group, a shared
treatment room, recurring series), reschedules, cancellations and time off, on SQLite
and PostgreSQL, with the promises checked from the database afterwards; then edge
cases by hand through the public HTTP API, where any 500 is a bug.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from boxoffice.db.models import (
    AvailabilityBlock,
    Booking,
    BookingStatusChange,
    CalendarConnection,
    Client,
    ExternalBusyTime,
    IdempotencyKey,
    Lead,
    Provider,
    Room,
    Schedule,
    Service,
    ServiceProvider,
    Session,
    TimeOff,
)
from boxoffice.db.session import Database
from boxoffice.domain.errors import Busy, DomainError
from boxoffice.services import appointments, idempotency, links, schedules
from boxoffice.services.appointments import AppointmentRequest, Recurrence
from boxoffice.services.bookings import Customer
from boxoffice.services.organizations import create_organization
from boxoffice.services.slots import get_active_service, offering_providers, search_slots
from tests.api.test_appointments import Clinic

NOW = datetime(2030, 3, 4, 9, tzinfo=UTC)  # a Monday
MADRID = ZoneInfo("Europe/Madrid")
SECRET = "storm-" + "s" * 40
LIVE_SESSION = ("scheduled", "in_progress")
LIVE_BOOKING = ("pending", "confirmed")
HOURS = (9 * 60, 17 * 60)  # every provider works Mon-Fri 09:00-17:00 Madrid

SEED = 20300304
THREADS = 8
OPS_PER_THREAD = 40
BURST_EVERY = 8  # every 8th operation, all threads start together on one provider
# Two busy days and, for the series, the same weekdays up to four weeks later: across
# the switch to summer time on Sunday 31 March 2030.
DAYS = (date(2030, 3, 5), date(2030, 3, 6))


# --- the clinic --------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    name: str
    service_id: uuid.UUID
    provider_ids: tuple[uuid.UUID, ...]
    duration: int
    step: int


@dataclass
class World:
    org_id: uuid.UUID
    providers: dict[str, uuid.UUID]
    offers: dict[str, Offer]


def _provider(s: Any, org_id: uuid.UUID, name: str) -> uuid.UUID:
    provider = Provider(org_id=org_id, name=name, timezone="Europe/Madrid")
    s.add(provider)
    s.flush()
    schedule = Schedule(
        org_id=org_id,
        provider_id=provider.id,
        name="clinic",
        timezone="Europe/Madrid",
        is_default=True,
    )
    s.add(schedule)
    s.flush()
    for weekday in range(5):
        s.add(
            AvailabilityBlock(
                org_id=org_id,
                schedule_id=schedule.id,
                weekday=weekday,
                start_min=HOURS[0],
                end_min=HOURS[1],
            )
        )
    return provider.id


def _service(s: Any, org_id: uuid.UUID, providers: list[uuid.UUID], **fields: Any) -> uuid.UUID:
    values = {"duration_min": 60, "currency": "EUR", "capacity": 1, "max_days_ahead": 365}
    service = Service(org_id=org_id, **(values | fields))
    s.add(service)
    s.flush()
    for provider_id in providers:
        s.add(ServiceProvider(service_id=service.id, provider_id=provider_id, org_id=org_id))
    s.flush()
    return service.id


def _seed_world(database: Database) -> World:
    with database.write() as s:
        org = create_organization(
            s, slug="storm", name="Storm", timezone="Europe/Madrid", currency="EUR"
        )
        p = {name: _provider(s, org.id, name) for name in ("ana", "ben", "cara", "dan")}
        room = Room(org_id=org.id, name="Treatment", capacity=1, room_type="treatment")
        s.add(room)
        s.flush()
        specs: list[tuple[str, list[str], dict[str, Any]]] = [
            # Ana alone, with buffers on both sides.
            (
                "single",
                ["ana"],
                {
                    "duration_min": 45,
                    "slot_step_min": 15,
                    "buffer_before_min": 10,
                    "buffer_after_min": 15,
                },
            ),
            # Ana or Ben, other buffers: Ana's two services must keep both apart.
            (
                "any",
                ["ana", "ben"],
                {
                    "duration_min": 30,
                    "slot_step_min": 15,
                    "buffer_before_min": 5,
                    "buffer_after_min": 10,
                    "price_minor": 2500,
                },
            ),
            # A small group with Ben.
            ("group", ["ben"], {"duration_min": 60, "capacity": 3, "buffer_after_min": 10}),
            # Cara and Dan each need the one treatment room.
            ("room_c", ["cara"], {"duration_min": 30, "room_type": "treatment"}),
            (
                "room_d",
                ["dan"],
                {
                    "duration_min": 50,
                    "slot_step_min": 10,
                    "room_type": "treatment",
                    "buffer_after_min": 5,
                },
            ),
        ]
        offers = {}
        for name, who, fields in specs:
            ids = [p[w] for w in who]
            service_id = _service(s, org.id, ids, name=name, **fields)
            offers[name] = Offer(
                name,
                service_id,
                tuple(ids),
                fields["duration_min"],
                fields.get("slot_step_min") or fields["duration_min"],
            )
        return World(org.id, p, offers)


def _local(day: date, minutes: int) -> datetime:
    wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    return wall.replace(tzinfo=MADRID).astimezone(UTC)


# --- the storm -------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the threads saw, to check against the database afterwards."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: itertools.count[int] = field(default_factory=itertools.count)
    created: dict[uuid.UUID, str] = field(default_factory=dict)  # booking -> offer name
    placed_at: dict[uuid.UUID, int] = field(default_factory=dict)  # last placement's start
    moves: Counter[uuid.UUID] = field(default_factory=Counter)
    cancelled: set[uuid.UUID] = field(default_factory=set)
    time_off: list[tuple[uuid.UUID, datetime, datetime, int]] = field(default_factory=list)
    # Idempotency-Key -> its request, and every successful answer: (booking ids, is_new).
    keyed: dict[str, tuple[Offer, AppointmentRequest]] = field(default_factory=dict)
    answers: dict[str, list[tuple[list[uuid.UUID], bool]]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def tick(self) -> int:
        with self.lock:
            return next(self.clock)

    def known(self, rng: random.Random) -> uuid.UUID | None:
        with self.lock:
            ids = sorted(self.created)
        return rng.choice(ids) if ids else None


class Storm:
    def __init__(self, database: Database, world: World, ledger: Ledger) -> None:
        self.database = database
        self.world = world
        self.ledger = ledger

    def run(self, index: int, barrier: threading.Barrier) -> None:
        rng = random.Random(SEED * 100 + index)
        barrier.wait()
        for n in range(OPS_PER_THREAD):
            op = rng.choices(
                ["book", "recurring", "retry", "reschedule", "cancel", "time_off"],
                weights=[45, 10, 5, 24, 13, 3],
            )[0]
            if n % BURST_EVERY == BURST_EVERY - 1:
                op = "burst"
            try:
                if op == "burst":
                    # Every thread at once, on one provider (or the one room), nearby times.
                    barrier.wait(timeout=60)
                    self.burst(rng, f"t{index}-{n}", index, n // BURST_EVERY)
                else:
                    getattr(self, op)(rng, f"t{index}-{n}")
            except Busy:
                self._count_error(op, "busy")
            except DomainError as exc:
                self._count_error(op, f"{exc.code}:{exc.details.get('sqlstate', '')}")
            except Exception:
                with self.ledger.lock:
                    self.ledger.unexpected.append(f"{op}: {traceback.format_exc()}")

    def burst(self, rng: random.Random, tag: str, index: int, round_: int) -> None:
        plan = random.Random(SEED + round_)
        target = plan.choice(["single", "any", "group", "rooms"])
        day = plan.choice(DAYS)
        if target == "rooms":
            offer = self.world.offers["room_c" if index % 2 else "room_d"]
        else:
            offer = self.world.offers[target]
        base = HOURS[0] + 30 * plan.randrange(10)
        start = _local(day, base + offer.step * rng.randrange(3))
        if index == 0 and plan.random() < 0.5:
            # The admin blocks the same time meanwhile.
            self._time_off(offer.provider_ids[0], start, start + timedelta(minutes=60), tag)
            return
        self._book(rng, tag, offer, None, start, None)

    def _count_error(self, op: str, what: str) -> None:
        with self.ledger.lock:
            self.ledger.errors[f"{op} {what}"] += 1

    def _start(self, rng: random.Random, offer: Offer, day: date) -> datetime:
        if rng.random() < 0.85:  # on the service's grid, inside the hours
            slots = (HOURS[1] - HOURS[0] - offer.duration) // offer.step + 1
            return _local(day, HOURS[0] + offer.step * rng.randrange(slots))
        return _local(day, rng.randrange(8 * 60, 18 * 60, 5))  # anywhere, on 5 minutes

    def book(self, rng: random.Random, tag: str) -> None:
        offer = rng.choice(list(self.world.offers.values()))
        provider = None
        if len(offer.provider_ids) == 1 or rng.random() < 0.3:
            provider = rng.choice(offer.provider_ids)
        self._book(rng, tag, offer, provider, self._start(rng, offer, rng.choice(DAYS)), None)

    def recurring(self, rng: random.Random, tag: str) -> None:
        offer = rng.choice(list(self.world.offers.values()))
        first = DAYS[0] + timedelta(weeks=rng.randrange(3))
        every, count = rng.choice([(1, 2), (1, 3), (1, 4), (2, 2)])
        skip = frozenset()
        if count > 2 and rng.random() < 0.5:
            skip = frozenset({first + timedelta(weeks=every * rng.randrange(1, count))})
        start = self._start(rng, offer, first)
        self._book(rng, tag, offer, None, start, Recurrence(every, count, skip))

    def _book(
        self,
        rng: random.Random,
        tag: str,
        offer: Offer,
        provider: uuid.UUID | None,
        start: datetime,
        recurrence: Recurrence | None,
    ) -> None:
        email = f"{rng.choice(['Ann', 'bob', 'CARL', 'dee'])}@Example.com"
        request = AppointmentRequest(
            service_id=offer.service_id,
            provider_id=provider,
            start_at=start,
            customer=Customer(name=tag, email=email),
            notes=tag,
            recurrence=recurrence,
        )
        key = None
        if rng.random() < 0.5:
            key = tag
            with self.ledger.lock:
                self.ledger.keyed[key] = (offer, request)
        self._send(offer, request, key, "recurring" if recurrence else "book")

    def _send(
        self, offer: Offer, request: AppointmentRequest, key: str | None, outcome: str
    ) -> None:
        began = self.ledger.tick()
        with self.database.write() as s:
            booked, is_new = appointments.book_appointment(s, request, idempotency_key=key, now=NOW)
            ids = [b.id for b in booked]
        with self.ledger.lock:
            if is_new:
                for booking_id in ids:
                    self.ledger.created[booking_id] = offer.name
                    self.ledger.placed_at[booking_id] = began
            if key is not None:
                self.ledger.answers.setdefault(key, []).append((ids, is_new))
            self.ledger.outcomes[outcome if is_new else "replayed"] += 1

    def retry(self, rng: random.Random, tag: str) -> None:
        """The same request again with its Idempotency-Key, maybe still in flight."""
        with self.ledger.lock:
            keys = sorted(self.ledger.keyed)
        if keys:
            key = rng.choice(keys[-THREADS * 2 :])  # recent ones: some still in flight
            offer, request = self.ledger.keyed[key]
            self._send(offer, request, key, "retry booked anew")

    def reschedule(self, rng: random.Random, tag: str) -> None:
        booking_id = self.ledger.known(rng)
        if booking_id is None:
            return
        with self.database.read() as s:
            session = s.execute(
                select(Session)
                .join(Booking, Booking.session_id == Session.id)
                .where(Booking.id == booking_id)
            ).scalar_one()
            old_start = session.start_at
        offer = self.world.offers[self.ledger.created[booking_id]]
        # Nearby: often by less than the duration, so the new time overlaps the old.
        shift = rng.choice([-1, 1]) * offer.step * rng.randint(1, 4)
        if rng.random() < 0.2:
            shift = rng.choice([-1, 1]) * 5 * rng.randint(1, 24)
        began = self.ledger.tick()
        with self.database.write() as s:
            appointments.reschedule_appointment(
                s,
                booking_id,
                links.management_token(booking_id, secret=SECRET),
                secret=SECRET,
                start_at=old_start + timedelta(minutes=shift),
                now=NOW,
            )
        with self.ledger.lock:
            self.ledger.placed_at[booking_id] = max(self.ledger.placed_at[booking_id], began)
            self.ledger.moves[booking_id] += 1
            self.ledger.outcomes["reschedule"] += 1

    def cancel(self, rng: random.Random, tag: str) -> None:
        booking_id = self.ledger.known(rng)
        if booking_id is None:
            return
        following = rng.random() < 0.4
        with self.database.write() as s:
            done = appointments.cancel_appointment(
                s,
                booking_id,
                links.management_token(booking_id, secret=SECRET),
                secret=SECRET,
                following=following,
                now=NOW,
            )
            ids = [b.id for b, _ in done]
        with self.ledger.lock:
            self.ledger.cancelled.update(ids)
            self.ledger.outcomes["cancel following" if following else "cancel"] += 1

    def time_off(self, rng: random.Random, tag: str) -> None:
        name = rng.choice(sorted(self.world.providers))
        start = _local(rng.choice(DAYS), rng.randrange(9 * 60, 16 * 60, 15))
        end = start + timedelta(minutes=rng.choice([30, 45, 60, 90]))
        self._time_off(self.world.providers[name], start, end, tag)

    def _time_off(self, provider_id: uuid.UUID, start: datetime, end: datetime, tag: str) -> None:
        with self.database.write() as s:
            provider = s.get(Provider, provider_id)
            assert provider is not None
            schedules.add_time_off(s, provider, start_at=start, end_at=end, reason=tag)
        committed = self.ledger.tick()
        with self.ledger.lock:
            self.ledger.time_off.append((provider_id, start, end, committed))
            self.ledger.outcomes["time_off"] += 1


# --- the invariants ------------------------------------------------------------------


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _padded(x: Session) -> tuple[datetime, datetime]:
    return (
        x.start_at - timedelta(minutes=x.buffer_before_min),
        x.end_at + timedelta(minutes=x.buffer_after_min),
    )


def check_invariants(
    database: Database, world: World, ledger: Ledger, stats: Counter[str]
) -> list[str]:
    problems: list[str] = []
    with database.read() as s:
        sessions = {x.id: x for x in s.execute(select(Session)).scalars()}
        bookings = list(s.execute(select(Booking)).scalars())
        history = Counter(s.execute(select(BookingStatusChange.booking_id)).scalars())
        steps = {
            sid: (sv.slot_step_min or sv.duration_min)
            for sid, sv in ((x.id, x) for x in s.execute(select(Service)).scalars())
        }
        time_off = list(s.execute(select(TimeOff)).scalars())
    live = [x for x in sessions.values() if x.status in LIVE_SESSION]
    stats["live sessions"] = len(live)

    # No provider in two live sessions at once, buffers included; no room either.
    for key in ("provider_id", "room_id"):
        by: dict[uuid.UUID, list[Session]] = {}
        for x in live:
            if getattr(x, key) is not None:
                by.setdefault(getattr(x, key), []).append(x)
        for owner, xs in by.items():
            for a, b in itertools.combinations(sorted(xs, key=lambda x: x.start_at), 2):
                pad = key == "provider_id"
                ia = _padded(a) if pad else (a.start_at, a.end_at)
                ib = _padded(b) if pad else (b.start_at, b.end_at)
                stats[f"{key} pairs checked"] += 1
                stats[f"{key} pairs touching"] += ia[1] == ib[0] or ib[1] == ia[0]
                if _overlap(ia, ib):
                    problems.append(
                        f"{key} {owner}: {a.start_at:%m-%d %H:%M}-{a.end_at:%H:%M} "
                        f"(+{a.buffer_before_min}/{a.buffer_after_min}) overlaps "
                        f"{b.start_at:%m-%d %H:%M}-{b.end_at:%H:%M} "
                        f"(+{b.buffer_before_min}/{b.buffer_after_min})"
                    )

    # Seats: the count is the live bookings, within capacity; an empty appointment is gone.
    holding = Counter(b.session_id for b in bookings if b.status in LIVE_BOOKING)
    for x in sessions.values():
        if x.booked_count != holding[x.id] or not 0 <= x.booked_count <= x.max_participants:
            problems.append(
                f"session {x.start_at:%m-%d %H:%M}: booked_count {x.booked_count}, "
                f"{holding[x.id]} live bookings, max {x.max_participants}"
            )
        if x.kind == "appointment" and (x.booked_count == 0) != (x.status == "canceled"):
            problems.append(f"session {x.id}: {x.status} with {x.booked_count} seats taken")

    # Every live booking: inside its provider's hours, on the grid, outside time off
    # committed before it was placed.
    for b in bookings:
        if b.status not in LIVE_BOOKING:
            continue
        x = sessions[b.session_id]  # type: ignore[index]
        start, end = x.start_at.astimezone(MADRID), x.end_at.astimezone(MADRID)
        start_min = start.hour * 60 + start.minute
        end_min = end.hour * 60 + end.minute
        if (
            start.date() != end.date()
            or start.weekday() > 4
            or not HOURS[0] <= start_min < end_min <= HOURS[1]
            or (start_min - HOURS[0]) % steps[x.service_id]  # type: ignore[index]
        ):
            problems.append(f"booking {b.id} at {start:%Y-%m-%d %H:%M %Z} is outside hours")
        for provider_id, t0, t1, committed in ledger.time_off:
            if provider_id != x.provider_id or committed > ledger.placed_at.get(b.id, -1):
                continue
            stats["(booking, earlier time off) pairs checked"] += 1
            if _overlap(_padded(x), (t0, t1)):
                problems.append(f"booking {b.id} at {start:%m-%d %H:%M} is in time off")
        if x.start_at <= NOW:
            problems.append(f"booking {b.id} is in the past")

    # Nothing lost, nothing invented: the bookings are those the callers were given.
    in_db = {b.id for b in bookings}
    if in_db != set(ledger.created):
        problems.append(
            f"{len(in_db - set(ledger.created))} bookings nobody was told about, "
            f"{len(set(ledger.created) - in_db)} bookings lost"
        )
    for b in bookings:
        if (b.id in ledger.cancelled) != (b.status == "cancelled"):
            problems.append(f"booking {b.id} is {b.status}; cancelled: {b.id in ledger.cancelled}")
        if b.sequence != ledger.moves[b.id]:
            problems.append(f"booking {b.id}: sequence {b.sequence}, {ledger.moves[b.id]} moves")
        expected = 1 + ledger.moves[b.id] + (b.status == "cancelled")
        if history[b.id] != expected:
            problems.append(f"booking {b.id}: {history[b.id]} history rows, expected {expected}")
    # One Idempotency-Key, one set of bookings: made once, then replayed.
    for key, answers in ledger.answers.items():
        if len({tuple(ids) for ids, _ in answers}) != 1 or sum(new for _, new in answers) != 1:
            problems.append(f"key {key}: answers {answers}")
    assert len(time_off) == len(ledger.time_off)
    return problems


class _Rollback(Exception):
    pass


def check_offered_is_bookable(
    database: Database, world: World, day: date, stats: Counter[str]
) -> list[str]:
    """After the storm: every start on a service's grid that the slot search offers can
    be booked, and every one it does not offer cannot (each try rolled back)."""
    problems = []
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for offer in world.offers.values():
        with database.read() as s:
            found = search_slots(
                s,
                offer.service_id,
                provider_id=None,
                start=start,
                end=start + timedelta(days=1),
                now=NOW,
            )
            offered = {x.start_at for x in found.slots}
        for k in range(0, HOURS[1] - HOURS[0] - offer.duration + 1, offer.step):
            at = _local(day, HOURS[0] + k)
            request = AppointmentRequest(
                service_id=offer.service_id,
                provider_id=None,
                start_at=at,
                customer=Customer(name="probe", email="probe@example.com"),
            )
            try:
                with database.write() as s:
                    appointments.book_appointment(s, request, idempotency_key=None, now=NOW)
                    raise _Rollback
            except _Rollback:
                bookable = True
            except DomainError:
                bookable = False
            stats["grid starts probed"] += 1
            stats["grid starts offered"] += at in offered
            if bookable != (at in offered):
                problems.append(
                    f"{offer.name} at {at:%H:%M}Z: offered {at in offered}, bookable {bookable}"
                )
    return problems


def test_storm_of_bookings_moves_cancellations_and_time_off(database: Database) -> None:
    world = _seed_world(database)
    ledger = Ledger()
    storm = Storm(database, world, ledger)
    barrier = threading.Barrier(THREADS)
    threads = [threading.Thread(target=storm.run, args=(i, barrier)) for i in range(THREADS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    stats: Counter[str] = Counter()
    problems = check_invariants(database, world, ledger, stats)
    problems += check_offered_is_bookable(database, world, DAYS[0], stats)
    report = (
        f"\n{database.engine.dialect.name}: {THREADS * OPS_PER_THREAD} operations in "
        f"{elapsed:.1f}s\nsucceeded: {dict(sorted(ledger.outcomes.items()))}"
        f"\nrefused: {dict(sorted(ledger.errors.items()))}"
        f"\nchecked: {dict(stats)}"
    )
    print(report)
    assert not ledger.unexpected, "\n".join(ledger.unexpected[:3])
    # The exclusion constraints are the backstop: under the provider and room locks they
    # must never be what refuses a booking.
    assert not [e for e in ledger.errors if "23P01" in e], report
    assert not problems, "\n".join(problems[:20]) + report
    # The storm did exercise every path.
    assert {"book", "recurring", "replayed", "reschedule", "cancel", "time_off"} <= set(
        ledger.outcomes
    )


# --- edge cases through the public HTTP API ------------------------------------------------


@pytest.fixture
def clinic(database: Database, client: TestClient) -> Clinic:
    return Clinic(database, client)


def _no_5xx(r: Any) -> Any:
    assert r.status_code < 500, r.text
    return r


def _sessions(database: Database) -> list[tuple[datetime, int, str]]:
    with database.read() as s:
        rows = s.execute(
            select(Session.start_at, Session.booked_count, Session.status).order_by(
                Session.start_at, Session.status
            )
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


WEIRD_ZONES = [
    "Europe",
    "Europe/",
    "a" * 300,
    " UTC",
    "../etc/passwd",
    "Europe/Madrid\x00",
    "zone.tab",
    "__pycache__",
    "Mars/Base",
    "",
    "UTC\n",
]


def test_weird_time_zones_are_4xx(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider())
    for zone in WEIRD_ZONES:
        r = _no_5xx(
            clinic.client.get(
                f"/api/v1/public/services/{service}/slots",
                params={
                    "start": "2030-03-05T00:00:00Z",
                    "end": "2030-03-06T00:00:00Z",
                    "timezone": zone,
                },
            )
        )
        assert r.status_code in (400, 422), (zone, r.text)
        r = _no_5xx(clinic.book(service, "2030-03-05T08:00:00Z", timezone=zone))
        assert r.status_code == 422, (zone, r.text)
    assert _sessions(database) == []


def _url(booking: dict[str, Any], action: str = "") -> str:
    return f"/api/v1/public/bookings/{booking['id']}{action}"


@pytest.mark.parametrize(
    ("start", "status", "code"),
    [
        ("2000-01-01T00:00:00Z", 409, "slot_unavailable"),  # long past
        ("2030-03-04T08:00:00Z", 409, "slot_unavailable"),  # an hour ago
        ("2999-12-31T23:00:00Z", 409, "slot_unavailable"),  # beyond the horizon
        ("2999-12-31T23:00:00-23:59", 409, "slot_unavailable"),  # ...in year 3000 UTC
        ("2000-01-01T00:00:00+23:59", 409, "slot_unavailable"),  # ...in 1999 UTC
        ("1999-12-31T23:00:00Z", 422, None),
        ("3000-01-01T00:00:00Z", 422, None),
        ("2030-03-05T08:00:00", 422, None),  # no offset
        ("2030-03-05T08:00:00.000001Z", 409, "slot_unavailable"),  # off the grid
        ("9999-12-31T23:59:59Z", 422, None),
    ],
)
def test_start_times_far_away_are_refused_cleanly(
    clinic: Clinic, database: Database, start: str, status: int, code: str | None
) -> None:
    service = clinic.service(clinic.provider())
    r = _no_5xx(clinic.book(service, start))
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code
    # The slot search and its explanation at the same instant.
    r = _no_5xx(
        clinic.client.get(
            f"/api/v1/public/services/{service}/slots",
            params={"start": start, "end": start, "explain": True, "at": start},
        )
    )
    assert r.status_code in (400, 422)
    assert _sessions(database) == []


def test_far_future_window_and_reschedule(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider())
    r = _no_5xx(
        clinic.client.get(
            f"/api/v1/public/services/{service}/slots",
            params={
                "start": "2999-11-30T00:00:00Z",
                "end": "2999-12-31T23:59:59-23:59",
                "explain": True,
                "at": "2999-12-31T23:59:59-23:59",
            },
        )
    )
    assert r.status_code == 200, r.text
    assert r.json()["slots"] == []
    assert r.json()["explanation"]["reason"] == "too_far_ahead"
    booking = clinic.book(service, "2030-03-05T08:00:00Z").json()["booking"]
    for start in ("2999-12-31T08:00:00Z", "2000-01-03T08:00:00Z", "2030-03-05T08:00:00+00:00"):
        r = _no_5xx(
            clinic.client.put(
                _url(booking, "/reschedule"),
                params={"token": booking["manageToken"]},
                json={"startTime": start},
            )
        )
        assert r.status_code in (409, 422), r.text
    assert _sessions(database) == [(datetime(2030, 3, 5, 8, tzinfo=UTC), 1, "scheduled")]


def test_recurrence_keeps_local_time_across_autumn_dst(clinic: Clinic) -> None:
    service = clinic.service(clinic.provider())
    r = clinic.book(service, "2030-10-22T08:00:00Z", recurrence={"everyWeeks": 1, "count": 3})
    assert r.status_code == 201, r.text
    # 10:00 Madrid each Tuesday: summer time, then winter time from 27 October.
    assert [b["startTime"] for b in r.json()["bookings"]] == [
        "2030-10-22T08:00:00Z",
        "2030-10-29T09:00:00Z",
        "2030-11-05T09:00:00Z",
    ]


@pytest.mark.parametrize(
    ("skip", "booked"),
    [
        (["2030-03-05"], ["2030-03-12", "2030-03-19"]),  # the first date
        (["2030-03-12", "2030-03-12"], ["2030-03-05", "2030-03-19"]),  # twice
        (["2030-03-05", "2030-03-12", "2030-03-19"], None),  # every date: 422
    ],
)
def test_skip_dates_of_the_series(
    clinic: Clinic, database: Database, skip: list[str], booked: list[str] | None
) -> None:
    service = clinic.service(clinic.provider())
    r = _no_5xx(
        clinic.book(
            service,
            "2030-03-05T09:00:00Z",
            recurrence={"everyWeeks": 1, "count": 3, "skipDates": skip},
        )
    )
    if booked is None:
        assert r.status_code == 422, r.text
        assert _sessions(database) == []
    else:
        assert r.status_code == 201, r.text
        assert [b["startTime"][:10] for b in r.json()["bookings"]] == booked


def test_group_joining_after_a_reschedule(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider(), capacity=3)
    ten, eleven = "2030-03-05T10:00:00Z", "2030-03-05T11:00:00Z"
    a = clinic.book(service, ten, email="a@example.com").json()["booking"]
    clinic.book(service, ten, email="b@example.com")
    moved = clinic.client.put(
        _url(a, "/reschedule"), params={"token": a["manageToken"]}, json={"startTime": eleven}
    )
    assert moved.status_code == 200, moved.text
    assert clinic.book(service, eleven, email="c@example.com").status_code == 201
    assert clinic.book(service, ten, email="d@example.com").status_code == 201
    seats = {s["startTime"]: s["seatsLeft"] for s in clinic.slots(service)}
    assert (seats[ten], seats[eleven]) == (1, 1)
    back = clinic.client.put(
        _url(a, "/reschedule"), params={"token": a["manageToken"]}, json={"startTime": ten}
    )
    assert back.status_code == 200, back.text
    assert clinic.book(service, ten, email="e@example.com").status_code == 409
    t10, t11 = datetime(2030, 3, 5, 10, tzinfo=UTC), datetime(2030, 3, 5, 11, tzinfo=UTC)
    assert _sessions(database) == [(t10, 3, "scheduled"), (t11, 1, "scheduled")]


def test_provider_deactivated_between_search_and_book(clinic: Clinic, database: Database) -> None:
    ana = clinic.provider()
    service = clinic.service(ana)
    assert clinic.slots(service, providerId=ana)
    with database.write() as s:
        s.get(Provider, uuid.UUID(ana)).is_active = False  # type: ignore[union-attr]
    chosen = _no_5xx(clinic.book(service, "2030-03-05T08:00:00Z", providerId=ana))
    anyone = _no_5xx(clinic.book(service, "2030-03-05T08:00:00Z"))
    assert (chosen.status_code, anyone.status_code) == (404, 409)
    assert _sessions(database) == []


def test_management_tokens_cancel_twice_and_reschedule_cancelled(
    clinic: Clinic, database: Database
) -> None:
    service = clinic.service(clinic.provider())
    mine = clinic.book(service, "2030-03-05T08:00:00Z").json()["booking"]
    other = clinic.book(service, "2030-03-05T10:00:00Z", email="o@example.com").json()["booking"]
    series = clinic.book(
        service,
        "2030-03-06T08:00:00Z",
        email="s@example.com",
        recurrence={"everyWeeks": 1, "count": 3},
    ).json()["bookings"]
    before = _sessions(database)
    forged = mine["manageToken"][:-2] + ("AA" if mine["manageToken"][-2:] != "AA" else "BB")
    for token in (other["manageToken"], series[0]["manageToken"], forged, "x", "\x00", "a" * 1000):
        assert _no_5xx(clinic.client.get(_url(mine), params={"token": token})).status_code == 401
        r = _no_5xx(clinic.client.put(_url(mine, "/cancel"), params={"token": token}))
        assert r.status_code == 401
        r = _no_5xx(
            clinic.client.put(
                _url(mine, "/reschedule"),
                params={"token": token},
                json={"startTime": "2030-03-05T12:00:00Z"},
            )
        )
        assert r.status_code == 401
    assert _no_5xx(clinic.client.get(_url(mine), params={"token": "a" * 1001})).status_code == 422
    assert _no_5xx(clinic.client.get(_url(mine))).status_code == 422
    assert _sessions(database) == before
    token = {"token": mine["manageToken"]}
    assert clinic.client.put(_url(mine, "/cancel"), params=token).status_code == 200
    again = _no_5xx(clinic.client.put(_url(mine, "/cancel"), params=token))
    assert again.status_code == 409, again.text
    following = _no_5xx(
        clinic.client.put(_url(mine, "/cancel"), params=token | {"scope": "following"})
    )
    assert following.status_code == 409
    moved = _no_5xx(
        clinic.client.put(
            _url(mine, "/reschedule"), params=token, json={"startTime": "2030-03-05T12:00:00Z"}
        )
    )
    assert moved.status_code == 409, moved.text
    # A series: cancel the middle one, then "following" from the first.
    mid = {"token": series[1]["manageToken"]}
    assert clinic.client.put(_url(series[1], "/cancel"), params=mid).status_code == 200
    r = _no_5xx(
        clinic.client.put(
            _url(series[0], "/cancel"),
            params={"token": series[0]["manageToken"], "scope": "following"},
        )
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["bookings"]) == 2
    bad = _no_5xx(
        clinic.client.put(_url(series[0], "/cancel"), params=mid | {"scope": "everything"})
    )
    assert bad.status_code == 422
    with database.read() as s:
        assert all(
            x.booked_count == 0
            for x in s.execute(select(Session)).scalars()
            if x.status == "canceled"
        )


BAD_BODIES = [
    ("notes", "a\x00b"),
    ("notes", "n" * 2001),
    ("notes", "n" * 1_000_000),
    ("name", "Ann\x00"),
    ("name", "   "),
    ("name", "N" * 201),
    ("email", "ann\x00@example.com"),
    ("email", "ann@example"),
    ("email", "a" * 300 + "@example.com"),
    ("phone", "1" * 41),
    ("phone", "\x00"),
    ("serviceId", "not-a-uuid"),
    ("extra", "field"),
]


def test_bad_booking_bodies_are_422_and_change_nothing(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider())
    for where, value in BAD_BODIES:
        body: dict[str, Any] = {
            "serviceId": service,
            "startTime": "2030-03-05T08:00:00Z",
            "customer": {"name": "Ann", "email": "ann@example.com"},
        }
        if where in ("name", "email", "phone"):
            body["customer"][where] = value
        else:
            body[where] = value
        r = _no_5xx(clinic.client.post("/api/v1/public/bookings", json=body))
        assert r.status_code == 422, (where, value[:20], r.text)
    assert _sessions(database) == []


def test_email_case_and_whitespace_make_one_client(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider())
    with database.write() as s:
        s.add(Lead(org_id=clinic.org_id, email="ann@example.com", name="Ann", source="ad"))
    for i, email in enumerate(
        ["ANN@EXAMPLE.COM", " ann@example.com ", "Ann@Example.Com\t", "ann@EXAMPLE.com"]
    ):
        r = _no_5xx(clinic.book(service, f"2030-03-05T{8 + i:02d}:00:00Z", email=email))
        assert r.status_code == 201, (email, r.text)
    with database.read() as s:
        clients = s.execute(select(Client.email)).scalars().all()
        lead = s.execute(select(Lead)).scalar_one()
    assert clients == ["ann@example.com"]
    assert lead.status == "converted"


# --- bugs found ---------------------------------------------------------------------------


def test_a_room_busy_in_its_calendar_is_not_claimed(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider(), room_type="treatment")
    with database.write() as s:
        room = Room(org_id=clinic.org_id, name="T1", capacity=1, room_type="treatment")
        s.add(room)
        s.flush()
        connection = CalendarConnection(
            org_id=clinic.org_id, room_id=room.id, url="https://cal.example/room"
        )
        s.add(connection)
        s.flush()
        s.add(
            ExternalBusyTime(
                org_id=clinic.org_id,
                connection_id=connection.id,
                room_id=room.id,
                uid="maintenance",
                start_at=datetime(2030, 3, 5, 10, tzinfo=UTC),
                end_at=datetime(2030, 3, 5, 11, tzinfo=UTC),
            )
        )
    offered = "2030-03-05T10:00:00Z" in [s["startTime"] for s in clinic.slots(service)]
    booked = _no_5xx(clinic.book(service, "2030-03-05T10:00:00Z"))
    # Today: offered, and booked (201) into the room while it is busy in its calendar.
    assert (offered, booked.status_code) == (False, 409)


def _new_york_provider(database: Database, org_id: uuid.UUID) -> str:
    """A provider of the Madrid clinic who works 09:00-17:00 New York time."""
    with database.write() as s:
        provider = Provider(org_id=org_id, name="Nia", timezone="America/New_York")
        s.add(provider)
        s.flush()
        schedule = Schedule(
            org_id=org_id,
            provider_id=provider.id,
            name="online",
            timezone="America/New_York",
            is_default=True,
        )
        s.add(schedule)
        s.flush()
        for weekday in range(5):
            s.add(
                AvailabilityBlock(
                    org_id=org_id,
                    schedule_id=schedule.id,
                    weekday=weekday,
                    start_min=HOURS[0],
                    end_min=HOURS[1],
                )
            )
        return str(provider.id)


def test_a_weekly_series_keeps_the_providers_local_time(clinic: Clinic) -> None:
    nia = _new_york_provider(clinic.database, clinic.org_id)
    service = clinic.service(nia)
    # 09:00 in New York on Tuesday 5 March 2030 (EST); the US moves to EDT on 10 March,
    # Madrid only on 31 March.
    r = _no_5xx(
        clinic.book(
            service,
            "2030-03-05T14:00:00Z",
            timezone="America/New_York",
            recurrence={"everyWeeks": 1, "count": 5},
        )
    )
    assert r.status_code == 201, r.text
    local = [
        datetime.fromisoformat(b["startTime"]).astimezone(ZoneInfo("America/New_York"))
        for b in r.json()["bookings"]
    ]
    # Today: 09:00, 10:00, 10:00, 10:00, 09:00 New York time.
    assert [f"{t:%H:%M}" for t in local] == ["09:00"] * 5


@pytest.mark.parametrize("skip", ["2030-03-13", "2031-03-12"])
def test_a_skip_date_outside_the_series_is_refused(
    clinic: Clinic, database: Database, skip: str
) -> None:
    service = clinic.service(clinic.provider())
    r = _no_5xx(
        clinic.book(
            service,
            "2030-03-05T09:00:00Z",
            recurrence={"everyWeeks": 1, "count": 3, "skipDates": [skip]},
        )
    )
    # Today: 201 with all three Tuesdays booked, the 12th included.
    assert r.status_code == 422, [b["startTime"] for b in r.json()["bookings"]]
    assert _sessions(database) == []


_FINGERPRINT = """
import sys, uuid
from datetime import UTC, date, datetime
from boxoffice.services import appointments, idempotency
from boxoffice.services.bookings import Customer
request = appointments.AppointmentRequest(
    service_id=uuid.UUID(sys.argv[1]),
    provider_id=None,
    start_at=datetime(2030, 3, 5, 9, tzinfo=UTC),
    customer=Customer(name="Ann", email="ann@example.com"),
    recurrence=appointments.Recurrence(
        1, 6, frozenset(date.fromisoformat(d) for d in sys.argv[2:])
    ),
)
print(idempotency.fingerprint(appointments._fingerprint(request)))
"""


def test_a_recurring_retry_is_replayed_by_any_worker_process(
    clinic: Clinic, database: Database
) -> None:
    service = clinic.service(clinic.provider())
    skip = ["2030-03-12", "2030-03-19", "2030-03-26"]
    r = clinic.client.post(
        "/api/v1/public/bookings",
        json={
            "serviceId": service,
            "startTime": "2030-03-05T09:00:00Z",
            "customer": {"name": "Ann", "email": "ann@example.com"},
            "recurrence": {"everyWeeks": 1, "count": 6, "skipDates": skip},
        },
        headers={"Idempotency-Key": "weekly-1"},
    )
    assert r.status_code == 201, r.text
    with database.read() as s:
        stored = s.execute(select(IdempotencyKey.request_hash)).scalar_one()
    # This process computes the stored fingerprint (the request is the same one)...
    request = AppointmentRequest(
        service_id=uuid.UUID(service),
        provider_id=None,
        start_at=datetime(2030, 3, 5, 9, tzinfo=UTC),
        customer=Customer(name="Ann", email="ann@example.com"),
        recurrence=Recurrence(1, 6, frozenset(date.fromisoformat(d) for d in skip)),
    )
    assert idempotency.fingerprint(appointments._fingerprint(request)) == stored
    # ...but another worker process, with another hash seed, may not.
    seen = {
        subprocess.run(
            [sys.executable, "-c", _FINGERPRINT, service, *skip],
            env=os.environ | {"PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(3)
    }
    assert seen == {stored}


def _wait_for_a_lock_wait(
    database: Database, thread: threading.Thread, timeout: float = 10
) -> None:
    """Return once ``thread`` has finished or some backend of this database waits for a
    lock (PostgreSQL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        with database.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.02)
    assert not thread.is_alive(), "nobody waited for a lock"


def _in_thread(fn: Any) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, failures


def _book_one(database: Database, offer: Offer, start: datetime, email: str) -> uuid.UUID:
    with database.write() as s:
        booked, _ = appointments.book_appointment(
            s,
            AppointmentRequest(
                service_id=offer.service_id,
                provider_id=offer.provider_ids[0],
                start_at=start,
                customer=Customer(name="X", email=email),
            ),
            idempotency_key=None,
            now=NOW,
        )
        return booked[0].id


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_cancel_and_a_booking_of_the_same_provider_do_not_deadlock(
    database: Database,
) -> None:
    world = _seed_world(database)
    offer = world.offers["room_c"]
    victim = _book_one(database, offer, _local(DAYS[0], 10 * 60), "v@example.com")
    # Today: the cancel gets 409 "A concurrent change won" (40P01) after a second.
    assert _book_while_a_cancel_waits(database, offer, victim) == []


def _book_while_a_cancel_waits(
    database: Database, offer: Offer, victim: uuid.UUID
) -> list[BaseException]:
    """A booking of Cara's room service locks Cara; her customer cancels the 10:00
    appointment meanwhile; the booking then claims the treatment room. The errors."""

    def cancel() -> None:
        with database.write() as c:
            appointments.cancel_appointment(
                c,
                victim,
                links.management_token(victim, secret=SECRET),
                secret=SECRET,
                following=False,
                now=NOW,
            )

    thread, failures = None, []
    try:
        with database.write() as s:
            service = get_active_service(s, offer.service_id)
            offering_providers(s, service, offer.provider_ids[0], lock=True)
            thread, failures = _in_thread(cancel)
            _wait_for_a_lock_wait(database, thread)
            appointments.book_appointment(
                s,
                AppointmentRequest(
                    service_id=offer.service_id,
                    provider_id=offer.provider_ids[0],
                    start_at=_local(DAYS[0], 12 * 60),
                    customer=Customer(name="Y", email="y@example.com"),
                ),
                idempotency_key=None,
                now=NOW,
            )
    except DomainError as exc:  # the deadlock's victim may be either transaction
        failures.append(exc)
    finally:
        if thread is not None:
            thread.join()
    return failures


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_cancel_following_survives_a_concurrent_cancel_of_a_later_date(
    database: Database,
) -> None:
    world = _seed_world(database)
    offer = world.offers["single"]
    with database.write() as s:
        series, _ = appointments.book_appointment(
            s,
            AppointmentRequest(
                service_id=offer.service_id,
                provider_id=None,
                start_at=_local(DAYS[0], 10 * 60),
                customer=Customer(name="S", email="s@example.com"),
                recurrence=Recurrence(1, 3),
            ),
            idempotency_key=None,
            now=NOW,
        )
        ids = [b.id for b in series]

    def cancel(booking_id: uuid.UUID, *, following: bool) -> None:
        with database.write() as c:
            appointments.cancel_appointment(
                c,
                booking_id,
                links.management_token(booking_id, secret=SECRET),
                secret=SECRET,
                following=following,
                now=NOW,
            )

    with database.write() as s:
        # The last date is being cancelled on its own...
        appointments.cancel_appointment(
            s,
            ids[2],
            links.management_token(ids[2], secret=SECRET),
            secret=SECRET,
            following=False,
            now=NOW,
        )
        # ...while the customer cancels "this and following" from the first.
        thread, failures = _in_thread(lambda: cancel(ids[0], following=True))
        _wait_for_a_lock_wait(database, thread)
    thread.join()
    assert failures == []
    with database.read() as s:
        statuses = [s.get(Booking, i).status for i in ids]  # type: ignore[union-attr]
    assert statuses == ["cancelled"] * 3
