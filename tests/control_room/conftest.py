"""Fixtures: the real API app served by uvicorn on a free port, and API tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from api.main import create_app
from routewatch.settings import Settings
from store.tokens import create_token
from tests.api.live_server import ThreadServer


@pytest.fixture(scope="session")
def api_url(database_url: str) -> Iterator[str]:
    """Base URL of a real uvicorn server running ``create_app`` against the test DB."""
    with ThreadServer(create_app(Settings(database_url=database_url)), "uvicorn-control-room") as s:
        yield s.url


def make_token(database_url: str, role: str, name: str) -> str:
    async def _create() -> str:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            _, token = await create_token(conn, [role], name)
            return token

    return asyncio.run(_create())


@pytest.fixture
def supervisor_token(db: psycopg.Connection, database_url: str) -> str:
    return make_token(database_url, "supervisor", "alice")


@pytest.fixture
def oms_token(db: psycopg.Connection, database_url: str) -> str:
    return make_token(database_url, "oms", "oms-bot")
