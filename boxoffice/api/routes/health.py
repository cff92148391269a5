"""Liveness for load balancers: answers 200 when the database is reachable."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from boxoffice.api.deps import Db
from boxoffice.api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def healthz(db: Db) -> JSONResponse:
    ok = db.ping()
    body = HealthOut(status="ok" if ok else "unavailable", database="ok" if ok else "unreachable")
    return JSONResponse(body.model_dump(by_alias=True), status_code=200 if ok else 503)
