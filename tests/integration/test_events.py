"""Events and ticket types through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, sent_mail
from tests.integration.test_payments import pay

START, END = "2030-06-01T16:00:00Z", "2030-06-01T22:00:00Z"


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    api.org()
    return api.user(org="acme")


def new_event(api: Api, admin: dict[str, str], *, expect: int = 201, **fields: Any) -> Any:
    body = {
        "name": "Jazz night",
        "eventType": "other",
        "startDate": START,
        "endDate": END,
        "maxParticipants": 100,
        "ticketPrice": 25,
        "ticketTypes": [{"ticketType": "standard", "name": "Standard", "quota": 80}],
    } | fields
    r = api.client.post("/api/v1/admin/events", json=body, headers=admin)
    assert r.status_code == expect, r.text
    return r.json()


def test_an_event_is_a_draft_until_published(api: Api, admin: dict[str, str]) -> None:
    event = new_event(api, admin)
    assert (event["status"], event["currentParticipants"], event["currency"]) == ("draft", 0, "EUR")
    [standard] = event["ticketTypes"]
    assert (standard["price"], standard["quota"], standard["available"], standard["onSale"]) == (
        25.0,
        80,
        80,
        False,
    )
    assert api.client.get(f"/api/v1/events/{event['id']}").status_code == 404
    assert api.client.get("/api/v1/events").json()["items"] == []
    r = api.client.put(
        f"/api/v1/admin/events/{event['id']}", json={"status": "published"}, headers=admin
    )
    assert r.status_code == 200, r.text
    public = api.client.get(f"/api/v1/events/{event['id']}").json()
    assert public["status"] == "published" and public["ticketTypes"][0]["onSale"] is True
    keys = api.client.post(f"/api/v1/admin/events/{event['id']}/keys/rotate", headers=admin)
    assert [(k["keyId"], k["status"]) for k in keys.json()] == [(1, "active"), (0, "retired")]


def test_publishing_needs_a_ticket_type_and_steps_follow_the_lifecycle(
    api: Api, admin: dict[str, str]
) -> None:
    bare = new_event(api, admin, ticketTypes=[])
    r = api.client.put(
        f"/api/v1/admin/events/{bare['id']}", json={"status": "published"}, headers=admin
    )
    assert r.status_code == 409 and "ticket type" in r.json()["error"]["message"]
    early = api.client.put(
        f"/api/v1/admin/events/{bare['id']}", json={"status": "completed"}, headers=admin
    )
    assert (early.status_code, early.json()["error"]["code"]) == (409, "illegal_transition")


def test_the_public_list_filters_by_type_and_start_and_pages(
    api: Api, admin: dict[str, str]
) -> None:
    for i, kind in enumerate(["conference", "webinar", "conference"]):
        new_event(
            api,
            admin,
            name=f"E{i}",
            eventType=kind,
            startDate=f"2030-0{i + 4}-01T10:00:00Z",
            endDate=f"2030-0{i + 4}-01T12:00:00Z",
            status="published",
        )
    new_event(api, admin, name="Draft")
    everything = api.client.get("/api/v1/events").json()
    assert [e["name"] for e in everything["items"]] == ["E0", "E1", "E2"]
    conferences = api.client.get("/api/v1/events", params={"type": "conference"}).json()
    assert [e["name"] for e in conferences["items"]] == ["E0", "E2"]
    later = api.client.get("/api/v1/events", params={"startDate": "2030-05-01T00:00:00Z"}).json()
    assert [e["name"] for e in later["items"]] == ["E1", "E2"]
    second = api.client.get("/api/v1/events", params={"page": 2, "limit": 2}).json()
    assert ([e["name"] for e in second["items"]], second["total"]) == (["E2"], 3)
    assert api.client.get("/api/v1/events", params={"type": "party"}).status_code == 422
    mine = api.client.get("/api/v1/admin/events", headers=admin).json()
    assert mine["total"] == 4


def test_bad_events_and_ticket_types_are_refused(api: Api, admin: dict[str, str]) -> None:
    assert new_event(api, admin, endDate=START, expect=422)["error"]["code"] == "invalid_input"
    new_event(
        api, admin, startDate="2020-01-01T10:00:00Z", endDate="2020-01-01T12:00:00Z", expect=422
    )
    new_event(api, admin, maxParticipants=0, expect=422)
    new_event(api, admin, ticketTypes=[{"ticketType": "gold", "name": "G", "quota": 1}], expect=422)
    event = new_event(api, admin)
    url = f"/api/v1/admin/events/{event['id']}/ticket-types"
    twice = api.client.post(
        url, json={"ticketType": "standard", "name": "S", "quota": 5}, headers=admin
    )
    assert twice.status_code == 409
    window = api.client.post(
        url,
        json={"ticketType": "early_bird", "name": "Early", "quota": 5, "price": 15,
              "salesStart": "2030-05-01T00:00:00Z", "salesEnd": "2030-04-01T00:00:00Z"},
        headers=admin,
    )  # fmt: skip
    assert window.status_code == 422
    vip = api.client.post(
        url, json={"ticketType": "vip", "name": "VIP", "quota": 10, "price": 90}, headers=admin
    )
    assert vip.status_code == 201, vip.text
    assert (vip.json()["price"], vip.json()["available"]) == (90.0, 10)
    changed = api.client.put(f"{url}/{vip.json()['id']}", json={"quota": 12}, headers=admin)
    assert changed.json()["quota"] == 12
    assert api.client.delete(f"{url}/{vip.json()['id']}", headers=admin).status_code == 204
    customer = api.user()
    assert api.client.post("/api/v1/admin/events", json={}, headers=customer).status_code in (
        403,
        422,
    )
    forbidden = api.client.put(
        f"/api/v1/admin/events/{event['id']}", json={"name": "x"}, headers=customer
    )
    assert forbidden.status_code == 403


def test_an_event_without_tickets_is_deleted(api: Api, admin: dict[str, str]) -> None:
    event = new_event(api, admin)
    r = api.client.delete(f"/api/v1/admin/events/{event['id']}", headers=admin)
    assert r.status_code == 200 and r.json() == {"deleted": True, "event": None}
    assert api.client.get(f"/api/v1/admin/events/{event['id']}", headers=admin).status_code == 404


def buy(api: Api, customer: dict[str, str], event_id: str, quantity: int = 1) -> Any:
    r = api.client.post(
        "/api/v1/tickets/purchase",
        json={"eventId": event_id, "ticketType": "standard", "quantity": quantity},
        headers=customer,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_cancelling_an_event_refunds_every_ticket_and_revokes_its_code(
    api: Api, admin: dict[str, str], worker: Worker, settings: Settings
) -> None:
    event = new_event(api, admin, status="published")
    customer = api.user()
    bought = buy(api, customer, event["id"], quantity=2)
    pay(api, bought)
    worker.drain()
    tickets = api.client.get("/api/v1/tickets", headers=customer).json()["items"]
    assert {t["status"] for t in tickets} == {"active"}
    listed = api.client.get(f"/api/v1/admin/events/{event['id']}/tickets", headers=admin).json()
    assert listed["total"] == 2
    r = api.client.delete(f"/api/v1/admin/events/{event['id']}", headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["deleted"], r.json()["event"]["status"]) == (False, "cancelled")
    assert r.json()["event"]["currentParticipants"] == 0
    after = api.client.get("/api/v1/tickets", headers=customer).json()["items"]
    assert [(t["status"], t["refundedAmount"]) for t in after] == [("refunded", 25.0)] * 2
    revoked = api.client.get(f"/api/v1/events/{event['id']}/revocations").json()
    assert len(revoked["fingerprints"]) == 2
    code = tickets[0]["code"]
    check = api.client.post(f"/api/v1/tickets/{code}/validate").json()
    assert check["valid"] is False
    worker.drain()
    order = api.order(customer, bought["order"]["id"])
    assert sum(x["amount"] for x in order["refunds"]) == 50.0
    assert {x["status"] for x in order["refunds"]} == {"succeeded"}
    subjects = [str(m["Subject"]) for m in sent_mail(settings)]
    assert sum("cancel" in s.lower() for s in subjects) == 2, subjects


def test_moving_an_event_reissues_its_tickets(
    api: Api, admin: dict[str, str], worker: Worker
) -> None:
    event = new_event(api, admin, status="published", ticketPrice=0)
    customer = api.user()
    [ticket] = buy(api, customer, event["id"])["tickets"]
    old = api.client.get(f"/api/v1/tickets/{ticket['id']}", headers=customer).json()
    r = api.client.put(
        f"/api/v1/admin/events/{event['id']}",
        json={"startDate": "2030-06-02T16:00:00Z", "endDate": "2030-06-02T22:00:00Z"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    new = api.client.get(f"/api/v1/tickets/{ticket['id']}", headers=customer).json()
    assert new["code"] != old["code"]
    assert new["validUntil"] == "2030-06-02T22:00:00Z"
    stale = api.client.post(f"/api/v1/tickets/{old['code']}/validate").json()
    assert (stale["valid"], stale["reasonCode"]) == (False, "revoked")
    fresh = api.client.post(f"/api/v1/tickets/{new['code']}/validate").json()
    assert fresh["reasonCode"] in (None, "not_yet_valid")
