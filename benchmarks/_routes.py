"""Synthetic routes and 1 Hz drives for the benchmarks (local metres around Jakarta)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from geo.projection import LocalProjection

ORIGIN = LocalProjection.centred_on(106.8456, -6.2088)
T0_MS = 1_763_798_400_000
F64 = npt.NDArray[np.float64]


def random_route(rng: np.random.Generator, length_m: float, step_m: float = 200.0) -> F64:
    """A wandering polyline of about ``length_m`` metres, vertices every ``step_m``: (n, 2)."""
    n = int(length_m / step_m) + 1
    heading = np.cumsum(rng.normal(0, 0.35, n))
    xy = np.zeros((n, 2))
    xy[1:, 0] = np.cumsum(np.cos(heading[1:]) * step_m)
    xy[1:, 1] = np.cumsum(np.sin(heading[1:]) * step_m)
    return xy


def drive_1hz(
    rng: np.random.Generator, route_xy: F64, speed_mps: float, sigma_m: float
) -> tuple[F64, F64, F64]:
    """Noisy 1 Hz fixes along the route at a steady speed: (t_s, x, y)."""
    seg = np.hypot(*np.diff(route_xy, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    d = np.arange(0.0, cum[-1], speed_mps)
    x = np.interp(d, cum, route_xy[:, 0]) + rng.normal(0, sigma_m, len(d))
    y = np.interp(d, cum, route_xy[:, 1]) + rng.normal(0, sigma_m, len(d))
    return np.arange(len(d), dtype=np.float64), x, y


def plan_dict(trip_id: str, vehicle_id: str, route_xy: F64) -> dict[str, Any]:
    lon, lat = ORIGIN.to_lonlat(route_xy[:, 0], route_xy[:, 1])
    return {
        "trip_id": trip_id,
        "vehicle_id": vehicle_id,
        "planned_start": T0_MS,
        "route": {"type": "LineString", "coordinates": np.column_stack([lon, lat]).tolist()},
        "speed_limit_kmh": 60,
    }
