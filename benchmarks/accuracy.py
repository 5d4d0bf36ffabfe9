"""Detection accuracy of the compliance engine against simulator ground truth.

One command: generate a seeded scenario (GPS sigma 8 m, 2% multipath outliers, a mix of
every fault), replay it through ``compliance.replay.replay``, match detected events to
the expected ones per type within each event's tolerance, and print precision, recall
and detection delay per type, plus ETA error (MAE and spread) by remaining distance.

    .venv/bin/python benchmarks/accuracy.py --vehicles 100 --seed 1

``--patterns`` runs issue #16's patterns of real traces instead of the default fault mix
(pulling off beside the route, fixes drifting while standing, multipath thrown to
alternate sides, trackers dying mid-trip, beside detours); ``--by-fault`` adds the goal
types' precision and recall per fault kind.

Baseline in the same run: a "null engine" that reports nothing scores recall 0, and the
ground truth scored against itself scores 1.0/1.0 (a check of the matcher).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.faults import parse_faults
from simulator.gps import GpsConfig
from simulator.offline import write
from simulator.scenario import ScenarioConfig
from simulator.scoring import eta_errors, eta_table, score

GOAL_TYPES = ("off_route", "speeding", "unplanned_stop", "stop_arrived", "late")
#: issue #16's patterns of real traces (simulator.faults.PATTERN_KINDS) beside detours
PATTERNS = "pull_off=0.2,standing_drift=0.2,multipath_flip=0.2,tracker_dies=0.1,detour=0.2"


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


#: an expected event no detection can match (it makes a type scored for one fault kind)
_NEVER: dict[str, Any] = {"trip_id": "", "ts": 0, "tolerance_s": 0.0, "details": {}}


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

        exp = mine(expected)
        scores = score(mine(detected), exp, mine(allowed))
        # a type no trip of this kind expects (but others do) still counts false alarms
        for t in GOAL_TYPES:
            s = scores.get(t)
            if s is None:
                if t in scored:
                    none = score(mine(detected), [*exp, {**_NEVER, "type": t}], mine(allowed))
                    fp = none[t].fp
                    if fp:
                        print(f"{kind:<16}{t:<16}{0:>5}{0:>5}{fp:>5}{0:>5}{0.0:>8.3f}{'-':>7}")
                continue
            print(
                f"{kind:<16}{t:<16}{s.tp + s.fn:>5}{s.tp:>5}{s.fp:>5}{s.fn:>5}"
                f"{s.precision:>8.3f}{s.recall:>7.3f}"
            )


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
    errs = eta_errors(snapshots, truth, _track(out / "truth.csv"))
    print()
    print(f"ETA error over {len(errs)} (snapshot, pending stop) pairs:")
    print(f"{'remaining':<12}{'n':>7}{'MAE s':>9}{'median s':>10}{'p90 s':>8}")
    for label, n, mae, med, p90 in eta_table(errs):
        print(f"{label:<12}{n:>7}{mae:>9.0f}{med:>10.0f}{p90:>8.0f}")
    if errs:
        e = np.array(errs)[:, 1]
        print(
            f"{'all':<12}{len(e):>7}{np.abs(e).mean():>9.0f}{np.median(np.abs(e)):>10.0f}"
            f"{np.percentile(np.abs(e), 90):>8.0f}   bias (mean signed) {e.mean():+.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
