"""Customer tracking (CONTRACT §6): ``GET /v1/track/{tracking_number}`` and the page.

Public, so it shows only what the customer should see, answers unknown, malformed and
expired numbers with the same 404, and is rate limited per client address. (Anything
that is not a tracking number — control characters, NUL included — is refused by
``normalize`` before any database lookup: the same 404.)

The vehicle's position is shown only while the order is on its way and its stop is at
most ``Settings.track_position_stops_away`` stops away — counting the stops before it
that the vehicle has not yet *left* (a vehicle standing at another customer's door shows
that customer's address) — with the planned path from the vehicle's matched position on
the route to this stop only: never the route beyond it, and no path vertex within
another stop's radius.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import shapely
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from api.deps import ConnDep, SettingsDep
from api.main import STATIC_DIR
from api.ratelimit import TokenBuckets
from api.schemas import TrackPublic
from compliance.route import MeasuredRoute
from geo.geodesy import haversine_m_array
from routewatch.settings import Settings
from store import orders, pod
from store.tracking import normalize

router = APIRouter(tags=["tracking"])

NOT_FOUND = "no shipment with this tracking number"
#: order statuses during which the vehicle may be shown
EN_ROUTE = ("out_for_delivery", "arriving")
#: path vertices nearer than this to another stop are dropped, at the least (metres)
OTHER_STOP_CLEARANCE_M = 30.0
#: a path is simplified to 1/PATH_DETAIL of its extent: sub-pixel on any phone's map
PATH_DETAIL = 2000
#: decimals of the coordinates given out (1e-6 degrees is about 0.1 m)
DECIMALS = 6

#: measured routes kept (least recently used dropped): the trips being tracked right now
ROUTE_CACHE_SIZE = 512
_ROUTES: OrderedDict[tuple[str, datetime], MeasuredRoute] = OrderedDict()

_VEHICLE = """
SELECT t.status AS trip_status, t.updated_at AS trip_updated_at, vs.ts, vs.lat, vs.lon, vs.heading_deg, vs.route_m
  FROM trips t JOIN vehicle_state vs ON vs.vehicle_id = t.vehicle_id AND vs.trip_id = t.trip_id
 WHERE t.trip_id = %s
"""
_STOPS = """
SELECT seq, status, lon, lat, route_m, radius_m FROM stops WHERE trip_id = %s ORDER BY seq
"""


async def _limit(request: Request, conn: orders.Conn, settings: Settings) -> None:
    buckets: TokenBuckets | None = getattr(request.app.state, "track_buckets", None)
    if buckets is None:
        buckets = TokenBuckets(settings.track_rate_per_s, settings.track_burst)
        request.app.state.track_buckets = buckets
    client = request.client.host if request.client else "unknown"
    wait_s = await buckets.take(conn, client)
    if wait_s > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many lookups; slow down",
            {"Retry-After": TokenBuckets.retry_after(wait_s)},
        )


async def _stops_before(conn: orders.Conn, order: dict[str, Any]) -> int | None:
    """Deliveries the vehicle still has to make before this one (None when not en route)."""
    if order["status"] not in ("out_for_delivery", "arriving") or order["seq"] is None:
        return None
    cur = await conn.execute(
        "SELECT count(*) AS n FROM stops WHERE trip_id = %s AND seq < %s AND status = 'pending'",
        (order["trip_id"], order["seq"]),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else None


def _expired(order: dict[str, Any], settings: Settings) -> bool:
    """A finished order's number stops answering ``track_expiry_days`` after its last change."""
    if order["status"] not in orders.TERMINAL:
        return False
    age = datetime.now(UTC) - order["updated_at"]
    return age > timedelta(days=settings.track_expiry_days)


async def _measured_route(conn: orders.Conn, trip_id: str, version: datetime) -> MeasuredRoute:
    """The trip's route, measured; kept per process while the trip row is unchanged (a
    new plan changes ``updated_at``), so a poll costs neither its JSON nor projecting it."""
    key = (trip_id, version)
    route = _ROUTES.pop(key, None)
    if route is None:
        cur = await conn.execute(
            "SELECT plan->'route' AS route FROM trips WHERE trip_id = %s", (trip_id,)
        )
        row = await cur.fetchone()
        assert row is not None
        route = MeasuredRoute.of(row["route"])
    _ROUTES[key] = route
    while len(_ROUTES) > ROUTE_CACHE_SIZE:
        _ROUTES.popitem(last=False)
    return route


def _simplified(path: np.ndarray) -> np.ndarray:
    """``path`` with no more detail than a phone's map shows: Douglas-Peucker within
    1/:data:`PATH_DETAIL` of its extent (at least about a metre); the ends are kept."""
    extent = float(np.ptp(path, axis=0).max())
    tolerance = max(1e-5, extent / PATH_DETAIL)
    return shapely.get_coordinates(shapely.simplify(shapely.linestrings(path), tolerance))


def _away_from_others(path: np.ndarray, others: list[dict[str, Any]]) -> np.ndarray:
    """``path`` ([lon, lat] rows, the last one this stop) without the vertices within an
    other stop's radius (at least :data:`OTHER_STOP_CLEARANCE_M`)."""
    keep = np.ones(len(path), bool)
    for st in others:
        lat, lon = np.array([st["lat"]], np.float64), np.array([st["lon"]], np.float64)
        near = haversine_m_array(path[:, 1], path[:, 0], lat, lon)
        keep &= near > max(float(st["radius_m"]), OTHER_STOP_CLEARANCE_M)
    keep[-1] = True
    return path[keep]


async def _position(
    conn: orders.Conn, order: dict[str, Any], vehicle: dict[str, Any] | None, settings: Settings
) -> dict[str, Any] | None:
    """The vehicle and the remaining path to this stop, when the customer may see them."""
    if (
        vehicle is None
        or vehicle["trip_status"] != "active"
        or order["status"] not in EN_ROUTE
        or order["stop_status"] not in ("pending", "arrived")
        or settings.track_position_stops_away < 1
    ):
        return None
    cur = await conn.execute(_STOPS, (order["trip_id"],))
    stops = await cur.fetchall()
    mine = next(st for st in stops if st["seq"] == order["seq"])
    not_left = sum(
        1 for st in stops if st["seq"] < mine["seq"] and st["status"] in ("pending", "arrived")
    )
    if not_left + 1 > settings.track_position_stops_away:
        return None
    path = None
    remaining_m = None
    if vehicle["route_m"] is not None:
        route = await _measured_route(conn, order["trip_id"], vehicle["trip_updated_at"])
        coords = route.stretch(float(vehicle["route_m"]), float(mine["route_m"]))
        remaining_m = max(0.0, float(mine["route_m"]) - float(vehicle["route_m"]))
        if len(coords):
            coords = _away_from_others(
                _simplified(coords), [st for st in stops if st["seq"] != mine["seq"]]
            )
        if len(coords) >= 2:
            path = {"type": "LineString", "coordinates": np.round(coords, DECIMALS).tolist()}
    age_s = (datetime.now(UTC) - vehicle["ts"]).total_seconds()
    return {
        "lat": round(vehicle["lat"], DECIMALS),
        "lon": round(vehicle["lon"], DECIMALS),
        "ts": vehicle["ts"],
        "age_s": round(max(0.0, age_s), 1),
        "heading_deg": vehicle["heading_deg"],
        "destination": {"lat": round(mine["lat"], DECIMALS), "lon": round(mine["lon"], DECIMALS)},
        "path": path,
        "remaining_m": None if remaining_m is None else round(remaining_m, 1),
    }


@router.get(
    "/v1/track/{tracking_number}",
    response_model=TrackPublic,
    responses={
        404: {"description": "unknown, malformed or expired number (same answer)"},
        429: {"description": "rate limited; see Retry-After"},
    },
    summary="Customer view of a shipment (public)",
)
async def track(
    request: Request, conn: ConnDep, settings: SettingsDep, tracking_number: str
) -> dict[str, Any]:
    await _limit(request, conn, settings)
    canonical = normalize(tracking_number)
    order = await orders.get_by_tracking_number(conn, canonical) if canonical else None
    if order is None or _expired(order, settings):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    cur = await conn.execute(_VEHICLE, (order["trip_id"],))
    vehicle = await cur.fetchone()
    last_update = max(order["updated_at"], vehicle["ts"]) if vehicle else order["updated_at"]
    proof = await pod.get_pod(conn, order["order_id"], with_images=False)
    return {
        "tracking_number": order["tracking_number"],
        "status": order["status"],
        "eta": order["eta"] if order["status"] in orders.ACTIVE else None,
        "eta_window": {"start": order["eta_low"], "end": order["eta_high"]}
        if order["status"] in orders.ACTIVE
        else {},
        "planned_window": {"start": order["window_start"], "end": order["window_end"]},
        "stops_before": await _stops_before(conn, order),
        "last_update": last_update,
        "timeline": [
            {"status": h["status"], "ts": h["ts"]}
            for h in await orders.history(conn, order["order_id"])
        ],
        "pod": None
        if proof is None or order["status"] != "delivered"
        else {
            "delivered_at": proof["received_at"],
            "recipient_name": proof["recipient_name"],
            "condition": proof["condition"],
        },
        "position": await _position(conn, order, vehicle, settings),
    }


def _tile_origin(url: str | None) -> str:
    """The CSP source for a tile URL template: its scheme and host (``{s}`` a wildcard)."""
    if not url:
        return ""
    parts = urlsplit(url.replace("{s}", "__s__"))
    return f" {parts.scheme}://{parts.netloc.replace('__s__', '*')}"


def page_headers(settings: Settings) -> dict[str, str]:
    """The page may load its own files, ask this API, and show tiles only from the
    configured tile server; it sends no Referer (the tracking number is in its path)."""
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src 'self' data:{_tile_origin(settings.track_tile_url)}; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


@router.get("/track/config", include_in_schema=False)
async def tracking_page_config(settings: SettingsDep) -> dict[str, Any]:
    """Public, non-secret page settings: the optional map tile URL and its attribution."""
    return {
        "tile_url": settings.track_tile_url,
        "tile_attribution": settings.track_tile_attribution,
    }


@router.get("/track", include_in_schema=False)
@router.get("/track/{tracking_number}", include_in_schema=False)
async def tracking_page(settings: SettingsDep) -> FileResponse:
    """The customer tracking page; its script reads the number from the path or ``?n=``."""
    return FileResponse(
        STATIC_DIR / "track" / "index.html", media_type="text/html", headers=page_headers(settings)
    )
