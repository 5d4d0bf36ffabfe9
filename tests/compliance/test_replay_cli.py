"""``routewatch replay`` and compliance.replay end to end on files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from compliance.events import ms_to_rfc3339
from compliance.replay import load_pings_csv, load_plans, replay
from tests.compliance.builders import ORIGIN, T0_MS, drive, plan

ROUTE = [(0.0, 0.0), (2000.0, 0.0)]


def _files(tmp_path: Path, rfc3339: bool) -> tuple[Path, Path]:
    p = plan(
        ROUTE,
        [
            {
                "stop_id": "S1",
                "order_id": "O1",
                "xy": (1000.0, 0.0),
                "window": {"start": T0_MS, "end": T0_MS + 3600_000},
            }
        ],
    )
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps([p.model_dump(mode="json")]))
    ts, x, y, s = drive(ROUTE, [(100, 36), (60, 0), (120, 36)])
    lon, lat = ORIGIN.to_lonlat(x, y)
    lines = ["vehicle_id,ts,lat,lon,speed,heading,accuracy"]
    for t, a, o, v in zip(ts, lat, lon, s, strict=True):
        tt = ms_to_rfc3339(int(t)).replace("Z", "+00:00") if rfc3339 else str(int(t))
        lines.append(f"V1,{tt},{a:.7f},{o:.7f},{v:.1f},,5")
    pings_path = tmp_path / "pings.csv"
    pings_path.write_text("\n".join(lines) + "\n")
    return plan_path, pings_path


def _replay_cli(*args: str) -> list[dict[str, Any]]:
    """``routewatch replay ARGS`` in its own process: its output lines, parsed."""
    out = subprocess.run(
        [sys.executable, "-m", "routewatch.cli", "replay", *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(x) for x in out.stdout.splitlines()]


def test_csv_loader_reads_epoch_and_rfc3339(tmp_path: Path) -> None:
    _, a = _files(tmp_path, rfc3339=False)
    ea = load_pings_csv(a)
    b = tmp_path / "b.csv"
    (tmp_path / "x").mkdir()
    _, src = _files(tmp_path / "x", True)
    b.write_bytes(src.read_bytes())
    eb = load_pings_csv(b)
    assert np.array_equal(ea.ts_ms, eb.ts_ms)
    assert ea.vehicle_id[:2] == ["V1", "V1"]
    assert np.allclose(ea.lat, eb.lat) and np.all(np.isnan(ea.heading_deg))
    assert np.all(ea.accuracy_m == 5.0)


def test_replay_cli_prints_events_and_snapshots(tmp_path: Path) -> None:
    plan_path, pings_path = _files(tmp_path, rfc3339=False)
    lines = _replay_cli("--plan", str(plan_path), "--pings", str(pings_path), "--snapshots", "60")
    types = [x["type"] for x in lines]
    assert [t for t in types if t != "snapshot"] == [
        "trip_started",
        "stop_arrived",
        "stop_departed",
        "trip_completed",
    ]
    snaps = [x for x in lines if x["type"] == "snapshot"]
    # every minute until the route end (the route goes on 1 km past its only stop)
    assert len(snaps) == 4
    assert set(snaps[0]) == {
        "type",
        "trip_id",
        "vehicle_id",
        "ts",
        "route_m",
        "offset_m",
        "on_route",
        "schedule_delay_s",
        "etas",
    }
    assert snaps[0]["etas"][0]["stop_id"] == "S1"
    assert (
        snaps[0]["etas"][0]["eta_low"]
        <= snaps[0]["etas"][0]["eta"]
        <= snaps[0]["etas"][0]["eta_high"]
    )
    ts_all = [x["ts"] for x in lines]
    assert ts_all == sorted(ts_all)
    # the snapshot lines do not change the events
    plain = [x for x in replay(load_plans(plan_path), load_pings_csv(pings_path))]
    assert [x["event_id"] for x in plain] == [
        x["event_id"] for x in lines if x["type"] != "snapshot"
    ]


def test_replay_of_many_trips_per_vehicle_gives_the_events_of_one_batch() -> None:
    """replay feeds a vehicle's pings one trip at a time (cut at the planned starts): the
    events are those of the vehicle's pings in one batch - also when a trip is driven
    early or late, or not driven at all."""
    from tests.compliance.builders import batch
    from tests.compliance.helpers import run_batches

    plans = []
    ts_all, x_all, y_all = [], [], []
    for k in range(4):
        start = T0_MS + k * 900_000
        plans.append(plan(ROUTE, trip_id=f"T{k}", planned_start=start))
        if k == 2:
            continue  # never driven: the next trip takes over when driven
        # driven 2 min before its planned start (k = 1) or 3 min after it
        t0 = start - 120_000 if k == 1 else start + 180_000
        ts, x, y, _ = drive(ROUTE, [(200, 36), (30, 0)], dt_s=5.0, t0_ms=t0)
        ts_all.append(ts)
        x_all.append(x)
        y_all.append(y)
    b = batch("V1", np.concatenate(ts_all), np.concatenate(x_all), np.concatenate(y_all))
    want, _ = run_batches(plans, [b])
    got = list(replay(plans, b))
    assert [e["event_id"] for e in got] == [e.event_id for e in want]
    assert [e["trip_id"] for e in got if e["type"] == "trip_completed"] == ["T0", "T1", "T2", "T3"]


def test_replay_learns_speeds_from_earlier_recordings(tmp_path: Path) -> None:
    """``--speeds-from``: a week-earlier recording where the street crawled at 2 m/s makes
    the snapshots' ETAs later than the plan's and live speeds alone give."""
    plan_path, pings_path = _files(tmp_path, rfc3339=False)
    ts, x, y, s = drive(ROUTE, [(1000, 7.2)])
    lon, lat = ORIGIN.to_lonlat(x, y)
    week_ms = 7 * 86_400_000
    slow = tmp_path / "last_week.csv"
    slow.write_text(
        "vehicle_id,ts,lat,lon,speed\n"
        + "".join(
            f"V9,{int(t) - week_ms},{a:.7f},{o:.7f},{v:.1f}\n"
            for t, a, o, v in zip(ts, lat, lon, s, strict=True)
        )
    )
    args = ["--plan", str(plan_path), "--pings", str(pings_path), "--snapshots", "60"]
    learned = _replay_cli(*args, "--speeds-from", str(slow))
    plain = list(replay(load_plans(plan_path), load_pings_csv(pings_path), snapshot_s=60.0))
    assert [e for e in learned if e["type"] != "snapshot"] == [
        e for e in plain if e["type"] != "snapshot"
    ]
    first = [next(e for e in run if e["type"] == "snapshot") for run in (learned, plain)]
    assert first[0]["ts"] == first[1]["ts"]
    assert first[0]["etas"][0]["eta"] > first[1]["etas"][0]["eta"]


def test_an_engine_asked_for_no_matches_gives_the_same_events_and_no_per_ping_results() -> None:
    from compliance.engine import Engine
    from tests.compliance.builders import batch

    ts, x, y, s = drive(ROUTE, [(100, 36), (60, 0), (120, 36)])
    b = batch("V1", ts, x, y, speed_kmh=s)
    runs = []
    for matches in (True, False):
        eng = Engine()
        eng.add_trip(plan(ROUTE, [{"stop_id": "S1", "xy": (1000.0, 0.0)}]))
        runs.append(eng.process(b, int(ts[-1]) + 60_000, matches=matches))
    full, bare = runs
    assert [e.event_id for e in bare.events] == [e.event_id for e in full.events]
    assert len(full.events) >= 4 and len(full.route_m) == len(b)
    assert bare.trip_id == [] and len(bare.route_m) == len(bare.on_route) == 0


def test_the_per_vehicle_replay_gives_the_events_of_the_engine_fed_in_time_order(
    tmp_path: Path,
) -> None:
    """Without snapshots, replay runs each vehicle's pings through its trips in one Numba
    call (compliance.replay_vehicles); with them, it feeds the engine all pings in time
    order, a chunk per snapshot interval. The events are the same: for many short trips
    per vehicle (each taken over by the next after a silence) and for a simulated fleet
    with every fault (detours, dead trackers, signal gaps, halts, speeding)."""
    from benchmarks.replay_rate import write_short_trips
    from simulator.faults import parse_faults
    from simulator.offline import write
    from simulator.scenario import ScenarioConfig

    (tmp_path / "short").mkdir()
    write_short_trips(tmp_path / "short", 36, 56, per_vehicle=6)
    for interval_s in (5, 30):
        cfg = ScenarioConfig(vehicles=10, seed=3, interval_s=interval_s, faults=parse_faults(None))
        write(cfg, tmp_path / f"sim{interval_s}")
    ends, kinds = set(), set()
    for name in ("short", "sim5", "sim30"):
        plans = load_plans(tmp_path / name / "plans.json")
        pings = load_pings_csv(tmp_path / name / "pings.csv")
        got = list(replay(plans, pings))
        fed = [e for e in replay(plans, pings, snapshot_s=97.0) if e["type"] != "snapshot"]
        assert len(got) > 2 * len(plans) and got == fed, name
        ends |= {e["details"].get("ended_by") for e in got if e["type"] == "trip_completed"}
        kinds |= {e["type"] for e in got}
    assert ends >= {None, "next_trip_started"}
    assert kinds >= {"off_route", "speeding", "late", "signal_lost", "stop_departed"}
