"""The control-room dashboard: the page itself, its configuration, and the trip feed
it draws (planned routes, stops with windows and ETAs).

The page (``/dashboard``) is static and public — it holds no data; everything it shows
comes from supervisor-only endpoints with the token the user enters once (kept in the
browser's localStorage). Libraries are vendored under ``/static/vendor`` (see
``scripts/vendor_frontend.sh``): no CDN at run time. Map tiles are optional
(``ROUTEWATCH_DASHBOARD_TILE_URL``); without them the map is a plain background with a
scale bar, and routes and vehicles are still drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from api.auth import require_role
from api.deps import ConnDep, SettingsDep

router = APIRouter(tags=["dashboard"])

PAGE = Path(__file__).resolve().parent.parent / "static" / "dashboard" / "index.html"

_TRIPS_SQL = """
SELECT t.trip_id, t.vehicle_id, t.driver_id,
       (SELECT d.name FROM drivers d WHERE d.driver_id = t.driver_id) AS driver_name,
       t.status, t.planned_start, t.route_length_m,
       t.plan->'route' AS route,
       coalesce((t.plan->>'corridor_m')::float8, 50) AS corridor_m,
       coalesce((SELECT json_agg(json_build_object(
                    'stop_id', s.stop_id, 'order_id', s.order_id, 'lon', s.lon, 'lat', s.lat,
                    'route_m', s.route_m, 'status', s.status,
                    'planned_arrival', s.planned_arrival, 'window_start', s.window_start,
                    'window_end', s.window_end, 'arrived_at', s.arrived_at,
                    'departed_at', s.departed_at, 'eta', s.eta, 'eta_low', s.eta_low,
                    'eta_high', s.eta_high) ORDER BY s.seq)
                   FROM stops s WHERE s.trip_id = t.trip_id), '[]'::json) AS stops
  FROM trips t
 WHERE t.status IN ('planned', 'active')
    OR t.updated_at > now() - make_interval(hours => %(recent_h)s)
 ORDER BY t.planned_start DESC
 LIMIT %(limit)s
"""


@router.get("/", include_in_schema=False)
@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/config", include_in_schema=False)
async def dashboard_config(settings: SettingsDep) -> dict[str, Any]:
    """Public, non-secret page settings: the optional map tile URL and its attribution."""
    return {
        "tile_url": settings.dashboard_tile_url,
        "tile_attribution": settings.dashboard_tile_attribution,
    }


@router.get("/v1/dashboard/trips", tags=["dashboard"])
async def dashboard_trips(
    conn: ConnDep,
    _: Annotated[Any, Depends(require_role("supervisor"))],
    recent_h: Annotated[
        int, Query(ge=0, le=168, description="also trips ended this recently")
    ] = 12,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> list[dict[str, Any]]:
    """Planned and active trips (plus recently finished ones) with their route GeoJSON
    and stops (windows, arrival/departure, ETA with its low/high band)."""
    cur = await conn.execute(_TRIPS_SQL, {"recent_h": recent_h, "limit": limit})
    return list(await cur.fetchall())
