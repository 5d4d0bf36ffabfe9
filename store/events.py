"""Persist CONTRACT §4 events idempotently.

``event_id`` is derived from what the event is, so a re-delivered batch produces the
same ids; ``ON CONFLICT DO NOTHING`` then inserts nothing and the caller learns which
events are really new (only those are mirrored to MQTT and turned into alerts).

Each event is stored with its trip's driver as the ``trips`` row names it at that moment
(the engine does not know drivers); the new events come back with ``driver_id`` set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import orjson
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from compliance.events import Event

_INSERT = """
INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, lat, lon, route_m, severity,
                    details, driver_id)
SELECT e.event_id, timestamptz 'epoch' + e.ts_ms * interval '1 millisecond', e.type,
       e.trip_id, e.vehicle_id, e.lat, e.lon, e.route_m, e.severity, e.details::jsonb,
       t.driver_id
FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[],
            %s::float8[], %s::float8[], %s::text[], %s::text[])
     AS e(event_id, ts_ms, type, trip_id, vehicle_id, lat, lon, route_m, severity, details)
LEFT JOIN trips t ON t.trip_id = e.trip_id
ON CONFLICT DO NOTHING
RETURNING event_id::text, driver_id
"""


def _finite_or_none(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


async def insert_events(conn: AsyncConnection, events: Sequence[Event]) -> list[Event]:
    """Insert ``events`` in one statement; return the ones that were not stored before,
    in the order given (duplicates within ``events`` count once)."""
    unique: dict[str, Event] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    if not unique:
        return []
    evs = list(unique.values())
    params = (
        list(unique),
        [e.ts_ms for e in evs],
        [str(e.type) for e in evs],
        [e.trip_id for e in evs],
        [e.vehicle_id for e in evs],
        [_finite_or_none(e.lat) for e in evs],
        [_finite_or_none(e.lon) for e in evs],
        [_finite_or_none(e.route_m) for e in evs],
        [e.severity for e in evs],
        [orjson.dumps(e.details, option=orjson.OPT_NON_STR_KEYS).decode() for e in evs],
    )
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_INSERT, params)
        drivers: dict[str, str | None] = {row[0]: row[1] for row in await cur.fetchall()}
    return [
        dataclasses.replace(e, driver_id=drivers[e.event_id]) for e in evs if e.event_id in drivers
    ]
