"""Vehicle queries for the API: live state and stored tracks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[dict[str, Any]]


async def upsert_vehicle(conn: Conn, vehicle_id: str) -> None:
    await conn.execute(
        "INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT (vehicle_id) DO NOTHING",
        (vehicle_id,),
    )


async def live_states(conn: Conn) -> list[dict[str, Any]]:
    """Every known vehicle (registered or merely seen) with its last state, if any."""
    cur = await conn.execute(
        """SELECT coalesce(v.vehicle_id, s.vehicle_id) AS vehicle_id, v.label,
                  coalesce(v.active, true) AS active,
                  s.ts, s.lat, s.lon, s.speed_kmh, s.heading_deg, s.trip_id, s.route_m,
                  s.offset_m, s.on_route, s.schedule_delay_s, s.status, s.updated_at
           FROM vehicles v FULL OUTER JOIN vehicle_state s ON s.vehicle_id = v.vehicle_id
           ORDER BY 1"""
    )
    return list(await cur.fetchall())


async def vehicle_exists(conn: Conn, vehicle_id: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM vehicles WHERE vehicle_id = %(v)s) "
        "OR EXISTS (SELECT 1 FROM vehicle_state WHERE vehicle_id = %(v)s) AS found",
        {"v": vehicle_id},
    )
    row = await cur.fetchone()
    return bool(row and row["found"])


async def track_points(
    conn: Conn, vehicle_id: str, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """Stored pings of one vehicle in ``[start, end)``, oldest first, at most ``limit``."""
    cur = await conn.execute(
        """SELECT ts, lat, lon, speed_kmh, trip_id, route_m, offset_m, on_route
           FROM pings WHERE vehicle_id = %s AND ts >= %s AND ts < %s
           ORDER BY ts LIMIT %s""",
        (vehicle_id, start, end, limit),
    )
    return list(await cur.fetchall())
