"""The `boxoffice` command line on a real database."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from boxoffice.cli import app
from boxoffice.db.models import Membership, Room, Service, Session, User
from boxoffice.db.session import Database
from boxoffice.services import demo
from boxoffice.settings import Settings, get_settings


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> CliRunner:
    monkeypatch.setenv("BOXOFFICE_DATABASE_URL", database_url)
    monkeypatch.setenv("BOXOFFICE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_demo_seeds_once_and_again_without_duplicates(
    cli_env: CliRunner, database: Database
) -> None:
    first = cli_env.invoke(app, ["demo", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert demo.ADMIN_EMAIL in first.output and demo.CUSTOMER_PASSWORD in first.output
    with database.read() as s:
        rooms = s.execute(select(func.count()).select_from(Room)).scalar_one()
        slots = s.execute(select(func.count()).select_from(Session)).scalar_one()
    assert rooms == 5
    assert slots > 14 * 5  # every room has slots on most of the next 14 days
    again = cli_env.invoke(app, ["demo", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert "0 new timeslots" in again.output
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Session)).scalar_one() == slots
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == 2


def test_create_admin_makes_an_owner_and_reports_bad_input(
    cli_env: CliRunner, database: Database
) -> None:
    ok = cli_env.invoke(
        app,
        [
            "create-admin",
            "--email",
            "Boss@Example.com",
            "--password",
            "long-enough",
            "--org",
            "studio",
            "--timezone",
            "Europe/Berlin",
        ],
    )
    assert ok.exit_code == 0, ok.output
    with database.read() as s:
        member = s.execute(select(Membership)).scalar_one()
        assert (member.role, member.organization.slug, member.organization.timezone) == (
            "owner",
            "studio",
            "Europe/Berlin",
        )
    bad = cli_env.invoke(app, ["create-admin", "--email", "x@example.com", "--password", "short"])
    assert bad.exit_code == 1
    assert "at least 8" in bad.output
    zone = cli_env.invoke(
        app,
        [
            "create-admin",
            "--email",
            "y@example.com",
            "--password",
            "long-enough",
            "--org",
            "mars",
            "--timezone",
            "Mars/Olympus",
        ],
    )
    assert zone.exit_code == 1
    assert "Unknown time zone" in zone.output


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = settings.resolved_secret_key()
    assert len(key) >= 40
    assert Settings(data_dir=tmp_path / "data").resolved_secret_key() == key
    mode = stat.S_IMODE((tmp_path / "data" / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert Settings(data_dir=tmp_path / "other").resolved_secret_key() != key


def test_demo_serves_and_delivers_mail_with_its_in_process_worker(tmp_path: Path) -> None:
    """`boxoffice demo` with no settings at all: SQLite, file mail, a worker in-process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env.pop("DATABASE_URL", None)
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxoffice.cli", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "demo did not start"
                time.sleep(0.2)
        database = Database.from_url(f"sqlite:///{tmp_path / '.boxoffice' / 'boxoffice.db'}")
        try:
            with database.read() as s:
                service = s.execute(
                    select(Service).where(Service.name == "First consultation")
                ).scalar_one()
                service_id = str(service.id)
        finally:
            database.dispose()
        day = (datetime.now(UTC) + timedelta(days=7)).replace(hour=0, minute=0, second=0)
        query = f"start={day:%Y-%m-%dT%H:%M:%SZ}&end={day + timedelta(days=3):%Y-%m-%dT%H:%M:%SZ}"
        with urllib.request.urlopen(
            f"{base}/api/v1/public/services/{service_id}/slots?{query}"
        ) as r:
            slots = json.load(r)["slots"]
        body = {
            "serviceId": service_id,
            "startTime": slots[0]["startTime"],
            "customer": {"name": "Zoe", "email": "zoe@example.com"},
        }
        request = urllib.request.Request(
            f"{base}/api/v1/public/bookings",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request) as r:
            assert r.status == 201
        mail = tmp_path / ".boxoffice" / "mail"
        deadline = time.monotonic() + 15
        while not (mail.exists() and list(mail.glob("*.eml"))):
            assert time.monotonic() < deadline, "no confirmation mail was delivered"
            time.sleep(0.2)
        [eml] = list(mail.glob("*.eml"))
        assert "zoe@example.com" in eml.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
