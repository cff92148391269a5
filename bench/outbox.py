#!/usr/bin/env python
"""Outbox benchmark on PostgreSQL: delivery throughput and the booking path's added cost.

What it does, in order:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens) and
   migrates it with ``boxoffice.db.migrate.upgrade``;
2. **throughput**: writes ``--rows`` email rows with ``boxoffice.services.outbox.enqueue``
   (payloads shaped like the ones ``booking_events.fan_out`` writes, ``--stream-rows``
   rows per stream, i.e. per booking), keeps a copy, and for every run reloads the
   outbox from that copy, starts 1 or 2 ``boxoffice.worker.dispatcher.Worker`` processes
   (multiprocessing "spawn", each with its own ``Database``) delivering to no-op adapters,
   releases them together and stops them once nothing is pending. Two delivery paths:

   - ``email``: the real email path, each row rendered (Jinja2 text and HTML, the .ics
     invite) by ``integrations.mail.messages.render`` before the no-op ``mailer.send``;
   - ``no-op``: the same rows with ``render`` replaced, in the worker processes, by a stub
     that builds an empty ``Email``: what is left is the outbox itself (claim, deliver
     to a no-op, mark delivered).

   After each run: every row delivered (``delivered_at`` set, claimed exactly once,
   nothing failed or dead), ``mailer.send`` called exactly once per row across processes
   (counted by Message-ID, which is derived from the dedupe key), and rows of a stream
   delivered in ``id`` order;
3. **booking transaction**: ``services.bookings.create_booking`` in-process, one client,
   each booking its own write transaction on a fresh timeslot, alternating booking by
   booking between the real ``bookings.event_row`` (the outbox row, written with the status
   history in one statement on PostgreSQL) and a
   no-op monkeypatched in its place; per-booking wall time, medians, the ratio;
4. writes ``bench/results/outbox-postgresql.{json,md}`` (``-quick`` with ``--quick``).

Optionally (``--profile-dir``) one more 1-worker run per path under cProfile, kept out
of the results, with a summary by package and by function.

Run ``python bench/outbox.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import cProfile
import gc
import io
import itertools
import logging
import multiprocessing
import pstats
import random
import sys
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness import cli, log
from harness.cpu import CpuMeter, machine_busy_cores, postgres_pids
from harness.database import (
    PASSWORD,
    connected_engine,
    fresh_database,
    migrated_database,
    seat_audit,
    select_count,
)
from harness.report import (
    exit_on_sigterm,
    machine_info,
    machine_lines,
    report_header,
    run_benchmark,
    targets_lines,
)
from harness.stats import latency_summary, median, own_time_by_area
from sqlalchemy import Engine, select, text

from boxoffice.db.models import Session
from boxoffice.db.session import Database, make_engine
from boxoffice.integrations.mail import messages
from boxoffice.integrations.mail.messages import KINDS
from boxoffice.integrations.payments.offline import OfflineGateway
from boxoffice.services import auth, outbox, rooms, timeslots
from boxoffice.services import bookings as booking_service
from boxoffice.services.organizations import create_organization
from boxoffice.services.outbox import Topic
from boxoffice.services.ports import Adapters, CalendarAccess, CalendarEvent, Email
from boxoffice.settings import Settings
from boxoffice.worker import dispatcher

PUBLIC_URL = "http://127.0.0.1:8000"
MAIL_FROM = "Box Office <bookings@boxoffice.invalid>"
SECRET = "bench-secret-key-not-for-production"
PATHS = ("email", "no-op")
TARGET_ROWS_PER_S = 1000.0
TARGET_OVERHEAD = 0.10
# The follow-up rows of a stream (a booking) after its confirmation, round robin.
FOLLOW_UPS = ("booking_reminder", "booking_cancelled", "booking_rescheduled")
EVENT_OF_KIND = {
    "booking_confirmed": "booking.confirmed",
    "booking_reminder": "booking.reminder",
    "booking_cancelled": "booking.cancelled",
    "booking_rescheduled": "booking.rescheduled",
}
# The booking A/B: rooms of one-seat, 15-minute timeslots 06:00-22:00 UTC.
BOOKING_ROOMS = 16
SLOTS_PER_ROOM_DAY = 64


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    pg_url: str
    rows: int
    stream_rows: int
    workers: tuple[int, ...]
    batch: int
    poll_s: float
    repeats: int
    bookings: int
    booking_warmup: int
    run_timeout_s: float
    only: str
    same_timestamp: bool
    seed: int
    out: Path
    profile_dir: Path | None
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = cli.new_parser(
        "Benchmark outbox delivery and the booking path's outbox write on PostgreSQL."
    )
    p.add_argument("--rows", type=int, default=20_000, help="Outbox rows per throughput run")
    p.add_argument("--stream-rows", type=int, default=2, help="Rows per stream (per booking)")
    p.add_argument("--workers", default="1,2", help="Worker processes, comma-separated")
    p.add_argument("--batch", type=int, default=50, help="Settings.worker_batch")
    p.add_argument(
        "--poll",
        type=float,
        default=0.05,
        help="Settings.worker_poll_s: the wait after a short batch (default setting: 1 s)",
    )
    p.add_argument("--repeats", type=int, default=3, help="Runs per figure; medians reported")
    p.add_argument(
        "--bookings", type=int, default=2000, help="Bookings per variant per booking run"
    )
    p.add_argument(
        "--booking-warmup", type=int, default=200, help="Unmeasured bookings before the runs"
    )
    p.add_argument(
        "--run-timeout", type=float, default=180.0, help="Give up on a throughput run after"
    )
    p.add_argument(
        "--only",
        choices=("all", "throughput", "booking"),
        default="all",
        help="Run one part only (diagnostics; results go to a '-<part>' file)",
    )
    p.add_argument(
        "--same-timestamp",
        action="store_true",
        help="Diagnostic: give every row the same next_attempt_at, as one transaction "
        "enqueuing them all would (results go to a '-same-timestamp' file)",
    )
    p.add_argument("--seed", type=int, default=1, help="Seed of the payload mix")
    cli.add_out_option(p, "bench/results/outbox-postgresql, with -quick appended for --quick")
    p.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="After the measured runs, one extra 1-worker run per path under cProfile "
        "(kept out of the results): .prof files and summary.txt",
    )
    cli.add_quick_option(p, "1 repeat, 4,000 rows, 300 bookings per variant")
    a = p.parse_args(argv)
    workers = cli.int_list(a.workers)
    if not workers or min(workers) < 1:
        p.error("--workers needs positive integers")
    if a.quick:
        a.rows, a.repeats = min(a.rows, 4000), 1
        a.bookings, a.booking_warmup = min(a.bookings, 300), min(a.booking_warmup, 50)
    cli.require_at_least_one(p, a, ("rows", "stream_rows", "batch", "repeats", "bookings"))
    if a.poll < 0 or a.run_timeout <= 0 or a.booking_warmup < 0:
        p.error("--poll and --booking-warmup must not be negative, --run-timeout positive")
    stem = "outbox-postgresql" + ("" if a.only == "all" else f"-{a.only}")
    stem += "-same-timestamp" if a.same_timestamp else ""
    stem += "-quick" if a.quick else ""
    return cli.options_from(
        Options,
        a,
        workers=workers,
        poll_s=a.poll,
        run_timeout_s=a.run_timeout,
        out=cli.results_path(a.out, stem),
    )


# --- the rows -----------------------------------------------------------------------------


def email_payload(rng: random.Random, booking_id: uuid.UUID, kind: str, start: datetime) -> dict:
    """An email row's payload as ``booking_events._email_payload`` writes it."""
    paid = rng.random() < 0.3
    return {
        "kind": kind,
        "bookingId": str(booking_id),
        "to": f"customer{rng.randrange(10_000)}@bench.example",
        "customerName": rng.choice(["Ada Lovelace", "Grace Hopper", "Alan Turing", None]),
        "orgName": "Bench Rooms",
        "orgTimezone": "Europe/Berlin",
        "customerTimezone": rng.choice([None, None, None, "America/New_York"]),
        "title": f"Meeting room {rng.randrange(1, 33)}",
        "startAt": start.isoformat(),
        "endAt": (start + timedelta(minutes=60)).isoformat(),
        "location": f"Meeting room {rng.randrange(1, 33)}",
        "sequence": 1 if kind == "booking_rescheduled" else 0,
        "priceMinor": 2500 if paid else 0,
        "currency": "EUR",
        "refundMinor": 2500 if paid and kind == "booking_cancelled" else 0,
        "previousStartAt": (
            (start - timedelta(days=1)).isoformat() if kind == "booking_rescheduled" else None
        ),
        "manageUrl": f"{PUBLIC_URL}/api/v1/bookings/{booking_id}",
    }


@dataclass(frozen=True)
class Row:
    stream: str
    dedupe_key: str
    payload: dict[str, Any]
    stream_index: int


def email_rows(count: int, stream_rows: int, seed: int) -> Iterator[Row]:
    """The benchmark's email rows, stream by stream: a confirmation, then follow-ups.

    Kinds: half ``booking_confirmed`` (with 2 rows per stream), the rest reminders,
    cancellations and reschedules in turn; all but the reminders carry an .ics invite.
    """
    rng = random.Random(seed)
    base = (datetime.now(UTC) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    made = streams = 0
    while made < count:
        booking_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        start = base + timedelta(hours=rng.randrange(24 * 30))
        kinds = ["booking_confirmed"]
        kinds += [FOLLOW_UPS[(streams + i) % len(FOLLOW_UPS)] for i in range(stream_rows - 1)]
        for kind in kinds[: count - made]:
            key = f"email::{uuid.UUID(int=rng.getrandbits(128), version=4)}:{EVENT_OF_KIND[kind]}"
            payload = email_payload(rng, booking_id, kind, start)
            yield Row(f"email:{booking_id}", key, payload, streams)
            made += 1
        streams += 1


def enqueue_rows(database: Database, org_id: uuid.UUID, opts: Options) -> dict[str, Any]:
    """``opts.rows`` email rows through ``outbox.enqueue``, 1,000 per transaction.

    Returns the dedupe keys (in id order) and the enqueue rate.
    """
    # As if written over the last minutes, one booking change after another: distinct
    # created_at / next_attempt_at, all due by the time the workers start.
    first = datetime.now(UTC) - timedelta(minutes=5, milliseconds=opts.rows)
    keys: list[str] = []
    streams = 0
    rows = email_rows(opts.rows, opts.stream_rows, opts.seed)
    started = time.perf_counter()
    while len(keys) < opts.rows:
        with database.write() as db:
            for row in itertools.islice(rows, 1000):
                inserted = outbox.enqueue(
                    db,
                    org_id=org_id,
                    topic=Topic.EMAIL,
                    stream=row.stream,
                    dedupe_key=row.dedupe_key,
                    payload=row.payload,
                    now=first + timedelta(milliseconds=0 if opts.same_timestamp else len(keys)),
                )
                if not inserted:
                    raise RuntimeError(f"dedupe key {row.dedupe_key} written twice")
                keys.append(row.dedupe_key)
                streams = row.stream_index + 1
    elapsed = time.perf_counter() - started
    return {
        "keys": keys,
        "streams": streams,
        "enqueue_seconds": round(elapsed, 2),
        "enqueue_rows_per_s": round(len(keys) / elapsed, 1),
    }


class _NoTemplates:
    def get_template(self, _name: str) -> Any:
        return SimpleNamespace(render=lambda _context: "")


def render_breakdown(opts: Options, samples: int = 600, repeats: int = 5) -> dict[str, float]:
    """Microseconds per ``render`` of the rows' mix, in this process (one core, no
    database): whole; with the .ics invite stubbed; with the Jinja2 templates stubbed too.
    Median of ``repeats`` passes over ``samples`` payloads."""
    payloads = [r.payload for r in email_rows(samples, opts.stream_rows, opts.seed)]
    stamp = datetime.now(UTC)

    def per_render() -> float:
        passes = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i, payload in enumerate(payloads):
                messages.render(
                    payload,
                    message_id=f"{i}@boxoffice",
                    public_url=PUBLIC_URL,
                    organizer_email=MAIL_FROM,
                    stamp=stamp,
                )
            passes.append((time.perf_counter() - t0) / len(payloads) * 1e6)
        return median(passes)

    invite, environment = messages.ics.invite, messages._environment
    per_render()  # warm-up: templates compiled
    whole = per_render()
    try:
        messages.ics.invite = lambda *_, **__: b""  # type: ignore[assignment]
        without_ics = per_render()
        messages._environment = _NoTemplates  # type: ignore[assignment]
        neither = per_render()
    finally:
        messages.ics.invite, messages._environment = invite, environment
    return {
        "render_us": round(whole, 1),
        "ics_invite_us": round(whole - without_ics, 1),
        "jinja2_templates_us": round(without_ics - neither, 1),
        "rest_us": round(neither, 1),
        "with_invite_share": round(
            sum(KINDS[p["kind"]].method is not None for p in payloads) / len(payloads), 3
        ),
    }


def reload_outbox(engine: Engine) -> None:
    """The outbox as ``enqueue`` left it: every row pending, never attempted."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE outbox"))
        conn.execute(text("INSERT INTO outbox SELECT * FROM bench_outbox_seed ORDER BY id"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE outbox"))


# --- the worker processes -----------------------------------------------------------------


class CountingMailer:
    """A no-op mailer that counts the messages it is handed, by Message-ID."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def send(self, email: Email) -> None:
        self.sent[email.message_id] += 1


class NoCalendar:
    def put_event(self, access: CalendarAccess, event: CalendarEvent) -> None:
        raise AssertionError("no calendar rows in this benchmark")

    def delete_event(self, access: CalendarAccess, uid: str) -> None:
        raise AssertionError("no calendar rows in this benchmark")

    def busy_times(self, access: CalendarAccess, start_at: datetime, end_at: datetime) -> list:
        return []


class NoWebhooks:
    def send(self, message: Any) -> None:
        raise AssertionError("no webhook rows in this benchmark")


def stub_render(payload: Any, *, message_id: str, **_: Any) -> Email:
    """The no-op path's stand-in for the Jinja2 rendering: an empty message."""
    return Email(to=payload["to"], subject="", text="", html="", message_id=message_id)


class Probe:
    """Where a worker's time goes, from wrappers around its transactions and deliveries.

    Per write transaction (begin to commit), attributed to the claim or the mark by the
    outbox function called in it; per row, ``Worker._deliver`` (render + send).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.phase: str | None = None
        self.claimed = 0
        self.batches = 0
        self.empty_claims = 0
        self.seconds: dict[str, float] = defaultdict(float)
        self.last_mark_end = 0.0
        self.first_claim_start = 0.0


class ProbedDatabase(Database):
    probe: Probe

    @contextmanager
    def write(self) -> Iterator[Any]:
        self.probe.phase = None
        started = time.monotonic()
        with super().write() as db:
            yield db
        ended = time.monotonic()
        phase = self.probe.phase or "other_txn"
        self.probe.seconds[phase] += ended - started
        if phase == "claim" and not self.probe.first_claim_start:
            self.probe.first_claim_start = started
        if phase == "mark":
            self.probe.last_mark_end = ended


def install_probes(probe: Probe, worker: dispatcher.Worker) -> None:
    """Wrap what the dispatcher calls through module attributes (no source changes)."""
    claim_due, mark_delivered, deliver = outbox.claim_due, outbox.mark_delivered, worker._deliver

    def probed_claim_due(db: Any, **kwargs: Any) -> list[outbox.Claimed]:
        rows = claim_due(db, **kwargs)
        probe.phase = "claim"
        probe.batches += 1
        probe.claimed += len(rows)
        probe.empty_claims += not rows
        return rows

    def probed_mark_delivered(db: Any, ids: list[int], **kwargs: Any) -> None:
        mark_delivered(db, ids, **kwargs)
        probe.phase = "mark"

    def probed_deliver(row: outbox.Claimed) -> None:
        started = time.monotonic()
        try:
            deliver(row)
        finally:
            probe.seconds["deliver"] += time.monotonic() - started

    outbox.claim_due = probed_claim_due  # type: ignore[assignment]
    outbox.mark_delivered = probed_mark_delivered  # type: ignore[assignment]
    worker._deliver = probed_deliver  # type: ignore[method-assign]


WARM_PAYLOADS = [
    email_payload(random.Random(i), uuid.UUID(int=i + 1), kind, datetime(2030, 3, 5, 9, tzinfo=UTC))
    for i, kind in enumerate(EVENT_OF_KIND)
]


def worker_process(
    index: int,
    db_url: str,
    path: str,
    opts: Options,
    ready: Any,
    start: Any,
    stop: Any,
    results: Any,
    profile_to: str | None,
) -> None:
    """One delivering process: warm up, wait for ``start``, run ``Worker.run(stop)``."""
    try:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        if path == "no-op":
            dispatcher.render = stub_render  # type: ignore[assignment]
        settings = Settings(
            database_url=db_url,
            secret_key=SECRET,
            public_url=PUBLIC_URL,
            mail_from=MAIL_FROM,
            worker_batch=opts.batch,
            worker_poll_s=opts.poll_s,
        )
        database = ProbedDatabase(make_engine(db_url, pool_size=2))  # as `boxoffice worker`
        probe = database.probe = Probe()
        mailer = CountingMailer()
        worker = dispatcher.Worker(
            database,
            settings,
            Adapters(
                mailer=mailer,
                calendar=NoCalendar(),
                webhooks=NoWebhooks(),
                payments=OfflineGateway(database, PUBLIC_URL),
            ),
        )
        install_probes(probe, worker)
        # Warm-up: connections, compiled statements, templates; the periodic jobs' first run.
        worker.run_periodic(force=True)
        with database.write() as db:
            outbox.claim_due(db, now=datetime(2000, 1, 1, tzinfo=UTC), limit=1, lease_s=1)
            outbox.mark_delivered(db, [-1], now=datetime.now(UTC))
        for payload in WARM_PAYLOADS:
            dispatcher.render(
                payload,
                message_id="warm-up@boxoffice",
                public_url=PUBLIC_URL,
                organizer_email=MAIL_FROM,
                stamp=datetime.now(UTC),
            )
        probe.reset()
        gc.collect()
        ready.put(index)
        start.wait()
        cpu0 = time.process_time()
        profiler = cProfile.Profile() if profile_to else None
        if profiler:
            profiler.enable()
        worker.run(stop)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_to)
        cpu = time.process_time() - cpu0
        database.dispose()
        results.put(
            {
                "index": index,
                "claimed": probe.claimed,
                "batches": probe.batches,
                "empty_claims": probe.empty_claims,
                "seconds": dict(probe.seconds),
                "first_claim_start": probe.first_claim_start,
                "last_mark_end": probe.last_mark_end,
                "cpu_s": cpu,
                "sent": dict(mailer.sent),
            }
        )
    except BaseException:
        results.put({"index": index, "error": traceback.format_exc()})


# --- one throughput run -------------------------------------------------------------------


@dataclass
class ThroughputRun:
    path: str
    workers: int
    repeat: int
    rows: int
    seconds: float
    rows_per_s: float
    per_worker_rows: list[int]
    ms_per_row: dict[str, float]  # worker time per delivered row, summed over workers
    worker_cpu_ms_per_row: float
    cpu_cores: dict[str, float]
    checks: dict[str, int]
    profiled: bool = False


class Meter(CpuMeter):
    """Average cores busy over an interval: this process, the workers, PostgreSQL (its own
    processes and this database's backends), everything else, the machine, and steal."""

    def __init__(self, worker_pids: Sequence[int], dbname: str) -> None:
        pids = list(worker_pids)
        groups = {"workers": lambda: pids, "postgres": lambda: postgres_pids(dbname)}
        super().__init__("bench", groups)

    def stop(self) -> dict[str, float]:
        cores = super().stop()
        others = cores["machine"] - cores["bench"] - cores["workers"] - cores["postgres"]
        cores["others"] = max(0.0, others)
        return {k: round(v, 2) for k, v in cores.items()}


def pending_count(engine: Engine) -> int:
    sql = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL"
    return select_count(engine, sql)


def audit(engine: Engine, keys: Sequence[str], sent: Counter[str]) -> dict[str, int]:
    """Every row delivered once: in the table, and as counted by the no-op mailers."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                text(
                    """
                    SELECT count(*) AS rows,
                           count(*) FILTER (WHERE delivered_at IS NULL) AS undelivered,
                           count(*) FILTER (WHERE attempts <> 1) AS claimed_not_once,
                           count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
                           count(*) FILTER (WHERE last_error IS NOT NULL) AS failed
                    FROM outbox
                    """
                )
            )
            .mappings()
            .one()
        )
        # A stream's rows must be delivered in id order: a later row never earlier.
        out_of_order = conn.execute(
            text(
                """
                SELECT count(*) FROM (
                    SELECT delivered_at < lag(delivered_at) OVER (
                               PARTITION BY stream ORDER BY id) AS early
                    FROM outbox
                ) AS t WHERE early
                """
            )
        ).scalar_one()
    expected = {dispatcher.message_id(k) for k in keys}
    checks = {k: int(v) for k, v in row.items()}
    checks["out_of_order"] = int(out_of_order)
    checks["sends"] = sum(sent.values())
    checks["duplicate_sends"] = sum(c - 1 for c in sent.values() if c > 1)
    checks["never_sent"] = len(expected - sent.keys())
    checks["unknown_sent"] = len(sent.keys() - expected)
    return checks


def checks_ok(checks: dict[str, int], rows: int) -> bool:
    bad = ("undelivered", "claimed_not_once", "dead", "failed", "out_of_order")
    return (
        checks["rows"] == rows
        and checks["sends"] == rows
        and all(checks[k] == 0 for k in bad)
        and checks["duplicate_sends"] == checks["never_sent"] == checks["unknown_sent"] == 0
    )


def throughput_run(
    db_url: str,
    engine: Engine,
    keys: Sequence[str],
    path: str,
    n_workers: int,
    repeat: int,
    opts: Options,
    profile_dir: Path | None = None,
) -> ThroughputRun:
    reload_outbox(engine)
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    start, stop = ctx.Event(), ctx.Event()
    procs = []
    for i in range(n_workers):
        profile_to = str(profile_dir / f"{path}-worker{i}.prof") if profile_dir else None
        args = (i, db_url, path, opts, ready, start, stop, results, profile_to)
        procs.append(ctx.Process(target=worker_process, args=args, daemon=True))
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            try:
                ready.get(timeout=60)
            except Exception:
                early = [] if results.empty() else [results.get()]
                raise RuntimeError(f"a worker did not start: {early}") from None
        meter = Meter([p.pid for p in procs if p.pid], engine.url.database or "")
        meter.start()
        t0 = time.monotonic()
        start.set()
        while pending_count(engine) > 0:
            if time.monotonic() - t0 > opts.run_timeout_s:
                raise RuntimeError(f"{path} x{n_workers}: rows left after {opts.run_timeout_s} s")
            if not all(p.is_alive() for p in procs):
                raise RuntimeError(f"a worker exited early: {results.get(timeout=5)}")
            time.sleep(0.25)
        cpu = meter.stop()
        stop.set()
        outs = sorted((results.get(timeout=60) for _ in procs), key=lambda r: r["index"])
        for proc in procs:
            proc.join(30)
    finally:
        stop.set()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError("worker failed:\n" + "\n".join(errors))
    elapsed = max(o["last_mark_end"] for o in outs) - t0
    sent: Counter[str] = Counter()
    for o in outs:
        sent.update(o["sent"])
    checks = audit(engine, keys, sent)
    if not checks_ok(checks, len(keys)):
        raise RuntimeError(f"{path} x{n_workers} run {repeat + 1}: audit failed: {checks}")
    rows = len(keys)
    per_row: dict[str, float] = defaultdict(float)
    for o in outs:
        for phase, seconds in o["seconds"].items():
            per_row[phase] += seconds * 1000 / rows
    busy = sum(per_row.values())
    per_row["idle"] = max(0.0, n_workers * elapsed * 1000 / rows - busy)
    return ThroughputRun(
        path=path,
        workers=n_workers,
        repeat=repeat,
        rows=rows,
        seconds=round(elapsed, 3),
        rows_per_s=round(rows / elapsed, 1),
        per_worker_rows=[o["claimed"] for o in outs],
        ms_per_row={k: round(v, 4) for k, v in sorted(per_row.items())},
        worker_cpu_ms_per_row=round(sum(o["cpu_s"] for o in outs) * 1000 / rows, 4),
        cpu_cores=cpu,
        checks=checks,
        profiled=profile_dir is not None,
    )


def describe_throughput(r: ThroughputRun) -> str:
    phases = ", ".join(f"{k} {v:.3f}" for k, v in r.ms_per_row.items())
    return (
        f"{r.path:<5} x{r.workers} #{r.repeat + 1}: {r.rows} rows in {r.seconds:.2f} s = "
        f"{r.rows_per_s:.0f} rows/s (per worker {r.per_worker_rows}); ms/row: {phases}; "
        f"cores: workers {r.cpu_cores['workers']:.2f}, pg {r.cpu_cores['postgres']:.2f}, "
        f"others {r.cpu_cores['others']:.2f}; "
        f"0 duplicates, all {r.checks['rows']} delivered once"
    )


# --- the booking transaction A/B -------------------------------------------------------------


def seed_bookings(database: Database, org_id: uuid.UUID, needed: int) -> tuple[uuid.UUID, list]:
    """A customer and ``needed`` one-seat free timeslots over BOOKING_ROOMS rooms."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    tomorrow = now.date() + timedelta(days=1)
    days = -(-needed // (BOOKING_ROOMS * SLOTS_PER_ROOM_DAY))
    with database.write() as db:
        user = auth.register_user(
            db, email="customer@bench.example", password=PASSWORD, name="Customer"
        )
        room_ids = []
        for i in range(BOOKING_ROOMS):
            room = rooms.create_room(
                db,
                org_id=org_id,
                name=f"Room {i}",
                capacity=4,
                room_type="meeting",
                hourly_rate_minor=0,
            )
            room_ids.append(room.id)
            timeslots.generate_timeslots(
                db,
                org_id=org_id,
                room_id=room.id,
                start_date=tomorrow,
                end_date=tomorrow + timedelta(days=days - 1),
                slot_min=15,
                day_start=dtime(6),
                day_end=dtime(22),
                weekdays=None,
                max_bookings=1,
                now=now,
            )
    with database.read() as db:
        slots = list(
            db.execute(
                select(Session.id)
                .where(Session.room_id.in_(room_ids))
                .order_by(Session.start_at, Session.room_id)
            ).scalars()
        )
    if len(slots) < needed:
        raise RuntimeError(f"seeded {len(slots)} timeslots, {needed} needed")
    log(f"seeded {len(slots)} timeslots in {time.perf_counter() - started:.1f} s")
    return user.id, slots


@dataclass
class BookingRun:
    repeat: int
    bookings_per_variant: int
    with_outbox: dict[str, float]  # latency summary (ms)
    without_outbox: dict[str, float]
    cpu_ms_with: float  # in-process CPU per booking (this Python process only)
    cpu_ms_without: float
    ratio_p50: float
    cpu_cores: dict[str, float]  # bench process (the service layer) / pg / others


def booking_ab(
    database: Database, engine: Engine, user_id: uuid.UUID, slots: list, opts: Options
) -> tuple[list[BookingRun], dict[str, int]]:
    """Alternate bookings with and without their outbox row, booking by booking; the order
    flips every run. Without: ``bookings.event_row`` returns None, so ``_record`` writes
    the status-history row alone (one INSERT instead of one INSERT ... WITH)."""
    real_record = booking_service.event_row

    def no_record(*_: Any, **__: Any) -> None:
        return None

    free = iter(slots)
    recorded = 0

    def book(with_outbox: bool) -> tuple[float, float]:
        nonlocal recorded
        booking_service.event_row = real_record if with_outbox else no_record  # type: ignore[assignment]
        timeslot_id = next(free)
        cpu0, t0 = time.process_time(), time.perf_counter()
        with database.write() as db:
            booking_service.create_booking(
                db,
                user_id=user_id,
                timeslot_id=timeslot_id,
                room_id=None,
                notes="",
                idempotency_key=None,
                now=datetime.now(UTC),
            )
        recorded += with_outbox
        return time.perf_counter() - t0, time.process_time() - cpu0

    try:
        for i in range(opts.booking_warmup):
            book(i % 2 == 0)
        gc.collect()
        gc.freeze()  # as the server does after start-up
        runs = []
        for repeat in range(opts.repeats):
            times: dict[bool, list[float]] = {True: [], False: []}
            cpu: dict[bool, float] = {True: 0.0, False: 0.0}
            meter = Meter([], engine.url.database or "")
            meter.start()
            for i in range(2 * opts.bookings):
                variant = (i + repeat) % 2 == 0
                wall, used = book(variant)
                times[variant].append(wall)
                cpu[variant] += used
            with_s, without_s = latency_summary(times[True]), latency_summary(times[False])
            run = BookingRun(
                repeat=repeat,
                bookings_per_variant=opts.bookings,
                with_outbox={k: round(v, 4) for k, v in with_s.items()},
                without_outbox={k: round(v, 4) for k, v in without_s.items()},
                cpu_ms_with=round(cpu[True] * 1000 / opts.bookings, 4),
                cpu_ms_without=round(cpu[False] * 1000 / opts.bookings, 4),
                ratio_p50=round(with_s["p50_ms"] / without_s["p50_ms"], 4),
                cpu_cores=meter.stop(),
            )
            runs.append(run)
            log(
                f"booking #{repeat + 1}: p50 {with_s['p50_ms']:.3f} ms with the outbox row, "
                f"{without_s['p50_ms']:.3f} ms without (x{run.ratio_p50:.3f}); in-process CPU "
                f"{run.cpu_ms_with:.3f} / {run.cpu_ms_without:.3f} ms; cores: pg "
                f"{run.cpu_cores['postgres']:.2f}, others {run.cpu_cores['others']:.2f}"
            )
    finally:
        booking_service.event_row = real_record
        gc.unfreeze()
    total = opts.booking_warmup + 2 * opts.bookings * opts.repeats
    checks = {
        "bookings": select_count(engine, "SELECT count(*) FROM bookings"),
        "expected_bookings": total,
        "event_rows": select_count(engine, "SELECT count(*) FROM outbox WHERE topic = 'event'"),
        "expected_event_rows": recorded,
        **{f"seat_{k}": v for k, v in seat_audit(engine).items()},
    }
    if (
        checks["bookings"] != total
        or checks["event_rows"] != recorded
        or checks["seat_overbooked_seats"]
        or checks["seat_mismatched"]
    ):
        raise RuntimeError(f"booking audit failed: {checks}")
    return runs, checks


# --- profile ------------------------------------------------------------------------------


def area(filename: str, _function: str) -> str:
    for marker, name in (
        ("icalendar", "icalendar (the .ics invite)"),
        ("jinja2", "jinja2"),
        ("markupsafe", "jinja2"),
        ("boxoffice/integrations/mail", "boxoffice mail render"),
        ("boxoffice/integrations/calendar", "boxoffice .ics"),
        ("sqlalchemy", "sqlalchemy"),
        ("psycopg", "psycopg"),
        ("boxoffice", "boxoffice (other)"),
        ("bench/", "bench probes"),
        ("json", "json"),
        ("zoneinfo", "zoneinfo"),
        ("email", "stdlib email"),
        ("threading", "threading"),
    ):
        if marker in filename:
            return name
    return "builtins / other" if filename == "~" else "stdlib (other)"


def profile_summary(paths: Sequence[Path], rows: int, top: int = 30) -> str:
    out = io.StringIO()
    for prof in paths:
        stats = pstats.Stats(str(prof), stream=out)
        total = stats.total_tt  # type: ignore[attr-defined]
        by_area = own_time_by_area(stats, area)
        out.write(f"=== {prof.name}: {total:.2f} s profiled, {total * 1000 / rows:.3f} ms/row\n")
        out.write("own time by area (wall; waits on PostgreSQL are in builtins):\n")
        for name, tt in by_area.most_common():
            out.write(f"  {tt / total:6.1%}  {tt * 1000 / rows:7.3f} ms/row  {name}\n")
        out.write("\n")
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def profile_runs(
    db_url: str, engine: Engine, keys: Sequence[str], opts: Options, directory: Path
) -> list[ThroughputRun]:
    directory.mkdir(parents=True, exist_ok=True)
    runs = []
    for path in PATHS:
        run = throughput_run(db_url, engine, keys, path, 1, opts.repeats, opts, directory)
        log("profiled: " + describe_throughput(run))
        runs.append(run)
    profs = [directory / f"{p}-worker0.prof" for p in PATHS]
    summary = directory / "summary.txt"
    summary.write_text(profile_summary(profs, len(keys)))
    log(f"wrote {summary}")
    return runs


# --- report -------------------------------------------------------------------------------


def summarise_throughput(runs: Sequence[ThroughputRun]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int], list[ThroughputRun]] = defaultdict(list)
    for r in runs:
        groups[(r.path, r.workers)].append(r)
    summary = []
    for (path, workers), rs in groups.items():
        phases = sorted({k for r in rs for k in r.ms_per_row})
        summary.append(
            {
                "path": path,
                "workers": workers,
                "rows": rs[0].rows,
                "rows_per_s": median([r.rows_per_s for r in rs]),
                "runs_rows_per_s": [r.rows_per_s for r in rs],
                "ms_per_row": {
                    k: round(median([r.ms_per_row.get(k, 0) for r in rs]), 4) for k in phases
                },
                "worker_cpu_ms_per_row": median([r.worker_cpu_ms_per_row for r in rs]),
                "cpu_cores": {
                    k: round(median([r.cpu_cores[k] for r in rs]), 2) for k in rs[0].cpu_cores
                },
                "duplicates": sum(r.checks["duplicate_sends"] for r in rs),
                "undelivered": sum(r.checks["undelivered"] + r.checks["never_sent"] for r in rs),
                "out_of_order": sum(r.checks["out_of_order"] for r in rs),
            }
        )
    return summary


def summarise_booking(runs: Sequence[BookingRun]) -> dict[str, Any]:
    if not runs:
        return {}
    with_p50 = median([r.with_outbox["p50_ms"] for r in runs])
    without_p50 = median([r.without_outbox["p50_ms"] for r in runs])
    return {
        "p50_ms_with": round(with_p50, 4),
        "p50_ms_without": round(without_p50, 4),
        "p90_ms_with": round(median([r.with_outbox["p90_ms"] for r in runs]), 4),
        "p90_ms_without": round(median([r.without_outbox["p90_ms"] for r in runs]), 4),
        "mean_ms_with": round(median([r.with_outbox["mean_ms"] for r in runs]), 4),
        "mean_ms_without": round(median([r.without_outbox["mean_ms"] for r in runs]), 4),
        "cpu_ms_with": round(median([r.cpu_ms_with for r in runs]), 4),
        "cpu_ms_without": round(median([r.cpu_ms_without for r in runs]), 4),
        "ratio_p50": round(median([r.ratio_p50 for r in runs]), 4),
        "runs_ratio_p50": [r.ratio_p50 for r in runs],
        "added_ms_p50": round(
            median([r.with_outbox["p50_ms"] - r.without_outbox["p50_ms"] for r in runs]), 4
        ),
        "cpu_ratio": round(median([r.cpu_ms_with / r.cpu_ms_without for r in runs]), 4),
    }


def targets(
    throughput: list[dict[str, Any]], booking: dict[str, Any], runs: Sequence[ThroughputRun]
) -> list[dict[str, Any]]:
    checks = []
    for row in throughput:
        if row["workers"] != 1:
            continue
        runs_text = ", ".join(f"{x:.0f}" for x in row["runs_rows_per_s"])
        checks.append(
            {
                "target": f">= {TARGET_ROWS_PER_S:,.0f} rows/s, 1 worker, {row['path']} path",
                "measured": f"{row['rows_per_s']:.0f} (runs: {runs_text})",
                "met": row["rows_per_s"] >= TARGET_ROWS_PER_S,
            }
        )
    if runs:
        dup = sum(r.checks["duplicate_sends"] for r in runs)
        lost = sum(r.checks["undelivered"] + r.checks["never_sent"] for r in runs)
        checks.append(
            {
                "target": "every row delivered exactly once (every run)",
                "measured": f"{dup} duplicates, {lost} undelivered in {len(runs)} runs",
                "met": dup == 0 and lost == 0,
            }
        )
    if booking:
        runs_text = ", ".join(f"{x:.3f}" for x in booking["runs_ratio_p50"])
        checks.append(
            {
                "target": f"booking p50 with outbox row < {1 + TARGET_OVERHEAD:.2f} x without",
                "measured": f"x{booking['ratio_p50']:.3f} (runs: {runs_text})",
                "met": booking["ratio_p50"] < 1 + TARGET_OVERHEAD,
            }
        )
    return checks


def render_markdown(report: dict[str, Any]) -> str:
    o = report["options"]
    lines = [
        "# Outbox benchmark: PostgreSQL",
        "",
        *machine_lines(report["machine"]),
        f"- Command: `{report['command']}`; {report.get('wall_seconds', '?')} s in all; "
        f"{report.get('background_cores_before', '?')} cores busy with other work just before",
        f"- {o['repeats']} run(s) per row, medians shown; workers, the benchmark and "
        "PostgreSQL share the machine",
    ]
    if report["throughput"]:
        seed = report["seed"]
        lines += [
            "",
            "## Outbox throughput (backlog drained by `Worker.run`, no-op adapters)",
            "",
            f"{o['rows']:,} email rows in {seed['streams']:,} streams ({o['stream_rows']} rows "
            f"per stream), written with `outbox.enqueue` ({seed['enqueue_rows_per_s']:,.0f} "
            f"rows/s, 1,000 per transaction) and reloaded before every run; batch "
            f"{o['batch']}, poll {o['poll_s']:g} s.",
            "",
            "| Path | Workers | Rows/s | Runs | ms/row: claim txn / deliver / mark txn / idle "
            "| Worker CPU ms/row | CPU cores: workers / pg / others / machine | Steal "
            "| Duplicates | Undelivered | Out of order |",
            "|---|--:|--:|---|---|--:|--:|--:|--:|--:|--:|",
        ]
        for row in report["throughput_summary"]:
            ph, cpu = row["ms_per_row"], row["cpu_cores"]
            runs_text = ", ".join(f"{x:.0f}" for x in row["runs_rows_per_s"])
            lines.append(
                f"| {row['path']} | {row['workers']} | **{row['rows_per_s']:.0f}** | {runs_text} "
                f"| {ph.get('claim', 0):.3f} / {ph.get('deliver', 0):.3f} / "
                f"{ph.get('mark', 0):.3f} / {ph.get('idle', 0):.3f} "
                f"| {row['worker_cpu_ms_per_row']:.3f} "
                f"| {cpu['workers']:.2f} / {cpu['postgres']:.2f} / {cpu['others']:.2f} "
                f"/ {cpu['machine']:.2f} "
                f"| {cpu['steal']:.2f} | {row['duplicates']} | {row['undelivered']} "
                f"| {row['out_of_order']} |"
            )
        lines += [
            "",
            "Paths: *email* renders every row (Jinja2 text and HTML, the .ics invite) before "
            "the no-op `mailer.send`; *no-op* replaces the rendering with an empty message, "
            "leaving the outbox's own work. ms/row: worker time per row summed over the "
            "workers (2 workers: up to 2x the wall time per row), from wrappers around the "
            "claim and mark transactions (begin to commit) and `Worker._deliver`; idle is the "
            "rest (polls after a short batch, the periodic jobs, the loop). CPU cores: "
            "average cores busy during the run; *others* is what the rest of the machine used "
            "(other processes: noise, see the runs' table). Checks after every "
            "run: `delivered_at` set and `attempts` = 1 on every row, no `last_error`, "
            "`mailer.send` called once per row across the processes (by Message-ID), rows of a "
            "stream delivered in id order.",
        ]
    rb = report["render_breakdown"]
    if rb:
        lines += [
            "",
            "### The email path's `render`, in-process (one core, no database)",
            "",
            "| Part | µs per row |",
            "|---|--:|",
            f"| `messages.render`, whole | {rb['render_us']:.0f} |",
            f"| the .ics invite (`ics.invite`, icalendar) | {rb['ics_invite_us']:.0f} |",
            f"| the Jinja2 text and HTML templates | {rb['jinja2_templates_us']:.0f} |",
            f"| the rest (payload checks, dates, money) | {rb['rest_us']:.0f} |",
            "",
            f"The same mix of kinds as the rows ({rb['with_invite_share']:.0%} with an invite); "
            "each part measured by stubbing the parts below it, median of 5 passes.",
        ]
    b = report["booking_summary"]
    if b:
        lines += [
            "",
            "## Booking transaction: with and without the outbox row",
            "",
            f"`create_booking` in-process, one write transaction per booking on a fresh "
            f"timeslot, {o['bookings']:,} bookings per variant per run, the variants "
            "alternating booking by booking (`bookings.event_row` real, or monkeypatched "
            "to a no-op).",
            "",
            "| Variant | p50 ms | p90 ms | mean ms | in-process CPU ms |",
            "|---|--:|--:|--:|--:|",
            f"| with the outbox row | {b['p50_ms_with']:.3f} | {b['p90_ms_with']:.3f} "
            f"| {b['mean_ms_with']:.3f} | {b['cpu_ms_with']:.3f} |",
            f"| without | {b['p50_ms_without']:.3f} | {b['p90_ms_without']:.3f} "
            f"| {b['mean_ms_without']:.3f} | {b['cpu_ms_without']:.3f} |",
            f"| **with / without** | **x{b['ratio_p50']:.3f}** (+{b['added_ms_p50']:.3f} ms) "
            f"| | | x{b['cpu_ratio']:.3f} |",
            "",
            "Medians over the runs: of each run's p50 (rows 1-2), of each run's ratio and "
            "difference of p50s (row 3). In-process CPU: this Python process only (the service "
            "layer, SQLAlchemy, psycopg), not PostgreSQL's work or the waits.",
        ]
    lines += targets_lines(report["targets"])
    if report["throughput_runs"]:
        lines += [
            "",
            "## Every throughput run",
            "",
            "| Path | Workers | Run | Seconds | Rows/s | Rows per worker "
            "| ms/row claim / deliver / mark / idle | Others / machine / steal cores |",
            "|---|--:|--:|--:|--:|---|---|--:|",
        ]
        for r in report["throughput_runs"]:
            ph = r["ms_per_row"]
            lines.append(
                f"| {r['path']} | {r['workers']} | {r['repeat'] + 1} | {r['seconds']:.2f} "
                f"| {r['rows_per_s']:.0f} | {'/'.join(map(str, r['per_worker_rows']))} "
                f"| {ph.get('claim', 0):.3f} / {ph.get('deliver', 0):.3f} / "
                f"{ph.get('mark', 0):.3f} / {ph.get('idle', 0):.3f} "
                f"| {r['cpu_cores']['others']:.2f} / {r['cpu_cores']['machine']:.2f} "
                f"/ {r['cpu_cores']['steal']:.2f} |"
            )
    if report["booking_runs"]:
        lines += [
            "",
            "## Every booking run",
            "",
            "| Run | p50 ms with / without | p90 ms with / without | CPU ms with / without "
            "| Ratio p50 | Others / machine cores |",
            "|--:|---|---|---|--:|--:|",
        ]
        for r in report["booking_runs"]:
            w, wo = r["with_outbox"], r["without_outbox"]
            lines.append(
                f"| {r['repeat'] + 1} | {w['p50_ms']:.3f} / {wo['p50_ms']:.3f} "
                f"| {w['p90_ms']:.3f} / {wo['p90_ms']:.3f} "
                f"| {r['cpu_ms_with']:.3f} / {r['cpu_ms_without']:.3f} | x{r['ratio_p50']:.3f} "
                f"| {r['cpu_cores']['others']:.2f} / {r['cpu_cores']['machine']:.2f} |"
            )
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    throughput_runs: list[ThroughputRun] = []
    booking_runs: list[BookingRun] = []
    booking_checks: dict[str, int] = {}
    profiled: list[ThroughputRun] = []
    seed_info: dict[str, Any] = {}
    breakdown: dict[str, float] = {}
    with (
        fresh_database(opts.pg_url) as db_url,
        migrated_database(db_url) as database,
        connected_engine(db_url, pool_size=2) as engine,
    ):
        machine = machine_info(engine, workers=list(opts.workers))
        with database.write() as db:
            org = create_organization(
                db, slug="bench", name="Bench Rooms", timezone="UTC", currency="EUR"
            )
            org_id = org.id
        if opts.only in ("all", "throughput"):
            seed_info = enqueue_rows(database, org_id, opts)
            keys = seed_info.pop("keys")
            log(
                f"enqueued {len(keys)} rows in {seed_info['streams']} streams: "
                f"{seed_info['enqueue_rows_per_s']:.0f} rows/s"
            )
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE bench_outbox_seed AS TABLE outbox"))
            breakdown = render_breakdown(opts)
            log(f"render, in-process: {breakdown}")
            for repeat in range(opts.repeats):
                for path in PATHS:
                    for n in opts.workers:
                        r = throughput_run(db_url, engine, keys, path, n, repeat, opts)
                        throughput_runs.append(r)
                        log(describe_throughput(r))
            if opts.profile_dir is not None:
                profiled = profile_runs(db_url, engine, keys, opts, opts.profile_dir)
            with engine.begin() as conn:  # the booking runs start from an empty outbox
                conn.execute(text("TRUNCATE outbox"))
        if opts.only in ("all", "booking"):
            needed = opts.booking_warmup + 2 * opts.bookings * opts.repeats
            user_id, slots = seed_bookings(database, org_id, needed)
            booking_runs, booking_checks = booking_ab(database, engine, user_id, slots, opts)
    throughput = summarise_throughput(throughput_runs)
    booking = summarise_booking(booking_runs)
    return {
        **report_header("outbox-postgresql", machine, opts),
        "seed": seed_info,
        "render_breakdown": breakdown,
        "throughput_summary": throughput,
        "throughput": bool(throughput_runs),
        "booking_summary": booking,
        "booking_checks": booking_checks,
        "targets": targets(throughput, booking, throughput_runs),
        "throughput_runs": [asdict(r) for r in throughput_runs],
        "booking_runs": [asdict(r) for r in booking_runs],
        "profiled_runs": [asdict(r) for r in profiled],
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    exit_on_sigterm()
    idle = round(machine_busy_cores(2.0), 2)  # other processes, while this one waits
    if idle > 0.25:
        log(
            f"warning: the machine is busy before the start ({idle:.2f} cores): figures will be low"
        )
    return run_benchmark(
        lambda: {**run(opts), "background_cores_before": idle}, opts.out, render_markdown
    )


if __name__ == "__main__":
    sys.exit(main())
