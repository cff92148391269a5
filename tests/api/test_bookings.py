"""Bookings through the HTTP API: create, idempotency, isolation, cancel, reschedule, status."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from boxoffice.services import auth as auth_service
from tests.conftest import Api, Clock

Shop = Callable[..., dict[str, Any]]


def test_free_timeslot_is_confirmed_with_room_and_timeslot(api: Api, shop: Shop) -> None:
    s = shop()
    customer = api.user()
    slot = s["slots"][0]
    r = api.book(customer, slot["id"], roomId=s["room"]["id"], notes="Projector please")
    assert r.status_code == 201, r.text
    booking = r.json()
    assert booking["status"] == "confirmed"
    assert booking["paymentStatus"] == "not_required"
    assert booking["price"] == 0
    assert booking["notes"] == "Projector please"
    assert booking["room"]["id"] == s["room"]["id"]
    assert booking["timeslot"]["id"] == slot["id"]
    assert booking["timeslot"]["bookedCount"] == 1
    assert booking["timeslot"]["isAvailable"] is False

    detail = api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer).json()
    assert [(h["fromStatus"], h["toStatus"]) for h in detail["statusHistory"]] == [
        (None, "confirmed")
    ]


def test_priced_timeslot_stays_pending_and_holds_its_seat(api: Api, shop: Shop) -> None:
    s = shop(hourly_rate=30)
    slot = s["slots"][0]
    r = api.book(api.user(), slot["id"])
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["paymentStatus"]) == ("pending", "pending")
    assert r.json()["price"] == 30.0
    second = api.book(api.user(), slot["id"])
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "slot_full"


def test_capacity_is_max_bookings(api: Api, shop: Shop) -> None:
    s = shop(max_bookings=3)
    slot = s["slots"][0]
    codes = [api.book(api.user(), slot["id"]).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 409]
    listed = api.timeslots(s["room"]["id"], date="2030-03-05")[0]
    assert (listed["bookedCount"], listed["availableSpots"], listed["isAvailable"]) == (3, 0, False)


def test_idempotency_key_returns_the_first_booking(api: Api, shop: Shop) -> None:
    s = shop(max_bookings=3)
    customer = api.user()
    key = {"Idempotency-Key": "retry-123"}
    first = api.client.post(
        "/api/v1/bookings", json={"timeslotId": s["slots"][0]["id"]}, headers=customer | key
    )
    again = api.client.post(
        "/api/v1/bookings", json={"timeslotId": s["slots"][0]["id"]}, headers=customer | key
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    mine = api.client.get("/api/v1/bookings", headers=customer).json()
    assert mine["total"] == 1

    other_body = api.client.post(
        "/api/v1/bookings", json={"timeslotId": s["slots"][1]["id"]}, headers=customer | key
    )
    assert other_body.status_code == 409
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    # The same key from another customer is a different request.
    stranger = api.client.post(
        "/api/v1/bookings", json={"timeslotId": s["slots"][0]["id"]}, headers=api.user() | key
    )
    assert stranger.status_code == 201
    assert stranger.json()["id"] != first.json()["id"]


def test_failed_request_does_not_burn_its_idempotency_key(api: Api, shop: Shop) -> None:
    s = shop()
    slot = s["slots"][0]
    holder = api.user()
    assert api.book(holder, slot["id"]).status_code == 201
    customer = api.user()
    key = {"Idempotency-Key": "k1"}
    assert api.book(customer | key, slot["id"]).status_code == 409
    mine = api.client.get("/api/v1/bookings", headers=holder).json()["items"][0]
    api.client.put(f"/api/v1/bookings/{mine['id']}/cancel", headers=holder)
    assert api.book(customer | key, slot["id"]).status_code == 201


def test_customers_see_only_their_bookings_admins_only_their_org(api: Api, shop: Shop) -> None:
    s = shop()
    alice, bob = api.user(), api.user()
    booking = api.book(alice, s["slots"][0]["id"]).json()
    for method, url in [
        ("GET", f"/api/v1/bookings/{booking['id']}"),
        ("PUT", f"/api/v1/bookings/{booking['id']}/cancel"),
    ]:
        r = api.client.request(method, url, headers=bob)
        assert r.status_code == 404, (method, url)
    r = api.client.put(
        f"/api/v1/bookings/{booking['id']}/reschedule",
        json={"timeslotId": s["slots"][1]["id"]},
        headers=bob,
    )
    assert r.status_code == 404
    assert api.client.get("/api/v1/bookings", headers=bob).json()["total"] == 0

    api.org("rival")
    rival_admin = api.user(org="rival")
    assert api.client.get("/api/v1/admin/bookings", headers=rival_admin).json()["total"] == 0
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"status": "cancelled"},
        headers=rival_admin,
    )
    assert r.status_code == 404
    r = api.client.put(
        f"/api/v1/admin/rooms/{s['room']['id']}", json={"capacity": 1}, headers=rival_admin
    )
    assert r.status_code == 404
    # A customer is no admin at all.
    assert api.client.get("/api/v1/admin/bookings", headers=alice).status_code == 403
    assert api.client.get("/api/v1/admin/bookings", headers=s["admin"]).json()["total"] == 1
    # Still there, untouched.
    assert api.client.get(f"/api/v1/bookings/{booking['id']}", headers=alice).json()["status"] == (
        "confirmed"
    )


def _paid_booking(
    api: Api, s: dict[str, Any], customer: dict[str, str], slot_index: int = 0
) -> str:
    booking = api.book(customer, s["slots"][slot_index]["id"]).json()
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"paymentStatus": "paid", "status": "confirmed", "reason": "paid at the desk"},
        headers=s["admin"],
    )
    assert r.status_code == 200, r.text
    assert (r.json()["booking"]["status"], r.json()["booking"]["paymentStatus"]) == (
        "confirmed",
        "paid",
    )
    return str(booking["id"])


@pytest.mark.parametrize(
    ("notice", "refund"),
    [
        (timedelta(hours=30), 50.0),
        (timedelta(hours=24), 50.0),
        (timedelta(hours=24) - timedelta(seconds=1), 25.0),
        (timedelta(hours=6), 25.0),
        (timedelta(hours=6) - timedelta(seconds=1), 0.0),
    ],
)
def test_cancel_refund_follows_the_policy(
    api: Api, shop: Shop, clock: Clock, notice: timedelta, refund: float
) -> None:
    s = shop(hourly_rate=50)
    customer = api.user()
    booking_id = _paid_booking(api, s, customer)
    starts_at = datetime.fromisoformat(s["slots"][0]["startTime"])
    clock.now = starts_at - notice
    r = api.client.put(f"/api/v1/bookings/{booking_id}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert r.json()["refundAmount"] == refund
    assert r.json()["booking"]["status"] == "cancelled"
    assert r.json()["booking"]["refundedAmount"] == refund
    # The seat is free again.
    slot = api.timeslots(s["room"]["id"], date="2030-03-05")[0]
    assert (slot["bookedCount"], slot["availableSpots"]) == (0, 1)


def test_refund_policy_is_per_organisation_and_organiser_refunds_everything(
    api: Api, shop: Shop, clock: Clock
) -> None:
    from boxoffice.domain.bookings import RefundTier

    s = shop(hourly_rate=10, refund_policy=[RefundTier(48, 80)])
    customer = api.user()
    first, second = _paid_booking(api, s, customer, 0), _paid_booking(api, s, customer, 1)
    clock.now = datetime.fromisoformat(s["slots"][0]["startTime"]) - timedelta(hours=49)
    r = api.client.put(f"/api/v1/bookings/{first}/cancel", headers=customer)
    assert r.json()["refundAmount"] == 8.0
    r = api.client.put(
        f"/api/v1/admin/bookings/{second}/status",
        json={"status": "cancelled", "reason": "room flooded"},
        headers=s["admin"],
    )
    assert r.status_code == 200
    assert r.json()["refundAmount"] == 10.0
    history = r.json()["booking"]["statusHistory"]
    assert history[-1]["reason"] == "room flooded"
    assert (history[-1]["fromStatus"], history[-1]["toStatus"]) == ("confirmed", "cancelled")


def test_cancel_twice_and_after_start_are_conflicts(api: Api, shop: Shop, clock: Clock) -> None:
    s = shop()
    customer = api.user()
    first = api.book(customer, s["slots"][0]["id"]).json()
    assert (
        api.client.put(f"/api/v1/bookings/{first['id']}/cancel", headers=customer).status_code
        == 200
    )
    r = api.client.put(f"/api/v1/bookings/{first['id']}/cancel", headers=customer)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "illegal_transition"
    assert "cancelled" in r.json()["error"]["message"]

    second = api.book(customer, s["slots"][1]["id"]).json()
    clock.now = datetime.fromisoformat(s["slots"][1]["startTime"]) + timedelta(minutes=1)
    r = api.client.put(f"/api/v1/bookings/{second['id']}/cancel", headers=customer)
    assert r.status_code == 409
    slot = api.timeslots(s["room"]["id"], date="2030-03-05")[1]
    assert slot["bookedCount"] == 1


def test_reschedule_moves_the_seat_atomically(api: Api, shop: Shop) -> None:
    s = shop()
    customer = api.user()
    first, second, third = (x["id"] for x in s["slots"])
    booking = api.book(customer, first).json()
    r = api.client.put(
        f"/api/v1/bookings/{booking['id']}/reschedule",
        json={"timeslotId": second},
        headers=customer,
    )
    assert r.status_code == 200, r.text
    assert r.json()["timeslotId"] == second
    assert r.json()["status"] == "confirmed"
    counts = {x["id"]: x["bookedCount"] for x in api.timeslots(s["room"]["id"], date="2030-03-05")}
    assert counts == {first: 0, second: 1, third: 0}

    # Into a full timeslot: 409 and nothing moves.
    assert api.book(api.user(), third).status_code == 201
    r = api.client.put(
        f"/api/v1/bookings/{booking['id']}/reschedule", json={"timeslotId": third}, headers=customer
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "slot_full"
    counts = {x["id"]: x["bookedCount"] for x in api.timeslots(s["room"]["id"], date="2030-03-05")}
    assert counts == {first: 0, second: 1, third: 1}
    detail = api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer).json()
    assert detail["timeslotId"] == second
    assert "rescheduled" in detail["statusHistory"][-1]["reason"]


@pytest.mark.parametrize(
    ("steps", "last_status", "message"),
    [
        (["cancelled"], "confirmed", "A cancelled booking cannot become confirmed."),
        (["completed"], "pending", "A completed booking cannot become pending."),
        (["no_show"], "cancelled", "A no_show booking cannot become cancelled."),
        ([], "pending", "A confirmed booking cannot become pending."),
    ],
)
def test_illegal_transitions_are_409_naming_both_states(
    api: Api, shop: Shop, clock: Clock, steps: list[str], last_status: str, message: str
) -> None:
    s = shop()
    booking = api.book(api.user(), s["slots"][0]["id"]).json()
    clock.now = datetime.fromisoformat(s["slots"][0]["endTime"]) + timedelta(minutes=5)
    url = f"/api/v1/admin/bookings/{booking['id']}/status"
    for step in steps:
        assert api.client.put(url, json={"status": step}, headers=s["admin"]).status_code == 200
    r = api.client.put(url, json={"status": last_status}, headers=s["admin"])
    assert r.status_code == 409
    assert r.json()["error"]["message"] == message
    assert r.json()["error"]["details"]["to"] == last_status


def test_outcomes_wait_for_the_session(api: Api, shop: Shop, clock: Clock) -> None:
    s = shop()
    booking = api.book(api.user(), s["slots"][0]["id"]).json()
    url = f"/api/v1/admin/bookings/{booking['id']}/status"
    r = api.client.put(url, json={"status": "no_show"}, headers=s["admin"])
    assert r.status_code == 409
    clock.now = datetime.fromisoformat(s["slots"][0]["startTime"]) + timedelta(minutes=20)
    r = api.client.put(url, json={"status": "no_show", "reason": "never came"}, headers=s["admin"])
    assert r.status_code == 200
    assert r.json()["booking"]["status"] == "no_show"


def test_admin_lists_bookings_with_filters(api: Api, shop: Shop) -> None:
    s = shop(max_bookings=2)
    customer = api.user()
    for slot in s["slots"]:
        api.book(customer, slot["id"])
    first = api.client.get("/api/v1/bookings", headers=customer).json()["items"][-1]
    api.client.put(f"/api/v1/bookings/{first['id']}/cancel", headers=customer)
    admin = s["admin"]

    def total(**params: Any) -> int:
        r = api.client.get("/api/v1/admin/bookings", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total() == 3
    assert total(status="cancelled") == 1
    assert total(status="confirmed") == 2
    assert total(roomId=s["room"]["id"]) == 3
    assert total(roomId="00000000-0000-0000-0000-000000000000") == 0
    second_start = s["slots"][1]["startTime"]
    assert total(**{"from": second_start}) == 2
    assert total(**{"to": second_start}) == 1
    page = api.client.get(
        "/api/v1/admin/bookings", params={"limit": 2, "page": 2}, headers=admin
    ).json()
    assert (len(page["items"]), page["total"], page["page"]) == (1, 3, 2)


def test_bad_input_is_a_clear_4xx_that_changes_nothing(api: Api, shop: Shop) -> None:
    s = shop()
    customer = api.user()
    slot_id = s["slots"][0]["id"]
    raw = api.client.post(
        "/api/v1/bookings",
        content=b"{not json",
        headers=customer | {"Content-Type": "application/json"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == "malformed_json"
    cases: list[tuple[Any, int]] = [
        ({}, 422),
        ({"timeslotId": 12}, 422),
        ({"timeslotId": "nope"}, 422),
        ({"timeslotId": slot_id, "notes": "x" * 5000}, 422),
        ({"timeslotId": slot_id, "extra": True}, 422),
        ({"timeslotId": "00000000-0000-0000-0000-000000000000"}, 404),
        ({"timeslotId": slot_id, "roomId": "00000000-0000-0000-0000-000000000000"}, 404),
        ([1, 2], 422),
    ]
    for body, status in cases:
        r = api.client.post("/api/v1/bookings", json=body, headers=customer)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}
    for params in ({"limit": 0}, {"limit": 1000}, {"page": 0}, {"status": "lost"}):
        r = api.client.get("/api/v1/bookings", params=params, headers=customer)
        assert r.status_code == 422, params
    r = api.client.get(
        "/api/v1/admin/bookings", params={"from": "2030-03-05T10:00:00"}, headers=s["admin"]
    )
    assert r.status_code == 422  # an instant needs its offset
    assert api.client.get("/api/v1/admin/bookings", headers=s["admin"]).json()["total"] == 0
    assert api.timeslots(s["room"]["id"], date="2030-03-05")[0]["bookedCount"] == 0


def test_auth_errors(api: Api, shop: Shop) -> None:
    s = shop()
    slot_id = s["slots"][0]["id"]
    r = api.book({}, slot_id)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert api.book({"Authorization": "Bearer garbage"}, slot_id).status_code == 401
    r = api.client.post(
        "/api/v1/auth/token", json={"email": "x@example.com", "password": "nope1234"}
    )
    assert r.status_code == 401
    r = api.client.post(
        "/api/v1/auth/register",
        json={"email": "new@example.com", "password": "longenough", "name": "N"},
    )
    assert r.status_code == 201
    assert r.json()["email"] == "new@example.com"
    again = api.client.post(
        "/api/v1/auth/register",
        json={"email": "NEW@example.com", "password": "longenough", "name": "N"},
    )
    assert again.status_code == 409
    short = api.client.post(
        "/api/v1/auth/register", json={"email": "b@example.com", "password": "short", "name": "N"}
    )
    assert short.status_code == 422
    token = api.client.post(
        "/api/v1/auth/token", json={"email": "new@example.com", "password": "longenough"}
    ).json()
    assert token["tokenType"] == "bearer"
    me = api.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token['accessToken']}"}
    ).json()
    assert me["email"] == "new@example.com"
    assert me["memberships"] == []


def test_unknown_route_and_health(api: Api) -> None:
    r = api.client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert api.client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert api.client.get("/openapi.json").json()["info"]["title"] == "Box Office"


def test_roles_staff_work_the_desk_scanners_do_not(api: Api, shop: Shop) -> None:
    s = shop(hourly_rate=10)
    booking = api.book(api.user(), s["slots"][0]["id"]).json()
    staff = api.user(org="acme", role="staff")
    scanner = api.user(org="acme", role="scanner")
    assert api.client.get("/api/v1/admin/bookings", headers=staff).json()["total"] == 1
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"paymentStatus": "paid"},
        headers=staff,
    )
    assert r.status_code == 200, r.text
    assert (
        api.client.post(
            "/api/v1/admin/rooms",
            json={"name": "X", "capacity": 1, "roomType": "office"},
            headers=staff,
        ).status_code
        == 403
    )
    assert api.client.get("/api/v1/admin/bookings", headers=scanner).status_code == 403


def test_admin_of_two_organisations_names_one(api: Api, shop: Shop) -> None:
    s = shop()
    api.org("second")
    me = api.client.get("/api/v1/auth/me", headers=s["admin"]).json()
    with api.database.write() as db:
        user = auth_service.active_user(db, uuid.UUID(me["id"]))
        auth_service.grant_role(db, user=user, org_slug="second", role="admin")
    r = api.client.get("/api/v1/admin/bookings", headers=s["admin"])
    assert r.status_code == 422
    assert "X-Org" in r.json()["error"]["message"]
    assert (
        api.client.get(
            "/api/v1/admin/bookings", headers=s["admin"] | {"X-Org": "second"}
        ).status_code
        == 200
    )


def test_api_docs_work_offline(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = api.client.get(f"/static/swagger-ui/{asset}")
        assert r.status_code == 200
        assert len(r.content) > 10_000


def test_review_findings_are_clear_4xx(api: Api, shop: Shop) -> None:
    s = shop(hourly_rate=10)
    customer = api.user()
    slot_id = s["slots"][0]["id"]
    # NUL characters: no database text column holds them.
    r = api.book(customer, slot_id, notes="a\u0000b")
    assert r.status_code == 422
    r = api.client.post(
        "/api/v1/auth/register",
        json={"email": "q\u0000@example.com", "password": "longenough", "name": "Q"},
    )
    assert r.status_code == 422
    assert api.client.get("/api/v1/bookings/rooms", params={"org": "a\u0000b"}).status_code == 422
    r = api.room(s["admin"], name="Fine", metadata={"k": "v"})
    bad = api.client.post(
        "/api/v1/admin/rooms",
        headers=s["admin"],
        json={"name": "X", "capacity": 1, "roomType": "office", "metadata": {"k\u0000": "v"}},
    )
    assert bad.status_code == 422
    # Dates far from any calendar in use.
    url = f"/api/v1/bookings/rooms/{s['room']['id']}/timeslots"
    assert api.client.get(url, params={"date": "9999-12-31"}).status_code == 422
    r = api.client.get(
        "/api/v1/admin/bookings", headers=s["admin"], params={"from": "9999-12-31T23:00:00-05:00"}
    )
    assert r.status_code == 422
    # Working hours are local wall-clock minutes.
    for hours in (
        {"start": "09:00+05:00", "end": "12:00-05:00"},
        {"start": "09:00", "end": "12:00+01:00"},
        {"start": "09:00:00.5", "end": "12:00"},
    ):
        api.generate(
            s["admin"],
            s["room"]["id"],
            expect=422,
            startDate="2030-03-06",
            endDate="2030-03-06",
            workingHours=hours,
        )
    # Too many timeslots in one go.
    refused = api.generate(
        s["admin"],
        s["room"]["id"],
        expect=422,
        startDate="2030-03-06",
        endDate="2031-03-01",
        slotDuration=5,
        workingHours={"start": "00:00", "end": "23:55"},
    )
    assert "at most" in refused["error"]["message"]
    assert len(api.timeslots(s["room"]["id"], date="2030-03-06")) == 0


def test_a_cancelled_booking_cannot_be_marked_paid(api: Api, shop: Shop) -> None:
    s = shop(hourly_rate=10)
    customer = api.user()
    booking = api.book(customer, s["slots"][0]["id"]).json()
    api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    r = api.client.put(
        f"/api/v1/admin/bookings/{booking['id']}/status",
        json={"paymentStatus": "paid"},
        headers=s["admin"],
    )
    assert r.status_code == 409
    assert r.json()["error"]["message"] == "A cancelled booking cannot be marked paid."


def test_a_deactivated_account_cannot_read_its_bookings(api: Api, shop: Shop) -> None:
    s = shop()
    customer = api.user()
    booking = api.book(customer, s["slots"][0]["id"]).json()
    me = api.client.get("/api/v1/auth/me", headers=customer).json()
    with api.database.write() as db:
        auth_service.active_user(db, uuid.UUID(me["id"])).is_active = False
    assert api.client.get("/api/v1/bookings", headers=customer).status_code == 401
    assert api.client.get(f"/api/v1/bookings/{booking['id']}", headers=customer).status_code == 401
