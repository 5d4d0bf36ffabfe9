"""Small factories for compliance tests: routes in local metres, plans, ping streams.

Routes are drawn in metres around a fixed origin and converted to [lon, lat] with an
azimuthal equidistant projection, so expectations can be written in metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from compliance.plan import TripPlan
from compliance.types import PingBatch
from geo.projection import LocalProjection

ORIGIN = LocalProjection.centred_on(106.8456, -6.2088)
T0_MS = 1_763_798_400_000  # 2025-11-22T08:00:00Z


def lonlat(xy: Sequence[tuple[float, float]]) -> list[list[float]]:
    """Metres around :data:`ORIGIN` -> [[lon, lat], ...]."""
    arr = np.asarray(xy, dtype=np.float64)
    lon, lat = ORIGIN.to_lonlat(arr[:, 0], arr[:, 1])
    return [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]


def plan(
    route_xy: Sequence[tuple[float, float]], stops: Sequence[dict[str, Any]] = (), **extra: Any
) -> TripPlan:
    """A plan over ``route_xy`` (metres); each stop dict has ``xy`` plus §3 stop fields."""
    stop_objs = []
    for s in stops:
        s = dict(s)
        xy = s.pop("xy")
        s["location"] = lonlat([xy])[0]
        stop_objs.append(s)
    obj: dict[str, Any] = {
        "trip_id": extra.pop("trip_id", "T1"),
        "vehicle_id": extra.pop("vehicle_id", "V1"),
        "planned_start": extra.pop("planned_start", T0_MS),
        "route": {"type": "LineString", "coordinates": lonlat(route_xy)},
        "stops": stop_objs,
    }
    obj.update(extra)
    return TripPlan.model_validate(obj)


def polyline_at(
    route_xy: Sequence[tuple[float, float]], dist_m: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Points at distances ``dist_m`` along the polyline (metres) -> (x, y)."""
    r = np.asarray(route_xy, dtype=np.float64)
    seg = np.hypot(*np.diff(r, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    d = np.clip(dist_m, 0, cum[-1])
    return np.interp(d, cum, r[:, 0]), np.interp(d, cum, r[:, 1])


def drive(
    route_xy: Sequence[tuple[float, float]],
    profile: Sequence[tuple[float, float]],
    dt_s: float = 1.0,
    t0_ms: int = T0_MS,
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]:
    """Drive along the route: ``profile`` = [(duration_s, speed_kmh), ...].

    Returns (ts_ms, x_m, y_m, speed_kmh) sampled every ``dt_s``.
    """
    ts = []
    dist = []
    spd = []
    t = 0.0
    d = 0.0
    for dur, kmh in profile:
        steps = round(dur / dt_s)
        for _ in range(steps):
            t += dt_s
            d += kmh / 3.6 * dt_s
            ts.append(t)
            dist.append(d)
            spd.append(kmh)
    x, y = polyline_at(route_xy, np.asarray(dist))
    return (t0_ms + (np.asarray(ts) * 1000).astype(np.int64), x, y, np.asarray(spd, float))


def headings(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The heading of a drive's true positions, degrees clockwise from north (x east, y
    north): each fix's that of the step to the next one (the last fix's, of the step to
    it)."""
    dx, dy = np.diff(x), np.diff(y)
    h = np.degrees(np.arctan2(dx, dy)) % 360.0
    return np.append(h, h[-1]) if len(h) else np.zeros(len(x))


def batch(
    vehicle_id: str,
    ts_ms: npt.NDArray[np.int64],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    speed_kmh: npt.NDArray[np.float64] | None = None,
    accuracy_m: float = 5.0,
    seq: npt.NDArray[np.int64] | None = None,
    heading_deg: npt.NDArray[np.float64] | None = None,
) -> PingBatch:
    """A :class:`PingBatch` of one vehicle from local metres (``seq`` -1, ``heading_deg``
    NaN when not given)."""
    lon, lat = ORIGIN.to_lonlat(np.asarray(x, float), np.asarray(y, float))
    n = len(ts_ms)
    spd = np.full(n, np.nan) if speed_kmh is None else np.asarray(speed_kmh, float)
    return PingBatch(
        [vehicle_id] * n,
        np.asarray(ts_ms, np.int64),
        lat,
        lon,
        spd,
        np.full(n, np.nan) if heading_deg is None else np.asarray(heading_deg, float),
        np.full(n, accuracy_m),
        np.full(n, -1, np.int64) if seq is None else np.asarray(seq, np.int64),
    )
