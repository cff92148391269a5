#!/usr/bin/env python
"""Scan validation benchmark: ``POST /api/v1/tickets/{code}/validate`` on a real
``boxoffice serve``, on PostgreSQL.

What it does, in order:

1. creates a fresh PostgreSQL database (dropped at the end, whatever happens), migrates
   it and seeds an organisation, one published event with two keys (a rotation: half the
   codes signed with each) and ``--tickets`` active, paid tickets with their codes, plus
   a few revoked codes;
2. starts ``boxoffice serve --workers N --no-worker`` on it;
3. **throughput**: each client (one thread, one keep-alive ``http.client`` connection)
   validates codes in a closed loop, released together, for ``--duration`` seconds after
   a warm-up; 1, 8 and 32 clients, ``--repeats`` times, interleaved; every answer must be
   200 with ``valid`` true (the revoked codes are checked once, outside the timing);
4. **in-process**: ``scans.validate_code`` in one ``Database.read()`` per call, no HTTP;
5. writes ``bench/results/scans-postgresql.{json,md}`` (``-quick`` with ``--quick``).

Exit status 0 when every target is met, 1 when one is not.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import cli, log
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
from harness.server import Client, Server, http_call, serving
from harness.stats import latency_summary, median

from boxoffice.db.models import Event, Ticket, TicketRevocation, TicketType
from boxoffice.db.session import Database
from boxoffice.domain.tickets import TicketClaims, code_fingerprint, sign_ticket
from boxoffice.services import event_keys, scans
from boxoffice.services.organizations import create_organization

TARGET_PER_S = 1000.0
TARGET_CLIENTS = 32
SECRET = "bench-scans-secret-" + "x" * 24
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Options:
    pg_url: str
    workers: int
    port: int
    clients: tuple[int, ...]
    tickets: int
    duration_s: float
    warmup_s: float
    repeats: int
    inprocess: int
    out: Path
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = cli.new_parser("Benchmark ticket validation over HTTP on PostgreSQL.")
    p.add_argument("--workers", type=int, default=2, help="Server processes")
    p.add_argument("--port", type=int, default=0, help="Server port (0: a free one)")
    p.add_argument("--clients", default="1,8,32", help="Concurrent clients per scenario")
    p.add_argument("--tickets", type=int, default=5000, help="Tickets (distinct codes)")
    p.add_argument("--duration", type=float, default=10.0, help="Seconds per measured run")
    p.add_argument("--warmup", type=float, default=2.0, help="Unmeasured seconds before each")
    p.add_argument("--repeats", type=int, default=3, help="Runs per scenario; medians shown")
    p.add_argument("--inprocess", type=int, default=3000, help="In-process validate_code calls")
    cli.add_out_option(p, "bench/results/scans-postgresql, -quick appended with --quick")
    cli.add_quick_option(p, "1 repeat of 3 s, 8 and 32 clients, 1,000 tickets")
    a = p.parse_args(argv)
    if a.quick:
        a.repeats, a.duration, a.warmup, a.tickets = 1, 3.0, 1.0, min(a.tickets, 1000)
        a.clients, a.inprocess = "8,32", min(a.inprocess, 500)
    cli.require_at_least_one(p, a, ("workers", "tickets", "repeats", "inprocess"))
    stem = "scans-postgresql" + ("-quick" if a.quick else "")
    return cli.options_from(
        Options,
        a,
        clients=cli.int_list(a.clients),
        duration_s=a.duration,
        warmup_s=a.warmup,
        out=cli.results_path(a.out, stem),
    )


# --- the data -----------------------------------------------------------------------------


def seed(database: Database, n: int) -> tuple[list[str], list[str]]:
    """An event with keys 0 (retired) and 1 (active), ``n`` tickets; (their codes, revoked
    codes)."""
    with database.write() as s:
        org = create_organization(
            s, slug="bench", name="Bench", timezone="Europe/Madrid", currency="EUR"
        )
        event = Event(
            org_id=org.id,
            name="Bench concert",
            start_at=NOW - timedelta(hours=1),
            end_at=NOW + timedelta(days=2),
            timezone="Europe/Madrid",
            max_participants=n + 100,
            currency="EUR",
            status="published",
        )
        s.add(event)
        s.flush()
        ttype = TicketType(
            org_id=org.id,
            event_id=event.id,
            number=1,
            kind="standard",
            name="Standard",
            price_minor=1000,
            quota=n + 100,
        )
        s.add(ttype)
        s.flush()
        signers = []
        for _ in range(2):
            event_keys.create_key(s, event, secret_key=SECRET, now=NOW)
            found = event_keys.signing_key(s, event.id, secret_key=SECRET)
            assert found is not None
            signers.append(found)
        codes, revoked = [], []
        for i in range(n + 20):
            ticket = Ticket(
                id=uuid.uuid4(),
                org_id=org.id,
                event_id=event.id,
                ticket_type_id=ttype.id,
                holder_name=f"Guest {i}",
                status="active",
                is_paid=True,
                price_minor=1000,
                currency="EUR",
                valid_from=NOW - timedelta(hours=1),
                valid_until=NOW + timedelta(days=2),
            )
            key_id, key = signers[i % 2]
            claims = TicketClaims.issue(
                ticket_id=ticket.id,
                event_id=event.id,
                ticket_type=1,
                valid_from=ticket.valid_from,
                valid_until=ticket.valid_until,
            )
            ticket.code = sign_ticket(claims, key, key_id)
            ticket.key_id = key_id
            s.add(ticket)
            if i < n:
                codes.append(ticket.code)
            else:
                revoked.append(ticket.code)
                s.add(
                    TicketRevocation(
                        org_id=org.id,
                        event_id=event.id,
                        ticket_id=ticket.id,
                        fingerprint=code_fingerprint(ticket.code),
                        reason="bench",
                        revoked_at=NOW,
                    )
                )
        event.current_participants = ttype.sold_count = n + 20
    with database.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return codes, revoked


# --- load ---------------------------------------------------------------------------------


def closed_loop(
    port: int, codes: list[str], clients: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """``clients`` threads validating codes until the time is up; rates and latencies."""
    barrier = threading.Barrier(clients + 1)
    results: list[tuple[Counter[str], list[float]]] = []
    lock = threading.Lock()
    start_at: list[float] = []

    def run(index: int) -> None:
        client = Client(port, None, 30.0)
        statuses: Counter[str] = Counter()
        latencies: list[float] = []
        i = index * 7919
        barrier.wait()
        begin = start_at[0]
        warm_end, end = begin + warmup_s, begin + warmup_s + duration_s
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            code = codes[i % len(codes)]
            i += 1
            status, seconds, _size = client.request(
                "POST", f"/api/v1/tickets/{code}/validate", None
            )
            if now >= warm_end:
                statuses[status] += 1
                latencies.append(seconds)
        client.close()
        with lock:
            results.append((statuses, latencies))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start_at.append(time.perf_counter())
    barrier.wait()
    for t in threads:
        t.join()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    for st, lat in results:
        statuses.update(st)
        latencies.extend(lat)
    ok = statuses.get("200", 0)
    return {
        "clients": clients,
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "per_s": ok / duration_s,
        **latency_summary(latencies),
    }


def check_answers(port: int, codes: list[str], revoked: list[str]) -> dict[str, int]:
    """Every measured code answers valid, every revoked one revoked (spot check)."""
    wrong = 0
    for code in codes[:200]:
        status, body = http_call("127.0.0.1", port, "POST", f"/api/v1/tickets/{code}/validate")
        wrong += status != 200 or body["valid"] is not True
    for code in revoked:
        status, body = http_call("127.0.0.1", port, "POST", f"/api/v1/tickets/{code}/validate")
        wrong += status != 200 or body["reasonCode"] != "revoked"
    return {"checked": 200 + len(revoked), "wrong": wrong}


def in_process(database: Database, codes: list[str], n: int) -> dict[str, float]:
    now = datetime.now(UTC)
    for code in codes[:50]:
        with database.read() as s:
            scans.validate_code(s, code, now=now)
    t0 = time.perf_counter()
    for i in range(n):
        with database.read() as s:
            check = scans.validate_code(s, codes[i % len(codes)], now=now).check
            assert check.is_valid
    wall = time.perf_counter() - t0
    return {"calls": n, "per_s": n / wall, "us": wall / n * 1e6}


def run(opts: Options) -> dict[str, Any]:
    code_before = code_state()
    with fresh_database(opts.pg_url) as url, tempfile.TemporaryDirectory() as tmp:
        with migrated_database(url, pool_size=2) as database:
            codes, revoked = seed(database, opts.tickets)
            log(f"seeded {len(codes)} tickets, {len(revoked)} revoked")
            inproc = in_process(database, codes, opts.inprocess)
            log(f"in-process: {inproc['per_s']:,.0f} validate_code/s")
        with connected_engine(url) as engine:
            machine = machine_info(engine, workers=opts.workers)
        server = Server(
            url,
            port=opts.port,
            workers=opts.workers,
            workdir=Path(tmp),
            extra_args=["--no-worker"],
            extra_env={"BOXOFFICE_SECRET_KEY": SECRET},
        )
        runs: list[dict[str, Any]] = []
        with serving(server):
            answers = check_answers(server.port, codes, revoked)
            for repeat in range(opts.repeats):
                for clients in opts.clients:
                    r = closed_loop(server.port, codes, clients, opts.warmup_s, opts.duration_s)
                    r["run"] = repeat + 1
                    runs.append(r)
                    log(
                        f"run {repeat + 1}, {clients} clients: {r['per_s']:,.0f}/s, "
                        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['statuses']}"
                    )
    summary = {}
    for clients in opts.clients:
        mine = [r for r in runs if r["clients"] == clients]
        summary[str(clients)] = {
            "per_s": median([r["per_s"] for r in mine]),
            "p50_ms": median([r["p50_ms"] for r in mine]),
            "p99_ms": median([r["p99_ms"] for r in mine]),
            "runs": [round(r["per_s"]) for r in mine],
        }
    best = max(opts.clients, key=lambda c: summary[str(c)]["per_s"])
    headline = summary[str(best)]
    non_200 = sum(r["requests"] - r["statuses"].get("200", 0) for r in runs)
    targets = [
        {
            "target": f">= {TARGET_PER_S:,.0f} validations/s over HTTP, {opts.workers} workers",
            "measured": f"{headline['per_s']:,.0f}/s with {best} clients (runs: "
            + ", ".join(f"{x:,}" for x in headline["runs"])
            + ")",
            "met": headline["per_s"] >= TARGET_PER_S,
        },
        {
            "target": "every request answered 200; codes valid, revoked codes revoked",
            "measured": f"{non_200} non-200; {answers['wrong']} wrong of {answers['checked']}",
            "met": non_200 == 0 and answers["wrong"] == 0,
        },
    ]
    return {
        **report_header("scans-postgresql", machine, opts),
        "code": {"before": code_before, "after": code_state()},
        "runs": runs,
        "summary": summary,
        "in_process": inproc,
        "answers": answers,
        "targets": targets,
    }


def render_markdown(report: dict[str, Any]) -> str:
    o, s, ip = report["options"], report["summary"], report["in_process"]
    lines = [
        "# Scan validation benchmark: `POST /api/v1/tickets/{code}/validate`, PostgreSQL",
        "",
        *machine_lines(report["machine"]),
        code_line(report["code"]),
        f"- Command: `{report['command']}`; {report['wall_seconds']} s in all",
        f"- `boxoffice serve --workers {o['workers']} --no-worker`; {o['tickets']:,} tickets "
        f"(distinct valid codes, two keys); closed loop, one keep-alive connection per client, "
        f"{o['duration_s']} s per run after {o['warmup_s']} s warm-up, {o['repeats']} run(s), "
        "medians shown; the load generator runs on the same machine",
        "",
        "## Results",
        "",
        "| Clients | Validations/s | p50 ms | p99 ms | Runs (/s) |",
        "|--:|--:|--:|--:|---|",
    ]
    for clients, x in s.items():
        lines.append(
            f"| {clients} | {x['per_s']:,.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | "
            + ", ".join(f"{v:,}" for v in x["runs"])
            + " |"
        )
    lines += [
        "",
        f"In-process (`scans.validate_code` in one `Database.read()` per call, no HTTP): "
        f"{ip['per_s']:,.0f}/s, {ip['us']:.0f} µs per call. The path: one query (the ticket, "
        "its type and event, and whether the code's fingerprint is revoked), the event's keys "
        "from a per-process cache, one Ed25519 verification (libsodium).",
    ]
    lines += targets_lines(report["targets"])
    lines += [
        "",
        "## Every run",
        "",
        "| Run | Clients | Requests | /s | p50 ms | p99 ms | Statuses |",
    ]
    lines.append("|--:|--:|--:|--:|--:|--:|---|")
    for r in report["runs"]:
        lines.append(
            f"| {r['run']} | {r['clients']} | {r['requests']:,} | {r['per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {json.dumps(r['statuses'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_benchmark(lambda: run(opts), opts.out, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
