"""``routewatch replay`` end to end on a generated file of >= 1M pings.

Writes plans.json and pings.csv (N vehicles, each on its own ~40 km route, 1 Hz, sigma
5 m, with device speed) to a temporary folder, then times the real command line
(process start, plan preparation, CSV load, engine, JSON output) and, as the baseline in
the same run, the stdlib ``csv`` module merely reading the same file.

    .venv/bin/python -m benchmarks.replay_rate [--vehicles 300] [--pings 1000000] [--runs 5]

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
        spd = 43.2 + rng.normal(0, 2, len(ts))
        vid = f"V{v}"
        lines.extend(
            f"{vid},{t},{a:.7f},{o:.7f},{s:.1f},,5"
            for t, a, o, s in zip(
                ts.tolist(), lat.tolist(), lon.tolist(), spd.tolist(), strict=True
            )
        )
        total += len(ts)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "pings.csv").write_text("\n".join(lines) + "\n")
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=300)
    ap.add_argument("--pings", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = write_files(folder, args.vehicles, args.pings)
        size_mb = (folder / "pings.csv").stat().st_size / 1e6
        print(f"{n:,} pings, {args.vehicles} vehicles, {size_mb:.0f} MB CSV")
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
        walls = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        n_events = out.stdout.count(b"\n")
        best, median = min(walls), statistics.median(walls)
        print(
            f"routewatch replay      : best {best:5.2f} s {n / best:10,.0f} pings/s, "
            f"median {median:5.2f} s {n / median:10,.0f} pings/s "
            f"({args.runs} runs, {n_events:,} events)"
        )
        t0 = time.perf_counter()
        with open(folder / "pings.csv", newline="") as fh:
            rows = sum(1 for _ in csv.reader(fh))
        base = time.perf_counter() - t0
        print(f"baseline: csv.reader only: {base:6.2f} s  {rows / base:12,.0f} rows/s")
        print("goal: >= 500,000 pings/s end to end")


if __name__ == "__main__":
    main()
