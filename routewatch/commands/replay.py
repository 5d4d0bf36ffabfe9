"""``routewatch replay``: run the compliance engine over recorded pings (CONTRACT §8)."""

from __future__ import annotations

import argparse
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import gc
    from concurrent.futures import ThreadPoolExecutor

    import orjson

    from compliance.replay import (
        learn_speeds,
        load_pings_csv,
        load_plans,
        prepare_engine,
        replay_engine,
    )
    from routewatch.settings import Settings, engine_thresholds

    # A replay allocates millions of small containers (plan JSON, events) and frees few:
    # the collector's default pace (a pass every 700 net allocations, each full pass
    # over everything alive) cost a quarter of a replay of 26,000 short trips. Rarer
    # passes, and the plans and engine set aside once loaded; cycles are still found.
    gc.set_threshold(100_000, 50, 100)
    # The CSV is parsed (Numba, without the GIL) in a thread while the plans are read and
    # their routes prepared (PROJ, also without the GIL): on two cores the two overlap.
    # Plan errors still come first; a CSV error surfaces at result().
    with ThreadPoolExecutor(1, thread_name_prefix="replay-csv") as pool:
        pings_f = pool.submit(load_pings_csv, args.pings)
        # plan geometry problems are logged as warnings (stderr) while trips are prepared
        plans = [p for path in args.plan for p in load_plans(path)]
        engine = prepare_engine(plans, engine_thresholds(Settings()))
        if args.speeds_from:
            engine.set_speed_profile(learn_speeds(args.speeds_from))
        pings = pings_f.result()
    gc.freeze()
    out = sys.stdout.buffer
    for obj in replay_engine(engine, pings, args.snapshots):
        out.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    out.flush()
    return 0
