#!/usr/bin/env python
"""Payments benchmark: Stripe webhooks on a real `boxoffice serve`, on PostgreSQL.

What it does, in order:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens) and starts
   the Stripe API stand-in of the test suite (``tests/support/stripe_stub.py``) on
   127.0.0.1, in this process;
2. starts ``boxoffice serve --port P --workers N --no-worker`` with the Stripe settings
   pointing at the stand-in (``BOXOFFICE_STRIPE_SECRET_KEY``, ``_API_BASE``,
   ``_WEBHOOK_SECRET``), so the server's own ``stripe`` SDK creates the PaymentIntents
   and the webhook route checks real signatures;
3. seeds an organisation that takes payments, one customer per seeding client and 32 rooms
   of priced, one-seat, 15-minute timeslots, then books as many seats as the parts may
   use over HTTP (``POST /api/v1/bookings``): each booking stays pending with an open
   order and a PaymentIntent created at the stand-in; the intent is then marked paid there
   and its ``payment_intent.succeeded`` event built as Stripe sends it. A CHECKPOINT
   follows, before anything is measured;
4. **throughput**: posts the signed events to ``POST /api/v1/payments/webhook/stripe``
   from 1, 8 and 32 concurrent clients, each intent's event once, each run bounded by an
   event count and a duration and preceded by a warm-up; repeated, interleaved; the rows
   each run added are counted and must match the events applied;
5. **duplicates**: re-sends events already applied (same event id, signed anew, as
   Stripe's retries are) and checks that nothing in the database changed; **races**:
   sends each of a few intents' event twice at once plus a second event id for the same
   payment, and checks that each payment was applied once;
6. **in-process**: the same work without HTTP (``parse_webhook``, then
   ``payments.apply_event`` in one write transaction), every SQL statement timed from
   SQLAlchemy's cursor events;
7. **end to end**: marks the outbox rows of the parts above delivered, starts
   ``boxoffice worker`` (once per ``--polls`` value, its ``BOXOFFICE_WORKER_POLL_S``; 1 s
   is the default setting) and posts a paced stream of events, one at a time; for each
   booking, the time from sending the webhook to its confirmation email row being written
   (``outbox.created_at``), seen committed (polling) and sent (``delivered_at``), and the
   ``.eml`` file the mailer wrote;
8. audits the whole database: every order whose event was applied is paid once, its
   booking confirmed, exactly one ``booking.confirmed`` event row per booking, one
   ``payment_events`` row per distinct event id sent, no refunds, no seat overbooked;
9. writes ``bench/results/payments-postgresql.{json,md}`` (``-quick`` with ``--quick``),
   with which code was measured (commit, uncommitted changes under ``boxoffice/``).

Each measured part first waits (within a budget) for the machine to be idle and reports
the load it saw. The load generator is the one of ``bookings.py``: one thread per client,
each with its own keep-alive ``http.client`` connection, released together, a closed
loop. Events are signed just before each run (a signature is valid for 5 minutes).

Exit status 0 when every target is met, 1 when one is not.
Run ``python bench/payments.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import cli, log
from harness.cpu import CpuMeter, QuietGate, postgres_pids
from harness.database import PASSWORD, connected_engine, fresh_database, seat_audit
from harness.report import (
    code_line,
    code_state,
    machine_info,
    machine_lines,
    report_header,
    run_benchmark,
    targets_lines,
)
from harness.server import HOST, Client, Server, http_call, serving
from harness.stats import latency_summary, median, percentile
from sqlalchemy import Engine, event, select, text

from boxoffice.db.models import Session
from boxoffice.db.session import Database
from boxoffice.integrations.mail.files import eml_name
from boxoffice.integrations.payments.stripe import parse_webhook
from boxoffice.services import auth
from boxoffice.services import payments as payment_service
from boxoffice.services.organizations import create_organization, update_payment_settings
from boxoffice.worker.dispatcher import message_id

# The Stripe API stand-in lives with the test suite, at the repository's root.
sys.path.insert(1, str(cli.BENCH_DIR.parent))
from tests.support.stripe_stub import StripeStub, running_stripe_stub, signature_header

WEBHOOK_PATH = "/api/v1/payments/webhook/stripe"
BOOKINGS_PATH = "/api/v1/bookings"
STRIPE_KEY = "sk_test_boxofficebench"
SUCCEEDED = "payment_intent.succeeded"
# Signed and checked, then acknowledged and ignored: the route without the database.
IGNORED = "payment_intent.created"
# Priced rooms: EUR 20.00 an hour, one-seat 15-minute timeslots 06:00-22:00 UTC (5.00 each).
POOL_ROOMS = 32
SLOTS_PER_ROOM_DAY = 64
HOURLY_RATE = "20.00"
# Seats stay held while the benchmark runs, whatever its length (the default is 15).
HOLD_MIN = 240
RACE_CLIENTS = 32
E2E_WARMUP = 5
# Seats booked at a time when the pool runs short.
TOP_UP = 200

TARGET_EVENTS_PER_S = 500.0
TARGET_CLIENTS = 8


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    pg_url: str
    workers: int
    port: int
    clients: tuple[int, ...]
    events: int
    duration_s: float
    warmup: int
    repeats: int
    duplicates: int
    ignored: int
    races: int
    inprocess_events: int
    latency_events: int
    latency_rate: float
    polls: tuple[float, ...]
    seed_clients: int
    timeout_s: float
    seed: int
    quiet_wait_s: float
    quiet_budget_s: float
    quiet_cores: float
    out: Path
    quick: bool


def float_list(option: str) -> tuple[float, ...]:
    """The numbers of a comma-separated option such as ``"1,0.05"``, in the order given."""
    return tuple(dict.fromkeys(float(x) for x in option.split(",") if x.strip()))


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = cli.new_parser("Benchmark Stripe webhook processing and payment-to-email latency.")
    p.add_argument("--workers", type=int, default=2, help="Server processes")
    p.add_argument("--port", type=int, default=0, help="Server port (0: a free one)")
    p.add_argument("--clients", default="1,8,32", help="Concurrent webhook clients")
    p.add_argument("--events", type=int, default=800, help="Max events per measured run")
    p.add_argument("--duration", type=float, default=5.0, help="Max seconds per measured run")
    p.add_argument("--warmup", type=int, default=100, help="Unmeasured events before each run")
    p.add_argument("--repeats", type=int, default=3, help="Runs per figure; medians reported")
    p.add_argument(
        "--duplicates", type=int, default=1000, help="Re-sent events per repeat (0: skip)"
    )
    p.add_argument(
        "--ignored",
        type=int,
        default=600,
        help="Events of an ignored type per client count per repeat (0: skip)",
    )
    p.add_argument("--races", type=int, default=100, help="Intents raced (0: skip)")
    p.add_argument(
        "--inprocess-events", type=int, default=300, help="Events applied in-process (0: skip)"
    )
    p.add_argument(
        "--latency-events", type=int, default=150, help="Events per poll setting (0: skip)"
    )
    p.add_argument("--latency-rate", type=float, default=10.0, help="Events per second, end to end")
    p.add_argument(
        "--polls",
        default="1,0.05",
        help="BOXOFFICE_WORKER_POLL_S of the worker, end to end (1 s is the default)",
    )
    p.add_argument("--seed-clients", type=int, default=8, help="Clients booking the seats")
    p.add_argument("--timeout", type=float, default=30.0, help="Per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=1, help="Seed of the duplicates' choice")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="Before each measured run, wait up to this many seconds for the machine to be "
        "idle (other processes below --quiet-cores); the load seen is reported either way",
    )
    p.add_argument(
        "--quiet-budget",
        type=float,
        default=60.0,
        help="At most this many seconds of such waiting in all (0: never wait)",
    )
    p.add_argument("--quiet-cores", type=float, default=0.3, help="Busy cores that count as idle")
    cli.add_out_option(p, "bench/results/payments-postgresql, -quick appended with --quick")
    cli.add_quick_option(
        p,
        "1 repeat, 200 events or 2 s per run, 100 duplicates and ignored, 20 races, 50 in-process, "
        "20 end to end per poll, 10 s of quiet waits",
    )
    a = p.parse_args(argv)
    clients = cli.int_list(a.clients)
    if not clients or min(clients) < 1:
        p.error("--clients needs positive integers")
    polls = float_list(a.polls)
    if min(polls, default=0) <= 0:
        p.error("--polls needs positive numbers")
    if a.quick:
        a.repeats, a.events, a.duration = 1, min(a.events, 200), min(a.duration, 2.0)
        a.warmup, a.duplicates = min(a.warmup, 20), min(a.duplicates, 100)
        a.ignored = min(a.ignored, 100)
        a.races, a.inprocess_events = min(a.races, 20), min(a.inprocess_events, 50)
        a.latency_events, a.quiet_budget = min(a.latency_events, 20), min(a.quiet_budget, 10.0)
    cli.require_at_least_one(p, a, ("events", "repeats", "workers", "seed_clients"))
    negative = min(a.warmup, a.duplicates, a.ignored, a.races, a.inprocess_events)
    negative = min(negative, a.latency_events)
    negative = min(negative, a.quiet_wait, a.quiet_budget)
    if negative < 0 or a.duration <= 0 or a.timeout <= 0 or a.latency_rate <= 0:
        p.error(
            "counts and --quiet-* must not be negative; --duration, --timeout and "
            "--latency-rate positive"
        )
    stem = "payments-postgresql" + ("-quick" if a.quick else "")
    return cli.options_from(
        Options,
        a,
        clients=clients,
        polls=polls,
        duration_s=a.duration,
        timeout_s=a.timeout,
        quiet_wait_s=a.quiet_wait,
        quiet_budget_s=a.quiet_budget,
        out=cli.results_path(a.out, stem),
    )


# --- HTTP ---------------------------------------------------------------------------------


class HttpClient(Client):
    """A keep-alive client that keeps the answer's body and takes headers per request."""

    def exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[str, float, bytes]:
        """Status (or the exception's name), seconds taken, the body. A failure is
        reported, not retried; the connection is reopened for the next request."""
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.connect()
            assert self.conn is not None
            self.conn.request(method, path, body, {**self.headers, **(headers or {})})
            resp = self.conn.getresponse()
            raw = resp.read()
            return str(resp.status), time.perf_counter() - started, raw
        except (OSError, http.client.HTTPException) as exc:
            elapsed = time.perf_counter() - started
            self.close()
            return type(exc).__name__, elapsed, b""

    def post_event(self, body: bytes, signature: str) -> tuple[str, float, str]:
        """POST one signed webhook: status, seconds, and the outcome the server answered
        (``confirmed``, ``duplicate``, ...; for an error its code)."""
        status, seconds, raw = self.exchange(
            "POST", WEBHOOK_PATH, body, {"Stripe-Signature": signature}
        )
        return status, seconds, outcome_of(status, raw)


def outcome_of(status: str, raw: bytes) -> str:
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        return "unreadable"
    if status == "200":
        return str(answer.get("outcome", "?"))
    error = answer.get("error") if isinstance(answer, dict) else None
    return f"error:{error.get('code')}" if isinstance(error, dict) else f"error:{status}"


# --- seeding ------------------------------------------------------------------------------


@dataclass
class Intent:
    """One pending booking, its order and its PaymentIntent, with the body of the
    ``payment_intent.succeeded`` event Stripe would send for it."""

    booking_id: str
    order_id: str
    pi: str
    body: bytes
    event_id: str


def most_intents(opts: Options) -> int:
    """Fresh events every part may send (runs bounded by time send fewer): what is booked
    before anything is measured."""
    per_run = opts.events + opts.warmup
    total = opts.repeats * len(opts.clients) * per_run + global_warmup(opts)
    total += opts.races + opts.inprocess_events
    if opts.latency_events:
        total += len(opts.polls) * (opts.latency_events + E2E_WARMUP)
    return total


def global_warmup(opts: Options) -> int:
    return max(opts.warmup, 4 * max(opts.clients))


def seed(db_url: str, port: int, stub: StripeStub, opts: Options) -> Pool:
    """The organisation (taking payments), customers, priced rooms and their timeslots;
    returns the pool that books them as the parts need them."""
    started = time.perf_counter()
    database = Database.from_url(db_url, pool_size=2)
    try:
        with database.write() as s:
            org = create_organization(
                s,
                slug="bench",
                name="Bench Rooms",
                timezone="UTC",
                currency="EUR",
                payments_enabled=True,
            )
            update_payment_settings(s, org.id, live_gateway=False, hold_min=HOLD_MIN)
            auth.create_admin(
                s, email="admin@bench.example", password=PASSWORD, name="Admin", org_slug="bench"
            )
            for i in range(opts.seed_clients):
                auth.register_user(
                    s, email=f"c{i}@bench.example", password=PASSWORD, name=f"Customer {i}"
                )
    finally:
        database.dispose()

    def token(email: str) -> str:
        body = {"email": email, "password": PASSWORD}
        status, out = http_call(HOST, port, "POST", "/api/v1/auth/token", body)
        if status != 200:
            raise RuntimeError(f"token for {email}: {status} {out}")
        return str(out["accessToken"])

    with ThreadPoolExecutor(max_workers=4) as executor:  # argon2: both workers at once
        emails = ["admin@bench.example", *(f"c{i}@bench.example" for i in range(opts.seed_clients))]
        admin_token, *customer_tokens = executor.map(token, emails)
    admin = {"Authorization": f"Bearer {admin_token}"}
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    most = most_intents(opts) + TOP_UP
    days = math.ceil(most / (POOL_ROOMS * SLOTS_PER_ROOM_DAY))
    if days > 366:
        raise RuntimeError(f"{most} bookings need too many timeslots")
    room_ids = []
    for i in range(POOL_ROOMS):
        body = {"name": f"Room {i}", "capacity": 4, "roomType": "meeting"}
        body["hourlyRate"] = HOURLY_RATE
        status, out = http_call(HOST, port, "POST", "/api/v1/admin/rooms", body, admin)
        if status != 201:
            raise RuntimeError(f"room {i}: {status} {out}")
        room_ids.append(str(out["id"]))
        generate = {
            "roomId": out["id"],
            "startDate": tomorrow.isoformat(),
            "endDate": (tomorrow + timedelta(days=days - 1)).isoformat(),
            "slotDuration": 15,
            "workingHours": {"start": "06:00", "end": "22:00"},
            "maxBookings": 1,
        }
        path = "/api/v1/admin/timeslots/generate"
        status, out = http_call(HOST, port, "POST", path, generate, admin)
        if status != 201:
            raise RuntimeError(f"timeslots of room {i}: {status} {out}")
    with connected_engine(db_url) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(Session.id)
            .where(Session.room_id.in_([uuid.UUID(r) for r in room_ids]))
            .order_by(Session.start_at, Session.room_id)
        )
        slots = [str(x) for x in rows.scalars()]
    log(
        f"seeded in {time.perf_counter() - started:.1f} s: {opts.seed_clients} customers, "
        f"{len(slots)} priced timeslots in {POOL_ROOMS} rooms"
    )
    return Pool(Booker(port, customer_tokens, slots, stub, opts.timeout_s))


class Booker:
    """Books priced seats over HTTP, one client per customer in parallel: each booking
    stays pending with an open order and a PaymentIntent, which is then marked paid at
    the stand-in and its ``payment_intent.succeeded`` event built."""

    def __init__(
        self,
        port: int,
        tokens: Sequence[str],
        slots: Sequence[str],
        stub: StripeStub,
        timeout_s: float,
    ) -> None:
        self.port = port
        self.tokens = tokens
        self.slots = list(slots)
        self.used = 0
        self.stub = stub
        self.timeout_s = timeout_s
        self.seconds = 0.0
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []

    def book(self, n: int) -> list[Intent]:
        if self.used + n > len(self.slots):
            raise RuntimeError(f"{n} more bookings wanted, {len(self.slots) - self.used} left")
        slots = self.slots[self.used : self.used + n]
        self.used += n
        booked = self._post_all(slots)
        intents = []
        for answer in booked:
            payment = answer.get("payment") or {}
            secret = payment.get("clientSecret")
            if answer.get("status") != "pending" or not payment.get("paymentRequired"):
                raise RuntimeError(f"a priced booking did not wait for its payment: {answer}")
            if not secret:
                raise RuntimeError(f"no PaymentIntent for a priced booking: {answer}")
            pi = str(secret).split("_secret_", 1)[0]
            self.stub.succeed(pi)
            stripe_event = self.stub.event(SUCCEEDED, pi)
            # As Stripe sends it (and as the test suite's `signed` does): indented JSON.
            body = json.dumps(stripe_event, indent=2).encode()
            booking, order = str(answer["id"]), str(answer["orderId"])
            intents.append(Intent(booking, order, pi, body, str(stripe_event["id"])))
        return intents

    def _post_all(self, slots: Sequence[str]) -> list[dict[str, Any]]:
        """POST a booking of each slot; the answers in slot order (all must be 201)."""
        lock = threading.Lock()
        cursor = [0]
        answers: list[dict[str, Any] | None] = [None] * len(slots)
        failures: list[str] = []

        def work(tok: str) -> None:
            client = HttpClient(self.port, tok, self.timeout_s)
            try:
                while True:
                    with lock:
                        i = cursor[0]
                        if i >= len(slots) or failures:
                            return
                        cursor[0] = i + 1
                    body = b'{"timeslotId":"' + slots[i].encode() + b'"}'
                    status, seconds, raw = client.exchange("POST", BOOKINGS_PATH, body)
                    with lock:
                        self.statuses[status] += 1
                        self.latencies.append(seconds)
                        if status == "201":
                            answers[i] = json.loads(raw)
                        else:
                            failures.append(f"{status} {raw[:300]!r}")
            finally:
                client.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in self.tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.seconds += time.perf_counter() - started
        if failures:
            raise RuntimeError(f"booking failed ({dict(self.statuses)}): {failures[:3]}")
        return [a for a in answers if a is not None]

    def summary(self) -> dict[str, Any]:
        booked = self.statuses.get("201", 0)
        return {
            "bookings": booked,
            "clients": len(self.tokens),
            "seconds": round(self.seconds, 2),
            "bookings_per_s": round(booked / self.seconds, 1) if self.seconds else 0.0,
            "status": dict(self.statuses),
            "latency": {k: round(v, 2) for k, v in latency_summary(self.latencies).items()},
        }


class Pool:
    """The intents not sent yet, handed out in order. All are booked before the first
    run (``ensure``); should a part still find too few, TOP_UP more are booked before
    it."""

    def __init__(self, booker: Booker) -> None:
        self.booker = booker
        self.intents: list[Intent] = []
        self.cursor = 0

    def ensure(self, n: int) -> None:
        """At least ``n`` intents ready to send."""
        missing = n - (len(self.intents) - self.cursor)
        if missing > 0:
            count = max(missing, TOP_UP)
            started = time.perf_counter()
            self.intents += self.booker.book(count)
            log(f"booked {count} priced seats in {time.perf_counter() - started:.1f} s")

    def take(self, n: int) -> list[Intent]:
        self.ensure(n)
        taken = self.intents[self.cursor : self.cursor + n]
        self.cursor += n
        return taken

    def give_back(self, unsent: int) -> None:
        """The last ``unsent`` intents taken were not sent (a run bounded by time)."""
        self.cursor -= unsent


# --- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    """What one burst of webhooks produced: per request index its status, seconds and
    outcome; requests not issued (the duration ran out) are absent."""

    samples: dict[int, tuple[str, float, str]]
    elapsed_s: float
    cpu_cores: dict[str, float]


class Meter(CpuMeter):
    """Average cores busy over a run: the load generator (this process, with the Stripe
    stand-in, idle during the webhook runs), the server, PostgreSQL (its own processes and
    this database's backends), everything else (``others``: noise), the machine, steal."""

    def __init__(self, server_pids: Sequence[int], dbname: str) -> None:
        pids = list(server_pids)
        groups = {"server": lambda: pids, "postgres": lambda: postgres_pids(dbname)}
        super().__init__("client", groups)

    def stop(self) -> dict[str, float]:
        cores = super().stop()
        used = cores["client"] + cores["server"] + cores["postgres"]
        cores["others"] = max(0.0, cores["machine"] - used)
        return {k: round(v, 3) for k, v in cores.items()}


def drive(
    clients: Sequence[HttpClient],
    requests: Sequence[tuple[bytes, str]],
    *,
    max_seconds: float,
    server_pids: Sequence[int],
    dbname: str,
) -> Load:
    """POST the signed events from every client at once until all are sent or
    ``max_seconds`` have passed; each client sends its next one as soon as the previous
    answer arrives (closed loop). Requests go out in order, so events listed next to
    each other are in flight together."""
    lock = threading.Lock()
    next_index = [0]
    clock: dict[str, float] = {}
    per_client: list[dict[int, tuple[str, float, str]]] = [{} for _ in clients]

    def go() -> None:
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + max_seconds

    barrier = threading.Barrier(len(clients) + 1, action=go)
    stop = threading.Event()

    def work(i: int) -> None:
        client, out = clients[i], per_client[i]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        deadline = clock["deadline"]
        while time.perf_counter() < deadline and not stop.is_set():
            with lock:
                n = next_index[0]
                if n >= len(requests):
                    return
                next_index[0] = n + 1
            body, signature = requests[n]
            out[n] = client.post_event(body, signature)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    meter = Meter(server_pids, dbname)
    meter.start()
    try:
        barrier.wait()
        for t in threads:
            t.join()
    except BaseException:
        stop.set()
        barrier.abort()
        for t in threads:
            t.join(timeout=5)
        raise
    elapsed = time.perf_counter() - clock["start"]
    cpu = meter.stop()
    samples = {n: s for out in per_client for n, s in out.items()}
    return Load(samples=samples, elapsed_s=elapsed, cpu_cores=cpu)


def signed_requests(bodies: Sequence[bytes], secret: str) -> list[tuple[bytes, str]]:
    """Each body with a ``Stripe-Signature`` made now (valid for 5 minutes)."""
    return [(body, signature_header(body, secret)) for body in bodies]


# --- the database's view ------------------------------------------------------------------

CONFIRMED_EVENT = "topic = 'event' AND payload::jsonb -> 'types' @> '[\"booking.confirmed\"]'"


def snapshot(engine: Engine) -> dict[str, int]:
    """Counts of what a payment event may change."""
    sql = f"""
        SELECT (SELECT count(*) FROM payment_events) AS payment_events,
               (SELECT count(*) FROM orders WHERE status = 'paid') AS paid_orders,
               (SELECT count(*) FROM payments WHERE status = 'succeeded') AS succeeded_payments,
               (SELECT count(*) FROM bookings WHERE status = 'confirmed') AS confirmed_bookings,
               (SELECT count(*) FROM booking_status_changes) AS status_changes,
               (SELECT count(*) FROM outbox) AS outbox_rows,
               (SELECT count(*) FROM outbox WHERE {CONFIRMED_EVENT}) AS confirmed_event_rows,
               (SELECT count(*) FROM refunds) AS refunds
    """
    with engine.connect() as conn:
        row = conn.execute(text(sql)).mappings().one()
    return {k: int(v) for k, v in row.items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def audit(engine: Engine, paid_orders: set[str], event_ids: set[str]) -> dict[str, int]:
    """The whole database against what was sent: ``paid_orders`` the orders whose event
    was applied, ``event_ids`` every distinct event id sent. Every ``*_wrong`` must be 0."""
    with engine.connect() as conn:
        by_status = conn.execute(text("SELECT status, count(*) FROM orders GROUP BY 1")).all()
        orders: dict[str, int] = {str(k): int(v) for k, v in by_status}
        paid = {
            str(r[0])
            for r in conn.execute(text("SELECT id FROM orders WHERE status = 'paid'")).all()
        }
        q = {
            "paid_without_paid_at": "SELECT count(*) FROM orders WHERE status = 'paid' "
            "AND paid_at IS NULL",
            "orders_with_payments_not_one_succeeded": """
                SELECT count(*) FROM orders o WHERE o.status = 'paid' AND (
                    SELECT count(*) FROM payments p
                    WHERE p.order_id = o.id AND p.status = 'succeeded') <> 1""",
            "payments_succeeded": "SELECT count(*) FROM payments WHERE status = 'succeeded'",
            "bookings_confirmed_paid": "SELECT count(*) FROM bookings WHERE status = 'confirmed' "
            "AND payment_status = 'paid' AND hold_expires_at IS NULL",
            "bookings_pending": "SELECT count(*) FROM bookings WHERE status = 'pending'",
            "bookings_other": "SELECT count(*) FROM bookings "
            "WHERE status NOT IN ('pending', 'confirmed')",
            "confirmed_booking_order_not_paid": """
                SELECT count(*) FROM bookings b JOIN orders o ON o.id = b.order_id
                WHERE (b.status = 'confirmed') <> (o.status = 'paid')""",
            "confirmed_event_rows": f"SELECT count(*) FROM outbox WHERE {CONFIRMED_EVENT}",
            "bookings_with_confirmed_events_not_one": f"""
                SELECT count(*) FROM bookings b LEFT JOIN (
                    SELECT (payload::jsonb ->> 'bookingId')::uuid AS booking_id, count(*) AS n
                    FROM outbox WHERE {CONFIRMED_EVENT} GROUP BY 1
                ) AS e ON e.booking_id = b.id
                WHERE b.status = 'confirmed' AND coalesce(e.n, 0) <> 1""",
            "confirmed_events_of_unconfirmed_bookings": f"""
                SELECT count(*) FROM (
                    SELECT (payload::jsonb ->> 'bookingId')::uuid AS booking_id
                    FROM outbox WHERE {CONFIRMED_EVENT}
                ) AS e WHERE NOT EXISTS (
                    SELECT 1 FROM bookings b
                    WHERE b.id = e.booking_id AND b.status = 'confirmed')""",
            "payment_events": "SELECT count(*) FROM payment_events",
            "payment_events_confirmed": "SELECT count(*) FROM payment_events "
            "WHERE outcome = 'confirmed'",
            "payment_events_already_applied": "SELECT count(*) FROM payment_events "
            "WHERE outcome = 'already_applied'",
            "payment_events_other": "SELECT count(*) FROM payment_events "
            "WHERE outcome NOT IN ('confirmed', 'already_applied')",
            "refunds": "SELECT count(*) FROM refunds",
        }
        counts = {k: int(conn.execute(text(sql)).scalar_one()) for k, sql in q.items()}
        recorded_ids = {
            str(r[0]) for r in conn.execute(text("SELECT event_id FROM payment_events")).all()
        }
    seats = seat_audit(engine)
    n = len(paid_orders)
    result = {
        "orders_paid": orders.get("paid", 0),
        "orders_open": orders.get("open", 0),
        "orders_other": sum(v for k, v in orders.items() if k not in ("paid", "open")),
        **counts,
        "sent_orders": n,
        "sent_event_ids": len(event_ids),
        "paid_orders_wrong": len(paid ^ paid_orders),
        "event_ids_wrong": len(recorded_ids ^ event_ids),
        "overbooked_seats": seats["overbooked_seats"],
        "mismatched_sessions": seats["mismatched"],
    }
    result["counts_wrong"] = sum(
        [
            result["orders_paid"] != n,
            result["orders_other"] != 0,
            counts["payments_succeeded"] != n,
            counts["bookings_confirmed_paid"] != n,
            counts["bookings_other"] != 0,
            counts["confirmed_event_rows"] != n,
            counts["payment_events"] != len(event_ids),
            counts["payment_events_confirmed"] != n,
            counts["payment_events_other"] != 0,
            counts["refunds"] != 0,
        ]
    )
    return result


def audit_ok(a: dict[str, int]) -> bool:
    zero = (
        "counts_wrong",
        "paid_orders_wrong",
        "event_ids_wrong",
        "paid_without_paid_at",
        "orders_with_payments_not_one_succeeded",
        "confirmed_booking_order_not_paid",
        "bookings_with_confirmed_events_not_one",
        "confirmed_events_of_unconfirmed_bookings",
        "overbooked_seats",
        "mismatched_sessions",
    )
    return all(a[k] == 0 for k in zero)


# --- throughput ---------------------------------------------------------------------------


class Ledger:
    """What the benchmark has sent and seen applied."""

    def __init__(self) -> None:
        self.applied: list[Intent] = []  # outcome "confirmed", in order
        self.paid_orders: set[str] = set()
        self.event_ids: set[str] = set()

    def record(self, intent: Intent, event_id: str, outcome: str) -> None:
        self.event_ids.add(event_id)
        if outcome == "confirmed":
            self.applied.append(intent)
            self.paid_orders.add(intent.order_id)


@dataclass
class Bench:
    """What every part works with: the running server, the stand-in, the clients, the
    intents to send and what has been sent."""

    opts: Options
    db_url: str
    dbname: str
    server: Server
    engine: Engine
    stub: StripeStub
    secret: str
    pool: Pool
    ledger: Ledger
    clients: list[HttpClient]
    gate: QuietGate
    workdir: Path
    env: dict[str, str]


@dataclass
class RunResult:
    kind: str  # "fresh", "duplicates", "ignored" or "races"
    clients: int
    repeat: int
    requests: int
    elapsed_s: float
    bounded_by: str  # "events" or "duration"
    events_per_s: float  # 200 answers per second
    status: dict[str, int]
    outcomes: dict[str, int]
    latency: dict[str, float]
    db_delta: dict[str, int]
    cpu_cores: dict[str, float]
    idle_load: float  # cores busy just before the run (other work: noise)
    checks_ok: bool


def connected(b: Bench, n: int) -> list[HttpClient]:
    """The first ``n`` clients on fresh connections (the server drops idle ones after 5 s)."""
    for c in b.clients[:n]:
        c.connect()
    return b.clients[:n]


def fresh_run(b: Bench, n: int, count: int, *, repeat: int, measured: bool) -> RunResult:
    """``count`` fresh events (at most ``--duration`` seconds) from ``n`` clients; a
    measured run first waits for a quiet machine, and counts the rows it added."""
    b.pool.ensure(count)
    idle = b.gate.wait() if measured else math.nan
    clients = connected(b, n)
    intents = b.pool.take(count)
    before = snapshot(b.engine) if measured else {}
    load = drive(
        clients,
        signed_requests([i.body for i in intents], b.secret),
        max_seconds=b.opts.duration_s,
        server_pids=b.server.worker_pids(),
        dbname=b.dbname,
    )
    b.pool.give_back(count - len(load.samples))
    for k, (_, _, outcome) in load.samples.items():
        b.ledger.record(intents[k], intents[k].event_id, outcome)
    result = run_result("fresh", n, repeat, load, count, idle)
    if measured:
        result.db_delta = delta(snapshot(b.engine), before)
        confirmed = result.outcomes.get("confirmed", 0)
        d = result.db_delta
        result.checks_ok = (
            confirmed == result.requests
            and d["payment_events"] == d["paid_orders"] == d["succeeded_payments"] == confirmed
            and d["confirmed_bookings"] == d["confirmed_event_rows"] == confirmed
            and d["refunds"] == 0
        )
    return result


def run_result(
    kind: str, clients: int, repeat: int, load: Load, bound: int, idle: float
) -> RunResult:
    samples = list(load.samples.values())
    statuses = Counter(s for s, _, _ in samples)
    return RunResult(
        kind=kind,
        clients=clients,
        repeat=repeat,
        requests=len(samples),
        elapsed_s=round(load.elapsed_s, 3),
        bounded_by="events" if len(samples) >= bound else "duration",
        events_per_s=round(statuses.get("200", 0) / load.elapsed_s, 1),
        status=dict(sorted(statuses.items())),
        outcomes=dict(sorted(Counter(o for _, _, o in samples).items())),
        latency={k: round(v, 3) for k, v in latency_summary([s for _, s, _ in samples]).items()},
        db_delta={},
        cpu_cores=load.cpu_cores,
        idle_load=round(idle, 2),
        checks_ok=True,
    )


def duplicates_run(b: Bench, n: int, count: int, *, repeat: int, rng: random.Random) -> RunResult:
    """Re-send ``count`` events already applied (their own ids, signed anew, as Stripe's
    retries are): every answer must be "duplicate" and no row may change."""
    idle = b.gate.wait()
    clients = connected(b, n)
    chosen = [rng.choice(b.ledger.applied) for _ in range(count)]
    before = snapshot(b.engine)
    load = drive(
        clients,
        signed_requests([i.body for i in chosen], b.secret),
        max_seconds=120.0,
        server_pids=b.server.worker_pids(),
        dbname=b.dbname,
    )
    result = run_result("duplicates", n, repeat, load, count, idle)
    result.db_delta = delta(snapshot(b.engine), before)
    result.checks_ok = result.outcomes == {"duplicate": count} and not any(result.db_delta.values())
    return result


def ignored_run(b: Bench, n: int, count: int, *, repeat: int) -> RunResult:
    """``count`` signed events of a type the route acknowledges and ignores (it checks the
    signature and reads the JSON, then answers without a transaction): what a webhook
    costs before ``apply_event``. Every answer must be "ignored" and no row may change."""
    paid = b.ledger.applied[-count:]
    bodies = [json.dumps(b.stub.event(IGNORED, i.pi), indent=2).encode() for i in paid]
    idle = b.gate.wait()
    clients = connected(b, n)
    before = snapshot(b.engine)
    load = drive(
        clients,
        signed_requests(bodies, b.secret),
        max_seconds=120.0,
        server_pids=b.server.worker_pids(),
        dbname=b.dbname,
    )
    result = run_result("ignored", n, repeat, load, len(bodies), idle)
    result.db_delta = delta(snapshot(b.engine), before)
    ok = result.outcomes == {"ignored": len(bodies)}
    result.checks_ok = ok and not any(result.db_delta.values())
    return result


def races_run(b: Bench, n: int, count: int) -> RunResult:
    """For each of ``count`` fresh intents, three requests in a row, in flight together:
    its event, the same event again, and a second event (another id) of the same
    success. Each intent must be applied once: one "confirmed", one "duplicate" and one
    "already_applied" (which request wins is up to the race)."""
    b.pool.ensure(count)
    idle = b.gate.wait()
    clients = connected(b, n)
    intents = b.pool.take(count)
    others: list[tuple[Intent, bytes, str]] = []
    for intent in intents:
        other = b.stub.event(SUCCEEDED, intent.pi)
        others.append((intent, json.dumps(other, indent=2).encode(), str(other["id"])))
    bodies = []
    for intent, other_body, _ in others:
        bodies += [intent.body, intent.body, other_body]
    before = snapshot(b.engine)
    load = drive(
        clients,
        signed_requests(bodies, b.secret),
        max_seconds=120.0,
        server_pids=b.server.worker_pids(),
        dbname=b.dbname,
    )
    result = run_result("races", n, 0, load, len(bodies), idle)
    result.db_delta = delta(snapshot(b.engine), before)
    per_intent_ok = 0
    for k, (intent, _, other_id) in enumerate(others):
        got = [load.samples.get(3 * k + j, ("", 0.0, "missing"))[2] for j in range(3)]
        ids = [intent.event_id, intent.event_id, other_id]
        for event_id, outcome in zip(ids, got, strict=True):
            b.ledger.record(intent, event_id, outcome)
        per_intent_ok += sorted(got) == ["already_applied", "confirmed", "duplicate"]
    d = result.db_delta
    result.checks_ok = (
        per_intent_ok == count
        and d["payment_events"] == 2 * count
        and d["paid_orders"] == d["confirmed_bookings"] == d["confirmed_event_rows"] == count
        and d["refunds"] == 0
    )
    return result


def describe(r: RunResult) -> str:
    cpu = r.cpu_cores
    return (
        f"{r.kind:<10} c={r.clients:<3} #{r.repeat + 1} {r.requests:>5} events "
        f"{r.elapsed_s:5.1f} s {r.events_per_s:7.1f}/s p50 {r.latency['p50_ms']:6.1f} "
        f"p99 {r.latency['p99_ms']:6.1f} ms status {r.status} outcomes {r.outcomes} "
        f"cpu c/s/pg/others/all={cpu['client']:.2f}/{cpu['server']:.2f}/{cpu['postgres']:.2f}"
        f"/{cpu['others']:.2f}/{cpu['machine']:.2f} steal={cpu['steal']:.2f} "
        f"idle-before={r.idle_load:.2f} "
        f"checks {'ok' if r.checks_ok else 'FAILED'}"
    )


# --- in-process ---------------------------------------------------------------------------


_TABLE = re.compile(r"\b(?:FROM|INTO|(?<!FOR )UPDATE|JOIN)\s+\(?(\w+)", re.IGNORECASE)


def label_of(statement: str) -> str:
    """A statement's verb and tables: ``SELECT orders FOR UPDATE``, ``WITH/INSERT ...``."""
    flat = " ".join(statement.split())
    verb = flat.split(" ", 1)[0].upper()
    tables = list(dict.fromkeys(_TABLE.findall(flat)))
    label = f"{verb} {' + '.join(tables)}"
    if " FOR UPDATE" in flat.upper():
        label += " FOR UPDATE"
    if verb == "INSERT" and "ON CONFLICT" in flat.upper():
        label += " ON CONFLICT"
    return label


@dataclass
class InProcess:
    events: int
    idle_load: float
    wall: dict[str, float]  # parse + apply + commit, per event
    parse: dict[str, float]  # parse_webhook alone (signature + JSON)
    cpu_ms: float  # this process's CPU per event
    sql_ms: float  # summed statement time per event (cursor execute to return)
    statements: float  # per event
    by_statement: list[dict[str, Any]]  # label, count per event, ms per event
    outcomes: dict[str, int]


def inprocess_run(b: Bench, count: int) -> InProcess:
    """What the route does, without HTTP: ``parse_webhook``, then ``apply_event`` in one
    write transaction, one event at a time; the first tenth is warm-up."""
    b.pool.ensure(count)
    idle = b.gate.wait()
    intents = b.pool.take(count)
    database = Database.from_url(b.db_url, pool_size=1)
    current: list[tuple[str, float]] = []

    def before(conn: Any, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        current.append((statement, time.perf_counter() - conn.info.pop("bench_t0")))

    event.listen(database.engine, "before_cursor_execute", before)
    event.listen(database.engine, "after_cursor_execute", after)
    warm = max(1, count // 10)
    walls, parses, sql, counts = [], [], [], []
    statements: list[tuple[str, float]] = []
    outcomes: Counter[str] = Counter()
    cpu = 0.0
    try:
        for i, intent in enumerate(intents):
            signature = signature_header(intent.body, b.secret)
            current.clear()
            cpu0, t0 = time.process_time(), time.perf_counter()
            gateway_event = parse_webhook(intent.body, signature, b.secret)
            t1 = time.perf_counter()
            assert gateway_event is not None
            with database.write() as s:
                outcome = payment_service.apply_event(
                    s, gateway_event, gateway="stripe", now=datetime.now(UTC)
                )
            t2, cpu1 = time.perf_counter(), time.process_time()
            b.ledger.record(intent, intent.event_id, outcome)
            outcomes[outcome] += 1
            if i < warm:
                continue
            walls.append(t2 - t0)
            parses.append(t1 - t0)
            cpu += cpu1 - cpu0
            sql.append(sum(s for _, s in current))
            counts.append(len(current))
            statements += current
    finally:
        database.dispose()
    labels: dict[str, str] = {}
    per_label: Counter[str] = Counter()
    per_label_s: dict[str, float] = defaultdict(float)
    for statement, seconds in statements:
        label = labels.get(statement) or labels.setdefault(statement, label_of(statement))
        per_label[label] += 1
        per_label_s[label] += seconds
    n = len(walls)
    return InProcess(
        events=n,
        idle_load=round(idle, 2),
        wall={k: round(v, 3) for k, v in latency_summary(walls).items()},
        parse={k: round(v, 3) for k, v in latency_summary(parses).items()},
        cpu_ms=round(cpu * 1000 / n, 3),
        sql_ms=round(statistics.fmean(sql) * 1000, 3),
        statements=round(statistics.fmean(counts), 2),
        by_statement=[
            {
                "statement": label,
                "per_event": round(c / n, 2),
                "ms_per_event": round(per_label_s[label] * 1000 / n, 3),
            }
            for label, c in per_label.most_common()
        ],
        outcomes=dict(outcomes),
    )


# --- end to end ---------------------------------------------------------------------------


class WorkerProcess(Server):
    """``boxoffice worker`` in its own process group, up once its ``/metrics`` answers."""

    name = "worker"
    ready_path = "/metrics"

    def __init__(self, db_url: str, *, workdir: Path, poll_s: float, env: dict[str, str]) -> None:
        env = {**env, "BOXOFFICE_WORKER_POLL_S": f"{poll_s:g}"}
        super().__init__(db_url, port=0, workers=1, workdir=workdir, extra_env=env)
        self.log_path = workdir / f"worker-poll-{poll_s:g}.log"
        base = self.command[: self.command.index("serve")]
        self.command = [*base, "worker", "--metrics-port", str(self.port)]


@dataclass
class LatencyRun:
    poll_s: float
    events: int
    rate_per_s: float
    idle_load: float
    ack: dict[str, float]  # the webhook's answer
    written: dict[str, float]  # to the email row's created_at (the fan-out's clock)
    seen: dict[str, float]  # to the email row first seen committed (polled every 20 ms)
    sent: dict[str, float]  # to the email row's delivered_at (after the mailer wrote it)
    outcomes: dict[str, int]
    emails: int  # booking_confirmed email rows of these bookings
    eml_files: int  # the .eml files the mailer wrote for them
    missing: int  # bookings without a delivered email row at the deadline


def latency_run(b: Bench, poll_s: float) -> LatencyRun:
    """With a ``boxoffice worker`` polling every ``poll_s``: paced webhooks, one at a
    time, and for each booking the time to its confirmation email row."""
    opts = b.opts
    b.pool.ensure(E2E_WARMUP + opts.latency_events)
    worker = WorkerProcess(b.db_url, workdir=b.workdir, poll_s=poll_s, env=b.env)
    client = HttpClient(b.server.port, None, opts.timeout_s)
    sent_at: dict[str, float] = {}
    answers: dict[str, tuple[str, float, str]] = {}
    with serving(worker):
        warm = b.pool.take(E2E_WARMUP)
        paced(b, client, warm, {}, {})
        watch(b.engine, warm, timeout_s=30 + 4 * poll_s)
        idle = b.gate.wait()
        intents = b.pool.take(opts.latency_events)
        sender = threading.Thread(
            target=paced, args=(b, client, intents, sent_at, answers), daemon=True
        )
        sender.start()
        budget = opts.latency_events / opts.latency_rate + 30 + 4 * poll_s
        seen_written, _ = watch(b.engine, intents, timeout_s=budget, sender=sender)
        sender.join()
    client.close()
    streams = [f"email:{i.booking_id}" for i in intents]
    with b.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT stream, dedupe_key, created_at, delivered_at FROM outbox "
                "WHERE topic = 'email' AND stream = ANY(:s) "
                "AND payload::jsonb ->> 'kind' = 'booking_confirmed'"
            ),
            {"s": streams},
        ).all()
    email_of = {r[0]: r for r in rows}
    mail_dir = Path(worker.env["BOXOFFICE_DATA_DIR"]) / "mail"
    written, seen, sent, acks = [], [], [], []
    eml_files = missing = 0
    for intent in intents:
        stream = f"email:{intent.booking_id}"
        t0 = sent_at[intent.booking_id]
        acks.append(answers[intent.booking_id][1])
        row = email_of.get(stream)
        if row is None or row[3] is None:
            missing += 1
            continue
        written.append(row[2].timestamp() - t0)
        sent.append(row[3].timestamp() - t0)
        if stream in seen_written:
            seen.append(seen_written[stream] - t0)
        eml_files += (mail_dir / eml_name(message_id(row[1]))).exists()
    return LatencyRun(
        poll_s=poll_s,
        events=len(intents),
        rate_per_s=opts.latency_rate,
        idle_load=round(idle, 2),
        ack=spread(acks),
        written=spread(written),
        seen=spread(seen),
        sent=spread(sent),
        outcomes=dict(Counter(a[2] for a in answers.values())),
        emails=len(rows),
        eml_files=eml_files,
        missing=missing,
    )


def spread(seconds: Sequence[float]) -> dict[str, float]:
    """Min, p50, p95 and max in milliseconds (nearest rank)."""
    ms = sorted(v * 1000 for v in seconds)
    return {
        "min_ms": round(ms[0], 1) if ms else math.nan,
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "max_ms": round(ms[-1], 1) if ms else math.nan,
    }


def paced(
    b: Bench,
    client: HttpClient,
    intents: Sequence[Intent],
    sent_at: dict[str, float],
    answers: dict[str, tuple[str, float, str]],
) -> None:
    """Send the events one at a time, the n-th ``n / --latency-rate`` seconds after the
    first (open loop); records when each was sent (wall clock) and its answer."""
    client.connect()
    start = time.perf_counter()
    for n, intent in enumerate(intents):
        pause = start + n / b.opts.latency_rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        signature = signature_header(intent.body, b.secret)
        sent_at[intent.booking_id] = time.time()
        answer = client.post_event(intent.body, signature)
        answers[intent.booking_id] = answer
        b.ledger.record(intent, intent.event_id, answer[2])


def watch(
    engine: Engine,
    intents: Sequence[Intent],
    *,
    timeout_s: float,
    sender: threading.Thread | None = None,
    every_s: float = 0.02,
) -> tuple[dict[str, float], dict[str, float]]:
    """Poll the outbox until every booking's email row is delivered; returns when each
    was first seen written, and first seen delivered (wall clock)."""
    streams = [f"email:{i.booking_id}" for i in intents]
    written: dict[str, float] = {}
    delivered: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    sql = text(
        "SELECT stream, delivered_at IS NOT NULL FROM outbox "
        "WHERE topic = 'email' AND stream = ANY(:s)"
    )
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(sql, {"s": streams}).all()
            conn.rollback()  # a new snapshot for the next poll
            now = time.time()
            for stream, is_delivered in rows:
                written.setdefault(stream, now)
                if is_delivered:
                    delivered.setdefault(stream, now)
            sending = sender is not None and sender.is_alive()
            if len(delivered) == len(streams) and not sending:
                break
            time.sleep(every_s)
    if len(delivered) < len(streams):
        log(f"  {len(streams) - len(delivered)} confirmation emails not sent by the deadline")
    return written, delivered


def checkpoint(engine: Engine) -> None:
    """A PostgreSQL CHECKPOINT, if this user may (superuser or pg_checkpoint)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            conn.commit()
    except Exception as exc:  # the runs are still valid, only noisier
        log(f"no CHECKPOINT before the runs: {type(exc).__name__}")


def set_aside_outbox(engine: Engine) -> int:
    """Mark every pending outbox row delivered, so the worker starts with nothing due:
    the end-to-end part measures a worker that is not working off a backlog."""
    with engine.begin() as conn:
        result = conn.execute(
            text("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
        )
    return int(result.rowcount)


# --- report -------------------------------------------------------------------------------


def summarise(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.kind, r.clients), []).append(r)
    rows = []
    for (kind, clients), rs in groups.items():
        rows.append(
            {
                "kind": kind,
                "clients": clients,
                "runs": len(rs),
                "requests": median([r.requests for r in rs]),
                "events_per_s": median([r.events_per_s for r in rs]),
                "runs_events_per_s": [r.events_per_s for r in rs],
                "p50_ms": median([r.latency["p50_ms"] for r in rs]),
                "p99_ms": median([r.latency["p99_ms"] for r in rs]),
                "status": dict(sum((Counter(r.status) for r in rs), Counter())),
                "outcomes": dict(sum((Counter(r.outcomes) for r in rs), Counter())),
                "checks_failed": sum(not r.checks_ok for r in rs),
                "cpu_cores": {
                    k: median([r.cpu_cores[k] for r in rs])
                    for k in ("client", "server", "postgres", "others", "machine", "steal")
                },
            }
        )
    return rows


def targets(
    summary: list[dict[str, Any]],
    runs: Sequence[RunResult],
    final_audit: dict[str, int],
    latency: Sequence[LatencyRun],
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for row in summary:
        if row["kind"] == "fresh" and row["clients"] == TARGET_CLIENTS:
            runs_text = ", ".join(f"{x:.0f}" for x in row["runs_events_per_s"])
            checks.append(
                {
                    "target": f">= {TARGET_EVENTS_PER_S:.0f} webhook events/s, "
                    f"{TARGET_CLIENTS} clients",
                    "measured": f"{row['events_per_s']:.0f} (runs: {runs_text})",
                    "met": row["events_per_s"] >= TARGET_EVENTS_PER_S,
                }
            )
    fresh = [r for r in runs if r.kind == "fresh"]
    bad = [r for r in fresh if not r.checks_ok]
    checks.append(
        {
            "target": 'every fresh event answered 200 "confirmed", its rows added once',
            "measured": f"{len(fresh) - len(bad)} of {len(fresh)} runs",
            "met": not bad,
        }
    )
    dup = [r for r in runs if r.kind == "duplicates"]
    if dup:
        sent = sum(r.requests for r in dup)
        changed = sum(sum(abs(v) for v in r.db_delta.values()) for r in dup)
        checks.append(
            {
                "target": 'duplicates answered 200 "duplicate", nothing changed',
                "measured": f"{sent} re-sent, {changed} rows changed, "
                f"{sum(not r.checks_ok for r in dup)} runs failed",
                "met": all(r.checks_ok for r in dup),
            }
        )
    ignored = [r for r in runs if r.kind == "ignored"]
    if ignored:
        sent = sum(r.requests for r in ignored)
        checks.append(
            {
                "target": f'`{IGNORED}` answered 200 "ignored", nothing changed',
                "measured": f"{sent} sent, {sum(not r.checks_ok for r in ignored)} runs failed",
                "met": all(r.checks_ok for r in ignored),
            }
        )
    races = [r for r in runs if r.kind == "races"]
    if races:
        checks.append(
            {
                "target": "racing deliveries of one payment applied once",
                "measured": "; ".join(
                    f"{r.requests // 3} intents x 3 requests: {r.outcomes}" for r in races
                ),
                "met": all(r.checks_ok for r in races),
            }
        )
    a = final_audit
    checks.append(
        {
            "target": "audit: each order paid once, booking confirmed, one booking.confirmed "
            "event row, one payment_events row per event id, no refunds, no overbooking",
            "measured": f"{a['sent_orders']} orders paid, {a['confirmed_event_rows']} event "
            f"rows, {a['payment_events']} payment_events for {a['sent_event_ids']} ids; "
            f"{sum(a[k] for k in a if k.endswith('_wrong'))} wrong",
            "met": audit_ok(a),
        }
    )
    if latency:
        missing = sum(r.missing for r in latency)
        files = sum(r.eml_files for r in latency)
        events = sum(r.events for r in latency)
        checks.append(
            {
                "target": "end to end: one confirmation email per paid booking, sent",
                "measured": f"{events - missing} of {events} sent, {files} .eml files",
                "met": missing == 0
                and files == events
                and all(r.emails == r.events for r in latency),
            }
        )
    return checks


def render_markdown(report: dict[str, Any]) -> str:
    o = report["options"]
    s = report["seed"]
    lines = [
        "# Payments benchmark: PostgreSQL",
        "",
        *machine_lines(report["machine"]),
        code_line(report["code"]),
        f"- Server: `boxoffice serve --workers {o['workers']} --no-worker` on 127.0.0.1, "
        "Stripe settings pointing at the test suite's Stripe API stand-in (in this "
        "process); load generator, server and PostgreSQL share the machine",
        f"- Command: `{report['command']}`; {report.get('wall_seconds', '?')} s in all",
        f"- Seeding: {s['bookings']:,} priced bookings (EUR 5.00, pending, each with an open "
        f"order and a PaymentIntent) over HTTP with {s['clients']} clients before the runs "
        f"(not measured: no quiet wait), in {s['seconds']:.1f} s: "
        f"{s['bookings_per_s']:.0f} bookings/s, p50 {s['latency']['p50_ms']:.1f} ms, p99 "
        f"{s['latency']['p99_ms']:.1f} ms (`POST /api/v1/bookings`, `start_payment` and its "
        "call to the stand-in included)",
        f"- Before each measured run the benchmark waits (up to {o['quiet_wait_s']:g} s, "
        f"{o['quiet_budget_s']:g} s in all) for the machine to drop to {o['quiet_cores']:g} "
        'busy cores; the load it saw is the "idle before" column',
        "",
        f"## Webhook throughput (`POST {WEBHOOK_PATH}`)",
        "",
        f"Fresh: each request a different intent's `{SUCCEEDED}` (a new event id), at most "
        f"{o['events']:,} events or {o['duration_s']:g} s per run after {o['warmup']} warm-up "
        f"events; {o['repeats']} run(s) per row, medians shown. Duplicates: events already "
        f"applied, sent again with their own id. Ignored: `{IGNORED}` events, signed and "
        "checked, then acknowledged without a transaction (the route's cost before "
        "`apply_event`). Races: per intent its event twice at once plus a second event id for "
        "the same payment.",
        "",
        "| Kind | Clients | Runs | Events/s | Runs events/s | p50 ms | p99 ms | Statuses "
        "| Outcomes (all runs) | CPU cores: client / server / pg / others / machine | Steal "
        "| Checks |",
        "|---|--:|--:|--:|---|--:|--:|---|---|--:|--:|---|",
    ]
    for row in report["summary"]:
        cpu = row["cpu_cores"]
        statuses = ", ".join(f"{k}: {v}" for k, v in row["status"].items())
        outcomes = ", ".join(f"{k}: {v}" for k, v in row["outcomes"].items())
        runs_text = ", ".join(f"{x:.0f}" for x in row["runs_events_per_s"])
        failed = row["checks_failed"]
        lines.append(
            f"| {row['kind']} | {row['clients']} | {row['runs']} | **{row['events_per_s']:.0f}** "
            f"| {runs_text} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {statuses} "
            f"| {outcomes} | {cpu['client']:.2f} / {cpu['server']:.2f} / {cpu['postgres']:.2f} "
            f"/ {cpu['others']:.2f} / {cpu['machine']:.2f} | {cpu['steal']:.2f} "
            f"| {f'**{failed} failed**' if failed else 'ok'} |"
        )
    lines += [
        "",
        'Events/s: answers 200 per second. Checks per run: fresh, every answer "confirmed" and '
        "the rows added (payment_events, paid orders, succeeded payments, confirmed bookings, "
        "booking.confirmed event rows) each equal to the events sent, no refund; duplicates, "
        'every answer "duplicate" and no row added or changed in those tables (nor in the '
        'outbox or the status history); ignored, every answer "ignored" and no row changed; '
        'races, one "confirmed", one "duplicate" and one "already_applied" per intent.',
    ]
    ip = report["inprocess"]
    if ip:
        lines += [
            "",
            "## One event in-process (`parse_webhook`, then `apply_event` in one write "
            "transaction)",
            "",
            f"{ip['events']} events after {max(1, o['inprocess_events'] // 10)} warm-up, one "
            "at a time, this process's own `Database` (pool of 1, pre-ping on checkout); "
            f"{ip['idle_load']:.2f} cores busy just before.",
            "",
            "| Per event | p50 ms | p90 ms | p99 ms |",
            "|---|--:|--:|--:|",
            f"| whole (parse + transaction + commit) | {ip['wall']['p50_ms']:.2f} "
            f"| {ip['wall']['p90_ms']:.2f} | {ip['wall']['p99_ms']:.2f} |",
            f"| `parse_webhook` (signature, JSON) | {ip['parse']['p50_ms']:.3f} "
            f"| {ip['parse']['p90_ms']:.3f} | {ip['parse']['p99_ms']:.3f} |",
            "",
            f"CPU of this process {ip['cpu_ms']:.2f} ms per event; **{ip['statements']:.0f} SQL "
            f"statements per event**, {ip['sql_ms']:.2f} ms from execute to result in all "
            "(BEGIN, COMMIT and the pool's pre-ping are not cursor executes and are not "
            "counted).",
            "",
            "| Statement | Per event | ms per event |",
            "|---|--:|--:|",
        ]
        for st in ip["by_statement"]:
            lines.append(
                f"| `{st['statement']}` | {st['per_event']:.2f} | {st['ms_per_event']:.3f} |"
            )
    lat = report["latency_runs"]
    if lat:
        lines += [
            "",
            "## End to end: webhook to confirmation email",
            "",
            f"`boxoffice worker` (one process) started after the outbox rows of the parts above "
            f"were marked delivered (nothing due); {E2E_WARMUP} warm-up events, then "
            f"{o['latency_events']} events at {o['latency_rate']:g}/s, one at a time. From the "
            "moment the webhook was sent (this process's clock) to: its answer; the email row's "
            "`created_at` (the worker's clock when it fanned out the `booking.confirmed` event "
            "row; same machine, same clock); the row first seen committed by polling the outbox "
            "every 20 ms; its `delivered_at` (rendered and written by the file mailer, fsync "
            "included).",
            "",
            "| Worker poll s | Events | Answer p50 / p95 ms | Email row written p50 / p95 ms "
            "| Seen p50 / p95 ms | Email sent p50 / p95 / max ms | Emails / .eml files "
            "| Idle before |",
            "|--:|--:|---|---|---|---|---|--:|",
        ]
        for r in lat:
            lines.append(
                f"| {r['poll_s']:g} | {r['events']} | {r['ack']['p50_ms']:.1f} / "
                f"{r['ack']['p95_ms']:.1f} | **{r['written']['p50_ms']:.0f}** / "
                f"{r['written']['p95_ms']:.0f} | {r['seen']['p50_ms']:.0f} / "
                f"{r['seen']['p95_ms']:.0f} | **{r['sent']['p50_ms']:.0f}** / "
                f"{r['sent']['p95_ms']:.0f} / {r['sent']['max_ms']:.0f} "
                f"| {r['emails']} / {r['eml_files']} | {r['idle_load']:.2f} |"
            )
    lines += targets_lines(report["targets"])
    a = report["audit"]
    lines += [
        "",
        "## Audit (whole database, after every part)",
        "",
        "| Check | Value |",
        "|---|--:|",
        *(f"| {k} | {v} |" for k, v in a.items()),
        "",
        "## Every run",
        "",
        "| Kind | Clients | Run | Requests | Seconds | Bound | Events/s | p50 ms | p99 ms "
        "| Statuses | Rows added | Others / machine / steal cores | Idle before |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|---|---|--:|--:|",
    ]
    for r in report["runs"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in r["status"].items())
        added = ", ".join(f"{k} {v}" for k, v in r["db_delta"].items() if v)
        lines.append(
            f"| {r['kind']} | {r['clients']} | {r['repeat'] + 1} | {r['requests']} "
            f"| {r['elapsed_s']:.1f} | {r['bounded_by']} | {r['events_per_s']:.0f} "
            f"| {r['latency']['p50_ms']:.1f} | {r['latency']['p99_ms']:.1f} | {statuses} "
            f"| {added or '-'} | {r['cpu_cores']['others']:.2f} / "
            f"{r['cpu_cores']['machine']:.2f} / {r['cpu_cores']['steal']:.2f} "
            f"| {r['idle_load']:.2f} |"
        )
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


@contextmanager
def stripe_stand_in() -> Iterator[StripeStub]:
    with running_stripe_stub() as stub:
        log(f"Stripe API stand-in on {stub.url}")
        yield stub


def run(opts: Options) -> dict[str, Any]:
    code_before = code_state()
    secret = "whsec_" + uuid.uuid4().hex
    with (
        tempfile.TemporaryDirectory(prefix="boxoffice-bench-payments-") as tmp,
        fresh_database(opts.pg_url) as db_url,
        connected_engine(db_url, pool_size=2) as engine,
        stripe_stand_in() as stub,
    ):
        machine = machine_info(engine, workers=opts.workers)
        env = {
            "BOXOFFICE_SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "BOXOFFICE_STRIPE_SECRET_KEY": STRIPE_KEY,
            "BOXOFFICE_STRIPE_API_BASE": stub.url,
            "BOXOFFICE_STRIPE_WEBHOOK_SECRET": secret,
        }
        server = Server(
            db_url,
            port=opts.port,
            workers=opts.workers,
            workdir=Path(tmp),
            extra_args=["--no-worker"],
            extra_env=env,
        )
        with serving(server):
            b = Bench(
                opts=opts,
                db_url=db_url,
                dbname=engine.url.database or "",
                server=server,
                engine=engine,
                stub=stub,
                secret=secret,
                pool=seed(db_url, server.port, stub, opts),
                ledger=Ledger(),
                clients=[
                    HttpClient(server.port, None, opts.timeout_s) for _ in range(max(opts.clients))
                ],
                gate=QuietGate(
                    wait_s=opts.quiet_wait_s,
                    budget_s=opts.quiet_budget_s,
                    quiet_cores=opts.quiet_cores,
                ),
                workdir=Path(tmp),
                env=env,
            )
            try:
                runs, inprocess, latency = run_parts(b)
            finally:
                for c in b.clients:
                    c.close()
            final_audit = audit(engine, b.ledger.paid_orders, b.ledger.event_ids)
            log(f"audit: {'ok' if audit_ok(final_audit) else 'FAILED'} {final_audit}")
    code = {"before": code_before, "after": code_state()}
    if code["after"] != code_before:
        log("warning: boxoffice/ changed during the run")
    summary = summarise(runs)
    return {
        **report_header("payments-postgresql", machine, opts),
        "code": code,
        "seed": b.pool.booker.summary(),
        "summary": summary,
        "inprocess": asdict(inprocess) if inprocess else None,
        "latency_runs": [asdict(r) for r in latency],
        "audit": final_audit,
        "targets": targets(summary, runs, final_audit, latency),
        "runs": [asdict(r) for r in runs],
    }


def run_parts(b: Bench) -> tuple[list[RunResult], InProcess | None, list[LatencyRun]]:
    """Every part on the running server, in order."""
    opts = b.opts
    runs: list[RunResult] = []
    # Every seat booked first: a burst of bookings just before a measured run slowed it
    # (by up to a third here); the checkpoint writes out what the bookings dirtied now
    # rather than during the runs.
    b.pool.ensure(most_intents(opts))
    checkpoint(b.engine)
    warm = fresh_run(b, len(b.clients), global_warmup(opts), repeat=0, measured=False)
    log(f"global warm-up: {warm.status} {warm.outcomes}")
    rng = random.Random(opts.seed)
    for repeat in range(opts.repeats):
        for n in opts.clients:
            if opts.warmup:
                fresh_run(b, n, opts.warmup, repeat=repeat, measured=False)
            result = fresh_run(b, n, opts.events, repeat=repeat, measured=True)
            runs.append(result)
            log(describe(result))
        if opts.duplicates:
            n = min(TARGET_CLIENTS, len(b.clients))
            result = duplicates_run(b, n, opts.duplicates, repeat=repeat, rng=rng)
            runs.append(result)
            log(describe(result))
        if opts.ignored:
            for n in sorted({1, min(TARGET_CLIENTS, len(b.clients))}):
                result = ignored_run(b, n, opts.ignored, repeat=repeat)
                runs.append(result)
                log(describe(result))
    if opts.races:
        result = races_run(b, min(RACE_CLIENTS, len(b.clients)), opts.races)
        runs.append(result)
        log(describe(result))
    inprocess = None
    if opts.inprocess_events:
        inprocess = inprocess_run(b, opts.inprocess_events)
        log(
            f"in-process: p50 {inprocess.wall['p50_ms']:.2f} ms per event, "
            f"{inprocess.statements:.0f} statements, SQL {inprocess.sql_ms:.2f} ms, CPU "
            f"{inprocess.cpu_ms:.2f} ms; outcomes {inprocess.outcomes}"
        )
    latency: list[LatencyRun] = []
    if opts.latency_events:
        log(f"set aside {set_aside_outbox(b.engine)} pending outbox rows")
        for poll_s in opts.polls:
            r = latency_run(b, poll_s)
            latency.append(r)
            log(
                f"end to end, poll {poll_s:g} s: {r.events} events, answer p50 "
                f"{r.ack['p50_ms']:.1f} ms; email row written p50 {r.written['p50_ms']:.0f} "
                f"p95 {r.written['p95_ms']:.0f} ms, sent p50 {r.sent['p50_ms']:.0f} p95 "
                f"{r.sent['p95_ms']:.0f} ms; {r.emails} emails, {r.eml_files} files, "
                f"{r.missing} missing"
            )
    return runs, inprocess, latency


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_benchmark(lambda: run(opts), opts.out, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
