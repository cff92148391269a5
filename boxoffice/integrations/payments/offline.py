"""The offline gateway: the embedded default when no Stripe key is set.

It plays the part of an outside payment processor with its own ledger
(``offline_charges``): a payment is a charge with a checkout page served by the
app (``/pay/{ref}``) where the customer pays or fails, or an operator decides with
``boxoffice payments succeed|fail ORDER``. Deciding makes a :class:`GatewayEvent`
that is applied exactly as a Stripe webhook's is, so the two gateways drive the
same transitions.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, select

from boxoffice.db.locking import for_update, insert_if_absent
from boxoffice.db.models import OfflineCharge
from boxoffice.db.session import Database, Db
from boxoffice.services import payments
from boxoffice.services.ports import (
    GatewayEvent,
    GatewayPayment,
    PaymentRefused,
    PaymentRequest,
)

_CHARGES = cast(Table, OfflineCharge.__table__)
# What the checkout page may decide, and the charge statuses it may decide from: a
# declined card can be tried again, a paid charge is final.
OUTCOMES = {"succeeded": ("pending", "failed"), "failed": ("pending",)}


def _now() -> datetime:
    return datetime.now(UTC)


class OfflineGateway:
    name = "offline"
    live = False

    def __init__(self, database: Database, public_url: str) -> None:
        self.database = database
        self.public_url = public_url.rstrip("/")

    def checkout_url(self, ref: str) -> str:
        return f"{self.public_url}/pay/{ref}"

    # --- the PaymentGateway protocol --------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        now = _now()
        with self.database.write() as db:
            insert_if_absent(
                db,
                _CHARGES,
                {
                    # The ref doubles as the checkout page's secret: unguessable.
                    "ref": f"off_{secrets.token_urlsafe(18)}",
                    "idempotency_key": request.idempotency_key,
                    "order_id": request.order_id,
                    "amount_minor": request.amount_minor,
                    "currency": request.currency.upper(),
                    "description": request.description[:500],
                    "status": "pending",
                    "refunded_minor": 0,
                    "refunds": {},
                    "created_at": now,
                    "updated_at": now,
                },
                ["idempotency_key"],
            )
            charge = db.execute(
                select(OfflineCharge).where(
                    OfflineCharge.idempotency_key == request.idempotency_key
                )
            ).scalar_one()
            return self._view(charge)

    def retrieve(self, ref: str) -> GatewayPayment:
        with self.database.read() as db:
            return self._view(_charge(db, ref))

    def refund(self, ref: str, amount_minor: int, *, idempotency_key: str) -> str:
        refund_id = f"offre_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:24]}"
        with self.database.write() as db:
            charge = _charge(db, ref, lock=True)
            if idempotency_key in charge.refunds:
                return refund_id
            if charge.status != "succeeded":
                raise PaymentRefused(f"Charge {ref} has not been paid; nothing to refund.")
            if amount_minor <= 0 or charge.refunded_minor + amount_minor > charge.amount_minor:
                raise PaymentRefused(
                    f"Cannot refund {amount_minor}: {charge.amount_minor - charge.refunded_minor}"
                    " is left on this charge."
                )
            charge.refunds = {**charge.refunds, idempotency_key: amount_minor}
            charge.refunded_minor += amount_minor
            charge.updated_at = _now()
        return refund_id

    # --- the checkout page and the CLI ---------------------------------------------------

    def settle(self, ref: str, outcome: str, *, now: datetime) -> str:
        """The customer paid (``succeeded``) or the card was declined (``failed``): the
        charge changes and its event is applied, as a webhook's would be, in one
        transaction. Returns what the event did; PaymentRefused if it cannot be."""
        with self.database.write() as db:
            event = self._decide(db, ref, outcome, now=now)
            return payments.apply_event(db, event, gateway=self.name, now=now)

    def _decide(self, db: Db, ref: str, outcome: str, *, now: datetime) -> GatewayEvent:
        if outcome not in OUTCOMES:
            raise PaymentRefused(f"Unknown outcome {outcome!r}.")
        charge = _charge(db, ref, lock=True)
        if charge.status not in OUTCOMES[outcome]:
            raise PaymentRefused(f"This payment is already {charge.status}.")
        charge.status = outcome
        charge.failure_message = "The card was declined." if outcome == "failed" else None
        charge.updated_at = now
        db.flush()
        return GatewayEvent(
            id=f"offevt_{uuid.uuid4().hex}",
            kind=outcome,
            payment_ref=ref,
            amount_minor=charge.amount_minor,
            failure_message=charge.failure_message,
        )

    def _view(self, charge: OfflineCharge) -> GatewayPayment:
        return GatewayPayment(
            ref=charge.ref,
            status=charge.status,
            amount_minor=charge.amount_minor,
            currency=charge.currency,
            amount_refunded_minor=charge.refunded_minor,
            checkout_url=self.checkout_url(charge.ref),
            failure_message=charge.failure_message,
        )


def _charge(db: Db, ref: str, *, lock: bool = False) -> OfflineCharge:
    stmt = select(OfflineCharge).where(OfflineCharge.ref == ref)
    if lock:
        stmt = for_update(db, stmt)
    charge = db.execute(stmt).scalar_one_or_none()
    if charge is None:
        raise PaymentRefused(f"No such payment {ref!r}.")
    return charge
