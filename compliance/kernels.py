"""Numba kernels: route matching and every per-ping detector.

Each ``@njit`` function takes only NumPy arrays and scalars (layouts in
:mod:`compliance.layout`); the engine's typed wrappers build those arrays. The kernels are
pure: given the same state and pings they write the same state, results and events, which
is what makes replay, re-batching and checkpoint/restore give identical events.
Units: metres, epoch milliseconds (timestamps), seconds (durations), km/h (speeds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from compliance.layout import (
    CHUNK_SEGMENTS,
    E_PING,
    E_STOP,
    E_TYPE,
    EV_BACK_ON_ROUTE,
    EV_BACK_ON_SCHEDULE,
    EV_LATE,
    EV_OFF_ROUTE,
    EV_SIGNAL_LOST,
    EV_SIGNAL_RESTORED,
    EV_SPEEDING,
    EV_SPEEDING_ENDED,
    EV_STOP_ARRIVED,
    EV_STOP_DEPARTED,
    EV_TRIP_ABANDONED,
    EV_TRIP_COMPLETED,
    EV_TRIP_ENDED_QUIET,
    EV_TRIP_STARTED,
    EV_UNPLANNED_STOP,
    EV_UNPLANNED_STOP_ENDED,
    F_LAT,
    F_LON,
    F_M,
    F_V0,
    F_V1,
    F_V2,
    P_CORRIDOR_M,
    P_DEFAULT_LIMIT,
    P_END_X,
    P_END_Y,
    P_LENGTH_M,
    P_PLANNED_END_MS,
    P_PLANNED_MPS,
    RING,
    S_ACC_TS,
    S_ACC_X,
    S_ACC_Y,
    S_ANCHOR_M,
    S_ANCHOR_TS,
    S_AT_STOP,
    S_CAND_STOP,
    S_CAND_TS,
    S_COMPLETED,
    S_COMPLETED_TS,
    S_DEP_N,
    S_DEP_TS,
    S_ELSE_N,
    S_GAP_FROM,
    S_IN_N,
    S_JUMP_N,
    S_JUMP_TO_M,
    S_LAST_LAT,
    S_LAST_LON,
    S_LAST_M,
    S_LAST_OFFSET,
    S_LAST_ONROUTE,
    S_LAST_TS,
    S_LATE,
    S_LATE_STOP,
    S_LATE_STOPS,
    S_LOST,
    S_M1,
    S_M2,
    S_MOT_HDG,
    S_MOT_KMH,
    S_MOT_TS,
    S_MOT_X,
    S_MOT_Y,
    S_N,
    S_NEXT_STOP,
    S_OFF,
    S_OFF_MAX_M,
    S_ON_TIME,
    S_OUT_MOVED_N,
    S_OUT_N,
    S_OUT_PATH_M,
    S_OUT_SIDE,
    S_OUT_SINCE,
    S_OUT_X0,
    S_OUT_Y0,
    S_PROGRESS,
    S_PROGRESS_TS,
    S_RING,
    S_RING_POS,
    S_SP_ACTIVE,
    S_SP_LIMIT,
    S_SP_M0,
    S_SP_MAX,
    S_SP_SINCE,
    S_SP_UNDER_N,
    S_SP_UNDER_TS,
    S_SPEED_KMH,
    S_ST_ACTIVE,
    S_ST_N,
    S_ST_OUT_N,
    S_ST_OUT_TS,
    S_ST_OUT_X,
    S_ST_OUT_Y,
    S_ST_SINCE,
    S_ST_STILL,
    S_ST_X,
    S_ST_Y,
    S_START_M,
    S_STARTED,
    S_V_MPS,
    S_WILD_N,
    STATUS_ARRIVED,
    STATUS_DEPARTED,
    STATUS_PENDING,
    STATUS_SKIPPED,
    T_M,
    T_OFFSET,
    T_RADIUS,
    T_SERVICE_S,
    T_WIN_END,
    T_X,
    T_Y,
    U_ARRIVED_TS,
    U_DEPARTED_TS,
    U_ENTER_TS,
    U_STATUS,
)

# threshold vector indices (compliance.config.TH_INDEX; asserted equal in the tests)
TH_CORRIDOR_ACC_FREE = 1
TH_OFF_PINGS = 2
TH_OFF_S = 3
TH_BACK_FRACTION = 4
TH_BACK_PINGS = 5
TH_WILD_KMH = 6
TH_MAX_SPEED_KMH = 7
TH_SIGMA_M = 8
TH_ST_RADIUS = 9
TH_ST_S = 10
TH_STOP_DWELL_S = 12
TH_STOP_SLOW_KMH = 13
TH_SP_TOL = 14
TH_SP_MIN_S = 15
TH_LATE_S = 16
TH_LATE_HYST_S = 17
TH_LOST_S = 18
TH_START_M = 20
TH_ABANDON_S = 25
TH_OFF_FAR_M = 26
TH_OFF_DRIVE_KMH = 27
TH_OFF_MOVE_M = 28

#: derived speed: ring entries at least this far apart, baseline at most this long (ms)
RING_STEP_MS = 2500.0
DERIVED_SPAN_MS = 20000.0
#: departure: this far from the centroid of the dwell fixes (two fixes in a row), metres
DEPART_MOVE_M = 40.0
#: a fix whose device speed is at least this was taken moving, km/h (a receiver at a
#: standstill reads well under 1 km/h; the simulator's 1.5 km/h sigma reaches this once
#: in ~2,000 fixes): a departure needs one fix away then, not two (multipath moves a
#: fix, not the Doppler speed; a sparse tracker's departure waited a second interval),
#: and such a fix alone is no stationary cluster (_unplanned_stop)
MOVING_KMH = 5.0
#: progress prior of the very first fix around route start, metres
INITIAL_SIGMA_P_M = 300.0
#: a fix this far ahead of the anchor from a device heading against the route there is
#: no progress (_wrong_way_ahead), metres
WRONG_WAY_AHEAD_M = 1000.0
#: a trip's first match is not taken from a fix over this many sigmas from the route
#: (skipped once: _match)
FIRST_MATCH_SIGMAS = 3.0
#: this many fixes in a row on another part of the route re-anchor matching there
ELSEWHERE_REANCHOR_N = 5
#: how far behind the anchor the window reaches, metres (plus the fix accuracy)
BACK_M = 30.0
#: after a signal gap, re-acquisition may reach as far as the time since the last fix
#: before it allows, for this long, seconds
GAP_REACH_S = 600.0
#: a speeding run goes on until the speed is this far under limit + tolerance, km/h
SPEEDING_HYST_KMH = 2.0
#: the route end: within this many metres of it, along the route
END_M = 30.0
#: a fix's match within this of its foot on the route's segment: abeam (_side)
ABEAM_M = 1.0
#: a progress step this much beyond the furthest progress, plus twice what the vehicle
#: drives since that was reached (at the faster of its last, its progress and its planned
#: speed), is a jump (_progress), metres
PROGRESS_JUMP_M = 1000.0
#: ... whose passed-over stops wait until the progress has gone on this far past where
#: it landed (the vehicle went on: a shortcut past them), metres
JUMP_LAPSE_M = 2000.0
#: multipath throws a fix at most about this far from where a vehicle stands, metres
#: (_unplanned_stop: a far fix beyond it is no scatter)
ST_SCATTER_MAX_M = 400.0
#: a fix whose device speed is below this is standing still, km/h (a crawl in a jam is
#: ~4 km/h)
ST_STILL_KMH = 2.0
#: ... but a fix this far from the cluster is movement whatever the device says, metres
ST_STILL_MAX_M = 100.0
#: two fixes of a vehicle standing still lie within this of each other, metres (noise;
#: a drift moves slowly): further apart, one of them is an outlier
STILL_SCATTER_M = 50.0
#: a step between two fixes of a moving vehicle (device speed at least MOTION_HDG_KMH at
#: both) at most MOTION_HDG_S apart keeps to a bearing between the device's headings at
#: the two, within this many degrees plus the angle the fixes' noise gives (_motion_explains)
MOTION_BEARING_DEG = 30.0
MOTION_HDG_KMH = 10.0
MOTION_HDG_S = 15.0
#: a turn of more than this between the two headings (a U-turn) has no bearing between
MOTION_UTURN_DEG = 120.0
#: the stationary radius is at least this many sigmas of the fix's accuracy
ST_RADIUS_SIGMAS = 3.0
#: beyond this long since the anchor (a signal gap, not sampling), the progress prior
#: widens with the planned speed, seconds
GAP_PRIOR_S = 30.0
#: a vehicle found standing after a moving fix is expected where braking from that
#: fix's speed at this rate ends, m/s^2 (a comfortable stop)
STOP_BRAKE_MS2 = 2.0
#: the ETA window half-width grows by this fraction of the remaining travel time
#: ETA windows, rows (route metres to go, how far below the ETA s, how far above s):
#: knots interpolated between and scaled in proportion beyond the last, the 10th and
#: 90th percentiles of the real arrival per remaining-distance bin (``benchmarks/
#: accuracy.py --calibrate``, 300 simulated vehicles, seed 2, the default fault mix):
#: with the live speed blend alone (it runs late, so its window reaches further early)
#: and with learned speeds (compliance.history)
ETA_WINDOW_LIVE = np.array(
    [
        [302.0, 765.0, 1513.0, 2456.0, 3693.0, 5199.0, 6859.0, 8872.0, 11312.0],
        [28.0, 76.0, 151.0, 248.0, 367.0, 513.0, 634.0, 803.0, 1041.0],
        [19.0, 38.0, 41.0, 66.0, 92.0, 163.0, 220.0, 220.0, 220.0],
    ]
)
ETA_WINDOW_LEARNED = np.array(
    [
        [302.0, 765.0, 1513.0, 2456.0, 3693.0, 5199.0, 6859.0, 8872.0, 11312.0],
        [25.0, 54.0, 76.0, 98.0, 112.0, 134.0, 141.0, 161.0, 226.0],
        [20.0, 47.0, 61.0, 93.0, 134.0, 312.0, 619.0, 760.0, 760.0],
    ]
)


@njit(cache=True)
def _last_at_or_below(cum, v):
    """The last index i with cum[i] <= v (0 when none): ``searchsorted(side="right") - 1``.

    Branch-free halving (the comparison becomes a conditional move): a ping's window
    lands anywhere on a long route, so a branching search mispredicts about half its
    steps.
    """
    if math.isnan(v):
        return cum.shape[0] - 1  # where searchsorted sorts NaN: past the end
    base = 0
    size = cum.shape[0]
    while size > 1:
        half = size // 2
        base = base + half if cum[base + half] <= v else base
        size -= half
    return base


@njit(cache=True, inline="always")
def _segment_of(x, cum, m):
    """The index of the route segment holding route position ``m`` (the last one for
    ``m`` at or past the route's end)."""
    return min(_last_at_or_below(cum, m), x.shape[0] - 2)


@njit(cache=True, inline="always")
def _along(x, y, i, px, py):
    """Segment i as (start x, start y, dx, dy) and where point (px, py) projects on its
    line: t = 0 at the start, 1 at the end (not clamped; 0 for a zero-length segment)."""
    ax = x[i]
    ay = y[i]
    dx = x[i + 1] - ax
    dy = y[i + 1] - ay
    len2 = dx * dx + dy * dy
    t = 0.0
    if len2 > 0.0:
        t = ((px - ax) * dx + (py - ay) * dy) / len2
    return ax, ay, dx, dy, t


@njit(cache=True, inline="always")
def _segment_score(x, y, cum, i, px, py, lo_m, hi_m, m_exp, inv_d2, inv_p):
    """(score, squared offset, route m) of point (px, py) on segment i, the match
    clamped to the segment and to [lo_m, hi_m] (see :func:`match_window`)."""
    ax, ay, dx, dy, t = _along(x, y, i, px, py)
    # the progress term sees the along-track position extended past the segment's
    # ends, so a segment's clamped end never beats the segment the point projects on
    m_line = cum[i] + t * (cum[i + 1] - cum[i])
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    m = cum[i] + t * (cum[i + 1] - cum[i])
    if m < lo_m:
        m = lo_m
        t = (m - cum[i]) / (cum[i + 1] - cum[i]) if cum[i + 1] > cum[i] else 0.0
    elif m > hi_m:
        m = hi_m
        t = (m - cum[i]) / (cum[i + 1] - cum[i]) if cum[i + 1] > cum[i] else 0.0
    ex = ax + t * dx - px
    ey = ay + t * dy - py
    d2 = ex * ex + ey * ey
    zp = (min(max(m_line, lo_m), hi_m) - m_exp) * inv_p
    return 0.5 * (d2 * inv_d2 + zp * zp), d2, m


@njit(cache=True)
def match_window(x, y, cum, px, py, lo_m, hi_m, m_exp, sigma_d, sigma_p):
    """Best route position for point (px, py) among segments overlapping [lo_m, hi_m].

    Score = 0.5 (d/sigma_d)^2 + 0.5 ((m - m_exp)/sigma_p)^2: cross-track distance d and
    plausibility of progress m (an HMM emission x transition term for one step), with m
    taken on the segment's line (clamped to the window) so that ties between adjacent
    segments go to the one the point projects onto. Returns (route_m, offset_m, cost);
    route_m is clamped to the segment and the window. Of equal scores the first
    segment's wins.
    """
    # the first segment reaching lo_m
    i0 = min(_last_at_or_below(cum, lo_m), x.shape[0] - 2)
    return _scan(x, y, cum, i0, px, py, lo_m, hi_m, m_exp, sigma_d, sigma_p)


@njit(cache=True, inline="always")
def _scan(x, y, cum, i0, px, py, lo_m, hi_m, m_exp, sigma_d, sigma_p):
    """:func:`match_window` from segment ``i0`` on: in order, up to the first segment
    reaching hi_m (a walk of a few segments is cheaper than a second binary search)."""
    best_m = cum[i0]
    best_d2 = 1e300
    best_c = 1e300
    inv_d2 = 1.0 / (sigma_d * sigma_d)
    inv_p = 1.0 / sigma_p
    for i in range(i0, x.shape[0] - 1):
        c, d2, m = _segment_score(x, y, cum, i, px, py, lo_m, hi_m, m_exp, inv_d2, inv_p)
        if c < best_c:
            best_c = c
            best_d2 = d2
            best_m = m
        if cum[i + 1] >= hi_m:
            break
    # one square root per ping, not per segment
    return best_m, math.sqrt(best_d2), best_c


@njit(cache=True, inline="always")
def _box_bound(boxes, k, px, py, inv_d2):
    """A lower bound of the score of any point of the segments in run ``k`` (its
    bounding box's distance; the progress term is at least 0)."""
    gx = max(boxes[k, 0] - px, 0.0, px - boxes[k, 2])
    gy = max(boxes[k, 1] - py, 0.0, py - boxes[k, 3])
    return 0.5 * (gx * gx + gy * gy) * inv_d2


@njit(cache=True)
def match_route(x, y, cum, boxes, px, py, lo_m, hi_m, m_exp, sigma_d, sigma_p):
    """:func:`match_window`'s answer, bit for bit, measuring only the runs of
    CHUNK_SEGMENTS segments (``boxes``: their bounding boxes) that could hold a better
    score: first the run whose box lies nearest, then every other whose box's bound
    does not exceed the best score found. A wide window far from the point - a trip
    not started yet, the next trip's shadow while the vehicle drives another route -
    costs a box test per run and a run or two instead of every segment."""
    n = x.shape[0]
    i0 = min(_last_at_or_below(cum, lo_m), n - 2)
    k0 = i0 // CHUNK_SEGMENTS
    b = (k0 + 2) * CHUNK_SEGMENTS
    if b >= n - 1 or cum[b] >= hi_m:
        # the scan ends within two runs (a matched vehicle's window): in order
        return _scan(x, y, cum, i0, px, py, lo_m, hi_m, m_exp, sigma_d, sigma_p)
    # the last segment the scan would measure: the first reaching hi_m
    i1 = n - 2
    if hi_m <= cum[n - 1]:  # (NaN: to the end, as the scan)
        i1 = max(i0, min(_last_at_or_below(cum, hi_m), n - 2))
        while i1 > i0 and cum[i1] >= hi_m:
            i1 -= 1
    k1 = i1 // CHUNK_SEGMENTS
    inv_d2 = 1.0 / (sigma_d * sigma_d)
    inv_p = 1.0 / sigma_p
    first = k0
    first_lb = _box_bound(boxes, k0, px, py, inv_d2)
    for k in range(k0 + 1, k1 + 1):
        lb = _box_bound(boxes, k, px, py, inv_d2)
        if lb < first_lb:
            first, first_lb = k, lb
    best_m = cum[i0]
    best_d2 = 1e300
    best_c = 1e300
    best_i = -1
    for j in range(k0 - 1, k1 + 1):
        k = first if j < k0 else j
        if j >= k0:
            if k == first:
                continue
            # (a margin for rounding: a run is skipped only when clearly worse)
            if _box_bound(boxes, k, px, py, inv_d2) * (1.0 - 1e-9) > best_c:
                continue
        for i in range(max(i0, k * CHUNK_SEGMENTS), min(i1, (k + 1) * CHUNK_SEGMENTS - 1) + 1):
            c, d2, m = _segment_score(x, y, cum, i, px, py, lo_m, hi_m, m_exp, inv_d2, inv_p)
            # of equal scores the first segment's, as match_window's scan in order
            if c < best_c or (c == best_c and 0 <= i < best_i):
                best_c = c
                best_d2 = d2
                best_m = m
                best_i = i
    return best_m, math.sqrt(best_d2), best_c


@njit(cache=True)
def near_any(x, y, boxes, chunk, px, py, radius):
    """Whether some segment of the route lies within ``radius`` metres of (px, py).

    Exact (a segment's own distance decides), but only the segments of runs whose
    bounding box ``boxes`` (runs of ``chunk`` segments, see compliance.route) comes within
    ``radius`` are measured: a vehicle far off a long route costs a few dozen box tests
    instead of a pass over every segment.
    """
    r2 = radius * radius
    n = x.shape[0]
    for k in range(boxes.shape[0]):
        gx = max(boxes[k, 0] - px, 0.0, px - boxes[k, 2])
        gy = max(boxes[k, 1] - py, 0.0, py - boxes[k, 3])
        if gx * gx + gy * gy > r2:
            continue
        for i in range(k * chunk, min((k + 1) * chunk, n - 1)):
            ax, ay, dx, dy, t = _along(x, y, i, px, py)
            t = min(1.0, max(0.0, t))
            ex = ax + t * dx - px
            ey = ay + t * dy - py
            if ex * ex + ey * ey <= r2:
                return True
    return False


@njit(cache=True)
def crosses_route(x, y, boxes, chunk, ax, ay, bx, by):
    """Whether the straight step from (ax, ay) to (bx, by) meets the route: some segment
    intersects it (touching counts). Only the segments of runs whose bounding box
    ``boxes`` (runs of ``chunk`` segments) the step's own box meets are tested."""
    lox = min(ax, bx)
    hix = max(ax, bx)
    loy = min(ay, by)
    hiy = max(ay, by)
    sx = bx - ax
    sy = by - ay
    n = x.shape[0]
    for k in range(boxes.shape[0]):
        if boxes[k, 0] > hix or boxes[k, 2] < lox or boxes[k, 1] > hiy or boxes[k, 3] < loy:
            continue
        for i in range(k * chunk, min((k + 1) * chunk, n - 1)):
            cx = x[i]
            cy = y[i]
            ex = x[i + 1]
            ey = y[i + 1]
            # the step's ends not both strictly on one side of the segment's line, nor
            # the segment's ends of the step's (cross products)
            c1 = (ex - cx) * (ay - cy) - (ey - cy) * (ax - cx)
            c2 = (ex - cx) * (by - cy) - (ey - cy) * (bx - cx)
            c3 = sx * (cy - ay) - sy * (cx - ax)
            c4 = sx * (ey - ay) - sy * (ex - ax)
            if c1 * c2 > 0.0 or c3 * c4 > 0.0:
                continue
            if c1 == 0.0 and c2 == 0.0:  # collinear: they must overlap
                if max(cx, ex) < lox or min(cx, ex) > hix:
                    continue
                if max(cy, ey) < loy or min(cy, ey) > hiy:
                    continue
            return True
    return False


@njit(cache=True)
def limit_at(route_m, lim_from, lim_to, lim_kmh, default_kmh):
    """Speed limit in km/h at ``route_m`` metres (NaN when none applies)."""
    i = np.searchsorted(lim_from, route_m, side="right") - 1
    if i >= 0 and route_m < lim_to[i]:
        return lim_kmh[i]
    return default_kmh


@njit(cache=True)
def expected_mps(st, par):
    """Expected speed for ETAs, m/s: planned speed blended with the recent speed."""
    planned = par[P_PLANNED_MPS]
    v = st[S_V_MPS]
    if not math.isfinite(v):
        return planned
    v = 0.5 * planned + 0.5 * v
    if v < 0.3 * planned:
        v = 0.3 * planned
    if v > 2.0 * planned:
        v = 2.0 * planned
    return v


@njit(cache=True, inline="always")
def _passed_over(st, stops, k):
    """Stops: whether stop ``k`` lies behind where the progress landed on its latest jump
    - passed over, it waits for the vehicle (:func:`_stops`)."""
    return stops[k, T_M] <= st[S_JUMP_TO_M]


@njit(cache=True)
def passed_over(st, stops, k):
    """:func:`_passed_over` on its own (for the learned-speed ETAs)."""
    return _passed_over(st, stops, k)


@njit(cache=True, inline="always")
def _to_go_m(st, stops, k, pos):
    """ETA: the metres stop ``k`` is ahead of the progress ``pos`` along the route; for
    a stop passed over by a jump of the progress, which waits for the vehicle, the
    straight line from the last accepted fix to it (the way back to it is not known,
    and none is shorter): not "due now" while the vehicle is kilometres away."""
    if _passed_over(st, stops, k) and math.isfinite(st[S_ACC_X]):
        return math.hypot(st[S_ACC_X] - stops[k, T_X], st[S_ACC_Y] - stops[k, T_Y])
    return stops[k, T_M] - pos


@njit(cache=True)
def stop_etas(st, par, stops, ustat, now_ms, out):
    """ETA per stop into ``out`` (n, 3) = (eta, low, high) epoch ms; NaN for resolved stops.

    eta = now + the distance to go (:func:`_to_go_m`) / expected speed + service times
    of the stops before it (what is left of the current one); the window widens with
    the distance.
    """
    n = stops.shape[0]
    v = expected_mps(st, par)
    pos = st[S_PROGRESS]
    if not math.isfinite(pos):
        pos = 0.0
    service_ms = 0.0
    at = int(st[S_AT_STOP])
    if at >= 0:
        left = stops[at, T_SERVICE_S] * 1000.0 - (now_ms - ustat[at, U_ENTER_TS])
        if left > 0.0:
            service_ms = left
    for k in range(n):
        out[k, 0] = np.nan
        out[k, 1] = np.nan
        out[k, 2] = np.nan
        if ustat[k, U_STATUS] != STATUS_PENDING:
            continue
        to_go = _to_go_m(st, stops, k, pos)
        eta = now_ms + max(0.0, to_go) / v * 1000.0 + service_ms
        out[k, 0] = eta
        out[k, 1], out[k, 2] = eta_window(eta, now_ms, to_go, ETA_WINDOW_LIVE)
        service_ms += stops[k, T_SERVICE_S] * 1000.0


@njit(cache=True)
def eta_window(eta_ms, now_ms, ahead_m, knots):
    """(low, high) epoch ms around ``eta_ms`` for a stop ``ahead_m`` route metres ahead,
    from a calibrated ``ETA_WINDOW_*`` table: it widens with the distance to go."""
    ahead_m = max(0.0, ahead_m)
    last = knots.shape[1] - 1
    if ahead_m <= knots[0, last]:
        below = np.interp(ahead_m, knots[0], knots[1])
        above = np.interp(ahead_m, knots[0], knots[2])
    else:
        scale = ahead_m / knots[0, last]
        below = knots[1, last] * scale
        above = knots[2, last] * scale
    return max(eta_ms - below * 1000.0, now_ms), eta_ms + above * 1000.0


@njit(cache=True)
def _emit(ev_i, ev_ts, ev_f, ne, code, ping, stop, ts, v0, v1, v2, lat, lon, m):
    ev_i[ne, E_TYPE] = code
    ev_i[ne, E_PING] = ping
    ev_i[ne, E_STOP] = stop
    ev_ts[ne] = np.int64(ts)
    ev_f[ne, F_V0] = v0
    ev_f[ne, F_V1] = v1
    ev_f[ne, F_V2] = v2
    ev_f[ne, F_LAT] = lat
    ev_f[ne, F_LON] = lon
    ev_f[ne, F_M] = m
    return ne + 1


@njit(cache=True)
def _reach_m(st, ts, length, vmax_mps, acc):
    """The furthest route position the vehicle can have reached by ``ts``, metres: from
    the latest match at top speed since the anchor - or since the last fix before a
    signal gap within the last GAP_REACH_S (post-gap fixes may have 'confirmed' the
    anchor on the wrong pass of a street the route takes twice)."""
    if not math.isfinite(st[S_ANCHOR_M]):
        return length
    since = _since_gap(st, ts, st[S_ANCHOR_TS])
    ref, _ref_ts = _latest_match(st)
    return ref + vmax_mps * (ts - since) / 1000.0 + 50.0 + acc


@njit(cache=True, inline="always")
def _since_gap(st, ts, since):
    """Matching: ``since`` (epoch ms), or the last fix before a coverage gap within the
    last GAP_REACH_S when that is earlier - how long the vehicle may have driven,
    counted from before the gap (the first fixes after it refresh the anchor and
    advance the median progress with matches from before it)."""
    gap_from = st[S_GAP_FROM]
    if gap_from > 0.0 and ts - gap_from <= GAP_REACH_S * 1000.0 and gap_from < since:
        return gap_from
    return since


@njit(cache=True, inline="always")
def _ring_ts(st, back):
    """The ts of the speed ring's entry ``back`` places back (1: the newest; NaN none).
    Reads the state only."""
    return st[S_RING + 2 * ((int(st[S_RING_POS]) - back) % RING)]


@njit(cache=True, inline="always")
def _stands(spd_kmh):
    """Whether a device speed says the vehicle stands still (False when unknown: NaN)."""
    return spd_kmh < ST_STILL_KMH


@njit(cache=True, inline="always")
def _moves(spd_kmh):
    """Whether a device speed says the vehicle moves (MOVING_KMH; False when unknown)."""
    return spd_kmh >= MOVING_KMH


@njit(cache=True, inline="always")
def _still_mark(spd_kmh):
    """Unplanned stop: S_ST_STILL for a fix of device speed ``spd_kmh``: 1 standing
    still, -1 moving (MOVING_KMH), 0 neither or unknown."""
    if _stands(spd_kmh):
        return 1.0
    return -1.0 if _moves(spd_kmh) else 0.0


@njit(cache=True)
def _derived_kmh(st, ts):
    """Progress speed over the ring of recent on-route pings (the oldest within
    DERIVED_SPAN_MS), km/h; NaN if that spans < 5 s."""
    best_ts = ts
    best_m = np.nan
    for j in range(RING):
        t = st[S_RING + 2 * j]
        if math.isfinite(t) and ts - t <= DERIVED_SPAN_MS and t < best_ts:
            best_ts = t
            best_m = st[S_RING + 2 * j + 1]
    if not math.isfinite(best_m) or ts - best_ts < 5000.0:
        return np.nan
    return max(0.0, (st[S_LAST_M] - best_m)) / ((ts - best_ts) / 1000.0) * 3.6


# ---------------------------------------------------------------------------------------
# The per-ping pipeline. ``process_pings`` runs these stages in order for every ping;
# each is inlined into it (Numba IR inlining: one compiled loop, as before the split)
# and owns the state slots listed in STAGES - the only ones it writes
# (tests/compliance/test_stages.py checks the code against the table). Every stage that
# can emit events takes the event buffers and the running count ``ne`` and returns the
# new count.
# ---------------------------------------------------------------------------------------

#: (stage, its functions, the detector state slots it owns), in pipeline order
STAGES: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    (
        "signal",
        ("_signal", "_signal_lost", "time_check"),
        (S_N, S_LAST_TS, S_LAST_LAT, S_LAST_LON, S_LOST, S_GAP_FROM),
    ),
    ("wild fix", ("_wild_fix", "_accept_fix"), (S_WILD_N, S_ACC_TS, S_ACC_X, S_ACC_Y)),
    (
        "matching",
        (
            "_match",
            "_match_prior",
            "_implausible_jump",
            "_latest_match",
            "_step_explained",
            "_other_pass",
            "_progress_confirmed",
            "_restart_behind",
            "_progress",
        ),
        (
            S_LAST_M,
            S_LAST_OFFSET,
            S_JUMP_N,
            S_ELSE_N,
            S_ANCHOR_M,
            S_ANCHOR_TS,
            S_M1,
            S_M2,
            S_START_M,
            S_PROGRESS,
            S_JUMP_TO_M,
            S_PROGRESS_TS,
            S_RING_POS,
            *range(S_RING, S_RING + 2 * RING),
        ),
    ),
    (
        "off-route",
        ("_was_on_route", "_off_route", "_side", "_driving_away", "_motion_explains"),
        (
            S_OFF,
            S_OUT_N,
            S_OUT_SINCE,
            S_OUT_PATH_M,
            S_IN_N,
            S_OFF_MAX_M,
            S_LAST_ONROUTE,
            S_OUT_X0,
            S_OUT_Y0,
            S_OUT_SIDE,
            S_OUT_MOVED_N,
            S_MOT_TS,
            S_MOT_X,
            S_MOT_Y,
            S_MOT_KMH,
            S_MOT_HDG,
        ),
    ),
    ("speed", ("_speed",), (S_V_MPS, S_SPEED_KMH)),
    ("trip start", ("_trip_start",), (S_STARTED,)),
    (
        "stops",
        ("_stops",),
        (
            S_AT_STOP,
            S_DEP_N,
            S_DEP_TS,
            S_NEXT_STOP,
            S_CAND_STOP,
            S_CAND_TS,
            S_ON_TIME,
            S_LATE_STOPS,
        ),
    ),
    (
        "unplanned stop",
        ("_unplanned_stop",),
        (
            S_ST_N,
            S_ST_X,
            S_ST_Y,
            S_ST_SINCE,
            S_ST_ACTIVE,
            S_ST_OUT_N,
            S_ST_OUT_X,
            S_ST_OUT_Y,
            S_ST_OUT_TS,
            S_ST_STILL,
        ),
    ),
    (
        "speeding",
        ("_speeding",),
        (S_SP_SINCE, S_SP_ACTIVE, S_SP_MAX, S_SP_M0, S_SP_UNDER_N, S_SP_UNDER_TS, S_SP_LIMIT),
    ),
    ("schedule", ("_schedule", "_next_arrival_ms"), (S_LATE, S_LATE_STOP)),
    (
        "completion",
        (
            "_completion",
            "_abandon_at",
            "_quiet_at_end",
            "_ended_at",
            "_end_for_want_of_signal",
            "_end_quiet",
            "_abandon",
            "_skip_pending",
        ),
        (S_COMPLETED, S_COMPLETED_TS),
    ),
    ("ETA", ("expected_mps", "stop_etas"), ()),
)


@njit(cache=True, inline="always")
def _signal_lost(st, th, ev_i, ev_ts, ev_f, ne):
    """Signal: ``signal_lost`` at the last ping + the timeout, where that ping was."""
    st[S_LOST] = 1.0
    return _emit(
        ev_i,
        ev_ts,
        ev_f,
        ne,
        EV_SIGNAL_LOST,
        -1,
        -1,
        st[S_LAST_TS] + th[TH_LOST_S] * 1000.0,
        st[S_LAST_TS],
        0.0,
        0.0,
        st[S_LAST_LAT],
        st[S_LAST_LON],
        st[S_LAST_M],
    )


@njit(cache=True, inline="always")
def _signal(st, th, par, ustat, i, ts, lat, lon, ev_i, ev_ts, ev_f, ne):
    """Signal: ``signal_lost`` (if the tick has not emitted it) and ``signal_restored``
    when this ping ends a gap longer than the timeout on an active trip; then records
    the ping as the last one (and where a signal gap began, for the matching window).
    A ping after the instant the trip ended for want of signal (see :func:`_ended_at`:
    abandoned, or quiet after its last fix at the route end) restores nothing: the trip
    ended then, as :func:`time_check` would have ended it had the horizon passed that
    instant before the ping came.

    Owns S_N, S_LAST_TS, S_LAST_LAT, S_LAST_LON, S_LOST, S_GAP_FROM."""
    active = st[S_STARTED] > 0 and st[S_COMPLETED] == 0
    if st[S_N] > 0:
        gap_ms = ts - st[S_LAST_TS]
        lost_ms = th[TH_LOST_S] * 1000.0
        # (a quiet end comes after the timeout: asked only about a gap that long)
        quiet = gap_ms > lost_ms and _quiet_at_end(st, th, par)
        end_ms = _ended_at(st, th, par, quiet)
        ended = st[S_COMPLETED] == 0 and ts > end_ms
        if active and (st[S_LOST] > 0 or gap_ms > lost_ms):
            if st[S_LOST] == 0 and not quiet and (not ended or st[S_LAST_TS] + lost_ms <= end_ms):
                ne = _signal_lost(st, th, ev_i, ev_ts, ev_f, ne)
            if not ended:
                st[S_LOST] = 0.0
                ne = _emit(
                    ev_i,
                    ev_ts,
                    ev_f,
                    ne,
                    EV_SIGNAL_RESTORED,
                    i,
                    -1,
                    ts,
                    gap_ms / 1000.0,
                    0.0,
                    0.0,
                    lat,
                    lon,
                    st[S_LAST_M],
                )
        if ended:
            ne = _end_for_want_of_signal(st, ustat, i, quiet, end_ms, ev_i, ev_ts, ev_f, ne)
    if st[S_N] > 0 and ts - st[S_LAST_TS] > GAP_PRIOR_S * 1000.0:
        st[S_GAP_FROM] = st[S_LAST_TS]
    st[S_N] += 1.0
    st[S_LAST_TS] = ts
    st[S_LAST_LAT] = lat
    st[S_LAST_LON] = lon
    return ne


@njit(cache=True, inline="always")
def _wild_fix(st, th, ts, px, py, acc, spd_kmh, was_on):
    """Wild fix: whether this fix is an outlier to ignore - an implied speed from the
    last accepted fix above ``wild_fix_kmh``, or a jump the device's speed cannot
    explain; at most three in a row.

    Owns S_WILD_N (S_ACC_* are written by :func:`_accept_fix`)."""
    sigma_d0 = max(th[TH_SIGMA_M], acc)
    if st[S_ACC_TS] > 0 and st[S_WILD_N] < 3:
        dt_s = (ts - st[S_ACC_TS]) / 1000.0
        jump = math.hypot(px - st[S_ACC_X], py - st[S_ACC_Y])
        wild = jump > 2.0 * acc + 20.0 and jump / dt_s * 3.6 > th[TH_WILD_KMH]
        # (only from a fix that was on the route: after an accepted outlier the good
        # fixes would look wild)
        if not wild and math.isfinite(spd_kmh) and was_on:
            # the device's (Doppler) speed is robust to multipath: a fix further from
            # the last one than that speed (the larger of the two ends) plus 1 m/s^2
            # of acceleration explains is an outlier - a crawling vehicle's three
            # scattered multipath fixes 70 m off were confirmed off-route
            v_kmh = spd_kmh
            if math.isfinite(st[S_SPEED_KMH]) and st[S_SPEED_KMH] > v_kmh:
                v_kmh = st[S_SPEED_KMH]
            wild = jump > v_kmh / 3.6 * dt_s + dt_s * dt_s + 2.0 * sigma_d0 + 30.0
        if wild:
            st[S_WILD_N] += 1.0
            return True
    st[S_WILD_N] = 0.0
    return False


@njit(cache=True, inline="always")
def _accept_fix(st, ts, px, py):
    """Wild fix: this fix (neither wild nor an implausible jump) is the new reference
    for the next one's test.

    Owns S_ACC_TS, S_ACC_X, S_ACC_Y."""
    st[S_ACC_TS] = ts
    st[S_ACC_X] = px
    st[S_ACC_Y] = py


@njit(cache=True, inline="always")
def _match_prior(st, par, th, ts, acc, spd_kmh, vmax_mps, length):
    """Matching: the window [lo, hi] and the progress prior (expected position, its
    sigma) for this fix, from the anchor and the recent speed. Reads the state only."""
    if math.isfinite(st[S_ANCHOR_M]):
        dt_s = (ts - st[S_ANCHOR_TS]) / 1000.0
        # expected position and reach: from the latest on-route match (the
        # median-filtered anchor lags one fix, which would make a U-turn's two passes
        # tie, and after a signal gap it is the stale pre-gap position)
        ref, ref_ts = _latest_match(st)
        lo = st[S_ANCHOR_M] - BACK_M - acc
        hi = ref + vmax_mps * dt_s + 50.0 + acc
        v = st[S_V_MPS] if math.isfinite(st[S_V_MPS]) else par[P_PLANNED_MPS]
        if math.isfinite(spd_kmh) and math.isfinite(st[S_SPEED_KMH]):
            # the device's speeds at both ends of the step (trapezoid): a vehicle that
            # has stopped is expected where it stopped, not a smoothed speed further
            # on - at sparse fixes that would pick the return pass of a U-turn
            v = 0.5 * (spd_kmh + st[S_SPEED_KMH]) / 3.6
        # extrapolate from the time of ``ref``, not the anchor's - 20 s fixes at a
        # U-turn were otherwise extrapolated three intervals on and matched to the
        # return pass
        dt_ref = (ts - ref_ts) / 1000.0
        m_exp = ref + v * dt_ref
        if _stands(spd_kmh) and math.isfinite(st[S_SPEED_KMH]):
            # standing now: between the braking distance from the last speed (it
            # stopped soon after that fix) and the trapezoid (it drove on first) the
            # fixes cannot tell; the nearer. Two passes of the route equally near the
            # fix (a U-turn just beyond a stop) then go to the earlier: were that wrong,
            # the next moving fixes carry the match on, while a wrong later pass skips
            # what lies between for good (a sparse tracker's stop missed that way).
            # From the latest match only as far ahead of the median anchor as the
            # last speed explains over the last step: that fix may be one that
            # multipath threw ahead along the road, onto a U-turn's tip
            v0 = st[S_SPEED_KMH] / 3.6
            base, dt_base = ref, dt_ref
            if ref > st[S_ANCHOR_M] and not _step_explained(st, ref, acc, th):
                base, dt_base = st[S_ANCHOR_M], dt_s
            m_exp = base + min(v * dt_base, v0 * v0 / (2.0 * STOP_BRAKE_MS2))
        # over a gap longer than any sampling interval the recent speed (maybe 0, at
        # a stop) says little about the progress made meanwhile: widen the prior
        gap_s = max(0.0, dt_ref - GAP_PRIOR_S)
        sigma_p = 30.0 + acc + 0.5 * v * dt_ref + 0.5 * par[P_PLANNED_MPS] * gap_s
        if st[S_OFF] > 0 or st[S_OUT_N] >= 2:
            # (not on one outside fix: a lone outlier would unpin the match from
            # where the vehicle stands, e.g. onto the return pass of a U-turn)
            # re-acquisition: anywhere physically reachable, nearest pass preferred
            sigma_p = 50.0 + vmax_mps * dt_s
            m_exp = st[S_ANCHOR_M]
    else:
        lo = 0.0
        hi = length
        m_exp = 0.0
        # first fix: near the start unless clearly elsewhere (a depot that the route
        # passes again later must match the start, not the later pass)
        sigma_p = INITIAL_SIGMA_P_M
    return lo, hi, m_exp, sigma_p


@njit(cache=True, inline="always")
def _latest_match(st):
    """Matching: the latest on-route match and its time - the last fix's when it lies
    ahead of the anchor (the median lags it by a fix; its time the newest ring entry's),
    else the anchor's. Reads the state only."""
    ref = st[S_ANCHOR_M]
    ref_ts = st[S_ANCHOR_TS]
    if math.isfinite(st[S_M1]) and st[S_M1] > ref:
        ref = st[S_M1]
        newest = _ring_ts(st, 1)
        if math.isfinite(newest) and newest > ref_ts:
            ref_ts = newest
    return ref, ref_ts


@njit(cache=True, inline="always")
def _step_explained(st, ref, acc, th):
    """Matching: whether the latest match ``ref``, ahead of the median anchor, lies no
    further ahead of it than the last fix's speed (or the recent progress speed)
    explains over the time between the last two ring entries, plus noise; True when
    that time is unknown. Reads the state only."""
    newest = _ring_ts(st, 1)
    before = _ring_ts(st, 2)
    if not (math.isfinite(newest) and math.isfinite(before) and newest > before):
        return True
    v = st[S_SPEED_KMH] / 3.6 if math.isfinite(st[S_SPEED_KMH]) else 0.0
    if math.isfinite(st[S_V_MPS]):
        v = max(v, st[S_V_MPS])
    noise = 2.0 * max(th[TH_SIGMA_M], acc) + 20.0
    return ref - st[S_ANCHOR_M] <= v * (newest - before) / 1000.0 + noise


@njit(cache=True, inline="always")
def _implausible_jump(st, ts, m, sigma_d, vmax_mps, judged):
    """Matching: whether a fix inside the corridor lies further ahead along the route
    than the vehicle can have got (speed + 3 m/s^2) - multipath along the road, skipped
    unless the next fix confirms it. ``judged``: the fix is inside, there is an anchor
    and the last fix was on the route (else it is never a jump).

    Owns S_JUMP_N (with _match, whose first-match skip counts in it too)."""
    if judged:
        # from the latest match, over the time since it (the median anchor lags a fix:
        # after a halt its time is the halt's, and a fix thrown 250 m ahead along the
        # road as the vehicle drove off fell within the reach of 20 s)
        ref, ref_ts = _latest_match(st)
        dt_s = (ts - ref_ts) / 1000.0
        v0 = st[S_SPEED_KMH] / 3.6 if math.isfinite(st[S_SPEED_KMH]) else vmax_mps
        if math.isfinite(st[S_V_MPS]):
            v0 = max(v0, st[S_V_MPS])
        reach = v0 * dt_s + 1.5 * dt_s * dt_s + 2.0 * sigma_d + 20.0
        if m - ref > reach and st[S_JUMP_N] < 1:
            st[S_JUMP_N] += 1.0
            return True
    st[S_JUMP_N] = 0.0
    return False


@njit(cache=True, inline="always")
def _other_pass(
    x, y, cum, boxes, st, th, ts, px, py, m, d, inside, corridor, sigma_d, acc, length, vmax_mps
):
    """Matching: a fix outside the window's corridor but well inside the corridor of
    another part of the route (a U-turn back along an earlier street, a crossing) is not
    off the route, but no evidence of progress either. Returns (elsewhere, m, d): the
    other pass's match when elsewhere, else this fix's own. After ELSEWHERE_REANCHOR_N
    such fixes in a row on a reachable pass, matching is re-anchored there (and the
    trip's start moved back to it when its first fix proves wrong: _restart_behind).

    Owns S_ELSE_N, and S_ANCHOR_M / S_ANCHOR_TS on a re-anchor (S_START_M, S_PROGRESS,
    S_M1, S_M2 and the ring through _restart_behind)."""
    if inside:
        st[S_ELSE_N] = 0.0
        return False, m, d
    # among passes about as near, the one nearest the anchor; a pass ahead of the
    # anchor and within reach first (progress is monotone): on a street the route
    # takes twice, a vehicle reappearing after a gap on the later pass would
    # otherwise be tracked backwards along the earlier one and never complete the
    # trip. Not beyond reach (counted from before a recent gap): a loop's end
    # lies at its start, behind.
    # Another pass needs a fix well inside its corridor (the back-on-route
    # fraction): a detour street running ~50 m from an earlier part of the route
    # would otherwise count as 'inside' on noise and keep resetting the
    # off-route count.
    near_m = th[TH_BACK_FRACTION] * corridor
    mref = st[S_ANCHOR_M] if math.isfinite(st[S_ANCHOR_M]) else m
    reach = _reach_m(st, ts, length, vmax_mps, acc)
    mg, dg = m, math.inf
    # no segment that near (a slack for rounding): both searches below would
    # find nothing within near_m, so they are skipped (a vehicle off its route
    # otherwise scans the whole route on every fix)
    if near_any(x, y, boxes, CHUNK_SEGMENTS, px, py, near_m + 0.01):
        mg, dg, _cg = match_route(
            x,
            y,
            cum,
            boxes,
            px,
            py,
            mref,
            reach,
            mref,
            sigma_d,
            5000.0,
        )
        if dg > near_m:
            mg, dg, _cg = match_route(x, y, cum, boxes, px, py, 0.0, length, mref, sigma_d, 5000.0)
    if dg <= near_m:
        st[S_ELSE_N] += 1.0
        if st[S_ELSE_N] >= ELSEWHERE_REANCHOR_N and mg <= reach:
            # the vehicle really is on that other pass (driving back along the
            # route, or a wrong first fix): follow it; progress stays monotone.
            # Never to a pass it cannot have reached yet: driving out of a loop's
            # depot along the street the route ends on is not its end.
            _restart_behind(st, mg)
            st[S_ANCHOR_M] = mg
            st[S_ANCHOR_TS] = ts
            st[S_ELSE_N] = 0.0
        return True, mg, dg
    st[S_ELSE_N] = 0.0
    return False, m, d


@njit(cache=True, inline="always")
def _progress_confirmed(st):
    """Matching: the progress rests on more than the trip's first match (two on-route
    fixes on this pass have been seen since the start). Reads the state only."""
    return math.isfinite(st[S_M2])


@njit(cache=True, inline="always")
def _restart_behind(st, mg):
    """Matching, on a re-anchor at ``mg``: when that lies behind a trip start that no
    second fix on its pass has confirmed (``_progress_confirmed``) and nothing was
    dwelt at, the first fix was wrong - an outlier matched to a later pass of a loop,
    followed by fixes all on the earlier pass. The trip starts again at ``mg``: start,
    progress, the median and the ring forget that fix.

    Owns (with _progress) S_START_M, S_PROGRESS, S_JUMP_TO_M, S_PROGRESS_TS, S_M1, S_M2,
    S_RING_POS and the ring."""
    if not (mg < st[S_START_M] and not _progress_confirmed(st) and st[S_AT_STOP] < 0):
        return
    st[S_START_M] = mg
    st[S_PROGRESS] = mg
    st[S_JUMP_TO_M] = np.nan
    st[S_PROGRESS_TS] = np.nan  # (no time to measure a jump from until it advances)
    st[S_M1] = np.nan
    st[S_M2] = np.nan
    for j in range(2 * RING):
        st[S_RING + j] = np.nan
    st[S_RING_POS] = 0.0


@njit(cache=True, inline="always")
def _match(x, y, cum, boxes, par, th, st, ts, px, py, acc, spd_kmh, was_on, vmax_mps, length):
    """Matching: this fix's route position and offset in a window around the anchor
    with a progress-aware score (one HMM step), the corridor it is judged against, and
    whether it is inside it (on this pass or, ``elsewhere``, on another).

    Returns (jumped, m, d, inside, elsewhere, corridor, sigma_d); ``jumped``: the fix
    is skipped (nothing else of it is used) as an implausible jump, or as the trip's
    first match, inside the corridor but over FIRST_MATCH_SIGMAS from the route - each
    at most one fix in a row.

    Owns S_LAST_M, S_LAST_OFFSET, S_JUMP_N with _implausible_jump (one count of fixes
    skipped in a row) and, through its parts, S_ELSE_N and a re-anchor."""
    corridor = par[P_CORRIDOR_M] + max(0.0, acc - th[TH_CORRIDOR_ACC_FREE])
    sigma_d = max(th[TH_SIGMA_M], acc)
    lo, hi, m_exp, sigma_p = _match_prior(st, par, th, ts, acc, spd_kmh, vmax_mps, length)
    m, d, _c = match_route(x, y, cum, boxes, px, py, lo, hi, m_exp, sigma_d, sigma_p)
    inside = d <= corridor
    unanchored = not math.isfinite(st[S_ANCHOR_M])
    if inside and unanchored and st[S_JUMP_N] < 1 and d > FIRST_MATCH_SIGMAS * sigma_d:
        # the trip's first match: every later window is drawn around it. A fix inside
        # the corridor but this far from the route (an outlier, a yard beside it) is
        # skipped once: where the route passes its depot again, one thrown 50 m off
        # was matched to the later pass, the next fixes followed it there and the
        # first stops were passed over (and the vehicle standing at one an unplanned
        # stop). The next fix anchors wherever it lies (its _implausible_jump check
        # clears the count): a vehicle starting on a road beside the route is matched
        # one fix later, not never
        st[S_JUMP_N] = 1.0
        return True, m, d, inside, False, corridor, sigma_d
    judged = inside and not unanchored and was_on
    if _implausible_jump(st, ts, m, sigma_d, vmax_mps, judged):
        return True, m, d, inside, False, corridor, sigma_d
    elsewhere, m, d = _other_pass(
        x, y, cum, boxes, st, th, ts, px, py, m, d, inside, corridor, sigma_d, acc, length,
        vmax_mps,
    )  # fmt: skip
    inside = inside or elsewhere
    st[S_LAST_M] = m
    st[S_LAST_OFFSET] = d
    return False, m, d, inside, elsewhere, corridor, sigma_d


@njit(cache=True, inline="always")
def _was_on_route(st):
    """Off-route: the last accepted fix was on the route (not off, nor in a run of
    outside fixes that no inside one has interrupted yet). Reads the state only."""
    return st[S_OFF] == 0 and (st[S_OUT_N] == 0 or st[S_IN_N] > 0)


@njit(cache=True, inline="always")
def _side(x, y, cum, m, px, py):
    """Off-route: the side of the route that point (px, py), matched at ``m``, lies on
    (+1 left of the direction of travel, -1 right, 0 on the line), and whether it lies
    abeam its match - square to the route's segment there, within it - rather than off
    a segment's end or held at the matching window's end, as a fix far off the route
    can be (only then does its side mean something). Returns (side, abeam)."""
    i = _segment_of(x, cum, m)
    ax, ay, dx, dy, t = _along(x, y, i, px, py)
    cross = dx * (py - ay) - dy * (px - ax)
    side = 1.0 if cross > 0.0 else (-1.0 if cross < 0.0 else 0.0)
    abeam = 0.0 <= t <= 1.0 and abs(cum[i] + t * (cum[i + 1] - cum[i]) - m) <= ABEAM_M
    return side, abeam


@njit(cache=True, inline="always")
def _other_stretch(x, y, cum, m0, m1, moved_m):
    """Off-route: whether a fix matched at ``m1`` lies by another stretch of the route
    than the last, matched at ``m0``: the match moved along the route more than twice
    as far as the fix moved (``moved_m``, with a corridor's slack) - not the vehicle
    driving on - onto a stretch running the other way (segment directions more than 90
    degrees apart), where a side judged on one is the other side on the other. False
    when ``m0`` is NaN (no earlier match)."""
    if math.isnan(m0) or abs(m1 - m0) <= 2.0 * moved_m:
        return False
    i0 = _segment_of(x, cum, m0)
    i1 = _segment_of(x, cum, m1)
    dot = (x[i0 + 1] - x[i0]) * (x[i1 + 1] - x[i1]) + (y[i0 + 1] - y[i0]) * (y[i1 + 1] - y[i1])
    return dot < 0.0


@njit(cache=True, inline="always")
def _motion_explains(dx, dy, dt_s, kmh0, kmh1, hdg0, hdg1, sigma_d):
    """Off-route: whether a step of (``dx``, ``dy``) metres (east, north) in ``dt_s``
    from a fix where the device reported speed ``kmh0`` and heading ``hdg0`` to one
    where it reported ``kmh1``, ``hdg1`` is one that motion explains. A receiver
    measures speed and heading from the Doppler shift, so multipath that throws a
    position far off leaves them true. The step is no longer than the faster of the two
    speeds drives in ``dt_s``, plus a peak between them of 2 m/s^2 each way and both
    fixes' noise (``sigma_d`` each: this fix's, as the reference's is not kept); and -
    moving at MOTION_HDG_KMH at both, at most MOTION_HDG_S apart (sparser, a vehicle may
    turn and turn back between them), the step long enough to have a bearing, no U-turn
    between - it keeps to a bearing within MOTION_BEARING_DEG (plus the angle of the
    noise) of the turn from one heading to the other. An unknown speed explains
    anything; an unknown heading leaves the bearing out. Pure."""
    if not (math.isfinite(kmh0) and math.isfinite(kmh1)) or dt_s <= 0.0:
        return True
    step = math.hypot(dx, dy)
    noise = 2.0 * math.sqrt(2.0) * sigma_d
    if step > max(kmh0, kmh1) / 3.6 * dt_s + 0.5 * dt_s * dt_s + noise:
        return False
    if (
        not (math.isfinite(hdg0) and math.isfinite(hdg1))
        or min(kmh0, kmh1) < MOTION_HDG_KMH
        or dt_s > MOTION_HDG_S
        or step < 2.0 * noise
    ):
        return True
    turn = (hdg1 - hdg0 + 540.0) % 360.0 - 180.0  # the shorter turn, -180..180
    if abs(turn) > MOTION_UTURN_DEG:
        return True
    rel = (math.degrees(math.atan2(dx, dy)) - hdg0 + 540.0) % 360.0 - 180.0  # the step's
    lo = min(0.0, turn)
    hi = max(0.0, turn)
    # (measured without wrapping round: right while the largest allowance, 30 + 26.6
    # degrees, stays under the 60 degrees between a U-turn's limit and the far side)
    beyond = lo - rel if rel < lo else (rel - hi if rel > hi else 0.0)
    return beyond <= MOTION_BEARING_DEG + math.degrees(math.atan2(noise, step))


@njit(cache=True, inline="always")
def _driving_away(st, th, px, py, d, corridor, spd_kmh, had_prev, prev_x, prev_y):
    """Off-route: whether this outside fix shows a vehicle driving away from the route
    (1) rather than one standing or creeping beside it (-1: pulled into a yard, or its
    fixes drifting while it stands). Beyond the corridor by ``off_route_far_m`` a fix
    drives away unless the vehicle stood still at this fix, by the device, and at the
    last one, by its speed (the device's, else its progress speed): then it is an
    outlier (-1) when it lies over STILL_SCATTER_M from the last fix (outliers around a
    standing vehicle jump about, one that drove between the two fixes explains the
    jump), else 0 - a vehicle standing far off, where the last fix was, proves nothing
    by itself: parked out there after driving there (the fixes that drove it count) or
    standing on the route while its fixes drift that far (none do).
    Nearer, a device speed of ``off_route_drive_kmh`` drives away, and - not standing
    still - ``off_route_move_m`` from where the run of outside fixes began. Reads the
    state only (S_SPEED_KMH: the last fix's speed, the speed stage comes later)."""
    still = _stands(spd_kmh)
    if d >= corridor + th[TH_OFF_FAR_M]:
        if not (still and _stands(st[S_SPEED_KMH])):
            return 1
        jumped = had_prev and math.hypot(px - prev_x, py - prev_y) > STILL_SCATTER_M
        return -1 if jumped else 0
    if math.isfinite(spd_kmh) and spd_kmh >= th[TH_OFF_DRIVE_KMH]:
        return 1
    if still:
        return -1
    return 1 if math.hypot(px - st[S_OUT_X0], py - st[S_OUT_Y0]) >= th[TH_OFF_MOVE_M] else -1


@njit(cache=True, inline="always")
def _off_route(
    x, y, cum, boxes, st, th, i, ts, px, py, lat, lon, spd_kmh, hdg, m, prev_m, prev_d, d, inside,
    corridor, sigma_d, had_prev, prev_x, prev_y, ev_i, ev_ts, ev_f, ne,
):  # fmt: skip
    """Off-route: ``off_route`` after ``off_route_pings`` fixes in a row and
    ``off_route_s`` outside the corridor on one side of the route, the last two of them
    driving away (:func:`_driving_away`; a vehicle standing far off between them keeps
    the count) - and moving as the device's own speed and heading (``hdg``) say since
    the reference fix: one that drives away but whose step from that fix they do not
    explain (:func:`_motion_explains`; ``sigma_d`` each fix's noise) is multipath
    thrown off a moving vehicle, keeps the count too and is no reference for the next
    (every other fix is); ``back_on_route`` after ``back_on_route_pings`` within its
    ``back_on_route_fraction``; the path driven and the largest offset meanwhile. An
    outside fix on the other side of the route than the run's first, with no fix inside
    between, starts the run again (multipath thrown across the road is no way off it) -
    unless it is matched to another stretch of the route running the other way from the
    last fix's (:func:`_other_stretch`), or it and the last fix, an outside one, lie
    both ``off_route_far_m`` beyond the corridor and the step between them does not
    cross the route (:func:`crosses_route`: beside an out-and-back spur or a winding
    route the nearest stretches face every way); it then gives the run its side.
    ``prev_m``, ``prev_d``: the last matched fix's route position and distance from the
    route. The side of a fix ``off_route_far_m`` beyond the corridor is judged only when
    it lies abeam its match (:func:`_side`); a run that began with an unjudged fix takes
    the side of its first judged one. Returns (ne, on_route).

    Owns S_OFF, S_OUT_N, S_OUT_SINCE, S_OUT_PATH_M, S_IN_N, S_OFF_MAX_M, S_LAST_ONROUTE,
    S_OUT_X0, S_OUT_Y0, S_OUT_SIDE, S_OUT_MOVED_N, S_MOT_TS, S_MOT_X, S_MOT_Y, S_MOT_KMH,
    S_MOT_HDG."""
    explained = True
    if st[S_OFF] == 0:
        if inside:
            # a run of outside fixes ends with as many inside ones as a return needs:
            # one fix that noise puts just inside (or near another pass of the
            # route) is no evidence that the vehicle came back
            if st[S_OUT_N] > 0:
                st[S_IN_N] += 1.0
                if st[S_IN_N] >= th[TH_BACK_PINGS]:
                    st[S_OUT_N] = 0.0
                    st[S_IN_N] = 0.0
        else:
            after_out = st[S_IN_N] == 0  # the last fix was outside too (in the run)
            st[S_IN_N] = 0.0
            far = corridor + th[TH_OFF_FAR_M]
            side, abeam = _side(x, y, cum, m, px, py)
            if not (abeam or d < far):
                side = 0.0
            if st[S_OUT_N] > 0 and side * st[S_OUT_SIDE] < 0.0:
                if had_prev and (
                    _other_stretch(
                        x, y, cum, prev_m, m, math.hypot(px - prev_x, py - prev_y) + corridor
                    )
                    or (
                        after_out
                        and math.isfinite(prev_d)
                        and min(d, prev_d) >= far
                        and not crosses_route(x, y, boxes, CHUNK_SEGMENTS, prev_x, prev_y, px, py)
                    )
                ):
                    # matched to another stretch of the route, running the other way
                    # from the last fix's (the route bends back near a detour), or -
                    # this fix and the last both far off - the step between them does
                    # not cross the route (a detour beside a winding route, whose nearest
                    # stretches face every way): this side is the run's, and it goes on
                    st[S_OUT_SIDE] = side
                else:
                    st[S_OUT_N] = 0.0  # across the road from the run's first fix
            elif st[S_OUT_N] > 0 and st[S_OUT_SIDE] == 0.0:
                # a run begun too far off to judge its side takes its first judged
                # one (multipath thrown 100 m one way, then back and forth)
                st[S_OUT_SIDE] = side
            if st[S_OUT_N] == 0:
                st[S_OUT_SINCE] = ts
                st[S_OUT_PATH_M] = 0.0
                st[S_OFF_MAX_M] = 0.0
                st[S_OUT_X0] = px
                st[S_OUT_Y0] = py
                st[S_OUT_SIDE] = side
                st[S_OUT_MOVED_N] = 0.0
            elif had_prev:
                st[S_OUT_PATH_M] += math.hypot(px - prev_x, py - prev_y)
            st[S_OUT_N] += 1.0
            st[S_OFF_MAX_M] = max(st[S_OFF_MAX_M], d)
            away = _driving_away(st, th, px, py, d, corridor, spd_kmh, had_prev, prev_x, prev_y)
            if away > 0 and st[S_MOT_TS] > 0:
                explained = _motion_explains(
                    px - st[S_MOT_X], py - st[S_MOT_Y], (ts - st[S_MOT_TS]) / 1000.0,
                    st[S_MOT_KMH], spd_kmh, st[S_MOT_HDG], hdg, sigma_d,
                )  # fmt: skip
                if not explained:
                    away = 0  # multipath thrown off a moving vehicle: no evidence
            if away > 0:
                st[S_OUT_MOVED_N] += 1.0
            elif away < 0:
                st[S_OUT_MOVED_N] = 0.0
            if (
                st[S_OUT_N] >= th[TH_OFF_PINGS]
                and ts - st[S_OUT_SINCE] >= th[TH_OFF_S] * 1000.0
                and st[S_OUT_MOVED_N] >= min(2.0, th[TH_OFF_PINGS])
                and st[S_COMPLETED] == 0
            ):
                st[S_OFF] = 1.0
                st[S_IN_N] = 0.0
                ne = _emit(
                    ev_i,
                    ev_ts,
                    ev_f,
                    ne,
                    EV_OFF_ROUTE,
                    i,
                    -1,
                    ts,
                    d,
                    st[S_OUT_SINCE],
                    0.0,
                    lat,
                    lon,
                    m,
                )
    else:
        if had_prev:
            st[S_OUT_PATH_M] += math.hypot(px - prev_x, py - prev_y)
        st[S_OFF_MAX_M] = max(st[S_OFF_MAX_M], d)
        if d <= th[TH_BACK_FRACTION] * corridor:
            st[S_IN_N] += 1.0
            if st[S_IN_N] >= th[TH_BACK_PINGS]:
                st[S_OFF] = 0.0
                st[S_OUT_N] = 0.0
                ne = _emit(
                    ev_i,
                    ev_ts,
                    ev_f,
                    ne,
                    EV_BACK_ON_ROUTE,
                    i,
                    -1,
                    ts,
                    (ts - st[S_OUT_SINCE]) / 1000.0,
                    st[S_OUT_PATH_M],
                    st[S_OFF_MAX_M],
                    lat,
                    lon,
                    m,
                )
        else:
            st[S_IN_N] = 0.0
    if explained:  # the reference for the next fix's motion check
        st[S_MOT_TS] = ts
        st[S_MOT_X] = px
        st[S_MOT_Y] = py
        st[S_MOT_KMH] = spd_kmh
        st[S_MOT_HDG] = hdg
    on_route = st[S_OFF] == 0 and inside
    st[S_LAST_ONROUTE] = 1.0 if on_route else 0.0
    return ne, on_route


@njit(cache=True, inline="always")
def _wrong_way_ahead(x, y, cum, st, m, spd_kmh, hdg):
    """Matching: whether a fix matched over WRONG_WAY_AHEAD_M ahead of the anchor comes
    from a device moving (MOTION_HDG_KMH or more) against the route there (heading
    more than MOTION_UTURN_DEG from its direction): a detour driving a later stretch
    of the route the wrong way is on the route but not progressing along it, and
    taking it for progress skips every stop between. Nearer the anchor the two passes
    of an out-and-back street are too alike to judge so. False without a speed or
    heading. Reads the state only."""
    if not (math.isfinite(spd_kmh) and math.isfinite(hdg)) or spd_kmh < MOTION_HDG_KMH:
        return False
    if not (math.isfinite(st[S_ANCHOR_M]) and m - st[S_ANCHOR_M] > WRONG_WAY_AHEAD_M):
        return False
    i = _segment_of(x, cum, m)
    bearing = math.degrees(math.atan2(x[i + 1] - x[i], y[i + 1] - y[i]))
    return abs((hdg - bearing + 540.0) % 360.0 - 180.0) > MOTION_UTURN_DEG


@njit(cache=True, inline="always")
def _progress(st, par, ts, m, sigma_d):
    """Matching, after an on-route fix on this pass: the anchor (median of the last
    three matches, never backwards), the start and furthest progress, and the ring of
    (ts, route_m) the derived speed is measured over.

    Owns S_M1, S_M2, S_ANCHOR_M, S_ANCHOR_TS, S_START_M, S_PROGRESS, S_JUMP_TO_M,
    S_PROGRESS_TS, S_RING_POS and the ring S_RING..."""
    # progress is the median of the last three on-route matches, so one fix that
    # multipath put ahead along the road cannot ratchet it forward; and it never
    # creeps backwards (on a route that doubles back along the same street small
    # backward steps would otherwise walk onto the earlier pass)
    m1 = st[S_M1]
    m2 = st[S_M2]
    med = m
    if math.isfinite(m1) and math.isfinite(m2):
        med = max(min(m, m1), min(max(m, m1), m2))
    elif math.isfinite(m1):
        med = min(m, m1)
    st[S_M2] = m1
    st[S_M1] = m
    if not math.isfinite(st[S_ANCHOR_M]) or med > st[S_ANCHOR_M]:
        st[S_ANCHOR_M] = med
        st[S_ANCHOR_TS] = ts
    elif m - st[S_ANCHOR_M] <= 2.0 * sigma_d + 20.0:
        st[S_ANCHOR_TS] = ts  # the fix confirms the anchor (e.g. standing still)
    # else: a fix far ahead that the median did not adopt (yet): the anchor is as
    # old as before, so the window keeps growing with the time since (a gap)
    if not math.isfinite(st[S_START_M]):
        st[S_START_M] = m
        st[S_PROGRESS] = m
        st[S_PROGRESS_TS] = ts
    if med > st[S_PROGRESS]:
        # a jump further on than the vehicle can have driven since the progress was
        # last reached (a re-acquisition on a later pass, say after a detour along
        # other passes of a winding route): the stops it passed over wait (_stops)
        # instead of being skipped as passed - the vehicle may be back on its way to
        # them. Measured from when the progress advanced, not from the anchor (which
        # the first fix after a coverage gap refreshes), and at the faster of the
        # vehicle's speeds and the plan's, so a gap driven through is no jump
        if math.isfinite(st[S_PROGRESS_TS]):
            v = par[P_PLANNED_MPS] if math.isfinite(par[P_PLANNED_MPS]) else 0.0
            if math.isfinite(st[S_SPEED_KMH]):
                v = max(v, st[S_SPEED_KMH] / 3.6)
            if math.isfinite(st[S_V_MPS]):
                v = max(v, st[S_V_MPS])
            # within GAP_REACH_S of a coverage gap, from the last fix before it: the
            # first fix after it advances the progress too (the median gives it a
            # match from before the gap), and timed from that fix the next step of a
            # gap driven through was a jump
            since = _since_gap(st, ts, st[S_PROGRESS_TS])
            reach = PROGRESS_JUMP_M + 2.0 * v * max(0.0, ts - since) / 1000.0
            if med - st[S_PROGRESS] > reach:
                st[S_JUMP_TO_M] = med
        st[S_PROGRESS] = med
        st[S_PROGRESS_TS] = ts
        if st[S_PROGRESS] >= st[S_JUMP_TO_M] + JUMP_LAPSE_M:
            st[S_JUMP_TO_M] = np.nan  # it went on: the stops passed over are passed
    # the ring keeps fixes >= RING_STEP_MS apart so that it spans ~20 s at any rate:
    # a long baseline averages GPS noise out of the derived speed
    pos = int(st[S_RING_POS]) % RING
    newest = _ring_ts(st, 1)
    if not math.isfinite(newest) or ts - newest >= RING_STEP_MS:
        st[S_RING + 2 * pos] = ts
        st[S_RING + 2 * pos + 1] = m
        st[S_RING_POS] = float(pos + 1)


@njit(cache=True, inline="always")
def _speed(st, ts, spd_kmh, progressed):
    """Speed: the device's when present, else progress over the ring (``progressed``:
    this fix was on route on this pass); the smoothed recent speed for ETAs. Returns the
    speed the detectors use, km/h (NaN unknown).

    Owns S_V_MPS, S_SPEED_KMH."""
    derived = _derived_kmh(st, ts) if progressed else np.nan
    if math.isfinite(derived):
        a = 1.0 - math.exp(-5.0 / 120.0)
        vm = derived / 3.6
        st[S_V_MPS] = vm if not math.isfinite(st[S_V_MPS]) else st[S_V_MPS] + a * (vm - st[S_V_MPS])
    speed = spd_kmh if math.isfinite(spd_kmh) else derived
    st[S_SPEED_KMH] = speed
    return speed


@njit(cache=True, inline="always")
def _trip_start(st, th, length, i, ts, lat, lon, m, ev_i, ev_ts, ev_f, ne):
    """Trip started: ``trip_started`` once ``trip_start_m`` (at most half the route) of
    progress is made - from the first fix, or from the route's start when a second fix
    confirms the progress or the device says the vehicle moves (a first fix thrown onto
    a later pass of a loop would start a vehicle still waiting at its depot).

    Owns S_STARTED."""
    if st[S_STARTED] == 0 and math.isfinite(st[S_START_M]):
        need = min(th[TH_START_M], 0.5 * length)
        moving = _progress_confirmed(st) or st[S_SPEED_KMH] >= ST_STILL_KMH
        if st[S_PROGRESS] - st[S_START_M] >= need or (st[S_PROGRESS] >= need and moving):
            st[S_STARTED] = 1.0
            ne = _emit(
                ev_i, ev_ts, ev_f, ne, EV_TRIP_STARTED, i, -1, ts, 0.0, 0.0, 0.0, lat, lon, m
            )
    return ne


@njit(cache=True, inline="always")
def _stops(
    st, th, stops, ustat, i, ts, px, py, lat, lon, m, speed, spd_kmh, ev_i, ev_ts, ev_f, ne,
):  # fmt: skip
    """Planned stops: ``stop_departed`` from the stop being dwelt at, ``stop_arrived``
    at a pending stop on its pass of the route (earlier ones skipped), and stops passed
    well behind a confirmed progress skipped. Returns (ne, dwell_planned): whether a
    departure or an arrival made the vehicle's standing a planned dwell (the
    unplanned-stop cluster starts again).

    Owns S_AT_STOP, S_DEP_N, S_DEP_TS, S_NEXT_STOP, S_CAND_STOP, S_CAND_TS, S_ON_TIME,
    S_LATE_STOPS and the stop statuses ``ustat``."""
    nstops = stops.shape[0]
    dwell_planned = False
    at = int(st[S_AT_STOP])
    # leaving the radius (+10 m) on two fixes in a row: one multipath fix is no departure;
    # the first must not have the device saying the vehicle stands (a multipath burst);
    # one is enough when the device says the vehicle moves, or beyond multipath's reach
    if at >= 0:
        off_stop = math.hypot(px - stops[at, T_X], py - stops[at, T_Y])
        away = off_stop > stops[at, T_RADIUS] + 10.0
        # beyond multipath's reach one fix shows it left, standing or not (it drove on
        # in a coverage gap and stands at the route end, where its tracker goes quiet)
        far = off_stop > ST_SCATTER_MAX_M
        # moving off the spot where it dwelt counts before the geofence edge is reached
        # (not while the device says it still stands there: a noisy fix)
        still = _stands(spd_kmh)
        if st[S_ST_N] >= 3 and not still:
            away = away or math.hypot(px - st[S_ST_X], py - st[S_ST_Y]) > DEPART_MOVE_M
        if away and still and st[S_DEP_N] == 0 and not far:
            pass  # the device (Doppler) says it stands: multipath, counted neither way
        elif away:
            if st[S_DEP_N] == 0:
                st[S_DEP_TS] = ts
            st[S_DEP_N] += 1.0
        else:
            st[S_DEP_N] = 0.0
        if st[S_DEP_N] >= 2 or (st[S_DEP_N] >= 1 and (far or _moves(spd_kmh))):
            ustat[at, U_STATUS] = STATUS_DEPARTED
            ustat[at, U_DEPARTED_TS] = st[S_DEP_TS]
            ne = _emit(
                ev_i,
                ev_ts,
                ev_f,
                ne,
                EV_STOP_DEPARTED,
                i,
                at,
                ts,
                (st[S_DEP_TS] - ustat[at, U_ENTER_TS]) / 1000.0,
                0.0,
                0.0,
                lat,
                lon,
                m,
            )
            st[S_AT_STOP] = -1.0
            st[S_DEP_N] = 0.0
            st[S_NEXT_STOP] = float(at + 1)
            # the dwell was planned: a stationary cluster from it must not become an
            # unplanned stop once the vehicle is no longer 'at' the stop (at sigma
            # 15 m the departure fixes can still lie inside the cluster's radius)
            dwell_planned = True
    if int(st[S_AT_STOP]) < 0:
        found = -1
        for k in range(int(st[S_NEXT_STOP]), nstops):
            r = stops[k, T_RADIUS]
            # on its pass of the route - unless the progress jumped over it (the match
            # may be on any pass then: the stop's own place decides)
            if (
                abs(m - stops[k, T_M]) <= r + stops[k, T_OFFSET] + 50.0
                or _passed_over(st, stops, k)
            ) and math.hypot(px - stops[k, T_X], py - stops[k, T_Y]) <= r:
                found = k
                break
            if stops[k, T_M] > st[S_PROGRESS] + 1000.0:
                break
        if found < 0:
            st[S_CAND_STOP] = -1.0
        else:
            if int(st[S_CAND_STOP]) != found:
                st[S_CAND_STOP] = float(found)
                st[S_CAND_TS] = ts
            slow = math.isfinite(speed) and speed < th[TH_STOP_SLOW_KMH]
            if slow or ts - st[S_CAND_TS] >= th[TH_STOP_DWELL_S] * 1000.0:
                for k in range(int(st[S_NEXT_STOP]), found):
                    ustat[k, U_STATUS] = STATUS_SKIPPED
                enter = st[S_CAND_TS]
                ustat[found, U_STATUS] = STATUS_ARRIVED
                ustat[found, U_ENTER_TS] = enter
                ustat[found, U_ARRIVED_TS] = ts
                win_end = stops[found, T_WIN_END]
                if math.isfinite(win_end) and enter > win_end:
                    st[S_LATE_STOPS] += 1.0
                else:
                    st[S_ON_TIME] += 1.0
                ne = _emit(
                    ev_i,
                    ev_ts,
                    ev_f,
                    ne,
                    EV_STOP_ARRIVED,
                    i,
                    found,
                    ts,
                    enter,
                    0.0,
                    0.0,
                    lat,
                    lon,
                    m,
                )
                st[S_AT_STOP] = float(found)
                st[S_NEXT_STOP] = float(found)
                st[S_CAND_STOP] = -1.0
                # arriving ends an unplanned-stop candidate: the dwell is planned
                dwell_planned = True
    # a stop passed well behind the furthest progress was skipped - once a second fix
    # confirms it: a trip's first fix may be an outlier on a later pass of a loop
    # (matching then starts the trip again behind), and a skipped stop fails its order
    while (
        _progress_confirmed(st)
        and int(st[S_AT_STOP]) < 0
        and int(st[S_NEXT_STOP]) < nstops
        and int(st[S_CAND_STOP]) != int(st[S_NEXT_STOP])
    ):
        k = int(st[S_NEXT_STOP])
        if (
            stops[k, T_M] + stops[k, T_RADIUS] + 150.0 < st[S_PROGRESS]
            and not _passed_over(st, stops, k)  # (it waits)
        ):
            ustat[k, U_STATUS] = STATUS_SKIPPED
            st[S_NEXT_STOP] = float(k + 1)
        else:
            break
    return ne, dwell_planned


@njit(cache=True, inline="always")
def _unplanned_stop(
    st, th, stops, i, ts, px, py, lat, lon, m, spd_kmh, last_kmh, sigma_d, dwell_planned,
    ev_i, ev_ts, ev_f, ne,
):  # fmt: skip
    """Stationary away from planned stops: the cluster of fixes within the stationary
    radius, ``unplanned_stop`` once it has lasted ``stationary_s`` away from every
    planned stop on a started trip, ``unplanned_stop_ended`` on two fixes in a row outside
    it (not two far apart while the device stands still: scatter), or on one the device
    says was taken moving.
    ``dwell_planned``: the stops stage made this standing a planned dwell; ``last_kmh``:
    the last fix's speed (S_SPEED_KMH before the speed stage ran on this one).

    Owns S_ST_N, S_ST_X, S_ST_Y, S_ST_SINCE, S_ST_ACTIVE, S_ST_OUT_N, S_ST_OUT_X,
    S_ST_OUT_Y, S_ST_OUT_TS, S_ST_STILL."""
    nstops = stops.shape[0]
    if dwell_planned:
        st[S_ST_N] = 0.0
    near_stop = int(st[S_AT_STOP]) >= 0 or int(st[S_CAND_STOP]) >= 0
    # the radius never below 3 sigma of the fix: with a worse fix two in a row fall
    # outside a 30 m circle often enough to break every genuine halt
    rad = max(th[TH_ST_RADIUS], ST_RADIUS_SIGMAS * sigma_d)
    still = _stands(spd_kmh)
    if st[S_ST_N] == 0:
        st[S_ST_N] = 1.0
        st[S_ST_X] = px
        st[S_ST_Y] = py
        st[S_ST_SINCE] = ts
        st[S_ST_OUT_N] = 0.0
        st[S_ST_STILL] = _still_mark(spd_kmh)
    elif math.hypot(px - st[S_ST_X], py - st[S_ST_Y]) <= rad:
        st[S_ST_N] += 1.0
        st[S_ST_X] += (px - st[S_ST_X]) / st[S_ST_N]
        st[S_ST_Y] += (py - st[S_ST_Y]) / st[S_ST_N]
        st[S_ST_OUT_N] = 0.0
        st[S_ST_STILL] = _still_mark(spd_kmh)
    elif st[S_ST_N] == 1 and st[S_ST_OUT_N] == 0 and st[S_ST_ACTIVE] == 0 and st[S_ST_STILL] < 0:
        # the cluster is one fix the device said was taken moving: nothing stood there,
        # and a fix away from it begins the next. (Held as the one outlying fix
        # instead, a halt's first standing fix gave way to multipath scatter about the
        # halt, which counted from a later fix: 90 s late at 30 s)
        st[S_ST_X] = px
        st[S_ST_Y] = py
        st[S_ST_SINCE] = ts
        st[S_ST_STILL] = _still_mark(spd_kmh)
    elif (
        still
        and _stands(last_kmh)
        and (st[S_ST_N] >= 3 or st[S_ST_STILL] > 0)
        and math.hypot(px - st[S_ST_X], py - st[S_ST_Y]) <= ST_STILL_MAX_M
    ):
        # a far fix while the device says it stands still, and the last fix's speed
        # said so too, next to an established cluster, is noise, not movement: three
        # fixes, or any whose latest stood still too (a sparse tracker's halt begun - at
        # 30 s fixes drifting from its first standing fixes broke the young cluster, and
        # the halt counted from a later one). A younger cluster of moving fixes may
        # still be the approach (two 20 m apart at 5 s); beyond ST_STILL_MAX_M it moved,
        # whatever a stuck speed sensor says. One reading under ST_STILL_KMH after a
        # moving one is a crawl's speed noise as often as a halt (a jam crawled at ~1
        # m/s, fixes 30 s apart, made a 2-minute halt of it); a standing vehicle reads
        # ~0 at every fix. It parts two outlying fixes: those must come in a row to be
        # movement (fixes drifting 50-80 m while the vehicle stands broke the stop at
        # the second)
        st[S_ST_OUT_N] = 0.0
    elif (
        st[S_ST_OUT_N] > 0
        and still
        and _stands(last_kmh)
        and st[S_LAST_ONROUTE] == 0
        and math.hypot(px - st[S_ST_OUT_X], py - st[S_ST_OUT_Y]) > STILL_SCATTER_M
        and math.hypot(px - st[S_ST_X], py - st[S_ST_Y]) <= ST_SCATTER_MAX_M
    ):
        # a second outlying fix while the device stood still at both, far from the
        # first: no place the vehicle moved to, but multipath scattered about a standing
        # vehicle (at 30 s two outliers 350 m apart broke a halt's cluster, which
        # counted from the fix after them, 90 s late). It is the one outlying fix now.
        # Not one on the route (a vehicle driving off along it with a speed stuck at 0),
        # nor beyond the reach of multipath
        st[S_ST_OUT_X] = px
        st[S_ST_OUT_Y] = py
        st[S_ST_OUT_TS] = ts
    else:
        # one outlying fix is noise; two in a row is movement, and so is one the device
        # says was taken moving (multipath moves a fix, not the Doppler speed: at 10 s a
        # halt's end waited for a second fix, and a multipath fix back inside the
        # cluster between them put it off by two more) - but not at a planned stop,
        # whose departure measures the move off the spot where it dwelt (_stops) from
        # the cluster
        moving = _moves(spd_kmh) and int(st[S_AT_STOP]) < 0
        st[S_ST_OUT_N] += 1.0
        if st[S_ST_OUT_N] == 1 and not moving:
            st[S_ST_OUT_X] = px
            st[S_ST_OUT_Y] = py
            st[S_ST_OUT_TS] = ts
        else:
            if st[S_ST_ACTIVE] > 0:
                st[S_ST_ACTIVE] = 0.0
                ne = _emit(
                    ev_i,
                    ev_ts,
                    ev_f,
                    ne,
                    EV_UNPLANNED_STOP_ENDED,
                    i,
                    -1,
                    ts,
                    (ts - st[S_ST_SINCE]) / 1000.0,
                    st[S_ST_SINCE],
                    0.0,
                    lat,
                    lon,
                    m,
                )
            # the new cluster: both fixes when the second lies beside the first, or
            # when the device stood still at both and the drift of a standing vehicle
            # explains their distance (the vehicle halted there, since the first: a
            # sparse tracker would otherwise lose an interval of the halt whenever it
            # began on the first fix of a pair and the second drifted off). The first
            # was the last fix that reached this stage: it made S_ST_OUT_N 1
            st[S_ST_STILL] = _still_mark(spd_kmh)
            apart = math.hypot(px - st[S_ST_OUT_X], py - st[S_ST_OUT_Y])
            if st[S_ST_OUT_N] == 1:  # (the one fix, taken moving: no pair)
                apart = math.inf
            if apart <= rad or (still and _stands(last_kmh) and apart <= ST_STILL_MAX_M):
                st[S_ST_N] = 2.0
                st[S_ST_X] = 0.5 * (px + st[S_ST_OUT_X])
                st[S_ST_Y] = 0.5 * (py + st[S_ST_OUT_Y])
                st[S_ST_SINCE] = st[S_ST_OUT_TS]
            else:
                st[S_ST_N] = 1.0
                st[S_ST_X] = px
                st[S_ST_Y] = py
                st[S_ST_SINCE] = ts
            st[S_ST_OUT_N] = 0.0
    # only a fix inside the cluster proves the stop (after a coverage gap the first
    # fix may be far away while the cluster's start is long past)
    if (
        st[S_ST_ACTIVE] == 0
        and st[S_STARTED] > 0
        and not near_stop
        and st[S_ST_OUT_N] == 0
        and ts - st[S_ST_SINCE] >= th[TH_ST_S] * 1000.0
    ):
        clear = True
        for k in range(nstops):
            # at the stop's place on its pass of the route (as for arrival): halting
            # there on the way back along an out-and-back leg is still unplanned
            r = stops[k, T_RADIUS]
            if (
                math.hypot(st[S_ST_X] - stops[k, T_X], st[S_ST_Y] - stops[k, T_Y]) <= r
                and abs(st[S_PROGRESS] - stops[k, T_M]) <= r + stops[k, T_OFFSET] + 50.0
            ):
                clear = False
                break
        if clear:
            st[S_ST_ACTIVE] = 1.0
            ne = _emit(
                ev_i,
                ev_ts,
                ev_f,
                ne,
                EV_UNPLANNED_STOP,
                i,
                -1,
                ts,
                rad,
                st[S_ST_SINCE],
                0.0,
                lat,
                lon,
                m,
            )
    return ne


@njit(cache=True, inline="always")
def _speeding(
    st, th, par, lim_from, lim_to, lim_kmh, i, ts, lat, lon, m, speed, on_route,
    ev_i, ev_ts, ev_f, ne,
):  # fmt: skip
    """Speeding against the limit at this route position (off the route, confirmed:
    another road, the plan's default limit): ``speeding`` after ``speeding_min_s``
    above limit + tolerance, ``speeding_ended`` two fixes (or 5 s) under it less the
    hysteresis. A fix outside the corridor that has not (yet) made the vehicle off
    route is noise beside the route or the vehicle leaving it: judged against the more
    lenient of the two limits (noise on an 80 km/h road judged against a 50 km/h
    default started runs of its own; a detour leaving a 30 km/h street, the reverse).

    Owns S_SP_SINCE, S_SP_ACTIVE, S_SP_MAX, S_SP_M0, S_SP_UNDER_N, S_SP_UNDER_TS,
    S_SP_LIMIT."""
    default = par[P_DEFAULT_LIMIT]
    limit = limit_at(m, lim_from, lim_to, lim_kmh, default)
    if not on_route:
        # off route: another road (or no limit known off the route)
        off = st[S_OFF] > 0 or not math.isfinite(default)
        limit = default if off else max(limit, default)
    if math.isfinite(limit) and math.isfinite(speed):
        if speed > limit + th[TH_SP_TOL]:
            if not math.isfinite(st[S_SP_SINCE]):
                st[S_SP_SINCE] = ts
                st[S_SP_MAX] = speed
                st[S_SP_M0] = st[S_PROGRESS]
                st[S_SP_LIMIT] = limit
            st[S_SP_UNDER_N] = 0.0
            st[S_SP_MAX] = max(st[S_SP_MAX], speed)
            if st[S_SP_ACTIVE] == 0 and ts - st[S_SP_SINCE] >= th[TH_SP_MIN_S] * 1000.0:
                st[S_SP_ACTIVE] = 1.0
                ne = _emit(
                    ev_i,
                    ev_ts,
                    ev_f,
                    ne,
                    EV_SPEEDING,
                    i,
                    -1,
                    ts,
                    st[S_SP_LIMIT],
                    speed,
                    st[S_SP_SINCE],
                    lat,
                    lon,
                    m,
                )
        elif math.isfinite(st[S_SP_SINCE]) and speed > limit + th[TH_SP_TOL] - SPEEDING_HYST_KMH:
            # hysteresis: a run ~1 km/h over the threshold with 1.5 km/h of device
            # speed noise dips under it on two fixes in a row every minute or so
            st[S_SP_UNDER_N] = 0.0
        elif math.isfinite(st[S_SP_SINCE]):
            if st[S_SP_UNDER_N] == 0:
                st[S_SP_UNDER_TS] = ts
            st[S_SP_UNDER_N] += 1.0
            # one slower sample inside a speeding run is noise
            if st[S_SP_UNDER_N] >= 2 or ts - st[S_SP_UNDER_TS] >= 5000.0:
                if st[S_SP_ACTIVE] > 0:
                    ne = _emit(
                        ev_i,
                        ev_ts,
                        ev_f,
                        ne,
                        EV_SPEEDING_ENDED,
                        i,
                        -1,
                        ts,
                        st[S_SP_MAX],
                        (st[S_SP_UNDER_TS] - st[S_SP_SINCE]) / 1000.0,
                        max(0.0, st[S_PROGRESS] - st[S_SP_M0]),
                        lat,
                        lon,
                        m,
                    )
                st[S_SP_ACTIVE] = 0.0
                st[S_SP_SINCE] = np.nan
                st[S_SP_UNDER_N] = 0.0
    return ne


@njit(cache=True, inline="always")
def _next_arrival_ms(st, par, stops, ustat, ts, nxt):
    """ETA: predicted arrival at stop ``nxt`` (the next pending one), epoch ms - the
    same prediction as :func:`stop_etas` gives that stop. Reads the state only."""
    v = expected_mps(st, par)
    eta = ts + max(0.0, _to_go_m(st, stops, nxt, max(st[S_PROGRESS], 0.0))) / v * 1000.0
    at = int(st[S_AT_STOP])
    if at >= 0:
        eta += max(0.0, stops[at, T_SERVICE_S] * 1000.0 - (ts - ustat[at, U_ENTER_TS]))
    return eta


@njit(cache=True, inline="always")
def _schedule(st, th, par, stops, ustat, i, ts, lat, lon, m, ev_i, ev_ts, ev_f, ne):
    """Schedule: ``late`` when the predicted arrival at the next pending stop with a
    window is more than ``late_s`` after its end, ``back_on_schedule`` under
    ``late_s`` - ``late_hysteresis_s``.

    Owns S_LATE, S_LATE_STOP."""
    nstops = stops.shape[0]
    nxt = int(st[S_NEXT_STOP])
    if int(st[S_AT_STOP]) >= 0:
        nxt = int(st[S_AT_STOP]) + 1
    while nxt < nstops and ustat[nxt, U_STATUS] != STATUS_PENDING:
        nxt += 1
    if nxt < nstops and math.isfinite(stops[nxt, T_WIN_END]):
        eta = _next_arrival_ms(st, par, stops, ustat, ts, nxt)
        delay_s = (eta - stops[nxt, T_WIN_END]) / 1000.0
        if st[S_LATE] == 0 and delay_s > th[TH_LATE_S]:
            st[S_LATE] = 1.0
            st[S_LATE_STOP] = float(nxt)
            ne = _emit(ev_i, ev_ts, ev_f, ne, EV_LATE, i, nxt, ts, eta, delay_s, 0.0, lat, lon, m)
        elif st[S_LATE] > 0 and delay_s < th[TH_LATE_S] - th[TH_LATE_HYST_S]:
            st[S_LATE] = 0.0
            ne = _emit(
                ev_i,
                ev_ts,
                ev_f,
                ne,
                EV_BACK_ON_SCHEDULE,
                i,
                nxt,
                ts,
                delay_s,
                0.0,
                0.0,
                lat,
                lon,
                m,
            )
    return ne


@njit(cache=True, inline="always")
def _skip_pending(ustat):
    """Completion: the trip ends - its stops not yet resolved are skipped."""
    for k in range(ustat.shape[0]):
        if ustat[k, U_STATUS] == STATUS_PENDING:
            ustat[k, U_STATUS] = STATUS_SKIPPED


@njit(cache=True, inline="always")
def _abandon_at(st, th, par):
    """Completion: when a trip whose vehicle stopped reporting ends, epoch ms:
    ``trip_abandon_s`` after the later of its planned end and its last ping."""
    return max(par[P_PLANNED_END_MS], st[S_LAST_TS]) + th[TH_ABANDON_S] * 1000.0


@njit(cache=True, inline="always")
def _quiet_at_end(st, th, par):
    """Completion: whether the trip's last fix was at the route end, so that a silence of
    the signal timeout after it ends the trip there (:func:`_ended_at`) instead of
    reporting the signal lost - a tracker that goes quiet with the ignition, after a
    sparse tracker's one fix at the end, which the end's own rules (:func:`_completion`)
    do not take: its last match reached the end (the progress, a median, needs a second
    fix there), or it stood within multipath's reach (``ST_SCATTER_MAX_M``) of the end
    after a match within that reach of it.

    The last fix was accepted (no wild fix, no jump) within that reach of the route's last
    point, and the vehicle is at no planned stop: a stop at the route end ends the trip on
    its departure (a tracker quiet while the vehicle dwells there is lost)."""
    length = par[P_LENGTH_M]
    reached = st[S_M1] >= length - END_M
    stood = st[S_SPEED_KMH] < th[TH_STOP_SLOW_KMH] and st[S_M1] >= length - ST_SCATTER_MAX_M
    return (
        st[S_STARTED] > 0
        and st[S_COMPLETED] == 0
        and st[S_LOST] == 0
        and int(st[S_AT_STOP]) < 0
        and int(st[S_CAND_STOP]) < 0
        and st[S_ACC_TS] == st[S_LAST_TS]
        and (reached or stood)
        and math.hypot(st[S_ACC_X] - par[P_END_X], st[S_ACC_Y] - par[P_END_Y]) <= ST_SCATTER_MAX_M
    )


@njit(cache=True, inline="always")
def _ended_at(st, th, par, quiet):
    """Completion: when the trip ends if no ping comes, epoch ms: the signal timeout after
    its last fix when that fix stood at the route end (``quiet``,
    :func:`_quiet_at_end`), else :func:`_abandon_at`."""
    end_ms = _abandon_at(st, th, par)
    if quiet:
        end_ms = min(end_ms, st[S_LAST_TS] + th[TH_LOST_S] * 1000.0)
    return end_ms


@njit(cache=True, inline="always")
def _end_for_want_of_signal(st, ustat, ping, quiet, end_ms, ev_i, ev_ts, ev_f, ne):
    """Completion: the trip ends in a silence - at its last fix, standing at the route
    end (``quiet``), or abandoned at ``end_ms``."""
    if quiet:
        return _end_quiet(st, ustat, ping, ev_i, ev_ts, ev_f, ne)
    return _abandon(st, ustat, ping, end_ms, ev_i, ev_ts, ev_f, ne)


@njit(cache=True, inline="always")
def _end_quiet(st, ustat, ping, ev_i, ev_ts, ev_f, ne):
    """Completion: end the trip at its last fix, which stood at the route end before the
    tracker went quiet (:func:`_quiet_at_end`): a ``trip_completed`` there, as the end's
    own rule gives it (EV_TRIP_ENDED_QUIET: decided by ``ping``, the one after the
    silence, or -1 from :func:`time_check`); pending stops are skipped."""
    _skip_pending(ustat)
    st[S_COMPLETED] = 1.0
    st[S_COMPLETED_TS] = st[S_LAST_TS]
    return _emit(
        ev_i,
        ev_ts,
        ev_f,
        ne,
        EV_TRIP_ENDED_QUIET,
        ping,
        -1,
        st[S_LAST_TS],
        st[S_ON_TIME],
        st[S_LATE_STOPS],
        max(0.0, st[S_PROGRESS] - st[S_START_M]),
        st[S_LAST_LAT],
        st[S_LAST_LON],
        st[S_LAST_M],
    )


@njit(cache=True, inline="always")
def _abandon(st, ustat, ping, at_ms, ev_i, ev_ts, ev_f, ne):
    """Completion: end the trip at ``at_ms`` for want of signal: its pending stops are
    skipped and it completes (EV_TRIP_ABANDONED, a ``trip_completed`` ended by
    "no_signal") where its last ping was. ``ping``: the ping after the silence, -1 from
    :func:`time_check`."""
    _skip_pending(ustat)
    st[S_COMPLETED] = 1.0
    st[S_COMPLETED_TS] = at_ms
    dist = st[S_PROGRESS] - st[S_START_M]
    if not dist > 0.0:  # (NaN: never on the route)
        dist = 0.0
    return _emit(
        ev_i,
        ev_ts,
        ev_f,
        ne,
        EV_TRIP_ABANDONED,
        ping,
        -1,
        at_ms,
        st[S_ON_TIME],
        st[S_LATE_STOPS],
        dist,
        st[S_LAST_LAT],
        st[S_LAST_LON],
        st[S_PROGRESS],
    )


@njit(cache=True, inline="always")
def _completion(
    x, y, st, th, length, stops, ustat, i, ts, px, py, lat, lon, m, speed, on_route,
    elsewhere, ev_i, ev_ts, ev_f, ne,
):  # fmt: skip
    """Completion: ``trip_completed`` once every stop is resolved after the last
    departure, or the route end is reached (or stood at); pending stops are skipped.

    Owns S_COMPLETED, S_COMPLETED_TS (and skips pending stops in ``ustat``)."""
    nstops = stops.shape[0]
    # a route that goes on past the last stop (back to the depot) ends at its end
    last_departed = (
        nstops > 0
        and ustat[nstops - 1, U_STATUS] == STATUS_DEPARTED
        and length - stops[nstops - 1, T_M] <= stops[nstops - 1, T_RADIUS] + 200.0
    )
    # standing at the route end proves it on one fix: with sparse fixes the median
    # progress may never see two of them there before the tracker goes quiet
    slow = math.isfinite(speed) and speed < th[TH_STOP_SLOW_KMH]
    standing_at_end = on_route and not elsewhere and m >= length - END_M and slow
    # ... and standing within multipath's reach of the end after the last match there:
    # a sparse tracker's one standing fix at the end may be an outlier, and then its
    # tracker goes quiet (the median progress lags the match by a fix): the trip lingered
    # for trip_abandon_s, with a false signal_lost on the way
    stood_near_end = (
        slow
        and st[S_M1] >= length - END_M
        and math.hypot(px - x[-1], py - y[-1]) <= ST_SCATTER_MAX_M
    )
    done = (
        st[S_STARTED] > 0
        and int(st[S_AT_STOP]) < 0
        and int(st[S_CAND_STOP]) < 0
        and (last_departed or st[S_PROGRESS] >= length - END_M or standing_at_end or stood_near_end)
    )
    if done:
        _skip_pending(ustat)
        st[S_COMPLETED] = 1.0
        st[S_COMPLETED_TS] = ts
        ne = _emit(
            ev_i,
            ev_ts,
            ev_f,
            ne,
            EV_TRIP_COMPLETED,
            i,
            -1,
            ts,
            st[S_ON_TIME],
            st[S_LATE_STOPS],
            max(0.0, st[S_PROGRESS] - st[S_START_M]),
            lat,
            lon,
            m,
        )
    return ne


# _nrt=False: the loop allocates nothing, and with the stages inlined Numba would
# otherwise count references to every array a stage takes, on every ping (an atomic
# increment and decrement each, ~66 pairs: half the kernel's speed); an allocation added
# to a stage by mistake fails to compile instead of leaking
@njit(cache=True, _nrt=False)  # type: ignore[call-overload]  # (a private option)
def process_pings(
    x,
    y,
    cum,
    boxes,
    par,
    th,
    stops,
    ustat,
    lim_from,
    lim_to,
    lim_kmh,
    st,
    ts_a,
    px_a,
    py_a,
    lat_a,
    lon_a,
    spd_a,
    acc_a,
    hdg_a,
    out_m,
    out_off,
    out_on,
    ev_i,
    ev_ts,
    ev_f,
):
    """Run every detector over one trip's pings (sorted by ts, strictly increasing).

    The route: vertices ``x``, ``y`` and distances ``cum`` in local metres, ``boxes`` its
    segment runs' bounding boxes (compliance.route.PreparedRoute.chunk_box_m).

    Updates ``st`` and ``ustat`` in place, writes per-ping results into ``out_*`` and
    events into ``ev_*``; returns the number of events. Pings at or before the last
    processed ts are skipped (their ``out_on`` is -1). Per ping, the stages in order:
    signal, wild fix, matching, off-route, progress, speed, then (on an unfinished trip)
    trip start, planned stops, unplanned stop, speeding, schedule, completion.
    """
    ne = 0
    length = par[P_LENGTH_M]
    vmax_mps = th[TH_MAX_SPEED_KMH] / 3.6
    for i in range(ts_a.shape[0]):
        ts = float(ts_a[i])
        px = px_a[i]
        py = py_a[i]
        lat = lat_a[i]
        lon = lon_a[i]
        spd = spd_a[i]
        out_on[i] = -1
        out_m[i] = np.nan
        out_off[i] = np.nan
        if st[S_N] > 0 and ts <= st[S_LAST_TS]:
            continue  # at or before the last processed ping: already judged
        ne = _signal(st, th, par, ustat, i, ts, lat, lon, ev_i, ev_ts, ev_f, ne)
        acc = acc_a[i]
        if not math.isfinite(acc):
            acc = 0.0
        was_on = _was_on_route(st)
        if _wild_fix(st, th, ts, px, py, acc, spd, was_on):
            continue
        had_prev = st[S_ACC_TS] > 0
        prev_x = st[S_ACC_X]
        prev_y = st[S_ACC_Y]
        prev_m = st[S_LAST_M]  # the last matched fix's route position (NaN: none)
        prev_d = st[S_LAST_OFFSET]  # and its distance from the route
        jumped, m, d, inside, elsewhere, corridor, sigma_d = _match(
            x, y, cum, boxes, par, th, st, ts, px, py, acc, spd, was_on, vmax_mps, length
        )
        if jumped:
            continue
        _accept_fix(st, ts, px, py)
        out_m[i] = m
        out_off[i] = d
        ne, on_route = _off_route(
            x, y, cum, boxes, st, th, i, ts, px, py, lat, lon, spd, hdg_a[i], m, prev_m, prev_d, d,
            inside, corridor, sigma_d, had_prev, prev_x, prev_y, ev_i, ev_ts, ev_f, ne,
        )  # fmt: skip
        out_on[i] = 1 if on_route else 0
        progressed = (
            on_route and not elsewhere and not _wrong_way_ahead(x, y, cum, st, m, spd, hdg_a[i])
        )
        if progressed:
            _progress(st, par, ts, m, sigma_d)
        last_kmh = st[S_SPEED_KMH]  # the last fix's speed, before the speed stage
        speed = _speed(st, ts, spd, progressed)
        if st[S_COMPLETED] > 0:
            continue
        ne = _trip_start(st, th, length, i, ts, lat, lon, m, ev_i, ev_ts, ev_f, ne)
        ne, dwell_planned = _stops(
            st, th, stops, ustat, i, ts, px, py, lat, lon, m, speed, spd, ev_i, ev_ts, ev_f, ne
        )
        ne = _unplanned_stop(
            st, th, stops, i, ts, px, py, lat, lon, m, spd, last_kmh, sigma_d, dwell_planned,
            ev_i, ev_ts, ev_f, ne,
        )  # fmt: skip
        ne = _speeding(
            st, th, par, lim_from, lim_to, lim_kmh, i, ts, lat, lon, m, speed, on_route,
            ev_i, ev_ts, ev_f, ne,
        )  # fmt: skip
        ne = _schedule(st, th, par, stops, ustat, i, ts, lat, lon, m, ev_i, ev_ts, ev_f, ne)
        ne = _completion(
            x, y, st, th, length, stops, ustat, i, ts, px, py, lat, lon, m, speed, on_route,
            elsewhere, ev_i, ev_ts, ev_f, ne,
        )  # fmt: skip
    return ne


@njit(cache=True)
def time_check(st, th, par, ustat, horizon_ms, ev_i, ev_ts, ev_f):
    """The time-driven events of a trip whose committed horizon passed their instant with
    no ping since: ``signal_lost`` at the last ping + timeout (a started, unfinished
    trip), and the trip's end for want of signal at :func:`_abandon_at` (any trip that
    has had a ping), in that order - the same events, with the same times, that the
    next ping would give (:func:`_signal`). Returns the number emitted (at most 2)."""
    if st[S_N] == 0 or st[S_COMPLETED] > 0:
        return 0
    ne = 0
    quiet = _quiet_at_end(st, th, par)
    end_ms = _ended_at(st, th, par, quiet)
    lost_at = st[S_LAST_TS] + th[TH_LOST_S] * 1000.0
    if (
        st[S_LOST] == 0
        and st[S_STARTED] > 0
        and not quiet
        and lost_at <= horizon_ms
        and lost_at <= end_ms
    ):
        ne = _signal_lost(st, th, ev_i, ev_ts, ev_f, ne)
    if end_ms <= horizon_ms:
        ne = _end_for_want_of_signal(st, ustat, -1, quiet, end_ms, ev_i, ev_ts, ev_f, ne)
    return ne


_ = (STATUS_ARRIVED, U_ARRIVED_TS)  # layout names used by readers of ustat
