"""The harness the benchmarks in ``bench/`` share, around their own measurements.

- ``cli``: the parser with ``--pg-url``, the shared checks, the options and results path;
- ``database``: a fresh PostgreSQL database per run (dropped whatever happens), migrated
  on request, engines disposed on the way out, counts and the seat audit;
- ``server``: ``boxoffice serve`` as a subprocess (started, waited for, stopped as a
  process group), one-off and keep-alive HTTP clients;
- ``cpu``: CPU accounting from ``/proc`` (process groups, PostgreSQL, the machine, steal)
  and waiting for a quiet machine;
- ``stats``: nearest-rank percentiles, latency summaries, medians, cProfile by area;
- ``report``: the machine, versions and code measured, the report's header, the Markdown
  pieces every report has, the result files and a script's ``main``.

The scripts import it as ``harness`` (``python bench/<script>.py`` puts ``bench/`` first
on ``sys.path``). Linux only: the CPU accounting reads ``/proc``.
"""

from __future__ import annotations

import time


def log(message: str) -> None:
    """Print a progress line with the wall-clock time, flushed at once."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
