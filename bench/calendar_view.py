#!/usr/bin/env python
"""Calendar benchmark: an organiser's month, ``GET /api/v1/calendar``, on PostgreSQL.

What it does, in order:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens) and
   migrates it with ``boxoffice.db.migrate.upgrade``;
2. seeds, with Core ``INSERT``s: one organisation (UTC), an owner, ``--users`` customer
   accounts, 8 rooms, 8 providers, 3 services, courses; and for the measured month
   (30 days) ``--sessions`` sessions (2,000: timeslots, appointments, workshops and
   course sessions, one hour each on an hourly grid of the rooms, 08:00-20:00, no
   overlaps) holding ``--bookings`` bookings (20,000: about 8 % cancelled, the rest
   confirmed, pending, completed or no-show; a quarter by guests without an account);
   plus, unless ``--neighbours 0``, the same again in the month before and the month
   after, so that the queries have to find the month among other rows; ``VACUUM
   ANALYZE``;
3. checks the month's JSON, made in-process, against what was seeded (sessions, counts
   by status, attendees, each session's attendees = its bookedCount);
4. ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements one month's request runs;
5. starts ``boxoffice serve --workers 2 --no-worker`` and warms both workers;
6. per run (``--repeats``; each first waits, within a budget, for the machine to be
   idle), for each case (the month; the month with ``includeAttendees=false``; its
   first week): ``--requests`` sequential GETs over one keep-alive connection with
   httpx (the target's client) and with the harness's stdlib client (less client CPU
   per response); and the same in-process (``Database.read()``, ``auth.admin_org``,
   ``calendar_view.calendar``, the JSON), in phases; plus the month in-process with
   PostgreSQL forced to generic plans (``plan_cache_mode``), as psycopg's prepared
   statements may get after 5 runs;
7. a cProfile pass over in-process month requests (``--no-profile`` skips it);
8. writes ``bench/results/calendar-postgresql.{json,md}`` (``-quick`` with ``--quick``).

Exit status 0 when every target is met, 1 when one is not.
Run ``python bench/calendar_view.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from harness import cli, log
from harness.cpu import QuietGate, server_cpu_meter
from harness.database import PASSWORD, connected_engine, fresh_database, migrated_database
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
from sqlalchemy import event, insert, text

from boxoffice.api.calendar_schemas import calendar_json
from boxoffice.db.models import Booking, Course, Provider, Room, Service, Session, User
from boxoffice.db.session import Database
from boxoffice.domain.bookings import SEAT_HOLDING
from boxoffice.services import auth, calendar_view
from boxoffice.services.organizations import create_organization

PATH = "/api/v1/calendar"
MONTH_DAYS, WEEK_DAYS = 30, 7
# What is measured: name -> (days from the month's start, query parameters).
CASES: dict[str, tuple[int, dict[str, str]]] = {
    "month": (MONTH_DAYS, {}),
    "month, counts only": (MONTH_DAYS, {"includeAttendees": "false"}),
    "week": (WEEK_DAYS, {}),
}
GENERIC = "month, generic plans"  # in-process only
ROOMS, FIRST_HOUR, LAST_HOUR = 8, 8, 20  # an hourly grid per room and day, UTC
KINDS = (("timeslot", 0.40), ("appointment", 0.20), ("workshop", 0.25), ("course", 0.15))
CAPACITY = {"timeslot": 4, "appointment": 1, "workshop": 30, "course": 30}
CANCELLED_SHARE, GUEST_SHARE = 0.08, 0.25
HOLDING_MIX = (("confirmed", 0.80), ("pending", 0.10), ("completed", 0.07), ("no_show", 0.03))
PAYMENT = {"confirmed": "paid", "pending": "pending", "completed": "paid", "no_show": "paid"}
TARGET_P50_MS = 50.0
HOLDING = {s.value for s in SEAT_HOLDING}


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    pg_url: str
    sessions: int
    bookings: int
    users: int
    neighbours: bool
    repeats: int
    requests: int
    warmup: int
    workers: int
    timeout_s: float
    seed: int
    quiet_wait_s: float
    quiet_budget_s: float
    quiet_cores: float
    profile: bool
    out: Path
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = cli.new_parser("Benchmark the organiser's calendar (a month, over HTTP) on PostgreSQL.")
    p.add_argument("--sessions", type=int, default=2000, help="Sessions in the month")
    p.add_argument("--bookings", type=int, default=20_000, help="Bookings of those sessions")
    p.add_argument("--users", type=int, default=3000, help="Customer accounts")
    p.add_argument(
        "--neighbours",
        type=int,
        default=1,
        choices=(0, 1),
        help="Also seed the months before and after alike (1) or not (0)",
    )
    p.add_argument("--repeats", type=int, default=3, help="Runs per figure; medians reported")
    p.add_argument("--requests", type=int, default=50, help="Requests per window and run")
    p.add_argument("--warmup", type=int, default=5, help="Unmeasured requests per run")
    p.add_argument("--workers", type=int, default=2, help="Server processes")
    p.add_argument("--timeout", type=float, default=30.0, help="Per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=1, help="Seed of the generated data")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="Before each run, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument(
        "--quiet-budget", type=float, default=60.0, help="At most this much waiting in all"
    )
    p.add_argument("--quiet-cores", type=float, default=0.3, help="Busy cores that count as idle")
    p.add_argument("--no-profile", action="store_true", help="Skip the cProfile pass")
    cli.add_out_option(p, "bench/results/calendar-postgresql, -quick appended with --quick")
    cli.add_quick_option(p, "1 repeat, 10 requests, 2 warm-up")
    a = p.parse_args(argv)
    if a.quick:
        a.repeats, a.requests, a.warmup = 1, min(a.requests, 10), min(a.warmup, 2)
    cli.require_at_least_one(p, a, ("sessions", "users", "repeats", "requests", "workers"))
    cells = MONTH_DAYS * ROOMS * (LAST_HOUR - FIRST_HOUR)
    if a.sessions > cells:
        p.error(f"--sessions: at most {cells} fit the grid")
    if min(a.warmup, a.bookings, a.quiet_wait, a.quiet_budget) < 0 or a.timeout <= 0:
        p.error("--warmup, --bookings and --quiet-* must not be negative, --timeout positive")
    stem = "calendar-postgresql" + ("-quick" if a.quick else "")
    return cli.options_from(
        Options,
        a,
        neighbours=bool(a.neighbours),
        timeout_s=a.timeout,
        quiet_wait_s=a.quiet_wait,
        quiet_budget_s=a.quiet_budget,
        profile=not a.no_profile,
        out=cli.results_path(a.out, stem),
    )


# --- seeding ------------------------------------------------------------------------------


@dataclass
class Fixture:
    org_id: uuid.UUID
    owner_id: uuid.UUID
    owner_email: str
    start: datetime  # the measured month: [start, start + MONTH_DAYS)
    expected: dict[str, int]  # what the month's answer must hold
    rows: dict[str, int] = field(default_factory=dict)  # rows in the database, by table
    seed_seconds: float = 0.0


def pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    names, weights = zip(*weighted, strict=True)
    return rng.choices(names, weights)[0]


def seed(database: Database, opts: Options) -> Fixture:
    started = time.perf_counter()
    rng = random.Random(opts.seed)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today + timedelta(days=14 - today.weekday())  # a Monday, 1-2 weeks ahead
    email = f"owner-{uuid.uuid4().hex[:8]}@bench.example"
    with database.write() as s:
        org = create_organization(s, slug="bench", name="Bench", timezone="UTC", currency="EUR")
        owner = auth.create_admin(s, email=email, password=PASSWORD, name="Owner", org_slug="bench")
        org_id, owner_id = org.id, owner.id
    now = datetime.now(UTC)
    base = {"org_id": org_id, "created_at": now, "updated_at": now}
    users = [
        {"id": uuid.uuid4(), "email": f"c{i}@bench.example", "name": f"Customer {i}",
         "password_hash": "x", "is_active": True, "created_at": now}
        for i in range(opts.users)
    ]  # fmt: skip
    rooms = [
        {**base, "id": uuid.uuid4(), "name": f"Room {i + 1}", "capacity": 30,
         "room_type": "meeting"}
        for i in range(ROOMS)
    ]  # fmt: skip
    providers = [
        {**base, "id": uuid.uuid4(), "name": f"Provider {i + 1}", "timezone": "UTC"}
        for i in range(ROOMS)
    ]
    services = {
        kind: {**base, "id": uuid.uuid4(), "name": name, "kind": svc_kind, "duration_min": 60,
               "currency": "EUR", "capacity": CAPACITY[kind]}
        for kind, name, svc_kind in (
            ("appointment", "Consultation", "individual"),
            ("workshop", "Pottery workshop", "workshop"),
            ("course", "Yoga course", "course"),
        )
    }  # fmt: skip
    courses = [
        {**base, "id": uuid.uuid4(), "service_id": services["course"]["id"],
         "title": f"Yoga {i + 1}", "timezone": "UTC", "max_participants": CAPACITY["course"],
         "currency": "EUR"}
        for i in range(ROOMS)
    ]  # fmt: skip
    sessions: list[dict[str, Any]] = []
    bookings: list[dict[str, Any]] = []
    months = (-1, 0, 1) if opts.neighbours else (0,)
    expected: dict[str, int] = {}
    for month in months:
        first = start + timedelta(days=month * MONTH_DAYS)
        made, counts = seed_month(
            rng, opts, base, first, rooms, providers, services, courses, users
        )
        sessions += made[0]
        bookings += made[1]
        if month == 0:
            expected = counts
    tables: list[tuple[Any, list[dict[str, Any]]]] = [
        (User, users),
        (Room, rooms),
        (Provider, providers),
        (Service, list(services.values())),
        (Course, courses),
        (Session, sessions),
        (Booking, bookings),
    ]
    with database.write() as s:
        for model, rows in tables:
            for i in range(0, len(rows), 5000):
                s.execute(insert(model.__table__), rows[i : i + 5000])
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    fx = Fixture(org_id, owner_id, email, start, expected)
    fx.rows = {model.__tablename__: len(rows) for model, rows in tables}
    fx.seed_seconds = time.perf_counter() - started
    return fx


def seed_month(
    rng: random.Random,
    opts: Options,
    base: dict[str, Any],
    first: datetime,
    rooms: list[dict[str, Any]],
    providers: list[dict[str, Any]],
    services: dict[str, dict[str, Any]],
    courses: list[dict[str, Any]],
    users: list[dict[str, Any]],
) -> tuple[tuple[list[dict[str, Any]], list[dict[str, Any]]], dict[str, int]]:
    """One month's sessions and bookings, and what its calendar must show."""
    hours = range(FIRST_HOUR, LAST_HOUR)
    cells = [(d, r, h) for d in range(MONTH_DAYS) for r in range(ROOMS) for h in hours]
    chosen = sorted(rng.sample(cells, opts.sessions))
    sessions = []
    sequence = Counter[int]()
    for day, room, hour in chosen:
        kind = pick(rng, KINDS)
        start_at = first + timedelta(days=day, hours=hour)
        row = {
            **base, "id": uuid.uuid4(), "kind": kind, "title": None, "room_id": rooms[room]["id"],
            "provider_id": None if kind == "timeslot" else providers[room]["id"],
            "service_id": services[kind]["id"] if kind in services else None,
            "start_at": start_at, "end_at": start_at + timedelta(hours=1), "status": "scheduled",
            "max_participants": CAPACITY[kind], "booked_count": 0, "course_id": None,
            "sequence_no": None,
        }  # fmt: skip
        if kind == "workshop":
            row["title"] = "Pottery"
        if kind == "course":
            sequence[room] += 1
            row |= {"course_id": courses[room]["id"], "title": courses[room]["title"]}
            row["sequence_no"] = sequence[room]
        sessions.append(row)
    # Bookings: one per appointment, a few per timeslot, the rest spread over the groups.
    wanted = {
        "appointment": lambda: 1,
        "timeslot": lambda: rng.randint(0, 3),
        "workshop": lambda: 0,
        "course": lambda: 0,
    }
    per_session = [wanted[s["kind"]]() for s in sessions]
    # Up to a few more than the seats of a group session: some bookings were cancelled.
    room = {i: int(s["max_participants"] * 1.05) for i, s in enumerate(sessions)}
    groups = [i for i, s in enumerate(sessions) if s["kind"] in ("workshop", "course")]
    left = opts.bookings - sum(per_session)
    while left > 0 and groups:
        i = rng.choice(groups)
        if per_session[i] >= room[i]:
            groups.remove(i)
            continue
        per_session[i] += 1
        left -= 1
    if left > 0:
        raise SystemExit(f"--bookings: {left} more bookings than the sessions can hold")
    bookings: list[dict[str, Any]] = []
    created = first - timedelta(days=20)
    for i, n in enumerate(per_session):
        session = sessions[i]
        for _ in range(n):
            holding = session["booked_count"] < session["max_participants"]
            status = pick(rng, HOLDING_MIX) if holding else "cancelled"
            if holding and rng.random() < CANCELLED_SHARE:
                status = "cancelled"
            guest = rng.random() < GUEST_SHARE
            user = rng.choice(users)
            created += timedelta(seconds=rng.randint(1, 60))
            bookings.append(
                {**base, "id": uuid.uuid4(), "session_id": session["id"],
                 "user_id": None if guest else user["id"], "status": status,
                 "payment_status": PAYMENT.get(status, "refunded"), "price_minor": 0,
                 "currency": "EUR",
                 "customer_name": f"Guest {len(bookings)}" if guest else None,
                 "customer_email": f"g{len(bookings)}@bench.example" if guest else None,
                 "created_at": created, "updated_at": created}
            )  # fmt: skip
            if status in HOLDING:
                session["booked_count"] += 1
    statuses = Counter(b["status"] for b in bookings)
    expected = {
        "sessions": len(sessions),
        "bookings": len(bookings),
        "attendees": sum(n for s, n in statuses.items() if s in HOLDING),
        **{f"status {s}": n for s, n in sorted(statuses.items())},
    }
    return (sessions, bookings), expected


def check_answer(database: Database, fx: Fixture) -> dict[str, int]:
    """The month's JSON, made in-process, must hold exactly what was seeded."""
    with database.read() as s:
        view = calendar_view.calendar(s, fx.org_id, fx.start, fx.start + timedelta(days=MONTH_DAYS))
    found = Counter[str]()
    for session in json.loads(calendar_json(view))["sessions"]:
        found["sessions"] += 1
        found["attendees"] += len(session["attendees"])
        for status, n in session["counts"].items():
            found[f"status {'no_show' if status == 'noShow' else status}"] += n
            found["bookings"] += n
        if len(session["attendees"]) != session["bookedCount"]:
            found["attendees != bookedCount"] += 1
    got = {k: found.get(k, 0) for k in fx.expected}
    if got != fx.expected or found["attendees != bookedCount"]:
        raise RuntimeError(f"calendar answer {dict(found)} != seeded {fx.expected}")
    return got


# --- measuring ----------------------------------------------------------------------------


def path_of(fx: Fixture, case: str) -> str:
    days, params = CASES[case]
    end = fx.start + timedelta(days=days)
    return f"{PATH}?{urlencode({'from': fx.start.isoformat(), 'to': end.isoformat(), **params})}"


def explain(database: Database, fx: Fixture) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement a month's calendar runs (captured from
    the cursor events of one in-process call, then run again with their parameters)."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        captured.append((statement, params))

    end = fx.start + timedelta(days=MONTH_DAYS)
    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with database.read() as s:
            calendar_view.calendar(s, fx.org_id, fx.start, end)
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    plans = []
    with database.engine.connect() as conn:
        for statement, params in captured:
            if "FROM sessions" not in statement and "FROM bookings" not in statement:
                continue  # the organisation's row
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            what = "bookings by session" if "FROM bookings" in statement else "sessions"
            plans.append({"statement": what, "sql": statement, "plan": [r[0] for r in rows]})
    return plans


@dataclass
class HttpRun:
    case: str
    client: str
    repeat: int
    requests: int
    status: dict[str, int]
    response_bytes: int
    latency: dict[str, float]
    cpu_cores: dict[str, float]
    idle_load_before: float


def measure_http(
    server: Server,
    token: str,
    fx: Fixture,
    case: str,
    client_kind: str,
    opts: Options,
    repeat: int,
    idle_load: float,
) -> HttpRun:
    """``opts.requests`` sequential GETs on one keep-alive connection, after a warm-up."""
    path = path_of(fx, case)
    send: Callable[[], tuple[str, float, int]]
    if client_kind == "httpx":
        hx = httpx.Client(
            base_url=f"http://{HOST}:{server.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=opts.timeout_s,
        )

        def send() -> tuple[str, float, int]:
            t0 = time.perf_counter()
            r = hx.get(path)
            size = len(r.content)
            return str(r.status_code), time.perf_counter() - t0, size

        close = hx.close
    else:
        conn = Client(server.port, token, opts.timeout_s)
        conn.connect()

        def send() -> tuple[str, float, int]:
            return conn.request("GET", path, None)

        close = conn.close
    try:
        for _ in range(opts.warmup):
            send()
        meter = server_cpu_meter(server.worker_pids())
        meter.start()
        samples = [send() for _ in range(opts.requests)]
        cpu = meter.stop()
    finally:
        close()
    return HttpRun(
        case=case,
        client=client_kind,
        repeat=repeat,
        requests=len(samples),
        status=dict(Counter(code for code, _, _ in samples)),
        response_bytes=max(size for _, _, size in samples),
        latency=latency(sec for _, sec, _ in samples),
        cpu_cores=cpu,
        idle_load_before=idle_load,
    )


@dataclass
class InProcessRun:
    case: str
    repeat: int
    calls: int
    sessions: int
    json_bytes: int
    phases: dict[str, dict[str, float]]  # name -> latency summary
    total: dict[str, float]
    cpu_ms_p50: float  # this process's CPU per call


def measure_inprocess(
    database: Database, fx: Fixture, case: str, opts: Options, repeat: int
) -> InProcessRun:
    """What the route does, step by step with timers: the read transaction with the
    caller's organisation, the calendar (its two statements), the JSON."""
    days, params = CASES["month" if case == GENERIC else case]
    end = fx.start + timedelta(days=days)
    with_attendees = params.get("includeAttendees") != "false"
    phases: dict[str, list[float]] = {"auth": [], "calendar": [], "commit": [], "json": []}
    totals: list[float] = []
    cpus: list[float] = []
    size = sessions = 0
    for i in range(opts.warmup + opts.requests):
        c0 = time.process_time()
        t0 = time.perf_counter()
        with database.read() as s:
            auth.admin_org(s, fx.owner_id, org_slug=None, roles=auth.DESK_ROLES)
            t1 = time.perf_counter()
            view = calendar_view.calendar(
                s, fx.org_id, fx.start, end, with_attendees=with_attendees
            )
            t2 = time.perf_counter()
        t3 = time.perf_counter()
        body = calendar_json(view)
        t4 = time.perf_counter()
        if i >= opts.warmup:
            for name, sec in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name].append(sec)
            totals.append(t4 - t0)
            cpus.append(time.process_time() - c0)
        size, sessions = len(body), len(view.sessions)
    return InProcessRun(
        case=case,
        repeat=repeat,
        calls=len(totals),
        sessions=sessions,
        json_bytes=size,
        phases={k: latency(v) for k, v in phases.items()},
        total=latency(totals),
        cpu_ms_p50=median(cpus) * 1000,
    )


def generic_plans_database(db_url: str) -> Database:
    """The project's Database whose connections plan every statement generically."""
    database = Database.from_url(db_url, pool_size=1)

    @event.listens_for(database.engine, "connect")
    def force_generic(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute("SET plan_cache_mode = force_generic_plan")
            cur.execute("SET statement_timeout = '30s'")
        dbapi_connection.commit()

    return database


def profile(database: Database, fx: Fixture, calls: int) -> dict[str, Any]:
    """cProfile over ``calls`` in-process month calendars (with the JSON): top functions."""
    end = fx.start + timedelta(days=MONTH_DAYS)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        with database.read() as s:
            view = calendar_view.calendar(s, fx.org_id, fx.start, end)
        calendar_json(view)
    profiler.disable()
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    funcs = [
        {
            "function": f"{Path(filename).name}:{line}({name})",
            "calls_per_request": ncalls / calls,
            "own_ms": tottime / calls * 1000,
            "cum_ms": cumtime / calls * 1000,
        }
        for (filename, line, name), (_cc, ncalls, tottime, cumtime, _) in raw.items()
    ]
    return {
        "calls": calls,
        "profiled_ms_per_request": sum(f["own_ms"] for f in funcs),
        "top_own": sorted(funcs, key=lambda f: -f["own_ms"])[:15],
    }


def latency(seconds: Iterable[float]) -> dict[str, float]:
    """The harness's summary (p50, p90, p99, max, mean in ms) plus p95."""
    values = list(seconds)
    return latency_summary(values) | {"p95_ms": percentile(sorted(x * 1000 for x in values), 95)}


# --- the run ------------------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    code_before = code_state()
    http_runs: list[HttpRun] = []
    inproc_runs: list[InProcessRun] = []
    prof = None
    with (
        tempfile.TemporaryDirectory(prefix="boxoffice-bench-calendar-") as tmp,
        fresh_database(opts.pg_url) as db_url,
        migrated_database(db_url) as database,
    ):
        with connected_engine(db_url) as admin:
            machine = machine_info(admin, workers=opts.workers)
        fx = seed(database, opts)
        log(f"seeded in {fx.seed_seconds:.1f} s: {fx.rows}; the month: {fx.expected}")
        check_answer(database, fx)
        plans = explain(database, fx)
        for p in plans:
            log(f"EXPLAIN {p['statement']}: {p['plan'][0][:60]} ... {p['plan'][-1]}")
        generic = generic_plans_database(db_url)
        server = Server(
            db_url,
            port=0,
            workers=opts.workers,
            workdir=Path(tmp),
            extra_args=["--no-worker"],
            extra_env={"BOXOFFICE_SECRET_KEY": "bench-" + uuid.uuid4().hex},
        )
        try:
            with serving(server):
                token = sign_in(server, fx)
                warm(server, token, fx, opts)
                gc.collect()
                gc.freeze()  # like the server after start-up: the seeding's objects stay out
                gate = QuietGate(
                    wait_s=opts.quiet_wait_s,
                    budget_s=opts.quiet_budget_s,
                    quiet_cores=opts.quiet_cores,
                )
                for repeat in range(opts.repeats):
                    for case in CASES:
                        for kind in ("httpx", "stdlib"):
                            h = measure_http(
                                server, token, fx, case, kind, opts, repeat, gate.wait()
                            )
                            http_runs.append(h)
                            log(
                                f"HTTP {case:<18} {kind:<6} #{repeat + 1}: p50 "
                                f"{h.latency['p50_ms']:.1f} p95 {h.latency['p95_ms']:.1f} max "
                                f"{h.latency['max_ms']:.1f} ms, {h.response_bytes:,} bytes, "
                                f"{h.status}, server {h.cpu_cores['server']:.2f} pg "
                                f"{h.cpu_cores['postgres']:.2f} machine "
                                f"{h.cpu_cores['machine']:.2f} cores"
                            )
                    for case in (*CASES, GENERIC):
                        gate.wait()
                        r = measure_inprocess(
                            generic if case == GENERIC else database, fx, case, opts, repeat
                        )
                        inproc_runs.append(r)
                        log(
                            f"in-process {case:<20} #{repeat + 1}: p50 "
                            f"{r.total['p50_ms']:.1f} ms (CPU {r.cpu_ms_p50:.1f}; "
                            + ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in r.phases.items())
                            + f"), {r.sessions} sessions, {r.json_bytes:,} bytes"
                        )
                if opts.profile:
                    prof = profile(database, fx, max(opts.requests // 2, 5))
        finally:
            gc.unfreeze()
            generic.dispose()
    code = {"before": code_before, "after": code_state()}
    summary = summarise(http_runs, inproc_runs)
    return {
        **report_header("calendar-postgresql", machine, opts),
        "code": code,
        "fixture": asdict(fx),
        "summary": summary,
        "targets": targets(summary),
        "explain": plans,
        "profile": prof,
        "http_runs": [asdict(h) for h in http_runs],
        "inprocess_runs": [asdict(r) for r in inproc_runs],
    }


def sign_in(server: Server, fx: Fixture) -> str:
    status, body = http_call(
        HOST,
        server.port,
        "POST",
        "/api/v1/auth/token",
        {"email": fx.owner_email, "password": PASSWORD},
    )
    if status != 200:
        raise RuntimeError(f"token: {status} {body}")
    return str(body["accessToken"])


def warm(server: Server, token: str, fx: Fixture, opts: Options) -> None:
    """A few requests of each case on several connections, so every worker has served
    them (and psycopg has prepared their statements)."""
    conns = [Client(server.port, token, opts.timeout_s) for _ in range(4 * opts.workers)]
    try:
        for c in conns:
            c.connect()
            for case in CASES:
                for _ in range(2):
                    status, _, _ = c.request("GET", path_of(fx, case), None)
                    if status != "200":
                        raise RuntimeError(f"GET {path_of(fx, case)}: {status}")
    finally:
        for c in conns:
            c.close()


def summarise(http_runs: list[HttpRun], inproc: list[InProcessRun]) -> dict[str, Any]:
    rows = []
    for case in CASES:
        for kind in ("httpx", "stdlib"):
            runs = [h for h in http_runs if h.case == case and h.client == kind]
            rows.append(
                {
                    "case": case,
                    "client": kind,
                    "p50_ms": median([h.latency["p50_ms"] for h in runs]),
                    "p50_runs": [h.latency["p50_ms"] for h in runs],
                    "p95_ms": median([h.latency["p95_ms"] for h in runs]),
                    "max_ms": max(h.latency["max_ms"] for h in runs),
                    "bytes": runs[0].response_bytes,
                    "server_cores": median([h.cpu_cores["server"] for h in runs]),
                    "postgres_cores": median([h.cpu_cores["postgres"] for h in runs]),
                    "idle_load_before": [h.idle_load_before for h in runs],
                    "statuses": dict(sum((Counter(h.status) for h in runs), Counter())),
                }
            )
    inproc_rows = []
    for case in (*CASES, GENERIC):
        runs = [r for r in inproc if r.case == case]
        inproc_rows.append(
            {
                "case": case,
                "sessions": runs[0].sessions,
                "json_bytes": runs[0].json_bytes,
                "total_p50_ms": median([r.total["p50_ms"] for r in runs]),
                "total_p50_runs": [r.total["p50_ms"] for r in runs],
                "cpu_p50_ms": median([r.cpu_ms_p50 for r in runs]),
                "phases_p50_ms": {
                    k: median([r.phases[k]["p50_ms"] for r in runs]) for k in runs[0].phases
                },
            }
        )
    return {"http": rows, "inprocess": inproc_rows}


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    month = next(r for r in summary["http"] if r["case"] == "month" and r["client"] == "httpx")
    generic = next(r for r in summary["inprocess"] if r["case"] == GENERIC)
    custom = next(r for r in summary["inprocess"] if r["case"] == "month")
    return [
        {
            "target": f"month p50 <= {TARGET_P50_MS:g} ms over HTTP (httpx, 1 client)",
            "measured": f"{month['p50_ms']:.1f} ms (runs: "
            + ", ".join(f"{x:.1f}" for x in month["p50_runs"])
            + ")",
            "met": month["p50_ms"] <= TARGET_P50_MS,
        },
        {
            "target": "every request answered 200",
            "measured": "; ".join(
                f"{r['case']} {r['client']}: {r['statuses']}" for r in summary["http"]
            ),
            "met": all(set(r["statuses"]) == {"200"} for r in summary["http"]),
        },
        {
            "target": "generic plans no slower than 1.5x (in-process month)",
            "measured": f"{generic['total_p50_ms']:.1f} ms against {custom['total_p50_ms']:.1f}",
            "met": generic["total_p50_ms"] <= 1.5 * custom["total_p50_ms"],
        },
    ]


def render_markdown(report: dict[str, Any]) -> str:
    o, fx, sm = report["options"], report["fixture"], report["summary"]
    lines = [
        "# Calendar benchmark: PostgreSQL",
        "",
        *machine_lines(report["machine"]),
        code_line(report["code"]),
        f"- Server: `boxoffice serve --workers {o['workers']} --no-worker` on 127.0.0.1; "
        "the benchmark, the server and PostgreSQL share the machine",
        f"- Command: `{report['command']}`; {report['wall_seconds']} s in all "
        f"(seeding {fx['seed_seconds']:.1f} s)",
        f"- {o['repeats']} run(s) per figure, medians shown; per run {o['requests']} "
        f"sequential requests on one keep-alive connection after {o['warmup']} warm-up",
        "",
        "## Data",
        "",
        f"One organisation (UTC), {ROOMS} rooms, {ROOMS} providers, 3 services, {ROOMS} "
        f"courses, {o['users']:,} customer accounts. The month measured: {fx['start']} + "
        f"{MONTH_DAYS} days, {fx['expected']['sessions']:,} one-hour sessions on an hourly "
        f"grid ({', '.join(f'{k} {int(v * 100)} %' for k, v in KINDS)}) holding "
        f"{fx['expected']['bookings']:,} bookings ("
        + ", ".join(
            f"{k.removeprefix('status ')} {v:,}"
            for k, v in fx["expected"].items()
            if k.startswith("status ")
        )
        + f"; {int(GUEST_SHARE * 100)} % by guests without an account), so "
        f"{fx['expected']['attendees']:,} attendees."
        + (
            " The month before and the month after are seeded alike, so the database holds "
            + ", ".join(f"{n:,} {t}" for t, n in fx["rows"].items())
            + "."
            if o["neighbours"]
            else ""
        ),
        "",
        "## Over HTTP",
        "",
        "| Case | Client | p50 ms | p95 ms | max ms | Runs (p50) | Bytes "
        "| Server cores | PostgreSQL cores |",
        "|---|---|--:|--:|--:|---|--:|--:|--:|",
    ]
    for r in sm["http"]:
        lines.append(
            f"| {r['case']} | {r['client']} | **{r['p50_ms']:.1f}** "
            f"| {r['p95_ms']:.1f} | {r['max_ms']:.1f} "
            f"| {', '.join(f'{x:.1f}' for x in r['p50_runs'])} | {r['bytes']:,} "
            f"| {r['server_cores']:.2f} | {r['postgres_cores']:.2f} |"
        )
    lines += [
        "",
        "Cases: `month` is the whole month with attendees (the target); `month, counts only` "
        "adds `includeAttendees=false`; `week` is the month's first 7 days. httpx is the "
        "target's client; the harness's stdlib client (`http.client`) spends less CPU reading "
        "a large body. Latency runs from sending the request to having read the whole body.",
        "",
        "## In-process (the route without HTTP), p50 ms",
        "",
        "| Case | Sessions | JSON bytes | Total | Runs | CPU | `admin_org` (checkout, "
        "first query) | `calendar` (2 statements) | commit | JSON |",
        "|---|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for r in sm["inprocess"]:
        ph = r["phases_p50_ms"]
        lines.append(
            f"| {r['case']} | {r['sessions']:,} | {r['json_bytes']:,} "
            f"| **{r['total_p50_ms']:.1f}** | {', '.join(f'{x:.1f}' for x in r['total_p50_runs'])} "
            f"| {r['cpu_p50_ms']:.1f} | {ph['auth']:.1f} | {ph['calendar']:.1f} "
            f"| {ph['commit']:.1f} | {ph['json']:.1f} |"
        )
    lines += [
        "",
        "CPU: this process's CPU time per call (PostgreSQL's is not in it). `month, generic "
        "plans`: the month with `plan_cache_mode = force_generic_plan` on the connection.",
    ]
    lines += targets_lines(report["targets"])
    lines += ["", "## Plans (month, custom plans)", ""]
    for p in report["explain"]:
        lines += [f"{p['statement']}:", "", "```", *p["plan"], "```", ""]
    if report.get("profile"):
        prof = report["profile"]
        lines += [
            "## Profile (cProfile, in-process month, own time per request)",
            "",
            f"{prof['calls']} calls, {prof['profiled_ms_per_request']:.1f} ms per request "
            "under the profiler.",
            "",
            "| Function | Calls/request | Own ms | Cumulative ms |",
            "|---|--:|--:|--:|",
        ]
        for f in prof["top_own"]:
            lines.append(
                f"| `{f['function']}` | {f['calls_per_request']:,.0f} | {f['own_ms']:.2f} "
                f"| {f['cum_ms']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_benchmark(lambda: run(opts), opts.out, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
