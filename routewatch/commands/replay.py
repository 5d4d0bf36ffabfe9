"""``routewatch replay``: run the compliance engine over recorded pings (CONTRACT §8)."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="replay recorded pings against trip plans; events as JSON lines"
    )
    p.add_argument(
        "--plan",
        action="append",
        required=True,
        help="trip plan JSON (one plan or an array); may be given several times",
    )
    p.add_argument(
        "--pings", required=True, help="CSV: vehicle_id,ts,lat,lon[,speed,heading,accuracy]"
    )
    p.add_argument(
        "--snapshots",
        type=float,
        metavar="S",
        help="also print a snapshot line per active trip every S seconds of event time",
    )
    p.add_argument(
        "--speeds-from",
        action="append",
        metavar="PINGS.csv",
        help="learn travel speeds per place and hour of week from these earlier "
        "recordings (same columns, with speed) for the snapshots' ETAs, as the live engine "
        "learns them from its stored pings; may be given several times",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes running the engine, the vehicles split among them (default: one "
        f"per {PINGS_PER_WORKER:,} pings, at most one per CPU; the output is the same "
        "whatever the count)",
    )
    p.set_defaults(func=run)


#: below this many pings per process, forking costs more than it gains
PINGS_PER_WORKER = 100_000


def default_workers(n_pings: int) -> int:
    """One process per :data:`PINGS_PER_WORKER` pings, at most one per CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, n_pings // PINGS_PER_WORKER))


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        print("routewatch replay: --workers must be at least 1", file=sys.stderr)
        return 2
    import gc
    from concurrent.futures import ThreadPoolExecutor

    from compliance.replay import (
        learn_speeds,
        load_pings_csv,
        read_plan_objects,
        replay_lines,
    )
    from routewatch.settings import Settings, engine_thresholds

    # A replay allocates millions of small containers (plan JSON, events) and frees few:
    # the collector's default pace (a pass every 700 net allocations, each full pass
    # over everything alive) cost a quarter of a replay of 26,000 short trips. Rarer
    # passes, and the plans and engine set aside once loaded; cycles are still found.
    gc.set_threshold(100_000, 50, 100)
    # The CSV is parsed (Numba, without the GIL) in a thread while the plan files are
    # read; a CSV error surfaces at result(), before the plans are validated. They are
    # validated before any line is printed (by the workers, each its vehicles' share;
    # the first invalid plan's error is raised).
    with ThreadPoolExecutor(1, thread_name_prefix="replay-csv") as pool:
        pings_f = pool.submit(load_pings_csv, args.pings)
        plans = [p for path in args.plan for p in read_plan_objects(path)]
        pings = pings_f.result()
    profile = learn_speeds(args.speeds_from) if args.speeds_from else None
    gc.freeze()
    workers = args.workers if args.workers is not None else default_workers(len(pings))
    out = sys.stdout.buffer
    # plan geometry problems are logged as warnings (stderr) while trips are prepared
    thresholds = engine_thresholds(Settings())
    for line in replay_lines(plans, pings, args.snapshots, thresholds, profile, workers):
        out.write(line)
    out.flush()
    return 0
