"""The FastAPI application (CONTRACT §5).

``create_app(settings)`` builds the app: a lifespan that opens the async psycopg pool,
one router per resource (``ROUTERS``: add a line to add a resource), the static files
under ``api/static`` at ``/static``, and error bodies that are always ``{"detail": ...}``
— for 422 a list naming every problem.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api.errors import document_errors
from api.limits import BodySizeLimit
from compliance.text import storable
from routewatch import __version__
from routewatch.settings import Settings, get_settings
from routewatch.webhooks import run_dispatcher
from store.db import make_pool

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Modules under ``api.routes`` exposing ``router``; included in this order.
ROUTERS: list[str] = [
    "health",
    "vehicles",
    "trips",
    "drivers",
    "orders",
    "track",
    "alerts",
    "reports",
    "metrics",
    "live",
    "dashboard",
]


def validation_problems(errors: Any) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as ``[{"loc", "msg", "type"}]`` — without echoing the
    offending input back (a POD body can carry megabytes of base64). A location can be
    an object key the client sent: it is shown escaped when it could not be encoded."""
    return [
        {
            "loc": [storable(p) if isinstance(p, str) else p for p in e.get("loc", ())],
            "msg": storable(str(e.get("msg", ""))),
            "type": e.get("type", ""),
        }
        for e in errors
    ]


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_problems(exc.errors())}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = make_pool(settings.database_url, name="routewatch-api")
        # Don't wait for the pool to fill: /healthz must answer (503) while the
        # database is down, and connections are retried in the background.
        await pool.open(wait=False)
        app.state.pool = pool
        stop = asyncio.Event()
        # The OMS webhook dispatcher lives with the API process (so `routewatch serve`
        # runs it); several API processes are safe: rows are claimed with SKIP LOCKED.
        dispatcher = (
            asyncio.create_task(run_dispatcher(settings, stop, pool), name="webhook-dispatcher")
            if settings.webhook_url
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if dispatcher is not None:
                await dispatcher
            await pool.close()

    app = FastAPI(
        title="routewatch",
        version=__version__,
        description="GPS telematics ingestion and route compliance: trips, orders, "
        "live vehicles, alerts, customer tracking.",
        lifespan=lifespan,
        docs_url="/docs",
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    for name in ROUTERS:
        module = importlib.import_module(f"api.routes.{name}")
        app.include_router(module.router)
        if install := getattr(module, "install", None):  # e.g. middleware a router needs
            install(app)
    document_errors(app)
    STATIC_DIR.mkdir(exist_ok=True)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
