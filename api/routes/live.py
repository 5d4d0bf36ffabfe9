"""``GET /v1/vehicles/stream``: live vehicle state for the dashboard map, as SSE.

The engine upserts ``vehicle_state`` after every batch; this stream polls it once per
``POLL_S`` and pushes the vehicles whose row changed. The first message (``event:
snapshot``) carries every vehicle, later ones (``event: update``) only the changed
ones; a reconnecting client simply gets a fresh snapshot, so no resume id is needed.
Accepts ``?access_token=`` (EventSource cannot send headers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from psycopg.rows import dict_row

from api import sse
from api.deps import SettingsDep

router = APIRouter(tags=["vehicles"])

POLL_S = 1.0
"""Seconds between reads of ``vehicle_state``."""

# updated_at is the writer's transaction start time, so a row can become visible with an
# updated_at slightly older than one already seen; re-read this far back and de-duplicate.
_LOOKBACK = timedelta(seconds=10)

# tracker_seq is written in the same transaction as vehicle_state (ingest.commit)
_STATE_SQL = """
SELECT s.vehicle_id, s.ts, s.lat, s.lon, s.speed_kmh, s.heading_deg, s.trip_id, s.route_m,
       s.offset_m, s.on_route, s.schedule_delay_s, s.status, s.updated_at,
       t.driver_id, d.name AS driver_name,
       coalesce(q.missing, 0) AS pings_missing, coalesce(q.gaps, 0) AS seq_gaps
  FROM vehicle_state s LEFT JOIN tracker_seq q USING (vehicle_id)
  LEFT JOIN trips t ON t.trip_id = s.trip_id
  LEFT JOIN drivers d ON d.driver_id = t.driver_id
 WHERE %(since)s::timestamptz IS NULL OR s.updated_at > %(since)s
"""


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("ts", "updated_at"):
        value = out.get(key)
        if isinstance(value, datetime):
            out[key] = value.isoformat().replace("+00:00", "Z")
    return out


@router.get(
    "/v1/vehicles/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_vehicles(
    settings: SettingsDep,
    _: Annotated[Any, Depends(sse.StreamRoleChecker("supervisor"))],
) -> StreamingResponse:
    """SSE: ``snapshot`` (all vehicles) then ``update`` (changed vehicles) messages."""
    return StreamingResponse(
        _vehicle_messages(settings.database_url),
        media_type="text/event-stream",
        headers=sse.SSE_HEADERS,
    )


async def _vehicle_messages(database_url: str) -> AsyncIterator[bytes]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        yield sse.retry_hint()
        sent: dict[str, datetime] = {}
        since: datetime | None = None
        first = True
        last_write = time.monotonic()
        while True:
            cur = await conn.execute(_STATE_SQL, {"since": since})
            rows = [r for r in await cur.fetchall() if sent.get(r["vehicle_id"]) != r["updated_at"]]
            for r in rows:
                sent[r["vehicle_id"]] = r["updated_at"]
            if rows or first:
                newest = max(sent.values(), default=None)
                since = newest - _LOOKBACK if newest else None
                yield sse.format_event(
                    [_public(r) for r in rows], event="snapshot" if first else "update"
                )
                first = False
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= sse.HEARTBEAT_S:
                yield sse.comment()
                last_write = time.monotonic()
            await asyncio.sleep(POLL_S)
