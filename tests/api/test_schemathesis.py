"""schemathesis against the live OpenAPI schema: every operation, generated requests sent
with a token of each role and with none, against the real app (uvicorn) and database.

Checks: no 5xx, and every response conforms to the schema — documented status code,
content type, headers and body. Examples per operation are bounded (``MAX_EXAMPLES``) so
the whole run stays well under a minute on two cores.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg.rows import dict_row
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from routewatch import services
from routewatch.settings import Settings
from store import tokens
from tests.api.factories import make_plan
from tests.processes import ProcessOutput, stop_politely

MAX_EXAMPLES = 20
#: the endless Server-Sent Events streams: a generated request would never end
ENDLESS = r"/stream$"
CHECKS = (
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)


class Server:
    """The API under uvicorn in a child process: the server gets its own core instead of
    sharing this process's GIL with schemathesis' data generation."""

    def __init__(self, database_url: str) -> None:
        self.port = services.free_port()
        env = {k: v for k, v in os.environ.items() if k != "ROUTEWATCH_WEBHOOK_URL"}
        env |= {
            "ROUTEWATCH_DATABASE_URL": database_url,
            "ROUTEWATCH_TRACK_BURST": "1000000",  # rate limiting is not under test here
            "ROUTEWATCH_LOG_LEVEL": "WARNING",
        }
        address = ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", *address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ProcessOutput(self._proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 30
        while not services.tcp_open("127.0.0.1", self.port, 0.2):
            assert self._proc.poll() is None, "".join(self.output.seen)
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_politely(self._proc, timeout_s=15)


async def _make_tokens(database_url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        return {
            role: (await tokens.create_token(conn, [role], f"schemathesis {role}"))[1]
            for role in ("oms", "supervisor", "driver")
        }


@pytest.fixture(scope="module")
def api_server(database_url: str) -> Iterator[Server]:
    with Server(database_url) as server:
        yield server


@pytest.fixture(scope="module")
def role_headers(database_url: str) -> list[dict[str, str]]:
    made = asyncio.run(_make_tokens(database_url))
    return [{}] + [{"Authorization": f"Bearer {t}"} for t in made.values()]


# The schema is the app's own (building the app opens nothing; the lifespan does).
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(
    path_regex=ENDLESS
)


@pytest.fixture(scope="module")
def known_ids(api_server: Server, database_url: str) -> dict[str, str]:
    """Path parameters that name real resources: one trip with its vehicle, orders and
    tracking numbers (generated ids alone would only ever reach the 404s)."""
    token = asyncio.run(_make_tokens(database_url))["oms"]
    response = httpx.post(
        f"{api_server.url}/v1/trips",
        json=make_plan(2, trip_id=f"T-fuzz-{uuid.uuid4().hex[:6]}"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    trip = response.json()
    order = trip["orders"][0]
    return {
        "trip_id": trip["trip_id"],
        "vehicle_id": trip["vehicle_id"],
        "order_id": order["order_id"],
        "tracking_number": order["tracking_number"],
    }


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)
def test_api_conforms(
    case: Any, api_server: Server, role_headers: list[dict[str, str]], known_ids: dict[str, str]
) -> None:
    variants = [dict(case.path_parameters or {})]
    if real := {k: v for k, v in known_ids.items() if k in (case.path_parameters or {})}:
        variants.append({**variants[0], **real})  # the same request against a real resource
    for path_parameters in variants:
        case.path_parameters = path_parameters
        # real resources: the tokens only (the 401 without one is the same either way)
        for headers in role_headers if path_parameters is variants[0] else role_headers[1:]:
            response = case.call(base_url=api_server.url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)


def test_stream_without_token_is_refused(api_server: Server) -> None:
    """The excluded stream still refuses anonymous callers (it never streams to them)."""
    response = httpx.get(f"{api_server.url}/v1/alerts/stream", timeout=10)
    assert response.status_code == 401
