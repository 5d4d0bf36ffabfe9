"""Per-vehicle compliance state memory with 100,000 tracked vehicles.

Builds the per-trip state the engine keeps (committed detector vector, per-stop status
rows, speculative copy and the pending-ping buffer of a 1 Hz vehicle inside the reorder
allowance) for N vehicles and measures it with tracemalloc (NumPy buffers and their
Python object headers). Route geometry is the plan, not state, and is excluded; it is
reported separately for one 50 km route.

    .venv/bin/python -m benchmarks.state_memory [--vehicles 100000] [--stops 10]
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np

from benchmarks._routes import plan_dict, random_route
from compliance.config import Thresholds
from compliance.layout import N_STATE, N_STOPS
from compliance.plan import TripPlan
from compliance.trip import Pending, Trip, new_state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=100_000)
    ap.add_argument("--stops", type=int, default=10)
    ap.add_argument("--pending", type=int, default=30, help="pings in the reorder buffer")
    args = ap.parse_args()
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
