"""Trip plans as plain CONTRACT §3 dicts (what the OMS would dispatch)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.network import RoadNetwork
from simulator.routing import Route

F64 = npt.NDArray[np.float64]

CORRIDOR_M = 50.0
STOP_RADIUS_M = 75.0
DEFAULT_LIMIT_KMH = 50.0
WINDOW_BEFORE_S = 15 * 60  # delivery window opens this long before the planned arrival
WINDOW_AFTER_S = 15 * 60  # ... and closes this long after it
CURB_OFFSET_M = 6.0  # the stop's address sits this far to the right of the street centre


def rfc3339(epoch_s: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SSZ`` (whole seconds)."""
    return datetime.fromtimestamp(round(epoch_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def speed_limits_kmh(net: RoadNetwork, nodes: list[int]) -> F64:
    """Speed limit of each segment of a node path, km/h."""
    return np.array(
        [net.edge_limit_kmh(net.edge_between(u, v)) for u, v in itertools.pairwise(nodes)],
        np.float64,
    )


def limit_ranges(cum_m: F64, limit_kmh: F64) -> list[dict[str, float]]:
    """Runs of equal per-segment limits -> ``speed_limits`` ranges (metres along the route)."""
    out: list[dict[str, float]] = []
    start = 0
    for k in range(1, len(limit_kmh) + 1):
        if k == len(limit_kmh) or limit_kmh[k] != limit_kmh[start]:
            out.append(
                {
                    "from_m": round(float(cum_m[start]), 1),
                    "to_m": round(float(cum_m[k]), 1),
                    "kmh": float(limit_kmh[start]),
                }
            )
            start = k
    return out


@dataclass(frozen=True, slots=True)
class RouteGeometry:
    """The parts of a plan that depend only on the route (shared by trips on it)."""

    coordinates: list[list[float]]
    speed_limits: list[dict[str, float]]
    stop_locations: list[list[float]]


def route_geometry(net: RoadNetwork, route: Route) -> RouteGeometry:
    """GeoJSON coordinates, ``speed_limits`` ranges and curbside stop locations."""
    x, y = route.xy_m(net)
    lon, lat = net.frame.to_lonlat(x, y)
    locations = []
    for e in route.stop_edges:
        dx, dy = x[e + 1] - x[e], y[e + 1] - y[e]
        norm = float(np.hypot(dx, dy))
        sx = (x[e] + x[e + 1]) / 2 + CURB_OFFSET_M * dy / norm
        sy = (y[e] + y[e + 1]) / 2 - CURB_OFFSET_M * dx / norm
        slon, slat = net.frame.to_lonlat(np.array([sx]), np.array([sy]))
        locations.append([round(float(slon[0]), 7), round(float(slat[0]), 7)])
    return RouteGeometry(
        coordinates=[
            [round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)
        ],
        speed_limits=limit_ranges(route.cum_m(net), speed_limits_kmh(net, route.nodes)),
        stop_locations=locations,
    )


def make_plan(
    geom: RouteGeometry, vehicle_id: str, start_s: int, arrivals_s: F64, service_s: F64
) -> dict[str, Any]:
    """The §3 plan for one trip on a route: geometry, per-range limits, stops with windows."""
    stops = []
    for k, loc in enumerate(geom.stop_locations):
        arr = float(arrivals_s[k])
        stops.append(
            {
                "stop_id": f"S{k + 1}",
                "order_id": f"ORD-{vehicle_id}-{k + 1}",
                "location": list(loc),
                "radius_m": STOP_RADIUS_M,
                "planned_arrival": rfc3339(arr),
                "window": {
                    "start": rfc3339(arr - WINDOW_BEFORE_S),
                    "end": rfc3339(arr + WINDOW_AFTER_S),
                },
                "service_s": float(service_s[k]),
            }
        )
    return {
        "trip_id": f"T-{vehicle_id}",
        "vehicle_id": vehicle_id,
        "planned_start": rfc3339(start_s),
        "route": {"type": "LineString", "coordinates": geom.coordinates},
        "corridor_m": CORRIDOR_M,
        "speed_limit_kmh": DEFAULT_LIMIT_KMH,
        "speed_limits": geom.speed_limits,
        "stops": stops,
    }
