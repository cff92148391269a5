#!/usr/bin/env python
"""Slot search benchmark: one provider's free slots for a 30-day window, on PostgreSQL.

What it does, in order:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens) and
   migrates it with ``boxoffice.db.migrate.upgrade``;
2. seeds one organisation (Europe/Madrid), one service (45 minutes every 15, 10 minutes
   of buffer after, 2 hours of notice, 365 days ahead, schedule "clinic") and, for each
   N in ``--sizes`` (100, 1,000, 10,000), a provider offering it with: 2 schedules
   ("clinic", used by the service, and "online") with weekly blocks, 20 dated-availability
   entries, 10 time-offs, a calendar connection with 500 external busy intervals, and N
   appointment sessions (scheduled, 1 of 1 seat taken, no overlaps) spread evenly over the
   year around now; then ``VACUUM ANALYZE``;
3. ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement one search issues, per N, with the
   custom plan (the literal values) and the generic plan (what a statement prepared by
   psycopg may switch to), and checks that the sessions query uses
   ``ix_sessions_provider_start``;
4. starts ``boxoffice serve --workers 2 --no-worker`` on 127.0.0.1 and waits for
   ``/healthz``;
5. per run (``--repeats``, interleaved over the sizes):

   - **in-process**: ``services.slots.search_slots`` inside ``Database.read()`` (what the
     route does, minus HTTP), ``--calls`` calls after ``--warmup``; then the same steps
     one by one with timers (lookups, ``provider_facts``, ``compute_slots``, merge,
     commit) and every SQL statement timed from SQLAlchemy's cursor events; then
     ``domain.availability.compute_slots`` alone on preloaded facts (the pure engine);
   - **HTTP**: ``GET /api/v1/public/services/{id}/slots?start=&end=&providerId=&timezone=``
     from 1 client (``--http-requests`` sequential requests on one keep-alive
     connection) and from ``--clients`` concurrent clients (the same number of requests
     in all), after a warm-up of the server workers;

   each run first waits (within a budget) for the machine to be idle, and reports the
   load it saw;
6. unless ``--no-profile``, profiles (cProfile) the in-process search at the largest N,
   kept out of the figures;
7. writes ``bench/results/slots-postgresql.{json,md}`` (``-quick`` with ``--quick``),
   with which code was measured (commit, uncommitted changes under ``boxoffice/``).

Exit status 0 when every target is met, 1 when one is not.
Run ``python bench/slots.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
from harness import cli, log
from harness.cpu import QuietGate, server_cpu_meter
from harness.database import connected_engine, fresh_database, migrated_database
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
from harness.stats import latency_summary, median, own_time_by_area
from pydantic import TypeAdapter
from sqlalchemy import Engine, event, insert, text

from boxoffice.api.public_schemas import SlotOut, SlotsOut
from boxoffice.db.models import (
    AvailabilityBlock,
    CalendarConnection,
    DatedAvailability,
    ExternalBusyTime,
    Provider,
    Schedule,
    Service,
    ServiceProvider,
    Session,
    TimeOff,
)
from boxoffice.db.session import Database
from boxoffice.domain import availability
from boxoffice.domain.timeslots import Interval
from boxoffice.services import slots
from boxoffice.services.organizations import create_organization

BENCH_DIR = Path(__file__).resolve().parent
SLOTS_PATH = "/api/v1/public/services/{service}/slots"

TZ = "Europe/Madrid"
WINDOW_DAYS = 30
YEAR = timedelta(days=365)
SCHEDULE = "clinic"  # the schedule the service uses; every provider also has "online"
DURATION_MIN, STEP_MIN, BUFFER_AFTER_MIN, NOTICE_MIN = 45, 15, 10, 120
DATED_ENTRIES, TIME_OFFS, BUSY_INTERVALS = 20, 10, 500
# (weekday, "HH:MM", "HH:MM"); weekday 0 = Monday.
CLINIC_HOURS = [
    *((d, "09:00", "13:00") for d in range(5)),
    *((d, "14:00", "19:00") for d in range(5)),
    (5, "10:00", "14:00"),
]
ONLINE_HOURS = [*((d, "19:00", "21:00") for d in range(4)), (6, "10:00", "12:00")]
# Days from today (local) of the dated entries and time-offs; the window is days 2-31.
DATED_DAYS = [-20, -12, -5, 3, 5, 8, 11, 14, 17, 20, 24, 27, 30, 36, 42, 50, 57, 63, 70, 75]
TIME_OFF_DAYS = [-150, -90, -30, -3, 6, 15, 22, 60, 120, 170]

TARGET_INPROCESS_P50_MS = 5.0
TARGET_HTTP_P50_MS = 20.0
TARGET_GROWTH = 2.0  # p50 at the largest N over p50 at the smallest

# The statements of one search, by the first table after FROM.
STATEMENTS = {
    "services": "service (db.get)",
    "providers": "offering providers",
    "schedules": "schedule by name",
    "availability_blocks": "weekly blocks",
    "dated_availability": "dated availability",
    "sessions": "sessions (occupied)",
    "time_off": "time off",
    "external_busy_times": "external busy times",
}


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    pg_url: str
    sizes: tuple[int, ...]
    repeats: int
    calls: int
    warmup: int
    engine_calls: int
    http_requests: int
    clients: int
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
    p = cli.new_parser("Benchmark the slot search (in-process and over HTTP) on PostgreSQL.")
    p.add_argument("--sizes", default="100,1000,10000", help="Sessions per provider (N)")
    p.add_argument("--repeats", type=int, default=3, help="Runs per figure; medians reported")
    p.add_argument("--calls", type=int, default=200, help="In-process searches per run")
    p.add_argument("--warmup", type=int, default=20, help="Unmeasured calls/requests per run")
    p.add_argument("--engine-calls", type=int, default=300, help="compute_slots calls per run")
    p.add_argument("--http-requests", type=int, default=300, help="HTTP requests per run")
    p.add_argument("--clients", type=int, default=4, help="Concurrent HTTP clients (0: skip)")
    p.add_argument("--workers", type=int, default=2, help="Server processes")
    p.add_argument("--timeout", type=float, default=30.0, help="Per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=1, help="Seed of the generated data")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="Before each run, wait up to this many seconds for the machine to be idle "
        "(other processes below --quiet-cores); the load seen is reported either way",
    )
    p.add_argument(
        "--quiet-budget",
        type=float,
        default=60.0,
        help="At most this many seconds of such waiting in all (0: never wait)",
    )
    p.add_argument("--quiet-cores", type=float, default=0.3, help="Busy cores that count as idle")
    p.add_argument(
        "--no-profile",
        action="store_true",
        help="Skip the cProfile pass over the in-process search at the largest N",
    )
    cli.add_out_option(p, "bench/results/slots-postgresql, -quick appended with --quick")
    cli.add_quick_option(p, "1 repeat, 40 calls, 60 HTTP requests, 10 warm-up")
    a = p.parse_args(argv)
    sizes = cli.int_list(a.sizes)
    if not sizes or min(sizes) < 1 or max(sizes) > 100_000:
        p.error("--sizes needs integers from 1 to 100000")
    if a.quick:
        a.repeats, a.calls, a.warmup = 1, min(a.calls, 40), min(a.warmup, 10)
        a.engine_calls, a.http_requests = min(a.engine_calls, 60), min(a.http_requests, 60)
    cli.require_at_least_one(p, a, ("repeats", "calls", "engine_calls", "http_requests", "workers"))
    if min(a.warmup, a.clients, a.quiet_wait, a.quiet_budget) < 0 or a.timeout <= 0:
        p.error("--warmup, --clients and --quiet-* must not be negative, --timeout positive")
    stem = "slots-postgresql" + ("-quick" if a.quick else "")
    return cli.options_from(
        Options,
        a,
        sizes=sizes,
        timeout_s=a.timeout,
        quiet_wait_s=a.quiet_wait,
        quiet_budget_s=a.quiet_budget,
        profile=not a.no_profile,
        out=cli.results_path(a.out, stem),
    )


# --- seeding ------------------------------------------------------------------------------


@dataclass
class ProviderSeed:
    n: int
    provider_id: uuid.UUID
    rows: dict[str, int]  # rows of each kind for this provider
    in_window: dict[str, int]  # of which overlap the search window


@dataclass
class Fixture:
    org_id: uuid.UUID
    service_id: uuid.UUID
    now: datetime  # the in-process searches' clock (the server uses its own)
    start: datetime
    end: datetime
    providers: dict[int, ProviderSeed]
    seed_seconds: float = 0.0


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def local(day: date, minute: int) -> datetime:
    """A local wall-clock time in TZ as a UTC instant (minute may be 1440)."""
    at = datetime.combine(day, dtime(), tzinfo=ZoneInfo(TZ)) + timedelta(minutes=minute)
    return at.astimezone(UTC)


def seed(database: Database, opts: Options, now: datetime) -> Fixture:
    started = time.perf_counter()
    rng = random.Random(opts.seed)
    start = datetime.combine(now.date() + timedelta(days=2), dtime(), tzinfo=UTC)
    end = start + timedelta(days=WINDOW_DAYS)
    window = Interval(start, end)
    today = now.astimezone(ZoneInfo(TZ)).date()
    year_start = datetime.combine(now.date(), dtime(), tzinfo=UTC) - YEAR / 2  # per day
    with database.write() as s:
        org = create_organization(s, slug="bench", name="Bench", timezone=TZ, currency="EUR")
        service = Service(
            org_id=org.id,
            name="Consultation",
            kind="individual",
            duration_min=DURATION_MIN,
            slot_step_min=STEP_MIN,
            price_minor=0,
            currency="EUR",
            capacity=1,
            buffer_before_min=0,
            buffer_after_min=BUFFER_AFTER_MIN,
            min_notice_min=NOTICE_MIN,
            max_days_ahead=365,
            schedule_name=SCHEDULE,
        )
        s.add(service)
        s.flush()
        fixture = Fixture(org.id, service.id, now, start, end, {})
        for n in opts.sizes:
            fixture.providers[n] = seed_provider(s, org.id, service, n, rng, today, year_start)
        # How many of each provider's rows overlap the window (what a search reads).
        for p in fixture.providers.values():
            p.in_window = count_in_window(s, p.provider_id, window, today)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    fixture.seed_seconds = time.perf_counter() - started
    return fixture


def seed_provider(
    s: Any,
    org_id: uuid.UUID,
    service: Service,
    n: int,
    rng: random.Random,
    today: date,
    year_start: datetime,
) -> ProviderSeed:
    provider = Provider(org_id=org_id, name=f"Provider N={n}", timezone=TZ)
    s.add(provider)
    s.flush()
    s.add(ServiceProvider(service_id=service.id, provider_id=provider.id, org_id=org_id))
    schedules = {}
    for name, hours, default in (("clinic", CLINIC_HOURS, True), ("online", ONLINE_HOURS, False)):
        schedule = Schedule(
            org_id=org_id, provider_id=provider.id, name=name, timezone=TZ, is_default=default
        )
        schedule.blocks = [
            AvailabilityBlock(org_id=org_id, weekday=d, start_min=minutes(a), end_min=minutes(b))
            for d, a, b in hours
        ]
        s.add(schedule)
        schedules[name] = schedule
    s.flush()
    # Dated entries, cycling through: extra evening hours on the clinic schedule; other
    # hours instead of the weekly ones (all schedules); a closed day; extra morning hours
    # on the online schedule (not read for this service).
    kinds = [
        (schedules["clinic"].id, 19 * 60, 21 * 60, False),
        (None, 10 * 60, 16 * 60, True),
        (None, 0, 0, True),
        (schedules["online"].id, 7 * 60, 9 * 60, False),
    ]
    for i, offset in enumerate(DATED_DAYS[:DATED_ENTRIES]):
        schedule_id, a, b, replace = kinds[i % len(kinds)]
        s.add(
            DatedAvailability(
                org_id=org_id,
                provider_id=provider.id,
                schedule_id=schedule_id,
                day=today + timedelta(days=offset),
                start_min=a,
                end_min=b,
                replace=replace,
            )
        )
    # Time off: afternoons and 1-3 day absences.
    for i, offset in enumerate(TIME_OFF_DAYS[:TIME_OFFS]):
        day = today + timedelta(days=offset)
        if i % 2 == 0:
            begins, ends = local(day, 14 * 60), local(day, 19 * 60)
        else:
            begins, ends = local(day, 0), local(day + timedelta(days=1 + i % 3), 0)
        s.add(TimeOff(org_id=org_id, provider_id=provider.id, start_at=begins, end_at=ends))
    connection = CalendarConnection(
        org_id=org_id, provider_id=provider.id, url=f"https://cal.example/{provider.id}/"
    )
    s.add(connection)
    s.flush()
    # External busy times: one per equal share of the year, 30-120 minutes, on a
    # 15-minute grid.
    busy = []
    share = YEAR / BUSY_INTERVALS
    for i in range(BUSY_INTERVALS):
        length = timedelta(minutes=rng.choice((30, 60, 90, 120)))
        room = (share - length) // timedelta(minutes=15)
        begins = year_start + share * i + timedelta(minutes=15 * rng.randint(0, room))
        busy.append(
            {
                "id": uuid.uuid4(),
                "org_id": org_id,
                "connection_id": connection.id,
                "provider_id": provider.id,
                "uid": f"event-{i}@cal.example",
                "start_at": begins,
                "end_at": begins + length,
            }
        )
    s.execute(insert(ExternalBusyTime), busy)
    # N appointments of the service: one per equal share of the year, at a random
    # 5-minute offset inside it, so none overlaps (the exclusion constraint checks).
    share = YEAR / n
    length = timedelta(minutes=DURATION_MIN)
    if share < length:
        raise ValueError(f"{n} sessions of {DURATION_MIN} minutes do not fit in a year")
    room = (share - length) // timedelta(minutes=5)
    stamp = datetime.now(UTC)
    sessions = []
    for i in range(n):
        begins = year_start + share * i + timedelta(minutes=5 * rng.randint(0, room))
        begins = begins.replace(second=0, microsecond=0)
        sessions.append(
            {
                "id": uuid.uuid4(),
                "org_id": org_id,
                "kind": slots.APPOINTMENT,
                "title": service.name,
                "room_id": None,
                "provider_id": provider.id,
                "service_id": service.id,
                "buffer_before_min": 0,
                "buffer_after_min": BUFFER_AFTER_MIN,
                "start_at": begins,
                "end_at": begins + length,
                "status": "scheduled",
                "visibility": "private",
                "is_open": True,
                "max_participants": 1,
                "booked_count": 1,
                "price_minor": 0,
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
    for k in range(0, n, 2000):
        s.execute(insert(Session), sessions[k : k + 2000])
    s.flush()
    rows = {
        "schedules": 2,
        "weekly blocks": len(CLINIC_HOURS) + len(ONLINE_HOURS),
        "dated availability": min(DATED_ENTRIES, len(DATED_DAYS)),
        "time off": min(TIME_OFFS, len(TIME_OFF_DAYS)),
        "external busy": BUSY_INTERVALS,
        "sessions": n,
    }
    return ProviderSeed(n=n, provider_id=provider.id, rows=rows, in_window={})


def count_in_window(
    s: Any, provider_id: uuid.UUID, window: Interval, today: date
) -> dict[str, int]:
    params = {"p": provider_id, "a": window.start_at, "b": window.end_at}
    first = (window.start_at.astimezone(ZoneInfo(TZ))).date()
    last = (window.end_at.astimezone(ZoneInfo(TZ))).date()

    def one(sql: str, **extra: Any) -> int:
        return int(s.execute(text(sql), {**params, **extra}).scalar_one())

    return {
        "sessions": one(
            "SELECT count(*) FROM sessions WHERE provider_id = :p AND start_at < :b AND end_at > :a"
        ),
        "external busy": one(
            "SELECT count(*) FROM external_busy_times WHERE provider_id = :p "
            "AND start_at < :b AND end_at > :a"
        ),
        "time off": one(
            "SELECT count(*) FROM time_off WHERE provider_id = :p AND start_at < :b AND end_at > :a"
        ),
        "dated availability": one(
            "SELECT count(*) FROM dated_availability WHERE provider_id = :p "
            "AND day >= :f AND day <= :l",
            f=first,
            l=last,
        ),
    }


# --- in-process ---------------------------------------------------------------------------


class StatementTimer:
    """Times every SQL statement (cursor execute to return, rows fetched by the driver)
    through SQLAlchemy's cursor events, grouped by the first table after FROM."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.active = False
        self.per_call: list[float] = []  # summed statement seconds of each call
        self.by_label: dict[str, list[float]] = {}
        self.rows: dict[str, int] = {}
        self.captured: list[tuple[str, Any]] = []
        self.capture = False
        self._current = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _c: Any, statement: str, params: Any, *_: Any) -> None:
        if self.capture:
            self.captured.append((statement, params))
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not self.active:
            return
        elapsed = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        label = label_of(statement)
        self.by_label.setdefault(label, []).append(elapsed)
        self.rows[label] = max(cursor.rowcount, 0)
        self._current += elapsed

    def start_call(self) -> None:
        self._current = 0.0

    def end_call(self) -> None:
        self.per_call.append(self._current)


def label_of(statement: str) -> str:
    found = re.search(r"\bFROM\s+(\w+)", statement)
    return found.group(1) if found else statement.split(None, 1)[0]


@dataclass
class InProcessResult:
    n: int
    repeat: int
    calls: int
    slots: int
    search: dict[str, float]  # Database.read() + search_slots, whole
    search_cpu: dict[str, float]  # the same calls' CPU time in this process (thread_time)
    phases: dict[str, dict[str, float]]  # the same steps timed one by one
    sql_total: dict[str, float]  # the statements of one search, summed
    statements: dict[str, dict[str, float]]  # per statement: p50 ms, mean ms, rows
    engine: dict[str, float]  # compute_slots alone, facts preloaded
    engine_calls: int
    cpu_cores: dict[str, float]
    idle_load_before: float  # cores busy on the machine just before the run


def measure_inprocess(
    database: Database, fx: Fixture, n: int, opts: Options, repeat: int, idle_load: float
) -> InProcessResult:
    provider_id = fx.providers[n].provider_id

    def search() -> slots.SlotSearch:
        with database.read() as s:
            return slots.search_slots(
                s, fx.service_id, provider_id=provider_id, start=fx.start, end=fx.end, now=fx.now
            )

    for _ in range(opts.warmup):
        found = search()
    meter = server_cpu_meter([])
    meter.start()
    samples, cpu_samples = [], []
    for _ in range(opts.calls):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        found = search()
        samples.append(time.perf_counter() - t0)
        cpu_samples.append(time.thread_time() - c0)
    cpu = meter.stop()

    # The same steps as search_slots, one provider, timed one by one.
    window = slots.check_window(fx.start, fx.end)
    names = ("lookups", "provider_facts", "compute_slots", "merge", "commit", "response")
    zone = ZoneInfo(TZ)
    dump = TypeAdapter(SlotsOut).dump_json
    phases: dict[str, list[float]] = {name: [] for name in names}
    timer = StatementTimer(database.engine)
    try:
        timer.active = True
        for _ in range(opts.calls):
            timer.start_call()
            t0 = time.perf_counter()
            with database.read() as s:
                service = slots.get_active_service(s, fx.service_id)
                (provider,) = slots.offering_providers(s, service, provider_id)
                rules = slots.rules_of(service)
                t1 = time.perf_counter()
                facts = slots.provider_facts(s, provider, service, window)
                t2 = time.perf_counter()
                computed = compute_from_facts(facts, rules, window, fx.now)
                t3 = time.perf_counter()
                merged = availability.union_slots({provider.id: computed})
                offered = [
                    slots.OfferedSlot(x.start_at, x.end_at, x.seats_left, x.providers)
                    for x in merged
                ]
                t4 = time.perf_counter()
            t5 = time.perf_counter()
            timer.end_call()
            # What the route does next (FastAPI then validates the model again and dumps
            # it; this only builds and dumps it).
            body = dump(
                SlotsOut(
                    service_id=fx.service_id,
                    timezone=TZ,
                    slots=[SlotOut.of(x, zone) for x in offered],
                ),
                by_alias=True,
            )
            t6 = time.perf_counter()
            for name, value in zip(
                names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True
            ):
                phases[name].append(value)
        if len(offered) != len(found.slots) or not body:
            raise RuntimeError(f"phased search found {len(offered)} slots, not {len(found.slots)}")
    finally:
        timer.close()

    # The pure engine on preloaded facts.
    engine_samples = []
    for i in range(opts.warmup + opts.engine_calls):
        t0 = time.perf_counter()
        compute_from_facts(facts, rules, window, fx.now)
        if i >= opts.warmup:
            engine_samples.append(time.perf_counter() - t0)

    return InProcessResult(
        n=n,
        repeat=repeat,
        calls=len(samples),
        slots=len(found.slots),
        search=latency_summary(samples),
        search_cpu=latency_summary(cpu_samples),
        phases={name: latency_summary(values) for name, values in phases.items()},
        sql_total=latency_summary(timer.per_call),
        statements={
            label: {
                "p50_ms": statistics.median(values) * 1000,
                "mean_ms": statistics.fmean(values) * 1000,
                "per_search": len(values) / opts.calls,
                "rows": timer.rows.get(label, 0),
            }
            for label, values in timer.by_label.items()
        },
        engine=latency_summary(engine_samples),
        engine_calls=len(engine_samples),
        cpu_cores=cpu,
        idle_load_before=idle_load,
    )


def compute_from_facts(
    facts: slots.Facts, rules: availability.SlotRules, window: Interval, now: datetime
) -> list[availability.Slot]:
    """``compute_slots`` on one provider's loaded facts, as ``search_slots`` calls it."""
    return availability.compute_slots(
        facts.schedule,
        rules,
        window,
        now,
        occupied=facts.occupied,
        time_off=facts.time_off,
        external_busy=facts.busy,
    )


# --- EXPLAIN ------------------------------------------------------------------------------


def explain_search(database: Database, fx: Fixture, n: int) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement one search issues: the custom plan
    (values as literals) and the generic plan (forced, as a prepared statement may get)."""
    timer = StatementTimer(database.engine)
    try:
        timer.capture = True
        with database.read() as s:
            slots.search_slots(
                s,
                fx.service_id,
                provider_id=fx.providers[n].provider_id,
                start=fx.start,
                end=fx.end,
                now=fx.now,
            )
    finally:
        timer.close()
    plans = []
    with database.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        with psycopg.ClientCursor(raw) as cur:
            for statement, params in timer.captured:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                custom = [str(r[0]) for r in cur.fetchall()]
                order: list[str] = []
                for name in re.findall(r"%\((\w+)\)s", statement):
                    if name not in order:
                        order.append(name)
                numbered = statement
                for i, name in enumerate(order, start=1):
                    numbered = numbered.replace(f"%({name})s", f"${i}")
                cur.execute(f"PREPARE bench_plan AS {numbered}")
                cur.execute("SET plan_cache_mode = force_generic_plan")
                placeholders = ", ".join(["%s"] * len(order))
                cur.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_plan({placeholders})",
                    [params[name] for name in order],
                )
                generic = [str(r[0]) for r in cur.fetchall()]
                cur.execute("DEALLOCATE bench_plan")
                cur.execute("RESET plan_cache_mode")
                label = label_of(statement)
                plans.append(
                    {
                        "label": label,
                        "statement": statement,
                        "custom_plan": custom,
                        "generic_plan": generic,
                        "custom_indexes": indexes_in(custom),
                        "generic_indexes": indexes_in(generic),
                        "custom_ms": execution_ms(custom),
                        "generic_ms": execution_ms(generic),
                    }
                )
        conn.rollback()
    return plans


def indexes_in(plan: Sequence[str]) -> list[str]:
    found = re.findall(
        r"(Seq Scan on \w+|Index(?: Only)? Scan(?: Backward)? using \w+)", "\n".join(plan)
    )
    found += re.findall(r"Bitmap Index Scan on \w+", "\n".join(plan))
    return list(dict.fromkeys(found))


def execution_ms(plan: Sequence[str]) -> float:
    for line in plan:
        if line.startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return float("nan")


# --- HTTP ---------------------------------------------------------------------------------


def slots_path(fx: Fixture, n: int) -> str:
    query = urlencode(
        {
            "start": fx.start.isoformat(),
            "end": fx.end.isoformat(),
            "providerId": str(fx.providers[n].provider_id),
            "timezone": TZ,
        }
    )
    return SLOTS_PATH.format(service=fx.service_id) + "?" + query


@dataclass
class HttpResult:
    n: int
    clients: int
    repeat: int
    requests: int
    elapsed_s: float
    requests_per_s: float
    response_bytes: int
    status: dict[str, int]
    latency: dict[str, float]
    cpu_cores: dict[str, float]
    idle_load_before: float


def measure_http(
    server: Server,
    path: str,
    *,
    n: int,
    clients: int,
    opts: Options,
    repeat: int,
    idle_load: float,
) -> HttpResult:
    """``opts.http_requests`` GETs in all from ``clients`` keep-alive connections, each
    sending its next request when the answer arrives; preceded by a warm-up on every
    connection."""
    conns = [Client(server.port, None, opts.timeout_s) for _ in range(clients)]
    per_client = [opts.http_requests // clients] * clients
    for i in range(opts.http_requests % clients):
        per_client[i] += 1
    results: list[list[tuple[str, float, int]]] = [[] for _ in conns]
    barrier = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        client = conns[i]
        for _ in range(opts.warmup):
            client.request("GET", path, None)
        barrier.wait()
        out = results[i]
        for _ in range(per_client[i]):
            out.append(client.request("GET", path, None))

    try:
        for c in conns:
            c.connect()
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        barrier.wait(timeout=120)
        meter = server_cpu_meter(server.worker_pids())
        meter.start()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        cpu = meter.stop()
    finally:
        for c in conns:
            c.close()
    samples = [x for out in results for x in out]
    status: dict[str, int] = {}
    for code, _, _ in samples:
        status[code] = status.get(code, 0) + 1
    return HttpResult(
        n=n,
        clients=clients,
        repeat=repeat,
        requests=len(samples),
        elapsed_s=elapsed,
        requests_per_s=len(samples) / elapsed,
        response_bytes=max(size for _, _, size in samples),
        status=status,
        latency=latency_summary([sec for _, sec, _ in samples]),
        cpu_cores=cpu,
        idle_load_before=idle_load,
    )


def warm_server(server: Server, path: str, opts: Options) -> None:
    """A few requests on several connections, so that every worker has served the path
    (SO_REUSEPORT spreads connections over the workers by hash)."""
    conns = [Client(server.port, None, opts.timeout_s) for _ in range(4 * opts.workers)]
    try:
        for c in conns:
            c.connect()
            for _ in range(max(opts.warmup // 2, 3)):
                status, _, _ = c.request("GET", path, None)
                if status != "200":
                    raise RuntimeError(f"GET {path}: {status}")
    finally:
        for c in conns:
            c.close()


# --- profile ------------------------------------------------------------------------------


def profile_search(database: Database, fx: Fixture, n: int, calls: int) -> dict[str, Any]:
    """cProfile over ``calls`` in-process searches: time by area and the top functions."""
    provider_id = fx.providers[n].provider_id
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        with database.read() as s:
            slots.search_slots(
                s, fx.service_id, provider_id=provider_id, start=fx.start, end=fx.end, now=fx.now
            )
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())  # tottime
    areas = own_time_by_area(stats, area_of)
    funcs = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        funcs.append(
            {
                "function": f"{short_path(filename)}:{line}({name})",
                "calls_per_search": ncalls / calls,
                "own_us_per_search": tottime / calls * 1e6,
                "cum_us_per_search": cumtime / calls * 1e6,
            }
        )
    funcs.sort(key=lambda f: -f["own_us_per_search"])
    cumulative = sorted(
        (f for f in funcs if "boxoffice" in f["function"]), key=lambda f: -f["cum_us_per_search"]
    )
    return {
        "n": n,
        "calls": calls,
        "profiled_ms_per_search": total / calls * 1000,
        "areas_ms_per_search": {
            k: v / calls * 1000 for k, v in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "top_own": funcs[:25],
        "top_cumulative_boxoffice": cumulative[:20],
    }


AREAS = (
    ("boxoffice/domain/", "boxoffice.domain (the engine)"),
    ("boxoffice/services/", "boxoffice.services (slot search, row conversion)"),
    ("boxoffice/db/", "boxoffice.db (UTCDateTime, sessions)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg (incl. waiting for PostgreSQL)"),
    ("zoneinfo", "zoneinfo"),
)


def area_of(filename: str, name: str) -> str:
    for key, area in AREAS:
        if key in filename:
            return area
    if filename == "~":
        if "datetime" in name or "astimezone" in name or "utcoffset" in name:
            return "datetime builtins"
        if "poll" in name or "select" in name or "recv" in name or "send" in name:
            return "socket waits (builtins)"
        return "other builtins"
    return "other Python"


def short_path(filename: str) -> str:
    for marker in ("site-packages/", "/boxoffice/", "/lib/python3"):
        if marker in filename:
            return (
                filename.split(marker, 1)[1]
                if marker != "/boxoffice/"
                else ("boxoffice/" + filename.split(marker, 1)[1])
            )
    return filename


# --- report -------------------------------------------------------------------------------


def summarise(
    inproc: Sequence[InProcessResult], http: Sequence[HttpResult], fx: Fixture
) -> dict[str, Any]:
    rows = []
    for n in sorted(fx.providers):
        rs = [r for r in inproc if r.n == n]
        phase_names = list(rs[0].phases)
        labels = list(rs[0].statements)
        row: dict[str, Any] = {
            "n": n,
            "in_window": fx.providers[n].in_window,
            "slots": rs[0].slots,
            "runs": len(rs),
            "search_p50_ms": median([r.search["p50_ms"] for r in rs]),
            "search_p99_ms": median([r.search["p99_ms"] for r in rs]),
            "search_p50_runs": [round(r.search["p50_ms"], 3) for r in rs],
            "search_cpu_p50_ms": median([r.search_cpu["p50_ms"] for r in rs]),
            "engine_p50_ms": median([r.engine["p50_ms"] for r in rs]),
            "engine_p50_runs": [round(r.engine["p50_ms"], 3) for r in rs],
            "sql_p50_ms": median([r.sql_total["p50_ms"] for r in rs]),
            "phases_p50_ms": {
                name: median([r.phases[name]["p50_ms"] for r in rs]) for name in phase_names
            },
            "statements": {
                label: {
                    k: median([r.statements[label][k] for r in rs if label in r.statements])
                    for k in ("p50_ms", "mean_ms", "per_search", "rows")
                }
                for label in labels
            },
        }
        for clients in sorted({h.clients for h in http}):
            hs = [h for h in http if h.n == n and h.clients == clients]
            row[f"http_{clients}"] = {
                "runs": len(hs),
                "requests": hs[0].requests,
                "response_bytes": hs[0].response_bytes,
                "p50_ms": median([h.latency["p50_ms"] for h in hs]),
                "p99_ms": median([h.latency["p99_ms"] for h in hs]),
                "p50_runs": [round(h.latency["p50_ms"], 2) for h in hs],
                "p99_runs": [round(h.latency["p99_ms"], 2) for h in hs],
                "requests_per_s": median([h.requests_per_s for h in hs]),
                "non_200": sum(v for h in hs for k, v in h.status.items() if k != "200"),
                "cpu_cores": {
                    k: median([h.cpu_cores[k] for h in hs])
                    for k in ("client", "server", "postgres", "machine", "steal")
                },
            }
        rows.append(row)
    return {"rows": rows}


def targets(
    summary: dict[str, Any], explain: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    rows = summary["rows"]
    small, large = rows[0], rows[-1]
    checks = p50_targets(
        "in-process",
        TARGET_INPROCESS_P50_MS,
        (small["n"], small["search_p50_ms"]),
        (large["n"], large["search_p50_ms"], large["search_p50_runs"]),
    )
    if "http_1" in large:
        hl, hs = large["http_1"], small["http_1"]
        checks += p50_targets(
            "HTTP",
            TARGET_HTTP_P50_MS,
            (small["n"], hs["p50_ms"]),
            (large["n"], hl["p50_ms"], hl["p50_runs"]),
            note=" (1 client)",
        )
    # The sessions query, custom and generic plan, at every N.
    plans = {n: next(p for p in ps if p["label"] == "sessions") for n, ps in explain.items()}

    def kinds(scans: Sequence[str]) -> str:
        return "/".join(re.split(r" using | on ", x)[0] for x in scans) or "none"

    checks.append(
        {
            "target": "sessions query on ix_sessions_provider_start (every N, both plans)",
            "measured": "; ".join(
                f"N = {int(n):,}: {kinds(p['custom_indexes'])}, "
                f"generic {kinds(p['generic_indexes'])}"
                for n, p in plans.items()
            ),
            "met": bool(plans)
            and all(
                scans and all("ix_sessions_provider_start" in x for x in scans)
                for p in plans.values()
                for scans in (p["custom_indexes"], p["generic_indexes"])
            ),
        }
    )
    return checks


def p50_targets(
    what: str,
    limit_ms: float,
    small: tuple[int, float],
    large: tuple[int, float, Sequence[float]],
    note: str = "",
) -> list[dict[str, Any]]:
    """The two targets of one kind of search: its p50 at the largest N (``large``: N, p50,
    each run's p50) under ``limit_ms``, and within TARGET_GROWTH of the p50 at the smallest
    N (``small``: N, p50)."""
    (small_n, small_p50), (large_n, large_p50, runs) = small, large
    return [
        {
            "target": f"{what} p50 <= {limit_ms:g} ms at N = {large_n:,}{note}",
            "measured": f"{large_p50:.2f} ms (runs: " + ", ".join(f"{x:.2f}" for x in runs) + ")",
            "met": large_p50 <= limit_ms,
        },
        {
            "target": f"{what} p50 at N = {large_n:,} within {TARGET_GROWTH:g}x "
            f"of N = {small_n:,}{note}",
            "measured": f"{large_p50 / small_p50:.2f}x ({large_p50:.2f} / {small_p50:.2f} ms)",
            "met": large_p50 <= TARGET_GROWTH * small_p50,
        },
    ]


def render_markdown(report: dict[str, Any]) -> str:
    o, fx = report["options"], report["fixture"]
    rows = report["summary"]["rows"]
    concurrent = o["clients"] if o["clients"] > 1 else None
    lines = [
        "# Slot search benchmark: PostgreSQL",
        "",
        *machine_lines(report["machine"]),
        code_line(report["code"]),
        f"- Server: `boxoffice serve --workers {o['workers']} --no-worker` on 127.0.0.1; "
        "the benchmark, the server and PostgreSQL share the machine",
        f"- Command: `{report['command']}`; {report['wall_seconds']} s in all "
        f"(seeding {fx['seed_seconds']:.1f} s)",
        f"- {o['repeats']} run(s) per figure, interleaved over N, medians shown; per run "
        f"{o['calls']} in-process searches and {o['engine_calls']} engine calls after "
        f"{o['warmup']} warm-up; {o['http_requests']} HTTP requests per client count",
        "",
        "## Data",
        "",
        f"One service: {DURATION_MIN} minutes every {STEP_MIN} minutes, "
        f"{BUFFER_AFTER_MIN} minutes of buffer after, {NOTICE_MIN // 60} hours of notice, "
        f'365 days ahead, capacity 1, schedule "{SCHEDULE}" (time zone {TZ}). Per N, one '
        'provider offering it, with 2 schedules ("clinic": Mon-Fri 09:00-13:00 and '
        '14:00-19:00, Sat 10:00-14:00; "online": Mon-Thu 19:00-21:00, Sun 10:00-12:00), '
        f"{DATED_ENTRIES} dated-availability entries (-20 to +75 days: added evening hours, "
        f"replaced hours, closed days, online-only hours), {TIME_OFFS} time-offs "
        f"(afternoons and 1-3 day absences over the year), {BUSY_INTERVALS} external busy "
        "intervals (30-120 min, one per 1/500 of the year) and N appointment sessions "
        f"({DURATION_MIN} min, scheduled, 1 of 1 seat taken, no overlaps), one per 1/N of the "
        "year from 6 months ago to 6 months ahead. All providers share the tables "
        f"({sum(p['rows']['sessions'] for p in fx['providers'].values()):,} sessions in all). "
        f"Window: {fx['start']} to {fx['end']} ({WINDOW_DAYS} days), starting in 2 days.",
        "",
        "| N | Sessions in window | Busy in window | Time off in window | Dated in reach "
        "| Free slots |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        w = r["in_window"]
        lines.append(
            f"| {r['n']:,} | {w['sessions']} | {w['external busy']} | {w['time off']} "
            f"| {w['dated availability']} | {r['slots']} |"
        )
    lines += [
        "",
        "## Results",
        "",
        "| N | In-process p50 ms | p99 ms | its CPU p50 ms | SQL (8 statements) p50 ms "
        "| `provider_facts` p50 ms "
        "| `compute_slots` alone p50 ms | HTTP p50 ms | HTTP p99 ms | Bytes |"
        + (
            f" {concurrent} clients p50 / p99 ms | {concurrent} clients req/s |"
            if concurrent
            else ""
        ),
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|--:|" if concurrent else ""),
    ]
    for r in rows:
        h1 = r.get("http_1", {})
        line = (
            f"| {r['n']:,} | **{r['search_p50_ms']:.2f}** | {r['search_p99_ms']:.2f} "
            f"| {r['search_cpu_p50_ms']:.2f} "
            f"| {r['sql_p50_ms']:.2f} | {r['phases_p50_ms']['provider_facts']:.2f} "
            f"| {r['engine_p50_ms']:.2f} | **{h1.get('p50_ms', float('nan')):.2f}** "
            f"| {h1.get('p99_ms', float('nan')):.2f} | {h1.get('response_bytes', 0):,} |"
        )
        if concurrent:
            hc = r[f"http_{concurrent}"]
            line += f" {hc['p50_ms']:.2f} / {hc['p99_ms']:.2f} | {hc['requests_per_s']:.0f} |"
        lines.append(line)
    lines += [
        "",
        "In-process: `Database.read()` plus `search_slots`, i.e. the route without HTTP "
        "(pool checkout with its pre-ping, `BEGIN READ ONLY`, 8 statements, `COMMIT`). SQL: the "
        "8 statements' cursor executes summed (round trip, execution, rows fetched by "
        "psycopg; not their conversion into Python values). CPU: the same calls' CPU time in "
        "the benchmark's thread (no waiting for PostgreSQL; less sensitive than wall time to "
        "other work on the machine). `compute_slots` alone: the pure "
        "engine on the same facts, loaded once. HTTP: sequential requests on one keep-alive "
        "connection (1 client), nearest-rank percentiles, the JSON body included.",
    ]
    lines += targets_lines(report["targets"])
    lines += [
        "",
        "## Where the in-process time goes (p50 of each step, ms)",
        "",
        "| N | lookups (checkout, BEGIN, service, provider) | `provider_facts` | "
        "`compute_slots` | merge | commit | then in the route: `SlotsOut` + JSON |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        p = r["phases_p50_ms"]
        lines.append(
            f"| {r['n']:,} | {p['lookups']:.2f} | {p['provider_facts']:.2f} "
            f"| {p['compute_slots']:.2f} | {p['merge']:.2f} | {p['commit']:.2f} "
            f"| {p['response']:.2f} |"
        )
    lines += [
        "",
        "The steps of `search_slots` for one provider, called one by one with timers in "
        "between (`lookups`: `get_active_service` and `offering_providers`, with the pool "
        "checkout and `BEGIN`; `merge`: `union_slots` and `OfferedSlot`s). The last column "
        "is not part of the in-process figure: building the route's `SlotsOut` (a "
        "`SlotOut` with local times per slot) and dumping it to JSON with pydantic, which "
        "FastAPI does (plus a second validation of the model) before sending the body.",
        "",
        "Per statement (cursor execute, p50 ms, and rows returned):",
        "",
        "| Statement | " + " | ".join(f"N = {r['n']:,}" for r in rows) + " |",
        "|---|" + "--:|" * len(rows),
    ]
    for label, name in STATEMENTS.items():
        cells = []
        for r in rows:
            st = r["statements"].get(label)
            cells.append(f"{st['p50_ms']:.3f} ({st['rows']:.0f} rows)" if st else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Query plans", ""]
    for n, plans in report["explain"].items():
        summary = "; ".join(
            f"{p['label']}: {', '.join(p['custom_indexes'])}"
            + (
                f" (generic: {', '.join(p['generic_indexes'])})"
                if p["generic_indexes"] != p["custom_indexes"]
                else ""
            )
            for p in plans
        )
        lines.append(f"- N = {int(n):,}: {summary}")
    lines.append("")
    largest = str(rows[-1]["n"])
    for p in report["explain"].get(largest, []):
        if p["label"] == "sessions":
            lines += [
                f"The sessions query at N = {int(largest):,} (`EXPLAIN (ANALYZE, BUFFERS)`, "
                "custom plan, then the generic plan a prepared statement may use):",
                "",
                "```sql",
                p["statement"],
                "```",
                "",
                "```",
                *p["custom_plan"],
                "```",
                "",
                "```",
                *p["generic_plan"],
                "```",
                "",
            ]
    prof = report.get("profile")
    if prof:
        lines += [
            f"## Profile (cProfile, {prof['calls']} in-process searches at N = {prof['n']:,}; "
            "own time, inflated by the profiler)",
            "",
            f"{prof['profiled_ms_per_search']:.2f} ms per search under the profiler.",
            "",
            "| Area | ms per search |",
            "|---|--:|",
        ]
        for area, value in prof["areas_ms_per_search"].items():
            lines.append(f"| {area} | {value:.3f} |")
        lines += [
            "",
            "| Function (own time) | calls / search | own µs / search | cum µs / search |",
            "|---|--:|--:|--:|",
        ]
        for f in prof["top_own"][:15]:
            lines.append(
                f"| `{f['function']}` | {f['calls_per_search']:.0f} "
                f"| {f['own_us_per_search']:.0f} | {f['cum_us_per_search']:.0f} |"
            )
        lines += [
            "",
            "| boxoffice function (cumulative) | calls / search | cum µs / search |",
            "|---|--:|--:|",
        ]
        for f in prof["top_cumulative_boxoffice"][:12]:
            lines.append(
                f"| `{f['function']}` | {f['calls_per_search']:.0f} "
                f"| {f['cum_us_per_search']:.0f} |"
            )
        lines.append("")
    lines += [
        "## Every run",
        "",
        "| Kind | N | Run | Count | p50 ms | p99 ms | Engine p50 ms | Idle before "
        "| CPU cores: bench / server / pg / machine | Steal |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["inprocess_runs"]:
        cpu = r["cpu_cores"]
        lines.append(
            f"| in-process | {r['n']:,} | {r['repeat'] + 1} | {r['calls']} "
            f"| {r['search']['p50_ms']:.2f} | {r['search']['p99_ms']:.2f} "
            f"| {r['engine']['p50_ms']:.2f} | {r['idle_load_before']:.2f} "
            f"| {cpu['client']:.2f} / - / {cpu['postgres']:.2f} "
            f"/ {cpu['machine']:.2f} | {cpu['steal']:.2f} |"
        )
    for h in report["http_runs"]:
        cpu = h["cpu_cores"]
        lines.append(
            f"| HTTP, {h['clients']} client(s) | {h['n']:,} | {h['repeat'] + 1} "
            f"| {h['requests']} | {h['latency']['p50_ms']:.2f} | {h['latency']['p99_ms']:.2f} "
            f"| - | {h['idle_load_before']:.2f} "
            f"| {cpu['client']:.2f} / {cpu['server']:.2f} / {cpu['postgres']:.2f} "
            f"/ {cpu['machine']:.2f} | {cpu['steal']:.2f} |"
        )
    lines += [
        "",
        "Idle before: cores busy on the machine in the half second before the run, while "
        "this benchmark was idle (each run waits up to "
        f"{o['quiet_wait_s']:g} s, {o['quiet_budget_s']:g} s in all, for it to drop to "
        f"{o['quiet_cores']:g}). CPU cores: "
        "average cores busy during the measured part, for this process, the server, "
        "PostgreSQL (every backend, other databases' too) and the whole machine; machine "
        "well above the sum of the others means something else was running (noise).",
    ]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    explain: dict[str, list[dict[str, Any]]] = {}
    code_before = code_state()
    with (
        tempfile.TemporaryDirectory(prefix="boxoffice-bench-slots-") as tmp,
        fresh_database(opts.pg_url) as db_url,
        migrated_database(db_url) as database,
    ):
        with connected_engine(db_url) as admin:
            machine = machine_info(admin, workers=opts.workers)
        fx = seed(database, opts, datetime.now(UTC))
        log(
            f"seeded in {fx.seed_seconds:.1f} s: "
            + ", ".join(
                f"N={n}: {p.in_window['sessions']} sessions in window"
                for n, p in fx.providers.items()
            )
        )
        for n in opts.sizes:
            explain[str(n)] = explain_search(database, fx, n)
            sessions = next(p for p in explain[str(n)] if p["label"] == "sessions")
            log(
                f"EXPLAIN N={n}: sessions query {', '.join(sessions['custom_indexes'])} "
                f"({sessions['custom_ms']:.2f} ms); generic plan "
                f"{', '.join(sessions['generic_indexes'])} ({sessions['generic_ms']:.2f} ms)"
            )
        server = Server(
            db_url,
            port=0,
            workers=opts.workers,
            workdir=Path(tmp),
            extra_args=["--no-worker"],
            extra_env={"BOXOFFICE_SECRET_KEY": "bench-" + uuid.uuid4().hex},
        )
        with serving(server):
            try:
                inproc, http, profile = run_searches(database, server, fx, opts)
            finally:
                gc.unfreeze()

    code = {"before": code_before, "after": code_state()}
    if code["after"] != code_before:
        log("warning: boxoffice/ changed during the run")
    summary = summarise(inproc, http, fx)
    fixture = asdict(fx)
    fixture["providers"] = {str(n): p for n, p in fixture["providers"].items()}
    return {
        **report_header("slots-postgresql", machine, opts),
        "code": code,
        "fixture": fixture,
        "summary": summary,
        "targets": targets(summary, explain),
        "explain": explain,
        "profile": profile,
        "inprocess_runs": [asdict(r) for r in inproc],
        "http_runs": [asdict(h) for h in http],
    }


def run_searches(
    database: Database, server: Server, fx: Fixture, opts: Options
) -> tuple[list[InProcessResult], list[HttpResult], dict[str, Any] | None]:
    """Every in-process and HTTP run, interleaved over N, then (unless ``--no-profile``)
    the profile; the server is up. Leaves the garbage collector frozen."""
    inproc: list[InProcessResult] = []
    http: list[HttpResult] = []
    for n in opts.sizes:
        status, body = http_call(HOST, server.port, "GET", slots_path(fx, n))
        if status != 200:
            raise RuntimeError(f"GET slots for N={n}: {status} {body}")
        warm_server(server, slots_path(fx, n), opts)
    gc.collect()
    gc.freeze()  # like the server after start-up: the seeding's objects stay out
    client_counts = [1] + ([opts.clients] if opts.clients > 1 else [])
    gate = QuietGate(
        wait_s=opts.quiet_wait_s, budget_s=opts.quiet_budget_s, quiet_cores=opts.quiet_cores
    )
    for repeat in range(opts.repeats):
        for n in opts.sizes:
            r = measure_inprocess(database, fx, n, opts, repeat, gate.wait())
            inproc.append(r)
            log(
                f"in-process N={n:<6} #{repeat + 1}: {r.slots} slots, search p50 "
                f"{r.search['p50_ms']:.2f} p99 {r.search['p99_ms']:.2f} ms "
                f"(CPU p50 {r.search_cpu['p50_ms']:.2f}), "
                f"SQL p50 {r.sql_total['p50_ms']:.2f} ms, facts p50 "
                f"{r.phases['provider_facts']['p50_ms']:.2f} ms, engine p50 "
                f"{r.engine['p50_ms']:.2f} ms (machine {r.cpu_cores['machine']:.2f} "
                "cores)"
            )
        for n in opts.sizes:
            for clients in client_counts:
                h = measure_http(
                    server,
                    slots_path(fx, n),
                    n=n,
                    clients=clients,
                    opts=opts,
                    repeat=repeat,
                    idle_load=gate.wait(),
                )
                http.append(h)
                log(
                    f"HTTP N={n:<6} c={clients} #{repeat + 1}: {h.requests} req "
                    f"{h.requests_per_s:.0f}/s p50 {h.latency['p50_ms']:.2f} p99 "
                    f"{h.latency['p99_ms']:.2f} ms {h.response_bytes} bytes "
                    f"status {h.status} cpu server {h.cpu_cores['server']:.2f} "
                    f"pg {h.cpu_cores['postgres']:.2f} machine "
                    f"{h.cpu_cores['machine']:.2f}"
                )
    profile = profile_search(database, fx, max(opts.sizes), opts.calls) if opts.profile else None
    return inproc, http, profile


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_benchmark(lambda: run(opts), opts.out, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
