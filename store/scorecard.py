"""The driver scorecard (issue #17): per driver, over ``[from, to)``, what the control room
measures of the speed and the stops a driver takes, and a ranking.

Whose is what:

* **events** carry the driver the trip named when they were stored (``events.driver_id``,
  see ``store.events``): ``trips`` = ``trip_started`` events, ``stops_served`` =
  ``stop_arrived``, ``speeding_episodes`` = ``speeding`` and their minutes from
  ``speeding_ended.duration_s``, ``off_route_minutes`` from ``back_on_route.off_route_s``,
  ``unplanned_stops`` = ``unplanned_stop`` and their minutes from
  ``unplanned_stop_ended.duration_s``; each counted at its own event time (an episode at
  the time it ended);
* **orders** and **driven distance** belong to the driver their trip names now
  (``trips.driver_id``), with exactly the delivery report's definitions
  (``store.reports``): orders delivered in the range, on-time and perfect-delivery rates,
  distance from the stored pings. A driver's figures are the delivery report's figures
  restricted to that driver's trips;
* **penalty** per 100 km driven = ``SPEEDING_WEIGHT`` x speeding minutes +
  ``OFF_ROUTE_WEIGHT`` x off-route minutes + ``UNPLANNED_STOP_WEIGHT`` x unplanned stops,
  each per 100 km; **score** = max(0, 100 - penalty). The drivers who drove are ranked
  by penalty, lowest first (ties by driver id); a driver without driven distance has no
  penalty, score or rank. Punctuality (on time, perfect) is shown, not scored: a late
  trip is as often the plan's or the traffic's doing as the driver's.

With TimescaleDB the event sums come from the ``kpi_daily_driver`` continuous aggregate
(migration 0041) when the range is whole UTC days, otherwise (and on plain PostgreSQL)
from ``events``; both give the same figures (tested on a replayed simulator scenario).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from store.reports import (
    distance_sql,
    has_aggregate,
    orders_sql,
    pct,
    per_100km,
    seconds,
    utc_iso,
    whole_days,
)

CAGG_NAME = "kpi_daily_driver"

#: penalty points per minute of speeding per 100 km: a minute over the limit on every
#: 100 km costs a tenth of the score
SPEEDING_WEIGHT = 10.0
#: per minute off the planned route per 100 km
OFF_ROUTE_WEIGHT = 2.0
#: per unplanned stop per 100 km
UNPLANNED_STOP_WEIGHT = 5.0

_EVENT_SUMS = (
    "trips",
    "stops_served",
    "speeding_events",
    "speeding_s",
    "off_route_s",
    "unplanned_stops",
    "unplanned_stop_s",
)

#: the event sums per driver over ``%(from)s``..``%(to)s`` (``%(key)s``: one driver), from
#: ``events`` or from the daily aggregate (whole days only)
EVENTS_RAW_SQL = """
SELECT driver_id,
       count(*) FILTER (WHERE type = 'trip_started') AS trips,
       count(*) FILTER (WHERE type = 'stop_arrived') AS stops_served,
       count(*) FILTER (WHERE type = 'speeding') AS speeding_events,
       coalesce(sum((details->>'duration_s')::float8)
                FILTER (WHERE type = 'speeding_ended'), 0) AS speeding_s,
       coalesce(sum((details->>'off_route_s')::float8)
                FILTER (WHERE type = 'back_on_route'), 0) AS off_route_s,
       count(*) FILTER (WHERE type = 'unplanned_stop') AS unplanned_stops,
       coalesce(sum((details->>'duration_s')::float8)
                FILTER (WHERE type = 'unplanned_stop_ended'), 0) AS unplanned_stop_s
  FROM events
 WHERE driver_id IS NOT NULL AND ts >= %(from)s AND ts < %(to)s
   AND (%(key)s::text IS NULL OR driver_id = %(key)s)
 GROUP BY driver_id
"""

EVENTS_CAGG_SQL = f"""
SELECT driver_id, {", ".join(f"sum({c}) AS {c}" for c in _EVENT_SUMS)}
  FROM {CAGG_NAME}
 WHERE day >= %(from)s AND day < %(to)s
   AND (%(key)s::text IS NULL OR driver_id = %(key)s)
 GROUP BY driver_id
"""

_DRIVERS_SQL = """
SELECT driver_id, name, active FROM drivers WHERE driver_id = ANY(%(ids)s)
"""


def _driver_row(
    driver: dict[str, Any], evs: dict[str, Any], orders: dict[str, Any], dist: dict[str, Any]
) -> dict[str, Any]:
    delivered = int(orders.get("delivered") or 0)
    driven_m = float(dist.get("driven_m") or 0.0)
    speeding_min = seconds(evs.get("speeding_s")) / 60.0
    off_route_min = seconds(evs.get("off_route_s")) / 60.0
    unplanned = int(evs.get("unplanned_stops") or 0)
    speeding_episodes = int(evs.get("speeding_events") or 0)
    penalty = None
    if driven_m > 0:
        per_100 = 100_000.0 / driven_m
        penalty = round(
            per_100
            * (
                SPEEDING_WEIGHT * speeding_min
                + OFF_ROUTE_WEIGHT * off_route_min
                + UNPLANNED_STOP_WEIGHT * unplanned
            ),
            3,
        )
    return {
        "rank": None,
        "driver_id": driver["driver_id"],
        "name": driver.get("name"),
        "active": driver.get("active", True),
        "trips": int(evs.get("trips") or 0),
        "stops_served": int(evs.get("stops_served") or 0),
        "orders_delivered": delivered,
        "on_time_rate_pct": pct(int(orders.get("on_time") or 0), delivered),
        "perfect_delivery_rate_pct": pct(int(orders.get("perfect") or 0), delivered),
        "driven_km": round(driven_m / 1000.0, 3),
        "speeding_episodes": speeding_episodes,
        "speeding_episodes_per_100km": per_100km(speeding_episodes, driven_m),
        "speeding_minutes": round(speeding_min, 2),
        "speeding_minutes_per_100km": per_100km(speeding_min, driven_m),
        "off_route_minutes": round(off_route_min, 2),
        "unplanned_stops": unplanned,
        "unplanned_stop_minutes": round(seconds(evs.get("unplanned_stop_s")) / 60.0, 2),
        "penalty_per_100km": penalty,
        "score": None if penalty is None else round(max(0.0, 100.0 - penalty), 1),
    }


async def driver_scorecard(
    conn: AsyncConnection[Any],
    start: datetime,
    end: datetime,
    driver_id: str | None = None,
    *,
    use_aggregate: bool | None = None,
) -> dict[str, Any]:
    """Every driver with trips, events, deliveries or distance in ``[start, end)`` (or
    only ``driver_id``, listed even when idle, and not ranked), ranked as the module says.
    ``use_aggregate`` forces (True) or forbids (False) the continuous-aggregate path;
    ``None`` picks it when available and the range is whole UTC days."""
    params = {"from": start, "to": end, "key": driver_id}
    if use_aggregate is None:
        use_aggregate = whole_days(start, end) and await has_aggregate(conn, CAGG_NAME)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(EVENTS_CAGG_SQL if use_aggregate else EVENTS_RAW_SQL, params)
        evs = {r["driver_id"]: r for r in await cur.fetchall()}
        await cur.execute(orders_sql("driver"), params)
        orders = {r["grp"]: r for r in await cur.fetchall()}
        await cur.execute(distance_sql("driver"), params)
        dist = {r["grp"]: r for r in await cur.fetchall()}
        ids = sorted(set(evs) | set(orders) | set(dist) | ({driver_id} if driver_id else set()))
        await cur.execute(_DRIVERS_SQL, {"ids": ids})
        known = {r["driver_id"]: r for r in await cur.fetchall()}
    rows = [
        _driver_row(
            known.get(d, {"driver_id": d}), evs.get(d, {}), orders.get(d, {}), dist.get(d, {})
        )
        for d in ids
        if d in known
    ]
    rows.sort(
        key=lambda r: (
            r["penalty_per_100km"] is None,
            r["penalty_per_100km"] or 0.0,
            r["driver_id"],
        )
    )
    if driver_id is None:
        for rank, row in enumerate((r for r in rows if r["penalty_per_100km"] is not None), 1):
            row["rank"] = rank
    return {
        "from": utc_iso(start),
        "to": utc_iso(end),
        "driver_id": driver_id,
        "source": "continuous_aggregate" if use_aggregate else "events",
        "weights": {
            "speeding_minute": SPEEDING_WEIGHT,
            "off_route_minute": OFF_ROUTE_WEIGHT,
            "unplanned_stop": UNPLANNED_STOP_WEIGHT,
        },
        "drivers": rows,
    }
