"""Prometheus metrics: HTTP request counts and latencies, the rollup's health."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Depends, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagemeter import rollup
from usagemeter.db import one
from usagemeter.web import ApiError, Conn

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "usagemeter_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "usagemeter_http_request_duration_seconds",
    "HTTP request latency, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)

TICK_ERRORS = Counter(
    "usagemeter_rollup_tick_errors",
    "Rollup ticks of this process that failed.",
    registry=REGISTRY,
)
# Read from the database at each scrape: ticks may run in any process or in pg_cron.
ROLLUP = {
    "queue_depth": Gauge(
        "usagemeter_rollup_queue_depth",
        "Rows of usage changes queued for the rollup (a statement's, per key and quarter hour).",
        registry=REGISTRY,
    ),
    "held": Gauge(
        "usagemeter_rollup_held",
        "Queued changes a tick could not fold and holds (see `usagemeter status`); reads"
        " stay exact.",
        registry=REGISTRY,
    ),
    "oldest_pending_seconds": Gauge(
        "usagemeter_rollup_oldest_pending_seconds",
        "Age of the oldest queued change (reads stay exact; they do more raw work).",
        registry=REGISTRY,
    ),
    "last_tick_at": Gauge(
        "usagemeter_rollup_last_tick_timestamp_seconds",
        "When the last tick committed (Unix time).",
        registry=REGISTRY,
    ),
    "ticks": Gauge(
        "usagemeter_rollup_ticks_total", "Ticks committed, by any process.", registry=REGISTRY
    ),
    "rebuild_keys": Gauge(
        "usagemeter_rollup_rebuild_keys",
        "Runtime days still to re-cut for newly used UTC offsets.",
        registry=REGISTRY,
    ),
    "zones_building": Gauge(
        "usagemeter_rollup_zones_building",
        "Runtime zones whose day buckets wait to be built.",
        registry=REGISTRY,
    ),
}


class Measure:
    """ASGI middleware: count and time every request by its route template (a plain ASGI
    middleware: Starlette's BaseHTTPMiddleware runs each request in a task of its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = "500"

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], route, status).inc()


async def readyz(conn: Conn) -> dict[str, str]:
    """Readiness: the database answers (503 `database unavailable` while it does not)."""
    await one(conn, rollup.Q.health)
    return {"status": "ready"}


def scraper(request: Request) -> None:
    """When USAGEMETER_METRICS_TOKEN is set, /metrics needs it as a bearer token (checked
    before a database connection is taken)."""
    token = request.app.state.config.metrics_token
    sent = request.headers.get("authorization")
    if token and not hmac.compare_digest((sent or "").encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "invalid token" if sent else "missing authorization")


async def metrics(_: Annotated[None, Depends(scraper)], conn: Conn) -> Response:
    """Prometheus text exposition: request counts and latencies per route and the rollup's
    health, nothing per workspace. Open unless USAGEMETER_METRICS_TOKEN is set."""
    row = await one(conn, rollup.Q.health)
    for key, gauge in ROLLUP.items():
        gauge.set(float((row or {}).get(key) or 0))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
