"""`/metrics` in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from boxoffice.api.deps import Db, Now
from boxoffice.services import outbox

router = APIRouter(tags=["health"])

BACKLOG = Gauge("boxoffice_outbox_backlog", "Outbox rows not yet delivered (all, due now)", ["due"])
OLDEST = Gauge("boxoffice_outbox_oldest_pending_age_seconds", "Age of the oldest undelivered row")
DEAD = Gauge("boxoffice_outbox_dead", "Outbox rows that gave up, waiting for a retry")


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(db: Db, now: Now) -> Response:
    """Counters of this process, and the outbox backlog of the whole database."""
    with db.read() as s:
        backlog = outbox.backlog(s, now=now)
    BACKLOG.labels("all").set(backlog.pending)
    BACKLOG.labels("now").set(backlog.due)
    DEAD.set(backlog.dead)
    age = (now - backlog.oldest_pending_at).total_seconds() if backlog.oldest_pending_at else 0
    OLDEST.set(max(0.0, age))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
