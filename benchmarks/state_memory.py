"""Per-vehicle compliance state memory with 100,000 tracked vehicles, itemised.

A real :class:`compliance.engine.Engine` with N trips (3 km routes, ``--stops`` stops
each); every vehicle then sends ``--pending`` 1 Hz pings that all stay inside the 30 s
reorder allowance (the most a 1 Hz vehicle ever holds pending). Printed per vehicle:

- committed detector state + stop status (the arrays and their Python headers);
- the pending pings as they rest between batches, and whether any speculative state is
  held between batches;
- Python overhead: the Trip object and the engine's per-trip dict / list / heap entries;
- the prepared plan (route arrays, stop and parameter arrays, projection, the validated
  plan object) — per trip here, as every vehicle has its own route;
- the measured growth of the process's resident set (RSS, Linux /proc) per vehicle,
  after ``add_trip`` and after the pings — the figure nothing above can hide from (PROJ's
  C allocations, allocator slack and fragmentation included).

    .venv/bin/python -m benchmarks.state_memory [--vehicles 100000] [--stops 10]
        [--pending 30] [--chunk 1000]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import resource
import sys
import time

import numpy as np

from benchmarks._routes import T0_MS, plan_dict, random_route
from compliance.engine import Engine
from compliance.plan import TripPlan
from compliance.trip import Trip
from compliance.types import PingBatch

GOAL_B = 2048


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
    """``k`` 1 Hz pings per vehicle near its route start, 7-decimal degrees and 0.1 km/h
    speeds as trackers send them (all inside the allowance)."""
    m = len(plans)
    ts = np.tile(T0_MS + np.arange(k, dtype=np.int64) * 1000, m)
    step = np.tile(np.arange(k) * 1e-5, m)
    lon = np.round(np.repeat([p.coordinates[0][0] for p in plans], k) + step, 7)
    lat = np.round(np.repeat([p.coordinates[0][1] for p in plans], k), 7)
    return PingBatch(
        [p.vehicle_id for p in plans for _ in range(k)],
        ts,
        lat,
        lon,
        np.full(m * k, 10.8),
        np.full(m * k, np.nan),
        np.full(m * k, 5.0),
        np.arange(m * k, dtype=np.int64),
    )


def _rss_b(trim: bool = False) -> int:
    """Resident set size of this process, bytes (Linux /proc); ``trim``: first hand the
    C heap's free pages back (glibc ``malloc_trim``), so that what a large batch freed
    but the allocator kept does not count as state."""
    gc.collect()
    if trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _route_b(t: Trip) -> int:
    """Prepared route and plan-derived arrays of one trip (data + headers)."""
    r = t.route
    arrays = [r.x_m, r.y_m, r.cum_m, r.stop_x_m, r.stop_y_m, r.stop_route_m, r.stop_offset_m]
    arrays += [r.limit_from_m, r.limit_to_m, r.limit_kmh, t.stops, t.par]
    extra = sys.getsizeof(r) + sys.getsizeof(r.projection)
    return sum(sys.getsizeof(a) for a in arrays) + extra


def _python_overhead_b(engine: Engine, n: int) -> float:
    """Per trip: the Trip object and the engine's bookkeeping of it (dict slots, the
    vehicle's trip list, heap entries)."""
    trips = list(engine._trips.values())
    total = sum(sys.getsizeof(t) for t in trips)
    total += sys.getsizeof(engine._trips) + sys.getsizeof(engine._by_vehicle)
    total += sum(sys.getsizeof(v) for v in engine._by_vehicle.values())
    for heap in (engine._commit_heap, engine._signal_heap):
        total += sys.getsizeof(heap) + sum(sys.getsizeof(e) + sys.getsizeof(e[0]) for e in heap)
    return total / n


def measure(n: int, stops: int, k: int, chunk: int) -> None:
    t0 = time.perf_counter()
    plans = _plans(n, stops)
    warm = Engine()  # imports, Numba cache loads and PROJ set-up outside the measurement
    warm.add_trip(plans[0])
    warm.process(_pings(plans[:1], k), T0_MS + k * 1000)
    del warm
    # batches of ``chunk`` vehicles, as a live engine gets them: one 3M-ping batch would
    # leave its transient peak (results, snapshots) in the allocator and in the RSS
    batches = [_pings(plans[i : i + chunk], k) for i in range(0, n, chunk)]
    watermark_ms = T0_MS + (k - 1) * 1000  # the allowance keeps every ping pending
    r0, r0t = _rss_b(), _rss_b(trim=True)
    engine = Engine()
    for p in plans:
        engine.add_trip(p)
    r1, r1t = _rss_b(), _rss_b(trim=True)
    for batch in batches:
        engine.process(batch, watermark_ms)
    r2, r2t = _rss_b(), _rss_b(trim=True)
    trips = list(engine._trips.values())
    n_pending = sum(len(t.pending) for t in trips) / n  # (unpacks; after the RSS reading)
    for t in trips:
        t.settle()
    committed_b = sum(sys.getsizeof(t._block) for t in trips) / n
    pending_b = sum(sys.getsizeof(t._packed) for t in trips if t._packed is not None) / n
    spec_n = sum(t.spec is not None for t in trips)
    overhead_b = _python_overhead_b(engine, n)
    route_b = sum(_route_b(t) for t in trips) / n
    state_b = committed_b + pending_b + overhead_b
    took_s = time.perf_counter() - t0
    print(
        f"{n:,} vehicles, 3 km routes, {stops} stops each, {k} pending 1 Hz pings ({took_s:.0f} s)"
    )
    print("per vehicle, between batches (data + Python object headers):")
    print(f"  committed state, stop status, bookkeeping  {committed_b:8,.0f} B")
    print(f"  {n_pending:.0f} pending pings, one packed block        {pending_b:8,.0f} B")
    print(f"  speculative state held between batches     {spec_n:8,d} (trips)")
    print(f"  Python overhead (Trip object, engine maps)  {overhead_b:8,.0f} B")
    print(
        f"  = compliance state                          {state_b:8,.0f} B  (goal <= {GOAL_B:,} B)"
    )
    print(f"  prepared route arrays + projection, per trip{route_b:8,.0f} B (not shared here)")
    print("measured RSS growth per vehicle:                 as is  after malloc_trim")
    print(
        f"  add_trip (plan object, route, state)   {(r1 - r0) / n:8,.0f} B {(r1t - r0t) / n:8,.0f} B"
    )
    print(
        f"  + {k} pending pings                    {(r2 - r1) / n:8,.0f} B {(r2t - r1t) / n:8,.0f} B"
    )
    print(
        f"  total                                  {(r2 - r0) / n:8,.0f} B {(r2t - r0t) / n:8,.0f} B"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=100_000)
    ap.add_argument("--stops", type=int, default=10)
    ap.add_argument("--pending", type=int, default=30, help="pings in the reorder buffer")
    ap.add_argument("--chunk", type=int, default=1000, help="vehicles per batch")
    args = ap.parse_args()
    measure(args.vehicles, args.stops, args.pending, args.chunk)


if __name__ == "__main__":
    main()
