#!/usr/bin/env python
"""Ticket sales benchmark: one event, many buyers, on a real `boxoffice serve`, on PostgreSQL.

What it does:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens) and starts
   ``boxoffice serve --workers 2 --no-worker`` on it with a known instance secret (the
   event's signing key is stored encrypted with it) and the offline payment gateway;
2. seeds an organisation that takes payments and, per run, one published event with one
   ticket type and its signing key, and ``--clients`` buyers (accounts with access tokens
   issued directly: sign-in is not what is measured);
3. **throughput**: ``--clients`` buyers, one thread and one keep-alive connection each,
   released together, buy one ticket at a time (``POST /api/v1/tickets/purchase``, each
   with its own Idempotency-Key) for ``--seconds`` after a warm-up, in a closed loop. In
   the default mode the tickets are free, so each purchase is immediately successful: the
   ticket is active, its code signed and its email queued in the request's transaction.
   With ``--priced`` each ticket costs 20 EUR and the buyer pays at once at the offline
   gateway's checkout (``POST /pay/{ref}/succeed``): a sale is the two requests. Repeated
   ``--runs`` times, each on a fresh event; the median is reported;
4. **sell-out**: the same buyers against a quota of ``--sellout-quota`` until it is sold
   out: exactly that many purchases must succeed, the rest be refused with 409;
5. audits every event: the ticket type's ``sold_count``, the event's
   ``current_participants`` and the tickets holding a place are equal and within the
   quota and capacity; every ticket sold is active with its own code; one email per
   ticket;
6. writes ``bench/results/tickets-postgresql.{json,md}``.

Exit status 0 when every target is met, 1 when one is not.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import log
from harness.cli import add_out_option, new_parser, results_path
from harness.cpu import server_cpu_meter
from harness.database import connected_engine, fresh_database, migrated_database
from harness.report import machine_info, machine_lines, report_header, run_benchmark
from harness.server import Client, Server, serving
from sqlalchemy import Engine, text

from boxoffice.db.models import Event, TicketType, User
from boxoffice.db.session import Database
from boxoffice.services import auth, event_keys
from boxoffice.services.organizations import create_organization

TARGET_PER_S = 200.0


@dataclass(frozen=True)
class Options:
    pg_url: str
    clients: int
    seconds: float
    warmup_s: float
    runs: int
    sellout_quota: int
    priced: bool
    out: Path | None


def parse_args() -> Options:
    parser = new_parser(__doc__.splitlines()[1])
    parser.add_argument("--clients", type=int, default=64, help="Concurrent buyers")
    parser.add_argument("--seconds", type=float, default=15.0, help="Measured time per run")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="Unmeasured start of a run")
    parser.add_argument("--runs", type=int, default=3, help="Throughput runs (median reported)")
    parser.add_argument("--sellout-quota", type=int, default=2000, help="Quota of the sell-out")
    parser.add_argument("--priced", action="store_true", help="Paid at the offline checkout")
    add_out_option(parser, "bench/results/tickets-postgresql[-priced]")
    a = parser.parse_args()
    return Options(
        a.pg_url, a.clients, a.seconds, a.warmup_s, a.runs, a.sellout_quota, a.priced, a.out
    )


class Buyer(Client):
    def buy(self, event_id: str, *, priced: bool) -> tuple[str, float]:
        """One sale: the purchase (and with ``priced`` its payment); status, seconds."""
        body = json.dumps({"eventId": event_id, "ticketType": "standard", "quantity": 1})
        self.headers["Idempotency-Key"] = uuid.uuid4().hex
        started = time.perf_counter()
        assert self.conn is not None or self.connect() is None
        assert self.conn is not None
        self.conn.request("POST", "/api/v1/tickets/purchase", body.encode(), self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        status = str(resp.status)
        if priced and status == "201":
            url = json.loads(raw)["payment"]["checkoutUrl"]
            path = url[url.index("/pay/") :] + "/succeed"
            self.conn.request("POST", path, b"", self.headers)
            paid = self.conn.getresponse()
            paid.read()
            status = "201" if paid.status == 200 else f"pay-{paid.status}"
        return status, time.perf_counter() - started


def seed_org(database: Database) -> uuid.UUID:
    with database.write() as s:
        org = create_organization(
            s, slug="bench", name="Bench", timezone="UTC", currency="EUR", payments_enabled=True
        )
        s.execute(text("UPDATE organizations SET hold_min = 60 WHERE id = :id"), {"id": org.id})
        return org.id


def seed_event(
    database: Database, org_id: uuid.UUID, secret: str, *, quota: int, price_minor: int
) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    with database.write() as s:
        event = Event(
            org_id=org_id,
            name="Bench Live",
            description="",
            start_at=now + timedelta(days=7),
            end_at=now + timedelta(days=7, hours=3),
            timezone="UTC",
            location="Arena",
            max_participants=quota,
            current_participants=0,
            ticket_price_minor=price_minor,
            currency="EUR",
            status="published",
            metadata_={},
        )
        s.add(event)
        s.flush()
        s.add(
            TicketType(
                org_id=org_id,
                event_id=event.id,
                number=1,
                kind="standard",
                name="Standard",
                price_minor=price_minor,
                quota=quota,
                sold_count=0,
                max_per_order=10,
            )
        )
        event_keys.create_key(s, event, secret_key=secret, now=now)
        return str(event.id)


def seed_buyers(database: Database, secret: str, n: int) -> list[str]:
    now = datetime.now(UTC)
    users = [
        User(email=f"buyer{i}@bench.test", name=f"Buyer {i}", password_hash="x") for i in range(n)
    ]
    with database.write() as s:
        s.add_all(users)
        s.flush()
        return [auth.issue_token(u, secret=secret, now=now, ttl_s=86_400) for u in users]


def drive(
    server: Server, tokens: list[str], event_id: str, opts: Options, *, until_sold_out: bool
) -> dict[str, Any]:
    """All buyers at once, a closed loop; what happened in the measured window."""
    buyers = [Buyer(server.port, t, timeout_s=60) for t in tokens]
    meter = server_cpu_meter(server.worker_pids())
    cores: dict[str, float] = {}
    for b in buyers:
        b.connect()
    barrier = threading.Barrier(len(buyers) + 1)
    stop = threading.Event()
    records: list[list[tuple[float, str, float]]] = [[] for _ in buyers]

    def work(i: int) -> None:
        barrier.wait()
        while not stop.is_set():
            status, took = buyers[i].buy(event_id, priced=opts.priced)
            records[i].append((time.perf_counter(), status, took))
            if until_sold_out and status == "409":
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(buyers))]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    if until_sold_out:
        for t in threads:
            t.join()
        window = (started, time.perf_counter())
    else:
        time.sleep(opts.warmup_s)
        meter.start()
        time.sleep(opts.seconds)
        cores = {k: round(v, 2) for k, v in meter.stop().items()}
        window = (started + opts.warmup_s, started + opts.warmup_s + opts.seconds)
        stop.set()
        for t in threads:
            t.join()
    for b in buyers:
        b.close()
    everything = [r for rs in records for r in rs]
    measured = [r for r in everything if window[0] <= r[0] <= window[1]]
    statuses = Counter(s for _, s, _ in measured)
    latencies = sorted(took for _, s, took in measured if s == "201")
    seconds = window[1] - window[0]
    return {
        "seconds": round(seconds, 2),
        "statuses": dict(statuses),
        "all_statuses": dict(Counter(s for _, s, _ in everything)),
        "sold_per_s": round(statuses.get("201", 0) / seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "cores": cores,
    }


def audit(engine: Engine) -> dict[str, int]:
    """Counters against the tickets, over every event; all but ``tickets`` must be 0."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                text(
                    """
                SELECT
                  (SELECT count(*) FROM tickets) AS tickets,
                  (SELECT count(*) FROM ticket_types tt WHERE tt.sold_count <> (
                     SELECT count(*) FROM tickets t WHERE t.ticket_type_id = tt.id
                       AND t.status IN ('pending', 'active', 'used'))) AS type_mismatch,
                  (SELECT count(*) FROM events e WHERE e.current_participants <> (
                     SELECT count(*) FROM tickets t WHERE t.event_id = e.id
                       AND t.status IN ('pending', 'active', 'used'))) AS event_mismatch,
                  (SELECT count(*) FROM ticket_types WHERE sold_count > quota) AS oversold_types,
                  (SELECT count(*) FROM events
                    WHERE current_participants > max_participants) AS oversold_events,
                  (SELECT count(*) FROM tickets WHERE status <> 'active') AS not_active,
                  (SELECT count(*) FROM tickets WHERE code IS NULL) AS without_code,
                  (SELECT count(*) - count(DISTINCT code) FROM tickets) AS duplicate_codes,
                  (SELECT count(*) FROM tickets) - (SELECT count(*) FROM outbox
                    WHERE dedupe_key LIKE 'ticket:%:ticket_issued:%') AS missing_emails
                """
                )
            )
            .mappings()
            .one()
        )
    return {k: int(v) for k, v in row.items()}


def run(opts: Options) -> dict[str, Any]:
    secret = uuid.uuid4().hex
    price = 2000 if opts.priced else 0
    with (
        fresh_database(opts.pg_url) as db_url,
        migrated_database(db_url) as database,
        connected_engine(db_url) as engine,
        tempfile.TemporaryDirectory() as tmp,
    ):
        org_id = seed_org(database)
        tokens = seed_buyers(database, secret, opts.clients)
        server = Server(
            db_url,
            port=0,
            workers=2,
            workdir=Path(tmp),
            extra_args=["--no-worker"],
            extra_env={"BOXOFFICE_SECRET_KEY": secret},
        )
        runs = []
        with serving(server):
            for i in range(opts.runs):
                event_id = seed_event(database, org_id, secret, quota=10_000_000, price_minor=price)
                with engine.connect() as conn:
                    conn.execute(text("CHECKPOINT"))
                result = drive(server, tokens, event_id, opts, until_sold_out=False)
                log(f"run {i + 1}: {result['sold_per_s']} sold/s {result['statuses']}")
                runs.append(result)
            event_id = seed_event(
                database, org_id, secret, quota=opts.sellout_quota, price_minor=price
            )
            sellout = drive(server, tokens, event_id, opts, until_sold_out=True)
            log(f"sell-out: {sellout['all_statuses']}")
        checks = audit(engine)
        log(f"audit: {checks}")
        machine = machine_info(engine, workers=2)
    median = statistics.median(r["sold_per_s"] for r in runs)
    sold_out_ok = sellout["all_statuses"].get("201", 0) == opts.sellout_quota and set(
        sellout["all_statuses"]
    ) <= {"201", "409"}
    audit_ok = all(v == 0 for k, v in checks.items() if k != "tickets")
    return report_header("tickets", machine, opts) | {
        "mode": "priced, paid at the offline checkout" if opts.priced else "free tickets",
        "runs": runs,
        "median_sold_per_s": median,
        "median_p50_ms": statistics.median(r["p50_ms"] or 0 for r in runs),
        "median_p99_ms": statistics.median(r["p99_ms"] or 0 for r in runs),
        "sellout": sellout,
        "audit": checks,
        "targets": [
            {
                "target": f">= {TARGET_PER_S:.0f} tickets sold/s, {opts.clients} buyers, one event",
                "measured": f"{median:.1f}/s (median of {opts.runs})",
                "met": median >= TARGET_PER_S,
            },
            {
                "target": f"sell-out of {opts.sellout_quota}: exactly that many sold, rest 409",
                "measured": str(sellout["all_statuses"]),
                "met": sold_out_ok,
            },
            {
                "target": "nothing oversold, counters equal the tickets held, codes unique",
                "measured": ", ".join(f"{k}={v}" for k, v in checks.items()),
                "met": audit_ok,
            },
        ],
    }


def render_markdown(report: dict[str, Any]) -> str:
    o = report["options"]
    lines = [
        "# Ticket sales on PostgreSQL",
        "",
        f"`{report['command']}`",
        "",
        *machine_lines(report["machine"]),
        f"- `boxoffice serve --workers 2 --no-worker`, offline payment gateway; mode: "
        f"**{report['mode']}**; {o['clients']} buyers (one thread and keep-alive connection "
        f"each, closed loop, one ticket per purchase, each with its own Idempotency-Key); "
        f"{o['seconds']} s measured after {o['warmup_s']} s warm-up, {o['runs']} runs, each "
        "on a fresh event.",
        "- A sale: `POST /api/v1/tickets/purchase` answered 201"
        + (
            " and its payment at `POST /pay/{ref}/succeed` answered 200."
            if o["priced"]
            else " (a free ticket: active at once, code signed, email queued)."
        ),
        "",
        "## Throughput",
        "",
        "| Run | Sold/s | p50 ms | p99 ms | Statuses | Cores: server | PostgreSQL | buyers "
        "| machine |",
        "|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for i, r in enumerate(report["runs"], 1):
        c = r["cores"]
        lines.append(
            f"| {i} | {r['sold_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['statuses']} "
            f"| {c['server']} | {c['postgres']} | {c['client']} | {c['machine']} |"
        )
    lines += [
        f"| **median** | **{report['median_sold_per_s']}** | {report['median_p50_ms']} | "
        f"{report['median_p99_ms']} | | | | | |",
        "",
        "Cores: the average CPU cores busy in the measured window (the server's processes, "
        "every PostgreSQL process, the buyers' threads, the whole machine of 2).",
        "",
        "## Sell-out",
        "",
        f"Quota {o['sellout_quota']}, {o['clients']} buyers until refused: "
        f"{report['sellout']['all_statuses']} in {report['sellout']['seconds']} s.",
        "",
        "## Audit (all events)",
        "",
        ", ".join(f"{k}={v}" for k, v in report["audit"].items()),
        "",
        "## Targets",
        "",
        "| Target | Measured | Met |",
        "|---|--:|---|",
    ]
    for c in report["targets"]:
        lines.append(f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |")
    lines.append(f"\nWall time {report.get('wall_seconds', '?')} s.")
    return "\n".join(lines) + "\n"


def main() -> int:
    opts = parse_args()
    stem = "tickets-postgresql" + ("-priced" if opts.priced else "")
    return run_benchmark(lambda: run(opts), results_path(opts.out, stem), render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
