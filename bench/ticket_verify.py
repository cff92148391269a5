#!/usr/bin/env python
"""Ticket code benchmark: offline verification and signing rates, in-process.

What it does, in order:

1. makes two event keys (key ids 1 and 2, both published: a rotation in progress) and
   ``--codes`` distinct codes, half signed with each, for tickets of random ids, types,
   revisions and validity windows; and as many forged codes (one bit of the signature
   flipped);
2. per run (``--repeats``, each after waiting, within a budget, for a quiet machine), one
   after the other in this process, each over ``--verifications`` calls after a warm-up:

   - ``read_ticket`` on the valid codes: what a scanner does per scan (decode, unpack,
     Ed25519 verify with the key of the code's key id); **the figure of the target**;
   - ``read_ticket`` on the forged codes (each refused with ``InvalidTicketCode``);
   - ``Ed25519PublicKey.verify`` alone on the same signatures: cryptography's ceiling;
   - ``peek_ticket``: the decoding and unpacking alone, without the signature;
   - ``check_ticket`` on verified claims: the pure decision after the verification;
   - ``sign_ticket``: issuing codes;

   each as calls per second of wall time and per second of this process's CPU time (less
   sensitive to other work on the machine);
3. unless ``--processes 0``, the same ``read_ticket`` loop in N processes at once (one per
   CPU by default, multiprocessing "spawn", released together): the scale-out of a server
   with N workers, or of a scanner app verifying on every core;
4. ``openssl speed ed25519`` when the ``openssl`` command is there: the C library's own
   rate on this CPU, for reference;
5. writes ``bench/results/ticket-verify.{json,md}`` (``-quick`` with ``--quick``), with the
   code format (layout, length, QR version per error-correction level).

No database and no server. Exit status 0 when every target is met, 1 when one is not.
Run ``python bench/ticket_verify.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import base64
import gc
import multiprocessing
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import segno
from cryptography.hazmat.backends.openssl import backend
from harness import cli, log
from harness.cpu import QuietGate
from harness.report import (
    code_line,
    code_state,
    command_line,
    git_commit,
    run_benchmark,
    targets_lines,
)
from harness.stats import median
from nacl.bindings import crypto_sign_open

from boxoffice.domain.tickets import (
    CODE_BYTES,
    CODE_CHARS,
    HAS_SODIUM,
    PAYLOAD_BYTES,
    SIGNING_CONTEXT,
    InvalidTicketCode,
    TicketClaims,
    TicketStatus,
    check_ticket,
    generate_signing_key,
    load_public_keys,
    peek_ticket,
    public_key_text,
    read_ticket,
    sign_ticket,
)
from boxoffice.integrations.qr import ERROR_LEVEL

TARGET_VERIFY_PER_S = 10_000.0
EVENT = uuid.UUID("7d0f6a55-3c1e-4a8e-9d51-2f0a8b6c1e01")
NOW = datetime(2026, 12, 12, 19, 42, tzinfo=UTC)
PACKAGES = ("boxoffice", "cryptography", "pynacl", "segno")
PARTS = (
    "read_ticket",
    "read_ticket_forged",
    "verify_sodium",
    "verify_only",
    "peek_ticket",
    "check_ticket",
)


@dataclass(frozen=True)
class Options:
    codes: int
    verifications: int
    signatures: int
    repeats: int
    warmup: int
    processes: int
    seed: int
    quiet_wait_s: float
    quiet_budget_s: float
    quiet_cores: float
    openssl: bool
    out: Path
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        description="Benchmark ticket code verification and signing, in-process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--codes", type=int, default=2000, help="Distinct codes (and forged ones)")
    p.add_argument("--verifications", type=int, default=20_000, help="Calls per part per run")
    p.add_argument("--signatures", type=int, default=10_000, help="sign_ticket calls per run")
    p.add_argument("--repeats", type=int, default=5, help="Runs; medians reported")
    p.add_argument("--warmup", type=int, default=500, help="Unmeasured calls before each part")
    p.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="Processes verifying at once in the scale-out part (0: skip it)",
    )
    p.add_argument("--seed", type=int, default=1, help="Seed of the generated claims")
    p.add_argument("--quiet-wait", type=float, default=10.0, help="Max wait for a quiet machine")
    p.add_argument("--quiet-budget", type=float, default=60.0, help="Max such waiting in all")
    p.add_argument("--quiet-cores", type=float, default=0.3, help="Busy cores that count as idle")
    p.add_argument("--no-openssl", action="store_true", help="Skip `openssl speed ed25519`")
    cli.add_out_option(p, "bench/results/ticket-verify, -quick appended with --quick")
    cli.add_quick_option(p, "1 repeat, 2,000 calls per part, no openssl speed")
    a = p.parse_args(argv)
    if a.quick:
        a.repeats, a.verifications, a.signatures = 1, min(a.verifications, 2000), 2000
        a.codes, a.warmup, a.no_openssl = min(a.codes, 500), min(a.warmup, 100), True
    cli.require_at_least_one(p, a, ("codes", "verifications", "signatures", "repeats"))
    if min(a.warmup, a.processes, a.quiet_wait, a.quiet_budget) < 0:
        p.error("--warmup, --processes and --quiet-* must not be negative")
    stem = "ticket-verify" + ("-quick" if a.quick else "")
    return cli.options_from(
        Options,
        a,
        quiet_wait_s=a.quiet_wait,
        quiet_budget_s=a.quiet_budget,
        openssl=not a.no_openssl,
        out=cli.results_path(a.out, stem),
    )


# --- the data -----------------------------------------------------------------------------


def make_claims(rng: random.Random, n: int) -> list[TicketClaims]:
    claims = []
    for _ in range(n):
        start = NOW.replace(minute=0) - timedelta(hours=rng.randrange(0, 4))
        claims.append(
            TicketClaims.issue(
                ticket_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                event_id=EVENT,
                ticket_type=rng.randrange(0, 12),
                valid_from=start,
                valid_until=start + timedelta(hours=rng.randrange(4, 72)),
                revision=rng.choice((0, 0, 0, 1, 2)),
            )
        )
    return claims


def forge(code: str, rng: random.Random) -> str:
    """The code with one bit of its signature flipped, re-encoded canonically."""
    raw = bytearray(base64.b32decode(code + "=" * (-len(code) % 8)))
    raw[PAYLOAD_BYTES + rng.randrange(64)] ^= 1 << rng.randrange(8)
    return base64.b32encode(bytes(raw)).decode().rstrip("=")


# --- measuring ----------------------------------------------------------------------------


def rate(
    call: Callable[[Any], object], items: Sequence[Any], n: int, warmup: int
) -> dict[str, float]:
    """Calls per second of wall time and of this process's CPU time, ``n`` calls cycling
    over ``items`` after ``warmup`` unmeasured ones."""
    work = (list(items) * (n // len(items) + 1))[:n]
    for item in work[:warmup]:
        call(item)
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for item in work:
        call(item)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "calls": n,
        "per_s": n / wall,
        "cpu_per_s": n / cpu if cpu else float("nan"),
        "us": wall / n * 1e6,
    }


def refused(read: Callable[[str], object]) -> Callable[[str], object]:
    def call(code: str) -> object:
        try:
            return read(code)
        except InvalidTicketCode:
            return None

    return call


def scale_worker(
    published: dict[int, str], codes: list[str], n: int, warmup: int, barrier: Any, out: Any
) -> None:
    keys = load_public_keys(published)
    for code in codes[:warmup]:
        read_ticket(code, keys)
    work = (codes * (n // len(codes) + 1))[:n]
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for code in work:
        read_ticket(code, keys)
    out.put((t0, time.perf_counter(), time.process_time() - c0))


def scale_out(published: dict[int, str], codes: list[str], opts: Options) -> dict[str, Any]:
    """``read_ticket`` in ``opts.processes`` processes released together: all the calls over
    the time from the first start to the last end (CLOCK_MONOTONIC, shared by processes)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(opts.processes), ctx.Queue()
    procs = [
        ctx.Process(
            target=scale_worker,
            args=(published, codes, opts.verifications, opts.warmup, barrier, out),
        )
        for _ in range(opts.processes)
    ]
    for proc in procs:
        proc.start()
    spans = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    wall = max(s[1] for s in spans) - min(s[0] for s in spans)
    calls = opts.processes * opts.verifications
    return {
        "processes": opts.processes,
        "calls": calls,
        "per_s": calls / wall,
        "per_process_cpu_per_s": [opts.verifications / s[2] for s in spans],
    }


def openssl_speed() -> dict[str, float] | None:
    """``openssl speed ed25519`` (the command's OpenSSL, 3 s per operation), or None."""
    if shutil.which("openssl") is None:
        return None
    with suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(
            ["openssl", "speed", "-seconds", "3", "ed25519"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
        found = re.search(r"Ed25519\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", text)
        if found:
            return {
                "version": version.strip(),
                "sign_per_s": float(found[1]),
                "verify_per_s": float(found[2]),
            }
    return None


def code_format(code: str) -> dict[str, Any]:
    qr = {}
    for level in "LMQH":
        symbol = segno.make_qr(code, error=level, mode="alphanumeric", boost_error=False)
        qr[level] = {"version": symbol.version, "modules": symbol.symbol_size(border=0)[0]}
    return {"chars": len(code), "bytes": CODE_BYTES, "qr": qr, "example": code}


def machine() -> dict[str, Any]:
    cpu_model, mem_gib = "", 0.0
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with suppress(OSError, ValueError, IndexError):
        mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    packages = {}
    for name in PACKAGES:
        with suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(mem_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "openssl": backend.openssl_version_text(),
        "verifier": "libsodium (PyNaCl)" if HAS_SODIUM else "OpenSSL (cryptography)",
        "packages": packages,
        "git": git_commit(),
    }


def run(opts: Options) -> dict[str, Any]:
    code_before = code_state()
    rng = random.Random(opts.seed)
    signing = {1: generate_signing_key(), 2: generate_signing_key()}
    published = {key_id: public_key_text(key.public_key()) for key_id, key in signing.items()}
    keys = load_public_keys(published)
    claims = make_claims(rng, opts.codes)
    codes = [sign_ticket(c, signing[1 + i % 2], 1 + i % 2) for i, c in enumerate(claims)]
    forged = [forge(code, rng) for code in codes]
    raw = [
        (keys[1 + i % 2], *_signed(code), keys[1 + i % 2].public_bytes_raw())
        for i, code in enumerate(codes)
    ]
    verified = [read_ticket(code, keys) for code in codes]
    assert all(v == c for v, c in zip(verified, claims, strict=True))
    assert all(len(code) == CODE_CHARS for code in codes)
    log(f"{len(codes)} codes of {len(codes[0])} characters, {len(forged)} forged")

    parts: dict[str, Callable[[Any], object]] = {
        "read_ticket": lambda code: read_ticket(code, keys),
        "read_ticket_forged": refused(lambda code: read_ticket(code, keys)),
        "verify_sodium": lambda r: crypto_sign_open(r[2] + r[1], r[3]),
        "verify_only": lambda r: r[0].verify(r[2], r[1]),
        "peek_ticket": peek_ticket,
        "check_ticket": lambda c: check_ticket(
            c, status=TicketStatus.ACTIVE, is_revoked=False, is_paid=True, event_id=EVENT, now=NOW
        ),
    }
    inputs = {
        "read_ticket": codes,
        "read_ticket_forged": forged,
        "verify_sodium": raw,
        "verify_only": raw,
        "peek_ticket": codes,
        "check_ticket": verified,
    }
    gate = QuietGate(
        wait_s=opts.quiet_wait_s, budget_s=opts.quiet_budget_s, quiet_cores=opts.quiet_cores
    )
    runs = []
    for repeat in range(opts.repeats):
        busy = gate.wait()
        r: dict[str, Any] = {"run": repeat + 1, "busy_cores_before": round(busy, 2)}
        for part in PARTS:
            r[part] = rate(parts[part], inputs[part], opts.verifications, opts.warmup)
        keyed = [(c, signing[1 + i % 2], 1 + i % 2) for i, c in enumerate(claims)]
        r["sign_ticket"] = rate(lambda a: sign_ticket(*a), keyed, opts.signatures, opts.warmup)
        runs.append(r)
        log(
            f"run {repeat + 1}: read_ticket {r['read_ticket']['per_s']:,.0f}/s "
            f"(CPU {r['read_ticket']['cpu_per_s']:,.0f}/s), verify alone "
            f"{r['verify_only']['per_s']:,.0f}/s, sign {r['sign_ticket']['per_s']:,.0f}/s; "
            f"{busy:.2f} cores busy before"
        )
    scale = None
    if opts.processes:
        gate.wait()
        scale = scale_out(published, codes, opts)
        log(f"{scale['processes']} processes: {scale['per_s']:,.0f} read_ticket/s in all")
    speed = openssl_speed() if opts.openssl else None
    summary = {
        part: {
            "per_s": median([r[part]["per_s"] for r in runs]),
            "cpu_per_s": median([r[part]["cpu_per_s"] for r in runs]),
            "us": median([r[part]["us"] for r in runs]),
            "runs": [round(r[part]["per_s"]) for r in runs],
        }
        for part in (*PARTS, "sign_ticket")
    }
    measured = summary["read_ticket"]["per_s"]
    targets = [
        {
            "target": f">= {TARGET_VERIFY_PER_S:,.0f} `read_ticket`/s, one process",
            "measured": f"{measured:,.0f}/s (runs: "
            + ", ".join(f"{x:,}" for x in summary["read_ticket"]["runs"])
            + f"); {summary['read_ticket']['cpu_per_s']:,.0f} per CPU second",
            "met": measured >= TARGET_VERIFY_PER_S,
        }
    ]
    return {
        "benchmark": "ticket-verify",
        "command": command_line(),
        "machine": machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "code": {"before": code_before, "after": code_state()},
        "format": code_format(codes[0]),
        "runs": runs,
        "summary": summary,
        "scale_out": scale,
        "openssl_speed": speed,
        "targets": targets,
    }


def _signed(code: str) -> tuple[bytes, bytes]:
    """(the signed message, the signature) of a code, for the verify-only part."""
    raw = base64.b32decode(code + "=" * (-len(code) % 8))
    return SIGNING_CONTEXT + raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]


# --- the report ---------------------------------------------------------------------------

LABELS = {
    "read_ticket": "`read_ticket`, valid codes (the scan)",
    "read_ticket_forged": "`read_ticket`, forged codes (refused)",
    "verify_sodium": "libsodium `crypto_sign_open` alone (what `read_ticket` uses)",
    "verify_only": "`Ed25519PublicKey.verify` alone (OpenSSL, the fallback)",
    "peek_ticket": "`peek_ticket` (decode, no signature)",
    "check_ticket": "`check_ticket` (the decision)",
    "sign_ticket": "`sign_ticket`",
}


def render_markdown(report: dict[str, Any]) -> str:
    m, o, f, s = report["machine"], report["options"], report["format"], report["summary"]
    lines = [
        "# Ticket code benchmark: verification and signing, in-process",
        "",
        f"- Date: {m['date']}; git {m['git'] or 'unknown'}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}",
        f"- Python {m['python']}, {m['openssl']} (cryptography's), verifier: "
        f"{m.get('verifier', 'OpenSSL')}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        code_line(report["code"]),
        f"- Command: `{report['command']}`; {report['wall_seconds']} s in all",
        f"- {o['repeats']} run(s), medians shown; per run and part {o['verifications']:,} calls "
        f"({o['signatures']:,} for signing) over {o['codes']:,} distinct codes after "
        f"{o['warmup']} warm-up, one thread; keys 1 and 2 both published, half the codes each",
        "",
        "## Code format",
        "",
        f"{f['bytes']} bytes ({PAYLOAD_BYTES}-byte payload + 64-byte Ed25519 signature), "
        f"base32 without padding: **{f['chars']} characters** (`A-Z2-7`, QR alphanumeric mode). "
        "QR symbol of a code by error-correction level (modules on a side, quiet zone excluded):",
        "",
        "| Level | Version | Modules |",
        "|---|--:|--:|",
        *(
            f"| {lvl}{' (used)' if lvl == ERROR_LEVEL else ''} | {q['version']} | {q['modules']} |"
            for lvl, q in f["qr"].items()
        ),
        "",
        f"Example: `{f['example']}`",
        "",
        "## Results",
        "",
        "| Part | Calls/s | CPU calls/s | µs per call | Runs (calls/s) |",
        "|---|--:|--:|--:|---|",
    ]
    for part, label in LABELS.items():
        x = s[part]
        bold = "**" if part == "read_ticket" else ""
        lines.append(
            f"| {label} | {bold}{x['per_s']:,.0f}{bold} | {x['cpu_per_s']:,.0f} | {x['us']:.1f} | "
            + ", ".join(f"{v:,}" for v in x["runs"])
            + " |"
        )
    lines += [
        "",
        "Calls/s: wall time, this thread alone; CPU calls/s: per second of this process's CPU "
        "time. `read_ticket` = base32 decode and unpack (`peek_ticket`) + the Ed25519 "
        "verification; the verification is the cost.",
    ]
    scale, speed = report["scale_out"], report["openssl_speed"]
    if scale:
        lines += [
            "",
            f"**Scale-out**: `read_ticket` in {scale['processes']} processes at once: "
            f"**{scale['per_s']:,.0f}/s** in all ({scale['calls']:,} calls; per process, per "
            "CPU second: " + ", ".join(f"{v:,.0f}" for v in scale["per_process_cpu_per_s"]) + ").",
        ]
    if speed:
        lines += [
            "",
            f"**Reference**: `openssl speed ed25519` ({speed['version']}): "
            f"{speed['verify_per_s']:,.0f} verify/s, {speed['sign_per_s']:,.0f} sign/s on one "
            "core: the C library's own ceiling on this CPU.",
        ]
    read_us = 1e6 / s["read_ticket"]["cpu_per_s"]
    verify_us = 1e6 / s["verify_sodium"]["cpu_per_s"]
    lines += [
        "",
        f"Reading them: a scan costs {read_us:.0f} µs of CPU, {verify_us:.0f} µs "
        f"({verify_us / read_us:.0%}) of it in libsodium's Ed25519 verification, so one thread "
        f"tops out near {s['verify_sodium']['cpu_per_s']:,.0f}/s on this CPU whatever the "
        "Python around it does (OpenSSL's, the fallback without PyNaCl: "
        f"{s['verify_only']['cpu_per_s']:,.0f}/s); wall-time figures below the CPU ones mean "
        'other work shared the cores (see "Busy cores before"). More throughput comes from '
        "more cores (processes: the GIL is held during a verification) or a faster core.",
    ]
    lines += targets_lines(report["targets"])
    lines += [
        "",
        "## Every run",
        "",
        "| Run | Busy cores before | " + " | ".join(LABELS) + " |",
        "|--:|--:|" + "--:|" * len(LABELS),
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['run']} | {r['busy_cores_before']} | "
            + " | ".join(f"{r[p]['per_s']:,.0f}" for p in LABELS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_benchmark(lambda: run(opts), opts.out, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
