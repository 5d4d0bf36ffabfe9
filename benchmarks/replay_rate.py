"""``routewatch replay`` end to end on generated files of >= 1M pings, two shapes.

- ``long``: N vehicles, each on its own ~40 km route, 1 Hz, sigma 5 m, with device
  speed (``--vehicles``, ``--pings``);
- ``short``: many short trips, as recorded fleets give them: ``--trips`` trips of
  ``--fixes`` fixes every 5 s (~3.4 km routes with a vertex every 60 m and one stop),
  ten trips per vehicle one after the other (the shape of 26,300 real trips of ~56
  fixes, 1.46M pings, in issue #16).

Each writes plans.json and pings.csv to a temporary folder, then times the real command
line (process start, plan preparation, CSV load, engine, JSON output) with its default
worker processes (one per 100,000 pings, at most one per CPU) and with ``--workers 1``
(the outputs compared), and, as the baseline in the same run, the stdlib ``csv``
module merely reading the same file.

    .venv/bin/python -m benchmarks.replay_rate [--shape long|short|both] [--runs 5]
        [--vehicles 300] [--pings 1000000] [--trips 26000] [--fixes 56]

The command is timed ``--runs`` times (after one run that warms Numba's cache); best and
median are printed, as other work on the machine makes single figures noisy.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._routes import ORIGIN, T0_MS, drive_1hz, plan_dict, random_route


def write_files(folder: Path, vehicles: int, pings: int) -> int:
    rng = np.random.default_rng(5)
    per = pings // vehicles + 1
    plans = []
    lines = ["vehicle_id,ts,lat,lon,speed,heading,accuracy"]
    total = 0
    for v in range(vehicles):
        xy = random_route(rng, per * 12.0 + 500.0)
        plans.append(plan_dict(f"T{v}", f"V{v}", xy))
        t_s, x, y = drive_1hz(rng, xy, 12.0, 5.0)
        t_s, x, y = t_s[:per], x[:per], y[:per]
        lon, lat = ORIGIN.to_lonlat(x, y)
        ts = T0_MS + (t_s * 1000).astype(np.int64)
        lines.extend(_csv_rows(f"V{v}", ts, lat, lon, 43.2 + rng.normal(0, 2, len(ts))))
        total += len(ts)
    return _write(folder, plans, lines, total)


def _csv_rows(vid: str, ts: Any, lat: Any, lon: Any, spd: Any) -> list[str]:
    return [
        f"{vid},{t},{a:.7f},{o:.7f},{s:.1f},,5"
        for t, a, o, s in zip(ts.tolist(), lat.tolist(), lon.tolist(), spd.tolist(), strict=True)
    ]


def _write(folder: Path, plans: list[dict[str, Any]], lines: list[str], total: int) -> int:
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "pings.csv").write_text("\n".join(lines) + "\n")
    return total


def write_short_trips(folder: Path, trips: int, fixes: int, per_vehicle: int = 10) -> int:
    """Many short trips: ``fixes`` fixes every 5 s each, ``per_vehicle`` trips per vehicle
    back to back (planned where they are driven), routes scattered over ~40 km.

    Each trip's fixes end ~160 m short of its final stop and the vehicle reappears 10
    minutes later on its next trip, up to 20 km away: every trip but a vehicle's last
    gets signal_lost, signal_restored and (nearly always) off_route, and is ended by
    the next one (``ended_by`` next_trip_started), the replay's costliest way for a
    trip to end. As many trips driven to their final stop, served, and the next
    starting there replayed within the machine's noise of this (issue #16's notes)."""
    rng = np.random.default_rng(7)
    step_s, speed = 5.0, 12.0
    plans = []
    lines = ["vehicle_id,ts,lat,lon,speed,heading,accuracy"]
    total = 0
    for k in range(trips):
        vid = f"V{k // per_vehicle}"
        xy = random_route(rng, fixes * step_s * speed + 100.0, step_m=60.0)
        xy += rng.uniform(-20_000.0, 20_000.0, 2)
        start_ms = T0_MS + (k % per_vehicle) * int((fixes * step_s + 600) * 1000)
        p = plan_dict(f"T{k}", vid, xy)
        p["planned_start"] = start_ms
        # 7 decimals (1 cm), as plans are written
        p["route"]["coordinates"] = np.round(p["route"]["coordinates"], 7).tolist()
        end_lon, end_lat = p["route"]["coordinates"][-1]
        p["stops"] = [{"stop_id": "S1", "location": [end_lon, end_lat], "service_s": 60}]
        plans.append(p)
        t_s, x, y = drive_1hz(rng, xy, speed, 5.0)
        pick = np.arange(0, len(t_s), int(step_s))[:fixes]
        lon, lat = ORIGIN.to_lonlat(x[pick], y[pick])
        ts = start_ms + (t_s[pick] * 1000).astype(np.int64)
        lines.extend(_csv_rows(vid, ts, lat, lon, 43.2 + rng.normal(0, 2, len(ts))))
        total += len(ts)
    return _write(folder, plans, lines, total)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["long", "short", "both"], default="both")
    ap.add_argument("--vehicles", type=int, default=300)
    ap.add_argument("--pings", type=int, default=1_000_000)
    ap.add_argument("--trips", type=int, default=26_000)
    ap.add_argument("--fixes", type=int, default=56)
    ap.add_argument("--per-vehicle", type=int, default=10, help="short: trips per vehicle")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for shape in ("long", "short") if args.shape == "both" else (args.shape,):
        run_shape(shape, args)


def run_shape(shape: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if shape == "long":
            n = write_files(folder, args.vehicles, args.pings)
            what = f"{args.vehicles} vehicles on ~40 km routes"
        else:
            n = write_short_trips(folder, args.trips, args.fixes, args.per_vehicle)
            what = f"{args.trips:,} trips of {args.fixes} fixes, {args.per_vehicle} per vehicle"
        size_mb = (folder / "pings.csv").stat().st_size / 1e6
        print(f"== {shape}: {n:,} pings, {what}, {size_mb:.0f} MB CSV")
        cmd = [
            sys.executable,
            "-m",
            "routewatch.cli",
            "replay",
            "--plan",
            str(folder / "plans.json"),
            "--pings",
            str(folder / "pings.csv"),
        ]
        subprocess.run(cmd, check=True, capture_output=True)  # warm Numba's cache
        outputs = []
        for label, extra in (("routewatch replay", []), ("  ... --workers 1", ["--workers", "1"])):
            walls = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                out = subprocess.run(cmd + extra, check=True, capture_output=True)
                walls.append(time.perf_counter() - t0)
            outputs.append(out.stdout)
            best, median = min(walls), statistics.median(walls)
            lines = out.stdout.count(b"\n")
            print(
                f"{label:22s}: best {best:5.2f} s {n / best:10,.0f} pings/s, "
                f"median {median:5.2f} s {n / median:10,.0f} pings/s "
                f"({args.runs} runs, {lines:,} lines)"
            )
        if outputs[0] != outputs[1]:
            raise SystemExit("the output differs with --workers 1")
        t0 = time.perf_counter()
        with open(folder / "pings.csv", newline="") as fh:
            rows = sum(1 for _ in csv.reader(fh))
        base = time.perf_counter() - t0
        print(f"baseline: csv.reader only: {base:6.2f} s  {rows / base:12,.0f} rows/s")
        print("goal: >= 500,000 pings/s end to end")


if __name__ == "__main__":
    main()
