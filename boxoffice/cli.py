"""`boxoffice`: serve, migrate, demo and administration commands."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer

from boxoffice import server
from boxoffice.db import migrate as migrations
from boxoffice.db.session import Database, Db
from boxoffice.domain.errors import DomainError, NotFound
from boxoffice.services import auth, demo
from boxoffice.services.organizations import create_organization, get_organization_by_slug
from boxoffice.settings import Settings, get_settings

app = typer.Typer(help="Box Office booking engine.", no_args_is_help=True)


def _migrate(settings: Settings) -> None:
    db = Database.from_url(settings.sqlalchemy_url, pool_size=2)
    try:
        migrations.upgrade(db.engine)
    finally:
        db.dispose()


@contextmanager
def _command_transaction(settings: Settings) -> Iterator[Db]:
    """Migrate, then run the command in one write transaction; domain errors exit 1."""
    _migrate(settings)
    db = Database.from_url(settings.sqlalchemy_url, pool_size=2)
    try:
        with db.write() as s:
            yield s
    except DomainError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        db.dispose()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(f"Database migrated: {_safe_url(settings)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the database")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
) -> None:
    """Migrate, then serve the API (docs at /docs)."""
    settings = get_settings()
    _migrate(settings)
    _run_server(settings, host=host, port=port, workers=workers, access_log=access_log)


@app.command("demo")
def demo_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after seeding")
    ] = True,
) -> None:
    """Create the database, seed a demo organisation and serve it."""
    settings = get_settings()
    with _command_transaction(settings) as s:
        summary = demo.seed_demo(s, now=datetime.now(UTC))
    typer.echo(
        f"Demo organisation '{summary.org_slug}': {summary.rooms} rooms, "
        f"{summary.timeslots_created} new timeslots for the next 14 days.\n"
        f"  Database: {_safe_url(settings)}\n"
        f"  Admin:    {demo.ADMIN_EMAIL} / {demo.ADMIN_PASSWORD}\n"
        f"  Customer: {demo.CUSTOMER_EMAIL} / {demo.CUSTOMER_PASSWORD}\n"
        f"  API docs: http://{host}:{port}/docs"
    )
    if serve_after:
        _run_server(settings, host=host, port=port, workers=1, access_log=True)


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's e-mail")],
    password: Annotated[str, typer.Option(help="At least 8 characters")],
    org: Annotated[str, typer.Option(help="Organisation slug; created if new")] = "default",
    name: Annotated[str, typer.Option(help="The admin's name")] = "Administrator",
    org_name: Annotated[str | None, typer.Option(help="Name of a new organisation")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of a new organisation")] = "UTC",
    currency: Annotated[str, typer.Option(help="ISO currency of a new organisation")] = "EUR",
) -> None:
    """Create an account (or reset its password) as owner of an organisation."""
    with _command_transaction(get_settings()) as s:
        try:
            get_organization_by_slug(s, org)
        except NotFound:
            create_organization(
                s, slug=org, name=org_name or org, timezone=timezone, currency=currency
            )
        user = auth.create_admin(s, email=email, password=password, name=name, org_slug=org)
    typer.echo(f"{user.email} is now owner of '{org}'.")


def _run_server(
    settings: Settings, *, host: str, port: int, workers: int, access_log: bool
) -> None:
    # Every worker process builds its app from the environment: pin the resolved
    # database and data directory there, and create the secret key before they start.
    settings.resolved_secret_key()
    os.environ["BOXOFFICE_DATABASE_URL"] = settings.sqlalchemy_url
    os.environ["BOXOFFICE_DATA_DIR"] = str(settings.data_dir.resolve())
    server.run(host=host, port=port, workers=workers, access_log=access_log)


def _safe_url(settings: Settings) -> str:
    url = settings.sqlalchemy_url
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}"


if __name__ == "__main__":
    app()
