"""Trips: create, replace and cancel plans (with their stops and orders); live view.

Replacing a plan (``POST /v1/trips`` with an existing ``trip_id`` of a planned or active
trip) *updates the trip in place*: the plan, stops and route length are replaced, stops
kept by ``stop_id`` keep their arrival/departure, orders kept by ``order_id`` keep their
status and tracking number, orders the new plan no longer carries are cancelled, and new
ones are scheduled. The trip id stays valid for every reader. A completed, cancelled or
replaced trip cannot be re-planned (409).

A plan's ``driver_id`` is registered when unknown (with ``driver_name``) and refused when
the driver is deactivated (409); replacing a plan may change or remove the driver.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import AsyncConnection, AsyncCursor

from compliance.plan import TripPlan
from store import drivers as driver_store
from store import orders as order_store
from store.tracking import new_tracking_number
from store.vehicles import upsert_vehicle

Conn = AsyncConnection[dict[str, Any]]

NOTIFY_CHANNEL = "routewatch_trips"


class PlanConflict(Exception):
    """The plan cannot be applied as given (HTTP 409); ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def new_trip_id(planned_start_ms: int) -> str:
    day = datetime.fromtimestamp(planned_start_ms / 1000, tz=UTC).strftime("%Y%m%d")
    return f"T-{day}-{secrets.token_hex(4).upper()}"


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


async def _check_orders(
    conn: Conn, trip_id: str, order_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Existing rows of these order ids (locked); refuses ids live on another trip."""
    cur = await conn.execute(
        "SELECT order_id, trip_id, status, tracking_number FROM orders "
        "WHERE order_id = ANY(%s) FOR UPDATE",
        (order_ids,),
    )
    existing = {r["order_id"]: r for r in await cur.fetchall()}
    busy = [
        f"order {oid} is already on trip {r['trip_id']} ({r['status']})"
        for oid, r in existing.items()
        if r["trip_id"] != trip_id and r["status"] not in ("failed", "cancelled")
    ]
    if busy:
        raise PlanConflict(busy)
    return existing


async def save_plan(
    conn: Conn,
    plan: TripPlan,
    route_length_m: float,
    stop_route_m: list[float],
    accepted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Insert or replace a trip with its stops and orders, and NOTIFY the engine.

    ``accepted`` is the plan JSON as the OMS sent it (stored in ``trips.plan``, with the
    trip id filled in, so times stay RFC 3339 as given); default: ``plan`` re-serialised.
    Runs in one transaction. Returns ``{trip_id, vehicle_id, status, replaced, orders}``.

    Why pipelined: a plan is a dozen or more rows (trip, stops, orders, their history).
    Sent one statement at a time that was ~25 round trips per trip, the bulk of the cost
    when an OMS (or the simulator) dispatches thousands of trips; now the two reads wait
    for their answers and every write goes out in one pipeline (``executemany``).
    """
    trip_id = plan.trip_id or new_trip_id(plan.planned_start)
    now = datetime.now(UTC)
    stored = accepted if accepted is not None else plan.model_dump(mode="json")
    plan_json = orjson.dumps(stored | {"trip_id": trip_id}).decode()
    order_ids = [s.order_id for s in plan.stops if s.order_id]
    async with conn.transaction():
        await upsert_vehicle(conn, plan.vehicle_id)
        if plan.driver_id is not None:
            try:
                await driver_store.assign(conn, plan.driver_id, plan.driver_name)
            except driver_store.DriverConflict as exc:
                raise PlanConflict([str(exc)]) from exc
        cur = await conn.execute(
            "SELECT status FROM trips WHERE trip_id = %s FOR UPDATE", (trip_id,)
        )
        old = await cur.fetchone()
        if old is not None and old["status"] not in ("planned", "active"):
            raise PlanConflict([f"trip {trip_id} is {old['status']} and cannot be re-planned"])
        existing = await _check_orders(conn, trip_id, order_ids)
        kept_stops: dict[str, dict[str, Any]] = {}
        if old is not None:
            cur = await conn.execute(
                "DELETE FROM stops WHERE trip_id = %s RETURNING stop_id, status, arrived_at, "
                "departed_at",
                (trip_id,),
            )
            kept_stops = {r["stop_id"]: r for r in await cur.fetchall()}
        async with conn.pipeline(), conn.cursor() as wcur:
            if old is None:
                await wcur.execute(
                    "INSERT INTO trips (trip_id, vehicle_id, driver_id, planned_start, plan, "
                    "route_length_m) VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
                    (
                        trip_id,
                        plan.vehicle_id,
                        plan.driver_id,
                        _dt(plan.planned_start),
                        plan_json,
                        route_length_m,
                    ),
                )
            else:
                await wcur.execute(
                    "UPDATE trips SET vehicle_id = %s, driver_id = %s, planned_start = %s, "
                    "plan = %s::jsonb, route_length_m = %s, updated_at = now() WHERE trip_id = %s",
                    (
                        plan.vehicle_id,
                        plan.driver_id,
                        _dt(plan.planned_start),
                        plan_json,
                        route_length_m,
                        trip_id,
                    ),
                )
            rows = _stop_rows(trip_id, plan, stop_route_m, kept_stops)
            await wcur.execute(_INSERT_STOPS, [list(col) for col in zip(*rows, strict=True)])
            created = await _save_orders(wcur, trip_id, plan, existing, now)
            if old is not None:
                await _cancel_dropped(conn, trip_id, order_ids, now)
            await wcur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, trip_id))
    return {
        "trip_id": trip_id,
        "vehicle_id": plan.vehicle_id,
        "driver_id": plan.driver_id,
        "status": "planned" if old is None else old["status"],
        "replaced": old is not None,
        "route_length_m": route_length_m,
        "orders": created,
    }


# Every stop of a plan in one statement: one array per column (rows from _stop_rows).
_INSERT_STOPS = """INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m,
       radius_m, planned_arrival, window_start, window_end, service_s, status,
       arrived_at, departed_at)
SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::float8[],
       %s::float8[], %s::float8[], %s::float8[], %s::timestamptz[], %s::timestamptz[],
       %s::timestamptz[], %s::float8[], %s::text[], %s::timestamptz[], %s::timestamptz[])"""

# New orders and their first history row in one statement (the CTE's rows exist when
# the history rows' foreign keys are checked, at the end of the statement).
_INSERT_ORDERS = """WITH o AS (
    INSERT INTO orders (order_id, tracking_number, trip_id, stop_id)
    SELECT u.order_id, u.tracking_number, %(trip_id)s, u.stop_id
      FROM unnest(%(order_ids)s::text[], %(numbers)s::text[], %(stop_ids)s::text[])
           AS u(order_id, tracking_number, stop_id)
    RETURNING order_id)
INSERT INTO order_status_history (order_id, status, ts, reason)
SELECT order_id, 'scheduled', %(ts)s, %(reason)s FROM o"""


def _stop_rows(
    trip_id: str,
    plan: TripPlan,
    stop_route_m: list[float],
    kept_stops: dict[str, dict[str, Any]],
) -> list[tuple[Any, ...]]:
    """One ``_INSERT_STOP`` row per planned stop; a stop kept by ``stop_id`` keeps its
    status, arrival and departure."""
    rows = []
    for seq, (stop, route_m) in enumerate(zip(plan.stops, stop_route_m, strict=True)):
        kept = kept_stops.get(stop.stop_id, {})
        rows.append(
            (
                trip_id,
                seq,
                stop.stop_id,
                stop.order_id,
                stop.location[0],
                stop.location[1],
                float(route_m),
                stop.radius_m,
                _dt(stop.planned_arrival),
                _dt(stop.window.start if stop.window else None),
                _dt(stop.window.end if stop.window else None),
                stop.service_s,
                kept.get("status", "pending"),
                kept.get("arrived_at"),
                kept.get("departed_at"),
            )
        )
    return rows


async def _save_orders(
    cur: AsyncCursor[Any],
    trip_id: str,
    plan: TripPlan,
    existing: dict[str, dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """New orders, orders kept on this trip, and failed/cancelled ones planned again;
    written with one statement per kind. Returns each order's answer row."""
    out = []
    inserted: list[tuple[str, str, str]] = []  # (order_id, tracking number, stop_id)
    moved: list[tuple[str, str]] = []  # kept on this trip, maybe at another stop
    replanned: list[tuple[str, str, str]] = []
    history = order_store.Changes()
    for stop in plan.stops:
        oid = stop.order_id
        if oid is None:
            continue
        prior = existing.get(oid)
        if prior is None:
            number, status = new_tracking_number(), "scheduled"
            inserted.append((oid, number, stop.stop_id))
        elif prior["trip_id"] == trip_id:
            number, status = prior["tracking_number"], prior["status"]
            moved.append((stop.stop_id, oid))
        else:
            # A failed or cancelled order planned again (a second delivery attempt): same
            # order and tracking number, fresh lifecycle on the new trip.
            number, status = prior["tracking_number"], "scheduled"
            replanned.append((trip_id, stop.stop_id, oid))
            history.history.append((oid, status, now, f"re-planned on trip {trip_id}", None))
        out.append(
            {"order_id": oid, "stop_id": stop.stop_id, "tracking_number": number, "status": status}
        )
    if inserted:
        order_ids, numbers, stop_ids = (list(col) for col in zip(*inserted, strict=True))
        await cur.execute(
            _INSERT_ORDERS,
            {
                "trip_id": trip_id,
                "order_ids": order_ids,
                "numbers": numbers,
                "stop_ids": stop_ids,
                "ts": now,
                "reason": f"planned on trip {trip_id}",
            },
        )
    if moved:
        await cur.executemany(
            "UPDATE orders SET stop_id = %s, updated_at = now() WHERE order_id = %s", moved
        )
    if replanned:
        await cur.executemany(
            "UPDATE orders SET trip_id = %s, stop_id = %s, status = 'scheduled', eta = NULL, "
            "eta_low = NULL, eta_high = NULL, notified_eta = NULL, updated_at = now() "
            "WHERE order_id = %s",
            replanned,
        )
    if history.history:  # re-planned orders (rare)
        await history.flush(cur.connection)
    return out


async def _cancel_dropped(conn: Conn, trip_id: str, kept: list[str], now: datetime) -> None:
    for order in await order_store.orders_of_trips(conn, [trip_id]):
        if order["order_id"] not in kept and order["status"] in order_store.ACTIVE:
            await order_store.set_status(
                conn, order, "cancelled", now, "removed from the trip plan"
            )


async def cancel_trip(conn: Conn, trip_id: str, reason: str) -> dict[str, Any] | None:
    """Cancel a planned or active trip and its open orders; None when there is no trip.
    Raises :class:`PlanConflict` for a trip that already ended."""
    now = datetime.now(UTC)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT status FROM trips WHERE trip_id = %s FOR UPDATE", (trip_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return None
        if row["status"] == "cancelled":
            return {"trip_id": trip_id, "status": "cancelled"}
        if row["status"] not in ("planned", "active"):
            raise PlanConflict([f"trip {trip_id} is {row['status']} and cannot be cancelled"])
        await conn.execute(
            "UPDATE trips SET status = 'cancelled', updated_at = now() WHERE trip_id = %s",
            (trip_id,),
        )
        for order in await order_store.orders_of_trips(conn, [trip_id]):
            if order["status"] in order_store.ACTIVE:
                await order_store.set_status(conn, order, "cancelled", now, reason)
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, trip_id))
    return {"trip_id": trip_id, "status": "cancelled"}


async def get_trip(conn: Conn, trip_id: str) -> dict[str, Any] | None:
    """The trip, its stops (with order status) and the vehicle's live state if it is on
    this trip."""
    cur = await conn.execute(
        """SELECT t.trip_id, t.vehicle_id, t.driver_id, d.name AS driver_name, t.status,
                  t.planned_start, t.route_length_m, t.plan,
                  v.ts AS last_update, v.lat, v.lon, v.route_m, v.offset_m, v.on_route,
                  v.schedule_delay_s
             FROM trips t LEFT JOIN vehicle_state v
               ON v.vehicle_id = t.vehicle_id AND v.trip_id = t.trip_id
             LEFT JOIN drivers d ON d.driver_id = t.driver_id
            WHERE t.trip_id = %s""",
        (trip_id,),
    )
    trip = await cur.fetchone()
    if trip is None:
        return None
    cur = await conn.execute(
        """SELECT s.*, o.status AS order_status FROM stops s
             LEFT JOIN orders o ON o.order_id = s.order_id AND o.trip_id = s.trip_id
            WHERE s.trip_id = %s ORDER BY s.seq""",
        (trip_id,),
    )
    trip["stops"] = list(await cur.fetchall())
    return trip
