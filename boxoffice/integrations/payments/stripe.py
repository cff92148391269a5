"""Payments through Stripe: PaymentIntents, refunds and signed webhooks.

Stripe Connect: when the organisation has a connected account, the caller sets
``PaymentRequest.destination`` and we create a destination charge, with
``transfer_data.destination`` sending the money to that account and
``application_fee_amount`` keeping the platform's share. Without a destination
it is a direct charge on the platform's own account. The caller decides which.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe
from stripe.params import PaymentIntentCreateParams

from boxoffice.domain.errors import InvalidInput, InvalidSignature
from boxoffice.services.ports import (
    GatewayEvent,
    GatewayPayment,
    PaymentRefused,
    PaymentRequest,
    PaymentUnavailable,
)

# Stripe's status codes that a later retry can get past: a lock or an idempotent
# request still in flight (409), a rate limit (429).
_RETRYABLE_STATUSES = frozenset({409, 429})


class StripeGateway:
    """Implements ``PaymentGateway`` with the official SDK's ``StripeClient``."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        max_network_retries: int = 2,
    ) -> None:
        """``api_base`` replaces https://api.stripe.com (a local stub in tests).

        ``timeout_s`` bounds the connect and each read of one attempt; the SDK retries
        network errors, 409s and 5xx up to ``max_network_retries`` times, with backoff.
        """
        # Stripe's live keys (secret or restricted) move real money; test keys never do.
        self.live = api_key.startswith(("sk_live_", "rk_live_"))
        # requests comes with the SDK; its client honours a timeout in synchronous code.
        self._http = stripe.RequestsClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base is not None else None,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the HTTP connections this thread opened (the SDK keeps them per thread)."""
        self._http.close()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        """Create a PaymentIntent (idempotent by ``request.idempotency_key``).

        Asked again with the same key, Stripe replays its first answer, so the status
        may be old; ``retrieve`` gives the state now.
        """
        params: PaymentIntentCreateParams = {
            "amount": request.amount_minor,
            "currency": request.currency.lower(),
            "metadata": {"orderId": request.order_id},
            "automatic_payment_methods": {"enabled": True},
        }
        if request.description:
            params["description"] = request.description
        if request.customer_email:
            params["receipt_email"] = request.customer_email
        if request.destination:
            params["transfer_data"] = {"destination": request.destination}
            if request.application_fee_minor is not None:
                params["application_fee_amount"] = request.application_fee_minor
        with _translated_errors("create a payment"):
            intent = self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": request.idempotency_key}
            )
        return _payment(intent)

    def retrieve(self, ref: str) -> GatewayPayment:
        """The PaymentIntent now, with its latest charge expanded for the refunded amount."""
        with _translated_errors("retrieve a payment"):
            intent = self._client.v1.payment_intents.retrieve(
                ref, params={"expand": ["latest_charge"]}
            )
        return _payment(intent)

    def refund(self, ref: str, amount_minor: int, *, idempotency_key: str) -> str:
        """Refund ``amount_minor`` of the PaymentIntent ``ref``; returns the refund's id."""
        with _translated_errors("refund a payment"):
            refund = self._client.v1.refunds.create(
                params={"payment_intent": ref, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            )
        return refund.id


def parse_webhook(
    payload: bytes, signature: str | None, secret: str, *, tolerance_s: int = 300
) -> GatewayEvent | None:
    """Verify a webhook's ``Stripe-Signature`` and read the payment event in it.

    Returns None for an event that does not concern us (another type, a charge with
    no PaymentIntent). Raises InvalidSignature when the signature is missing, does
    not match, or is older than ``tolerance_s``; InvalidInput when a correctly
    signed body is not a Stripe event.
    """
    if tolerance_s <= 0:
        # The SDK reads a tolerance of 0 as "accept any age", which would allow replays.
        raise ValueError("tolerance_s must be positive")
    if not signature:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance_s)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(f"The Stripe signature does not verify: {exc.user_message}") from exc
    except UnicodeDecodeError as exc:
        # The SDK checks the signature over the text of the body, so bytes that are
        # not UTF-8 cannot be checked at all, and Stripe never sends them.
        raise InvalidSignature("The webhook body is not UTF-8, so it cannot be verified.") from exc

    try:
        event = json.loads(payload)
        kind = event["type"]
        event_id = event["id"]
        obj = event["data"]["object"]
        if not (isinstance(kind, str) and isinstance(event_id, str) and isinstance(obj, dict)):
            raise TypeError("unexpected types")
        return _event(event_id, kind, obj)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("The webhook body is not a Stripe event.") from exc


def _event(event_id: str, kind: str, obj: dict[str, Any]) -> GatewayEvent | None:
    """A GatewayEvent from the event's ``data.object``; KeyError/TypeError if malformed."""
    if kind == "payment_intent.succeeded":
        return GatewayEvent(
            id=event_id,
            kind="succeeded",
            payment_ref=_text(obj["id"]),
            amount_minor=_int(obj.get("amount_received") or obj["amount"]),
        )
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error")
        message = error.get("message") if isinstance(error, dict) else None
        return GatewayEvent(
            id=event_id,
            kind="failed",
            payment_ref=_text(obj["id"]),
            amount_minor=_int(obj["amount"]),
            failure_message=_text(message) if message is not None else None,
        )
    if kind == "charge.refunded":
        intent = obj.get("payment_intent")
        if isinstance(intent, dict):  # expanded
            intent = intent.get("id")
        if not intent:
            return None  # a charge made without a PaymentIntent is none of ours
        return GatewayEvent(
            id=event_id,
            kind="refunded",
            payment_ref=_text(intent),
            amount_minor=_int(obj["amount"]),
            amount_refunded_minor=_int(obj["amount_refunded"]),
        )
    return None


def _payment(intent: stripe.PaymentIntent) -> GatewayPayment:
    """Stripe's PaymentIntent as the GatewayPayment our services understand.

    The refunded amount is read from the latest charge when it came expanded
    (``retrieve`` asks for that) and is 0 otherwise, as for a fresh intent.
    """
    error = intent.last_payment_error
    failure_message: str | None = None
    if intent.status == "succeeded":
        status = "succeeded"
    elif intent.status == "canceled":
        status = "cancelled"
    elif intent.status == "requires_payment_method" and error is not None:
        status = "failed"
        failure_message = error.message or "The payment was declined."
    else:
        status = "pending"
    charge = intent.latest_charge
    refunded = charge.amount_refunded if isinstance(charge, stripe.Charge) else 0
    return GatewayPayment(
        ref=intent.id,
        status=status,
        amount_minor=intent.amount,
        currency=intent.currency.upper(),
        amount_refunded_minor=refunded,
        client_secret=intent.client_secret,
        failure_message=failure_message,
    )


@contextmanager
def _translated_errors(action: str) -> Iterator[None]:
    """Raise the SDK's errors as PaymentUnavailable (retry later) or PaymentRefused (never).

    Only a 4xx answer is final. No status (the network), a 5xx, or an odd answer that
    the SDK could not read are worth another try, as are 409 and rate limits.
    """
    try:
        yield
    except stripe.StripeError as exc:
        status = exc.http_status
        message = f"Stripe could not {action}" + (f" ({status})" if status else "")
        # The SDK's network errors run over several lines; logs want one.
        message += ": " + " ".join((exc.user_message or type(exc).__name__).split())
        is_final = (
            status is not None
            and 400 <= status < 500
            and status not in _RETRYABLE_STATUSES
            # Older API versions sent rate limits as 400s; the SDK still knows them.
            and not isinstance(exc, stripe.RateLimitError)
        )
        if is_final:
            raise PaymentRefused(message) from exc
        raise PaymentUnavailable(message) from exc


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, not {type(value).__name__}")
    return value
