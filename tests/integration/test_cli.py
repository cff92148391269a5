"""The `boxoffice` command line on a real database."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from boxoffice.cli import app
from boxoffice.db.models import Membership, Room, Session, User
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
