"""The report: the machine and versions, the JSON and Markdown result files, ``main``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from harness import log
from harness.cli import BENCH_DIR

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PG_SETTINGS = (
    "max_connections",
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "autovacuum",
)
PACKAGES = ("boxoffice", "fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg")


def machine_info(engine: Engine, *, workers: int | list[int]) -> dict[str, Any]:
    """The machine, PostgreSQL (version, settings), package versions and the git commit
    (marked when ``boxoffice/`` has uncommitted changes); ``workers`` is recorded as is."""
    cpu_model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gib = int(first.split()[1]) / 1024 / 1024
    pg_settings = {}
    with engine.connect() as conn:
        pg_version = str(conn.execute(text("SHOW server_version")).scalar_one())
        for name in PG_SETTINGS:
            pg_settings[name] = str(conn.execute(text(f"SHOW {name}")).scalar_one())
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
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "packages": packages,
        "git": git_commit(),
        "workers": workers,
    }


def git_commit() -> str:
    """The short commit of the checkout, " (boxoffice/ modified)" appended when it is;
    "" outside git."""
    commit = ""
    with suppress(OSError, subprocess.SubprocessError):
        repo = BENCH_DIR.parent
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "boxoffice"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if commit and dirty:
            commit += " (boxoffice/ modified)"
    return commit


def code_state() -> dict[str, Any]:
    """Which ``boxoffice`` is measured: the package's directory, and when it is this git
    checkout, the uncommitted changes under ``boxoffice/`` (files and a hash of the diff),
    so that figures taken while the code is being changed can be told apart."""
    import boxoffice

    package = Path(boxoffice.__file__).resolve().parent
    state: dict[str, Any] = {"package": str(package), "changed_files": [], "diff_sha1": ""}
    repo = BENCH_DIR.parent
    if package != repo / "boxoffice":
        return state
    try:
        diff = subprocess.run(
            ["git", "-C", str(repo), "diff", "HEAD", "--", "boxoffice"],
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout
        files = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "boxoffice"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return state
    state["changed_files"] = sorted(line[3:] for line in files.splitlines() if line.strip())
    state["diff_sha1"] = hashlib.sha1(diff + files.encode()).hexdigest()[:12] if files else ""
    return state


def code_line(code: dict[str, Any]) -> str:
    """The Markdown bullet on the code measured, from ``{"before": code_state(), "after":
    code_state()}`` taken at the start and the end of the run."""
    before, after = code["before"], code["after"]
    if not before["changed_files"]:
        line = "- Code: `boxoffice/` as committed"
    else:
        line = (
            f"- Code: `boxoffice/` with uncommitted changes (diff {before['diff_sha1']}: "
            + ", ".join(f"`{f}`" for f in before["changed_files"])
            + ")"
        )
    if before["package"] != str(BENCH_DIR.parent / "boxoffice"):
        line = f"- Code: `boxoffice` imported from `{before['package']}`"
    if after != before:
        line += (
            "; **`boxoffice/` changed during the run** (the processes started before kept "
            "the code they had loaded)"
        )
    return line


def command_line() -> str:
    """The command that ran this benchmark, as ``python bench/<script>.py ...``."""
    script = os.path.relpath(Path(sys.argv[0]).resolve(), Path.cwd())
    return shlex.join(["python", script, *sys.argv[1:]])


def report_header(
    benchmark: str, machine: dict[str, Any], opts: DataclassInstance
) -> dict[str, Any]:
    """The first keys of every report: its name, the command, the machine and the options
    (paths as strings, without ``pg_url``, which may hold a password)."""
    return {
        "benchmark": benchmark,
        "command": command_line(),
        "machine": machine,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(opts).items()
            if k != "pg_url"
        },
    }


def machine_lines(machine: dict[str, Any]) -> list[str]:
    """The Markdown bullets on the date and commit, the machine and the versions."""
    m = machine
    return [
        f"- Date: {m['date']}; git {m['git'] or 'unknown'}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}",
        f"- Python {m['python']}, PostgreSQL {m['postgresql']} ("
        + ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items())
        + "), "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
    ]


def targets_lines(targets: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown "Targets" section (after a blank line): target, measured, met."""
    lines = ["", "## Targets", "", "| Target | Measured | Met |", "|---|--:|---|"]
    for c in targets:
        lines.append(f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |")
    return lines


def write_results(
    report: dict[str, Any], out: Path, render_markdown: Callable[[dict[str, Any]], str]
) -> None:
    """``<out>.json`` (the whole report) and ``<out>.md``, each written whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, content in (
        (".json", json.dumps(report, indent=2, default=str) + "\n"),
        (".md", render_markdown(report)),
    ):
        target = out.with_name(out.name + suffix)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(content)
        tmp.replace(target)
        log(f"wrote {target}")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, so that the server is stopped and the database
    dropped as on Ctrl-C."""

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def run_benchmark(
    run: Callable[[], dict[str, Any]],
    out: Path,
    render_markdown: Callable[[dict[str, Any]], str],
) -> int:
    """A script's ``main``: ``run()``, its ``wall_seconds`` added, results written and the
    Markdown printed; returns the exit status, 0 when every target is met, else 1."""
    exit_on_sigterm()
    started = time.perf_counter()
    report = run()
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_results(report, out, render_markdown)
    print()
    print(render_markdown(report))
    return 0 if all(c["met"] for c in report["targets"]) else 1
