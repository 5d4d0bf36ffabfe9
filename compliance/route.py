"""Route preparation: a trip plan's geometry in local metres, ready for the kernels.

``prepare(plan)`` projects the route (:mod:`geo.projection`), densifies it to segments of
at most :data:`MAX_SEGMENT_M` metres (so a window in route metres maps to few segments),
and locates every stop along it *in plan order*: each stop is searched only after the
previous one, so a stop on the return leg of an out-and-back or the second lap of a loop
lands on the right pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from compliance.plan import TripPlan
from geo.projection import LocalProjection, cumulative_m, densify

F64 = npt.NDArray[np.float64]

MAX_SEGMENT_M = 50.0
#: a stop farther than this from the route is a plan problem
MAX_STOP_OFFSET_M = 500.0
#: candidates within this much of the best distance count as equally near (passes)
_PASS_TIE_M = 25.0


@dataclass(frozen=True, slots=True)
class PreparedRoute:
    """A route in local metres. Arrays are float64; ``cum_m[i]`` is the distance along the
    route at vertex ``i``. Stop arrays follow plan order; speed-limit arrays are sorted."""

    projection: LocalProjection
    x_m: F64
    y_m: F64
    cum_m: F64
    length_m: float
    stop_x_m: F64
    stop_y_m: F64
    stop_route_m: F64  # distance along the route of each stop, metres
    stop_offset_m: F64  # distance of each stop from the route, metres
    limit_from_m: F64
    limit_to_m: F64
    limit_kmh: F64
    default_limit_kmh: float  # NaN when the plan has no general limit


def _locate_after(
    route_x: F64, route_y: F64, cum: F64, px: float, py: float, from_m: float, hint_m: float
) -> tuple[float, float]:
    """(route m, offset m) of the pass nearest (px, py) at or after ``from_m``.

    Passes whose distance is within :data:`_PASS_TIE_M` of the best are ties; among them
    the one nearest ``hint_m`` wins (the position the schedule implies), else the first.
    """
    x0, y0 = route_x[:-1], route_y[:-1]
    dx, dy = np.diff(route_x), np.diff(route_y)
    len2 = dx * dx + dy * dy
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / np.where(len2 > 0, len2, 1.0), 0.0, 1.0)
    m = cum[:-1] + t * np.diff(cum)
    d = np.hypot(x0 + t * dx - px, y0 + t * dy - py)
    ok = cum[1:] >= from_m
    m = np.maximum(m, from_m)
    d = np.where(ok, d, np.inf)
    best = float(d.min())
    near = d <= best + _PASS_TIE_M
    # one candidate per pass: the nearest segment of each run of near segments
    edges = np.flatnonzero(np.diff(np.concatenate([[0], near.astype(np.int8), [0]])))
    passes = [int(a + np.argmin(d[a:b])) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    i = min(passes, key=lambda j: abs(m[j] - hint_m)) if np.isfinite(hint_m) else passes[0]
    return float(m[i]), float(d[i])


def prepare(plan: TripPlan) -> PreparedRoute:
    """Project, densify and index ``plan``'s route; locate its stops and limits."""
    coords = plan.coordinates
    proj = LocalProjection.for_points(coords)
    arr = np.asarray(coords, dtype=np.float64)
    x, y = proj.to_xy(arr[:, 0], arr[:, 1])
    x, y = densify(x, y, MAX_SEGMENT_M)
    cum = cumulative_m(x, y)
    length_m = float(cum[-1])
    n = len(plan.stops)
    sx = np.empty(n)
    sy = np.empty(n)
    sm = np.empty(n)
    so = np.empty(n)
    if n:
        loc = np.asarray([s.location for s in plan.stops], dtype=np.float64)
        sx, sy = proj.to_xy(loc[:, 0], loc[:, 1])
    # planned arrivals give a hint of where along the route each stop should be
    total_s = None
    arrivals = [s.planned_arrival for s in plan.stops]
    if arrivals and arrivals[-1] is not None and arrivals[-1] > plan.planned_start:
        total_s = (arrivals[-1] - plan.planned_start) / 1000.0
    prev_m = 0.0
    for i, s in enumerate(plan.stops):
        hint = np.nan
        if total_s and s.planned_arrival is not None:
            hint = length_m * min(1.0, (s.planned_arrival - plan.planned_start) / 1000.0 / total_s)
        sm[i], so[i] = _locate_after(x, y, cum, float(sx[i]), float(sy[i]), prev_m, hint)
        prev_m = sm[i]
    ranges = sorted(plan.speed_limits, key=lambda r: r.from_m)
    return PreparedRoute(
        projection=proj,
        x_m=x,
        y_m=y,
        cum_m=cum,
        length_m=length_m,
        stop_x_m=np.asarray(sx, np.float64),
        stop_y_m=np.asarray(sy, np.float64),
        stop_route_m=sm,
        stop_offset_m=so,
        limit_from_m=np.array([r.from_m for r in ranges], np.float64),
        limit_to_m=np.array([r.to_m for r in ranges], np.float64),
        limit_kmh=np.array([r.kmh for r in ranges], np.float64),
        default_limit_kmh=float(plan.speed_limit_kmh) if plan.speed_limit_kmh else float("nan"),
    )


def validate_geometry(plan: TripPlan, route: PreparedRoute | None = None) -> list[str]:
    """Human-readable geometric problems of ``plan`` (empty when fine); pass ``route`` if
    it is already prepared."""
    route = route or prepare(plan)
    problems: list[str] = []
    for s, off in zip(plan.stops, route.stop_offset_m, strict=True):
        if off > MAX_STOP_OFFSET_M:
            problems.append(f"stop {s.stop_id} is {off:.0f} m from the route")
    for r in plan.speed_limits:
        if r.from_m >= route.length_m:
            problems.append(
                f"speed limit range {r.from_m:.0f}-{r.to_m:.0f} m starts beyond the route "
                f"length ({route.length_m:.0f} m)"
            )
    for k, v in plan.thresholds.items():
        if not np.isfinite(v) or v < 0:
            problems.append(f"threshold {k} must be a non-negative number")
    return problems
