"""``GET /metrics``: Prometheus text exposition (public, for the scraper).

What it shows: the engine's series from ``routewatch.metrics`` (pings received,
rejected by reason, stored, events by type, processing lag, batch sizes, ...) plus the
API's own request counter and latency histogram defined here.

Engine and API in different processes (``routewatch serve`` runs the API as a child):
we use prometheus_client's *multiprocess mode*. Export ``PROMETHEUS_MULTIPROC_DIR``
(an empty, writable directory) before starting routewatch; both processes inherit it,
write their samples to memory-mapped files there, and this endpoint merges them. The
variable must be set before the process starts — prometheus_client reads it at import.
Without it, the endpoint serves this process's default registry (enough when engine and
API share a process, as in tests).
"""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import routewatch.metrics  # noqa: F401  # registers the engine's series in this process

router = APIRouter(tags=["metrics"])

API_REQUESTS = Counter(
    "routewatch_api_requests_total",
    "HTTP requests answered by the API, by method, route template and status code.",
    ["method", "route", "status"],
)
API_LATENCY = Histogram(
    "routewatch_api_request_seconds",
    "Time from request arrival to the response start (headers), seconds; for streams "
    "this is the time to open the stream, not its lifetime.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@router.get("/metrics", include_in_schema=True, response_class=Response)
async def metrics() -> Response:
    """Prometheus text format, version 0.0.4."""
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Pure ASGI middleware (so streaming responses pass through untouched) counting
    requests by route *template* — never the raw path, whose ids would explode the
    label set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
                API_LATENCY.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            API_REQUESTS.labels(scope["method"], _route(scope), str(status_code)).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    # Mounted static files have no route object; keep one label for them.
    return "/static" if str(scope.get("path", "")).startswith("/static") else "unmatched"


def install(app: FastAPI) -> None:
    """Called by ``api.main.create_app`` for router modules that define it."""
    app.add_middleware(RequestMetrics)
