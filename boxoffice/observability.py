"""Metrics (Prometheus) and logs (JSON lines when not on a terminal, with a request id)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

BOOKINGS_CREATED = Counter("boxoffice_bookings_created", "Bookings created")
CONFLICTS = Counter("boxoffice_conflicts", "Requests answered 409, by error code", ["code"])
DELIVERIES = Counter(
    "boxoffice_outbox_deliveries",
    "Outbox delivery attempts, by topic and result (delivered, retry, dead)",
    ["topic", "result"],
)
WORKER_HEARTBEAT = Gauge(
    "boxoffice_worker_heartbeat_timestamp_seconds",
    "When this process's outbox worker last finished a round (unix time)",
)
JOB_RUNS = Counter(
    "boxoffice_periodic_job_runs", "Periodic job runs, by job and result", ["job", "result"]
)

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    _PLAIN = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["requestId"] = rid
        for key, value in vars(record).items():
            if key not in self._PLAIN and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.request_id = f" [{rid}]" if rid else ""
        return True


def configure_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Log to stderr: JSON lines unless stderr is a terminal (or as ``json_lines`` says)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.addFilter(_RequestIdFilter())
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s%(request_id)s: %(message)s")
        )
    root = logging.getLogger("boxoffice")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
