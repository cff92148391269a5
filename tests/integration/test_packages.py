"""Packages and bundles end to end: an admin defines them, a customer buys one (one
order, one draft booking per credit), pays through the offline gateway, and
schedules each credit into a group session or a provider slot before it expires."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from boxoffice.db.models import (
    AvailabilityBlock,
    Booking,
    BookingStatusChange,
    OutboxMessage,
    Provider,
    Schedule,
    Session,
)
from boxoffice.db.session import Database
from boxoffice.domain.errors import DomainError
from boxoffice.services import organizations, packages
from boxoffice.services.packages import SessionTarget
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock, sent_mail

ADMIN = "/api/v1/admin"
NOW = datetime(2030, 3, 4, 9, tzinfo=UTC)  # the test clock's start, a Monday


class Studio:
    """An organisation selling classes and treatments, with helpers for what its admin
    and its customers do."""

    def __init__(self, api: Api, slug: str = "studio", *, payments_enabled: bool = True) -> None:
        self.api = api
        self.client = api.client
        api.org(slug, payments_enabled=payments_enabled)
        self.admin = api.user(org=slug)
        with api.database.read() as s:
            self.org_id = organizations.get_organization_by_slug(s, slug).id

    def service(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "duration": 60} | fields
        r = self.client.post(f"{ADMIN}/services", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def package(
        self, name: str, items: list[tuple[dict[str, Any], int]], **fields: Any
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "kind": "package",
            "validityDays": 30,
            "items": [{"serviceId": s["id"], "quantity": q} for s, q in items],
        } | fields
        r = self.client.post(f"{ADMIN}/services", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def session(
        self, service: dict[str, Any], start: datetime, *, seats: int = 10, **fields: Any
    ) -> str:
        """A group session of the service, straight into the database."""
        with self.api.database.write() as s:
            session = Session(
                org_id=self.org_id,
                kind="workshop",
                service_id=uuid.UUID(service["id"]),
                title=service["name"],
                start_at=start,
                end_at=start + timedelta(hours=1),
                status="scheduled",
                max_participants=seats,
                **fields,
            )
            s.add(session)
            s.flush()
            return str(session.id)

    def provider(self, *services: dict[str, Any]) -> str:
        """A provider working Mon-Fri 09:00-17:00 in Madrid, offering ``services``."""
        with self.api.database.write() as s:
            provider = Provider(org_id=self.org_id, name="Ana", timezone="Europe/Madrid")
            s.add(provider)
            s.flush()
            schedule = Schedule(
                org_id=self.org_id,
                provider_id=provider.id,
                name="studio",
                timezone="Europe/Madrid",
                is_default=True,
            )
            s.add(schedule)
            s.flush()
            for weekday in range(5):
                s.add(
                    AvailabilityBlock(
                        org_id=self.org_id,
                        schedule_id=schedule.id,
                        weekday=weekday,
                        start_min=9 * 60,
                        end_min=17 * 60,
                    )
                )
            provider_id = str(provider.id)
        for service in services:
            r = self.client.put(
                f"{ADMIN}/services/{service['id']}",
                json={"providerIds": [provider_id]},
                headers=self.admin,
            )
            assert r.status_code == 200, r.text
        return provider_id

    def buy(self, customer: dict[str, str], package: dict[str, Any], **headers: str) -> Any:
        return self.client.post(
            f"/api/v1/services/{package['id']}/purchase", headers=customer | headers
        )

    def bought(self, customer: dict[str, str], package: dict[str, Any]) -> dict[str, Any]:
        r = self.buy(customer, package)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def schedule(self, customer: dict[str, str], credit_id: str, **body: Any) -> Any:
        return self.client.put(
            f"/api/v1/bookings/{credit_id}/schedule", json=body, headers=customer
        )

    def credits(self, customer: dict[str, str]) -> dict[str, Any]:
        r = self.client.get("/api/v1/credits", headers=customer)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def seats_taken(self, session_id: str) -> int:
        with self.api.database.read() as s:
            session = s.get(Session, uuid.UUID(session_id))
            assert session is not None
            return session.booked_count


def pay(api: Api, purchase: dict[str, Any], outcome: str = "succeed") -> str:
    """Press the offline checkout page's button; returns the page's text."""
    url = purchase["payment"]["checkoutUrl"]
    path = url[url.index("/pay/") :]
    r = api.client.post(f"{path}/{outcome}")
    assert r.status_code == 200, r.text
    return r.text


def code(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else ""


def states(credits: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((c["serviceName"], c["state"]) for c in credits)


@pytest.fixture
def studio(api: Api) -> Studio:
    return Studio(api)


# --- defining packages ------------------------------------------------------------------


def test_packages_and_bundles_in_the_catalogue(studio: Studio, api: Api) -> None:
    consult = studio.service("Consultation", duration=30)
    massage = studio.service("Massage", duration=90)
    package = studio.package("Wellness", [(massage, 3), (consult, 1)], price=200)
    assert (package["kind"], package["validityDays"], package["price"]) == ("package", 30, 200.0)
    assert package["items"] == [
        {"serviceId": consult["id"], "serviceName": "Consultation", "quantity": 1},
        {"serviceId": massage["id"], "serviceName": "Massage", "quantity": 3},
    ]
    assert package["duration"] == 90  # the longest item's
    assert (consult["items"], consult["validityDays"]) == ([], None)

    url = f"{ADMIN}/services/{package['id']}"
    r = api.client.put(
        url,
        json={"items": [{"serviceId": massage["id"], "quantity": 5}], "validityDays": 60},
        headers=studio.admin,
    )
    assert r.status_code == 200, r.text
    assert [(i["serviceName"], i["quantity"]) for i in r.json()["items"]] == [("Massage", 5)]
    assert r.json()["validityDays"] == 60
    assert api.client.get(url, headers=studio.admin).json() == r.json()
    listed = api.client.get(f"{ADMIN}/services", headers=studio.admin).json()
    assert {s["name"]: len(s["items"]) for s in listed} == {
        "Consultation": 0,
        "Massage": 0,
        "Wellness": 1,
    }

    # A service in a package is deactivated, not deleted (the package still names it).
    r = api.client.delete(f"{ADMIN}/services/{consult['id']}", headers=studio.admin)
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] is True  # no longer in the package
    r = api.client.delete(f"{ADMIN}/services/{massage['id']}", headers=studio.admin)
    assert (r.json()["deleted"], r.json()["service"]["isActive"]) == (False, False)


def test_bad_package_definitions_are_refused(studio: Studio, api: Api) -> None:
    yoga = studio.service("Yoga")
    pilates = studio.service("Pilates")
    bundle = studio.package("Pass", [(yoga, 10)], kind="bundle")
    retired = studio.service("Retired", isActive=False)
    other = Studio(api, "other")
    foreign = other.service("Elsewhere")
    provider = studio.provider()

    def item(s: dict[str, Any], quantity: int = 1) -> dict[str, Any]:
        return {"serviceId": s["id"], "quantity": quantity}

    base = {"name": "Bad", "kind": "package", "validityDays": 30, "items": [item(yoga)]}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"items": [item(yoga)], "kind": "individual", "duration": 30}, "only for a package"),
        ({"items": []}, "needs items"),
        ({"kind": "bundle", "items": [item(yoga), item(pilates)]}, "exactly one item"),
        ({"items": [item(yoga), item(yoga, 2)]}, "twice"),
        ({"items": [item(bundle)]}, "cannot contain packages"),
        ({"items": [item(retired)]}, "inactive"),
        ({"items": [item(foreign)]}, "does not have"),
        ({"items": [item(yoga, 0)]}, "quantity"),
        ({"items": [item(yoga, 101)]}, "quantity"),
        ({"validityDays": None}, "validityDays is required"),
        ({"validityDays": 0}, "validityDays"),
        ({"validityDays": 3651}, "validityDays"),
        ({"providerIds": [provider]}, "no providers"),
        ({"kind": "individual", "items": None, "duration": 30, "validityDays": 5}, "only for"),
        ({"kind": "course"}, "kind"),
    ]
    for change, message in bad:
        body = {k: v for k, v in (base | change).items() if v is not None}
        r = api.client.post(f"{ADMIN}/services", json=body, headers=studio.admin)
        assert r.status_code == 422, (change, r.text)
        assert message in r.json()["error"]["message"], (change, r.text)
    r = api.client.post(f"{ADMIN}/services", json={"name": "No duration"}, headers=studio.admin)
    assert code(r) == (422, "invalid_input")
    names = [s["name"] for s in api.client.get(f"{ADMIN}/services", headers=studio.admin).json()]
    assert names == ["Pass", "Pilates", "Retired", "Yoga"]

    url = f"{ADMIN}/services/{bundle['id']}"
    for change, message in [
        ({"items": [item(yoga), item(pilates)]}, "exactly one item"),
        ({"items": []}, "needs items"),
        ({"kind": "package"}, "kind"),
        ({"providerIds": [provider]}, "no providers"),
    ]:
        r = api.client.put(url, json=change, headers=studio.admin)
        assert r.status_code == 422, (change, r.text)
        assert message in r.json()["error"]["message"], (change, r.text)
    r = api.client.put(
        f"{ADMIN}/services/{yoga['id']}", json={"validityDays": 10}, headers=studio.admin
    )
    assert code(r) == (422, "invalid_input")
    assert api.client.get(url, headers=studio.admin).json() == bundle


# --- buying ---------------------------------------------------------------------------


def test_a_package_writes_one_draft_per_credit_and_is_usable_once_paid(
    studio: Studio, api: Api, clock: Clock
) -> None:
    consult = studio.service("Consultation")
    massage = studio.service("Massage")
    package = studio.package("Wellness", [(consult, 1), (massage, 3)], price=200)
    workshop = studio.session(massage, NOW + timedelta(days=2))
    customer = api.user()

    bought = studio.bought(customer, package)
    order, credits, payment = bought["order"], bought["credits"], bought["payment"]
    assert (order["status"], order["total"], order["currency"]) == ("open", 200.0, "EUR")
    assert (payment["paymentRequired"], payment["amount"]) == (True, 200.0)
    assert payment["orderId"] == order["id"]
    assert [p["status"] for p in order["payments"]] == ["pending"]
    assert len(credits) == 4
    assert states(credits) == Counter(
        {("Consultation", "awaiting_payment"): 1, ("Massage", "awaiting_payment"): 3}
    )
    valid_until = NOW + timedelta(days=30)
    for credit in credits:
        assert (credit["status"], credit["paymentStatus"], credit["session"]) == (
            "draft",
            "pending",
            None,
        )
        assert datetime.fromisoformat(credit["validUntil"]) == valid_until
        assert credit["orderId"] == order["id"]
    # The order shows every booking of the purchase, each priced 0 (the order is 200).
    seen = api.order(customer, order["id"])
    assert sorted(b["id"] for b in seen["bookings"]) == sorted(c["id"] for c in credits)
    assert {(b["status"], b["price"]) for b in seen["bookings"]} == {("draft", 0.0)}

    massage_credit = next(c for c in credits if c["serviceName"] == "Massage")
    r = studio.schedule(customer, massage_credit["id"], sessionId=workshop)
    assert code(r) == (409, "credit_not_paid")
    assert studio.seats_taken(workshop) == 0
    assert studio.credits(customer)["unused"] == []

    assert "Payment received" in pay(api, bought)
    assert api.order(customer, order["id"])["status"] == "paid"
    held = studio.credits(customer)
    assert [(u["serviceName"], u["count"]) for u in held["unused"]] == [
        ("Consultation", 1),
        ("Massage", 3),
    ]
    assert datetime.fromisoformat(held["unused"][0]["nextExpiry"]) == valid_until
    (purchase,) = held["purchases"]
    assert (purchase["orderId"], purchase["orderStatus"], purchase["total"]) == (
        order["id"],
        "paid",
        200.0,
    )
    assert {(c["state"], c["paymentStatus"], c["status"]) for c in purchase["credits"]} == {
        ("unused", "paid", "draft")
    }

    r = studio.schedule(customer, massage_credit["id"], sessionId=workshop)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["status"], r.json()["paymentStatus"]) == (
        "used",
        "confirmed",
        "paid",
    )
    assert r.json()["session"]["id"] == workshop
    assert studio.seats_taken(workshop) == 1
    held = studio.credits(customer)
    assert [(u["serviceName"], u["count"]) for u in held["unused"]] == [
        ("Consultation", 1),
        ("Massage", 2),
    ]
    assert states(held["purchases"][0]["credits"])[("Massage", "used")] == 1


def test_a_bundle_of_ten_free_is_usable_at_once_and_idempotent(studio: Studio, api: Api) -> None:
    yoga = studio.service("Yoga class")
    bundle = studio.package("10-class pass", [(yoga, 10)], kind="bundle", validityDays=90)
    customer = api.user()
    first = studio.buy(customer, bundle, **{"Idempotency-Key": "pass-1"})
    assert first.status_code == 201, first.text
    again = studio.buy(customer, bundle, **{"Idempotency-Key": "pass-1"})
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    bought = first.json()
    assert (bought["order"]["status"], bought["order"]["total"]) == ("paid", 0.0)
    assert bought["payment"]["paymentRequired"] is False
    assert len(bought["credits"]) == 10
    assert {(c["state"], c["paymentStatus"]) for c in bought["credits"]} == {
        ("unused", "not_required")
    }
    held = studio.credits(customer)
    assert [(u["serviceName"], u["count"]) for u in held["unused"]] == [("Yoga class", 10)]
    assert held["total"] == 1  # the retry bought nothing more

    session = studio.session(yoga, NOW + timedelta(days=1))
    r = studio.schedule(customer, bought["credits"][0]["id"], sessionId=session)
    assert r.status_code == 200, r.text
    assert r.json()["paymentStatus"] == "not_required"

    r = studio.buy(customer, yoga)
    assert code(r) == (409, "conflict")  # not a package: book it instead


def test_an_org_without_online_payments_sells_credits_paid_at_the_desk(
    api: Api, clock: Clock, worker: Worker
) -> None:
    desk = Studio(api, "desk", payments_enabled=False)
    yoga = desk.service("Yoga")
    bundle = desk.package("5 classes", [(yoga, 5)], kind="bundle", price=50)
    customer = api.user()
    bought = desk.bought(customer, bundle)
    assert bought["payment"]["paymentRequired"] is False
    assert (bought["order"]["status"], bought["order"]["holdExpiresAt"]) == ("open", None)
    assert {(c["state"], c["paymentStatus"]) for c in bought["credits"]} == {("unused", "pending")}
    clock.advance(hours=1)
    worker.run_periodic(force=True)  # no hold: the hold expiry leaves it alone
    assert api.order(customer, bought["order"]["id"])["status"] == "open"

    session = desk.session(yoga, NOW + timedelta(days=1))
    credit = bought["credits"][0]["id"]
    r = desk.schedule(customer, credit, sessionId=session)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["paymentStatus"]) == ("confirmed", "pending")
    # Cancelling the scheduled one keeps the order open: four credits are left to use.
    r = api.client.put(f"/api/v1/bookings/{credit}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    assert api.order(customer, bought["order"]["id"])["status"] == "open"
    assert [u["count"] for u in desk.credits(customer)["unused"]] == [4]


# --- when the payment does not come -----------------------------------------------------


def test_a_declined_payment_cancels_the_credits(studio: Studio, api: Api) -> None:
    yoga = studio.service("Yoga")
    bundle = studio.package("Pass", [(yoga, 3)], kind="bundle", price=30)
    session = studio.session(yoga, NOW + timedelta(days=1))
    customer = api.user()
    bought = studio.bought(customer, bundle)
    assert "declined" in pay(api, bought, "fail")
    placed = api.order(customer, bought["order"]["id"])
    assert (placed["status"], placed["closedReason"]) == ("failed", "payment_failed")
    assert {b["status"] for b in placed["bookings"]} == {"cancelled"}
    held = studio.credits(customer)
    assert held["unused"] == []
    assert {c["state"] for c in held["purchases"][0]["credits"]} == {"cancelled"}
    r = studio.schedule(customer, bought["credits"][0]["id"], sessionId=session)
    assert code(r) == (409, "credit_not_usable")


def test_an_expired_hold_cancels_the_credits_and_a_late_payment_revives_them(
    studio: Studio, api: Api, clock: Clock, worker: Worker, database: Database
) -> None:
    yoga = studio.service("Yoga")
    bundle = studio.package("Pass", [(yoga, 2)], kind="bundle", price=30)
    customer = api.user()
    bought = studio.bought(customer, bundle)
    clock.advance(minutes=16)
    assert worker.run_periodic(force=True)["expire_holds"] == 1
    placed = api.order(customer, bought["order"]["id"])
    assert (placed["status"], placed["closedReason"]) == ("cancelled", "payment_timeout")
    assert {b["status"] for b in placed["bookings"]} == {"cancelled"}

    assert "Payment received" in pay(api, bought)
    assert api.order(customer, bought["order"]["id"])["status"] == "paid"
    assert [u["count"] for u in studio.credits(customer)["unused"]] == [2]
    with database.read() as s:
        reasons = s.execute(
            select(BookingStatusChange.reason)
            .where(BookingStatusChange.booking_id == uuid.UUID(bought["credits"][0]["id"]))
            .order_by(BookingStatusChange.id)
        ).scalars()
        assert list(reasons) == ["bought: Pass", "payment_timeout", "paid after its hold ran out"]


# --- scheduling -----------------------------------------------------------------------


def test_scheduling_into_a_session_confirms_and_mails(
    studio: Studio, api: Api, worker: Worker, settings: Settings, database: Database
) -> None:
    yoga = studio.service("Yoga")
    pilates = studio.service("Pilates")
    bundle = studio.package("Pass", [(yoga, 3)], kind="bundle", validityDays=7)
    customer = api.user()
    credits = [c["id"] for c in studio.bought(customer, bundle)["credits"]]
    soon = studio.session(yoga, NOW + timedelta(days=1), seats=1)
    late = studio.session(yoga, NOW + timedelta(days=8))
    started = studio.session(yoga, NOW - timedelta(minutes=5))
    other = studio.session(pilates, NOW + timedelta(days=1))
    private = studio.session(yoga, NOW + timedelta(days=2), visibility="private")

    assert code(studio.schedule(customer, credits[0], sessionId=other)) == (
        409,
        "credit_wrong_service",
    )
    assert code(studio.schedule(customer, credits[0], sessionId=late)) == (409, "credit_expired")
    assert code(studio.schedule(customer, credits[0], sessionId=started)) == (
        409,
        "slot_unavailable",
    )
    assert code(studio.schedule(customer, credits[0], sessionId=private)) == (
        409,
        "slot_unavailable",
    )
    assert code(studio.schedule(customer, credits[0], sessionId=str(uuid.uuid4()))) == (
        404,
        "not_found",
    )
    assert code(studio.schedule(api.user(), credits[0], sessionId=soon)) == (404, "not_found")
    assert studio.schedule(customer, credits[0]).status_code == 422
    both = studio.schedule(customer, credits[0], sessionId=soon, startAt=NOW.isoformat())
    assert code(both) == (422, "validation_error")
    r = studio.schedule(customer, credits[0], sessionId=soon)
    assert r.status_code == 200, r.text
    assert code(studio.schedule(customer, credits[0], sessionId=soon)) == (
        409,
        "credit_not_usable",
    )
    assert code(studio.schedule(customer, credits[1], sessionId=soon)) == (409, "slot_full")
    assert studio.seats_taken(soon) == 1

    seen = api.booking(customer, credits[0])
    assert (seen["status"], seen["timeslotId"]) == ("confirmed", soon)
    assert [(h["fromStatus"], h["toStatus"]) for h in seen["statusHistory"]] == [
        (None, "draft"),
        ("draft", "confirmed"),
    ]
    with database.read() as s:
        events = s.execute(
            select(OutboxMessage.payload).where(OutboxMessage.stream == f"booking:{credits[0]}")
        ).scalars()
        assert [e["types"] for e in events] == [["booking.created", "booking.confirmed"]]
    worker.drain()
    assert [str(m["Subject"]).split(":")[0] for m in sent_mail(settings)] == ["Booking confirmed"]


def test_scheduling_a_provider_slot(studio: Studio, api: Api, database: Database) -> None:
    consult = studio.service("Consultation", maxDaysAhead=365)
    provider = studio.provider(consult)
    package = studio.package("Check-ups", [(consult, 2)], validityDays=14)
    customer = api.user()
    first, second = (c["id"] for c in studio.bought(customer, package)["credits"])
    nine = "2030-03-05T09:00:00+01:00"  # Tuesday 09:00 in Madrid

    r = studio.schedule(customer, first, startAt=nine, providerId=provider)
    assert r.status_code == 200, r.text
    session = r.json()["session"]
    assert (session["kind"], session["providerId"], session["startTime"]) == (
        "appointment",
        provider,
        "2030-03-05T08:00:00Z",
    )
    # The provider is taken then; another credit of the same customer is refused too.
    assert code(studio.schedule(customer, second, startAt=nine)) == (409, "slot_full")
    assert code(studio.schedule(customer, second, startAt="2030-03-05T07:00:00+01:00")) == (
        409,
        "slot_unavailable",
    )
    after_expiry = (NOW + timedelta(days=15)).isoformat()
    assert code(studio.schedule(customer, second, startAt=after_expiry)) == (
        409,
        "credit_expired",
    )
    r = studio.schedule(customer, second, startAt="2030-03-05T10:00:00+01:00")
    assert r.status_code == 200, r.text
    with database.read() as s:
        count = s.execute(
            select(func.count()).select_from(Session).where(Session.kind == "appointment")
        ).scalar_one()
    assert count == 2


def test_an_expired_credit_is_refused_and_the_job_marks_it(
    studio: Studio, api: Api, clock: Clock, database: Database
) -> None:
    yoga = studio.service("Yoga")
    bundle = studio.package("Pass", [(yoga, 2)], kind="bundle", validityDays=3)
    customer = api.user()
    credits = [c["id"] for c in studio.bought(customer, bundle)["credits"]]
    clock.advance(days=3)
    session = studio.session(yoga, clock.now + timedelta(hours=2))
    assert code(studio.schedule(customer, credits[0], sessionId=session)) == (
        409,
        "credit_expired",
    )
    held = studio.credits(customer)
    assert held["unused"] == []
    assert {c["state"] for c in held["purchases"][0]["credits"]} == {"expired"}

    with database.write() as s:
        assert packages.expire_credits(s, now=clock.now) == 2
    with database.write() as s:
        assert packages.expire_credits(s, now=clock.now) == 0
    held = studio.credits(customer)
    assert {(c["state"], c["status"]) for c in held["purchases"][0]["credits"]} == {
        ("expired", "cancelled")
    }
    assert code(studio.schedule(customer, credits[0], sessionId=session)) == (
        409,
        "credit_not_usable",
    )


def test_two_requests_scheduling_one_credit_one_wins(
    studio: Studio, api: Api, database: Database
) -> None:
    yoga = studio.service("Yoga")
    bundle = studio.package("Pass", [(yoga, 4)], kind="bundle")
    customer = api.user()
    credits = [uuid.UUID(c["id"]) for c in studio.bought(customer, bundle)["credits"]]
    sessions = [uuid.UUID(studio.session(yoga, NOW + timedelta(days=d))) for d in (1, 2)]
    me = api.client.get("/api/v1/auth/me", headers=customer).json()
    user_id = uuid.UUID(me["id"])

    def race(credit_id: uuid.UUID, targets: list[uuid.UUID]) -> list[str]:
        barrier = threading.Barrier(len(targets))
        results: list[str] = []

        def attempt(session_id: uuid.UUID) -> None:
            barrier.wait()
            try:
                with database.write() as s:
                    packages.schedule_credit(
                        s,
                        credit_id,
                        user_id=user_id,
                        target=SessionTarget(session_id),
                        now=NOW,
                    )
                results.append("ok")
            except DomainError as exc:
                results.append(exc.code)

        threads = [threading.Thread(target=attempt, args=(t,)) for t in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(results)

    for credit_id in credits:
        # The same credit into two sessions at once: one seat taken, in one session.
        assert race(credit_id, sessions) == ["credit_not_usable", "ok"]
    with database.read() as s:
        taken = sum(s.get(Session, i).booked_count for i in sessions)  # type: ignore[union-attr]
        confirmed = s.execute(
            select(func.count())
            .select_from(Booking)
            .where(Booking.id.in_(credits), Booking.status == "confirmed")
        ).scalar_one()
    assert (taken, confirmed) == (4, 4)
