#!/usr/bin/env python
"""Booking benchmark: a real `boxoffice serve` on PostgreSQL, driven over loopback HTTP.

What it does, in order:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens);
2. starts ``boxoffice serve --port P --workers N`` as a subprocess on 127.0.0.1 and waits
   for ``/healthz`` (``serve`` runs the migrations itself);
3. seeds an organisation, an admin and one customer per client with the project's own
   service functions, then rooms and timeslots through the HTTP API, and fetches one
   bearer token per customer from ``POST /api/v1/auth/token``;
4. measures the timeslot listing of a room with 5,000 timeslots (sequential requests);
5. measures ``POST /api/v1/bookings`` with 1, 16 and 64 concurrent clients, uncontended
   (every request a different free timeslot, spread over many rooms) and contended
   (all clients on the same 20 timeslots with 3 seats each), each run bounded by a
   request count and a duration, whichever comes first;
6. audits every session in the database after each run (seat-holding bookings must
   equal ``booked_count`` and never exceed ``max_participants``);
7. writes ``bench/results/bookings-postgresql.{json,md}``;
8. optionally (``--profile-dir``) runs one more uncontended run under py-spy and
   summarises where the server workers spend their GIL time.

The load generator is one thread per client, each with its own persistent keep-alive
``http.client.HTTPConnection`` (TCP_NODELAY), request bodies prebuilt as bytes. Threads
spend nearly all their time blocked in ``recv`` with the GIL released, so the generator
costs a few percent of one core at the rates measured here (its CPU time is reported per
run), leaving the two cores to the server and PostgreSQL. An asyncio client would not be
cheaper per request in pure Python, and a separate load tool would be a new dependency.

Run ``python bench/bookings.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import cli, log
from harness.cpu import server_cpu_meter
from harness.database import PASSWORD, connected_engine, fresh_database, seat_audit, select_count
from harness.report import machine_info, machine_lines, report_header, run_benchmark, targets_lines
from harness.server import HOST, Client, Server, http_call, serving
from harness.stats import latency_summary, median
from sqlalchemy import Engine, select

from boxoffice.db.models import Session
from boxoffice.db.session import Database
from boxoffice.services import auth
from boxoffice.services.organizations import create_organization

BOOKINGS_PATH = "/api/v1/bookings"

# Uncontended pool: many rooms, one seat per timeslot, 15-minute slots 06:00-22:00 UTC.
POOL_ROOMS = 32
POOL_SLOTS_PER_DAY = 64
# Contended: 20 timeslots (30 minutes, 09:00-19:00) of 3 seats in a fresh room per run.
CONTENDED_SLOTS = 20
CONTENDED_SEATS = 3
# Listing: 50 days x 100 ten-minute slots (04:00-20:40) = 5,000 timeslots in one room.
LISTING_DAYS = 50
LISTING_SLOTS = 5_000

TARGET_BOOKINGS_PER_S = 300.0
TARGET_BOOKINGS_CLIENTS = 16
TARGET_P99_MS = 100.0
TARGET_LISTING_P50_MS = 20.0


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    pg_url: str
    workers: int
    port: int
    clients: tuple[int, ...]
    requests: int
    duration_s: float
    warmup: int
    repeats: int
    listing_requests: int
    timeout_s: float
    seed: int
    out: Path
    profile_dir: Path | None
    balance: bool
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = cli.new_parser("Benchmark booking creation and timeslot listing on PostgreSQL.")
    p.add_argument("--workers", type=int, default=2, help="Server processes")
    p.add_argument("--port", type=int, default=0, help="Server port (0: a free one)")
    p.add_argument("--clients", default="1,16,64", help="Concurrent clients, comma-separated")
    p.add_argument("--requests", type=int, default=3000, help="Max requests per measured run")
    p.add_argument("--duration", type=float, default=20.0, help="Max seconds per measured run")
    p.add_argument("--warmup", type=int, default=200, help="Unmeasured requests before each run")
    p.add_argument("--repeats", type=int, default=3, help="Runs per scenario; medians reported")
    p.add_argument("--listing-requests", type=int, default=200, help="Per listing run")
    p.add_argument("--timeout", type=float, default=30.0, help="Per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=1, help="Seed of the contended slot choice")
    cli.add_out_option(
        p, "bench/results/bookings-postgresql, with -balanced and -quick appended for those modes"
    )
    p.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="After the measured runs, one extra uncontended run with "
        f"{TARGET_BOOKINGS_CLIENTS} clients under py-spy (GIL samples of every worker, "
        "summary.txt by phase); kept out of the results. Needs `pip install py-spy`",
    )
    p.add_argument(
        "--balance-connections",
        action="store_true",
        help="Diagnostic: reconnect clients until every server worker holds the same number "
        "of connections (results go to a separate '-balanced' file)",
    )
    cli.add_quick_option(p, "1 repeat, 200 requests or 5 s per run, 20 listing requests")
    a = p.parse_args(argv)
    clients = cli.int_list(a.clients)
    if not clients or min(clients) < 1:
        p.error("--clients needs positive integers")
    if a.quick:
        a.requests, a.duration, a.warmup = min(a.requests, 200), min(a.duration, 5.0), 20
        a.repeats, a.listing_requests = 1, min(a.listing_requests, 20)
    cli.require_at_least_one(p, a, ("requests", "repeats", "listing_requests", "workers"))
    if a.duration <= 0 or a.warmup < 0 or a.timeout <= 0:
        p.error("--duration and --timeout must be positive, --warmup not negative")
    stem = "bookings-postgresql" + ("-balanced" if a.balance_connections else "")
    stem += "-quick" if a.quick else ""
    return cli.options_from(
        Options,
        a,
        clients=clients,
        duration_s=a.duration,
        timeout_s=a.timeout,
        out=cli.results_path(a.out, stem),
        balance=a.balance_connections,
    )


# --- the database -------------------------------------------------------------------------


def count_bookings(engine: Engine) -> int:
    return select_count(engine, "SELECT count(*) FROM bookings")


# --- the server's connections -------------------------------------------------------------


def client_workers(server: Server, clients: Sequence[Client]) -> list[int | None]:
    """The server worker (pid) holding each client's connection, from /proc."""
    by_port = {c.local_port: i for i, c in enumerate(clients) if c.local_port}
    inode_client: dict[str, int] = {}
    with suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            local_port = int(cols[1].split(":")[1], 16)
            remote_port = int(cols[2].split(":")[1], 16)
            if local_port == server.port and remote_port in by_port:
                inode_client[cols[9]] = by_port[remote_port]
    owners: list[int | None] = [None] * len(clients)
    for pid in server.http_workers():
        with suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inode_client:
                        owners[inode_client[link[8:-1]]] = pid
    return owners


def connections_per_worker(server: Server, clients: Sequence[Client]) -> list[int]:
    """How many of the clients' connections each server worker holds, busiest first.

    Workers share one listening socket; Linux wakes the worker that waited last, so one
    idle worker tends to accept a whole burst of new connections (the ``Conns/worker``
    column shows how uneven that gets).
    """
    owners = Counter(client_workers(server, clients))
    return sorted((owners.get(pid, 0) for pid in server.http_workers()), reverse=True)


def balance_connections(server: Server, clients: Sequence[Client], attempts: int = 2000) -> None:
    """Reconnect clients until the server workers hold equal shares (within one).

    A diagnostic, not what clients normally get: it shows the capacity the server would
    have if connections were spread evenly (as with one SO_REUSEPORT socket per worker).
    """
    workers = server.http_workers()
    for _ in range(attempts):
        owners = client_workers(server, clients)
        counts = Counter({pid: 0 for pid in workers})
        counts.update(o for o in owners if o is not None)
        busiest, most = counts.most_common(1)[0]
        if most - min(counts.values()) <= 1 and None not in owners:
            return
        victim = next(i for i, o in enumerate(owners) if o == busiest or o is None)
        clients[victim].connect()
        time.sleep(0.002)
    log(f"  could not balance connections: {connections_per_worker(server, clients)}")


# --- seeding ------------------------------------------------------------------------------


@dataclass
class Seed:
    admin_token: str
    customer_tokens: list[str]
    pool_slots: list[str]  # one free seat each, interleaved across rooms
    contended_rooms: list[list[str]]  # CONTENDED_SLOTS timeslot ids per room
    listing_room: str
    listing_day: date


def seed(db_url: str, port: int, opts: Options, *, needed: int, contended_runs: int) -> Seed:
    """An organisation, an admin, customers, rooms and timeslots; returns tokens and ids.

    ``needed``: free seats for the uncontended scenario; ``contended_runs``: rooms of
    CONTENDED_SLOTS timeslots, one per contended run.
    """
    started = time.perf_counter()
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    n_customers = max(opts.clients)
    database = Database.from_url(db_url, pool_size=2)
    try:
        with database.write() as s:
            create_organization(s, slug="bench", name="Bench", timezone="UTC", currency="EUR")
            auth.create_admin(
                s, email="admin@bench.example", password=PASSWORD, name="Admin", org_slug="bench"
            )
            for i in range(n_customers):
                auth.register_user(
                    s, email=f"c{i}@bench.example", password=PASSWORD, name=f"Customer {i}"
                )
    finally:
        database.dispose()

    def token(email: str) -> str:
        status, body = http_call(
            HOST, port, "POST", "/api/v1/auth/token", {"email": email, "password": PASSWORD}
        )
        if status != 200:
            raise RuntimeError(f"token for {email}: {status} {body}")
        return str(body["accessToken"])

    # Password checks are deliberately slow (argon2): ask both workers at once.
    with ThreadPoolExecutor(max_workers=4) as executor:
        emails = ["admin@bench.example", *(f"c{i}@bench.example" for i in range(n_customers))]
        admin_token, *customer_tokens = executor.map(token, emails)
    admin = {"Authorization": f"Bearer {admin_token}"}

    def room(name: str, capacity: int) -> str:
        body = {"name": name, "capacity": capacity, "roomType": "meeting", "hourlyRate": 0}
        status, out = http_call(HOST, port, "POST", "/api/v1/admin/rooms", body, admin)
        if status != 201:
            raise RuntimeError(f"room {name}: {status} {out}")
        return str(out["id"])

    def generate(room_id: str, days: int, slot_min: int, hours: str, seats: int) -> int:
        """Timeslots from tomorrow for ``days`` days; ``hours`` is "HH:MM-HH:MM" (UTC)."""
        start, end = hours.split("-")
        body = {
            "roomId": room_id,
            "startDate": tomorrow.isoformat(),
            "endDate": (tomorrow + timedelta(days=days - 1)).isoformat(),
            "slotDuration": slot_min,
            "workingHours": {"start": start, "end": end},
            "maxBookings": seats,
        }
        path = "/api/v1/admin/timeslots/generate"
        status, out = http_call(HOST, port, "POST", path, body, admin)
        if status != 201:
            raise RuntimeError(f"generate for {room_id}: {status} {out}")
        return int(out["created"])

    # Every measured or warm-up request of the uncontended scenario takes a fresh seat.
    pool_days = math.ceil(needed * 1.05 / (POOL_ROOMS * POOL_SLOTS_PER_DAY))
    if pool_days > 366:  # one generation request covers at most 366 days
        raise RuntimeError(f"{needed} uncontended requests need too many timeslots")
    pool_rooms = [room(f"Pool {i}", 4) for i in range(POOL_ROOMS)]
    for r in pool_rooms:
        generate(r, pool_days, 15, "06:00-22:00", 1)

    contended_ids = [room(f"Contended {i}", 10) for i in range(contended_runs)]
    for r in contended_ids:
        created = generate(r, 1, 30, "09:00-19:00", CONTENDED_SEATS)
        if created != CONTENDED_SLOTS:
            raise RuntimeError(f"contended room got {created} timeslots")

    listing_room = room("Listing", 4)
    created = generate(listing_room, LISTING_DAYS, 10, "04:00-20:40", 1)
    if created != LISTING_SLOTS:
        raise RuntimeError(f"listing room got {created} timeslots")

    with connected_engine(db_url) as engine, engine.connect() as conn:
        pool_uuids = [uuid.UUID(r) for r in pool_rooms]
        rows = conn.execute(
            select(Session.id)
            .where(Session.room_id.in_(pool_uuids))
            .order_by(Session.start_at, Session.room_id)
        )
        pool_slots = [str(x) for x in rows.scalars()]
        contended: list[list[str]] = []
        for r in contended_ids:
            ids = conn.execute(
                select(Session.id).where(Session.room_id == uuid.UUID(r)).order_by(Session.start_at)
            )
            contended.append([str(x) for x in ids.scalars()])
    log(
        f"seeded in {time.perf_counter() - started:.1f} s: {n_customers} customers, "
        f"{len(pool_slots)} uncontended timeslots in {POOL_ROOMS} rooms, "
        f"{contended_runs} contended rooms, a listing room with {LISTING_SLOTS} timeslots"
    )
    return Seed(
        admin_token=admin_token,
        customer_tokens=customer_tokens,
        pool_slots=pool_slots,
        contended_rooms=contended,
        listing_room=listing_room,
        listing_day=tomorrow + timedelta(days=LISTING_DAYS // 2),
    )


# --- load ---------------------------------------------------------------------------------

# Chooses the timeslot of the n-th request of a burst (None: nothing left, stop).
Picker = Callable[[int, random.Random], str | None]


class Target:
    """Where a scenario's requests go."""

    def burst(self) -> Picker:
        raise NotImplementedError

    def used(self, issued: int) -> None:
        """``issued`` request indexes of the last burst were handed out."""


class FreshSeats(Target):
    """Uncontended: every request takes a different, never-booked timeslot (one seat each),
    consecutive requests in different rooms."""

    def __init__(self, slots: list[str]) -> None:
        self.slots = slots
        self.cursor = 0

    def burst(self) -> Picker:
        base, slots = self.cursor, self.slots

        def pick(n: int, _rng: random.Random) -> str | None:
            return slots[base + n] if base + n < len(slots) else None

        return pick

    def used(self, issued: int) -> None:
        self.cursor += issued

    def left(self) -> int:
        return len(self.slots) - self.cursor


class SameSlots(Target):
    """Contended: every request picks one of the same few timeslots at random."""

    def __init__(self, slots: list[str]) -> None:
        self.slots = slots

    def burst(self) -> Picker:
        slots = self.slots

        def pick(_n: int, rng: random.Random) -> str | None:
            return slots[rng.randrange(len(slots))]

        return pick


@dataclass
class Load:
    """What one bounded burst of booking requests produced."""

    samples: list[tuple[str, float]]
    elapsed_s: float
    issued: int
    cpu_cores: dict[str, float]
    new_pg_backends: int


def drive(
    clients: Sequence[Client],
    target: Target,
    *,
    max_requests: int,
    max_seconds: float,
    seed: int,
    server_pids: Sequence[int],
) -> Load:
    """POST bookings from every client at once until ``max_requests`` or ``max_seconds``.

    One thread per client, all released together by a barrier; each sends its next
    request as soon as the previous answer arrives (closed loop, no think time).
    """
    pick = target.burst()
    lock = threading.Lock()
    next_index = [0]
    clock: dict[str, float] = {}
    per_client: list[list[tuple[str, float]]] = [[] for _ in clients]

    def go() -> None:
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + max_seconds

    barrier = threading.Barrier(len(clients) + 1, action=go)
    stop = threading.Event()

    def work(i: int) -> None:
        client, out = clients[i], per_client[i]
        rng = random.Random(seed * 10_007 + i)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        deadline = clock["deadline"]
        while time.perf_counter() < deadline and not stop.is_set():
            with lock:
                n = next_index[0]
                if n >= max_requests:
                    return
                next_index[0] = n + 1
            slot = pick(n, rng)
            if slot is None:
                return
            body = b'{"timeslotId":"' + slot.encode() + b'"}'
            status, seconds, _ = client.request("POST", BOOKINGS_PATH, body)
            out.append((status, seconds))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    meter = server_cpu_meter(server_pids)
    meter.start()
    try:
        barrier.wait()
        for t in threads:
            t.join()
    except BaseException:  # interrupted: let the threads finish their request and stop
        stop.set()
        barrier.abort()
        for t in threads:
            t.join(timeout=5)
        raise
    elapsed = time.perf_counter() - clock["start"]
    cpu = meter.stop()
    issued = min(next_index[0], max_requests)
    target.used(issued)
    return Load(
        samples=[x for out in per_client for x in out],
        elapsed_s=elapsed,
        issued=issued,
        cpu_cores=cpu,
        new_pg_backends=meter.new_processes("postgres"),
    )


@dataclass
class RunResult:
    scenario: str
    clients: int
    repeat: int
    requests: int
    elapsed_s: float
    bounded_by: str  # "requests" or "duration"
    bookings_per_s: float  # 201s per second
    requests_per_s: float
    status: dict[str, int]  # HTTP status (or exception name) -> count
    latency: dict[str, float]  # all requests
    latency_201: dict[str, float]  # successful bookings only
    new_bookings: int  # rows added to bookings during the run: must equal the 201s
    audit: dict[str, int]  # seat_audit() of the whole database after the run
    cpu_cores: dict[str, float]  # average cores busy: client, server, postgres, machine
    new_pg_backends: int  # PostgreSQL connections opened during the run (pool churn)
    conns_per_worker: list[int]  # the clients' keep-alive connections per server worker
    profiled: bool = False


def measure(
    scenario: str,
    clients: Sequence[Client],
    target: Target,
    warm_target: Target,
    *,
    opts: Options,
    repeat: int,
    server: Server,
    engine: Engine,
) -> RunResult:
    """Warm up, then one measured, bounded run, then the seat audit."""
    for c in clients:  # fresh connections: the server closes idle ones after 5 s
        c.connect()
    pids = server.worker_pids()
    time.sleep(0.05)  # let the workers accept
    if opts.balance:
        balance_connections(server, clients)
    spread = connections_per_worker(server, clients)
    if opts.warmup:
        warm = drive(
            clients,
            warm_target,
            max_requests=opts.warmup,
            max_seconds=max(opts.duration_s / 4, 2.0),
            seed=opts.seed + 1000 + repeat,
            server_pids=pids,
        )
        odd = Counter(s for s, _ in warm.samples if s not in ("201", "409"))
        if odd:
            log(f"  warm-up saw unexpected statuses: {dict(odd)}")
    before = count_bookings(engine)
    load = drive(
        clients,
        target,
        max_requests=opts.requests,
        max_seconds=opts.duration_s,
        seed=opts.seed + repeat,
        server_pids=pids,
    )
    new_bookings = count_bookings(engine) - before
    statuses = Counter(s for s, _ in load.samples)
    elapsed = load.elapsed_s
    return RunResult(
        scenario=scenario,
        clients=len(clients),
        repeat=repeat,
        requests=len(load.samples),
        elapsed_s=elapsed,
        bounded_by="requests" if len(load.samples) >= opts.requests else "duration",
        bookings_per_s=statuses.get("201", 0) / elapsed,
        requests_per_s=len(load.samples) / elapsed,
        status=dict(sorted(statuses.items())),
        latency=latency_summary([s for _, s in load.samples]),
        latency_201=latency_summary([s for st, s in load.samples if st == "201"]),
        new_bookings=new_bookings,
        audit=seat_audit(engine),
        cpu_cores=load.cpu_cores,
        new_pg_backends=load.new_pg_backends,
        conns_per_worker=spread,
    )


def describe(r: RunResult) -> str:
    other = sum(v for k, v in r.status.items() if k not in ("201", "409"))
    cpu = r.cpu_cores
    return (
        f"{r.scenario:<11} c={r.clients:<3} #{r.repeat + 1} {r.requests:>5} req "
        f"{r.elapsed_s:5.1f} s {r.bookings_per_s:7.1f} bookings/s {r.requests_per_s:7.1f} req/s "
        f"p50 {r.latency['p50_ms']:6.1f} p99 {r.latency['p99_ms']:6.1f} ms "
        f"201={r.status.get('201', 0)} 409={r.status.get('409', 0)} other={other} "
        f"overbooked={r.audit['overbooked_seats']} mismatched={r.audit['mismatched']} "
        f"cpu c/s/pg/all={cpu['client']:.2f}/{cpu['server']:.2f}/{cpu['postgres']:.2f}"
        f"/{cpu['machine']:.2f} steal={cpu['steal']:.2f} new-pg-conns={r.new_pg_backends} "
        f"conns/worker={'/'.join(map(str, r.conns_per_worker))}"
    )


# --- listing ------------------------------------------------------------------------------


@dataclass
class ListingResult:
    name: str
    path: str
    repeat: int
    requests: int
    items: int
    response_bytes: int
    status: dict[str, int]
    latency: dict[str, float]


def measure_listing(
    port: int,
    name: str,
    path: str,
    *,
    requests: int,
    max_seconds: float,
    repeat: int,
    timeout_s: float,
) -> ListingResult:
    """Sequential GETs on one keep-alive connection: ``requests`` or ``max_seconds``."""
    client = Client(port, None, timeout_s)
    client.connect()
    try:
        status, body = http_call(HOST, port, "GET", path)
        if status != 200:
            raise RuntimeError(f"listing {path}: {status} {body}")
        items = len(body["timeslots"])
        for _ in range(10):  # warm-up
            client.request("GET", path, None)
        samples: list[tuple[str, float, int]] = []
        deadline = time.perf_counter() + max_seconds
        while len(samples) < requests and time.perf_counter() < deadline:
            samples.append(client.request("GET", path, None))
    finally:
        client.close()
    return ListingResult(
        name=name,
        path=path,
        repeat=repeat,
        requests=len(samples),
        items=items,
        response_bytes=samples[-1][2],
        status=dict(Counter(s for s, _, _ in samples)),
        latency=latency_summary([s for _, s, _ in samples]),
    )


# --- profiling ----------------------------------------------------------------------------


class Profiler:
    """py-spy on every server worker: collapsed stacks of the samples holding the GIL.

    Each worker is one process with one GIL, and at the rates measured here the GIL is
    the worker's bottleneck, so ``--gil`` shows where its capacity goes (waits for
    PostgreSQL or the network release the GIL and drop out of the picture).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []

    def start(self, worker_pids: Sequence[int], seconds: float) -> bool:
        spy = shutil.which("py-spy")
        if spy is None:
            log("py-spy not found (`pip install py-spy`): not profiling")
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        for pid in worker_pids:
            out = self.directory / f"worker-{pid}.txt"
            cmd = [spy, "record", "--pid", str(pid), "--duration", str(math.ceil(seconds))]
            cmd += ["--rate", "200", "--gil", "--format", "raw", "--nonblocking"]
            cmd += ["--output", str(out)]
            self.procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            self.outputs.append(out)
        time.sleep(1.0)  # let py-spy attach
        log(f"py-spy recording workers {list(worker_pids)} into {self.directory}")
        return True

    def finish(self) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait(timeout=10)
        self.procs.clear()
        summary = profile_summary(self.outputs)
        (self.directory / "summary.txt").write_text(summary)
        log(f"profile summary in {self.directory / 'summary.txt'}")


# Phases of POST /api/v1/bookings, matched from the innermost frame outwards.
PHASES = (
    ("active_user (boxoffice/services/auth.py", "route: auth.active_user -> SELECT users"),
    ("get_timeslot (boxoffice/services/timeslots.py", "service: get_timeslot -> SELECT sessions"),
    ("_emit_lazyload", "ORM lazy loads (session.room -> SELECT rooms JOIN organizations)"),
    ("take_seat (boxoffice/services/bookings.py", "service: take_seat -> UPDATE sessions"),
    ("Session.flush", "service: flush -> INSERT bookings, INSERT booking_status_changes"),
    ("Database.write", "route: db.write() begin/commit, pool checkout/checkin"),
    ("BookingOut.of", "route: BookingOut.of"),
    ("create_booking (boxoffice/services/bookings.py", "service: other (Booking(), _record)"),
    ("create_booking (boxoffice/api/routes/bookings.py", "route: other"),
    ("decode_token (boxoffice/services/auth.py", "deps: JWT decode"),
    ("serialize_response", "fastapi: response serialisation"),
    ("solve_dependencies", "fastapi: dependencies, body parsing and validation"),
    ("anyio/", "anyio: thread pool hand-offs (sync endpoint and sync dependencies)"),
    ("threading.py", "anyio: thread pool hand-offs (sync endpoint and sync dependencies)"),
    ("queue.py", "anyio: thread pool hand-offs (sync endpoint and sync dependencies)"),
    ("httptools_impl", "uvicorn: HTTP protocol"),
    ("starlette/", "starlette/fastapi: middleware and routing"),
    ("fastapi/", "starlette/fastapi: middleware and routing"),
    ("Runner.run", "event loop (uvloop, native code)"),
)


def profile_summary(paths: Sequence[Path], top: int = 40) -> str:
    """Sample shares by phase, by function (self) and by function (inclusive), from
    py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    total = 0
    for path in paths:
        with suppress(OSError):
            for line in path.read_text().splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = stack.split(";")[1:]  # the first frame names the thread
                if not frames:
                    continue
                total += count
                own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
                phase = "other"
                for frame in reversed(frames):
                    phase = next((name for key, name in PHASES if key in frame), "")
                    if phase:
                        break
                phases[phase or "other"] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples holding the GIL, from {len(paths)} worker(s)", ""]
    lines += ["share %  phase"]
    lines += [f"{100 * n / total:6.1f}   {name}" for name, n in phases.most_common()]
    lines += ["", "self %   function"]
    lines += [f"{100 * n / total:6.1f}   {f}" for f, n in own.most_common(top)]
    lines += ["", "total %  function (inclusive)"]
    lines += [f"{100 * n / total:6.1f}   {f}" for f, n in inclusive.most_common(top * 3)]
    return "\n".join(lines) + "\n"


# --- report -------------------------------------------------------------------------------


def summarise(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.clients), []).append(r)
    rows = []
    for (scenario, clients), rs in groups.items():
        codes = sorted({k for r in rs for k in r.status})
        rows.append(
            {
                "scenario": scenario,
                "clients": clients,
                "runs": len(rs),
                "requests": median([r.requests for r in rs]),
                "bookings_per_s": median([r.bookings_per_s for r in rs]),
                "requests_per_s": median([r.requests_per_s for r in rs]),
                "p50_ms": median([r.latency["p50_ms"] for r in rs]),
                "p99_ms": median([r.latency["p99_ms"] for r in rs]),
                "status": {c: median([r.status.get(c, 0) for r in rs]) for c in codes},
                "overbooked_seats": max(r.audit["overbooked_seats"] for r in rs),
                "mismatched_sessions": max(r.audit["mismatched"] for r in rs),
                "new_pg_backends": median([r.new_pg_backends for r in rs]),
                "lost_or_phantom": max(abs(r.new_bookings - r.status.get("201", 0)) for r in rs),
                "cpu_cores": {
                    k: median([r.cpu_cores[k] for r in rs])
                    for k in ("client", "server", "postgres", "machine", "steal")
                },
            }
        )
    return rows


def summarise_listing(results: Sequence[ListingResult]) -> list[dict[str, Any]]:
    groups: dict[str, list[ListingResult]] = {}
    for r in results:
        groups.setdefault(r.name, []).append(r)
    return [
        {
            "name": name,
            "path": rs[0].path,
            "runs": len(rs),
            "requests": rs[0].requests,
            "items": rs[0].items,
            "response_bytes": rs[0].response_bytes,
            "p50_ms": median([r.latency["p50_ms"] for r in rs]),
            "p99_ms": median([r.latency["p99_ms"] for r in rs]),
            "non_200": sum(v for r in rs for k, v in r.status.items() if k != "200"),
        }
        for name, rs in groups.items()
    ]


def targets(summary: list[dict[str, Any]], listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for row in summary:
        if row["scenario"] == "uncontended" and row["clients"] == TARGET_BOOKINGS_CLIENTS:
            checks.append(
                {
                    "target": f">= {TARGET_BOOKINGS_PER_S:.0f} bookings/s, uncontended, "
                    f"{TARGET_BOOKINGS_CLIENTS} clients",
                    "measured": f"{row['bookings_per_s']:.0f} bookings/s",
                    "met": row["bookings_per_s"] >= TARGET_BOOKINGS_PER_S,
                }
            )
            checks.append(
                {
                    "target": f"p99 < {TARGET_P99_MS:.0f} ms, uncontended, "
                    f"{TARGET_BOOKINGS_CLIENTS} clients",
                    "measured": f"{row['p99_ms']:.1f} ms",
                    "met": row["p99_ms"] < TARGET_P99_MS,
                }
            )
    for row in listing:
        checks.append(
            {
                "target": f"listing p50 < {TARGET_LISTING_P50_MS:.0f} ms ({row['name']})",
                "measured": f"{row['p50_ms']:.1f} ms",
                "met": row["p50_ms"] < TARGET_LISTING_P50_MS,
            }
        )
    overbooked = sum(r["overbooked_seats"] + r["mismatched_sessions"] for r in summary)
    checks.append(
        {
            "target": "0 overbooked seats and 0 count mismatches",
            "measured": str(overbooked),
            "met": overbooked == 0,
        }
    )
    return checks


def render_markdown(report: dict[str, Any]) -> str:
    o = report["options"]
    lines = [
        "# Booking benchmark: PostgreSQL"
        + (" (connections balanced across workers: diagnostic)" if o["balance"] else ""),
        "",
        *machine_lines(report["machine"]),
        f"- Server: `boxoffice serve --workers {o['workers']}` on 127.0.0.1; load generator, "
        "server and PostgreSQL share the machine",
        f"- Command: `{report['command']}`",
        f"- Each run: at most {o['requests']} requests or {o['duration_s']:g} s, after "
        f"{o['warmup']} warm-up requests; {o['repeats']} run(s) per row, medians shown",
        "",
        "## Booking creation (POST /api/v1/bookings)",
        "",
        "| Scenario | Clients | Requests | Bookings/s | Requests/s | p50 ms | p99 ms "
        "| 201 | 409 | Other | Overbooked | CPU cores: client / server / pg / machine | Steal |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["summary"]:
        st = row["status"]
        other = sum(v for k, v in st.items() if k not in ("201", "409"))
        cpu = row["cpu_cores"]
        lines.append(
            f"| {row['scenario']} | {row['clients']} | {row['requests']:.0f} "
            f"| {row['bookings_per_s']:.1f} | {row['requests_per_s']:.1f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {st.get('201', 0):.0f} "
            f"| {st.get('409', 0):.0f} | {other:.0f} "
            f"| {row['overbooked_seats'] + row['mismatched_sessions']} "
            f"| {cpu['client']:.2f} / {cpu['server']:.2f} / {cpu['postgres']:.2f} "
            f"/ {cpu['machine']:.2f} | {cpu['steal']:.2f} |"
        )
    lines += [
        "",
        "Overbooked: seats held beyond `max_participants` plus sessions whose `booked_count` "
        "differs from their seat-holding bookings, audited over every session after each run "
        "(worst run shown). Contended: 20 timeslots x 3 seats = 60 bookings possible per run. "
        "CPU cores: average cores busy during the run for the load generator, the server "
        "workers, PostgreSQL (backends that exit mid-run are missed) and the whole machine "
        "(2 = saturated); Steal: CPU the hypervisor withheld (a noisy neighbour).",
        "",
        "## Timeslot listing (room with 5,000 timeslots, sequential requests)",
        "",
        "| Request | Items | Bytes | Requests | p50 ms | p99 ms | non-200 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["listing_summary"]:
        lines.append(
            f"| `{row['path'].split('/timeslots', 1)[1] or '(no query)'}` ({row['name']}) "
            f"| {row['items']} | {row['response_bytes']} | {row['requests']} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['non_200']} |"
        )
    lines += targets_lines(report["targets"])
    lines += [
        "",
        "## Every run",
        "",
        "| Scenario | Clients | Run | Requests | Seconds | Bound | Bookings/s | p50 ms "
        "| p99 ms | Statuses | New PG conns | Conns/worker | Machine / steal cores |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|---|--:|--:|--:|",
    ]
    for r in report["runs"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in r["status"].items())
        lines.append(
            f"| {r['scenario']} | {r['clients']} | {r['repeat'] + 1} | {r['requests']} "
            f"| {r['elapsed_s']:.1f} | {r['bounded_by']} | {r['bookings_per_s']:.1f} "
            f"| {r['latency']['p50_ms']:.1f} | {r['latency']['p99_ms']:.1f} | {statuses} "
            f"| {r['new_pg_backends']} | {'/'.join(map(str, r['conns_per_worker']))} "
            f"| {r['cpu_cores']['machine']:.2f} / {r['cpu_cores']['steal']:.2f} |"
        )
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="boxoffice-bench-") as tmp,
        fresh_database(opts.pg_url) as db_url,
        connected_engine(db_url) as engine,
    ):
        # Before the runs: the git commit under test.
        machine = machine_info(engine, workers=opts.workers)
        server = Server(db_url, port=opts.port, workers=opts.workers, workdir=Path(tmp))
        with serving(server):
            runs, listings, profiled = run_all(db_url, server, engine, opts)
    summary = summarise(runs)
    listing_summary = summarise_listing(listings)
    return {
        **report_header("bookings-postgresql", machine, opts),
        "summary": summary,
        "listing_summary": listing_summary,
        "targets": targets(summary, listing_summary),
        "runs": [asdict(r) for r in runs],
        "listing_runs": [asdict(r) for r in listings],
        "profiled_run": asdict(profiled) if profiled else None,
    }


def run_all(
    db_url: str, server: Server, engine: Engine, opts: Options
) -> tuple[list[RunResult], list[ListingResult], RunResult | None]:
    """Seed, then the listing runs, the booking runs and (``--profile-dir``) the profiled
    run, on the running server."""
    levels = len(opts.clients)
    extra_runs = 1 if opts.profile_dir else 0
    # Seats the uncontended scenario may take: warm-ups, measured runs, the global warm-up.
    needed = (opts.repeats * levels + extra_runs) * (opts.requests + opts.warmup)
    needed += max(opts.warmup, 4 * max(opts.clients))
    contended_runs = opts.repeats * levels + 1  # + 1: the room every contended warm-up uses
    runs: list[RunResult] = []
    data = seed(db_url, server.port, opts, needed=needed, contended_runs=contended_runs)
    clients = [Client(server.port, t, opts.timeout_s) for t in data.customer_tokens]
    try:
        listings = run_listings(server.port, data, opts)

        pool = FreshSeats(data.pool_slots)
        contended_warm = SameSlots(data.contended_rooms[-1])
        contended_rooms = iter(data.contended_rooms[:-1])
        # One warm-up with every client fills each worker's database connection pool.
        for c in clients:
            c.connect()
        warm = drive(
            clients,
            pool,
            max_requests=max(opts.warmup, 4 * len(clients)),
            max_seconds=10,
            seed=0,
            server_pids=server.worker_pids(),
        )
        log(f"global warm-up: {dict(Counter(s for s, _ in warm.samples))}")

        for repeat in range(opts.repeats):
            for scenario in ("uncontended", "contended"):
                for n in opts.clients:
                    if scenario == "uncontended":
                        target: Target = pool
                        warm_target: Target = pool
                    else:
                        target, warm_target = SameSlots(next(contended_rooms)), contended_warm
                    result = measure(
                        scenario,
                        clients[:n],
                        target,
                        warm_target,
                        opts=opts,
                        repeat=repeat,
                        server=server,
                        engine=engine,
                    )
                    runs.append(result)
                    log(describe(result))
        profiled = None
        if opts.profile_dir is not None:
            profiled = profile_run(clients, pool, opts, opts.profile_dir, server, engine)
    finally:
        for c in clients:
            c.close()
    return runs, listings, profiled


def run_listings(port: int, data: Seed, opts: Options) -> list[ListingResult]:
    room = f"/api/v1/bookings/rooms/{data.listing_room}/timeslots"
    views = [("one day", f"{room}?date={data.listing_day.isoformat()}"), ("default window", room)]
    results = []
    for repeat in range(opts.repeats):
        for name, path in views:
            res = measure_listing(
                port,
                name,
                path,
                requests=opts.listing_requests,
                max_seconds=opts.duration_s,
                repeat=repeat,
                timeout_s=opts.timeout_s,
            )
            results.append(res)
            log(
                f"listing {name:<14} #{repeat + 1}: {res.items} items, "
                f"p50 {res.latency['p50_ms']:.1f} ms, p99 {res.latency['p99_ms']:.1f} ms"
            )
    return results


def profile_run(
    clients: Sequence[Client],
    pool: FreshSeats,
    opts: Options,
    directory: Path,
    server: Server,
    engine: Engine,
) -> RunResult | None:
    """One extra uncontended run with the target's client count, under py-spy.

    Kept out of the summary: py-spy takes CPU from the same two cores.
    """
    n = min(TARGET_BOOKINGS_CLIENTS, len(clients))
    profiler = Profiler(directory)
    if not profiler.start(
        server.http_workers(), opts.duration_s + max(opts.duration_s / 4, 2.0) + 2
    ):
        return None
    try:
        result = measure(
            "uncontended",
            clients[:n],
            pool,
            pool,
            opts=opts,
            repeat=opts.repeats,
            server=server,
            engine=engine,
        )
    finally:
        profiler.finish()
    result.profiled = True
    log("profiled: " + describe(result))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_benchmark(lambda: run(opts), opts.out, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
