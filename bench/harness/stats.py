"""Statistics of the samples: percentiles, latency summaries, medians, profiles."""

from __future__ import annotations

import math
import pstats
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank), max and mean in milliseconds of durations in seconds."""
    ms = sorted(x * 1000 for x in seconds)
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else float("nan"),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


# --- profiling ----------------------------------------------------------------------------


def own_time_by_area(stats: pstats.Stats, area_of: Callable[[str, str], str]) -> Counter[str]:
    """A cProfile run's own time (seconds), summed by ``area_of(filename, function)``."""
    areas: Counter[str] = Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        areas[area_of(filename, name)] += tottime
    return areas
