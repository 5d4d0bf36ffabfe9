"""Route preparation: a trip plan's geometry in local metres, ready for the kernels.

``prepare(plan)`` projects the route (:mod:`geo.projection`), densifies it to segments of
at most :data:`MAX_SEGMENT_M` metres (so a window in route metres maps to few segments),
and locates every stop along it *in plan order*: each stop is searched only after the
previous one, so a stop on the return leg of an out-and-back or the second lap of a loop
lands on the right pass. All of it is one Numba call (:func:`_geometry`), some tens of
microseconds a route: replaying tens of thousands of short trips prepares them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from compliance.layout import CHUNK_SEGMENTS
from compliance.plan import TripPlan, route_array
from geo.projection import LocalProjection, aeqd_xy, cumulative_m, cumulative_nb, densify_nb

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


@njit(cache=True)
def chunk_boxes(x, y):
    """Bounding box of each run of :data:`CHUNK_SEGMENTS` consecutive segments (both ends
    of every segment inside), shape (runs, 4). A route has at least two vertices."""
    n_seg = x.shape[0] - 1
    runs = (n_seg + CHUNK_SEGMENTS - 1) // CHUNK_SEGMENTS
    out = np.empty((runs, 4))
    for k in range(runs):
        lo_x = lo_y = np.inf
        hi_x = hi_y = -np.inf
        for i in range(k * CHUNK_SEGMENTS, min((k + 1) * CHUNK_SEGMENTS, n_seg)):
            lo_x = min(lo_x, x[i], x[i + 1])
            lo_y = min(lo_y, y[i], y[i + 1])
            hi_x = max(hi_x, x[i], x[i + 1])
            hi_y = max(hi_y, y[i], y[i + 1])
        out[k, 0] = lo_x
        out[k, 1] = lo_y
        out[k, 2] = hi_x
        out[k, 3] = hi_y
    return out


@njit(cache=True)
def _pass_minima(d, a, b, out, n_out):
    """Append to ``out`` (from ``n_out``) the segment indices of the separate passes in
    the run of near segments [a, b): local minima of the offset ``d`` that the route
    leaves by more than :data:`_PASS_TIE_M` in between. A stop edge driven to its end and
    back (a U-turn a block on) is two passes, ~100 m apart along the route, within one
    near run. Returns the new count."""
    out[n_out] = a
    n_out += 1
    peak = 0.0  # highest offset since the last kept minimum
    for i in range(a + 1, b):
        j = out[n_out - 1]
        if d[i] < d[j] and peak - d[j] <= _PASS_TIE_M:
            out[n_out - 1] = i  # still the same pass, nearer
            peak = d[i]
        elif d[i] > peak:
            peak = d[i]
        elif peak - d[j] > _PASS_TIE_M and peak - d[i] > _PASS_TIE_M and d[i] <= d[i - 1]:
            out[n_out] = i  # came back near after leaving: another pass
            n_out += 1
            peak = d[i]
    return n_out


@njit(cache=True)
def _passes(x, y, cum, px, py, out_m, out_d):
    """Candidate positions of point (px, py) on the route, one per pass near it, into
    ``out_m``/``out_d`` (route m, offset m): the nearest segment of each run of segments
    within :data:`_PASS_SLACK_M` of the best distance, split into passes
    (:func:`_pass_minima`), nearest first, at most :data:`_MAX_PASSES`. Returns how many."""
    n_seg = x.shape[0] - 1
    m = np.empty(n_seg)
    d = np.empty(n_seg)
    best = np.inf
    for i in range(n_seg):
        dx = x[i + 1] - x[i]
        dy = y[i + 1] - y[i]
        len2 = dx * dx + dy * dy
        t = ((px - x[i]) * dx + (py - y[i]) * dy) / (len2 if len2 > 0 else 1.0)
        t = min(max(t, 0.0), 1.0)
        m[i] = cum[i] + t * (cum[i + 1] - cum[i])
        d[i] = math.hypot(x[i] + t * dx - px, y[i] + t * dy - py)
        best = min(best, d[i])
    idx = np.empty(n_seg, np.int64)
    n_idx = 0
    i = 0
    while i < n_seg:
        if d[i] <= best + _PASS_SLACK_M:
            a = i
            while i < n_seg and d[i] <= best + _PASS_SLACK_M:
                i += 1
            n_idx = _pass_minima(d, a, i, idx, n_idx)
        else:
            i += 1
    order = np.argsort(d[idx[:n_idx]], kind="mergesort")  # stable: earlier pass first
    k = min(n_idx, _MAX_PASSES)
    for j in range(k):
        out_m[j] = m[idx[order[j]]]
        out_d[j] = d[idx[order[j]]]
    return k


@njit(cache=True)
def _locate_stops(x, y, cum, sx, sy):
    """Place every stop on one pass of the route, in plan order (non-decreasing route m),
    minimising the summed offsets (a small DP over each stop's candidate passes).

    Ties within :data:`_PASS_TIE_M` of offset prefer the earlier pass, so a stop on the
    return leg of an out-and-back or the second lap of a loop lands on the right pass.
    Returns (route m, offset m) per stop."""
    n = sx.shape[0]
    cm = np.empty((n, _MAX_PASSES))
    cd = np.empty((n, _MAX_PASSES))
    nc = np.empty(n, np.int64)
    for k in range(n):
        nc[k] = _passes(x, y, cum, sx[k], sy[k], cm[k], cd[k])
    # cost[k, j]: best total for stops 0..k with stop k at candidate j; back-pointers
    cost = np.empty((n, _MAX_PASSES))
    back = np.full((n, _MAX_PASSES), -1, np.int64)
    for k in range(n):
        for j in range(nc[k]):
            # offsets count in units of the tie width; the route m breaks ties (earlier first)
            own = math.floor(cd[k, j] / _PASS_TIE_M) + cm[k, j] / (cum[-1] + 1.0) * 1e-3
            if k == 0:
                cost[k, j] = own
                continue
            best = np.inf
            arg = 0
            prev_min = np.inf
            prev_arg = 0
            for q in range(nc[k - 1]):
                if cost[k - 1, q] < prev_min:
                    prev_min = cost[k - 1, q]
                    prev_arg = q
                # previous stop not after this one
                c = cost[k - 1, q] if cm[k - 1, q] <= cm[k, j] + 1e-6 else np.inf
                if c < best:
                    best = c
                    arg = q
            if math.isfinite(best):
                back[k, j] = arg
            else:
                # no ordered choice: this stop's nearest pass (reported by validation)
                best = prev_min + 1e6
                back[k, j] = prev_arg
            cost[k, j] = own + best
    out_m = np.empty(n)
    out_d = np.empty(n)
    if n:
        j = 0
        for q in range(1, nc[n - 1]):
            if cost[n - 1, q] < cost[n - 1, j]:
                j = q
        for k in range(n - 1, -1, -1):
            out_m[k] = cm[k, j]
            out_d[k] = cd[k, j]
            j = back[k, j]
    return out_m, out_d


@njit(cache=True)
def _geometry(pts, stops):
    """The route's frame and geometry in one pass, from its [lon, lat] points (repeated
    ones dropped) and its stops' [lon, lat]: centre (the bounding box's), vertices
    projected and densified, cumulative distance, segment-run boxes, stops projected and
    located. Returns (lon0, lat0, x, y, cum, boxes, stop x, stop y, stop m, stop offset)."""
    n = 1
    for i in range(1, pts.shape[0]):
        if pts[i, 0] != pts[i - 1, 0] or pts[i, 1] != pts[i - 1, 1]:
            n += 1
    lon = np.empty(n)
    lat = np.empty(n)
    lon[0] = pts[0, 0]
    lat[0] = pts[0, 1]
    k = 1
    for i in range(1, pts.shape[0]):
        if pts[i, 0] != pts[i - 1, 0] or pts[i, 1] != pts[i - 1, 1]:
            lon[k] = pts[i, 0]
            lat[k] = pts[i, 1]
            k += 1
    lon0 = (lon.min() + lon.max()) / 2.0
    lat0 = (lat.min() + lat.max()) / 2.0
    px = np.empty(n)
    py = np.empty(n)
    aeqd_xy(lon, lat, lon0, lat0, px, py)
    x, y = densify_nb(px, py, MAX_SEGMENT_M)
    cum = cumulative_nb(x, y)
    sx = np.empty(stops.shape[0])
    sy = np.empty(stops.shape[0])
    aeqd_xy(stops[:, 0], stops[:, 1], lon0, lat0, sx, sy)
    sm, so = _locate_stops(x, y, cum, sx, sy)
    return lon0, lat0, x, y, cum, chunk_boxes(x, y), sx, sy, sm, so


_NO_LIMITS = np.zeros(0)
_NO_LIMITS.flags.writeable = False


def _route_points(plan: TripPlan) -> F64:
    """The plan's route as an (n, 2) [lon, lat] array, parts joined."""
    return route_array(plan.route, trusted=True)


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
        proj = LocalProjection.for_points(arr)
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
    stops = np.array([s.location for s in plan.stops], np.float64).reshape(-1, 2)
    lon0, lat0, x, y, cum, boxes, sx, sy, sm, so = _geometry(_route_points(plan), stops)
    if plan.speed_limits:
        ranges = sorted(plan.speed_limits, key=lambda r: r.from_m)
        lim_from = np.array([r.from_m for r in ranges], np.float64)
        lim_to = np.array([r.to_m for r in ranges], np.float64)
        lim_kmh = np.array([r.kmh for r in ranges], np.float64)
    else:
        lim_from = lim_to = lim_kmh = _NO_LIMITS
    return PreparedRoute(
        projection=LocalProjection(lon0, lat0),
        x_m=x,
        y_m=y,
        cum_m=cum,
        length_m=float(cum[-1]),
        stop_x_m=sx,
        stop_y_m=sy,
        stop_route_m=sm,
        stop_offset_m=so,
        limit_from_m=lim_from,
        limit_to_m=lim_to,
        limit_kmh=lim_kmh,
        default_limit_kmh=float(plan.speed_limit_kmh) if plan.speed_limit_kmh else float("nan"),
        chunk_box_m=boxes,
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
