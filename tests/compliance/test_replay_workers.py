"""``replay_lines(workers=N)``: the vehicles split among forked processes, the lines
those of one process byte for byte (compliance.replay_workers)."""

from __future__ import annotations

import json
import logging
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from compliance import replay_workers
from compliance.plan import TripPlan
from compliance.replay import replay, replay_lines, vehicle_rows
from compliance.types import PingBatch
from tests.compliance.builders import T0_MS, batch, drive, plan

ROUTE = [(0.0, 0.0), (2000.0, 0.0)]


def _fleet() -> tuple[list[TripPlan], PingBatch]:
    """Five vehicles with three trips each, every trip on its own street: a driver, a
    trip never driven (the next takes over), one whose tracker dies half way, V4 an
    hour after the others (the input's end), events of equal ts on every vehicle, plans
    whose stops lie far off their routes (warnings), one vehicle's plan without
    pings; the pings' rows in no particular order."""
    plans, parts = [], []
    for v in range(5):
        vid = f"V{v}"
        for k in range(3):
            start = T0_MS + k * 900_000 + (3_600_000 if v == 4 else 0)  # V4 an hour on
            extra = {"driver_id": "D7"} if v == 2 else {}
            route = [(x, y + 3000.0 * k) for x, y in ROUTE]
            stop_y = 3000.0 * k + (800.0 if (v, k) in ((1, 0), (4, 2)) else 0.0)
            stops = [{"stop_id": "S1", "xy": (1000.0, stop_y)}]
            if (v, k) == (1, 0):  # a second far stop, listed after S1: warned after it
                stops.append({"stop_id": "S0", "xy": (1500.0, 700.0)})
            names = {"trip_id": f"T{v}-{k}", "vehicle_id": vid}
            plans.append(plan(route, stops, planned_start=start, **names, **extra))
            if k == 1 and v % 2:
                continue
            profile = [(100, 36), (60, 0), (100, 36), (30, 0)]
            if (v, k) == (0, 2):  # the tracker dies half way: signal lost, then abandoned
                profile = [(100, 36)]
            ts, x, y, s = drive(route, profile, dt_s=5.0, t0_ms=start)
            parts.append(batch(vid, ts, x, y, speed_kmh=s))
    plans.append(plan(ROUTE, trip_id="T-idle", vehicle_id="V9"))
    cols = [
        np.concatenate([getattr(p, f) for p in parts])
        for f in ("ts_ms", "lat", "lon", "speed_kmh", "heading_deg", "accuracy_m", "seq")
    ]
    ids = [v for p in parts for v in p.vehicle_id]
    order = np.random.default_rng(3).permutation(len(ids))
    return plans, PingBatch([ids[i] for i in order], *(c[order] for c in cols))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_workers_print_the_lines_snapshots_and_warnings_of_one_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plans, pings = _fleet()
    with caplog.at_level(logging.WARNING):
        one = list(replay_lines(plans, pings))
    warned = _warnings(caplog)
    assert warned == [
        "plan T1-0: stop S1 is 800 m from the route",
        "plan T1-0: stop S0 is 700 m from the route",
        "plan T4-2: stop S1 is 800 m from the route",
    ]
    assert one == [
        json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in replay(plans, pings)
    ]
    assert {json.loads(x)["vehicle_id"] for x in one} == {f"V{v}" for v in range(5)}
    assert any(b'"driver_id":"D7"' in x for x in one)
    raw: list[Any] = [p.model_dump(mode="json", exclude_unset=True) for p in plans]
    with_snapshots = list(replay_lines(plans, pings, snapshot_s=60.0))
    assert sum(b'"type":"snapshot"' in x for x in with_snapshots) > 20
    for workers in (2, 3):
        assert list(replay_lines(plans, pings, 60.0, workers=workers)) == with_snapshots
        for given in (plans, raw):  # validated plans, or their JSON objects
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                split = replay_workers.replay_lines(given, pings, workers)
                assert split is not None  # (the split ran: not one process)
                assert list(split) == one
            assert _warnings(caplog) == warned


def test_a_trip_id_planned_for_vehicles_of_two_workers_replays_in_one_process() -> None:
    """In one engine the later plan replaces the earlier: split by vehicles, both would
    run; one process answers instead."""
    plans, pings = _fleet()
    parts = replay_workers.split(vehicle_rows(pings), 2)
    v0_in = next(i for i, part in enumerate(parts) if any(v == "V0" for v, _ in part))
    other = parts[1 - v0_in][0][0]  # a vehicle the other worker replays
    again = plans[2].model_dump(mode="json", exclude_unset=True) | {"vehicle_id": other}
    plans.append(TripPlan.model_validate(again))  # T0-2, now for that vehicle
    assert replay_workers.replay_lines(plans, pings, 2) is None
    one = list(replay_lines(plans, pings))
    assert not any(b'"trip_id":"T0-2","vehicle_id":"V0"' in x for x in one)
    assert list(replay_lines(plans, pings, workers=2)) == one


def test_the_first_invalid_plan_raises_its_own_error_before_any_line() -> None:
    plans, pings = _fleet()
    raw: list[Any] = [p.model_dump(mode="json", exclude_unset=True) for p in plans]
    raw[4]["corridor_m"] = -5  # V1's second trip
    raw[13]["stops"][0]["radius_m"] = 0  # V4's second trip: another worker's share
    with pytest.raises(ValidationError) as want:
        TripPlan.model_validate(raw[4])
    for workers in (1, 2, 3):
        lines = replay_lines(raw, pings, workers=workers)
        with pytest.raises(ValidationError) as got:
            next(lines)
        assert str(got.value) == str(want.value)


@pytest.mark.timeout(120)
def test_a_worker_killed_fails_the_replay_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plans, pings = _fleet()
    part = replay_workers._Work.part

    def killed_second(self: Any, i: int) -> Any:
        if i == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return part(self, i)

    monkeypatch.setattr(replay_workers._Work, "part", killed_second)
    with pytest.raises(BrokenProcessPool):
        replay_workers.replay_lines(plans, pings, 2)
