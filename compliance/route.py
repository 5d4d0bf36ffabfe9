"""Route preparation: a trip plan's geometry in local metres, ready for the kernels.

``prepare(plan)`` projects the route (:mod:`geo.projection`), densifies it to segments of
at most :data:`MAX_SEGMENT_M` metres (so a window in route metres maps to few segments),
and locates every stop along it *in plan order*: each stop is searched only after the
previous one, so a stop on the return leg of an out-and-back or the second lap of a loop
lands on the right pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from compliance.layout import CHUNK_SEGMENTS
from compliance.plan import TripPlan
from geo.projection import LocalProjection, cumulative_m, densify

F64 = npt.NDArray[np.float64]

MAX_SEGMENT_M = 50.0
#: a stop farther than this from the route is a plan problem
MAX_STOP_OFFSET_M = 500.0
#: offsets within this much of each other count as equally near (passes of one place)
_PASS_TIE_M = 25.0
#: passes farther than this beyond a stop's nearest one are not candidates
_PASS_SLACK_M = 150.0
_MAX_PASSES = 8


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
    #: (min x, min y, max x, max y) of each run of CHUNK_SEGMENTS segments, metres: lets
    #: a whole-route search skip the parts that cannot be near a point
    chunk_box_m: F64


def chunk_boxes(x: F64, y: F64) -> F64:
    """Bounding box of each run of :data:`CHUNK_SEGMENTS` consecutive segments (both ends
    of every segment inside), shape (runs, 4). A route has at least two vertices."""
    starts = np.arange(0, len(x) - 1, CHUNK_SEGMENTS)
    lo_x, hi_x = np.minimum(x[:-1], x[1:]), np.maximum(x[:-1], x[1:])
    lo_y, hi_y = np.minimum(y[:-1], y[1:]), np.maximum(y[:-1], y[1:])
    return np.column_stack(
        [
            np.minimum.reduceat(lo_x, starts),
            np.minimum.reduceat(lo_y, starts),
            np.maximum.reduceat(hi_x, starts),
            np.maximum.reduceat(hi_y, starts),
        ]
    )


def _passes(route_x: F64, route_y: F64, cum: F64, px: float, py: float) -> tuple[F64, F64]:
    """Candidate positions of point (px, py) on the route, one per pass near it.

    Returns (route m, offset m) of the nearest segment of each run of segments within
    :data:`_PASS_TIE_M` of the best distance + :data:`_PASS_SLACK_M`, nearest first
    (at most :data:`_MAX_PASSES`)."""
    x0, y0 = route_x[:-1], route_y[:-1]
    dx, dy = np.diff(route_x), np.diff(route_y)
    len2 = dx * dx + dy * dy
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / np.where(len2 > 0, len2, 1.0), 0.0, 1.0)
    m = cum[:-1] + t * np.diff(cum)
    d = np.hypot(x0 + t * dx - px, y0 + t * dy - py)
    near = d <= float(d.min()) + _PASS_SLACK_M
    edges = np.flatnonzero(np.diff(np.concatenate([[0], near.astype(np.int8), [0]])))
    idx = np.array(
        [i for a, b in zip(edges[::2], edges[1::2], strict=True) for i in _pass_minima(d[a:b], a)],
        np.int64,
    )
    idx = idx[np.argsort(d[idx], kind="stable")][:_MAX_PASSES]
    return m[idx], d[idx]


def _pass_minima(d: F64, first: int) -> list[int]:
    """Segment indices (offset by ``first``) of the separate passes in one run of near
    segments: local minima of the offset ``d`` that the route leaves by more than
    :data:`_PASS_TIE_M` in between. A stop edge driven to its end and back (a U-turn a
    block on) is two passes, ~100 m apart along the route, within one near run."""
    out = [0]
    peak = 0.0  # highest offset since the last kept minimum
    for i in range(1, len(d)):
        j = out[-1]
        if d[i] < d[j] and peak - d[j] <= _PASS_TIE_M:
            out[-1] = i  # still the same pass, nearer
            peak = float(d[i])
        elif d[i] > peak:
            peak = float(d[i])
        elif peak - d[j] > _PASS_TIE_M and peak - d[i] > _PASS_TIE_M and d[i] <= d[i - 1]:
            out.append(i)  # came back near after leaving: another pass
            peak = float(d[i])
    return [first + i for i in out]


def _locate_stops(route_x: F64, route_y: F64, cum: F64, sx: F64, sy: F64) -> tuple[F64, F64]:
    """Place every stop on one pass of the route, in plan order (non-decreasing route m),
    minimising the summed offsets (a small DP over each stop's candidate passes).

    Ties within :data:`_PASS_TIE_M` of offset prefer the earlier pass, so a stop on the
    return leg of an out-and-back or the second lap of a loop lands on the right pass."""
    n = len(sx)
    cands = [_passes(route_x, route_y, cum, float(sx[k]), float(sy[k])) for k in range(n)]
    # cost[k][j]: best total for stops 0..k with stop k at candidate j; back-pointers
    costs: list[F64] = []
    back: list[npt.NDArray[np.int64]] = []
    for k, (m, d) in enumerate(cands):
        # offsets count in units of the tie width; the route m breaks ties (earlier first)
        own = np.floor(d / _PASS_TIE_M) + m / (cum[-1] + 1.0) * 1e-3
        if k == 0:
            costs.append(own)
            back.append(np.full(len(m), -1, np.int64))
            continue
        pm = cands[k - 1][0]
        ok = pm[None, :] <= m[:, None] + 1e-6  # previous stop not after this one
        total = np.where(ok, costs[-1][None, :], np.inf)
        j = np.argmin(total, axis=1)
        best = total[np.arange(len(m)), j]
        # no ordered choice: fall back to this stop's nearest pass (reported by validation)
        best = np.where(np.isfinite(best), best, costs[-1].min() + 1e6)
        costs.append(own + best)
        back.append(
            np.where(np.isfinite(total[np.arange(len(m)), j]), j, int(np.argmin(costs[-2])))
        )
    out_m = np.empty(n)
    out_d = np.empty(n)
    if n:
        j = int(np.argmin(costs[-1]))
        for k in range(n - 1, -1, -1):
            out_m[k] = cands[k][0][j]
            out_d[k] = cands[k][1][j]
            j = int(back[k][j])
    return out_m, out_d


def route_lonlat(route: Mapping[str, Any]) -> F64:
    """A validated plan's ``route`` GeoJSON as an (n, 2) [lon, lat] array, parts joined,
    repeated points dropped — :attr:`TripPlan.coordinates` in NumPy."""
    geom = route.get("geometry") if route.get("type") == "Feature" else route
    assert isinstance(geom, Mapping)
    parts = [geom["coordinates"]] if geom["type"] == "LineString" else geom["coordinates"]
    arr = np.concatenate([np.asarray(part, np.float64)[:, :2] for part in parts])
    keep = np.ones(len(arr), bool)
    keep[1:] = np.any(arr[1:] != arr[:-1], axis=1)
    return arr[keep]


@dataclass(frozen=True, slots=True)
class MeasuredRoute:
    """A validated plan's route with the distances along it that :func:`prepare` gives
    (the same projection; densifying keeps distances), so a vehicle's ``route_m`` and a
    stop's ``route_m`` cut it where the engine placed them."""

    lonlat: F64  # (n, 2) [lon, lat]
    x_m: F64
    y_m: F64
    cum_m: F64
    projection: LocalProjection

    @classmethod
    def of(cls, route: Mapping[str, Any]) -> MeasuredRoute:
        arr = route_lonlat(route)
        proj = LocalProjection.for_points(arr, fit=False)
        x, y = proj.to_xy(arr[:, 0], arr[:, 1])
        return cls(arr, x, y, cumulative_m(x, y), proj)

    def stretch(self, from_m: float, to_m: float) -> F64:
        """The part between two distances along the route, as an (n, 2) [lon, lat] array
        (n >= 2, or 0 when ``to_m`` <= ``from_m``): the route's own vertices between them,
        with the two cut points at the ends."""
        cum = self.cum_m
        lo, hi = max(0.0, from_m), min(float(cum[-1]), to_m)
        if not hi > lo:
            return np.empty((0, 2))
        inner = np.flatnonzero((cum > lo) & (cum < hi))
        ex, ey = np.interp([lo, hi], cum, self.x_m), np.interp([lo, hi], cum, self.y_m)
        lon, lat = self.projection.to_lonlat(ex, ey)
        ends = np.column_stack([lon, lat])
        return np.concatenate([ends[:1], self.lonlat[inner], ends[1:]])


def prepare(plan: TripPlan) -> PreparedRoute:
    """Project, densify and index ``plan``'s route; locate its stops and limits."""
    arr = route_lonlat(plan.route)
    proj = LocalProjection.for_points(arr)
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
    if n:
        sm, so = _locate_stops(x, y, cum, np.asarray(sx), np.asarray(sy))
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
        chunk_box_m=chunk_boxes(x, y),
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
