"""`boxoffice`: serve, migrate, demo and administration commands."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer

from boxoffice import server
from boxoffice.db import migrate as migrations
from boxoffice.db.session import Database, Db
from boxoffice.domain.errors import DomainError, NotFound
from boxoffice.integrations.factory import build_adapters
from boxoffice.integrations.payments.offline import OfflineGateway
from boxoffice.observability import configure_logging
from boxoffice.services import auth, demo, outbox, payments
from boxoffice.services.organizations import create_organization, get_organization_by_slug
from boxoffice.services.outbox import DeliveryState, Topic
from boxoffice.services.ports import PaymentRefused
from boxoffice.settings import Settings, get_settings
from boxoffice.worker.dispatcher import Worker

app = typer.Typer(help="Box Office booking engine.", no_args_is_help=True)
outbox_app = typer.Typer(help="Emails, calendar writes and webhooks waiting or done.")
app.add_typer(outbox_app, name="outbox")
payments_app = typer.Typer(help="Payments through the offline gateway.", no_args_is_help=True)
app.add_typer(payments_app, name="payments")

WorkerOption = Annotated[
    bool, typer.Option("--worker/--no-worker", help="Deliver the outbox in this process")
]


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
    worker: WorkerOption = True,
) -> None:
    """Migrate, then serve the API (docs at /docs) and deliver the outbox."""
    settings = get_settings()
    _migrate(settings)
    _run_server(
        settings, host=host, port=port, workers=workers, access_log=access_log, worker=worker
    )


@app.command("demo")
def demo_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after seeding")
    ] = True,
    worker: WorkerOption = True,
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
        f"  API docs: http://{host}:{port}/docs\n"
        f"  Mail:     {settings.resolved_mail_dir.resolve()} (one .eml file per message)"
    )
    if serve_after:
        _run_server(settings, host=host, port=port, workers=1, access_log=True, worker=worker)


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


@app.command("worker")
def worker_command(
    once: Annotated[bool, typer.Option(help="Deliver what is due now, then exit")] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's /metrics on this port")
    ] = None,
) -> None:
    """Deliver the outbox and run the periodic jobs (several may run on PostgreSQL)."""
    settings = get_settings()
    configure_logging()
    _migrate(settings)
    db = Database.from_url(settings.sqlalchemy_url, pool_size=2)
    worker = Worker(db, settings, build_adapters(settings, db))
    try:
        if once:
            worker.run_periodic(force=True)
            typer.echo(f"Delivered {worker.drain()} outbox rows.")
            return
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr="127.0.0.1")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        worker.run(stop)
    finally:
        db.dispose()


@outbox_app.callback(invoke_without_command=True)
def outbox_list(
    ctx: typer.Context,
    state: Annotated[DeliveryState | None, typer.Option(help="Only rows in this state")] = None,
    topic: Annotated[Topic | None, typer.Option(help="Only rows of this topic")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """The backlog and the newest deliveries of every organisation."""
    if ctx.invoked_subcommand is not None:
        return
    with _command_transaction(get_settings()) as s:
        now = datetime.now(UTC)
        backlog = outbox.backlog(s, now=now)
        page = outbox.list_deliveries(s, org_id=None, state=state, topic=topic, limit=limit)
        oldest = (
            f", oldest from {backlog.oldest_pending_at:%Y-%m-%d %H:%M:%S}Z"
            if backlog.oldest_pending_at
            else ""
        )
        typer.echo(
            f"pending {backlog.pending} (due now {backlog.due}{oldest}), dead {backlog.dead}"
        )
        for row in page.items:
            typer.echo(
                f"{row.id:>8}  {row.topic:<8} {outbox.state_of(row).value:<9} "
                f"attempts {row.attempts:<2} {row.created_at:%Y-%m-%d %H:%M:%S}  "
                f"{(row.last_error or '')[:80]}"
            )


@outbox_app.command("retry")
def outbox_retry(delivery_id: Annotated[int, typer.Argument(help="The dead row's id")]) -> None:
    """Give a dead delivery a fresh set of attempts, due now."""
    with _command_transaction(get_settings()) as s:
        outbox.retry(s, delivery_id, org_id=None, now=datetime.now(UTC))
    typer.echo(f"Delivery {delivery_id} is due again.")


def _settle(order_id: str, outcome: str) -> None:
    settings = get_settings()
    _migrate(settings)
    db = Database.from_url(settings.sqlalchemy_url, pool_size=2)
    try:
        gateway = build_adapters(settings, db).payments
        if not isinstance(gateway, OfflineGateway):
            typer.echo("Error: this instance takes payments through Stripe.", err=True)
            raise typer.Exit(code=1)
        try:
            with db.read() as s:
                ref = payments.payable_ref(s, uuid.UUID(order_id), gateway=gateway.name)
            result = gateway.settle(ref, outcome, now=datetime.now(UTC))
        except ValueError as exc:
            typer.echo(f"Error: {order_id!r} is not an order id.", err=True)
            raise typer.Exit(code=1) from exc
        except (DomainError, PaymentRefused) as exc:
            message = exc.message if isinstance(exc, DomainError) else str(exc)
            typer.echo(f"Error: {message}", err=True)
            raise typer.Exit(code=1) from exc
    finally:
        db.dispose()
    typer.echo(f"Order {order_id}: payment {outcome}; {result.replace('_', ' ')}.")


@payments_app.command("succeed")
def payments_succeed(
    order_id: Annotated[str, typer.Argument(help="The order's id")],
) -> None:
    """The order's customer has paid (as Stripe's payment_intent.succeeded)."""
    _settle(order_id, "succeeded")


@payments_app.command("fail")
def payments_fail(
    order_id: Annotated[str, typer.Argument(help="The order's id")],
) -> None:
    """The order's payment was declined (as Stripe's payment_intent.payment_failed)."""
    _settle(order_id, "failed")


def _run_server(
    settings: Settings, *, host: str, port: int, workers: int, access_log: bool, worker: bool
) -> None:
    # Every worker process builds its app from the environment: pin the resolved
    # database and data directory there, and create the secret key before they start.
    settings.resolved_secret_key()
    os.environ["BOXOFFICE_DATABASE_URL"] = settings.sqlalchemy_url
    os.environ["BOXOFFICE_DATA_DIR"] = str(settings.data_dir.resolve())
    if "public_url" not in settings.model_fields_set:
        # Links in emails and the checkout page point at this server unless told otherwise.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        os.environ["BOXOFFICE_PUBLIC_URL"] = f"http://{shown}:{port}"
    configure_logging()
    server.run(host=host, port=port, workers=workers, access_log=access_log, worker=worker)


def _safe_url(settings: Settings) -> str:
    url = settings.sqlalchemy_url
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}"


if __name__ == "__main__":
    app()
