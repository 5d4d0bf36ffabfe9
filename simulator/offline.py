"""``routewatch simulate --out DIR``: run a scenario to completion and write its files.

- ``plans.json``: array of CONTRACT §3 plans
- ``pings.csv``: ``vehicle_id,ts,lat,lon,speed,heading,accuracy`` in delivery order
  (duplicates, small reorderings and buffered bursts included; malformed payloads,
  which a CSV cannot carry, are counted and left out)
- ``expected.jsonl``: the §4 events that must happen, each with ``tolerance_s``
- ``allowed.jsonl``: borderline events an engine may or may not report
- ``truth.json``: per trip, the driver (and their habit), the fault and the true arrival
  at every stop
- ``truth.csv``: true positions every ``TRUTH_EVERY_S`` seconds
  (``vehicle_id,ts,lat,lon,speed_kmh,driven_m``)

Same config (seed included) => byte-identical files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from simulator.motion import HALT_STOP
from simulator.plans import rfc3339
from simulator.scenario import MAX_SIM_S, ScenarioConfig, Simulation, build
from simulator.truth import Recording, derive

TRUTH_EVERY_S = 10


def run(config: ScenarioConfig) -> tuple[Simulation, Recording, list[str]]:
    """Simulate to the end (or ``duration_s``); returns the CSV rows in delivery order."""
    sim = build(config)
    f = sim.fleet
    n = len(sim.plans)
    t0 = sim.t_s
    limit = t0 + int(config.duration_s if config.duration_s is not None else MAX_SIM_S)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("s", "v", "x", "y", "lim", "act")}
    fix_ts: list[list[int]] = [[] for _ in range(n)]
    rows: list[str] = []
    ids = sim.vehicle_ids
    while sim.t_s < limit and not sim.done():
        assert f.s_m is not None and f.v_ms is not None
        x, y, lim, hdg = f.pool.locate(f.path, f.s_m)
        if sim.sideways is not None:  # a vehicle pulled off the road is where it is
            every = np.arange(len(f.path))
            x, y, _ = sim.sideways.apply(f, sim.t_s, every, x, y, hdg, f.v_ms, fixes=False)
        cols["s"].append(f.s_m.copy())
        cols["v"].append(f.v_ms.astype(np.float32))
        cols["x"].append(x.astype(np.float32))
        cols["y"].append(y.astype(np.float32))
        cols["lim"].append(lim.astype(np.float32))
        cols["act"].append(f.active(sim.t_s))
        _collect(sim.tick(), ids, rows, fix_ts)
    _collect(sim.devices.flush(), ids, rows, fix_ts)
    rec = Recording(
        t0,
        np.array(cols["s"]),
        np.array(cols["v"]),
        np.array(cols["x"]),
        np.array(cols["y"]),
        np.array(cols["lim"]),
        np.array(cols["act"]),
        fix_ts,
    )
    return sim, rec, rows


def _collect(msgs: list[Any], ids: list[str], rows: list[str], fix_ts: list[list[int]]) -> None:
    for m in msgs:
        if m.malformed is not None:
            continue
        for ts, lat, lon, sp, hd, ac, _seq in m.fixes:
            rows.append(f"{ids[m.vehicle]},{ts},{lat:.7f},{lon:.7f},{sp:.1f},{hd:.1f},{ac:.1f}\n")
            fix_ts[m.vehicle].append(ts)


def write(config: ScenarioConfig, out_dir: Path) -> dict[str, int]:
    """Run the scenario and write every file; returns counts for the summary line."""
    sim, rec, rows = run(config)
    expected, allowed = derive(sim, rec)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plans.json").write_text(json.dumps(sim.plans, indent=1) + "\n")
    with (out_dir / "pings.csv").open("w") as fh:
        fh.write("vehicle_id,ts,lat,lon,speed,heading,accuracy\n")
        fh.writelines(rows)
    for name, events in (("expected.jsonl", expected), ("allowed.jsonl", allowed)):
        with (out_dir / name).open("w") as fh:
            fh.writelines(json.dumps(e, sort_keys=True) + "\n" for e in events)
    (out_dir / "truth.json").write_text(
        json.dumps(_trip_truth(sim), indent=1, sort_keys=True) + "\n"
    )
    _write_track(sim, rec, out_dir / "truth.csv")
    counts = dict(sim.devices.counts)
    counts.update(
        pings=len(rows), expected=len(expected), allowed=len(allowed), trips=len(sim.plans)
    )
    return counts


def _trip_truth(sim: Simulation) -> dict[str, Any]:
    f = sim.fleet
    assert f.arrive_s is not None
    out: dict[str, Any] = {}
    for i, plan in enumerate(sim.plans):
        truth = sim.truths[i]
        stops: dict[str, Any] = {}
        for j, (kind, m, _d, ref) in enumerate(truth.halts):
            if kind == HALT_STOP and not math.isnan(f.arrive_s[i, j]):
                stops[plan["stops"][ref]["stop_id"]] = {
                    "arrived": rfc3339(f.arrive_s[i, j]),
                    "arrived_ms": int(f.arrive_s[i, j] * 1000),
                    "driven_m": round(m, 1),
                }
        out[plan["trip_id"]] = {
            "vehicle_id": plan["vehicle_id"],
            "driver_id": plan["driver_id"],
            "driver_habit": sim.drivers[i].habit,
            "fault": truth.fault,
            "stops": stops,
        }
    return out


def _write_track(sim: Simulation, rec: Recording, path: Path) -> None:
    ids = sim.vehicle_ids
    with path.open("w") as fh:
        fh.write("vehicle_id,ts,lat,lon,speed_kmh,driven_m\n")
        for k in range(0, len(rec.s_m), TRUTH_EVERY_S):
            act = np.flatnonzero(rec.active[k])
            lon, lat = sim.net.frame.to_lonlat(
                rec.x_m[k, act].astype(np.float64), rec.y_m[k, act].astype(np.float64)
            )
            ts = (rec.t0_s + k) * 1000
            fh.writelines(
                f"{ids[i]},{ts},{la:.7f},{lo:.7f},{rec.v_ms[k, i] * 3.6:.1f},{rec.s_m[k, i]:.1f}\n"
                for i, la, lo in zip(act.tolist(), lat.tolist(), lon.tolist(), strict=True)
            )
