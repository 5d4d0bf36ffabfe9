"""schemathesis against the live OpenAPI schema: every operation, generated requests sent
with a token of each role and with none, against the real app (uvicorn) and database.

Checks: no 5xx, and every response conforms to the schema — documented status code,
content type, headers and body. Examples per operation are bounded (``MAX_EXAMPLES``) so
the whole run stays well under a minute on two cores.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
import uvicorn
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

MAX_EXAMPLES = 40
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
    """The app under uvicorn in a thread (its own event loop, so the lifespan's pool lives
    where the requests are served)."""

    def __init__(self, settings: Settings) -> None:
        self.port = services.free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api-under-test")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "API did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)


async def _make_tokens(database_url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        return {
            role: (await tokens.create_token(conn, [role], f"schemathesis {role}"))[1]
            for role in ("oms", "supervisor", "driver")
        }


@pytest.fixture(scope="module")
def api_server(database_url: str, mqtt_url: str) -> Iterator[Server]:
    settings_ = Settings(database_url=database_url, mqtt_url=mqtt_url, track_burst=1_000_000)
    with Server(settings_) as server:
        yield server


@pytest.fixture(scope="module")
def role_headers(database_url: str) -> list[dict[str, str]]:
    made = asyncio.run(_make_tokens(database_url))
    return [{}] + [{"Authorization": f"Bearer {t}"} for t in made.values()]


# The schema is the app's own (building the app opens nothing; the lifespan does).
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(
    path_regex=ENDLESS
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)
def test_api_conforms(case: Any, api_server: Server, role_headers: list[dict[str, str]]) -> None:
    for headers in role_headers:
        response = case.call(base_url=api_server.url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)


def test_stream_without_token_is_refused(api_server: Server) -> None:
    """The excluded stream still refuses anonymous callers (it never streams to them)."""
    response = httpx.get(f"{api_server.url}/v1/alerts/stream", timeout=10)
    assert response.status_code == 401
