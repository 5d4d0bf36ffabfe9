"""Connection pools. The engine and the API each hold one async pool per process."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


async def _configure(conn: AsyncConnection) -> None:
    await conn.set_autocommit(True)


def make_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 8, name: str = "routewatch"
) -> AsyncConnectionPool:
    """An unopened pool (``await pool.open()`` or ``async with``) of autocommit connections
    returning dict rows; callers open explicit transactions where they need them."""
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        configure=_configure,
        kwargs={"row_factory": dict_row},
    )
