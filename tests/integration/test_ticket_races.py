"""Ticket sales racing against a live server (`boxoffice serve --workers 2`): real
processes, real HTTP, all requests released together."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from boxoffice.db.models import Event, Membership, Ticket, TicketType, User
from boxoffice.db.session import Database
from boxoffice.services import auth, event_keys
from boxoffice.services.organizations import create_organization
from tests.integration.test_concurrency import _fire, serving

BUYERS = 200
QUOTA = 50


@pytest.fixture
def secret_key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def ticket_server(database_url: str, tmp_path: Path, secret_key: str) -> Iterator[str]:
    """The live server, with a secret the test knows (event keys are stored encrypted
    with it)."""
    with serving(database_url, tmp_path, secret_key) as base:
        yield base


def _buyers(database: Database, secret_key: str, n: int) -> list[dict[str, str]]:
    """``n`` accounts with tokens issued directly (no password hashing, no sign-in)."""
    now = datetime.now(UTC)
    users = [
        User(email=f"b{i}-{uuid.uuid4().hex[:6]}@example.com", name="Buyer", password_hash="x")
        for i in range(n)
    ]
    with database.write() as s:
        s.add_all(users)
        s.flush()
        tokens = [auth.issue_token(u, secret=secret_key, now=now, ttl_s=3600) for u in users]
    return [{"Authorization": f"Bearer {t}"} for t in tokens]


def _event(
    database: Database, secret_key: str, *, price_minor: int, quota: int
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A published event with one ticket type; its organisation and owner's ids too."""
    now = datetime.now(UTC).replace(microsecond=0)
    with database.write() as s:
        org = create_organization(s, slug="race", name="Race", timezone="UTC", currency="EUR")
        event = Event(
            org_id=org.id,
            name="Launch",
            description="",
            start_at=now + timedelta(days=3),
            end_at=now + timedelta(days=3, hours=3),
            timezone="UTC",
            location="",
            max_participants=1000,
            current_participants=0,
            ticket_price_minor=price_minor,
            currency="EUR",
            status="published",
            metadata_={},
        )
        s.add(event)
        s.flush()
        ticket_type = TicketType(
            org_id=org.id,
            event_id=event.id,
            number=1,
            kind="standard",
            name="Standard",
            price_minor=price_minor,
            quota=quota,
            sold_count=0,
            max_per_order=10,
        )
        s.add(ticket_type)
        event_keys.create_key(s, event, secret_key=secret_key, now=now)
        return org.id, event.id, ticket_type.id


def _held(database: Database, event_id: uuid.UUID, type_id: uuid.UUID) -> tuple[int, int, int]:
    """Tickets holding a place, the type's sold count, the event's participants."""
    with database.read() as s:
        held = s.execute(
            select(func.count()).where(
                Ticket.event_id == event_id, Ticket.status.in_(("pending", "active", "used"))
            )
        ).scalar_one()
        sold = s.get(TicketType, type_id)
        ev = s.get(Event, event_id)
        assert sold is not None and ev is not None
        return held, sold.sold_count, ev.current_participants


@pytest.mark.parametrize("price_minor", [0, 2000], ids=["free", "priced"])
def test_200_buyers_race_for_50_tickets(
    database: Database, ticket_server: str, secret_key: str, price_minor: int
) -> None:
    _, event_id, type_id = _event(database, secret_key, price_minor=price_minor, quota=QUOTA)
    buyers = _buyers(database, secret_key, BUYERS)
    body = {"eventId": str(event_id), "ticketType": "standard", "quantity": 1}
    results = _fire(ticket_server, [("/api/v1/tickets/purchase", body, b) for b in buyers])
    codes = Counter(status for status, _ in results)
    assert codes == {201: QUOTA, 409: BUYERS - QUOTA}, codes
    assert {r["error"]["code"] for status, r in results if status == 409} == {"slot_full"}
    assert _held(database, event_id, type_id) == (QUOTA, QUOTA, QUOTA)
    with database.read() as s:
        codes_issued = s.execute(
            select(func.count(func.distinct(Ticket.code))).where(Ticket.event_id == event_id)
        ).scalar_one()
        assert codes_issued == QUOTA


def test_buyers_racing_the_organisers_cancellation(
    database: Database, ticket_server: str, secret_key: str
) -> None:
    """Purchases and the event's cancellation at once: the cancellation goes through
    (never a deadlock, never a 500), every sale is either refused or cancelled with it,
    and no place stays taken."""
    org_id, event_id, type_id = _event(database, secret_key, price_minor=0, quota=1000)
    with database.write() as s:
        owner = User(email=f"owner-{uuid.uuid4().hex[:6]}@example.com", name="O", password_hash="x")
        s.add(owner)
        s.flush()
        s.add(Membership(org_id=org_id, user_id=owner.id, role="owner"))
        token = auth.issue_token(owner, secret=secret_key, now=datetime.now(UTC), ttl_s=3600)
    buyers = _buyers(database, secret_key, 41)
    body = {"eventId": str(event_id), "ticketType": "standard", "quantity": 2}
    first = _fire(ticket_server, [("/api/v1/tickets/purchase", body, buyers[0])])
    assert first[0][0] == 201  # one sold before: the event is cancelled, not deleted
    calls = [("/api/v1/tickets/purchase", body, b) for b in buyers[1:]]
    calls.insert(20, (f"/api/v1/admin/events/{event_id}", {}, {"Authorization": f"Bearer {token}"}))
    results = _fire(ticket_server, calls, methods={20: "DELETE"})
    cancel_status, cancelled = results.pop(20)
    assert cancel_status == 200, cancelled
    assert cancelled["deleted"] is False and cancelled["event"]["status"] == "cancelled"
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    assert _held(database, event_id, type_id) == (0, 0, 0)
    with database.read() as s:
        sold = s.execute(select(Ticket.status).where(Ticket.event_id == event_id)).scalars()
        assert Counter(sold) == {"cancelled": 2 * (1 + statuses[201])}
