"""API test fixtures: the real app against the session's migrated test database.

The app runs in-process through ``httpx.ASGITransport`` with its lifespan entered by
hand (ASGITransport does not send lifespan events), so the pool is real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.main import create_app
from routewatch.settings import Settings
from store import tokens


@pytest.fixture
def settings(database_url: str, mqtt_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        webhook_secret="test-secret",
        track_burst=1000,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def app(settings: Settings, db: psycopg.Connection) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with AsyncClient(transport=transport, base_url="http://rw.test") as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def aconn(database_url: str, db: psycopg.Connection) -> AsyncIterator[AsyncConnection[Any]]:
    conn = await AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row)
    async with conn:
        yield conn


@dataclass
class Tokens:
    oms: str
    supervisor: str
    driver: str
    all_roles: str
    revoked: str

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


@pytest_asyncio.fixture(loop_scope="session")
async def tok(aconn: AsyncConnection[Any]) -> Tokens:
    made = {}
    for role in ("oms", "supervisor", "driver"):
        made[role] = (await tokens.create_token(aconn, [role], f"test {role}"))[1]
    made["all_roles"] = (await tokens.create_token(aconn, ["oms", "supervisor", "driver"]))[1]
    rid, revoked = await tokens.create_token(aconn, ["oms", "supervisor", "driver"], "revoked")
    await tokens.revoke_token(aconn, rid)
    return Tokens(revoked=revoked, **made)
