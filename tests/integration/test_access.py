"""Access control (subscription, booking, ticket) and the subscriptions admin, over HTTP
on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from boxoffice.db.models import Booking, Room, Session, User
from boxoffice.db.session import Database
from tests.conftest import Api, Clock
from tests.integration.test_scanning import CLOSE, DOORS, Factory, Org, make_org

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def org(api: Api) -> Org:
    return make_org(api)


@pytest.fixture
def make(database: Database, settings: Any, clock: Clock) -> Factory:
    return Factory(database, settings.secret_key, clock)


def user_id(database: Database, email: str) -> uuid.UUID:
    with database.read() as s:
        return s.execute(select(User.id).where(User.email == email)).scalar_one()


def room_and_session(
    database: Database, org_id: uuid.UUID, *, start: datetime = NOW
) -> tuple[uuid.UUID, uuid.UUID]:
    with database.write() as s:
        room = Room(org_id=org_id, name="Studio", capacity=4, room_type="meeting")
        s.add(room)
        s.flush()
        session = Session(
            org_id=org_id,
            kind="timeslot",
            room_id=room.id,
            start_at=start,
            end_at=start + timedelta(hours=1),
            status="scheduled",
            max_participants=4,
        )
        s.add(session)
        s.flush()
        return room.id, session.id


def book(database: Database, org_id: uuid.UUID, session_id: uuid.UUID, uid: uuid.UUID) -> None:
    with database.write() as s:
        s.add(
            Booking(
                org_id=org_id,
                session_id=session_id,
                user_id=uid,
                status="confirmed",
                payment_status="not_required",
                price_minor=0,
                currency="EUR",
            )
        )


def check(client: TestClient, headers: dict[str, str], kind: str, rid: uuid.UUID) -> Any:
    r = client.get(
        "/api/v1/access/check",
        params={"resourceType": kind, "resourceId": str(rid)},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_subscription_opens_every_door_of_its_organisation(
    client: TestClient, api: Api, org: Org, make: Factory, database: Database
) -> None:
    member = api.user("member@example.com")
    room, session = room_and_session(database, org.id)
    event = make.event(org.id)
    for kind, rid in (("room", room), ("session", session), ("event", event)):
        assert check(client, member, kind, rid)["allowed"] is False
    r = client.post(
        "/api/v1/admin/subscriptions",
        json={
            "userEmail": "Member@Example.com",
            "plan": "Gold",
            "startsAt": "2030-01-01T00:00:00Z",
        },
        headers=org.admin,
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    assert (sub["userEmail"], sub["plan"], sub["status"], sub["isCurrent"]) == (
        "member@example.com",
        "Gold",
        "active",
        True,
    )
    for kind, rid in (("room", room), ("session", session), ("event", event)):
        body = check(client, member, kind, rid)
        assert (body["allowed"], body["via"]) == (True, "subscription"), kind
        assert "Gold" in body["reason"]
    # Not at another organisation.
    other = make_org(api, "other")
    other_room, _ = room_and_session(database, other.id)
    assert check(client, member, "room", other_room)["allowed"] is False
    listed = client.get("/api/v1/admin/subscriptions", headers=org.admin).json()["subscriptions"]
    assert [x["id"] for x in listed] == [sub["id"]]
    url = f"/api/v1/admin/subscriptions/{sub['id']}/cancel"
    r = client.put(url, headers=org.admin)
    assert (r.status_code, r.json()["status"], r.json()["isCurrent"]) == (200, "cancelled", False)
    assert client.put(url, headers=org.admin).status_code == 409
    assert check(client, member, "room", room)["allowed"] is False


def test_subscription_window(
    client: TestClient, api: Api, org: Org, database: Database, clock: Clock
) -> None:
    member = api.user("member@example.com")
    room, _ = room_and_session(database, org.id, start=NOW + timedelta(days=5))
    body = {
        "userId": str(user_id(database, "member@example.com")),
        "plan": "March",
        "startsAt": "2030-03-04T10:00:00Z",
        "endsAt": "2030-04-01T00:00:00Z",
    }
    assert (
        client.post("/api/v1/admin/subscriptions", json=body, headers=org.admin).status_code == 201
    )
    assert check(client, member, "room", room)["allowed"] is False  # not started
    clock.advance(hours=1)
    assert check(client, member, "room", room)["allowed"] is True
    clock.advance(days=40)
    assert check(client, member, "room", room)["allowed"] is False  # ended


def test_a_confirmed_booking_opens_its_room_and_session_while_it_happens(
    client: TestClient, api: Api, org: Org, database: Database, clock: Clock
) -> None:
    customer = api.user("c@example.com")
    start = NOW + timedelta(hours=1)
    room, session = room_and_session(database, org.id, start=start)
    _, other_session = room_and_session(database, org.id, start=start)
    book(database, org.id, session, user_id(database, "c@example.com"))
    assert check(client, customer, "session", session)["allowed"] is False  # 1 h early
    clock.now = start - timedelta(minutes=10)  # doors open 15 minutes before
    body = check(client, customer, "session", session)
    assert (body["allowed"], body["via"]) == (True, "booking")
    assert check(client, customer, "room", room) == {
        "allowed": True,
        "via": "booking",
        "reason": "Confirmed booking of a session now.",
    }
    assert check(client, customer, "session", other_session)["allowed"] is False
    clock.now = start + timedelta(hours=1, minutes=20)  # 20 minutes after its end
    assert check(client, customer, "session", session)["allowed"] is False
    assert check(client, customer, "room", room)["allowed"] is False


def test_a_ticket_opens_its_event_while_valid(
    client: TestClient, api: Api, org: Org, make: Factory, database: Database, clock: Clock
) -> None:
    holder = api.user("h@example.com")
    uid = user_id(database, "h@example.com")
    event = make.event(org.id)
    denied = check(client, holder, "event", event)
    assert (denied["allowed"], denied["via"]) == (False, None)
    t = make.ticket(event, user_id=uid)
    assert check(client, holder, "event", event) == {
        "allowed": True,
        "via": "ticket",
        "reason": "Valid ticket for this event.",
    }
    make.set(t.id, status="used")
    assert check(client, holder, "event", event)["allowed"] is True
    make.set(t.id, status="cancelled")
    assert check(client, holder, "event", event)["allowed"] is False
    make.ticket(event, user_id=uid, is_paid=False)
    assert check(client, holder, "event", event)["allowed"] is False
    make.ticket(event, user_id=uid)
    clock.now = CLOSE + timedelta(minutes=1)
    assert check(client, holder, "event", event)["allowed"] is False
    clock.now = DOORS - timedelta(minutes=1)
    assert check(client, holder, "event", event)["allowed"] is False


def test_errors_and_roles(client: TestClient, api: Api, org: Org) -> None:
    customer = api.user()
    params = {"resourceType": "room", "resourceId": str(uuid.uuid4())}
    assert client.get("/api/v1/access/check", params=params).status_code == 401
    r = client.get("/api/v1/access/check", params=params, headers=customer)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    bad = {"resourceType": "planet", "resourceId": str(uuid.uuid4())}
    assert client.get("/api/v1/access/check", params=bad, headers=customer).status_code == 422
    body = {"userEmail": "nobody@example.com", "plan": "Gold", "startsAt": "2030-01-01T00:00:00Z"}
    assert (
        client.post("/api/v1/admin/subscriptions", json=body, headers=customer).status_code == 403
    )
    assert client.get("/api/v1/admin/subscriptions", headers=customer).status_code == 403
    scanner = api.user(org=org.slug, role="scanner")
    assert client.get("/api/v1/admin/subscriptions", headers=scanner).status_code == 403
    r = client.post("/api/v1/admin/subscriptions", json=body, headers=org.admin)
    assert r.status_code == 404
    body = {"plan": "Gold", "startsAt": "2030-01-01T00:00:00Z"}
    r = client.post("/api/v1/admin/subscriptions", json=body, headers=org.admin)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_input")
    r = client.put(f"/api/v1/admin/subscriptions/{uuid.uuid4()}/cancel", headers=org.admin)
    assert r.status_code == 404
