"""``/v1/vehicles`` (supervisor): live state of every vehicle and stored tracks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from api.auth import require_role
from api.deps import ConnDep
from api.schemas import VehiclePublic, rfc3339
from compliance.plan import parse_time_ms
from compliance.text import Line
from store import vehicles

router = APIRouter(
    prefix="/v1/vehicles", tags=["vehicles"], dependencies=[Depends(require_role("supervisor"))]
)

#: A track covers at most this long and this many points (newest data first is not
#: promised: the earliest points of the range are returned and ``truncated`` is set).
MAX_TRACK_SPAN = timedelta(days=7)
MAX_TRACK_POINTS = 20_000
DEFAULT_TRACK_SPAN = timedelta(hours=24)


@router.get("", response_model=list[VehiclePublic], summary="Live state of every vehicle")
async def list_vehicles(conn: ConnDep) -> list[dict[str, Any]]:
    return await vehicles.live_states(conn)


def _time_param(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        ms = parse_time_ms(int(value) if value.lstrip("-").isdigit() else value)
    except ValueError as exc:
        raise HTTPException(
            422, [{"loc": ["query", name], "msg": str(exc), "type": "value_error"}]
        ) from exc
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@router.get("/{vehicle_id}/track", summary="Stored pings of one vehicle as GeoJSON")
async def vehicle_track(
    conn: ConnDep,
    vehicle_id: Line,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339 or epoch ms")] = None,
    to: Annotated[str | None, Query(description="RFC 3339 or epoch ms; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TRACK_POINTS)] = MAX_TRACK_POINTS,
) -> dict[str, Any]:
    """A FeatureCollection with one LineString of the fixes in ``[from, to)`` (default:
    the last 24 h; at most 7 days) whose properties carry per-point arrays aligned with
    the coordinates: ``ts``, ``speed_kmh``, ``trip_id``, ``route_m``, ``on_route``."""
    end = _time_param(to, "to") or datetime.now(UTC)
    start = _time_param(from_, "from") or end - DEFAULT_TRACK_SPAN
    if end <= start:
        raise HTTPException(
            422,
            [{"loc": ["query", "to"], "msg": "'to' must be after 'from'", "type": "value_error"}],
        )
    if end - start > MAX_TRACK_SPAN:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["query", "from"],
                    "type": "value_error",
                    "msg": f"range longer than {MAX_TRACK_SPAN.days} days",
                }
            ],
        )
    if not await vehicles.vehicle_exists(conn, vehicle_id):
        raise HTTPException(404, f"unknown vehicle {vehicle_id!r}")
    rows = await vehicles.track_points(conn, vehicle_id, start, end, limit + 1)
    truncated = len(rows) > limit
    rows = rows[:limit]
    coordinates = [[r["lon"], r["lat"]] for r in rows]
    feature = {
        "type": "Feature",
        # A single fix is a Point: a LineString needs two positions (RFC 7946 §3.1.4).
        "geometry": {"type": "LineString", "coordinates": coordinates}
        if len(rows) >= 2
        else ({"type": "Point", "coordinates": coordinates[0]} if rows else None),
        "properties": {
            "vehicle_id": vehicle_id,
            "ts": [rfc3339(r["ts"]) for r in rows],
            "speed_kmh": [r["speed_kmh"] for r in rows],
            "trip_id": [r["trip_id"] for r in rows],
            "route_m": [r["route_m"] for r in rows],
            "on_route": [r["on_route"] for r in rows],
        },
    }
    return {
        "type": "FeatureCollection",
        "features": [feature],
        "properties": {
            "vehicle_id": vehicle_id,
            "from": rfc3339(start),
            "to": rfc3339(end),
            "points": len(rows),
            "truncated": truncated,
        },
    }
