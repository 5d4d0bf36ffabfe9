"""Delivery-performance KPIs (CONTRACT §7) for a time range and optionally one vehicle.

Definitions (all over ``[from, to)``):

* an order counts when it was *delivered* in the range (first ``delivered`` row of
  ``order_status_history``); its vehicle is its trip's vehicle;
* **on time**: the stop's ``arrived_at`` lies inside ``[window_start, window_end]``
  (an order without a window counts as on time);
* **delay**: ``max(0, arrived_at - window_end)`` seconds, averaged over delivered orders;
* **lead time**: ``delivered_at - orders.created_at`` seconds, averaged;
* **driven distance**: between consecutive stored pings of a trip (attributed to the
  later ping's time), the two reported speeds integrated over the time between them
  (trapezoid) when both are known and at most 60 s apart, else great-circle metres:
  great-circle legs over GPS jitter while parked and single outlier fixes add distance
  nobody drove (a replayed scenario measured +48 %; speed-integrated was within 0.1 %);
* **route adherence**: of that distance, the share whose two ends were both inside the
  corridor (``pings.on_route``), in percent; a lone fix outside (or unjudged) between two
  inside is GPS noise, as for the engine's confirmed off-route, and counts inside;
* **speeding**: ``speeding`` events, and minutes from ``speeding_ended.duration_s``,
  both also per 100 km driven; **unplanned stop minutes** from
  ``unplanned_stop_ended.duration_s``;
* **POD coverage**: delivered orders with a proof of delivery, percent;
* **perfect delivery**: on time, POD present, and no exception (POD not damaged, not
  flagged for review), percent of delivered orders.

The orders and distance passes (:func:`orders_sql`, :func:`distance_sql`) also make the
driver scorecard's (``store.scorecard``), grouped by the trips' driver.

With TimescaleDB the event sums come from the ``kpi_daily_vehicle`` continuous
aggregate (migration 0021, real-time so un-materialised days are included) whenever
the range is whole UTC days; otherwise, and on plain PostgreSQL, from ``events``.
Both give the same figures (tested where the extension exists).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row, tuple_row

CAGG_NAME = "kpi_daily_vehicle"

#: how the orders pass groups its rows and what ``%(key)s`` filters on: the delivery
#: report is one row, optionally for one vehicle; the driver scorecard a row per driver
#: of the trips (``trips.driver_id``), optionally one driver's
_GROUPS = {
    "report": ("NULL::text", "t.vehicle_id", "TRUE"),
    "driver": ("t.driver_id", "t.driver_id", "t.driver_id IS NOT NULL"),
}


def orders_sql(group: str) -> str:
    """Delivered orders of ``[from, to)`` and their on-time, POD and perfect counts, as
    one row or one per driver (``group``, see ``_GROUPS``)."""
    column, key, present = _GROUPS[group]
    return f"""
WITH delivered AS (
    SELECT o.order_id, o.created_at, {column} AS grp,
           min(h.ts) AS delivered_at
      FROM orders o
      JOIN trips t ON t.trip_id = o.trip_id
      JOIN order_status_history h ON h.order_id = o.order_id AND h.status = 'delivered'
     WHERE {present} AND (%(key)s::text IS NULL OR {key} = %(key)s)
     GROUP BY o.order_id, o.created_at, grp
    HAVING min(h.ts) >= %(from)s AND min(h.ts) < %(to)s
), scored AS (
    SELECT d.*,
           s.arrived_at, s.window_start, s.window_end,
           (s.window_end IS NULL OR s.arrived_at IS NOT NULL
               AND s.arrived_at >= coalesce(s.window_start, '-infinity')
               AND s.arrived_at <= s.window_end) AS on_time,
           greatest(0, extract(epoch FROM (s.arrived_at - s.window_end))) AS delay_s,
           extract(epoch FROM (d.delivered_at - d.created_at)) AS lead_s,
           p.order_id IS NOT NULL AS has_pod,
           (p.order_id IS NOT NULL AND (p.condition = 'damaged' OR p.flagged)) AS exception
      FROM delivered d
      JOIN orders o ON o.order_id = d.order_id
      LEFT JOIN stops s ON s.trip_id = o.trip_id AND s.stop_id = o.stop_id
      LEFT JOIN pod p ON p.order_id = d.order_id
)
SELECT grp,
       count(*) AS delivered,
       count(*) FILTER (WHERE on_time) AS on_time,
       avg(coalesce(delay_s, 0)) AS avg_delay_s,
       avg(lead_s) AS avg_lead_s,
       count(*) FILTER (WHERE has_pod) AS with_pod,
       count(*) FILTER (WHERE on_time AND has_pod AND NOT exception) AS perfect
  FROM scored
 GROUP BY grp
"""


def distance_sql(group: str) -> str:
    """Driven and in-corridor metres in ``[from, to)``, as one row (``"report"``, optionally
    for the vehicle ``%(key)s``) or one per driver (``"driver"``, optionally only the
    driver ``%(key)s``). Between consecutive pings of the same vehicle and trip: the
    reported speeds integrated (trapezoid) when both are known and the fixes are at most
    a minute apart, else great-circle; a fix counts outside only next to another fix not
    inside. The pings are never joined with ``trips`` row by row (that made the month's
    pass a third slower): a driver's distance is summed per trip first."""
    if group == "report":
        where = "(%(key)s::text IS NULL OR vehicle_id = %(key)s)"
        tail = """
SELECT NULL::text AS grp,
       coalesce(sum(dist_m), 0) AS driven_m,
       coalesce(sum(dist_m) FILTER (WHERE inside), 0) AS inside_m
  FROM legs"""
    else:
        where = (
            "(%(key)s::text IS NULL OR trip_id IN "
            "(SELECT trip_id FROM trips WHERE driver_id = %(key)s))"
        )
        tail = """, per_trip AS (
    SELECT trip_id, sum(dist_m) AS driven_m,
           coalesce(sum(dist_m) FILTER (WHERE inside), 0) AS inside_m
      FROM legs GROUP BY trip_id
)
SELECT t.driver_id AS grp, sum(p.driven_m) AS driven_m, sum(p.inside_m) AS inside_m
  FROM per_trip p JOIN trips t ON t.trip_id = p.trip_id
 WHERE t.driver_id IS NOT NULL
 GROUP BY t.driver_id"""
    return f"""
WITH fixes AS (
    SELECT vehicle_id, trip_id, ts, lat, lon, speed_kmh,
           on_route IS NOT TRUE
               AND (lag(on_route) OVER w IS NOT TRUE OR lead(on_route) OVER w IS NOT TRUE)
               AS outside
      FROM pings
     WHERE trip_id IS NOT NULL
       AND ts >= %(from)s AND ts < %(to)s
       AND {where}
    WINDOW w AS (PARTITION BY vehicle_id, trip_id ORDER BY ts)
), seq AS (
    SELECT trip_id, ts, lat, lon, speed_kmh, outside,
           lag(ts) OVER w AS pts, lag(speed_kmh) OVER w AS pspeed,
           lag(lat) OVER w AS plat, lag(lon) OVER w AS plon, lag(outside) OVER w AS pout
      FROM fixes
    WINDOW w AS (PARTITION BY vehicle_id, trip_id ORDER BY ts)
), legs AS (
    SELECT trip_id,
           CASE WHEN speed_kmh IS NOT NULL AND pspeed IS NOT NULL
                     AND ts - pts <= interval '60 seconds'
                THEN (speed_kmh + pspeed) / 7.2 * extract(epoch FROM ts - pts)
                ELSE 2 * 6371008.8 * asin(sqrt(
                         power(sin(radians(lat - plat) / 2), 2)
                         + cos(radians(plat)) * cos(radians(lat))
                           * power(sin(radians(lon - plon) / 2), 2)))
           END AS dist_m,
           NOT (outside OR pout) AS inside
      FROM seq WHERE plat IS NOT NULL
){tail}
"""


_EVENTS_RAW_SQL = """
SELECT count(*) FILTER (WHERE type = 'speeding') AS speeding_events,
       coalesce(sum((details->>'duration_s')::float8)
                FILTER (WHERE type = 'speeding_ended'), 0) AS speeding_s,
       coalesce(sum((details->>'duration_s')::float8)
                FILTER (WHERE type = 'unplanned_stop_ended'), 0) AS unplanned_stop_s
  FROM events
 WHERE ts >= %(from)s AND ts < %(to)s
   AND (%(key)s::text IS NULL OR vehicle_id = %(key)s)
"""

_EVENTS_CAGG_SQL = f"""
SELECT coalesce(sum(speeding_events), 0) AS speeding_events,
       coalesce(sum(speeding_s), 0) AS speeding_s,
       coalesce(sum(unplanned_stop_s), 0) AS unplanned_stop_s
  FROM {CAGG_NAME}
 WHERE day >= %(from)s AND day < %(to)s
   AND (%(key)s::text IS NULL OR vehicle_id = %(key)s)
"""


def whole_days(start: datetime, end: datetime) -> bool:
    return all(d.astimezone(UTC).timetz().replace(tzinfo=None) == time(0) for d in (start, end))


async def has_aggregate(conn: AsyncConnection[Any], name: str = CAGG_NAME) -> bool:
    """Whether the continuous aggregate ``name`` exists (only on TimescaleDB)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        row = await cur.fetchone()
    return bool(row and row[0])


def pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def per_100km(value: float, driven_m: float) -> float | None:
    return round(value / (driven_m / 100_000.0), 3) if driven_m else None


def seconds(value: Any) -> float:
    """A sum of event durations, to the 0.1 s the events state them in: the aggregate's
    per-day partial sums and the one sum over ``events`` differ in the last bits of a
    float, which could otherwise round a minute figure differently."""
    return round(float(value or 0.0), 1)


def utc_iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def delivery_performance(
    conn: AsyncConnection[Any],
    start: datetime,
    end: datetime,
    vehicle_id: str | None = None,
    *,
    use_aggregate: bool | None = None,
) -> dict[str, Any]:
    """KPIs for ``[start, end)``; ``use_aggregate`` forces (True) or forbids (False) the
    continuous-aggregate path; ``None`` picks it when available and the range allows."""
    params = {"from": start, "to": end, "key": vehicle_id}
    if use_aggregate is None:
        use_aggregate = whole_days(start, end) and await has_aggregate(conn)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(orders_sql("report"), params)
        orders = await cur.fetchone() or {}
        await cur.execute(distance_sql("report"), params)
        dist = await cur.fetchone() or {}
        await cur.execute(_EVENTS_CAGG_SQL if use_aggregate else _EVENTS_RAW_SQL, params)
        evs = await cur.fetchone() or {}
    delivered = int(orders.get("delivered") or 0)
    driven_m = float(dist.get("driven_m") or 0.0)
    speeding_min = seconds(evs.get("speeding_s")) / 60.0
    speeding_events = int(evs.get("speeding_events") or 0)

    def opt_round(value: Any, ndigits: int = 1) -> float | None:
        return None if value is None else round(float(value), ndigits)

    return {
        "from": utc_iso(start),
        "to": utc_iso(end),
        "vehicle_id": vehicle_id,
        "source": "continuous_aggregate" if use_aggregate else "events",
        "orders_delivered": delivered,
        "on_time_rate_pct": pct(int(orders.get("on_time") or 0), delivered),
        "average_delay_s": opt_round(orders.get("avg_delay_s")),
        "average_lead_time_s": opt_round(orders.get("avg_lead_s")),
        "driven_km": round(driven_m / 1000.0, 3),
        "route_adherence_pct": pct(float(dist.get("inside_m") or 0.0), driven_m),
        "speeding_events": speeding_events,
        "speeding_minutes": round(speeding_min, 2),
        "speeding_events_per_100km": per_100km(speeding_events, driven_m),
        "speeding_minutes_per_100km": per_100km(speeding_min, driven_m),
        "unplanned_stop_minutes": round(seconds(evs.get("unplanned_stop_s")) / 60.0, 2),
        "pod_coverage_pct": pct(int(orders.get("with_pod") or 0), delivered),
        "perfect_delivery_rate_pct": pct(int(orders.get("perfect") or 0), delivered),
    }
