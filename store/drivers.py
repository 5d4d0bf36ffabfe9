"""The driver registry: create, list, read, rename, deactivate; and a plan's driver.

A driver is named by a ``driver_id`` the OMS chooses (1-64 characters of
``[A-Za-z0-9._-]``, like a vehicle id). Deactivating keeps the row — the driver's trips,
events and scorecards stay readable — but a new plan may not name an inactive driver
and a token bound to one may not submit proofs of delivery.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[dict[str, Any]]

DRIVER_COLUMNS = "driver_id, name, active, created_at, updated_at"


class DriverConflict(Exception):
    """The driver cannot be used or created as asked (HTTP 409)."""


async def create_driver(conn: Conn, driver_id: str, name: str | None) -> dict[str, Any]:
    """Register a driver; :class:`DriverConflict` when the id is taken."""
    cur = await conn.execute(
        f"INSERT INTO drivers (driver_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING "
        f"RETURNING {DRIVER_COLUMNS}",
        (driver_id, name),
    )
    row = await cur.fetchone()
    if row is None:
        raise DriverConflict(f"driver {driver_id} already exists")
    return row


async def get_driver(conn: Conn, driver_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {DRIVER_COLUMNS} FROM drivers WHERE driver_id = %s", (driver_id,)
    )
    return await cur.fetchone()


async def list_drivers(conn: Conn, active: bool | None = None) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {DRIVER_COLUMNS} FROM drivers "
        "WHERE %(active)s::boolean IS NULL OR active = %(active)s ORDER BY driver_id",
        {"active": active},
    )
    return list(await cur.fetchall())


async def update_driver(
    conn: Conn, driver_id: str, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """Set ``name`` and/or ``active`` (the keys present in ``changes``); None when there is
    no such driver."""
    sets = [f"{k} = %({k})s" for k in ("name", "active") if k in changes]
    cur = await conn.execute(
        f"UPDATE drivers SET {', '.join([*sets, 'updated_at = now()'])} "
        f"WHERE driver_id = %(driver_id)s RETURNING {DRIVER_COLUMNS}",
        {**changes, "driver_id": driver_id},
    )
    return await cur.fetchone()


async def assign(conn: Conn, driver_id: str, name: str | None) -> None:
    """Make ``driver_id`` usable on a plan (inside the plan's transaction): an unknown
    driver is registered with ``name``; a known one keeps its name (rename it through the
    API) unless it has none; an inactive one is refused (:class:`DriverConflict`). The
    row stays locked until the plan commits, so a concurrent deactivation waits."""
    await conn.execute(
        "INSERT INTO drivers (driver_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (driver_id, name),
    )
    cur = await conn.execute(
        "SELECT active, name FROM drivers WHERE driver_id = %s FOR UPDATE", (driver_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    if not row["active"]:
        raise DriverConflict(f"driver {driver_id} is deactivated")
    if row["name"] is None and name is not None:
        await conn.execute(
            "UPDATE drivers SET name = %s, updated_at = now() WHERE driver_id = %s",
            (name, driver_id),
        )
