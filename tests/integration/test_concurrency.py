"""Races against a live server: real processes, real HTTP, real threads.

`boxoffice serve --workers 2` runs as a subprocess on the test database, so two
server processes compete for the same rows exactly as in production.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from boxoffice.db.models import (
    AvailabilityBlock,
    Booking,
    Provider,
    Schedule,
    Service,
    ServiceProvider,
    Session,
)
from boxoffice.db.session import Database
from boxoffice.domain.bookings import SEAT_HOLDING
from boxoffice.services import auth, rooms, timeslots
from boxoffice.services.organizations import create_organization
from tests.conftest import PASSWORD


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(database_url: str, tmp_path: Path, secret_key: str | None = None) -> Iterator[str]:
    """`boxoffice serve --workers 2` on the test database, until the block ends; its
    address. ``secret_key``: the instance secret, when the test needs to know it."""
    port = _free_port()
    env = os.environ | {
        "BOXOFFICE_DATABASE_URL": database_url,
        "BOXOFFICE_DATA_DIR": str(tmp_path / "data"),
        "BOXOFFICE_SECRET_KEY": secret_key or uuid.uuid4().hex,
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxoffice.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _request(base, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "server.log").read_text())
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    with serving(database_url, tmp_path) as base:
        yield base


def _request(
    base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(base, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(
            method,
            path,
            body=payload,
            headers={"Content-Type": "application/json"} | (headers or {}),
        )
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def _seed(
    database: Database, base: str, max_bookings: list[int]
) -> tuple[list[str], list[dict[str, str]]]:
    """An organisation with one room per capacity, a timeslot in each, five customers."""
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).date()
    slot_ids: list[str] = []
    with database.write() as s:
        org = create_organization(s, slug="race", name="Race", timezone="UTC", currency="EUR")
        for n in max_bookings:
            room = rooms.create_room(
                s,
                org_id=org.id,
                name=f"Room {n}",
                capacity=max(n, 1),
                room_type="meeting",
                hourly_rate_minor=0,
            )
            timeslots.generate_timeslots(
                s,
                org_id=org.id,
                room_id=room.id,
                start_date=tomorrow,
                end_date=tomorrow,
                slot_min=60,
                day_start=dtime(10),
                day_end=dtime(11),
                weekdays=None,
                max_bookings=n,
                now=now,
            )
            slot_ids.append(
                str(s.execute(select(Session.id).where(Session.room_id == room.id)).scalar_one())
            )
        emails = [f"c{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(5)]
        for email in emails:
            auth.register_user(s, email=email, password=PASSWORD, name="Racer")
    headers = []
    for email in emails:
        status, token = _request(
            base, "POST", "/api/v1/auth/token", {"email": email, "password": PASSWORD}
        )
        assert status == 200, token
        headers.append({"Authorization": f"Bearer {token['accessToken']}"})
    return slot_ids, headers


def _fire(
    base: str,
    calls: list[tuple[str, dict[str, Any], dict[str, str]]],
    methods: dict[int, str] | None = None,
) -> list[tuple[int, Any]]:
    """Send all calls at once from one thread each, released together by a barrier; each
    a POST unless ``methods`` gives its index another method."""
    results: list[tuple[int, Any]] = [(0, None)] * len(calls)
    barrier = threading.Barrier(len(calls))

    def worker(i: int) -> None:
        path, body, headers = calls[i]
        conn = http.client.HTTPConnection(base, timeout=60)
        conn.connect()
        barrier.wait()
        try:
            conn.request(
                (methods or {}).get(i, "POST"),
                path,
                body=json.dumps(body),
                headers={"Content-Type": "application/json"} | headers,
            )
            response = conn.getresponse()
            results[i] = (response.status, json.loads(response.read()))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _seats_match_bookings(database: Database) -> None:
    with database.read() as s:
        held = dict(
            s.execute(
                select(Booking.session_id, func.count())
                .where(Booking.status.in_([s.value for s in SEAT_HOLDING]))
                .group_by(Booking.session_id)
            ).all()
        )
        for session in s.execute(select(Session)).scalars():
            assert held.get(session.id, 0) == session.booked_count <= session.max_participants


@pytest.mark.parametrize("max_bookings", [1, 3])
def test_exactly_capacity_succeeds_under_60_simultaneous_requests(
    database: Database, live_server: str, max_bookings: int
) -> None:
    [slot_id], customers = _seed(database, live_server, [max_bookings])
    calls = [
        ("/api/v1/bookings", {"timeslotId": slot_id}, customers[i % len(customers)])
        for i in range(60)
    ]
    results = _fire(live_server, calls)
    codes = Counter(status for status, _ in results)
    assert codes == {201: max_bookings, 409: 60 - max_bookings}, results
    assert {body["error"]["code"] for status, body in results if status == 409} == {"slot_full"}
    _seats_match_bookings(database)


def test_concurrent_retries_with_one_idempotency_key_book_once(
    database: Database, live_server: str
) -> None:
    [slot_id], customers = _seed(database, live_server, [5])
    key = {"Idempotency-Key": "same-request"}
    calls = [("/api/v1/bookings", {"timeslotId": slot_id}, customers[0] | key) for _ in range(20)]
    results = _fire(live_server, calls)
    assert {status for status, _ in results} == {201}, results
    assert len({body["id"] for _, body in results}) == 1
    _seats_match_bookings(database)
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Booking)).scalar_one() == 1


def test_mixed_race_of_bookings_and_reschedules_keeps_counts_exact(
    database: Database, live_server: str
) -> None:
    slot_ids, customers = _seed(database, live_server, [2, 2, 2])
    # Fill the first timeslot, then everyone races to move into or book the others.
    first = [
        _request(live_server, "POST", "/api/v1/bookings", {"timeslotId": slot_ids[0]}, c)
        for c in customers[:2]
    ]
    assert [status for status, _ in first] == [201, 201]
    calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for i in range(30):
        calls.append(("/api/v1/bookings", {"timeslotId": slot_ids[1 + i % 2]}, customers[i % 5]))
    results = _fire(live_server, calls)
    codes = Counter(status for status, _ in results)
    assert codes == {201: 4, 409: 26}, results
    moves = []
    for (status, body), customer in zip(first, customers[:2], strict=True):
        assert status == 201
        moves.append(
            _request(
                live_server,
                "PUT",
                f"/api/v1/bookings/{body['id']}/reschedule",
                {"timeslotId": slot_ids[1]},
                customer,
            )[0]
        )
    assert moves == [409, 409]
    _seats_match_bookings(database)


def _seed_provider(database: Database, *, providers: int, capacity: int) -> tuple[str, str]:
    """A service offered by ``providers`` providers working every day 00:00-24:00 UTC;
    returns the service id and a start time tomorrow."""
    start = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    with database.write() as s:
        org = create_organization(s, slug="clinic", name="Clinic", timezone="UTC", currency="EUR")
        service = Service(
            org_id=org.id, name="Therapy", duration_min=60, currency="EUR", capacity=capacity
        )
        s.add(service)
        s.flush()
        for i in range(providers):
            provider = Provider(org_id=org.id, name=f"P{i}", timezone="UTC")
            s.add(provider)
            s.flush()
            schedule = Schedule(
                org_id=org.id, provider_id=provider.id, name="main", timezone="UTC", is_default=True
            )
            s.add(schedule)
            s.flush()
            for weekday in range(7):
                s.add(
                    AvailabilityBlock(
                        org_id=org.id,
                        schedule_id=schedule.id,
                        weekday=weekday,
                        start_min=0,
                        end_min=24 * 60,
                    )
                )
            s.add(ServiceProvider(service_id=service.id, provider_id=provider.id, org_id=org.id))
        return str(service.id), start.isoformat()


@pytest.mark.parametrize(("providers", "capacity"), [(1, 1), (3, 1)])
def test_100_simultaneous_public_bookings_of_one_slot(
    database: Database, live_server: str, providers: int, capacity: int
) -> None:
    """One provider: exactly one 201; three providers ("any provider"): exactly three,
    one each. Never a 500, never a provider in two appointments at once."""
    service_id, start = _seed_provider(database, providers=providers, capacity=capacity)
    calls = [
        (
            "/api/v1/public/bookings",
            {
                "serviceId": service_id,
                "startTime": start,
                "customer": {"name": f"C{i}", "email": f"c{i}@example.com"},
            },
            {},
        )
        for i in range(100)
    ]
    results = _fire(live_server, calls)
    codes = Counter(status for status, _ in results)
    assert codes == {201: providers, 409: 100 - providers}, codes
    assert {body["error"]["code"] for status, body in results if status == 409} == {"slot_full"}
    chosen = [body["booking"]["providerId"] for status, body in results if status == 201]
    assert len(set(chosen)) == providers
    _seats_match_bookings(database)
    with database.read() as s:
        live = s.execute(
            select(Session.provider_id, func.count())
            .where(Session.status == "scheduled", Session.provider_id.is_not(None))
            .group_by(Session.provider_id)
        ).all()
    assert sorted(n for _, n in live) == [1] * providers
