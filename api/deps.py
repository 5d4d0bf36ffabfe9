"""Dependencies shared by the routers, as ``Annotated`` aliases.

``PoolDep`` is the app's async psycopg pool (opened by the lifespan in ``api.main``),
``ConnDep`` one autocommit connection from it for the duration of a request (open an
explicit ``conn.transaction()`` where several statements must commit together), and
``SettingsDep`` the app's settings. Role checks live in ``api.auth``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from routewatch.settings import Settings


def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_conn(pool: PoolDep) -> AsyncIterator[AsyncConnection[dict[str, Any]]]:
    async with pool.connection() as conn:
        # store.db.make_pool configures dict rows; the pool's type doesn't carry that.
        yield cast(AsyncConnection[dict[str, Any]], conn)


ConnDep = Annotated[AsyncConnection[dict[str, Any]], Depends(get_conn)]
