"""Fixtures: the real API app served by uvicorn on a free port, and API tokens."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import uvicorn
from psycopg.rows import dict_row

from api.main import create_app
from routewatch.settings import Settings
from store.tokens import create_token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def api_url(database_url: str) -> Iterator[str]:
    """Base URL of a real uvicorn server running ``create_app`` against the test DB."""
    port = free_port()
    app = create_app(Settings(database_url=database_url))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-control-room", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


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
