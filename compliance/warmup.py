"""Compile (or load from Numba's on-disk cache) every kernel before live traffic arrives.

Without this the first batch a fresh worker processes pays the whole JIT compilation —
tens of seconds on a cold cache — while its MQTT messages wait un-acknowledged. A short
synthetic trip through a throwaway engine exercises matching, every detector, ETA and
finalisation; afterwards the cached machine code serves the real engine.
"""

from __future__ import annotations

import time

import numpy as np

from compliance.engine import Engine
from compliance.plan import TripPlan
from compliance.types import PingBatch

_START_MS = 1_763_798_400_000  # any fixed time: the warm-up engine is thrown away
_STEP_S = 5


def warm_up() -> float:
    """Run a 2 km synthetic drive (with a stop and a fast stretch) through a throwaway
    engine; return the seconds it took."""
    t0 = time.perf_counter()
    lon0, lat0 = 106.80, -6.20
    plan = TripPlan.model_validate(
        {
            "trip_id": "warm-up",
            "vehicle_id": "warm-up",
            "planned_start": _START_MS,
            "route": {"type": "LineString", "coordinates": [[lon0, lat0], [lon0 + 0.018, lat0]]},
            "speed_limit_kmh": 40,
            "stops": [{"stop_id": "S1", "location": [lon0 + 0.009, lat0], "service_s": 30}],
        }
    )
    n = 120
    lon = lon0 + np.linspace(0.0, 0.018, n)
    lon[40:60] = lon0 + 0.009  # dwell at the stop
    ts_ms = _START_MS + np.arange(n, dtype=np.int64) * _STEP_S * 1000
    speed = np.where((np.arange(n) >= 80) & (np.arange(n) < 100), 70.0, 30.0)
    batch = PingBatch(
        vehicle_id=["warm-up"] * n,
        ts_ms=ts_ms,
        lat=np.full(n, lat0),
        lon=lon,
        speed_kmh=speed,
        heading_deg=np.full(n, 90.0),
        accuracy_m=np.full(n, 5.0),
        seq=np.arange(n, dtype=np.int64),
    )
    engine = Engine()
    engine.add_trip(plan)
    last_ms = int(ts_ms[-1])
    engine.process(batch, last_ms)
    engine.tick(last_ms + 600_000)  # past the reorder horizon: finalise, signal lost
    engine.snapshot("warm-up", last_ms)
    return time.perf_counter() - t0
