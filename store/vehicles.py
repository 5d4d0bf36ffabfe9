"""Vehicle queries for the API: live state and stored tracks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from store.seqgaps import RECENT_GAPS

Conn = AsyncConnection[dict[str, Any]]

#: a vehicle this far behind schedule counts as late (as on the dashboard, and the
#: compliance engine's default ``late_s``)
LATE_AFTER_S = 600

#: One row for the whole fleet, classified as the dashboard does (api/static/dashboard):
#: on the road = its trip is active; of those, signal lost, off route, late, else on route.
FLEET_SUMMARY_SQL = f"""
WITH road AS (
    SELECT CASE WHEN s.status = 'signal_lost' THEN 'lost'
                WHEN s.on_route IS FALSE OR s.status = 'off_route' THEN 'off'
                WHEN coalesce(s.schedule_delay_s, 0) > {LATE_AFTER_S} THEN 'late'
                ELSE 'on' END AS k
    FROM vehicle_state s JOIN trips t ON t.trip_id = s.trip_id AND t.status = 'active'
)
SELECT count(*) AS on_road,
       count(*) FILTER (WHERE k = 'on') AS on_route,
       count(*) FILTER (WHERE k = 'off') AS off_route,
       count(*) FILTER (WHERE k = 'late') AS late,
       count(*) FILTER (WHERE k = 'lost') AS signal_lost,
       (SELECT count(*) FROM alerts WHERE status = 'open') AS open_alerts,
       (SELECT coalesce(sum(missing), 0) FROM {RECENT_GAPS} g) AS pings_missing
FROM road
"""


async def upsert_vehicle(conn: Conn, vehicle_id: str) -> None:
    await conn.execute(
        "INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT (vehicle_id) DO NOTHING",
        (vehicle_id,),
    )


async def live_states(conn: Conn) -> list[dict[str, Any]]:
    """Every known vehicle (registered or merely seen) with its last state, if any, and
    the driver of the trip it is on."""
    cur = await conn.execute(
        f"""SELECT coalesce(v.vehicle_id, s.vehicle_id) AS vehicle_id, v.label,
                  coalesce(v.active, true) AS active,
                  s.ts, s.lat, s.lon, s.speed_kmh, s.heading_deg, s.trip_id, s.route_m,
                  s.offset_m, s.on_route, s.schedule_delay_s, s.status, s.updated_at,
                  t.driver_id, d.name AS driver_name,
                  coalesce(q.missing, 0) AS pings_missing, coalesce(q.gaps, 0) AS seq_gaps,
                  coalesce(g.missing, 0) AS pings_missing_recent
           FROM vehicles v FULL OUTER JOIN vehicle_state s ON s.vehicle_id = v.vehicle_id
           LEFT JOIN trips t ON t.trip_id = s.trip_id
           LEFT JOIN drivers d ON d.driver_id = t.driver_id
           LEFT JOIN tracker_seq q ON q.vehicle_id = coalesce(v.vehicle_id, s.vehicle_id)
           LEFT JOIN (SELECT vehicle_id, sum(missing) AS missing FROM {RECENT_GAPS} r
                       GROUP BY vehicle_id) g
                  ON g.vehicle_id = coalesce(v.vehicle_id, s.vehicle_id)
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
