"""Matching throughput: the Numba windowed matcher vs shapely ``line_locate_point``.

1 Hz noisy pings (sigma 5 m) over 50 km routes. Prints pings/s on one core for
(a) the matching kernel alone (window + progress-aware score, as the engine runs it),
(b) the full detector kernel (matching + every detector), also with every fix 5 km off
the route (a trip not started yet, the next trip's shadow), and (c) shapely 2's vectorised
``line_locate_point`` + ``distance`` on the same data (global nearest point, no window,
no detectors) as the baseline.

    .venv/bin/python -m benchmarks.matching [--routes 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import shapely
from numba import njit

from benchmarks._routes import ORIGIN, T0_MS, drive_1hz, plan_dict, random_route
from compliance import kernels
from compliance.config import Thresholds
from compliance.layout import MAX_EVENTS_PER_PING, N_EVF
from compliance.plan import TripPlan
from compliance.trip import Pending, Trip, new_state


@njit(cache=True)
def match_stream(x, y, cum, px, py, t_s, out_m, out_d):
    """The engine's window logic alone: anchor, reach ahead by max speed x dt."""
    anchor = 0.0
    anchor_t = t_s[0]
    vmax = 160.0 / 3.6
    for i in range(px.shape[0]):
        dt = t_s[i] - anchor_t
        lo = anchor - 30.0
        hi = anchor + vmax * dt + 50.0
        m, d, _c = kernels.match_window(
            x, y, cum, px[i], py[i], lo, hi, anchor + 14.0 * dt, 8.0, 30.0 + 7.0 * dt
        )
        out_m[i] = m
        out_d[i] = d
        if d < 50.0:
            anchor = m
            anchor_t = t_s[i]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    th = Thresholds()
    data = []
    for k in range(args.routes):
        xy = random_route(rng, 50_000.0)
        trip = Trip(TripPlan.model_validate(plan_dict(f"T{k}", f"V{k}", xy)), th)
        t_s, px, py = drive_1hz(rng, xy, 14.0, 5.0)
        # pings in the trip's own projection (what the engine feeds the kernel)
        lon, lat = ORIGIN.to_lonlat(px, py)
        qx, qy = trip.project(lat, lon)
        data.append((trip, t_s, qx, qy, lat, lon))
    n_total = sum(len(d[1]) for d in data)
    print(f"{args.routes} routes x 50 km, {n_total} pings at 1 Hz (sigma 5 m)")

    # warm up the JIT
    for trip, t_s, qx, qy, *_ in data[:1]:
        r = trip.route
        match_stream(r.x_m, r.y_m, r.cum_m, qx[:10], qy[:10], t_s[:10], np.empty(10), np.empty(10))

    best = np.inf
    errs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for trip, t_s, qx, qy, *_ in data:
            r = trip.route
            om = np.empty(len(qx))
            od = np.empty(len(qx))
            match_stream(r.x_m, r.y_m, r.cum_m, qx, qy, t_s, om, od)
        best = min(best, time.perf_counter() - t0)
        errs.append(float(np.median(od)))
    kernel_rate = n_total / best
    print(
        f"numba matching kernel : {kernel_rate:14,.0f} pings/s/core  (median offset {errs[-1]:.1f} m)"
    )

    full_rate = n_total / _full_kernel_best(data, args.repeat, 0.0)
    print(f"numba full detectors  : {full_rate:14,.0f} pings/s/core")
    # every fix 5 km off the route: how the kernel sees a vehicle before its trip starts,
    # and the next trip's shadow while the vehicle still drives another route
    far_rate = n_total / _full_kernel_best(data, args.repeat, 5000.0)
    print(f"  ... fixes 5 km off  : {far_rate:14,.0f} pings/s/core")

    best_sh = np.inf
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for trip, _t, qx, qy, *_ in data:
            line = shapely.LineString(np.column_stack([trip.route.x_m, trip.route.y_m]))
            pts = shapely.points(qx, qy)
            shapely.prepare(line)
            shapely.line_locate_point(line, pts)
            shapely.distance(line, pts)
        best_sh = min(best_sh, time.perf_counter() - t0)
    sh_rate = n_total / best_sh
    print(f"shapely locate+dist   : {sh_rate:14,.0f} pings/s/core")
    print(
        f"speed-up matching kernel vs shapely: {kernel_rate / sh_rate:,.0f}x; "
        f"full detectors vs shapely: {full_rate / sh_rate:,.0f}x"
    )
    print("goals: >= 10,000,000 pings/s/core and >= 100x shapely")


def _full_kernel_best(data: list[Any], repeat: int, shift_m: float) -> float:
    """Best of ``repeat`` of the summed time of the full detector kernel over every
    route's pings (moved ``shift_m`` east), each from a fresh state."""
    best = np.inf
    for _ in range(repeat):
        elapsed = 0.0
        for trip, t_s, qx, qy, lat, lon in data:
            n = len(qx)
            p = Pending(
                (T0_MS + t_s * 1000).astype(np.int64),
                lat,
                lon,
                qx + shift_m,
                qy,
                np.full(n, np.nan),
                np.full(n, 5.0),
                np.full(n, np.nan),
                seq=np.arange(n, dtype=np.int64),
                row=np.full(n, -1, np.int64),
            )
            st = new_state()
            ustat = np.zeros((0, 4))
            cap = MAX_EVENTS_PER_PING * n + 4
            bufs = (
                np.empty(n),
                np.empty(n),
                np.empty(n, np.int8),
                np.empty((cap, 3), np.int64),
                np.empty(cap, np.int64),
                np.empty((cap, N_EVF)),
            )
            r = trip.route
            t0 = time.perf_counter()
            kernels.process_pings(
                r.x_m,
                r.y_m,
                r.cum_m,
                r.chunk_box_m,
                trip.par,
                trip.th_arr,
                trip.stops,
                ustat,
                *trip.lim,
                st,
                p.ts_ms,
                p.x_m,
                p.y_m,
                p.lat,
                p.lon,
                p.speed_kmh,
                p.accuracy_m,
                p.heading_deg,
                *bufs,
            )
            elapsed += time.perf_counter() - t0
        best = min(best, elapsed)
    return best


if __name__ == "__main__":
    main()
