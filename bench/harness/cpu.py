"""CPU accounting from ``/proc``: processes, PostgreSQL, the whole machine, steal."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), by pid."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return sorted(found)


def process_ticks(pids: Sequence[int]) -> dict[int, int]:
    """User + system CPU clock ticks consumed so far by each of these processes."""
    ticks = {}
    for pid in pids:
        with suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def postgres_pids(database: str | None = None) -> list[int]:
    """The processes named ``postgres`` on the machine: all of them, or with ``database``
    PostgreSQL's own (postmaster, checkpointer, WAL writer, ...) and the backends of that
    database, not other databases' backends."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    if database is None:
        return pids
    own = []
    for pid in pids:
        with suppress(OSError):
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            is_backend = "(" in title or "[local]" in title
            if f" {database} " in title or not is_backend:
                own.append(pid)
    return own


def machine_ticks() -> tuple[int, int]:
    """Clock ticks all CPUs spent busy, and ticks stolen by the hypervisor (/proc/stat)."""
    with suppress(OSError, ValueError, IndexError):
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
        return user + nice + system + irq + softirq, steal
    return 0, 0


def machine_busy_cores(seconds: float) -> float:
    """Average cores the whole machine keeps busy over the next ``seconds`` (sleeping)."""
    before = machine_ticks()[0]
    time.sleep(seconds)
    return (machine_ticks()[0] - before) / os.sysconf("SC_CLK_TCK") / seconds


class CpuMeter:
    """Average cores busy over an interval: this process, groups of other processes, the
    whole machine, and ``steal`` (CPU time the hypervisor gave to someone else while this
    machine wanted it: noise on a VM).

    ``own`` names this process's figure; each group's pids are asked for at the start and
    at the end, so processes that exit in between are missed (a lower bound).
    """

    def __init__(self, own: str, groups: Mapping[str, Callable[[], Sequence[int]]]) -> None:
        self.own = own
        self.groups = dict(groups)
        self.tick = os.sysconf("SC_CLK_TCK")
        self.ticks_before: dict[str, dict[int, int]] = {}
        self.ticks_after: dict[str, dict[int, int]] = {}

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.own0 = time.process_time()
        self.ticks_before = {name: process_ticks(pids()) for name, pids in self.groups.items()}
        self.machine0 = machine_ticks()

    def stop(self) -> dict[str, float]:
        """Average cores busy since ``start``: ``own``, each group, machine, steal."""
        elapsed = time.perf_counter() - self.t0
        self.ticks_after = {name: process_ticks(pids()) for name, pids in self.groups.items()}
        machine = machine_ticks()

        def cores(ticks: float) -> float:
            return ticks / self.tick / elapsed

        used = {self.own: (time.process_time() - self.own0) / elapsed}
        for name, after in self.ticks_after.items():
            before = self.ticks_before[name]
            used[name] = cores(sum(v - before.get(p, 0) for p, v in after.items()))
        used["machine"] = cores(machine[0] - self.machine0[0])
        used["steal"] = cores(machine[1] - self.machine0[1])
        return used

    def new_processes(self, group: str) -> int:
        """How many processes of ``group`` appeared between ``start`` and ``stop``."""
        return len(set(self.ticks_after[group]) - set(self.ticks_before[group]))


def server_cpu_meter(server_pids: Sequence[int]) -> CpuMeter:
    """Cores of the load generator (``client``), the server's processes (``server``) and
    every PostgreSQL process (``postgres``; backends that exit mid-run are missed)."""
    pids = list(server_pids)
    return CpuMeter("client", {"server": lambda: pids, "postgres": postgres_pids})


class QuietGate:
    """Before a run, wait until the machine has been idle for half a second (the benchmark
    is idle then, so what is busy is someone else); ``wait`` returns the cores busy in the
    last sample.

    Other work on the machine (test suites, other benchmarks; on a 2-vCPU VM) slows every
    figure, so each run waits for a quiet moment, within a per-run (``wait_s``) and a total
    (``budget_s``) budget, and reports what it saw.
    """

    def __init__(self, *, wait_s: float, budget_s: float, quiet_cores: float) -> None:
        self.wait_s = wait_s
        self.budget_s = budget_s
        self.quiet_cores = quiet_cores

    def wait(self) -> float:
        started = time.monotonic()
        deadline = started + min(self.wait_s, self.budget_s)
        while True:
            load = machine_busy_cores(0.5)
            if load <= self.quiet_cores or time.monotonic() >= deadline:
                self.budget_s = max(0.0, self.budget_s - (time.monotonic() - started - 0.5))
                return load
