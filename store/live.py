"""Live state written after each batch: ``vehicle_state``, ``stops`` ETAs/status, trip
status, and engine checkpoints. One statement per table per batch: arrays via unnest,
passed in binary (psycopg dumps a list about 2.5x faster so; a batch touches thousands
of vehicles, and the engine pays that per column on its hot path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from compliance.events import Event, EventType
from compliance.grouping import factorise
from compliance.types import PingBatch, ProcessResult, TripSnapshot

#: below this device speed a vehicle is shown as stopped, km/h
STOPPED_BELOW_KMH = 3.0
#: engine_checkpoints row holding the whole-engine checkpoint (the table is keyed by
#: vehicle, but Engine.checkpoint() serialises every vehicle at once)
ENGINE_CHECKPOINT_KEY = "__engine__"

_UPSERT_STATE = """
INSERT INTO vehicle_state AS vs (vehicle_id, ts, lat, lon, speed_kmh, heading_deg, trip_id,
                                 route_m, offset_m, on_route, schedule_delay_s, status,
                                 updated_at)
SELECT s.vehicle_id, timestamptz 'epoch' + s.ts_ms * interval '1 millisecond', s.lat, s.lon,
       s.speed_kmh, s.heading_deg, s.trip_id, s.route_m, s.offset_m, s.on_route,
       s.schedule_delay_s, s.status, now()
FROM unnest(%b::text[], %b::bigint[], %b::float8[], %b::float8[], %b::float4[], %b::float4[],
            %b::text[], %b::float8[], %b::float8[], %b::bool[], %b::float8[], %b::text[])
     AS s(vehicle_id, ts_ms, lat, lon, speed_kmh, heading_deg, trip_id, route_m, offset_m,
          on_route, schedule_delay_s, status)
ON CONFLICT (vehicle_id) DO UPDATE SET
    ts = EXCLUDED.ts, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
    speed_kmh = EXCLUDED.speed_kmh, heading_deg = EXCLUDED.heading_deg,
    trip_id = COALESCE(EXCLUDED.trip_id, vs.trip_id),
    route_m = EXCLUDED.route_m, offset_m = EXCLUDED.offset_m, on_route = EXCLUDED.on_route,
    -- a trip's snapshot (and with it the delay) comes only every few seconds
    schedule_delay_s = CASE WHEN EXCLUDED.trip_id IS NOT DISTINCT FROM vs.trip_id
                            THEN COALESCE(EXCLUDED.schedule_delay_s, vs.schedule_delay_s)
                            ELSE EXCLUDED.schedule_delay_s END,
    status = EXCLUDED.status,
    updated_at = now()
WHERE vs.ts <= EXCLUDED.ts
"""

_SIGNAL_LOST = """
UPDATE vehicle_state SET status = 'signal_lost', updated_at = now()
WHERE vehicle_id = ANY(%s::text[])
"""

_UPDATE_STOPS = """
UPDATE stops SET status = u.status,
       eta = timestamptz 'epoch' + u.eta_ms * interval '1 millisecond',
       eta_low = timestamptz 'epoch' + u.eta_low_ms * interval '1 millisecond',
       eta_high = timestamptz 'epoch' + u.eta_high_ms * interval '1 millisecond',
       arrived_at = COALESCE(timestamptz 'epoch' + u.arrived_ms * interval '1 millisecond',
                             stops.arrived_at),
       departed_at = COALESCE(timestamptz 'epoch' + u.departed_ms * interval '1 millisecond',
                              stops.departed_at)
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[],
            %b::bigint[], %b::bigint[])
     AS u(trip_id, stop_id, status, eta_ms, eta_low_ms, eta_high_ms, arrived_ms, departed_ms)
WHERE stops.trip_id = u.trip_id AND stops.stop_id = u.stop_id
"""

# Only the engine's own lifecycle moves: never resurrect a cancelled/replaced trip.
_UPDATE_TRIPS = """
UPDATE trips SET status = u.status, updated_at = now()
FROM unnest(%b::text[], %b::text[]) AS u(trip_id, status)
WHERE trips.trip_id = u.trip_id AND trips.status IN ('planned', 'active')
  AND trips.status <> u.status
"""

# commit_xid: this transaction's id, the high-water mark of the pings the state has seen
# (migrations/0030_ping_commit_order.sql; ingest/recovery.py replays the pings above it).
_CHECKPOINT = """
INSERT INTO engine_checkpoints (vehicle_id, trip_id, ts, state, updated_at, commit_xid)
VALUES (%s, %s, timestamptz 'epoch' + %s * interval '1 millisecond', %s, now(),
        txid_current())
ON CONFLICT (vehicle_id) DO UPDATE SET trip_id = EXCLUDED.trip_id, ts = EXCLUDED.ts,
    state = EXCLUDED.state, updated_at = now(), commit_xid = EXCLUDED.commit_xid
"""


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def _nullable(values: npt.NDArray[np.float64]) -> list[float | None]:
    """NaN -> None (the common all-present column costs one check)."""
    floats: list[float | None] = values.tolist()
    if np.isnan(values).any():
        return [None if math.isnan(v) else v for v in floats]  # type: ignore[arg-type]
    return floats


def _status(on_route: bool | None, speed_kmh: float | None) -> str:
    if on_route is False:
        return "off_route"
    if speed_kmh is not None and speed_kmh < STOPPED_BELOW_KMH:
        return "stopped"
    return "moving"


StateRow = tuple[
    str,
    int,
    float,
    float,
    float | None,
    float | None,
    str | None,
    float | None,
    float | None,
    bool | None,
    float | None,
]


def newest_rows(batch: PingBatch) -> npt.NDArray[np.intp]:
    """Index of each vehicle's newest ping (by event time; the later arrival on a tie),
    in first-seen vehicle order: one integer sort, no per-row Python beyond coding ids."""
    names, code = factorise(batch.vehicle_id)
    order = np.lexsort((np.arange(len(batch)), batch.ts_ms, code))
    ends = np.searchsorted(code[order], np.arange(1, len(names) + 1))
    return order[ends - 1]


def latest_states(
    batch: PingBatch, result: ProcessResult | None, snapshots: Sequence[TripSnapshot]
) -> dict[str, StateRow]:
    """The newest (by event time) ping per vehicle, overlaid by trip snapshots."""
    idx = newest_rows(batch)
    k = len(idx)
    trip_id: list[str | None] = [None] * k
    route_m: list[float | None] = [None] * k
    offset_m: list[float | None] = [None] * k
    on_route: list[bool | None] = [None] * k
    if result is not None:
        trip_id = [result.trip_id[i] for i in idx.tolist()]
        route_m = _nullable(result.route_m[idx])
        offset_m = _nullable(result.offset_m[idx])
        on_route = [None if f < 0 else f > 0 for f in result.on_route[idx].tolist()]
    columns = zip(
        [batch.vehicle_id[i] for i in idx.tolist()],
        batch.ts_ms[idx].tolist(),
        batch.lat[idx].tolist(),
        batch.lon[idx].tolist(),
        _nullable(batch.speed_kmh[idx]),
        _nullable(batch.heading_deg[idx]),
        trip_id,
        route_m,
        offset_m,
        on_route,
        [None] * k,
        strict=True,
    )
    rows: dict[str, StateRow] = {r[0]: r for r in columns}
    for s in snapshots:
        prev = rows.get(s.vehicle_id)
        if prev is None or s.ts_ms >= prev[1]:
            heading = prev[5] if prev is not None else None
            rows[s.vehicle_id] = (
                s.vehicle_id,
                s.ts_ms,
                s.lat,
                s.lon,
                _opt(s.speed_kmh),
                heading,
                s.trip_id,
                _opt(s.route_m),
                _opt(s.offset_m),
                s.on_route,
                s.schedule_delay_s,
            )
    return rows


async def upsert_vehicle_state(
    conn: AsyncConnection,
    batch: PingBatch,
    result: ProcessResult | None,
    tick_events: Sequence[Event] = (),
) -> int:
    """Upsert one ``vehicle_state`` row per vehicle seen in the batch (never moving a
    vehicle back in time), and mark vehicles with a ``signal_lost`` event."""
    snapshots = result.snapshots if result is not None else []
    rows = list(latest_states(batch, result, snapshots).values())
    changed = 0
    if rows:
        cols = list(zip(*rows, strict=True))
        statuses = [_status(r[9], r[4]) for r in rows]
        cur = await conn.execute(_UPSERT_STATE, [list(c) for c in cols] + [statuses])
        changed += cur.rowcount
    events = list(tick_events) + (result.events if result is not None else [])
    lost = sorted({e.vehicle_id for e in events if e.type == EventType.SIGNAL_LOST})
    if lost:
        cur = await conn.execute(_SIGNAL_LOST, [lost])
        changed += cur.rowcount
    return changed


async def update_trips_and_stops(conn: AsyncConnection, snapshots: Sequence[TripSnapshot]) -> None:
    """Stop status/ETAs and trip status from the engine's trip snapshots."""
    if not snapshots:
        return
    cols: list[list[object]] = [[] for _ in range(8)]
    for s in snapshots:
        for st in s.stops:
            for col, value in zip(
                cols,
                (
                    s.trip_id,
                    st.stop_id,
                    st.status,
                    st.eta_ms,
                    st.eta_low_ms,
                    st.eta_high_ms,
                    st.arrived_ms,
                    st.departed_ms,
                ),
                strict=True,
            ):
                col.append(value)
    if cols[0]:
        await conn.execute(_UPDATE_STOPS, cols)
    latest = {s.trip_id: s.status for s in snapshots}
    await conn.execute(_UPDATE_TRIPS, [list(latest), list(latest.values())])


class SavedCheckpoint(NamedTuple):
    state: bytes
    updated_at: datetime
    watermark_ms: int  # the engine's watermark when it was saved
    #: id of the transaction it was saved in: every ping with a larger ``commit_xid`` was
    #: committed after it. None for checkpoints saved before that was recorded.
    commit_xid: int | None


async def save_checkpoint(
    conn: AsyncConnection, state: bytes, watermark_ms: int, key: str = ENGINE_CHECKPOINT_KEY
) -> None:
    """Save the engine state; inside a batch's transaction, the state after that batch."""
    await conn.execute(_CHECKPOINT, (key, None, watermark_ms, state))


async def load_checkpoint(
    conn: AsyncConnection, key: str = ENGINE_CHECKPOINT_KEY
) -> SavedCheckpoint | None:
    """The saved engine state, when and up to which commit it was written, or None."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT state, updated_at, (extract(epoch FROM ts) * 1000)::bigint, commit_xid "
            "FROM engine_checkpoints WHERE vehicle_id = %s",
            (key,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return SavedCheckpoint(bytes(row[0]), row[1], int(row[2]), row[3])
