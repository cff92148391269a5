"""Shared fixtures: real databases (SQLite always, PostgreSQL when reachable), the
app over HTTP, a controllable clock and factories for the common rows."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from boxoffice.api.deps import get_now
from boxoffice.app import create_app
from boxoffice.db import migrate
from boxoffice.db.session import Database
from boxoffice.integrations.calendar.caldav import CalDavCalendar
from boxoffice.integrations.mail.files import FileMailer
from boxoffice.integrations.payments.offline import OfflineGateway
from boxoffice.integrations.webhooks import HttpWebhookSender
from boxoffice.services import auth
from boxoffice.services.organizations import create_organization
from boxoffice.services.ports import Adapters
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker

PG_URL = os.environ.get(
    "BOXOFFICE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [
    b for b in os.environ.get("BOXOFFICE_TEST_BACKENDS", "sqlite,postgresql").split(",") if b
]
REQUIRE_PG = os.environ.get("BOXOFFICE_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"
PASSWORD = "correct horse battery"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "database" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


# --- databases --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    db = Database.from_url(f"sqlite:///{path}")
    migrate.upgrade(db.engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped afterwards."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        message = (
            f"PostgreSQL is not reachable at {PG_URL} ({type(exc).__name__}); "
            "set BOXOFFICE_TEST_PG_URL to run the PostgreSQL tests"
        )
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    name = f"boxoffice_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    db = Database.from_url(url)
    migrate.upgrade(db.engine)
    db.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_all(db: Database) -> None:
    """Empty every table a test left rows in. Only those: a TRUNCATE costs the same for
    an empty table (new files for it and its indexes), and most tests touch few."""
    with db.engine.begin() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'alembic_version'"
            )
        ).scalars()
        probe = " UNION ALL ".join(
            f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables
        )
        used = [f'"{t}"' for t in conn.execute(text(probe)).scalars()] if probe else []
        if used:
            conn.execute(text(f"TRUNCATE {', '.join(used)} CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "boxoffice.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    db = Database.from_url(url, pool_size=1)
    _truncate_all(db)
    db.dispose()
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url, pool_size=20)
    yield db
    db.dispose()


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign-ins are tested, their cost is not: argon2 at its cheapest (the real cost is
    about 0.4 s per account, which would dominate the suite)."""
    monkeypatch.setattr(
        auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


# --- time -------------------------------------------------------------------------------


class Clock:
    """A settable 'now' for the app and the tests."""

    def __init__(self) -> None:
        self.now = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)  # a Monday

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- the app ------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-" + uuid.uuid4().hex,
    )


@pytest.fixture
def client(settings: Settings, database: Database, clock: Clock) -> Iterator[TestClient]:
    app = create_app(settings, database)
    app.dependency_overrides[get_now] = clock
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def adapters(settings: Settings, database: Database) -> Adapters:
    """The real adapters: .eml files in the data directory, CalDAV, HTTP webhooks, the
    offline payment gateway (the app's own, on the same database)."""
    return Adapters(
        mailer=FileMailer(settings.resolved_mail_dir, settings.mail_from),
        calendar=CalDavCalendar(timeout_s=3),
        webhooks=HttpWebhookSender(timeout_s=3),
        payments=OfflineGateway(database, settings.public_url),
    )


@pytest.fixture
def worker(settings: Settings, database: Database, adapters: Adapters, clock: Clock) -> Worker:
    """An outbox worker on the test clock; tests call ``drain()`` / ``run_periodic()``."""
    return Worker(database, settings, adapters, clock=clock)


def sent_mail(settings: Settings) -> list[EmailMessage]:
    """The messages the file mailer wrote, oldest first."""
    folder = settings.resolved_mail_dir
    if not folder.exists():
        return []
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [
        cast(EmailMessage, message_from_bytes(f.read_bytes(), policy=policy.default)) for f in files
    ]


class Api:
    """Thin helpers over the HTTP API, so tests read as what a client does."""

    def __init__(self, client: TestClient, database: Database) -> None:
        self.client = client
        self.database = database

    def user(
        self, email: str | None = None, *, org: str | None = None, role: str = "owner"
    ) -> dict[str, str]:
        """Create an account (an org member when ``org`` is given) and return auth headers."""
        email = email or f"u{uuid.uuid4().hex[:10]}@example.com"
        with self.database.write() as s:
            user = auth.register_user(s, email=email, password=PASSWORD, name="Test User")
            if org:
                auth.grant_role(s, user=user, org_slug=org, role=role)
        r = self.client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['accessToken']}"}

    def org(
        self,
        slug: str = "acme",
        *,
        timezone: str = "Europe/Madrid",
        currency: str = "EUR",
        refund_policy: Any = None,
        payments_enabled: bool = True,
    ) -> str:
        with self.database.write() as s:
            create_organization(
                s,
                slug=slug,
                name=slug.title(),
                timezone=timezone,
                currency=currency,
                refund_policy=refund_policy,
                payments_enabled=payments_enabled,
            )
        return slug

    def room(self, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {"name": "Room", "capacity": 4, "roomType": "meeting", "hourlyRate": 0} | fields
        r = self.client.post("/api/v1/admin/rooms", json=body, headers=admin)
        assert r.status_code == 201, r.text
        return r.json()

    def generate(
        self, admin: dict[str, str], room_id: str, *, expect: int = 201, **fields: Any
    ) -> dict[str, Any]:
        """Generate timeslots (default: 2030-03-05, 09:00-12:00, hourly); check the status."""
        body = {
            "roomId": room_id,
            "startDate": "2030-03-05",
            "endDate": "2030-03-05",
            "slotDuration": 60,
            "workingHours": {"start": "09:00", "end": "12:00"},
        } | fields
        r = self.client.post("/api/v1/admin/timeslots/generate", json=body, headers=admin)
        assert r.status_code == expect, (fields, r.text)
        return r.json()  # type: ignore[no-any-return]

    def timeslots(self, room_id: str, **params: Any) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/bookings/rooms/{room_id}/timeslots", params=params)
        assert r.status_code == 200, r.text
        return r.json()["timeslots"]  # type: ignore[no-any-return]

    def book(self, headers: dict[str, str], timeslot_id: str, **extra: Any) -> Any:
        return self.client.post(
            "/api/v1/bookings", json={"timeslotId": timeslot_id} | extra, headers=headers
        )

    def booked(self, headers: dict[str, str], timeslot_id: str, **extra: Any) -> dict[str, Any]:
        """Book, expecting 201; the new booking."""
        r = self.book(headers, timeslot_id, **extra)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def booking(self, headers: dict[str, str], booking_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/bookings/{booking_id}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def order(self, headers: dict[str, str], order_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/orders/{order_id}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def api(client: TestClient, database: Database) -> Api:
    return Api(client, database)


@pytest.fixture
def shop(api: Api) -> Callable[..., dict[str, Any]]:
    """An organisation with an admin, a room and one day of hourly timeslots."""

    def make(
        *,
        hourly_rate: float = 0,
        max_bookings: int = 1,
        capacity: int = 4,
        slug: str = "acme",
        **org: Any,
    ) -> dict[str, Any]:
        api.org(slug, **org)
        admin = api.user(org=slug)
        room = api.room(admin, hourlyRate=hourly_rate, capacity=capacity)
        api.generate(admin, room["id"], maxBookings=max_bookings)
        slots = api.timeslots(room["id"], date="2030-03-05")
        return {"admin": admin, "room": room, "slots": slots}

    return make
