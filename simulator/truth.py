"""Ground truth: the CONTRACT §4 events a correct engine must emit, from the true motion.

Expected events are derived from what really happened (true positions, speeds, halts and
the fixes actually delivered), not from the fault parameters, so a fault that did not
bite (a jam too short to make anyone late) expects nothing. Each expected event carries
``tolerance_s``: a detection of the same type (and stop) within that many seconds of
``ts`` matches it. Borderline conditions (a speeding run barely as long as the
confirmation time, a stop a few minutes either side of the late threshold) go to the
*allowed* list instead: an engine may or may not report them.

Thresholds mirror DESIGN.md "Default thresholds".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.motion import HALT_END, HALT_STOP, HALT_UNPLANNED
from simulator.plans import CORRIDOR_M, STOP_RADIUS_M, rfc3339
from simulator.scenario import END_DWELL_S, Simulation

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

OFF_ROUTE_CONFIRM_S = 10.0
BACK_ON_FRACTION = 0.6
BACK_ON_FIXES = 2
SPEEDING_TOLERANCE_KMH = 5.0
SPEEDING_CONFIRM_S = 15.0
SPEEDING_BRIDGE_S = 10
SPEEDING_CLEAR_SIGMAS = 2.0  # a required episode is this many device-speed sigmas over
STATIONARY_S = 120.0
LATE_THRESHOLD_S = 600.0
LATE_MARGIN_S = 300.0
SIGNAL_TIMEOUT_S = 120.0
#: a trip that has not completed ends (trip_completed, ended_by no_signal) this long after
#: the later of its planned end and its last fix (the engine's trip_abandon_s)
ABANDON_S = 3600.0
DEFAULT_SPEED_MPS = 30.0 / 3.6  # the engine's default_speed_kmh


@dataclass(slots=True)
class Recording:
    """True state per simulated second: arrays of shape (ticks, vehicles)."""

    t0_s: int
    s_m: F64
    v_ms: F64
    x_m: F64
    y_m: F64
    limit_kmh: F64
    active: B
    fix_ts_ms: list[list[int]]  # per vehicle: device timestamps of delivered fixes


def point_polyline_m(px: F64, py: F64, lx: F64, ly: F64) -> F64:
    """Distance (m) from each point to the polyline (lx, ly), all in the local frame."""
    ax, ay, bx, by = lx[:-1], ly[:-1], lx[1:], ly[1:]
    dx, dy = bx - ax, by - ay
    seg2 = np.maximum(dx * dx + dy * dy, 1e-9)
    out = np.empty(len(px))
    for lo in range(0, len(px), 512):
        qx, qy = px[lo : lo + 512, None], py[lo : lo + 512, None]
        u = np.clip(((qx - ax) * dx + (qy - ay) * dy) / seg2, 0.0, 1.0)
        out[lo : lo + 512] = np.hypot(qx - (ax + u * dx), qy - (ay + u * dy)).min(axis=1)
    return out


def runs(mask: B) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs in ``mask``."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _parse_s(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Collector:
    def __init__(self, sim: Simulation, rec: Recording) -> None:
        self.sim, self.rec = sim, rec
        #: the last fix of the whole recording, epoch s
        self.recording_end_s = max(max(v) for v in rec.fix_ts_ms if v) / 1000.0
        self.expected: list[dict[str, Any]] = []
        self.allowed: list[dict[str, Any]] = []

    def add(
        self,
        must: bool,
        kind: str,
        i: int,
        t_s: float,
        tol_s: float,
        details: dict[str, Any] | None = None,
    ) -> None:
        rec, plan = self.rec, self.sim.plans[i]
        k = int(np.clip(round(t_s) - rec.t0_s, 0, len(rec.s_m) - 1))
        lon, lat = self.sim.net.frame.to_lonlat(
            rec.x_m[k : k + 1, i].astype(np.float64), rec.y_m[k : k + 1, i].astype(np.float64)
        )
        (self.expected if must else self.allowed).append(
            {
                "type": kind,
                "trip_id": plan["trip_id"],
                "vehicle_id": plan["vehicle_id"],
                "ts": rfc3339(t_s),
                "lat": round(float(lat[0]), 7),
                "lon": round(float(lon[0]), 7),
                "route_m": round(float(rec.s_m[k, i]), 1),
                "details": details or {},
                "tolerance_s": round(float(tol_s), 1),
            }
        )


def derive(sim: Simulation, rec: Recording) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(expected, allowed) event lists, each sorted by (ts, trip_id, type)."""
    col = _Collector(sim, rec)
    for i in range(len(sim.plans)):
        _vehicle(col, i)

    def key(e):
        return (e["ts"], e["trip_id"], e["type"])

    return sorted(col.expected, key=key), sorted(col.allowed, key=key)


def _vehicle(col: _Collector, i: int) -> None:
    sim, rec = col.sim, col.rec
    f, truth, plan = sim.fleet, sim.truths[i], sim.plans[i]
    assert f.arrive_s is not None
    iv = float(sim.config.interval_s)
    t = rec.t0_s + np.arange(len(rec.s_m), dtype=np.float64)
    act = rec.active[:, i]
    if not act.any():
        return
    col.add(True, "trip_started", i, float(f.depart_s[i]) + 10.0, 30.0 + 2 * iv)

    # planned stops: arrival = halt inside the radius; departure = leaving the radius
    sx, sy = sim.net.frame.to_xy(
        np.array([s["location"][0] for s in plan["stops"]]),
        np.array([s["location"][1] for s in plan["stops"]]),
    )
    silences = _silences(rec.fix_ts_ms[i], 60.0)
    if truth.fault == "tracker_dies" and rec.fix_ts_ms[i]:
        silences.append((max(rec.fix_ts_ms[i]) / 1000.0, math.inf))  # for good
    for j, (kind, _m, dwell, ref) in enumerate(truth.halts):
        arr = f.arrive_s[i, j]
        if math.isnan(arr):
            continue
        if kind == HALT_STOP:
            stop = plan["stops"][ref]
            det = {"stop_id": stop["stop_id"], "order_id": stop["order_id"]}
            # unseen if the tracker was silent around it (a signal outage)
            span = (arr - 30.0, arr + 30.0)
            _add_heard(col, silences, span, "stop_arrived", i, arr, 30.0 + 2 * iv, det)
            d = np.hypot(rec.x_m[:, i] - sx[ref], rec.y_m[:, i] - sy[ref])
            after = np.flatnonzero((t > arr + dwell) & act & (d > STOP_RADIUS_M))
            if len(after):
                t_dep = float(t[after[0]])
                span = (t_dep - 60.0, t_dep + 30.0)
                _add_heard(col, silences, span, "stop_departed", i, t_dep, 20.0 + 2 * iv, det)
        elif kind == HALT_UNPLANNED:
            # pulling off into a yard: standing there from the end of the creep in until
            # the creep out begins (beside the route: an unplanned stop, no off_route)
            # (the creep is neither moving nor standing: it may count either way)
            creep = truth.fault_plan.side_ramp_s if truth.fault_plan.side_true else 0.0
            stand = dwell - 2.0 * creep
            seen = not _silent(silences, arr, arr + dwell)
            must = stand >= STATIONARY_S + 30.0 and seen
            tol = 15.0 + 1.5 * iv + creep / 2.0
            col.add(must, "unplanned_stop", i, arr + creep / 2.0 + STATIONARY_S, tol)
            end = arr + dwell - creep / 2.0 + 5.0
            col.add(must, "unplanned_stop_ended", i, end, 15.0 + 2 * iv + creep / 2.0)
        elif kind == HALT_END and truth.fault != "detour_no_rejoin":
            # unseen if the tracker was silent on arrival (an outage lasting past the end)
            seen_end = _fix_between(rec.fix_ts_ms[i], arr - 2 * iv, arr + END_DWELL_S)
            col.add(seen_end, "trip_completed", i, arr, 60.0 + 2 * iv)

    off_m = _off_route(col, i, t, act, iv)
    _speeding(col, i, t, act, off_m, iv)
    _late(col, i, t, act)
    _signal(col, i, iv)
    _abandoned(col, i)


def _silences(fix_ts_ms: list[int], min_s: float) -> list[tuple[float, float]]:
    """(from, to) epoch-second spans longer than ``min_s`` without any delivered fix."""
    ts = np.unique(np.asarray(fix_ts_ms, np.int64)) / 1000.0
    gaps = np.flatnonzero(np.diff(ts) > min_s)
    return [(float(ts[k]), float(ts[k + 1])) for k in gaps]


def _silent(spans: list[tuple[float, float]], a: float, b: float) -> bool:
    return any(lo < b and hi > a for lo, hi in spans)


def _add_heard(
    col: _Collector,
    silences: list[tuple[float, float]],
    span: tuple[float, float],
    kind: str,
    i: int,
    t_s: float,
    tol_s: float,
    details: dict[str, Any],
) -> None:
    """An event at ``t_s``, required unless the tracker was silent over ``span``; one
    the silence hid is allowed at ``t_s`` and when the tracker is heard again, the first
    an engine can know of it (a departure in an outage is reported by its first fix)."""
    hidden = [hi for lo, hi in silences if lo < span[1] and hi > span[0]]
    col.add(not hidden, kind, i, t_s, tol_s, details)
    if hidden and math.isfinite(max(hidden)):  # (a tracker that died is never heard)
        col.add(False, kind, i, max(hidden), tol_s, details)


def _fix_between(fix_ts_ms: list[int], a_s: float, b_s: float) -> bool:
    ts = np.asarray(fix_ts_ms, np.float64) / 1000.0
    return bool(np.any((ts >= a_s) & (ts <= b_s)))


def _off_route(col: _Collector, i: int, t: F64, act: B, iv: float) -> F64:
    """Off-route episodes from the true distance to the planned route; returns it (m)."""
    sim, rec = col.sim, col.rec
    off = np.zeros(len(t))
    if sim.truths[i].driven is sim.planned_routes[i]:
        return off
    lx, ly = sim.planned_routes[i].xy_m(sim.net)
    idx = np.flatnonzero(act)
    off[idx] = point_polyline_m(
        rec.x_m[idx, i].astype(np.float64), rec.y_m[idx, i].astype(np.float64), lx, ly
    )
    # back on route means staying inside for two fixes (the engine's back_on_route_pings);
    # a return is required only when it lasts a fix longer than that, so that one noisy
    # fix among the few inside is less likely to leave it unseen (borderline otherwise,
    # below)
    seen = int(BACK_ON_FIXES * iv) + 1
    hold = int((BACK_ON_FIXES + 1) * iv) + 1
    confirm_len = 30.0 + 3 * iv  # ticks outside that confirm an excursion for sure
    confirm_s = max(OFF_ROUTE_CONFIRM_S, 2.5 * iv)  # when the engine confirms it, about
    k = 0
    while k < len(t):
        out = np.flatnonzero(act[k:] & (off[k:] > CORRIDOR_M))
        if not len(out):
            break
        a = k + out[0]
        end, crossings = _back_on(off, act, a, hold, seen)
        last = end if end is not None else int(np.flatnonzero(act)[-1])
        # required when a stretch outside is long enough to confirm: a crossing does not
        # cut the stretch, a brief return the fixes may show (an engine's count starts
        # again after it) does
        brief = [(c, again) for c, again, shown in crossings if shown]
        starts = [a, *(again for _c, again in brief)]
        ends = [*(c for c, _again in brief), last]
        long = [s for s, e in zip(starts, ends, strict=True) if e - s >= confirm_len]
        must = bool(long)
        tol_off = 10.0 + 2 * iv
        if crossings and crossings[0][0] - a < confirm_len:
            # the excursion before the first crossing was too short to confirm: an engine
            # may take the crossing for the return and confirm only once it left again
            tol_off += float(t[crossings[0][1]] - t[a])
        if long:  # (and at the latest in the first stretch long enough)
            tol_off = max(tol_off, 10.0 + 2 * iv + float(t[long[0]] - t[a]))
        col.add(must, "off_route", i, t[a] + confirm_s, tol_off)
        # drove across the route, or along it too briefly for the fixes to show the return
        # for sure: an engine may see a brief return
        for c, again, _shown in crossings:
            col.add(False, "back_on_route", i, t[c] + iv, 10.0 + 2 * iv)
            col.add(False, "off_route", i, t[again] + confirm_s, 20.0 + 2 * iv)
        if end is None:
            break
        tol = 10.0 + 2 * iv
        if crossings and end - crossings[-1][1] < confirm_len:
            # the excursion after the last crossing was too short to confirm: an engine may
            # already have called the crossing the return
            tol += float(t[end] - t[crossings[-1][0]])
        col.add(must, "back_on_route", i, t[end] + iv, tol)
        k = end + 1
    return off


def _back_on(
    off: F64, act: B, a: int, hold: int, seen: int
) -> tuple[int | None, list[tuple[int, int, bool]]]:
    """First tick after ``a`` from which the vehicle stays inside for ``hold`` ticks, and
    where it was inside only briefly before that (it crossed the route, or drove along it
    for less than ``hold``): (the tick it came inside, the first tick outside again,
    whether it stayed inside for ``seen`` ticks)."""
    crossings: list[tuple[int, int, bool]] = []
    k = a
    while True:
        back = np.flatnonzero(act[k:] & (off[k:] <= BACK_ON_FRACTION * CORRIDOR_M))
        if not len(back):
            return None, crossings
        b = k + int(back[0])
        inside = off[b : b + hold][act[b : b + hold]] <= BACK_ON_FRACTION * CORRIDOR_M
        if np.all(inside):
            return b, crossings
        k = b + 1 + int(np.argmax(off[b + 1 :] > CORRIDOR_M))
        crossings.append((b, k, bool(np.all(inside[:seen]))))


def _speeding(col: _Collector, i: int, t: F64, act: B, off_m: F64, iv: float) -> None:
    """Speeding episodes over the limit of the street actually driven.

    Pieces split by a dip of at most SPEEDING_BRIDGE_S (a bend, a limit change while
    accelerating) form one episode, and so do pieces split by a dip of at most two fix
    intervals: fixes every ``iv`` seconds see such a dip on two fixes at most, and one
    fix under the limit ends no episode (the engine's rule is two, as a return to the
    route takes two, see ``_off_route``). The first confirmable piece starts it and its
    end ends it (with the tolerance widened to the end of the last confirmable piece),
    while the inner boundaries are allowed either way (engines with or without
    hysteresis, fixes that caught the dip twice or not).
    Off the planned route the plan knows no limit for the street, so speeding judged
    against the plan's default limit there is allowed, not required.

    A driver holding the threshold itself (85.1 km/h against 80 + 5) is a coin toss for
    any engine that sees the speed through the device's noise: an episode is required
    only where the true speed clears the threshold by SPEEDING_CLEAR_SIGMAS device-speed
    sigmas for a run of any of its pieces that the delivered fixes show for the
    confirmation time (:func:`_shown`); closer to it, or between the fixes, a report is
    allowed either way. Likewise its end may come after a stretch that follows it with the
    true speed within that noise under the threshold (:func:`_noisy_tail`).
    """
    rec = col.rec
    tol = 8.0 + 1.5 * iv
    # an episode ends on the second fix under the limit: up to two intervals after it
    tol_end = 8.0 + 2.0 * iv
    bridge_s = max(SPEEDING_BRIDGE_S, 2.0 * iv)
    fix_s = np.unique(np.asarray(rec.fix_ts_ms[i], np.int64)) / 1000.0
    skew_s = col.sim.config.gps.max_skew_ms / 1000.0
    kmh = rec.v_ms[:, i] * 3.6
    threshold = rec.limit_kmh[:, i] + SPEEDING_TOLERANCE_KMH
    over = act & (kmh > threshold)
    noise_kmh = SPEEDING_CLEAR_SIGMAS * col.sim.config.gps.speed_sigma_kmh
    clear = over & (kmh > threshold + noise_kmh)
    near = runs(act & (kmh > threshold - noise_kmh))
    episodes: list[list[tuple[int, int]]] = []
    for a, b in runs(over):
        if episodes and a - episodes[-1][-1][1] <= bridge_s:
            episodes[-1].append((a, b))
        else:
            episodes.append([(a, b)])
    for ep in episodes:
        long = [(a, b) for a, b in ep if b - a >= SPEEDING_CONFIRM_S - 7.0]
        if not long:
            continue
        a0 = long[0][0]
        end = ep[-1][1]
        # required only where the delivered fixes show the speed clearly over for the
        # confirmation time: two of them inside a clear run (its ends narrowed by the
        # devices' clock skew) that far apart. A run between the fixes of a sparse
        # tracker, or seen on one fix, is allowed, not required
        clear_runs = [
            (la - a0 + a, la - a0 + b)
            for la, lb in long
            for a, b in runs(clear[la:lb])
            if _shown(fix_s, t[la + a] + skew_s, t[la + b - 1] - skew_s)
        ]
        must = bool(clear_runs) and end - a0 >= SPEEDING_CONFIRM_S + 10.0 + iv
        # confirmed once the speed is clearly over, which may be after it first crossed
        # the threshold; a borderline episode (device speed noise dipping under the
        # threshold) may be confirmed anywhere along it, not only 15 s in
        anywhere = max(0.0, float(end - a0) - SPEEDING_CONFIRM_S)
        span = float(clear_runs[0][0]) if must else anywhere
        col.add(must, "speeding", i, t[a0] + SPEEDING_CONFIRM_S, tol + span)
        col.add(must, "speeding_ended", i, t[end - 1] + 1.0, tol_end + (end - long[-1][1]))
        for a, _b in long[1:]:
            col.add(False, "speeding", i, t[a] + SPEEDING_CONFIRM_S, tol)
        for _a, b in long:
            col.add(False, "speeding_ended", i, t[b - 1] + 1.0, tol_end)
        tail = _noisy_tail(near, end, bridge_s)
        if tail > end:
            col.add(False, "speeding_ended", i, t[tail - 1] + 1.0, tol_end)
    plan_limit = float(col.sim.plans[i].get("speed_limit_kmh") or math.inf)
    loose = act & (off_m > CORRIDOR_M) & (kmh > plan_limit + SPEEDING_TOLERANCE_KMH)
    for a, b in runs(loose):
        if b - a >= SPEEDING_CONFIRM_S - 7.0:
            col.add(False, "speeding", i, t[a] + SPEEDING_CONFIRM_S, tol + (b - a))
            col.add(False, "speeding_ended", i, t[b - 1] + 1.0, tol_end + (b - a))


def _noisy_tail(near: list[tuple[int, int]], end: int, bridge_s: float) -> int:
    """Where an episode ending at ``end`` may still be seen to end: after the runs of
    ``near`` (the true speed within the device's noise under the threshold, or over it)
    that follow it within ``bridge_s`` - a device reading there may be over the threshold,
    and an engine then ends the episode after it (the same coin toss as an episode's
    start, which the docstring of :func:`_speeding` allows either way)."""
    tail = end
    for a, b in near:
        if b <= tail:
            continue
        if a - tail > bridge_s:
            break
        tail = b
    return tail


def _shown(fix_s: F64, a_s: float, b_s: float) -> bool:
    """Whether fixes at ``fix_s`` (epoch s, sorted) inside [a_s, b_s] span at least
    SPEEDING_CONFIRM_S: the confirmation time, seen by the fixes."""
    inside = fix_s[(fix_s >= a_s) & (fix_s <= b_s)]
    return len(inside) >= 2 and float(inside[-1] - inside[0]) >= SPEEDING_CONFIRM_S


def _late(col: _Collector, i: int, t: F64, act: B) -> None:
    """The first stop reached well past window end + threshold; later ones are allowed."""
    sim, rec = col.sim, col.rec
    f, truth, plan = sim.fleet, sim.truths[i], sim.plans[i]
    assert f.arrive_s is not None
    arrivals = {
        ref: f.arrive_s[i, j]
        for j, (kind, _m, _d, ref) in enumerate(truth.halts)
        if kind == HALT_STOP
    }
    prev_m, prev_s = 0.0, _parse_s(plan["planned_start"])
    seen_late = False
    for k, stop in enumerate(plan["stops"]):
        planned = _parse_s(stop["planned_arrival"])
        leg_m = truth.stop_driven_m[k] - prev_m
        v_leg = leg_m / max(planned - prev_s, 60.0)
        arr = arrivals.get(k, math.nan)
        prev_m, prev_s = truth.stop_driven_m[k], planned + float(stop["service_s"])
        if math.isnan(arr) or math.isnan(leg_m):
            continue
        thr = _parse_s(stop["window"]["end"]) + LATE_THRESHOLD_S
        if arr <= thr - LATE_MARGIN_S:
            continue
        before = act & (t <= arr)
        eta = t + np.maximum(truth.stop_driven_m[k] - rec.s_m[:, i], 0.0) / max(v_leg, 0.5)
        hit = np.flatnonzero(before & (eta > thr))
        t_star = float(t[hit[0]]) if len(hit) else arr
        det = {"stop_id": stop["stop_id"]}
        if seen_late:
            col.add(False, "late", i, t_star, 86_400.0, det)
        else:
            col.add(arr > thr + LATE_MARGIN_S, "late", i, t_star, LATE_MARGIN_S, det)
        seen_late = True


def _silent_end(col: _Collector, i: int, ts: F64, iv: float) -> None:
    """A tracker silent from before the route end to the end of the recording: the trip
    is still active for the engine, so signal_lost is due at the last fix + timeout (when
    the recording lasts that long; unless the last stop's departure already completed
    the trip, which an engine may do when the route ends near that stop)."""
    sim = col.sim
    f, truth = sim.fleet, sim.truths[i]
    assert f.arrive_s is not None
    end = [j for j, h in enumerate(truth.halts) if h[0] == HALT_END]
    if not end or truth.fault == "detour_no_rejoin":
        return
    arr = f.arrive_s[i, end[0]]
    if math.isnan(arr) or ts[-1] >= arr - 2 * iv:
        return
    recording_end_s = col.recording_end_s
    lost_s = float(ts[-1]) + SIGNAL_TIMEOUT_S
    stops_m = [m for k, m, _d, _r in truth.halts if k == HALT_STOP]
    near_end = bool(stops_m) and truth.halts[end[0]][1] - stops_m[-1] <= STOP_RADIUS_M + 250.0
    must = lost_s + 30.0 <= recording_end_s and not near_end
    if lost_s <= recording_end_s + 30.0:
        col.add(must, "signal_lost", i, lost_s, 10.0 + iv)


def _planned_end_s(sim: Simulation, i: int) -> float:
    """When the plan expects trip ``i`` to end, epoch s, as the engine reckons it: the
    last stop's planned arrival + the service from it on + the rest of the route at the
    planned speed (route distance over planned travel time to that stop)."""
    plan, route = sim.plans[i], sim.planned_routes[i]
    stops = plan["stops"]
    length = float(route.cum_m(sim.net)[-1])
    if not stops:
        return _parse_s(plan["planned_start"]) + length / DEFAULT_SPEED_MPS
    k = len(stops) - 1
    stop_m = float(route.stop_route_m(sim.net)[k])
    arr = _parse_s(stops[k]["planned_arrival"])
    travel = arr - _parse_s(plan["planned_start"]) - sum(s["service_s"] for s in stops[:k])
    mps = (
        float(np.clip(stop_m / travel, 2.0, 40.0))
        if travel > 60 and stop_m > 100
        else DEFAULT_SPEED_MPS
    )
    rest = sum(s["service_s"] for s in stops[k:]) + max(0.0, length - stop_m) / mps
    return arr + rest


def _abandoned(col: _Collector, i: int) -> None:
    """A trip the engine cannot see complete (its tracker fell silent first, or it never
    reaches its end) is ended for want of signal ABANDON_S after the later of its
    planned end and its last fix - when the recording lasts that long. Only allowed
    where the engine may also see it complete."""
    sim, rec = col.sim, col.rec
    trip_id = sim.plans[i]["trip_id"]
    fixes = rec.fix_ts_ms[i]
    if not fixes:
        return
    if any(e["type"] == "trip_completed" and e["trip_id"] == trip_id for e in col.expected):
        return
    may_complete = any(
        e["type"] == "trip_completed" and e["trip_id"] == trip_id for e in col.allowed
    )
    end = max(max(fixes) / 1000.0, _planned_end_s(sim, i)) + ABANDON_S
    recording_end_s = col.recording_end_s
    if end <= recording_end_s + 30.0:
        col.add(end + 30.0 <= recording_end_s and not may_complete, "trip_completed", i, end, 30.0)


def _signal(col: _Collector, i: int, iv: float) -> None:
    sim, rec = col.sim, col.rec
    ts = np.unique(np.asarray(rec.fix_ts_ms[i], np.int64)) / 1000.0
    if len(ts) < 2:
        return
    gaps = np.diff(ts)
    for k in np.flatnonzero(gaps > SIGNAL_TIMEOUT_S - 20.0):
        must = gaps[k] >= SIGNAL_TIMEOUT_S + 30.0
        col.add(must, "signal_lost", i, ts[k] + SIGNAL_TIMEOUT_S, 10.0 + iv)
        col.add(must, "signal_restored", i, ts[k + 1], 5.0 + iv)
    _silent_end(col, i, ts, iv)
    if (
        sim.truths[i].driven is not sim.planned_routes[i]
        and sim.truths[i].fault == "detour_no_rejoin"
    ):
        # the trip never completes, so the engine may well report the silence at the end
        col.add(False, "signal_lost", i, ts[-1] + SIGNAL_TIMEOUT_S, 60.0 + iv)
