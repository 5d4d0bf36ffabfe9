"""Per-vehicle compliance state memory with 100,000 tracked vehicles.

Part 1, the real thing: a real :class:`compliance.engine.Engine` with N trips (3 km
routes, ``--stops`` stops each), then every vehicle sends ``--pending`` 1 Hz pings that
stay inside the reorder allowance; the process's RSS growth per vehicle after ``add_trip``
(plan, prepared route, projection, state) and from those pings (pending buffer,
speculative state). RSS, not tracemalloc, because PROJ's C allocations are invisible to
tracemalloc and were once the largest per-trip item.

Part 2, the accounting: builds the per-trip state the engine keeps (committed detector vector, per-stop status
rows, speculative copy and the pending-ping buffer of a 1 Hz vehicle inside the reorder
allowance) for N vehicles and measures it with tracemalloc (NumPy buffers and their
Python object headers). Route geometry is the plan, not state, and is excluded; it is
reported separately for one 50 km route.

    .venv/bin/python -m benchmarks.state_memory [--vehicles 100000] [--stops 10]
        [--real-vehicles 100000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

import numpy as np

from benchmarks._routes import T0_MS, plan_dict, random_route
from compliance.config import Thresholds
from compliance.engine import Engine
from compliance.layout import N_STATE, N_STOPS
from compliance.plan import TripPlan
from compliance.trip import Pending, Trip, new_state
from compliance.types import PingBatch


def _plans(n: int, stops: int) -> list[TripPlan]:
    """N 3 km trips with ``stops`` stops on route vertices."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        d = plan_dict(f"T{i}", f"V{i}", random_route(rng, 3000.0))
        coords = d["route"]["coordinates"]
        idx = np.linspace(1, len(coords) - 1, stops).astype(int)
        d["stops"] = [{"stop_id": f"S{j}", "location": coords[k]} for j, k in enumerate(idx)]
        out.append(TripPlan.model_validate(d))
    return out


def _pings(plans: list[TripPlan], k: int) -> PingBatch:
    """``k`` 1 Hz pings per vehicle, at its route start (all inside the allowance)."""
    m = len(plans)
    ts = np.tile(T0_MS + np.arange(k, dtype=np.int64) * 1000, m)
    lon = np.repeat([p.coordinates[0][0] for p in plans], k)
    lat = np.repeat([p.coordinates[0][1] for p in plans], k)
    return PingBatch(
        [p.vehicle_id for p in plans for _ in range(k)],
        ts,
        lat,
        lon,
        np.full(m * k, 10.0),
        np.full(m * k, np.nan),
        np.full(m * k, 5.0),
        np.arange(m * k, dtype=np.int64),
    )


def _rss_b() -> int:
    """Resident set size of this process, bytes (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def measure_engine(n: int, stops: int, k: int) -> None:
    """Print the RSS growth per vehicle of a real engine with ``n`` trips."""
    t0 = time.perf_counter()
    plans = _plans(n, stops)
    warm = Engine()  # imports, Numba cache loads and PROJ set-up outside the measurement
    warm.add_trip(plans[0])
    warm.process(_pings(plans[:1], k), T0_MS + k * 1000)
    del warm
    batch = _pings(plans, k)
    watermark_ms = int(batch.ts_ms.max())  # the allowance keeps every ping pending
    gc.collect()
    r0 = _rss_b()
    engine = Engine()
    for p in plans:
        engine.add_trip(p)
    gc.collect()
    r1 = _rss_b()
    res = engine.process(batch, watermark_ms)
    del res
    gc.collect()
    r2 = _rss_b()
    trips = list(engine._trips.values())
    n_pending = sum(len(t.pending) for t in trips) / n
    n_spec = sum(t.spec is not None for t in trips) / n
    raw = sum(t.state_nbytes() for t in trips) / n
    took_s = time.perf_counter() - t0
    print(f"real engine, {n:,} trips (3 km route, {stops} stops), {took_s:.0f} s, RSS growth:")
    print(f"  after add_trip (plan, route, projection, state): {(r1 - r0) / n:8,.0f} B/vehicle")
    print(
        f"  + {n_pending:.0f} pending pings, speculative state ({n_spec:.0%}): "
        f"{(r2 - r1) / n:8,.0f} B/vehicle"
    )
    print(f"  detector state alone (Trip.state_nbytes, raw):   {raw:8,.0f} B/vehicle")
    del engine, trips


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=100_000)
    ap.add_argument("--stops", type=int, default=10)
    ap.add_argument("--pending", type=int, default=30, help="pings in the reorder buffer")
    ap.add_argument("--real-vehicles", type=int, default=100_000, help="0 skips part 1")
    args = ap.parse_args()
    if args.real_vehicles:
        measure_engine(args.real_vehicles, args.stops, args.pending)
    n = args.vehicles

    def pending(k: int) -> Pending:
        z = np.zeros(k)
        return Pending(
            np.zeros(k, np.int64),
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            np.zeros(k, np.int64),
        )

    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    steady = [(new_state(), np.zeros((args.stops, N_STOPS))) for _ in range(n)]
    mid = tracemalloc.take_snapshot()
    busy = [(new_state(), np.zeros((args.stops, N_STOPS)), pending(args.pending)) for _ in range(n)]
    end = tracemalloc.take_snapshot()
    tracemalloc.stop()
    steady_b = sum(s.size_diff for s in mid.compare_to(base, "filename")) / n
    busy_b = sum(s.size_diff for s in end.compare_to(mid, "filename")) / n
    core = N_STATE * 8 + args.stops * N_STOPS * 8
    print(f"{n:,} vehicles, {args.stops} stops each")
    print(
        f"detector state arrays (raw)       : {core:6,d} B/vehicle "
        f"({N_STATE} float64 + {args.stops}x{N_STOPS} stop status)"
    )
    print(f"committed state, measured         : {steady_b:8,.0f} B/vehicle (tracemalloc)")
    print(f"committed + speculative copy      : {steady_b * 2:8,.0f} B/vehicle")
    print(
        f"+ {args.pending} in-flight pings (reorder buffer): {busy_b + steady_b:8,.0f} B/vehicle "
        "(a 1 Hz vehicle inside the 30 s allowance)"
    )
    rng = np.random.default_rng(0)
    trip = Trip(
        TripPlan.model_validate(plan_dict("T", "V", random_route(rng, 50_000.0))), Thresholds()
    )
    geo = trip.route.x_m.nbytes + trip.route.y_m.nbytes + trip.route.cum_m.nbytes
    print(f"(plan geometry, shared per trip, not state: {geo:,} B for a 50 km route)")
    print("goal: <= 2,048 B/vehicle of state")
    del steady, busy


if __name__ == "__main__":
    main()
