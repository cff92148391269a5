"""The one place where errors become HTTP responses.

Every 4xx and 5xx body has the shape ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from boxoffice.domain import errors
from boxoffice.observability import CONFLICTS

log = logging.getLogger("boxoffice.api")

STATUS: list[tuple[type[errors.DomainError], int]] = [
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidQuery, 400),
    (errors.InvalidSignature, 400),
    (errors.InvalidInput, 422),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.Busy, 503),
]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def status_of(exc: errors.DomainError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    status = status_of(exc)
    if status == 409:
        CONFLICTS.labels(exc.code).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "location": ".".join(str(part) for part in err["loc"]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]
    if any(p["type"] == "json_invalid" for p in problems):
        return JSONResponse(
            error_body(
                "malformed_json", "The request body is not valid JSON.", {"errors": problems}
            ),
            400,
        )
    first = problems[0] if problems else {"location": "request", "message": "invalid"}
    message = f"Invalid {first['location']}: {first['message']}"
    return JSONResponse(error_body("validation_error", message, {"errors": problems}), 422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "Something went wrong on our side."), 500)


def register(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
