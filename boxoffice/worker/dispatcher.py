"""The outbox worker: claims due rows, delivers them, records the outcome; runs the
periodic jobs between rounds.

Each round is three short transactions, never one held across the network:
claim a batch (pushing each row one lease ahead), deliver outside any
transaction, then record what happened. A worker killed mid-round leaves its
rows claimed until the lease runs out; then any worker delivers them again, so
every adapter must be idempotent (mail keeps its Message-ID, calendar events
their UID, webhooks their id).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from boxoffice.db.session import Database
from boxoffice.domain.timeslots import Interval
from boxoffice.integrations.mail.messages import render
from boxoffice.observability import DELIVERIES, JOB_RUNS, WORKER_HEARTBEAT
from boxoffice.services import (
    booking_events,
    calendars,
    events,
    jobs,
    outbox,
    packages,
    payments,
    waitlist,
    webhooks,
)
from boxoffice.services.outbox import Backoff, Claimed, DeliveryState, Topic
from boxoffice.services.ports import Adapters, DeliveryError
from boxoffice.settings import Settings

log = logging.getLogger("boxoffice.worker")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def message_id(dedupe_key: str) -> str:
    """The Message-ID of an email row: the same on every attempt."""
    return f"{hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]}@boxoffice"


@dataclass
class _Periodic:
    name: str
    interval_s: float
    run: Callable[[datetime], int]
    last_at: float = field(default=float("-inf"))


class Worker:
    """Delivers the outbox and runs the periodic jobs; one per process is plenty."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        adapters: Adapters,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.database = database
        self.settings = settings
        self.adapters = adapters
        self.clock = clock
        self.secret_key = settings.resolved_secret_key()
        self.backoff = Backoff(
            base_s=settings.worker_backoff_base_s,
            max_s=settings.worker_backoff_max_s,
            max_attempts=settings.worker_max_attempts,
        )
        self.periodic = [
            _Periodic("expire_holds", 15, self._expire_holds),
            _Periodic("send_reminders", 60, self._send_reminders),
            _Periodic("complete_sessions", 60, self._complete_sessions),
            _Periodic("calendar_sync", 30, self._sync_calendars),
            _Periodic("waitlists", 5, self._serve_waitlists),
            _Periodic("expire_credits", 300, self._expire_credits),
            _Periodic("expire_tickets", 60, self._expire_tickets),
            _Periodic(
                "reconcile_payments",
                settings.payment_reconcile_interval_s,
                self._reconcile_payments,
            ),
        ]
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the loop ---------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Work until ``stop`` is set: deliver while rows are due, else wait a little."""
        stop = stop or self._stop
        log.info("outbox worker started")
        while not stop.is_set():
            try:
                self.run_periodic()
                delivered = self.deliver_batch()
            except Exception:  # the database is down, say: wait and try again
                log.exception("worker round failed")
                delivered = 0
            WORKER_HEARTBEAT.set_to_current_time()
            # Claimed something: go again at once (a fanned-out event has just made its
            # emails and calendar writes due). Wait only when nothing was due.
            if delivered == 0:
                stop.wait(self.settings.worker_poll_s)
        log.info("outbox worker stopped")

    def start(self) -> None:
        """Run in a background thread of this process (``serve`` and ``demo``)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="boxoffice-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def drain(self, *, max_rounds: int = 100) -> int:
        """Deliver until nothing is due now (tests and `boxoffice outbox deliver`)."""
        total = 0
        for _ in range(max_rounds):
            count = self.deliver_batch()
            total += count
            if count == 0:
                break
        return total

    # --- delivery ---------------------------------------------------------------

    def deliver_batch(self) -> int:
        """Claim one batch of due rows and deliver it; returns how many were claimed."""
        now = self.clock()
        with self.database.write() as db:
            claimed = outbox.claim_due(
                db, now=now, limit=self.settings.worker_batch, lease_s=self.settings.worker_lease_s
            )
        delivered: list[Claimed] = []
        failed: list[tuple[Claimed, str]] = []
        unsent: list[Claimed] = []
        # Stop well inside the lease: past it, another worker may claim these rows again.
        deadline = time.monotonic() + self.settings.worker_lease_s / 2
        for row in claimed:
            if time.monotonic() > deadline:
                unsent.append(row)
                continue
            try:
                self._deliver(row)
            except DeliveryError as exc:
                failed.append((row, str(exc)))
            except Exception as exc:  # a bug or bad data: retried, then dead and visible
                log.exception("delivering outbox row %s failed", row.id)
                failed.append((row, f"{type(exc).__name__}: {exc}"))
            else:
                if row.topic is not Topic.EVENT:  # an event row records itself
                    delivered.append(row)
                DELIVERIES.labels(row.topic.value, "delivered").inc()
        if delivered or failed or unsent:
            done = self.clock()
            with self.database.write() as db:
                outbox.mark_delivered(db, [r.id for r in delivered], now=done)
                outbox.release(db, [r.id for r in unsent], now=done)
                for row, error in failed:
                    state = outbox.mark_failed(db, row, error, now=done, backoff=self.backoff)
                    result = "dead" if state is DeliveryState.DEAD else "retry"
                    DELIVERIES.labels(row.topic.value, result).inc()
                    log.warning(
                        "outbox row %s (%s) failed, attempt %s: %s%s",
                        row.id,
                        row.topic.value,
                        row.attempts,
                        error,
                        " (dead)" if result == "dead" else "",
                    )
        return len(claimed)

    def _deliver(self, row: Claimed) -> None:
        if row.topic is Topic.EVENT:
            with self.database.write() as db:
                booking_events.fan_out(
                    db,
                    row,
                    now=self.clock(),
                    public_url=self.settings.public_url,
                    secret_key=self.secret_key,
                )
        elif row.topic is Topic.EMAIL:
            email = render(
                row.payload,
                message_id=message_id(row.dedupe_key),
                public_url=self.settings.public_url,
                organizer_email=self.settings.mail_from,
                stamp=self.clock(),
            )
            self.adapters.mailer.send(email)
        elif row.topic is Topic.CALENDAR:
            with self.database.read() as db:
                target = booking_events.calendar_target(
                    db,
                    uuid.UUID(row.payload["connectionId"]),
                    uuid.UUID(row.payload["bookingId"]),
                    secret_key=self.secret_key,
                    public_url=self.settings.public_url,
                )
            if target is None:
                return  # the calendar was disconnected meanwhile
            if target.event is not None:
                self.adapters.calendar.put_event(target.access, target.event)
            else:
                self.adapters.calendar.delete_event(target.access, target.uid)
        elif row.topic is Topic.WEBHOOK:
            with self.database.read() as db:
                message = webhooks.webhook_message(
                    db, row.payload, secret_key=self.secret_key, now=self.clock()
                )
            if message is not None:
                self.adapters.webhooks.send(message)
        elif row.topic is Topic.REFUND:
            payments.send_refund(
                self.database,
                self.adapters.payments,
                uuid.UUID(row.payload["refundId"]),
                now=self.clock(),
            )

    # --- periodic jobs ------------------------------------------------------------

    def run_periodic(self, *, force: bool = False) -> dict[str, int]:
        """Run the jobs whose interval has passed (all of them with ``force``)."""
        results = {}
        for job in self.periodic:
            if not force and time.monotonic() - job.last_at < job.interval_s:
                continue
            job.last_at = time.monotonic()
            try:
                results[job.name] = job.run(self.clock())
                JOB_RUNS.labels(job.name, "ok").inc()
            except Exception:
                JOB_RUNS.labels(job.name, "error").inc()
                log.exception("periodic job %s failed", job.name)
        return results

    def _expire_holds(self, now: datetime) -> int:
        # Ask the gateway first: a hold whose payment went through is not given away.
        payments.check_expired_holds(self.database, self.adapters.payments, now=now)
        with self.database.write() as db:
            return jobs.expire_holds(db, now=now)

    def _send_reminders(self, now: datetime) -> int:
        lead = timedelta(hours=self.settings.reminder_lead_h)
        with self.database.write() as db:
            return jobs.send_reminders(db, now=now, lead=lead)

    def _complete_sessions(self, now: datetime) -> int:
        with self.database.write() as db:
            return jobs.complete_sessions(db, now=now)

    def _serve_waitlists(self, now: datetime) -> int:
        """Offers that ran out give their seat back; free seats go to those waiting."""
        with self.database.write() as db:
            waitlist.expire_offers(db, now=now)
        with self.database.write() as db:
            return waitlist.offer_free_seats(db, now=now)

    def _expire_credits(self, now: datetime) -> int:
        with self.database.write() as db:
            return packages.expire_credits(db, now=now)

    def _expire_tickets(self, now: datetime) -> int:
        """Tickets past their window expire; events that have ended are completed."""
        with self.database.write() as db:
            events.complete_events(db, now=now)
        with self.database.write() as db:
            return jobs.expire_tickets(db, now=now)

    def _reconcile_payments(self, now: datetime) -> int:
        return payments.reconcile(
            self.database,
            self.adapters.payments,
            now=now,
            older_than=timedelta(minutes=self.settings.payment_reconcile_after_min),
            every=timedelta(seconds=self.settings.payment_reconcile_interval_s),
        )

    def _sync_calendars(self, now: datetime) -> int:
        """Read each due connection's busy times for the next N days into the database."""
        with self.database.write() as db:
            due = calendars.claim_due_syncs(
                db,
                now=now,
                interval_s=self.settings.calendar_sync_interval_s,
                limit=20,
                secret_key=self.secret_key,
            )
        window = Interval(now, now + timedelta(days=self.settings.calendar_sync_days))
        for job in due:
            try:
                busy = self.adapters.calendar.busy_times(job.access, window.start_at, window.end_at)
            except DeliveryError as exc:
                log.warning("calendar sync of %s failed: %s", job.connection_id, exc)
                with self.database.write() as db:
                    calendars.record_sync_error(db, job.connection_id, str(exc))
                continue
            with self.database.write() as db:
                calendars.store_busy_times(db, job.connection_id, window, busy, now=now)
        return len(due)
