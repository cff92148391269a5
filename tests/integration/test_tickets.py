"""Tickets to events over HTTP: buying (free, priced, at the desk), paying, declines and
expired holds giving the places back, refusals, retries, cancelling with refund and
revocation, late payments and expiry, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from boxoffice.db.models import Event, Order, Refund, Ticket, TicketRevocation, TicketType
from boxoffice.db.session import Database
from boxoffice.domain.tickets import claims_fingerprint, code_fingerprint, read_ticket
from boxoffice.services import event_keys, jobs, organizations
from boxoffice.services.tickets import claims_of
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock, sent_mail
from tests.integration.test_payments import pay

START = datetime(2030, 3, 10, 18, 0, tzinfo=UTC)

MakeEvent = Callable[..., dict[str, Any]]


def make_event(
    database: Database,
    settings: Settings,
    now: datetime,
    *,
    org: str,
    price_minor: int = 0,
    quota: int = 50,
    max_participants: int = 500,
    kind: str = "standard",
    max_per_order: int = 10,
    sales_start_at: datetime | None = None,
    sales_end_at: datetime | None = None,
    status: str = "published",
    with_key: bool = True,
) -> dict[str, Any]:
    """An event with one ticket type, made with the ORM (not the events API)."""
    with database.write() as s:
        org_row = organizations.get_organization_by_slug(s, org)
        event = Event(
            id=uuid.uuid4(),
            org_id=org_row.id,
            name="Spring Conference",
            description="",
            event_type="conference",
            start_at=START,
            end_at=START + timedelta(hours=4),
            timezone="Europe/Madrid",
            location="Main hall",
            is_online=False,
            max_participants=max_participants,
            current_participants=0,
            ticket_price_minor=price_minor,
            currency="EUR",
            status=status,
            single_entry=True,
            metadata_={},
        )
        s.add(event)
        s.flush()
        ticket_type = TicketType(
            id=uuid.uuid4(),
            org_id=org_row.id,
            event_id=event.id,
            number=1,
            kind=kind,
            name=kind.replace("_", " ").title(),
            price_minor=price_minor,
            quota=quota,
            sold_count=0,
            sales_start_at=sales_start_at,
            sales_end_at=sales_end_at,
            max_per_order=max_per_order,
        )
        s.add(ticket_type)
        s.flush()
        if with_key:
            event_keys.create_key(s, event, secret_key=settings.resolved_secret_key(), now=now)
        return {"id": str(event.id), "type_id": ticket_type.id, "event_id": event.id}


@pytest.fixture
def event(api: Api, database: Database, settings: Settings, clock: Clock) -> MakeEvent:
    orgs: set[str] = set()

    def make(*, org: str = "acme", payments_enabled: bool = True, **fields: Any) -> dict[str, Any]:
        if org not in orgs:
            api.org(org, payments_enabled=payments_enabled)
            orgs.add(org)
        return make_event(database, settings, clock.now, org=org, **fields)

    return make


def buy(
    api: Api, headers: dict[str, str], event: dict[str, Any], quantity: int = 1, **extra: Any
) -> Any:
    body = {"eventId": event["id"], "ticketType": "standard", "quantity": quantity} | extra
    return api.client.post("/api/v1/tickets/purchase", json=body, headers=headers)


def bought(api: Api, headers: dict[str, str], event: dict[str, Any], **extra: Any) -> Any:
    r = buy(api, headers, event, **extra)
    assert r.status_code == 201, r.text
    return r.json()


def counts(database: Database, event: dict[str, Any]) -> tuple[int, int, int]:
    """(ticket type sold, event participants, tickets holding a place)."""
    with database.read() as s:
        sold = s.get(TicketType, event["type_id"], populate_existing=True)
        ev = s.get(Event, event["event_id"], populate_existing=True)
        assert sold is not None and ev is not None
        held = len(
            s.execute(
                select(Ticket.id).where(
                    Ticket.event_id == event["event_id"],
                    Ticket.status.in_(("pending", "active", "used")),
                )
            ).all()
        )
        return sold.sold_count, ev.current_participants, held


def ticket_mails(settings: Settings) -> list[Any]:
    return [m for m in sent_mail(settings) if "ticket" in str(m["Subject"]).lower()]


def test_free_tickets_are_active_at_once_with_code_qr_and_email(
    api: Api, event: MakeEvent, database: Database, settings: Settings, worker: Worker
) -> None:
    ev = event()
    customer = api.user()
    out = bought(
        api,
        customer,
        ev,
        quantity=2,
        holders=[{"name": "Ada", "email": "ada@example.com"}, {"name": "Bo", "email": "bo@x.io"}],
    )
    assert out["order"] is None and out["payment"]["paymentRequired"] is False
    tickets = out["tickets"]
    assert [t["status"] for t in tickets] == ["active", "active"]
    assert all(t["isPaid"] and t["code"] and t["price"] == 0.0 for t in tickets)
    assert counts(database, ev) == (2, 2, 2)

    with database.read() as s:
        keys = event_keys.public_keys(s, ev["event_id"])
    claims = read_ticket(tickets[0]["code"], keys)
    assert str(claims.ticket_id) == tickets[0]["id"]
    assert claims.valid_from == START - timedelta(hours=2)
    assert claims.valid_until == START + timedelta(hours=4)
    assert claims.is_for_event(ev["event_id"])

    one = api.client.get(f"/api/v1/tickets/{tickets[0]['id']}", headers=customer).json()
    assert one["code"] == tickets[0]["code"] and one["qrSvg"].lstrip().startswith("<svg")
    png = api.client.get(one["qrPngUrl"], headers=customer)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    svg = api.client.get(one["qrSvgUrl"], headers=customer)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    # Someone else's ticket does not exist for them.
    other = api.user()
    assert api.client.get(f"/api/v1/tickets/{tickets[0]['id']}", headers=other).status_code == 404
    assert api.client.get(one["qrPngUrl"], headers=other).status_code == 404

    worker.drain()
    mails = ticket_mails(settings)
    assert sorted(str(m["To"]) for m in mails) == ["ada@example.com", "bo@x.io"]
    for mail in mails:
        pngs = [p for p in mail.iter_attachments() if p.get_content_type() == "image/png"]
        assert len(pngs) == 1 and pngs[0].get_content().startswith(b"\x89PNG")
        body = mail.get_body(("plain",))
        assert body is not None and "Spring Conference" in body.get_content()
    listed = api.client.get("/api/v1/tickets?status=active", headers=customer).json()
    assert listed["total"] == 2 and {t["id"] for t in listed["items"]} == {t["id"] for t in tickets}


def test_priced_tickets_wait_for_payment_then_become_active_and_mailed(
    api: Api, event: MakeEvent, database: Database, settings: Settings, worker: Worker
) -> None:
    ev = event(price_minor=2500)
    customer = api.user()
    out = bought(api, customer, ev, quantity=3)
    assert out["order"]["total"] == 75.0 and out["order"]["status"] == "open"
    assert out["order"]["commission"] > 0
    assert len(out["order"]["tickets"]) == 3
    assert out["payment"]["paymentRequired"] is True and out["payment"]["amount"] == 75.0
    assert {t["status"] for t in out["tickets"]} == {"pending"}
    assert all(t["code"] is None and not t["isPaid"] for t in out["tickets"])
    assert counts(database, ev) == (3, 3, 3)
    tid = out["tickets"][0]["id"]
    assert api.client.get(f"/api/v1/tickets/{tid}/qr.png", headers=customer).status_code == 409

    pay(api, out)
    seen = api.client.get(f"/api/v1/tickets/{tid}", headers=customer).json()
    assert (seen["status"], seen["isPaid"], seen["holdExpiresAt"]) == ("active", True, None)
    assert seen["code"] and seen["qrSvg"]
    assert api.client.get(f"/api/v1/tickets/{tid}/qr.png", headers=customer).status_code == 200
    order = api.order(customer, out["order"]["id"])
    assert order["status"] == "paid"
    assert {t["status"] for t in order["tickets"]} == {"active"}
    assert counts(database, ev) == (3, 3, 3)

    worker.drain()
    worker.drain()
    mails = ticket_mails(settings)
    assert len(mails) == 3  # one per ticket, once
    assert all(
        any(p.get_content_type() == "image/png" for p in m.iter_attachments()) for m in mails
    )


def test_a_declined_payment_releases_the_tickets(
    api: Api, event: MakeEvent, database: Database
) -> None:
    ev = event(price_minor=2500, quota=3)
    customer = api.user()
    out = bought(api, customer, ev, quantity=3)
    assert buy(api, api.user(), ev).status_code == 409
    pay(api, out, "fail")
    order = api.order(customer, out["order"]["id"])
    assert order["status"] == "failed"
    assert {t["status"] for t in order["tickets"]} == {"cancelled"}
    assert counts(database, ev) == (0, 0, 0)
    # The places are back on sale.
    assert bought(api, api.user(), ev, quantity=3)["tickets"][0]["status"] == "pending"


def test_an_expired_hold_releases_the_tickets_and_a_late_payment_revives_them(
    api: Api, event: MakeEvent, database: Database, clock: Clock, worker: Worker
) -> None:
    ev = event(price_minor=1000, quota=4)
    customer = api.user()
    out = bought(api, customer, ev, quantity=2)
    clock.advance(minutes=16)
    with database.write() as s:
        assert jobs.expire_holds(s, now=clock.now) == 1
    assert counts(database, ev) == (0, 0, 0)
    order = api.order(customer, out["order"]["id"])
    assert (order["status"], order["closedReason"]) == ("cancelled", "payment_timeout")

    # The payment arrives anyway, and the places are still free: revived.
    pay(api, out)
    order = api.order(customer, out["order"]["id"])
    assert order["status"] == "paid" and {t["status"] for t in order["tickets"]} == {"active"}
    assert counts(database, ev) == (2, 2, 2)
    assert order["refunds"] == []


def test_a_late_payment_whose_places_are_gone_is_refunded_whole(
    api: Api, event: MakeEvent, database: Database, clock: Clock, settings: Settings, worker: Worker
) -> None:
    ev = event(price_minor=1000, quota=2)
    customer = api.user()
    out = bought(api, customer, ev, quantity=2)
    clock.advance(minutes=16)
    with database.write() as s:
        jobs.expire_holds(s, now=clock.now)
    bought(api, api.user(), ev, quantity=2)  # someone else takes the places
    assert "refunded in full" in pay(api, out)
    order = api.order(customer, out["order"]["id"])
    assert [r["amount"] for r in order["refunds"]] == [20.0]
    assert {t["status"] for t in order["tickets"]} == {"cancelled"}
    assert counts(database, ev) == (2, 2, 2)
    worker.drain()
    worker.drain()
    late = [m for m in sent_mail(settings) if str(m["Subject"]).startswith("Ticket cancelled")]
    assert len(late) == 1 and "refunding your payment in full" in str(
        late[0].get_body(("plain",)).get_content()
    )  # type: ignore[union-attr]


def test_refusals_quota_window_limits_and_state(
    api: Api, event: MakeEvent, database: Database, clock: Clock
) -> None:
    ev = event(kind="vip", quota=3, max_per_order=4)
    customer = api.user()
    bought(api, customer, ev, ticketType="vip")
    r = buy(api, customer, ev, quantity=3, ticketType="vip")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "slot_full"
    assert r.json()["error"]["message"] == "Only 2 VIP tickets are left."
    bought(api, customer, ev, quantity=2, ticketType="vip")
    r = buy(api, customer, ev, ticketType="vip")
    assert r.status_code == 409 and "Sold out" in r.json()["error"]["message"]
    assert counts(database, ev) == (3, 3, 3)

    r = buy(api, customer, ev, quantity=5, ticketType="vip")
    assert r.status_code == 422 and "1 to 4" in r.json()["error"]["message"]
    assert buy(api, customer, ev, ticketType="group").status_code == 404
    assert buy(api, customer, ev, quantity=0, ticketType="vip").status_code == 422

    # The event caps all its types together.
    capped = event(quota=10, max_participants=2)
    r = buy(api, customer, capped, quantity=3)
    assert r.status_code == 409 and r.json()["error"]["message"] == (
        "Only 2 places at this event are left."
    )
    assert counts(database, capped) == (0, 0, 0)

    later = event(sales_start_at=clock.now + timedelta(days=1))
    assert buy(api, customer, later).status_code == 409
    clock.advance(days=1)
    assert buy(api, customer, later).status_code == 201
    ended = event(sales_end_at=clock.now)
    assert "ended" in buy(api, customer, ended).json()["error"]["message"]

    assert buy(api, customer, event(status="draft")).status_code == 404
    assert buy(api, customer, event(status="cancelled")).status_code == 409
    keyless = buy(api, customer, event(with_key=False))
    assert keyless.status_code == 409 and "signing key" in keyless.json()["error"]["message"]
    holders = buy(api, customer, ev, quantity=2, holders=[{"name": "A", "email": "a@x.io"}])
    assert holders.status_code == 422


def test_a_retried_purchase_returns_the_first_tickets(
    api: Api, event: MakeEvent, database: Database
) -> None:
    ev = event(price_minor=500)
    customer = api.user()
    key = {"Idempotency-Key": "buy-1"}
    first = api.client.post(
        "/api/v1/tickets/purchase",
        json={"eventId": ev["id"], "ticketType": "standard", "quantity": 2},
        headers=customer | key,
    )
    again = api.client.post(
        "/api/v1/tickets/purchase",
        json={"eventId": ev["id"], "ticketType": "standard", "quantity": 2},
        headers=customer | key,
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [t["id"] for t in again.json()["tickets"]] == [t["id"] for t in first.json()["tickets"]]
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    assert again.json()["payment"]["checkoutUrl"] == first.json()["payment"]["checkoutUrl"]
    assert counts(database, ev) == (2, 2, 2)
    other = api.client.post(
        "/api/v1/tickets/purchase",
        json={"eventId": ev["id"], "ticketType": "standard", "quantity": 1},
        headers=customer | key,
    )
    assert other.status_code == 409


def test_cancelling_refunds_by_policy_revokes_the_code_and_frees_the_place(
    api: Api, event: MakeEvent, database: Database, clock: Clock, settings: Settings, worker: Worker
) -> None:
    ev = event(price_minor=4000)
    customer = api.user()
    out = bought(api, customer, ev, quantity=2)
    pay(api, out)
    first, second = (t["id"] for t in out["tickets"])
    code = api.client.get(f"/api/v1/tickets/{first}", headers=customer).json()["code"]

    # 6 days ahead: the default policy refunds everything.
    r = api.client.put(f"/api/v1/tickets/{first}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert (r.json()["refundAmount"], r.json()["ticket"]["status"]) == (40.0, "refunded")
    assert r.json()["ticket"]["code"] is None
    assert counts(database, ev) == (1, 1, 1)
    with database.read() as s:
        revoked = s.execute(
            select(TicketRevocation.fingerprint).where(
                TicketRevocation.ticket_id == uuid.UUID(first)
            )
        ).scalar_one()
        refund = s.execute(select(Refund).where(Refund.ticket_id == uuid.UUID(first))).scalar_one()
    assert revoked == code_fingerprint(code)
    assert refund.amount_minor == 4000
    again = api.client.put(f"/api/v1/tickets/{first}/cancel", headers=customer)
    assert again.status_code == 409

    # 12 hours before the start: half back.
    clock.now = START - timedelta(hours=12)
    r = api.client.put(f"/api/v1/tickets/{second}/cancel", headers=customer)
    assert r.json()["refundAmount"] == 20.0
    assert counts(database, ev) == (0, 0, 0)
    clock.now = START + timedelta(minutes=1)
    late = bought(api, customer, event(org="acme"))["tickets"][0]["id"]
    assert api.client.put(f"/api/v1/tickets/{late}/cancel", headers=customer).status_code == 409

    worker.drain()
    worker.drain()
    cancelled = [m for m in sent_mail(settings) if str(m["Subject"]).startswith("Ticket cancelled")]
    assert len(cancelled) == 2
    order = api.order(customer, out["order"]["id"])
    assert sorted(r["amount"] for r in order["refunds"]) == [20.0, 40.0]
    assert {r["ticketId"] for r in order["refunds"]} == {first, second}


def test_cancelling_a_pending_ticket_and_the_organisers_cancellation(
    api: Api, event: MakeEvent, database: Database, clock: Clock
) -> None:
    from boxoffice.services import tickets as ticket_service

    ev = event(price_minor=1000)
    customer = api.user()
    out = bought(api, customer, ev, quantity=2)
    first, second = (t["id"] for t in out["tickets"])
    r = api.client.put(f"/api/v1/tickets/{first}/cancel", headers=customer)
    assert (r.json()["refundAmount"], r.json()["ticket"]["status"]) == (0.0, "cancelled")
    assert api.order(customer, out["order"]["id"])["status"] == "open"
    assert counts(database, ev) == (1, 1, 1)
    pay(api, out)  # the cancelled one's price goes back
    order = api.order(customer, out["order"]["id"])
    assert order["status"] == "paid"
    assert [r["amount"] for r in order["refunds"]] == [10.0]
    assert counts(database, ev) == (1, 1, 1)

    # The organiser cancels after the start: everything paid goes back.
    clock.now = START + timedelta(minutes=5)
    with database.write() as s:
        ticket, refund = ticket_service.cancel_ticket(
            s,
            uuid.UUID(second),
            actor_id=None,
            reason="event cancelled",
            by_organiser=True,
            now=clock.now,
        )
        assert (ticket.status, refund) == ("refunded", 1000)
    assert counts(database, ev) == (0, 0, 0)


def test_desk_tickets_are_active_unpaid_and_reissue_revokes(
    api: Api, event: MakeEvent, database: Database, settings: Settings, clock: Clock
) -> None:
    from boxoffice.services import tickets as ticket_service

    ev = event(org="desk", payments_enabled=False, price_minor=1500)
    out = bought(api, api.user(), ev)
    ticket = out["tickets"][0]
    assert (ticket["status"], ticket["isPaid"], out["order"]) == ("active", False, None)
    with database.write() as s:
        row = s.get(Ticket, uuid.UUID(ticket["id"]))
        assert row is not None
        old = claims_of(row, 1)
        ticket_service.reissue(s, row.id, secret_key=settings.resolved_secret_key(), now=clock.now)
        assert row.revision == 1 and row.code != ticket["code"]
        fingerprints = set(s.execute(select(TicketRevocation.fingerprint)).scalars())
    assert claims_fingerprint(old) in fingerprints


def test_the_worker_expires_tickets_after_the_event(
    api: Api, event: MakeEvent, database: Database, clock: Clock
) -> None:
    ev = event()
    bought(api, api.user(), ev, quantity=3)
    clock.now = START + timedelta(hours=4)
    with database.write() as s:
        assert jobs.expire_tickets(s, now=clock.now) == 3
    with database.write() as s:
        assert jobs.expire_tickets(s, now=clock.now) == 0
    with database.read() as s:
        statuses = set(s.execute(select(Ticket.status)).scalars())
        assert s.execute(select(Order.id)).first() is None
    assert statuses == {"expired"}
    assert counts(database, ev) == (0, 0, 0)
