"""GET /metrics on the review server: Prometheus text for a scraper holding the metrics bearer token.

No reviewer sign-in: Prometheus sends `Authorization: Bearer <SKINSCREEN_METRICS_TOKEN>`. Without a
token set, the route answers 401 to everyone (site names and flag rates are not for the public).
With SKINSCREEN_METRICS_PORT set, the metrics are served on that (bound) port only and the app has
no /metrics route. What is measured lives in `skinscreen.metrics`.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from skinscreen.config import Settings
from skinscreen.metrics import review_registry


def metrics_router(settings: Settings, sessions: Any) -> APIRouter:
    """The /metrics route (or, with a metrics port, an empty router and a server on that port)."""
    registry = review_registry(settings, sessions)
    router = APIRouter()
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=registry)
        return router
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if token is None:
            raise HTTPException(
                status_code=401,
                detail="metrics need a bearer token; set SKINSCREEN_METRICS_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(
                status_code=401,
                detail="metrics need the bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
