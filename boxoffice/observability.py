"""Metrics (Prometheus) and logs (JSON lines when not on a terminal, with a request id)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
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


def bind_request_id(rid: str) -> object:
    """Tag every log line of the current request (or task) with ``requestId``."""
    return structlog.contextvars.bind_contextvars(requestId=rid)


def unbind_request_id(tokens: object) -> None:
    structlog.contextvars.reset_contextvars(**tokens)  # type: ignore[arg-type]


def configure_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Our loggers to stderr: JSON lines unless stderr is a terminal (or as ``json_lines``
    says), each with time, level, logger, message and the request id when there is one."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
        )
    )
    logger = logging.getLogger("boxoffice")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
