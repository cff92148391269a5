"""The one hierarchy of domain errors.

Each error has a stable ``code`` and a message safe to show to the user. No HTTP
status lives here: the API maps error classes to statuses in one place.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the domain and services raise on purpose."""

    code = "domain_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request is valid but the current state refuses it."""

    code = "conflict"


class SlotFull(Conflict):
    code = "slot_full"


class SlotUnavailable(Conflict):
    code = "slot_unavailable"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class IdempotencyMismatch(Conflict):
    code = "idempotency_key_reused"


class InvalidInput(DomainError):
    """The request is well-formed but its values make no sense."""

    code = "invalid_input"


class InvalidQuery(InvalidInput):
    """A query that cannot be answered as asked (an inverted or too long window)."""

    code = "invalid_query"


class InvalidSignature(DomainError):
    """A signed message (a payment gateway's webhook) whose signature does not verify:
    missing, stale, tampered or made with another key."""

    code = "invalid_signature"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class Busy(DomainError):
    """The database is too busy to answer now; the client may retry."""

    code = "busy"
