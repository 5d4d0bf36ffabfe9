"""Detection accuracy of the compliance engine against simulator ground truth.

One command: generate a seeded scenario (GPS sigma 8 m, 2% multipath outliers, a mix of
every fault), replay it through ``compliance.replay.replay``, match detected events to
the expected ones per type within each event's tolerance, and print precision, recall
and detection delay per type, plus ETA error (MAE and spread) by remaining distance.

    .venv/bin/python benchmarks/accuracy.py --vehicles 100 --seed 1

``--patterns`` runs issue #16's patterns of real traces instead of the default fault mix
(pulling off beside the route, fixes drifting while standing, multipath thrown to
alternate sides, trackers dying mid-trip, long trips through traffic, beside detours), and
the ETA table again over the trips through traffic alone; ``--by-fault`` adds the goal
types' precision and recall per fault kind.

Baseline in the same run: a "null engine" that reports nothing scores recall 0, and the
ground truth scored against itself scores 1.0/1.0 (a check of the matcher).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compliance.engine import Engine
from compliance.history import SpeedProfile
from compliance.plan import TripPlan
from simulator.faults import parse_faults
from simulator.gps import GpsConfig
from simulator.offline import write
from simulator.scenario import ScenarioConfig
from simulator.scoring import (
    BASELINES,
    TripRef,
    bands,
    eta_samples,
    score,
    ts_s,
    window_coverage,
)

GOAL_TYPES = ("off_route", "speeding", "unplanned_stop", "stop_arrived", "late")
#: issue #16's patterns of real traces (simulator.faults.PATTERN_KINDS) beside detours
PATTERNS = (
    "pull_off=0.2,standing_drift=0.2,multipath_flip=0.2,tracker_dies=0.1,traffic=0.1,detour=0.2"
)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _track(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cols: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    with path.open() as fh:
        for r in csv.DictReader(fh):
            ts, dm = cols[r["vehicle_id"]]
            ts.append(float(r["ts"]))
            dm.append(float(r["driven_m"]))
    return {v: (np.array(a), np.array(b)) for v, (a, b) in cols.items()}


_WEEK_MS = 7 * 86_400_000


def _by_fault(
    truth: dict[str, Any],
    detected: list[dict[str, Any]],
    expected: list[dict[str, Any]],
    allowed: list[dict[str, Any]],
) -> None:
    """Goal types scored over the trips of each fault kind alone (``clean``: none)."""
    kinds = sorted({str(t.get("fault") or "clean") for t in truth.values()})
    scored = {e["type"] for e in expected}
    print()
    print(f"{'fault':<16}{'type':<16}{'exp':>5}{'TP':>5}{'FP':>5}{'FN':>5}{'P':>8}{'R':>7}")
    for kind in kinds:
        trips = {k for k, t in truth.items() if str(t.get("fault") or "clean") == kind}

        def mine(evs: list[dict[str, Any]], trips: set[str] = trips) -> list[dict[str, Any]]:
            return [e for e in evs if e.get("trip_id") in trips]

        # a type no trip of this kind expects (but others do) still counts false alarms
        scores = score(mine(detected), mine(expected), mine(allowed), types=scored)
        for t in GOAL_TYPES:
            s = scores.get(t)
            if s is None:
                continue
            if s.tp + s.fn == 0:
                if s.fp:
                    print(f"{kind:<16}{t:<16}{0:>5}{0:>5}{s.fp:>5}{0:>5}{0.0:>8.3f}{'-':>7}")
                continue
            print(
                f"{kind:<16}{t:<16}{s.tp + s.fn:>5}{s.tp:>5}{s.fp:>5}{s.fn:>5}"
                f"{s.precision:>8.3f}{s.recall:>7.3f}"
            )


def _learn_history(cfg: ScenarioConfig, days: int, out: Path) -> SpeedProfile:
    """Speeds learned from ``days`` earlier weeks' runs on the scenario's road network:
    the same weekday and hours, other seeds (other routes, drivers and faults)."""
    from compliance.replay import learn_speeds

    t0 = time.perf_counter()
    for d in range(1, days + 1):
        day = replace(
            cfg,
            seed=cfg.seed + 1000 * d,
            network_seed=cfg.seed if cfg.network_seed is None else cfg.network_seed,
            start_ms=cfg.start_ms - d * _WEEK_MS,
            id_prefix=f"H{d}",
        )
        write(day, out / f"history-{d}")
    profile = learn_speeds([out / f"history-{d}" / "pings.csv" for d in range(1, days + 1)])
    print(
        f"learned speeds from {days} earlier week(s): {profile.samples} moving samples, "
        f"{len(profile.cell_index)} cells ({time.perf_counter() - t0:.1f} s)"
    )
    return profile


def _trip_refs(plans: list[TripPlan], events: list[dict[str, Any]]) -> dict[str, TripRef]:
    """What the ETA baselines need of each trip (its start from its trip_started event)."""
    started = {
        e["trip_id"]: (ts_s(e["ts"]) * 1000.0, float(e.get("route_m") or 0.0))
        for e in events
        if e["type"] == "trip_started"
    }
    engine = Engine()
    refs = {}
    for p in plans:
        if p.trip_id is None or p.trip_id not in started:
            continue
        engine.add_trip(p)
        refs[p.trip_id] = TripRef(
            [s.stop_id for s in p.stops],
            np.asarray(engine.prepared_route(p).stop_route_m, np.float64),
            np.array([s.service_s for s in p.stops], np.float64),
            np.array(
                [np.nan if s.planned_arrival is None else s.planned_arrival for s in p.stops],
                np.float64,
            ),
            *started[p.trip_id],
        )
    return refs


def _eta_report(runs: dict[str, dict[str, np.ndarray]], over: str = "") -> None:
    """MAE by remaining distance of the baselines and the engine (with and without learned
    speeds), the engine's bias and how often its window held the real arrival."""
    base = runs["engine"]
    names = [*BASELINES, *runs]
    print()
    print(
        f"ETA over {len(base['eta'])} (snapshot, pending stop) pairs{over}; "
        "error = predicted - actual"
    )
    print(
        f"{'remaining':<11}{'n':>6}"
        + "".join(f"{n + ' MAE':>15}" for n in names)
        + "".join(f"{n + ' bias':>15}{n + ' cover':>15}" for n in runs)
    )
    masks = {name: dict(bands(run["remaining_m"])) for name, run in runs.items()}
    # (run, its predicted column) per MAE column: the baselines ride on the plain run
    columns = [("engine", b) for b in BASELINES] + [(name, "eta") for name in runs]

    def error_s(name: str, column: str, label: str) -> np.ndarray:
        run, sel = runs[name], masks[name][label]
        return (run[column][sel] - run["actual_ms"][sel]) / 1000.0

    for label, sel in masks["engine"].items():
        cells = [
            f"{np.nanmean(np.abs(e)) if len(e) else np.nan:>15.0f}"
            for e in (error_s(name, col, label) for name, col in columns)
        ]
        for name in runs:
            err = error_s(name, "eta", label)
            cover = window_coverage(runs[name])[masks[name][label]]
            cells.append(f"{err.mean() if len(err) else np.nan:>+15.0f}")
            cells.append(f"{100 * cover.mean() if len(cover) else np.nan:>14.1f}%")
        print(f"{label:<11}{int(sel.sum()):>6}" + "".join(cells))
    print(
        "(plan = the planned arrival; trip_avg / last_5min = the route metres left at the "
        "trip's average / last 5 minutes' progress speed; cover = real arrival within "
        "[eta_low, eta_high], goal 80 +- 5 % in every band)"
    )


#: remaining-distance bins the ETA window is calibrated in, metres
_CAL_BINS_M = (0.0, 500.0, 1000.0, 2000.0, 3000.0, 4500.0, 6000.0, 8000.0, 10000.0, np.inf)


def _calibrate(s: dict[str, np.ndarray]) -> None:
    """The window's knots: per remaining-distance bin, its median distance and how far
    below and above the ETA the 10th and 90th percentiles of the real arrival lie (what
    ``compliance.kernels.ETA_WINDOW_*`` holds)."""
    resid = (s["actual_ms"] - s["eta"]) / 1000.0
    knots = []
    for lo, hi in itertools.pairwise(_CAL_BINS_M):
        sel = (s["remaining_m"] >= lo) & (s["remaining_m"] < hi)
        if sel.sum() >= 100:
            q10, q90 = np.percentile(resid[sel], [10, 90])
            knots.append((float(np.median(s["remaining_m"][sel])), max(0.0, -q10), max(0.0, q90)))
    x, below, above = (
        tuple(round(float(v)) for v in np.maximum.accumulate(col))  # never narrower further out
        for col in zip(*knots, strict=True)
    )
    print(f"calibrated window knots: remaining_m={x} below_s={below} above_s={above}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--interval-s", type=int, default=5)
    ap.add_argument("--sigma-m", type=float, default=8.0)
    ap.add_argument("--outlier-rate", type=float, default=0.02)
    ap.add_argument(
        "--outlier-max-m", type=float, default=GpsConfig().outlier_max_m, help="largest outlier"
    )
    ap.add_argument("--faults", default=None, help="default: every kind at 0.1")
    ap.add_argument(
        "--patterns",
        action="store_true",
        help=f"the real-trace patterns instead: --faults {PATTERNS}",
    )
    ap.add_argument(
        "--by-fault",
        action="store_true",
        help="also precision/recall of the goal types per vehicle fault (and clean ones)",
    )
    ap.add_argument(
        "--history-days",
        type=int,
        default=2,
        help="learn speeds from this many earlier days of the fleet on the same streets "
        "(same weekday and hours, other vehicles and routes); 0 = no learned speeds",
    )
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="also fit the ETA window's constants (10th/90th percentile) to this run",
    )
    ap.add_argument("--out", type=Path, help="keep the scenario and detections here")
    args = ap.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="rw-accuracy-"))
    cfg = ScenarioConfig(
        vehicles=args.vehicles,
        seed=args.seed,
        interval_s=args.interval_s,
        faults=parse_faults(PATTERNS if args.patterns else args.faults),
        gps=GpsConfig(
            sigma_m=args.sigma_m,
            outlier_rate=args.outlier_rate,
            outlier_max_m=args.outlier_max_m,
        ),
    )
    t0 = time.perf_counter()
    counts = write(cfg, out)
    t_sim = time.perf_counter() - t0
    print(
        f"scenario: {out}  vehicles={args.vehicles} seed={args.seed} sigma={args.sigma_m} m "
        f"outliers={args.outlier_rate:.0%} (<= {args.outlier_max_m:.0f} m) interval={args.interval_s} s pings={counts['pings']} "
        f"expected={counts['expected']} allowed={counts['allowed']} ({t_sim:.1f} s)"
    )

    from compliance.replay import load_pings_csv, load_plans, replay

    learned = _learn_history(cfg, args.history_days, out) if args.history_days else None
    plans = load_plans(out / "plans.json")
    pings = load_pings_csv(out / "pings.csv")
    t0 = time.perf_counter()
    items = list(replay(plans, pings, snapshot_s=60.0))
    t_rep = time.perf_counter() - t0
    detected = [e for e in items if e.get("type") != "snapshot"]
    snapshots = [e for e in items if e.get("type") == "snapshot"]
    with (out / "detected.jsonl").open("w") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in detected)
    print(
        f"replay: {len(pings)} pings -> {len(detected)} events, {len(snapshots)} snapshots "
        f"in {t_rep:.1f} s"
    )

    expected = _jsonl(out / "expected.jsonl")
    allowed = _jsonl(out / "allowed.jsonl")
    scores = score(detected, expected, allowed)
    self_check = score(expected, expected, allowed)
    null = score([], expected, allowed)
    print()
    print(
        f"{'type':<22}{'exp':>5}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}"
        f"{'delay med':>11}{'p90':>7}{'  | self P/R':>13}{'null R':>8}"
    )
    for t, s in scores.items():
        d = np.array(s.delays_s)
        med, p90 = (np.median(d), np.percentile(d, 90)) if len(d) else (np.nan, np.nan)
        goal = " *" if t in GOAL_TYPES else ""
        print(
            f"{t + goal:<22}{s.tp + s.fn:>5}{s.tp:>5}{s.fp:>5}{s.fn:>5}{s.precision:>11.3f}"
            f"{s.recall:>8.3f}{med:>10.1f}s{p90:>6.1f}s"
            f"   {self_check[t].precision:.2f}/{self_check[t].recall:.2f}{null[t].recall:>8.2f}"
        )
    print("(* = goal types, target >= 0.99 precision and recall; delay = detected - expected ts)")

    truth = json.loads((out / "truth.json").read_text())
    if args.by_fault:
        _by_fault(truth, detected, expected, allowed)
    track = _track(out / "truth.csv")
    refs = _trip_refs(plans, detected)
    snaps_of = {"engine": snapshots}
    if learned is not None:
        t0 = time.perf_counter()
        items = list(replay(plans, pings, snapshot_s=60.0, speed_profile=learned))
        snaps_of["learned"] = [e for e in items if e.get("type") == "snapshot"]
        print(f"replay with learned speeds: {time.perf_counter() - t0:.1f} s")
    runs = {name: eta_samples(snaps, truth, track, refs) for name, snaps in snaps_of.items()}
    _eta_report(runs)
    traffic = {trip for trip, t in truth.items() if t.get("fault") == "traffic"}
    if traffic:
        _eta_report(
            {
                name: eta_samples([s for s in snaps if s["trip_id"] in traffic], truth, track, refs)
                for name, snaps in snaps_of.items()
            },
            over=f" of the {len(traffic)} trips through traffic",
        )
    if args.calibrate:
        _calibrate(runs["learned" if learned is not None else "engine"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
