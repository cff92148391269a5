"""A local stand-in for the Stripe API, on loopback, that the real SDK can talk to.

    with running_stripe_stub() as stub:
        gateway = StripeGateway("sk_test_x", api_base=stub.url, max_network_retries=0)
        payment = gateway.create_payment(...)
        stub.succeed(payment.ref)
        body, header = signed(stub.event("payment_intent.succeeded", payment.ref), secret)

It speaks what the SDK sends: form-encoded bodies with bracketed keys, a Bearer key,
``Idempotency-Key`` on POSTs; and it answers with Stripe-shaped objects and errors.
Only PaymentIntents (create, retrieve with ``expand`` of ``latest_charge``) and refunds
exist. What the customer does on Stripe's side (pay, be declined) the test does with
``succeed``, ``fail`` and ``cancel``.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

_ID_ALPHABET = string.ascii_letters + string.digits
_INTENT_PATH = re.compile(r"^/v1/payment_intents/([A-Za-z0-9_]+)$")


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str  # without the query string
    params: dict[str, Any]  # the decoded form body (POST) or query (GET), values as sent
    headers: dict[str, str]


class StripeApiError(Exception):
    """Answer with a Stripe error body: ``{"error": {"type", "code", "message", "param"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "error": {"type": type, "code": code, "message": message, "param": param}
        }


@dataclass
class StripeStub:
    """The stub's state and its test controls; every method is safe from any thread."""

    url: str
    requests: list[StubRequest] = field(default_factory=list)
    _intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    _refunds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (Idempotency-Key, path) -> (params, status, body) of the first successful answer
    _replays: dict[tuple[str, str], tuple[dict[str, Any], int, dict[str, Any]]] = field(
        default_factory=dict
    )
    _failures_left: int = 0
    _failure_status: int = 500
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- test controls ----------------------------------------------------------------

    def succeed(self, pi_id: str) -> None:
        """The customer paid: the intent succeeds with a charge for its whole amount."""
        with self._lock:
            intent = self._intent(pi_id)
            charge = {
                "id": _new_id("ch_"),
                "object": "charge",
                "amount": intent["amount"],
                "amount_captured": intent["amount"],
                "amount_refunded": 0,
                "currency": intent["currency"],
                "payment_intent": pi_id,
                "refunded": False,
                "paid": True,
                "status": "succeeded",
                "created": int(time.time()),
                "livemode": False,
            }
            self._charges[charge["id"]] = charge
            intent.update(
                status="succeeded",
                amount_received=intent["amount"],
                latest_charge=charge["id"],
                last_payment_error=None,
            )

    def fail(self, pi_id: str, message: str = "Your card was declined.") -> None:
        """The customer's card was declined: Stripe asks for another payment method."""
        with self._lock:
            self._intent(pi_id).update(
                status="requires_payment_method",
                last_payment_error={
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": message,
                },
            )

    def cancel(self, pi_id: str, reason: str = "abandoned") -> None:
        """The intent was cancelled (by the platform or because it was abandoned)."""
        with self._lock:
            self._intent(pi_id).update(
                status="canceled", canceled_at=int(time.time()), cancellation_reason=reason
            )

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next ``n`` API requests with a Stripe error of this status.

        500s are ``api_error``; 429 a rate limit; 409 a lock timeout (another request is
        using the object).
        """
        with self._lock:
            self._failures_left = n
            self._failure_status = status

    def payment_intent(self, pi_id: str) -> dict[str, Any]:
        """A copy of the PaymentIntent as the API would return it (``latest_charge`` an id)."""
        with self._lock:
            copy: dict[str, Any] = _copy(self._intent(pi_id))
            return copy

    def payment_intent_ids(self) -> list[str]:
        """The ids of every PaymentIntent created, oldest first."""
        with self._lock:
            return list(self._intents)

    def refunds(self, pi_id: str) -> list[dict[str, Any]]:
        """The refunds made on this PaymentIntent, oldest first."""
        with self._lock:
            copies: list[dict[str, Any]] = _copy(self._refunds.get(pi_id, []))
            return copies

    def event(self, type: str, pi_id: str, *, event_id: str | None = None) -> dict[str, Any]:
        """A webhook event about this intent; ``charge.refunded`` carries its latest charge."""
        with self._lock:
            intent = self._intent(pi_id)
            if type.startswith("charge."):
                if intent["latest_charge"] is None:
                    raise ValueError(f"{pi_id} has no charge yet; call succeed() first")
                obj = self._charges[intent["latest_charge"]]
            else:
                obj = intent
            return {
                "id": event_id or _new_id("evt_"),
                "object": "event",
                "type": type,
                "created": int(time.time()),
                "api_version": stripe.api_version,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": _copy(obj)},
            }

    # --- the API ----------------------------------------------------------------------

    def handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one API request: (status, JSON body, extra headers)."""
        with self._lock:
            self.requests.append(StubRequest(method, path, params, headers))
            try:
                return self._handle(method, path, params, headers)
            except StripeApiError as error:
                return error.status, error.body, {}

    def _handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        lowered = {name.lower(): value for name, value in headers.items()}
        if not re.fullmatch(r"Bearer sk_\S+", lowered.get("authorization", "")):
            raise StripeApiError(401, "Invalid API Key provided.")
        if self._failures_left > 0:
            self._failures_left -= 1
            status = self._failure_status
            if status == 429:
                raise StripeApiError(429, "Too many requests.", code="rate_limit")
            if status == 409:
                raise StripeApiError(
                    409,
                    "This object cannot be accessed right now because another API request "
                    "or Stripe process is currently accessing it.",
                    code="lock_timeout",
                )
            raise StripeApiError(status, "An unknown error occurred.", type="api_error")

        key = lowered.get("idempotency-key")
        if method == "POST" and key is not None:
            replay = self._replays.get((key, path))
            if replay is not None:
                first_params, status, body = replay
                if first_params != params:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                        type="idempotency_error",
                    )
                return status, body, {"Idempotent-Replayed": "true"}

        # A copy, so a replay answers what was answered then, not the object as it is now.
        status, body = self._route(method, path, params)
        body = _copy(body)
        if method == "POST" and key is not None:
            self._replays[(key, path)] = (params, status, body)
        return status, body, {}

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path == "/v1/payment_intents":
            return 200, self._create_intent(params)
        if method == "POST" and path == "/v1/refunds":
            return 200, self._create_refund(params)
        match = _INTENT_PATH.match(path)
        if method == "GET" and match:
            intent = _copy(self._intent(match[1]))
            if "latest_charge" in _as_list(params.get("expand")) and intent["latest_charge"]:
                intent["latest_charge"] = _copy(self._charges[intent["latest_charge"]])
            return 200, intent
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _positive_int(params, "amount")
        currency = _required(params, "currency")
        fee = params.get("application_fee_amount")
        methods = params.get("automatic_payment_methods")
        pi_id = _new_id("pi_")
        intent: dict[str, Any] = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency.lower(),
            "status": "requires_payment_method",
            "client_secret": f"{pi_id}_secret_{_new_id('')}",
            "metadata": params.get("metadata", {}),
            "description": params.get("description"),
            "receipt_email": params.get("receipt_email"),
            "transfer_data": params.get("transfer_data"),
            "application_fee_amount": (
                _positive_int(params, "application_fee_amount") if fee is not None else None
            ),
            "automatic_payment_methods": (
                {"enabled": methods.get("enabled") == "true"} if isinstance(methods, dict) else None
            ),
            "last_payment_error": None,
            "latest_charge": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "created": int(time.time()),
            "livemode": False,
        }
        self._intents[pi_id] = intent
        return intent

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        pi_id = _required(params, "payment_intent")
        intent = self._intents.get(pi_id)
        if intent is None:
            raise StripeApiError(
                400,
                f"No such payment_intent: '{pi_id}'",
                code="resource_missing",
                param="payment_intent",
            )
        if intent["status"] != "succeeded" or intent["latest_charge"] is None:
            raise StripeApiError(
                400,
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                code="payment_intent_unexpected_state",
                param="payment_intent",
            )
        charge = self._charges[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = _positive_int(params, "amount") if "amount" in params else remaining
        if amount > remaining:
            raise StripeApiError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                code="amount_too_large",
                param="amount",
            )
        refund = {
            "id": _new_id("re_"),
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": pi_id,
            "status": "succeeded",
            "metadata": params.get("metadata", {}),
            "created": int(time.time()),
        }
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._refunds.setdefault(pi_id, []).append(refund)
        return refund

    def _intent(self, pi_id: str) -> dict[str, Any]:
        intent = self._intents.get(pi_id)
        if intent is None:
            raise StripeApiError(
                404, f"No such payment_intent: '{pi_id}'", code="resource_missing", param="intent"
            )
        return intent


def decode_form(text: str) -> dict[str, Any]:
    """``a[b][c]=1&l[0]=x&l[1]=y`` -> ``{"a": {"b": {"c": "1"}}, "l": ["x", "y"]}``.

    Values stay strings, as sent; ``[]`` and numbered keys make lists.
    """
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        name, _, rest = key.partition("[")
        *path, last = [name, *re.findall(r"\[([^\[\]]*)\]", "[" + rest)] if rest else [name]
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node[last or str(len(node))] = value  # "l[]=x&l[]=y" numbers its items in order
    form: dict[str, Any] = _lists(root)
    return form


def _lists(node: Any) -> Any:
    """Dicts whose keys are 0..n-1 become lists, as Stripe reads ``expand[0]=...``."""
    if not isinstance(node, dict):
        return node
    items = {k: _lists(v) for k, v in node.items()}
    if items and set(items) == {str(i) for i in range(len(items))}:
        return [items[str(i)] for i in range(len(items))]
    return items


def _copy(value: Any) -> Any:
    """A deep copy that shares nothing with the stub's state, as a JSON answer would."""
    return json.loads(json.dumps(value))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise StripeApiError(
            400, f"Missing required param: {name}.", code="parameter_missing", param=name
        )
    return value


def _positive_int(params: dict[str, Any], name: str) -> int:
    value = _required(params, name)
    if not value.isdigit() or int(value) < 1:
        raise StripeApiError(
            400,
            "This value must be greater than or equal to 1.",
            code="parameter_invalid_integer",
            param=name,
        )
    return int(value)


def signed(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, str]:
    """The webhook body for ``event`` and its ``Stripe-Signature`` header, as Stripe sends them."""
    body = json.dumps(event, indent=2).encode()
    return body, signature_header(body, secret, timestamp=timestamp)


def signature_header(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header (``t=...,v1=...``) for any body, signed now by default."""
    header: str = stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=timestamp
    )
    return header


class _Server(ThreadingHTTPServer):
    stub: StripeStub


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(decode_form(urlsplit(self.path).query))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self._answer(decode_form(body.decode("utf-8")))

    def _answer(self, params: dict[str, Any]) -> None:
        path = urlsplit(self.path).path
        status, body, headers = self.server.stub.handle(
            self.command, path, params, dict(self.headers.items())
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", _new_id("req_"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_stripe_stub() -> Iterator[StripeStub]:
    """A Stripe API stub on 127.0.0.1 until the block ends; point ``api_base`` at ``url``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = False  # server_close() joins the handler threads
    server.stub = StripeStub(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
