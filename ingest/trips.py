"""Trip plans for the engine: load planned/active trips at start, reload one on NOTIFY.

The API inserts a trip and runs ``NOTIFY routewatch_trips, '<trip_id>'`` in the same
transaction; the engine LISTENs and reloads that trip (cancelled ones are dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from pydantic import ValidationError

from compliance.plan import STORED, TripPlan

log = logging.getLogger(__name__)

CHANNEL = "routewatch_trips"
#: trip statuses the engine follows
LIVE_STATUSES = ("planned", "active")


@dataclass(frozen=True, slots=True)
class TripRow:
    trip_id: str
    status: str
    plan: TripPlan | None  # None when the stored plan no longer validates
    updated_at: datetime


def _row(trip_id: str, status: str, plan: dict[str, object], updated_at: datetime) -> TripRow:
    try:
        # validated when it was stored: the fields parsed again, not the plan-wide rules
        parsed: TripPlan | None = TripPlan.model_validate(
            {**plan, "trip_id": trip_id}, context=STORED
        )
    except ValidationError as exc:
        log.error("trip %s: stored plan does not validate: %s", trip_id, exc)
        parsed = None
    return TripRow(trip_id, status, parsed, updated_at)


async def load_live_trips(
    conn: AsyncConnection, vehicles: Callable[[str], bool] | None = None
) -> list[TripRow]:
    """The planned and active trips; with ``vehicles``, only those of the vehicles it
    accepts (an engine worker's partition: the plans of the others are not even read)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        if vehicles is None:
            await cur.execute(
                "SELECT trip_id, status, plan, updated_at FROM trips "
                "WHERE status = ANY(%s) ORDER BY planned_start",
                (list(LIVE_STATUSES),),
            )
        else:
            await cur.execute(
                "SELECT trip_id, vehicle_id FROM trips WHERE status = ANY(%s)",
                (list(LIVE_STATUSES),),
            )
            wanted = [
                trip_id for trip_id, vehicle_id in await cur.fetchall() if vehicles(vehicle_id)
            ]
            await cur.execute(
                "SELECT trip_id, status, plan, updated_at FROM trips "
                "WHERE trip_id = ANY(%s) AND status = ANY(%s) ORDER BY planned_start",
                (wanted, list(LIVE_STATUSES)),
            )
        return [_row(*r) for r in await cur.fetchall()]


async def load_trip(conn: AsyncConnection, trip_id: str) -> TripRow | None:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT trip_id, status, plan, updated_at FROM trips WHERE trip_id = %s", (trip_id,)
        )
        row = await cur.fetchone()
    return None if row is None else _row(*row)


async def load_known_vehicles(conn: AsyncConnection) -> frozenset[str]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT vehicle_id FROM vehicles WHERE active")
        return frozenset(r[0] for r in await cur.fetchall())
