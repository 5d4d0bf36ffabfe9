"""The engine as the live pipeline drives it: many trips, a few fixes of each per batch.

``routewatch replay`` hands the engine millions of pings in big batches, so the per-trip
work of a call (grouping, projection, pending bookkeeping, the kernel call, the snapshot
decision) is spread thin. Live, a flush every ~50 ms holds one or two fixes of each
moving vehicle, and that per-trip work is the cost. This prints it per trip and batch,
and, as the baseline in the same run, the bare Numba kernel call on the same fixes
(``Trip.run`` on one trip's slice, no engine around it).

    .venv/bin/python -m benchmarks.live_batches [--trips 2000] [--per-batch 1] [--batches 300]

Fixes carry device sequence numbers (as the simulator's and most trackers' do), so they
are committed as they arrive instead of waiting for the reorder allowance.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._routes import F64, ORIGIN, T0_MS, drive_1hz, plan_dict, random_route
from compliance.engine import Engine
from compliance.pending import Pending
from compliance.plan import TripPlan
from compliance.types import PingBatch

Drive = tuple[F64, F64, F64]  # lat, lon, device speed km/h per fix


def fleet(trips: int, seconds: int) -> tuple[list[TripPlan], list[Drive]]:
    """Plans and noisy 1 Hz drives (lat, lon, speed) of ``seconds`` fixes each."""
    rng = np.random.default_rng(7)
    plans: list[TripPlan] = []
    drives: list[Drive] = []
    for k in range(trips):
        xy = random_route(rng, seconds * 12.0 + 2000.0)
        plans.append(TripPlan.model_validate(plan_dict(f"T{k}", f"V{k}", xy)))
        _t, x, y = drive_1hz(rng, xy, 12.0, 5.0)
        lon, lat = ORIGIN.to_lonlat(x[:seconds], y[:seconds])
        drives.append((lat, lon, 43.2 + rng.normal(0, 1.5, seconds)))
    return plans, drives


def batches(drives: list[Drive], per: int, count: int) -> list[tuple[PingBatch, int]]:
    """``count`` batches, each with the next ``per`` fixes of every trip; (batch, watermark)."""
    out = []
    n = len(drives)
    vids = [f"V{k}" for k in range(n) for _ in range(per)]
    for b in range(count):
        i = np.arange(b * per, (b + 1) * per)
        lat = np.concatenate([d[0][i] for d in drives])
        lon = np.concatenate([d[1][i] for d in drives])
        spd = np.concatenate([d[2][i] for d in drives])
        ts = np.tile(T0_MS + i * 1000, n).astype(np.int64)
        m = len(ts)
        out.append(
            (
                PingBatch(
                    vids,
                    ts,
                    lat,
                    lon,
                    spd,
                    np.full(m, np.nan),
                    np.full(m, 5.0),
                    np.tile(i, n).astype(np.int64),
                ),
                int(ts.max()),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trips", type=int, default=2000)
    ap.add_argument("--per-batch", type=int, default=1, help="fixes of each trip per batch")
    ap.add_argument("--batches", type=int, default=300, help="timed batches")
    args = ap.parse_args()
    # a trip's first fix waits out the 30 s reorder allowance (no seq to follow yet):
    # warm up past it, so the timed batches are the steady state
    warm = -(-40 // args.per_batch)
    plans, drives = fleet(args.trips, (warm + args.batches) * args.per_batch)
    work = batches(drives, args.per_batch, warm + args.batches)

    engine = Engine()
    for plan in plans:
        engine.add_trip(plan)
    for b, wm in work[:warm]:
        engine.process(b, wm)
    t0 = time.perf_counter()
    snapshots = 0
    for b, wm in work[warm:]:
        snapshots += len(engine.process(b, wm).snapshots)
    engine_s = time.perf_counter() - t0

    # baseline: the kernel alone on the same fixes, one call per trip and batch
    trips = [engine._trips[t] for t in sorted(engine._trips)]
    kernel_s = 0.0
    for b, _wm in work[warm:]:
        prepared = []
        for k, trip in enumerate(trips):
            rows = np.arange(k * args.per_batch, (k + 1) * args.per_batch)
            x, y = trip.project(b.lat[rows], b.lon[rows])
            fixes = Pending(
                b.ts_ms[rows], b.lat[rows], b.lon[rows], x, y, b.speed_kmh[rows],
                b.accuracy_m[rows], b.heading_deg[rows], b.seq[rows], rows.astype(np.int64),
            )  # fmt: skip
            prepared.append((trip, trip.committed.copy(), trip.committed_stops.copy(), fixes))
        t0 = time.perf_counter()
        for trip, st, ustat, fixes in prepared:
            trip.run(st, ustat, fixes)
        kernel_s += time.perf_counter() - t0

    calls = args.trips * args.batches
    pings = calls * args.per_batch
    print(
        f"{args.trips} trips, {args.per_batch} fix(es) of each per batch, "
        f"{args.batches} batches timed"
    )
    print(
        f"engine.process:  {engine_s / calls * 1e6:7.1f} us per trip and batch "
        f"= {pings / engine_s:>10,.0f} pings/s ({snapshots / args.batches:.0f} snapshots a batch)"
    )
    print(
        f"bare kernel call:{kernel_s / calls * 1e6:7.1f} us per trip and batch "
        f"= {pings / kernel_s:>10,.0f} pings/s (baseline)"
    )
    print(f"engine / kernel: {engine_s / kernel_s:.1f}x")


if __name__ == "__main__":
    main()
